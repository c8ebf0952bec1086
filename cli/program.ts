/**
 * The `fruits` command line: `run` (the default, everything on this machine), `submit`, `status`
 * and `results` (the deployed stack). Parsing and wiring only; the work is in run-command.ts,
 * deployed.ts, client/ and local/.
 */
import { basename, resolve } from 'node:path';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { SFNClient } from '@aws-sdk/client-sfn';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createS3Client } from '../lambdas/aws/s3-client';
import { datasetName } from '../client/dataset-folder';
import { failedItemsOfRun } from '../client/failed-run';
import { DEFAULT_UPLOAD_CONCURRENCY, uploadFolder } from '../client/folder-upload';
import { DEFAULT_OUT_DIR, downloadRunOutputs } from '../client/run-outputs';
import { findSavedModel } from '../client/saved-model';
import { DEFAULT_POLL_SECONDS, DeployedClients, describeRun, executionArnOf, followRun, resolveDeployment, RunStatus, startRun } from './deployed';
import { createProgressDisplay } from './progress';
import { runCommand } from './run-command';
import { DEFAULT_DATA_DIR } from '../local/local-run';
import { BUCKET_LAYOUT, datasetInputPrefix, invalidName } from '../lambdas/contracts/bucket-layout';
import { DEFAULT_STACK_NAME } from '../lambdas/contracts/state-machine';
import { AGGREGATE_SETTINGS, CLASSIFIERS, FEATURIZER_KINDS } from '../lambdas/contracts/handler-env';

const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
};
const ratio = (value: string): number => {
  const n = Number(value);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('expected a number in (0, 1], e.g. 0.95');
  return n;
};

const runId = (value: string): string => {
  const problem = invalidName(value, 'run id');
  if (problem) throw new InvalidArgumentError(problem);
  return value;
};
const dataset = (value: string): string => {
  const problem = invalidName(value, 'dataset name');
  if (problem) throw new InvalidArgumentError(problem);
  return value;
};

/** The deployed-stack clients; tests pass their own (mocked) ones. */
export type ClientFactory = (region?: string) => DeployedClients;
const defaultClients: ClientFactory = (region) => ({
  s3: createS3Client(process.env, region ? { region } : {}),
  sfn: new SFNClient(region ? { region } : {}),
  cfn: new CloudFormationClient(region ? { region } : {}),
});

interface DeployedOptions {
  stack: string;
  bucket?: string;
  stateMachineArn?: string;
  region?: string;
  json?: boolean;
  out: string;
}

function deployedOptions(command: Command): Command {
  return command
    .option('--stack <name>', 'CloudFormation stack to read BucketName/StateMachineArn outputs from', DEFAULT_STACK_NAME)
    .option('--bucket <name>', 'data bucket (instead of the stack output)')
    .option('--state-machine-arn <arn>', 'state machine (instead of the stack output)')
    .option('--region <region>', 'AWS region (default: from the environment/profile)')
    .option('--json', 'print one JSON document instead of text')
    .option('--out <dir>', 'download results to <dir>/<runId>/', DEFAULT_OUT_DIR);
}

export function buildProgram(clients: ClientFactory = defaultClients): Command {
  const program = new Command('fruits')
    .description('Fruit photos -> CNN features -> PCA feature table, locally or on the deployed stack')
    .showHelpAfterError()
    .exitOverride();
  addRunCommand(program);
  addSubmitCommand(program, clients);
  addStatusAndResultsCommands(program, clients);
  return program;
}

