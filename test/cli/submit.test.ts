/**
 * `submit`, `status`, `results` against a real S3 server on loopback, with Step Functions and
 * CloudFormation mocked (aws-sdk-client-mock).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  DescribeMapRunCommand,
  ListExecutionsCommand,
  ListMapRunsCommand,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { resolveDeployment, startRun } from '../../cli/deployed';
import { localETags, UPLOAD_PART_SIZE } from '../../client/dataset-folder';
import { uploadFolder } from '../../client/folder-upload';
import { buildProgram } from '../../cli/program';
import { LocalS3Server, startLocalS3Server } from '../../local/emulator/s3/s3-server';
import { pcaModelJson } from '../../lambdas/analysis/pca-model';
import { fitPca, ScatterAccumulator } from '../../lambdas/analysis/streaming-pca';

const BUCKET = 'deployed-bucket';
const SM_ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:FruitsPipelineStateMachine';
const execArn = (name: string) => `arn:aws:states:eu-west-1:123456789012:execution:FruitsPipelineStateMachine:${name}`;

describe('deployed stack commands', () => {
  let s3: LocalS3Server;
  let work: string;
  const sfn = mockClient(SFNClient);
  const cfn = mockClient(CloudFormationClient);
  const clients = () => ({ s3: s3.client, sfn: new SFNClient({ region: 'eu-west-1' }), cfn: new CloudFormationClient({ region: 'eu-west-1' }) });

  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET] });
    work = mkdtempSync(join(tmpdir(), 'fruits-submit-'));
  });
  afterAll(async () => {
    await s3.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    sfn.reset();
    cfn.reset();
  });

  function dataset(name: string): string {
    const dir = join(work, name);
    mkdirSync(join(dir, 'Apple'), { recursive: true });
    mkdirSync(join(dir, 'Kiwi'), { recursive: true });
    writeFileSync(join(dir, 'Apple', 'a.jpg'), 'apple');
    writeFileSync(join(dir, 'Kiwi', 'k.jpg'), 'kiwi');
    // Over one part: uploaded multipart.
    writeFileSync(join(dir, 'Kiwi', 'big.jpg'), Buffer.alloc(UPLOAD_PART_SIZE + 1000, 7));
    return dir;
  }

  it('finds the bucket and state machine in the stack outputs', async () => {
    cfn.on(DescribeStacksCommand, { StackName: 'FruitsPipeline' }).resolves({
      Stacks: [
        {
          StackName: 'FruitsPipeline',
          CreationTime: new Date(),
          StackStatus: 'CREATE_COMPLETE',
          Outputs: [
            { OutputKey: 'BucketName', OutputValue: BUCKET },
            { OutputKey: 'StateMachineArn', OutputValue: SM_ARN },
          ],
        },
      ],
    });
    await expect(resolveDeployment(new CloudFormationClient({}), { stackName: 'FruitsPipeline' })).resolves.toEqual({
      bucket: BUCKET,
      stateMachineArn: SM_ARN,
    });
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'X', CreationTime: new Date(), StackStatus: 'CREATE_COMPLETE', Outputs: [] }] });
    await expect(resolveDeployment(new CloudFormationClient({}), { stackName: 'X' })).rejects.toThrow(/--bucket/);
  });

  it('uploads a folder (multipart above the part size) and resumes: unchanged objects are skipped', async () => {
    const dir = dataset('resume');
    const first = await uploadFolder(s3.client, { bucket: BUCKET, prefix: 'input/resume/', dir });
    expect(first).toMatchObject({ uploaded: 3, skipped: 0 });
    const got = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'input/resume/Kiwi/big.jpg' }));
    expect(
      createHash('md5')
        .update(await got.Body!.transformToByteArray())
        .digest('hex'),
    ).toBe(
      createHash('md5')
        .update(readFileSync(join(dir, 'Kiwi', 'big.jpg')))
        .digest('hex'),
    );

    writeFileSync(join(dir, 'Apple', 'a.jpg'), 'a changed apple');
    const second = await uploadFolder(s3.client, { bucket: BUCKET, prefix: 'input/resume/', dir });
    expect(second).toMatchObject({ uploaded: 1, skipped: 2 });
  });

  it('never uploads a _START file found in the folder (it would start a run on a half-uploaded dataset)', async () => {
    const dir = dataset('with-markers');
    writeFileSync(join(dir, '_START'), '');
    writeFileSync(join(dir, 'Kiwi', '_START'), '');
    const upload = await uploadFolder(s3.client, { bucket: BUCKET, prefix: 'input/with-markers/', dir });
    expect(upload).toMatchObject({ uploaded: 3 });
    expect(upload.markersLeftOut.sort()).toEqual(['Kiwi/_START', '_START']);
    for (const key of ['input/with-markers/_START', 'input/with-markers/Kiwi/_START']) {
      await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    }
  });

  it('refuses a run id or dataset name that could leave its folder, before anything is read or sent', async () => {
    const dir = dataset('refused');
    for (const args of [
      ['submit', dir, ...deployedFlags, '--dataset', '../results/x'],
      ['submit', dir, ...deployedFlags, '--no-trigger', '--run-id', '../../x'],
      ['status', '../../x', ...deployedFlags],
      ['results', 'a/b', ...deployedFlags],
      ['run', dir, '--run-id', '..'],
    ]) {
      await expect(runCli(args)).rejects.toMatchObject({
        code: 'commander.invalidArgument',
        message: expect.stringMatching(/is not valid: use 1-80 characters/),
      });
    }
    expect(sfn.calls()).toHaveLength(0);
  });

  it('computes the multipart ETag S3 reports', async () => {
    const file = join(work, 'two-parts.bin');
    const body = Buffer.alloc(UPLOAD_PART_SIZE + 5, 1);
    writeFileSync(file, body);
    const partMd5s = Buffer.concat([body.subarray(0, UPLOAD_PART_SIZE), body.subarray(UPLOAD_PART_SIZE)].map((p) => createHash('md5').update(p).digest()));
    expect((await localETags(file, body.length))[0]).toBe(`${createHash('md5').update(partMd5s).digest('hex')}-2`);
  });

  it('starts the run through the upload trigger: writes _START, finds the execution by its input', async () => {
    sfn.on(ListExecutionsCommand).resolves({
      executions: [
        { executionArn: execArn('other'), stateMachineArn: SM_ARN, name: 'other', status: 'RUNNING', startDate: new Date() },
        { executionArn: execArn('ours'), stateMachineArn: SM_ARN, name: 'ours', status: 'RUNNING', startDate: new Date() },
      ],
    });
    sfn
      .on(DescribeExecutionCommand, { executionArn: execArn('other') })
      .resolves({ input: JSON.stringify({ trigger: { bucket: BUCKET, key: 'input/else/_START' } }) } as never);
    sfn
      .on(DescribeExecutionCommand, { executionArn: execArn('ours') })
      .resolves({ input: JSON.stringify({ trigger: { bucket: BUCKET, key: 'input/trig/_START' } }) } as never);
    const arn = await startRun(clients(), { bucket: BUCKET, stateMachineArn: SM_ARN }, { dataset: 'trig', trigger: true, pollMs: 10 });
    expect(arn).toBe(execArn('ours'));
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'input/trig/_START' }))).resolves.toMatchObject({ ContentLength: 0 });
  });

  async function runCli(args: string[]): Promise<{ stdout: string; exitCode: number }> {
    let stdout = '';
    const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
    const writeErr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    process.exitCode = 0;
    try {
      await buildProgram(clients).parseAsync(['node', 'fruits', ...args]);
    } finally {
      write.mockRestore();
      writeErr.mockRestore();
    }
    const exitCode = Number(process.exitCode ?? 0);
    process.exitCode = 0;
    return { stdout, exitCode };
  }
  const deployedFlags = ['--bucket', BUCKET, '--state-machine-arn', SM_ARN];

  it('submit --no-trigger: uploads, starts the execution, follows the map run, downloads the results', async () => {
    const dir = dataset('fruits');
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'results/run-ok/features.csv', Body: 'key,label,pc_1\r\n' }));
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'results/run-ok/report.json', Body: '{}' }));
    sfn.on(StartExecutionCommand).resolves({ executionArn: execArn('run-ok'), startDate: new Date() });
    sfn
      .on(DescribeExecutionCommand, { executionArn: execArn('run-ok') })
      .resolvesOnce({ executionArn: execArn('run-ok'), name: 'run-ok', status: 'RUNNING', startDate: new Date() } as never)
      .resolves({
        executionArn: execArn('run-ok'),
        name: 'run-ok',
        status: 'SUCCEEDED',
        startDate: new Date(),
        stopDate: new Date(),
        output: '{"rows":3}',
      } as never);
    sfn.on(ListMapRunsCommand).resolves({
      mapRuns: [
        {
          mapRunArn: 'arn:aws:states:eu-west-1:123456789012:mapRun:x/FeaturizeImages:1',
          executionArn: execArn('run-ok'),
          stateMachineArn: SM_ARN,
          startDate: new Date(),
        },
      ],
    });
    sfn
      .on(DescribeMapRunCommand)
      .resolves({ itemCounts: { total: 3, succeeded: 3, failed: 0, running: 0, pending: 0, timedOut: 0, aborted: 0, resultsWritten: 3 } } as never);

    const out = join(work, 'out');
    const { stdout, exitCode } = await runCli([
      'submit',
      dir,
      ...deployedFlags,
      '--no-trigger',
      '--run-id',
      'run-ok',
      '--poll-seconds',
      '1',
      '--json',
      '--out',
      out,
    ]);
    expect(exitCode).toBe(0);
    const start = sfn.commandCalls(StartExecutionCommand)[0].args[0].input;
    expect(start).toMatchObject({ stateMachineArn: SM_ARN, name: 'run-ok' });
    expect(JSON.parse(start.input!)).toEqual({ bucket: BUCKET, inputPrefix: 'input/fruits/', runId: 'run-ok' });
    const printed = JSON.parse(stdout);
    expect(printed).toMatchObject({ status: 'SUCCEEDED', runId: 'run-ok', items: { total: 3, succeeded: 3 } });
    expect(readFileSync(join(out, 'run-ok', 'features.csv'), 'utf8')).toBe('key,label,pc_1\r\n');
    // HEAD, not GET: an unread GET body would keep the server streaming after the test ends.
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'input/fruits/Kiwi/big.jpg' }))).resolves.toMatchObject({
      ContentLength: UPLOAD_PART_SIZE + 1000,
    });
  });

  it('submit in its default mode (the upload trigger): uploads, writes _START, finds the execution the rule started, follows it, downloads the results', async () => {
    const dir = dataset('triggered');
    const outputs: Record<string, Buffer> = {
      'features.csv': Buffer.from('key,label,pc_1\r\ninput/triggered/Kiwi/k.jpg,Kiwi,0.5\r\n'),
      'report.json': Buffer.from('{"status":"SUCCEEDED"}'),
      'knn-references/part-00000.fsh': Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) % 256)),
    };
    for (const [name, body] of Object.entries(outputs))
      await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `results/evt-1/${name}`, Body: body }));
    // What EventBridge started: a generated execution name, the marker in its input. Dated when listed (the CLI skips older ones).
    sfn.on(ListExecutionsCommand).callsFake(() => ({
      executions: [{ executionArn: execArn('evt-1'), stateMachineArn: SM_ARN, name: 'evt-1', status: 'RUNNING', startDate: new Date() }],
    }));
    sfn.on(DescribeExecutionCommand, { executionArn: execArn('evt-1') }).resolves({
      executionArn: execArn('evt-1'),
      name: 'evt-1',
      status: 'SUCCEEDED',
      input: JSON.stringify({ trigger: { bucket: BUCKET, key: 'input/triggered/_START' } }),
      startDate: new Date(),
      stopDate: new Date(),
      output: '{"rows":2}',
    } as never);
    sfn.on(ListMapRunsCommand).resolves({ mapRuns: [] });

    const out = join(work, 'triggered-out');
    const { stdout, exitCode } = await runCli(['submit', dir, ...deployedFlags, '--poll-seconds', '1', '--json', '--out', out]);
    expect(exitCode).toBe(0);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
    expect(sfn.commandCalls(ListExecutionsCommand)[0].args[0].input).toMatchObject({ stateMachineArn: SM_ARN });
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'input/triggered/_START' }))).resolves.toMatchObject({ ContentLength: 0 });
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'input/triggered/Kiwi/k.jpg' }))).resolves.toMatchObject({ ContentLength: 4 });
    const printed = JSON.parse(stdout);
    expect(printed).toMatchObject({ status: 'SUCCEEDED', runId: 'evt-1', downloaded: { dir: join(out, 'evt-1') } });
    expect([...printed.downloaded.files].sort()).toEqual(Object.keys(outputs).sort());
    for (const [name, body] of Object.entries(outputs)) expect(readFileSync(join(out, 'evt-1', name)).equals(body)).toBe(true);
  });

  it("results <runId> of a finished run: downloads every object of results/<runId>/, byte for byte, replacing an older copy, nothing of another run's", async () => {
    const outputs: Record<string, Buffer> = {
      'features.csv': Buffer.from('key,label,pc_1\r\n'),
      'report.html': Buffer.from('<!doctype html><title>Run run-done</title>'),
      'pca-model.json': Buffer.from('{"k":2}'),
      'embeddings.parquet': Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31) % 256)),
    };
    for (const [name, body] of Object.entries(outputs))
      await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `results/run-done/${name}`, Body: body }));
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'results/run-done-2/features.csv', Body: 'another run' }));
    sfn.on(DescribeExecutionCommand, { executionArn: execArn('run-done') }).resolves({
      executionArn: execArn('run-done'),
      name: 'run-done',
      status: 'SUCCEEDED',
      startDate: new Date(),
      stopDate: new Date(),
      output: '{"rows":0}',
    } as never);
    sfn.on(ListMapRunsCommand).resolves({ mapRuns: [] });
    const out = join(work, 'results-out');
    mkdirSync(join(out, 'run-done'), { recursive: true });
    writeFileSync(join(out, 'run-done', 'stale.txt'), 'from an older download');

    const { stdout, exitCode } = await runCli(['results', 'run-done', ...deployedFlags, '--out', out]);
    expect(exitCode).toBe(0);
    expect(stdout).toContain('Run run-done: SUCCEEDED');
    expect(readdirSync(join(out, 'run-done')).sort()).toEqual(Object.keys(outputs).sort());
    for (const [name, body] of Object.entries(outputs)) expect(readFileSync(join(out, 'run-done', name)).equals(body)).toBe(true);
  });

  it('submit --model-from: checks the model in the bucket before uploading, then starts the execution directly with pcaModel', async () => {
    const dir = dataset('projected');
    const put = (Key: string, Body: string) => s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }));
    await put('results/not-a-model/pca-model.json', JSON.stringify({ format: 'sklearn' }));
    const accumulator = new ScatterAccumulator(3);
    accumulator.addRows(Float32Array.from([1, 2, 3, 2, 1, 0, 5, 5, 1, 0, 3, 3]), 4);
    const fit = fitPca(accumulator.moments(), { components: 2 });
    const parts = [
      { file: 'knn-references/part-00000.fsh', count: 1, bytes: 40, sha256: 'a'.repeat(64) },
      { file: 'knn-references/part-00001.fsh', count: 1, bytes: 41, sha256: 'b'.repeat(64) },
    ];
    const model = pcaModelJson(fit, 'model-run', 'pixels-16x16', { modelIds: [], imageSizes: [16], backends: [] }, { components: 2 }, { count: 2, parts });
    const partBody = (bytes: number) => 'x'.repeat(bytes);
    await put('results/model-run/pca-model.json', JSON.stringify(model));
    // One part missing; one part of another size than the model states; one file (the model names its references so) missing.
    await put('results/lost-references/pca-model.json', JSON.stringify({ ...model, runId: 'lost-references' }));
    await put('results/lost-references/knn-references/part-00000.fsh', partBody(40));
    await put('results/resized-references/pca-model.json', JSON.stringify({ ...model, runId: 'resized-references' }));
    await put('results/resized-references/knn-references/part-00000.fsh', partBody(40));
    await put('results/resized-references/knn-references/part-00001.fsh', partBody(42));
    const oneFile = { file: 'knn-references.fsh', count: 2, sha256: 'a'.repeat(64) };
    await put('results/lost-file/pca-model.json', JSON.stringify({ ...model, runId: 'lost-file', knnReferences: oneFile }));
    for (const [modelFrom, message] of [
      ['no-such-run', /^--model-from no-such-run: s3:\/\/deployed-bucket\/results\/no-such-run\/pca-model.json does not exist: did run no-such-run succeed\?$/],
      ['not-a-model', /^--model-from not-a-model: .* is not a fruits-pipeline\/pca-model@1 file \(format "sklearn"\)/],
      ['work/x/pca-model.json', /^--model-from work\/x\/pca-model.json: pcaModel "work\/x\/pca-model.json" is not valid: use a key under results\//],
      ['../x', /^--model-from \.\.\/x: pcaModel "\.\.\/x" is not valid/],
      [
        'lost-references',
        /^--model-from lost-references: the model's references s3:\/\/deployed-bucket\/results\/lost-references\/knn-references\/part-00001.fsh does not exist$/,
      ],
      [
        'resized-references',
        /^--model-from resized-references: s3:\/\/deployed-bucket\/results\/resized-references\/knn-references\/part-00001.fsh is not the references file of the model of run resized-references \(42 bytes, pca-model.json states 41\)$/,
      ],
      ['lost-file', /^--model-from lost-file: the model's references s3:\/\/deployed-bucket\/results\/lost-file\/knn-references.fsh does not exist$/],
    ] as const) {
      await expect(runCli(['submit', dir, ...deployedFlags, '--model-from', modelFrom, '--no-wait'])).rejects.toThrow(message);
    }
    // Nothing was uploaded and no run started.
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'input/projected/Apple/a.jpg' }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    expect(sfn.calls()).toHaveLength(0);

    // Parts of the stated sizes: the aggregate step checks their bytes where it reads them.
    await put('results/model-run/knn-references/part-00000.fsh', partBody(40));
    await put('results/model-run/knn-references/part-00001.fsh', partBody(41));
    sfn.on(StartExecutionCommand).resolves({ executionArn: execArn('projected-1'), startDate: new Date() });
    const { stdout, exitCode } = await runCli(['submit', dir, ...deployedFlags, '--model-from', 'model-run', '--no-wait', '--json']);
    expect(exitCode).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ executionArn: execArn('projected-1') });
    // Started directly even though the trigger is the default: a _START marker cannot name a model.
    const start = sfn.commandCalls(StartExecutionCommand)[0].args[0].input;
    expect(JSON.parse(start.input!)).toEqual({ bucket: BUCKET, inputPrefix: 'input/projected/', pcaModel: 'results/model-run/pca-model.json' });
    expect(sfn.commandCalls(ListExecutionsCommand)).toHaveLength(0);
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'input/projected/_START' }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    await expect(
      startRun(clients(), { bucket: BUCKET, stateMachineArn: SM_ARN }, { dataset: 'x', trigger: true, pcaModel: 'results/a/pca-model.json' }),
    ).rejects.toThrow(/cannot project with a saved model/);
  });

  it('status/results of a failed run print the cause and the failed items from the map results', async () => {
    const prefix = 'work/run-bad/map-results/0000/';
    const succeeded = [
      {
        ExecutionArn: 'c1',
        Status: 'SUCCEEDED',
        Input: '{"Items":[{"Key":"input/f/A/1.jpg"},{"Key":"input/f/A/bad.jpg"}]}',
        Output: JSON.stringify({
          shard: 'work/run-bad/shards/x.fsh',
          count: 1,
          failed: [{ key: 'input/f/A/bad.jpg', reason: 'not a decodable image' }],
          failedCount: 1,
          skipped: [],
          skippedCount: 0,
          truncated: false,
        }),
      },
    ];
    const failed = [
      { ExecutionArn: 'c2', Status: 'FAILED', Input: '{"Items":[{"Key":"input/f/B/2.jpg"}]}', Error: 'States.Timeout', Cause: 'child timed out' },
    ];
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}SUCCEEDED_0.json`, Body: JSON.stringify(succeeded) }));
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}FAILED_0.json`, Body: JSON.stringify(failed) }));
    await s3.client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: `${prefix}manifest.json`,
        Body: JSON.stringify({
          DestinationBucket: BUCKET,
          MapRunArn: 'm',
          ResultFiles: { SUCCEEDED: [{ Key: `${prefix}SUCCEEDED_0.json`, Size: 1 }], FAILED: [{ Key: `${prefix}FAILED_0.json`, Size: 1 }], PENDING: [] },
        }),
      }),
    );
    sfn.on(DescribeExecutionCommand, { executionArn: execArn('run-bad') }).resolves({
      executionArn: execArn('run-bad'),
      name: 'run-bad',
      status: 'FAILED',
      startDate: new Date(),
      error: 'States.ExceedToleratedFailureThreshold',
      cause: 'too many failed items',
    } as never);
    sfn.on(ListMapRunsCommand).resolves({ mapRuns: [] });

    const status = await runCli(['status', 'run-bad', ...deployedFlags]);
    expect(status.stdout).toContain('Run run-bad: FAILED');
    expect(status.stdout).toContain('States.ExceedToleratedFailureThreshold: too many failed items');

    const results = await runCli(['results', 'run-bad', ...deployedFlags]);
    expect(results.exitCode).toBe(1);
    expect(results.stdout).toContain('input/f/A/bad.jpg: not a decodable image');
    expect(results.stdout).toContain('input/f/B/2.jpg: batch failed: States.Timeout: child timed out');
  });
});
