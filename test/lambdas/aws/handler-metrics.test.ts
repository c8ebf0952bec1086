/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 */
/**
 * What the handlers tell CloudWatch: the real Lambda entry points (env read at import, Powertools
 * set up once) run one batch and one run against S3 on loopback, and their stdout is captured.
 * Checked: one EMF record per invocation with the documented namespace, dimension, names and units
 * (lambdas/contracts/metrics.ts); log lines with the Lambda context injected; and the Tracer as a
 * no-op outside Lambda (no UDP socket to an X-Ray daemon, nothing on stderr).
 */
import dgram from 'node:dgram';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import type { AggregateResult } from '../../../lambdas/aggregate/aggregate-run';
import type { FeaturizeBatchSummary, RunSettings } from '../../../lambdas/contracts/events';
import { BATCH_METRICS, MEMORY_METRIC, METRICS_NAMESPACE, RUN_METRICS } from '../../../lambdas/contracts/metrics';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';

const BUCKET = 'fruits-metrics-test';
const SERVICE = 'FruitsPipelineTest';
const run: RunSettings = { bucket: BUCKET, inputPrefix: 'input/m/', runId: 'run-m', outputPrefix: 'results/run-m/', workPrefix: 'work/run-m/' };

type Handler<R> = (event: unknown, context?: Record<string, unknown>) => Promise<R>;
type EmfRecord = {
  _aws: { Timestamp: number; CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] };
  [key: string]: unknown;
};