/** `run` (the default): the whole pipeline on this machine. */
function addRunCommand(program: Command): void {
  program
    .command('run', { isDefault: true })
    .description('run the whole pipeline on this machine (no AWS account): S3 on loopback, the synthesized state machine, the Lambda handlers')
    .argument('[dir]', 'folder of <label>/<image> (or <split>/<label>/<image>); default: a generated demo set')
    .option('--batch-size <n>', 'images per Distributed Map batch', positiveInt)
    .option('--concurrency <n>', 'Distributed Map MaxConcurrency (also caps the worker threads)', positiveInt)
    .option('--components <k>', 'principal components to keep', positiveInt)
    .option('--variance <ratio>', 'keep the smallest k reaching this explained variance (0-1]', ratio)
    .option('--image-size <px>', 'CNN input side in pixels', positiveInt)
    .addOption(
      new Option(
        '--classifier <kind>',
        "what predicts the non-Training images: lda+logistic (both together), lda or logistic (fitted once, saved in pca-model.json), or knn (default: cdk.json's, lda+logistic)",
      ).choices([...CLASSIFIERS]),
    )
    .option(
      '--classifier-components <n>',
      `components a fitted head (lda+logistic, lda, logistic) sees, when more than --components: at most one per 4 Training images, saved in pca-model.json, not in features.csv (default ${AGGREGATE_SETTINGS.classifierComponents.default})`,
      positiveInt,
    )
    .option(
      '--knn <k>',
      `neighbours that vote when classifying the non-Training images with knn (default ${AGGREGATE_SETTINGS.knnNeighbours.default})`,
      positiveInt,
    )
    .option('--keep-embeddings', 'also write the raw feature vectors (embeddings.parquet)')
    .addOption(new Option('--featurizer <kind>', 'cnn (pretrained model) or pixels (no model)').choices(FEATURIZER_KINDS))
    .option('--model-dir <dir>', 'TF.js layers model directory (default: $MODEL_DIR, then the fetch-model cache)')
    .option('--workers <n>', 'featurize worker threads (default: CPU cores)', positiveInt)
    .option('--run-id <id>', 'run id (default: derived from the input content and the result-shaping settings, so only the same run overwrites)', runId)
    .option(
      '--model-from <runId|path>',
      'project with the PCA model (and classify with the classifier, or the references with --classifier knn) of an earlier run: its run id (results/<runId>/ in the --data-dir store, else <out>/<runId>/) or a pca-model.json path; no refit',
    )
    .option('--keep-server', 'leave the S3 server up afterwards to inspect it, and print its endpoint')
    .option('--json', 'print the summary as JSON')
    .option('--data-dir <dir>', 'where the local S3 server keeps its objects', DEFAULT_DATA_DIR)
    .option('--copy-input', 'upload a copy of the folder into the local S3 server (as submit uploads to AWS) instead of serving it in place, read-only')
    .option('--out <dir>', "copy the run's outputs to <dir>/<runId>/", DEFAULT_OUT_DIR)
    .action(async (dir: string | undefined, options) => {
      process.exitCode = await runCommand(dir, options);
    });
}

type SubmitOptions = DeployedOptions & {
  dataset?: string;
  trigger: boolean;
  runId?: string;
  modelFrom?: string;
  uploadConcurrency: number;
  wait: boolean;
  pollSeconds: number;
};

/** `submit`: upload a folder to the deployed stack, start its run and follow it. */
function addSubmitCommand(program: Command, clients: ClientFactory): void {
  deployedOptions(
    program
      .command('submit')
      .description('upload a folder to the deployed stack, start a run and follow it')
      .argument('<dir>', 'folder of <label>/<image> (or <split>/<label>/<image>)')
      .option('--dataset <name>', 'dataset name: the run reads input/<dataset>/ (default: the folder name)', dataset)
      .option('--no-trigger', 'start the execution directly instead of uploading the _START marker')
      .option('--run-id <id>', 'execution name / run id (with --no-trigger)', runId)
      .option(
        '--model-from <runId|key>',
        'project with the PCA model (and classify against the references) of an earlier run: its run id or the key of a pca-model.json under results/; starts the execution directly',
      )
      .option('--upload-concurrency <n>', 'files uploaded at once', positiveInt, DEFAULT_UPLOAD_CONCURRENCY)
      .option('--no-wait', 'return once the run started')
      .option('--poll-seconds <s>', 'status polling interval', positiveInt, DEFAULT_POLL_SECONDS),
  ).action(async (dir: string, options: SubmitOptions) => submit(dir, options, clients(options.region)));
}

