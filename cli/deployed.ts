/**
 * Driving the deployed stack without the console: find it, upload a dataset, start a run, follow
 * it, fetch its results, explain its failures. Plain functions over injected SDK clients, so the
 * commands are thin and the tests use a real S3 server on loopback plus mocked Step Functions and
 * CloudFormation.
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { PutObjectCommand, S3Client, _Object } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  DescribeExecutionCommandOutput,
  DescribeMapRunCommand,
  ExecutionStatus,
  ListExecutionsCommand,
  ListMapRunsCommand,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { Upload } from '@aws-sdk/lib-storage';
import { BUCKET_LAYOUT, datasetInputPrefix, runLayout } from '../lambdas/contracts/bucket-layout';
import { readMapRunResults } from '../lambdas/core/map-results';
import type { RunReport } from '../lambdas/core/run-report';
import { mapWithConcurrency } from '../lambdas/core/concurrency';
import { listAllObjects, readJsonIfPresent, readText } from '../lambdas/aws/s3-client';
import { batchFailureReason, copyPrefix } from '../local/local-run';
import type { ProgressUpdate } from './progress';
import { datasetFiles } from '../client/dataset-folder';

export interface DeployedClients {
  readonly s3: S3Client;
  readonly sfn: SFNClient;
  readonly cfn: CloudFormationClient;
}

export interface Deployment {
  readonly bucket: string;
  readonly stateMachineArn: string;
}

/** Bucket and state machine: from flags when given, else from the stack's outputs. */
export async function resolveDeployment(
  cfn: CloudFormationClient,
  options: { stackName: string; bucket?: string; stateMachineArn?: string },
): Promise<Deployment> {
  if (options.bucket && options.stateMachineArn) return { bucket: options.bucket, stateMachineArn: options.stateMachineArn };
  const { Stacks } = await cfn.send(new DescribeStacksCommand({ StackName: options.stackName }));
  const outputs = new Map((Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
  // Outputs defined below a construct get a hash suffix: match on the name's start.
  const find = (name: string) => [...outputs].find(([key]) => key === name || key.startsWith(name))?.[1];
  const bucket = options.bucket ?? find('BucketName');
  const stateMachineArn = options.stateMachineArn ?? find('StateMachineArn');
  if (!bucket || !stateMachineArn) {
    throw new Error(
      `stack ${options.stackName} has no ${!bucket ? 'BucketName' : 'StateMachineArn'} output; pass --bucket and --state-machine-arn`,
    );
  }
  return { bucket, stateMachineArn };
}

/** lib-storage's part size; also what a multipart ETag is computed over. */
export const UPLOAD_PART_SIZE = 8 * 1024 * 1024;

export interface UploadFolderOptions {
  readonly bucket: string;
  /** `input/<dataset>/` */
  readonly prefix: string;
  readonly dir: string;
  /** Files in flight. @default 8 */
  readonly concurrency?: number;
  readonly onProgress?: (progress: ProgressUpdate) => void;
}

/**
 * Upload a folder under `prefix`, skipping objects already there with the same size and ETag
 * (so an interrupted upload resumes), multipart for files above UPLOAD_PART_SIZE. A `_START` file
 * inside the folder is left out (and named in the result): uploaded with the images it would start
 * a run on a half-uploaded dataset, or a failed run for a marker at the wrong depth.
 */
export async function uploadFolder(
  s3: S3Client,
  options: UploadFolderOptions,
): Promise<{ uploaded: number; skipped: number; bytes: number; markersLeftOut: string[] }> {
  const root = resolve(options.dir);
  const markersLeftOut: string[] = [];
  const files: { file: string; key: string; size: number }[] = [];
  for (const file of datasetFiles(root)) {
    const path = relative(root, file).split(sep).join('/');
    if (basename(file) === BUCKET_LAYOUT.startMarker) markersLeftOut.push(path);
    else files.push({ file, key: `${options.prefix}${path}`, size: statSync(file).size });
  }
  const existing = new Map<string, _Object>((await listAllObjects(s3, options.bucket, options.prefix)).map((o) => [o.Key!, o]));
  let uploaded = 0;
  let done = 0;
  let bytes = 0;
  await mapWithConcurrency(files, options.concurrency ?? 8, async ({ file, key, size }) => {
    const present = existing.get(key);
    const same = present !== undefined && present.Size === size && (await localETags(file, size)).includes(present.ETag?.replace(/"/g, '') ?? '');
    if (!same) {
      await new Upload({
        client: s3,
        params: { Bucket: options.bucket, Key: key, Body: createReadStream(file) },
        partSize: UPLOAD_PART_SIZE,
        queueSize: 4,
      }).done();
      uploaded++;
      bytes += size;
    }
    options.onProgress?.({ phase: 'upload', total: files.length, done: ++done, failed: 0 });
  });
  return { uploaded, skipped: files.length - uploaded, bytes, markersLeftOut };
}

/**
 * The ETags an object uploaded as we upload it may carry: S3 gives a multipart object
 * MD5-of-part-MD5s + `-<parts>`, a single-part one its MD5; some S3-compatible servers (s3rver)
 * give every object its MD5. Either one matching means the object is already there.
 */
export async function localETags(file: string, size: number): Promise<string[]> {
  const whole = createHash('md5');
  const digests: Buffer[] = [];
  let part = createHash('md5');
  let inPart = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    whole.update(chunk);
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(chunk.length - offset, UPLOAD_PART_SIZE - inPart);
      part.update(chunk.subarray(offset, offset + take));
      inPart += take;
      offset += take;
      if (inPart === UPLOAD_PART_SIZE) {
        digests.push(part.digest());
        part = createHash('md5');
        inPart = 0;
      }
    }
  }
  const md5 = whole.digest('hex');
  if (size <= UPLOAD_PART_SIZE) return [md5];
  if (inPart > 0) digests.push(part.digest());
  return [`${createHash('md5').update(Buffer.concat(digests)).digest('hex')}-${digests.length}`, md5];
}

export interface StartRunOptions {
  readonly dataset: string;
  /** Write the start marker (the upload trigger starts the run) instead of StartExecution. */
  readonly trigger: boolean;
  readonly runId?: string;
  /** How long to wait for the trigger's execution to appear. @default 120 s */
  readonly triggerTimeoutMs?: number;
  readonly pollMs?: number;
}

/** Start a run for `input/<dataset>/`; returns its execution ARN. */
export async function startRun(clients: DeployedClients, deployment: Deployment, options: StartRunOptions): Promise<string> {
  const inputPrefix = datasetInputPrefix(options.dataset);
  if (!options.trigger) {
    const { executionArn } = await clients.sfn.send(
      new StartExecutionCommand({
        stateMachineArn: deployment.stateMachineArn,
        name: options.runId,
        input: JSON.stringify({ bucket: deployment.bucket, inputPrefix, ...(options.runId && { runId: options.runId }) }),
      }),
    );
    return executionArn!;
  }
  const markerKey = `${inputPrefix}${BUCKET_LAYOUT.startMarker}`;
  const since = new Date(Date.now() - 5_000);
  await clients.s3.send(new PutObjectCommand({ Bucket: deployment.bucket, Key: markerKey, Body: '', ContentLength: 0 }));
  return findTriggeredExecution(clients.sfn, deployment.stateMachineArn, markerKey, since, options.triggerTimeoutMs ?? 120_000, options.pollMs ?? 2_000);
}

/** The execution the upload rule started for `markerKey`: its input is `{ trigger: { key } }`. */
async function findTriggeredExecution(sfn: SFNClient, stateMachineArn: string, markerKey: string, since: Date, timeoutMs: number, pollMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set<string>();
  while (Date.now() < deadline) {
    const { executions } = await sfn.send(new ListExecutionsCommand({ stateMachineArn, maxResults: 20 }));
    for (const execution of executions ?? []) {
      if (!execution.executionArn || seen.has(execution.executionArn)) continue;
      if (execution.startDate && execution.startDate < since) continue;
      seen.add(execution.executionArn);
      const described = await sfn.send(new DescribeExecutionCommand({ executionArn: execution.executionArn }));
      const input = parseJson(described.input) as { trigger?: { key?: string } } | undefined;
      if (input?.trigger?.key === markerKey) return execution.executionArn;
    }
    await sleep(pollMs);
  }
  throw new Error(`no execution started for s3 marker ${markerKey} within ${Math.round(timeoutMs / 1000)} s: is the upload trigger (EventBridge notifications) deployed?`);
}

export interface RunStatus {
  readonly executionArn: string;
  readonly runId: string;
  readonly status: ExecutionStatus | string;
  readonly startDate?: Date;
  readonly stopDate?: Date;
  readonly error?: string;
  readonly cause?: string;
  /** Items of the Distributed Map run, when it started. */
  readonly items?: { total: number; succeeded: number; failed: number; running: number; pending: number };
  readonly output?: unknown;
}

export async function describeRun(sfn: SFNClient, executionArn: string): Promise<RunStatus> {
  const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
  return { ...fromExecution(execution), items: await mapRunItems(sfn, executionArn) };
}

function fromExecution(execution: DescribeExecutionCommandOutput): RunStatus {
  return {
    executionArn: execution.executionArn!,
    runId: execution.name ?? execution.executionArn!.split(':').pop()!,
    status: execution.status ?? 'UNKNOWN',
    startDate: execution.startDate,
    stopDate: execution.stopDate,
    error: execution.error,
    cause: execution.cause,
    output: parseJson(execution.output),
  };
}

async function mapRunItems(sfn: SFNClient, executionArn: string): Promise<RunStatus['items']> {
  const { mapRuns } = await sfn.send(new ListMapRunsCommand({ executionArn }));
  const arn = mapRuns?.[0]?.mapRunArn;
  if (!arn) return undefined;
  const { itemCounts } = await sfn.send(new DescribeMapRunCommand({ mapRunArn: arn }));
  if (!itemCounts) return undefined;
  return {
    total: itemCounts.total ?? 0,
    succeeded: itemCounts.succeeded ?? 0,
    failed: (itemCounts.failed ?? 0) + (itemCounts.timedOut ?? 0) + (itemCounts.aborted ?? 0),
    running: itemCounts.running ?? 0,
    pending: itemCounts.pending ?? 0,
  };
}

/** Poll until the execution stops, reporting map-run item counts as progress. */
export async function followRun(sfn: SFNClient, executionArn: string, options: { pollMs?: number; onProgress?: (p: ProgressUpdate) => void } = {}): Promise<RunStatus> {
  for (;;) {
    const status = await describeRun(sfn, executionArn);
    if (status.items) {
      const done = status.items.succeeded + status.items.failed;
      options.onProgress?.({ phase: done < status.items.total ? 'featurize' : 'aggregate', total: status.items.total, done, failed: status.items.failed });
    }
    if (status.status !== 'RUNNING' && status.status !== 'PENDING_REDRIVE') return status;
    await sleep(options.pollMs ?? 5_000);
  }
}

/** The execution ARN of a run id, from the state machine's ARN (the run id is the execution name). */
export function executionArnOf(stateMachineArn: string, runId: string): string {
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${runId}`;
}

/** Download `results/<runId>/` to `<outDir>/<runId>/`; returns the file names. */
export async function downloadResults(s3: S3Client, bucket: string, runId: string, outDir: string): Promise<{ dir: string; files: string[] }> {
  const dir = join(resolve(outDir), runId);
  return { dir, files: await copyPrefix(s3, runLayout(runId).outputPrefix, dir, bucket) };
}

export interface FailureExplanation {
  readonly error?: string;
  readonly cause?: string;
  /** Per-image and per-batch reasons, from report.json or the map run's own results. */
  readonly failedItems: { key: string; reason: string }[];
}

/** Why a run failed: the execution's error, and the failed items' reasons where they were written. */
export async function explainFailure(s3: S3Client, bucket: string, status: RunStatus): Promise<FailureExplanation> {
  const runId = status.runId;
  const report = await readJsonIfPresent<RunReport>(s3, bucket, runLayout(runId).resultKey('report'));
  if (report) return { error: status.error, cause: status.cause, failedItems: report.failed.items };
  const failedItems: { key: string; reason: string }[] = [];
  const manifests = (await listAllObjects(s3, bucket, runLayout(runId).mapResultsPrefix)).filter((o) => o.Key!.endsWith('/manifest.json'));
  const readMapFile = (b: string, key: string) => readText(s3, b, key);
  for (const manifest of manifests) {
    const { outcomes } = await readMapRunResults(await readMapFile(bucket, manifest.Key!), readMapFile);
    for (const outcome of outcomes) {
      if (outcome.kind === 'succeeded') failedItems.push(...outcome.summary.failed);
      else {
        const reason = batchFailureReason(outcome);
        if (outcome.inputKeys?.length) failedItems.push(...outcome.inputKeys.map((key) => ({ key, reason })));
        else failedItems.push({ key: outcome.executionArn ?? '(batch)', reason });
      }
    }
  }
  return { error: status.error, cause: status.cause, failedItems };
}

function parseJson(text: string | undefined): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