/** A Lambda context as the runtime passes it (what Logger.addContext reads). */
const context = (fn: string, requestId: string) => ({
  functionName: `${SERVICE}-${fn}`,
  functionVersion: '$LATEST',
  invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${SERVICE}-${fn}`,
  memoryLimitInMB: '3008',
  awsRequestId: requestId,
  logGroupName: `/aws/lambda/${SERVICE}-${fn}`,
  logStreamName: 'stream',
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 300_000,
});

/** Loads a handler module fresh (its init reads process.env), as a new Lambda container would. */
function loadHandler<R>(module: 'featurize' | 'aggregate'): Handler<R> {
  let entry: { handler: Handler<R> } | undefined;
  jest.isolateModules(() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- jest.isolateModules needs a synchronous load: the handler reads its env at import
    entry = require(`../../../lambdas/${module}/handler`);
  });
  return entry!.handler;
}

/** Runs `call`, returning what it wrote to stdout and stderr, line by line. */
async function captureOutput<T>(call: () => Promise<T>): Promise<{ result: T; stdout: string[]; stderr: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const spy = (stream: NodeJS.WriteStream, into: string[]) =>
    jest.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      into.push(...String(chunk).split('\n').filter(Boolean));
      return true;
    });
  const stdout = spy(process.stdout, out);
  const stderr = spy(process.stderr, err);
  try {
    return { result: await call(), stdout: out, stderr: err };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

const parsed = (lines: string[]) => lines.flatMap((line) => (line.startsWith('{') ? [JSON.parse(line) as Record<string, unknown>] : []));
const emfRecords = (lines: string[]) => parsed(lines).filter((record): record is EmfRecord => '_aws' in record);
const units = (record: EmfRecord) => Object.fromEntries(record._aws.CloudWatchMetrics[0].Metrics.map((metric) => [metric.Name, metric.Unit]));

describe('handler metrics, logs and traces (real entry points, S3 on loopback)', () => {
  let s3: LocalS3Server;
  const saved = { ...process.env };
  let udpSockets: jest.SpyInstance;

  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET] });
    const jpeg = (r: number, g: number, b: number) =>
      sharp({ create: { width: 24, height: 24, channels: 3, background: { r, g, b } } })
        .jpeg()
        .toBuffer();
    const objects: Record<string, Buffer> = {
      'input/m/Apple/1.jpg': await jpeg(200, 20, 20),
      'input/m/Apple/2.jpg': await jpeg(190, 30, 25),
      'input/m/Kiwi/1.jpg': await jpeg(90, 120, 40),
      'input/m/Kiwi/2.jpg': await jpeg(80, 130, 50),
      'input/m/Kiwi/broken.jpg': Buffer.from('not an image'),
      'input/m/Kiwi/notes.txt': Buffer.from('hello'),
    };
    for (const [Key, Body] of Object.entries(objects)) await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }));
    // What the stack sets on the functions (observabilityEnvironment), nothing of the local run's.
    Object.assign(process.env, s3.env, {
      FEATURIZER: 'pixels',
      PCA_COMPONENTS: '2',
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      POWERTOOLS_SERVICE_NAME: SERVICE,
      // Set by the Lambda runtime; Powertools reports cold starts only for on-demand environments.
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    });
    for (const name of ['POWERTOOLS_METRICS_DISABLED', 'POWERTOOLS_TRACE_ENABLED', 'POWERTOOLS_DEV', 'AWS_EXECUTION_ENV']) delete process.env[name];
    // The X-Ray SDK sends segments over UDP to the daemon: no socket may be opened here.
    udpSockets = jest.spyOn(dgram, 'createSocket');
  });
  afterAll(async () => {
    process.env = saved;
    udpSockets?.mockRestore();
    await s3?.close();
  });

  it('featurize then aggregate: one EMF record each, documented names, units and dimension; context in the logs; no traces sent', async () => {
    const featurize = loadHandler<FeaturizeBatchSummary>('featurize');
    const Items = ['Apple/1.jpg', 'Apple/2.jpg', 'Kiwi/1.jpg', 'Kiwi/2.jpg', 'Kiwi/broken.jpg', 'Kiwi/notes.txt'].map((key) => ({
      Key: `input/m/${key}`,
      Size: 100,
      ETag: `"${key}"`,
    }));
    const batch = await captureOutput(() => featurize({ Items, BatchInput: run }, context('featurize', 'req-featurize-1')));
    expect(batch.result).toMatchObject({ count: 4, failedCount: 1, skippedCount: 1 });

    const [batchRecord, ...moreBatchRecords] = emfRecords(batch.stdout);
    expect(moreBatchRecords).toEqual([]);
    expect(batchRecord._aws.CloudWatchMetrics).toEqual([{ Namespace: 'FruitsPipeline', Dimensions: [['service', 'function']], Metrics: expect.any(Array) }]);
    expect(batchRecord).toMatchObject({
      service: SERVICE,
      function: 'featurize',
      [BATCH_METRICS.imagesProcessed]: 4,
      [BATCH_METRICS.imagesFailed]: 1,
      [BATCH_METRICS.imagesSkipped]: 1,
      [BATCH_METRICS.runtimeFallback]: 0,
    });
    expect(units(batchRecord)).toEqual({
      ImagesProcessed: 'Count',
      ImagesFailed: 'Count',
      ImagesSkipped: 'Count',
      ReadMsPerImage: 'Milliseconds',
      DecodeMsPerImage: 'Milliseconds',
      InferenceMsPerImage: 'Milliseconds',
      BatchDurationMs: 'Milliseconds',
      InferenceRuntimeFallback: 'Count',
      MaxMemoryUsedMb: 'Megabytes',
    });
    for (const name of [BATCH_METRICS.readMsPerImage, BATCH_METRICS.decodeMsPerImage, BATCH_METRICS.inferenceMsPerImage, BATCH_METRICS.batchDuration]) {
      expect(batchRecord[name]).toEqual(expect.any(Number));
      expect(batchRecord[name] as number).toBeGreaterThanOrEqual(0);
    }
    expect(batchRecord[BATCH_METRICS.batchDuration] as number).toBeGreaterThanOrEqual(batchRecord[BATCH_METRICS.inferenceMsPerImage] as number);
    expect(batchRecord[MEMORY_METRIC] as number).toBeGreaterThan(10);

    // Logger: the Lambda context (request id, cold start) on the handler's own lines.
    const featurized = parsed(batch.stdout).find((line) => line.message === 'batch featurized');
    expect(featurized).toMatchObject({
      service: SERVICE,
      function: 'featurize',
      function_request_id: 'req-featurize-1',
      function_name: `${SERVICE}-featurize`,
      cold_start: true,
    });

    // The aggregate step over that batch's shard, as the Map's ResultWriter would describe it.
    const root = `${run.workPrefix}map-results/run/`;
    const record = {
      ExecutionArn: 'arn:aws:states:us-east-1:123456789012:execution:Pipeline/FeaturizeImages:child-1',
      Input: JSON.stringify({ Items, BatchInput: run }),
      InputDetails: { Included: true },
      Name: 'child-1',
      Status: 'SUCCEEDED',
      Output: JSON.stringify(batch.result),
    };
    const put = (Key: string, Body: string) => s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }));
    await put(`${root}SUCCEEDED_0.json`, JSON.stringify([record]));
    const mapRunArn = 'arn:aws:states:us-east-1:123456789012:mapRun:Pipeline/FeaturizeImages:run';
    await put(
      `${root}manifest.json`,
      JSON.stringify({
        DestinationBucket: BUCKET,
        MapRunArn: mapRunArn,
        ResultFiles: { SUCCEEDED: [{ Key: `${root}SUCCEEDED_0.json`, Size: 1 }], FAILED: [], PENDING: [] },
      }),
    );
    const aggregate = loadHandler<AggregateResult>('aggregate');
    const event = { ...run, mapResult: { MapRunArn: mapRunArn, ResultWriterDetails: { Bucket: BUCKET, Key: `${root}manifest.json` } } };
    const runOutput = await captureOutput(() => aggregate(event, context('aggregate', 'req-aggregate-1')));
    expect(runOutput.result).toMatchObject({ rows: 4, components: 2 });

    const [runRecord, ...moreRunRecords] = emfRecords(runOutput.stdout);
    expect(moreRunRecords).toEqual([]);
    expect(runRecord._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'FruitsPipeline', Dimensions: [['service', 'function']] });
    expect(runRecord).toMatchObject({
      service: SERVICE,
      function: 'aggregate',
      [RUN_METRICS.rows]: 4,
      [RUN_METRICS.components]: 2,
      [RUN_METRICS.explainedVariance]: runOutput.result.explainedVariance,
      [RUN_METRICS.imagesFailed]: 1,
      [RUN_METRICS.imagesSkipped]: 1,
      [RUN_METRICS.failedBatches]: 0,
    });
    // No classifier ran, so no accuracy metric.
    expect(units(runRecord)).toEqual({
      RunRows: 'Count',
      RunComponents: 'Count',
      RunExplainedVariance: 'None',
      RunImagesFailed: 'Count',
      RunImagesSkipped: 'Count',
      RunFailedBatches: 'Count',
      MaxMemoryUsedMb: 'Megabytes',
    });
    expect(parsed(runOutput.stdout).find((line) => line.message === 'aggregate done')).toMatchObject({
      function: 'aggregate',
      function_request_id: 'req-aggregate-1',
      cold_start: true,
    });

    // Tracer: off outside Lambda, silently.
    expect(udpSockets).not.toHaveBeenCalled();
    for (const line of [...batch.stderr, ...runOutput.stderr, ...batch.stdout, ...runOutput.stdout]) expect(line).not.toMatch(/x-?ray|segment|daemon/i);
    expect([...batch.stderr, ...runOutput.stderr]).toEqual([]);
  });

  it('a failed invocation still flushes its record (memory), then throws', async () => {
    const featurize = loadHandler<FeaturizeBatchSummary>('featurize');
    // The outcome as a value: resolved or rejected, so the expectations below always run.
    const { result: outcome, stdout } = await captureOutput(() =>
      featurize({ Items: [] }, context('featurize', 'req-bad')).then(
        (value) => ({ threw: false as const, value }),
        (error: unknown) => ({ threw: true as const, error }),
      ),
    );
    expect(outcome).toEqual({
      threw: true,
      error: expect.objectContaining({ name: 'MalformedEventError', message: expect.stringMatching(/^featurize batch event .* BatchInput/) }),
    });
    const [record] = emfRecords(stdout);
    expect(units(record)).toEqual({ MaxMemoryUsedMb: 'Megabytes' });
  });

  it('the local run settings silence EMF and keep the tracer off', async () => {
    const { LOCAL_OBSERVABILITY_ENV } = await import('../../../lambdas/contracts/handler-env');
    Object.assign(process.env, LOCAL_OBSERVABILITY_ENV);
    try {
      const featurize = loadHandler<FeaturizeBatchSummary>('featurize');
      const Items = [{ Key: 'input/m/Kiwi/1.jpg', Size: 100, ETag: '"k1"' }];
      const { result, stdout, stderr } = await captureOutput(() => featurize({ Items, BatchInput: run }));
      expect(result.count).toBe(1);
      expect(emfRecords(stdout)).toEqual([]);
      expect(stderr).toEqual([]);
      expect(udpSockets).not.toHaveBeenCalled();
    } finally {
      for (const name of Object.keys(LOCAL_OBSERVABILITY_ENV)) delete process.env[name];
    }
  });
});