/** Uploads the folder (refusing to start a run that would miss a file), starts the run and, unless `--no-wait`, follows it to its outcome. */
async function submit(dir: string, options: SubmitOptions, c: DeployedClients): Promise<void> {
  const deployment = await resolveDeployment(c.cfn, { stackName: options.stack, bucket: options.bucket, stateMachineArn: options.stateMachineArn });
  const dataset = options.dataset ?? datasetName(basename(resolve(dir)));
  // Before the upload: a model that is not there or not a model stops here, not after the run.
  const saved = options.modelFrom === undefined ? undefined : await findSavedModel(c.s3, deployment.bucket, options.modelFrom);
  const display = createProgressDisplay({ silent: options.json });
  const upload = await uploadFolder(c.s3, {
    bucket: deployment.bucket,
    prefix: datasetInputPrefix(dataset),
    dir,
    concurrency: options.uploadConcurrency,
    onProgress: (done, total) => display.update({ phase: 'upload', total, done, failed: 0 }),
  });
  const links = upload.linksFollowed > 0 ? `, ${upload.linksFollowed} symbolic link(s) followed` : '';
  display.log(`uploaded ${upload.uploaded} files (${(upload.bytes / 1e6).toFixed(1)} MB), ${upload.skipped} already there${links}`);
  if (upload.markersLeftOut.length > 0) {
    display.log(
      `left out ${upload.markersLeftOut.join(', ')}: a ${BUCKET_LAYOUT.startMarker} file would start a run before the upload is complete; submit uploads the marker itself, last`,
    );
  }
  if (upload.refused.length > 0) {
    // A run started now would not hold these files; the upload resumes once they are fixed.
    display.stop();
    const lines = upload.refused.slice(0, 20).map(({ key, reason }) => `  ${key}: ${reason}`);
    throw new Error(`${upload.refused.length} file(s) not uploaded, run not started:\n${lines.join('\n')}`);
  }
  if (saved && options.trigger) display.log(`starting the execution directly: a ${BUCKET_LAYOUT.startMarker} marker cannot name a model`);
  const executionArn = await startRun(c, deployment, { dataset, trigger: options.trigger && !saved, runId: options.runId, pcaModel: saved?.key });
  display.log(`run started: ${executionArn}${saved ? ` (projecting with the model of run ${saved.model.runId}, ${saved.key})` : ''}`);
  if (!options.wait) {
    display.stop();
    print(options.json, { executionArn, upload }, `${executionArn}\n`);
    return;
  }
  const status = await followRun(c.sfn, executionArn, { pollMs: options.pollSeconds * 1000, onProgress: (p) => display.update(p) });
  display.stop();
  process.exitCode = await reportOutcome(c, deployment.bucket, status, options);
}

/** `status` and `results`: a run of the deployed stack, shown or downloaded. */
function addStatusAndResultsCommands(program: Command, clients: ClientFactory): void {
  deployedOptions(program.command('status').description('show a run of the deployed stack').argument('<runId>', 'run id (the execution name)', runId)).action(
    async (runId: string, options: DeployedOptions) => {
      const c = clients(options.region);
      const deployment = await resolveDeployment(c.cfn, { stackName: options.stack, bucket: options.bucket, stateMachineArn: options.stateMachineArn });
      const status = await describeRun(c.sfn, executionArnOf(deployment.stateMachineArn, runId));
      print(options.json, status, formatStatus(status));
    },
  );

  deployedOptions(program.command('results').description("download a finished run's outputs").argument('<runId>', 'run id (the execution name)', runId)).action(
    async (runId: string, options: DeployedOptions) => {
      const c = clients(options.region);
      const deployment = await resolveDeployment(c.cfn, { stackName: options.stack, bucket: options.bucket, stateMachineArn: options.stateMachineArn });
      const status = await describeRun(c.sfn, executionArnOf(deployment.stateMachineArn, runId));
      process.exitCode = await reportOutcome(c, deployment.bucket, status, options);
    },
  );
}

/** Downloads the outputs of a succeeded run, or explains a failed one; returns the exit code. */
async function reportOutcome(c: DeployedClients, bucket: string, status: RunStatus, options: DeployedOptions): Promise<number> {
  if (status.status === 'SUCCEEDED') {
    const { dir, files } = await downloadRunOutputs(c.s3, bucket, status.runId, options.out);
    print(options.json, { ...status, downloaded: { dir, files } }, `${formatStatus(status)}  outputs     ${dir} (${files.join(', ')})\n`);
    return 0;
  }
  if (status.status === 'RUNNING') {
    print(options.json, status, formatStatus(status));
    return 0;
  }
  const failure = { error: status.error, cause: status.cause, failedItems: await failedItemsOfRun(c.s3, bucket, status.runId) };
  const lines = failure.failedItems.slice(0, 20).map((item) => `    ${item.key}: ${item.reason}`);
  if (failure.failedItems.length > 20) lines.push(`    ... ${failure.failedItems.length - 20} more`);
  print(options.json, { ...status, failure }, `${formatStatus(status)}${lines.length ? `  failed items\n${lines.join('\n')}\n` : ''}`);
  return 1;
}

function formatStatus(status: RunStatus): string {
  const lines = [`Run ${status.runId}: ${status.status}`, `  execution   ${status.executionArn}`];
  if (status.startDate) lines.push(`  started     ${status.startDate.toISOString()}${status.stopDate ? `, stopped ${status.stopDate.toISOString()}` : ''}`);
  if (status.items) {
    const i = status.items;
    lines.push(`  items       ${i.succeeded + i.failed}/${i.total} done (${i.failed} failed, ${i.running} running, ${i.pending} pending)`);
  }
  if (status.error || status.cause) lines.push(`  error       ${status.error ?? ''}: ${status.cause ?? ''}`);
  return `${lines.join('\n')}\n`;
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : text);
}
