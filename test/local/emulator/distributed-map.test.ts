import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { AslDefinition, Json, JsonObject } from '../../../local/emulator/asl';
import { MapRunEvent } from '../../../local/emulator/distributed-map';
import { FunctionWorkerPool } from '../../../local/emulator/function-worker-pool';
import { runLocalExecution } from '../../../local/emulator/local-execution';
import { LocalFunction } from '../../../local/emulator/service-integrations';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';

const BUCKET = 'map-test';
const FN_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:Worker';

/** A definition shaped like the pipeline's: Distributed Map over a listing, results in S3, Catch. */
function definition(map: Record<string, unknown> = {}, childRetry: unknown[] = [], work: Record<string, unknown> = {}): AslDefinition {
  return {
    StartAt: 'Map',
    States: {
      Map: {
        Type: 'Map',
        ItemReader: { Resource: 'arn:aws:states:::s3:listObjectsV2', Parameters: { 'Bucket.$': '$.bucket', 'Prefix.$': '$.prefix' } },
        ItemBatcher: { MaxItemsPerBatch: 3, BatchInput: { 'bucket.$': '$.bucket', 'run.$': '$$.Execution.Name' } },
        ItemProcessor: {
          ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
          StartAt: 'Work',
          States: {
            Work: {
              Type: 'Task',
              Resource: 'arn:aws:states:::lambda:invoke',
              Parameters: { FunctionName: FN_ARN, 'Payload.$': '$' },
              OutputPath: '$.Payload',
              ...(childRetry.length ? { Retry: childRetry } : {}),
              End: true,
              ...work,
            },
          },
        },
        ResultWriter: {
          Resource: 'arn:aws:states:::s3:putObject',
          Parameters: { 'Bucket.$': '$.bucket', 'Prefix.$': "States.Format('{}map-results', $.work)" },
        },
        ResultSelector: { 'MapRunArn.$': '$.MapRunArn', 'ResultWriterDetails.$': '$.ResultWriterDetails' },
        ResultPath: '$.mapResult',
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Failed' }],
        Next: 'Done',
        ...map,
      },
      Done: { Type: 'Succeed' },
      Failed: { Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' },
    },
  } as unknown as AslDefinition;
}

type Batch = { Items: JsonObject[]; BatchInput: JsonObject };

describe('Distributed Map emulation', () => {
  let s3: LocalS3Server;
  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET] });
    // 1,005 objects: more than one ListObjectsV2 page.
    const keys = Array.from({ length: 1005 }, (_, i) => `big/${String(i).padStart(4, '0')}.txt`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((Key) => s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: 'x' }))));
    }
    for (let i = 0; i < 10; i++) {
      await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `small/k${i}.txt`, Body: 'y'.repeat(i + 1) }));
    }
  });
  afterAll(() => s3.close());

  async function run(def: AslDefinition, fn: LocalFunction, prefix = 'small/', events: MapRunEvent[] = []) {
    const result = await runLocalExecution(
      { definition: def, functions: new Map([[FN_ARN, fn]]), s3: s3.client, retryIntervalOverrides: { Work: 0 }, onMapRunEvent: (_, e) => events.push(e) },
      'exec-1',
      { bucket: BUCKET, prefix, work: 'work/exec-1/' },
    );
    return result;
  }

  async function readJson(key: string): Promise<Json> {
    const got = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return JSON.parse(await got.Body!.transformToString());
  }

  it('batches listed objects with their S3 metadata and BatchInput, and writes the ResultWriter layout', async () => {
    const batches: Batch[] = [];
    const result = await run(definition(), async (payload) => {
      batches.push(payload as unknown as Batch);
      return { n: (payload as unknown as Batch).Items.length };
    });
    expect(result.status).toBe('SUCCEEDED');
    expect(batches.map((b) => b.Items.length).sort()).toEqual([1, 3, 3, 3]);
    const item = batches.flatMap((b) => b.Items).find((i) => i.Key === 'small/k4.txt')!;
    expect(item).toEqual({
      Key: 'small/k4.txt',
      Size: 5,
      ETag: expect.stringMatching(/^"[0-9a-f]{32}"$/),
      LastModified: expect.any(String),
      StorageClass: 'STANDARD',
    });
    expect(Number.isNaN(Date.parse(item.LastModified as string))).toBe(false);
    expect(batches[0].BatchInput).toEqual({ bucket: BUCKET, run: 'exec-1' });

    const output = (result as { output: JsonObject }).output;
    const mapResult = output.mapResult as { MapRunArn: string; ResultWriterDetails: { Bucket: string; Key: string } };
    const mapRunId = mapResult.MapRunArn.split(':').pop();
    expect(mapResult.MapRunArn).toMatch(/^arn:aws:states:us-east-1:\d{12}:mapRun:FruitsPipeline\/Map:[0-9a-f-]{36}$/);
    expect(mapResult.ResultWriterDetails).toEqual({ Bucket: BUCKET, Key: `work/exec-1/map-results/${mapRunId}/manifest.json` });
    const manifest = (await readJson(mapResult.ResultWriterDetails.Key)) as JsonObject;
    expect(manifest).toEqual({
      DestinationBucket: BUCKET,
      MapRunArn: mapResult.MapRunArn,
      ResultFiles: { FAILED: [], PENDING: [], SUCCEEDED: [{ Key: `work/exec-1/map-results/${mapRunId}/SUCCEEDED_0.json`, Size: expect.any(Number) }] },
    });
    const records = (await readJson(`work/exec-1/map-results/${mapRunId}/SUCCEEDED_0.json`)) as JsonObject[];
    expect(records).toHaveLength(4);
    expect(records[0]).toMatchObject({
      ExecutionArn: expect.stringContaining(':execution:FruitsPipeline/Map:'),
      Status: 'SUCCEEDED',
      Input: expect.any(String),
      Output: expect.any(String),
    });
    expect(JSON.parse(records[0].Input as string).Items.length).toBeGreaterThan(0);
    expect(JSON.parse(records[0].Output as string)).toEqual({ n: expect.any(Number) });
  });

  it('cuts batches at MaxInputBytesPerBatch', async () => {
    const batches: Batch[] = [];
    const def = definition({ ItemBatcher: { MaxItemsPerBatch: 100, MaxInputBytesPerBatch: 400 } });
    const result = await run(def, async (payload) => {
      batches.push(payload as unknown as Batch);
      return {};
    });
    expect(result.status).toBe('SUCCEEDED');
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) expect(Buffer.byteLength(JSON.stringify(b))).toBeLessThanOrEqual(400);
    expect(batches.flatMap((b) => b.Items).length).toBe(10);
  });

  it('reads every page of a listing over 1,000 objects', async () => {
    const keys: string[] = [];
    const events: MapRunEvent[] = [];
    const def = definition({ ItemBatcher: { MaxItemsPerBatch: 250 } });
    const result = await run(
      def,
      async (payload) => {
        keys.push(...(payload as unknown as Batch).Items.map((i) => i.Key as string));
        return {};
      },
      'big/',
      events,
    );
    expect(result.status).toBe('SUCCEEDED');
    expect(new Set(keys).size).toBe(1005);
    expect(events[0]).toMatchObject({ type: 'started', totalItems: 1005, totalBatches: 5 });
  });

  const failOn =
    (bad: string[]): LocalFunction =>
    async (payload) => {
      const keys = (payload as unknown as Batch).Items.map((i) => i.Key);
      if (keys.some((k) => bad.includes(k as string))) {
        const error = new Error(`cannot process ${keys.join(',')}`);
        error.name = 'BatchBroken';
        throw error;
      }
      return {};
    };

  it('tolerates failures within ToleratedFailureCount and records them in FAILED_0.json', async () => {
    // k0 fails: one batch of 3 items.
    const result = await run(definition({ ToleratedFailureCount: 3 }), failOn(['small/k0.txt']));
    expect(result.status).toBe('SUCCEEDED');
    const details = ((result as { output: JsonObject }).output.mapResult as JsonObject).ResultWriterDetails as JsonObject;
    const manifest = (await readJson(details.Key as string)) as { ResultFiles: { FAILED: { Key: string }[] } };
    expect(manifest.ResultFiles.FAILED).toHaveLength(1);
    const failed = (await readJson(manifest.ResultFiles.FAILED[0].Key)) as JsonObject[];
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ Status: 'FAILED', Error: 'BatchBroken' });
    expect(JSON.parse(failed[0].Cause as string)).toMatchObject({ errorType: 'BatchBroken', errorMessage: expect.stringContaining('small/k0.txt') });
  });

  describe('ResultWriter WriterConfig, as Step Functions writes it', () => {
    const withWriterConfig = (writerConfig: JsonObject) =>
      definition({
        ToleratedFailureCount: 3,
        ResultWriter: {
          Resource: 'arn:aws:states:::s3:putObject',
          Parameters: { 'Bucket.$': '$.bucket', 'Prefix.$': "States.Format('{}map-results', $.work)" },
          WriterConfig: writerConfig,
        },
      });
    /** The result files of a run whose batch holding k0 fails. */
    async function resultFiles(writerConfig: JsonObject, output: (keys: string[]) => Json): Promise<{ succeeded: string; failed: string }> {
      const result = await run(withWriterConfig(writerConfig), async (payload) => {
        const keys = (payload as unknown as Batch).Items.map((i) => i.Key as string);
        if (keys.includes('small/k0.txt')) throw Object.assign(new Error('broken'), { name: 'BatchBroken' });
        return output(keys);
      });
      expect(result.status).toBe('SUCCEEDED');
      const details = ((result as { output: JsonObject }).output.mapResult as JsonObject).ResultWriterDetails as JsonObject;
      const manifest = (await readJson(details.Key as string)) as { ResultFiles: Record<'SUCCEEDED' | 'FAILED', { Key: string }[]> };
      const text = async (key: string) => (await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
      return { succeeded: await text(manifest.ResultFiles.SUCCEEDED[0].Key), failed: await text(manifest.ResultFiles.FAILED[0].Key) };
    }

    it('COMPACT writes a succeeded child output alone, a failed child whole with its input; JSON is one array', async () => {
      const files = await resultFiles({ Transformation: 'COMPACT', OutputType: 'JSON' }, (keys) => ({ first: keys[0], n: keys.length }));
      const outputs = JSON.parse(files.succeeded) as JsonObject[];
      expect(outputs.map((o) => o.first).sort()).toEqual(['small/k3.txt', 'small/k6.txt', 'small/k9.txt']);
      expect(outputs.every((o) => Object.keys(o).sort().join() === 'first,n')).toBe(true);
      const failed = JSON.parse(files.failed) as JsonObject[];
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ Status: 'FAILED', Error: 'BatchBroken', ExecutionArn: expect.any(String) });
      expect(JSON.parse(failed[0].Input as string).Items.map((i: JsonObject) => i.Key)).toEqual(['small/k0.txt', 'small/k1.txt', 'small/k2.txt']);
    });

    it('FLATTEN spreads an array output into its elements; JSONL writes one entry a line', async () => {
      const files = await resultFiles({ Transformation: 'FLATTEN', OutputType: 'JSONL' }, (keys) => keys);
      const lines = files.succeeded.split('\n');
      expect(lines.map((line) => JSON.parse(line)).sort()).toEqual([
        'small/k3.txt',
        'small/k4.txt',
        'small/k5.txt',
        'small/k6.txt',
        'small/k7.txt',
        'small/k8.txt',
        'small/k9.txt',
      ]);
      expect(files.failed.split('\n').map((line) => JSON.parse(line).Status)).toEqual(['FAILED']);
    });

    it('NONE, the default, writes whole records', async () => {
      const files = await resultFiles({ Transformation: 'NONE' }, (keys) => ({ n: keys.length }));
      expect((JSON.parse(files.succeeded) as JsonObject[])[0]).toMatchObject({ Status: 'SUCCEEDED', Input: expect.any(String), Output: expect.any(String) });
    });
  });

  it('fails with States.ExceedToleratedFailureThreshold beyond the count or percentage', async () => {
    const overCount = await run(definition({ ToleratedFailureCount: 2 }), failOn(['small/k0.txt']));
    expect(overCount).toMatchObject({ status: 'FAILED', error: 'States.ExceedToleratedFailureThreshold' });
    const withinPercent = await run(definition({ ToleratedFailurePercentage: 30 }), failOn(['small/k0.txt']));
    expect(withinPercent.status).toBe('SUCCEEDED');
    const overPercent = await run(definition({ ToleratedFailurePercentage: 29 }), failOn(['small/k0.txt']));
    expect(overPercent).toMatchObject({ status: 'FAILED', error: 'States.ExceedToleratedFailureThreshold' });
    const noTolerance = await run(definition(), failOn(['small/k9.txt']));
    expect(noTolerance).toMatchObject({ status: 'FAILED', error: 'States.ExceedToleratedFailureThreshold' });
  });

  it('retries a child state with the ItemProcessor Retry', async () => {
    const attempts = new Map<string, number>();
    const flaky: LocalFunction = async (payload) => {
      const first = (payload as unknown as Batch).Items[0].Key as string;
      attempts.set(first, (attempts.get(first) ?? 0) + 1);
      if (attempts.get(first)! < 2) {
        const error = new Error('socket hang up');
        error.name = 'TransientStorageError';
        throw error;
      }
      return {};
    };
    const result = await run(definition({}, [{ ErrorEquals: ['TransientStorageError'], MaxAttempts: 2 }]), flaky);
    expect(result.status).toBe('SUCCEEDED');
    expect([...attempts.values()]).toEqual([2, 2, 2, 2]);
  });

  it('applies ItemSelector per item and returns child outputs in order without a ResultWriter', async () => {
    const def = definition({
      ItemReader: undefined,
      ItemsPath: '$.things',
      ItemSelector: { 'index.$': '$$.Map.Item.Index', 'name.$': '$$.Map.Item.Value.name', 'bucket.$': '$.bucket' },
      ItemBatcher: { MaxItemsPerBatch: 2 },
      ResultWriter: undefined,
      ResultSelector: undefined,
    });
    const result = await runLocalExecution(
      {
        definition: JSON.parse(JSON.stringify(def)),
        functions: new Map([[FN_ARN, async (p: Json) => (p as unknown as Batch).Items.map((i) => `${i.index}:${i.name}:${i.bucket}`)]]),
        s3: s3.client,
      },
      'exec-2',
      { bucket: BUCKET, things: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] },
    );
    expect(result).toMatchObject({ status: 'SUCCEEDED', output: { mapResult: [[`0:a:${BUCKET}`, `1:b:${BUCKET}`], [`2:c:${BUCKET}`]] } });
  });

  describe("ItemReader s3:getObject (ReaderConfig.InputType JSON or JSONL), as the aggregate's group maps read their plan", () => {
    const reading = (key: string, inputType: string, extra: Record<string, unknown> = {}) =>
      JSON.parse(
        JSON.stringify(
          definition({
            ItemReader: {
              Resource: 'arn:aws:states:::s3:getObject',
              ReaderConfig: { InputType: inputType, ...extra },
              Parameters: { 'Bucket.$': '$.bucket', Key: key },
            },
            ItemSelector: { 'group.$': '$$.Map.Item.Value.group', 'index.$': '$$.Map.Item.Index' },
            ItemBatcher: undefined,
            ResultWriter: undefined,
            ResultSelector: undefined,
          }),
        ),
      ) as AslDefinition;
    const put = (Key: string, Body: string) => s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }));
    const echo = async (p: Json) => p;

    it('a JSON array: one child per element, in order, with ItemSelector; MaxItems honoured', async () => {
      await put('plans/groups.json', JSON.stringify([{ group: 0 }, { group: 1 }, { group: 2 }]));
      expect(await run(reading('plans/groups.json', 'JSON'), echo)).toMatchObject({
        status: 'SUCCEEDED',
        output: {
          mapResult: [
            { group: 0, index: 0 },
            { group: 1, index: 1 },
            { group: 2, index: 2 },
          ],
        },
      });
      expect(await run(reading('plans/groups.json', 'JSON', { MaxItems: 2 }), echo)).toMatchObject({
        output: { mapResult: [{ group: 0 }, { group: 1 }] },
      });
    });

    it('JSON Lines: one child per line', async () => {
      await put('plans/groups.jsonl', '{"group":5}\n{"group":6}\n');
      expect(await run(reading('plans/groups.jsonl', 'JSONL'), echo)).toMatchObject({ output: { mapResult: [{ group: 5 }, { group: 6 }] } });
    });

    it('an empty array runs no child and succeeds', async () => {
      await put('plans/none.json', '[]');
      expect(await run(reading('plans/none.json', 'JSON'), echo)).toMatchObject({ status: 'SUCCEEDED', output: { mapResult: [] } });
    });

    it('fails the state with States.ItemReaderFailed for a missing object or one that is not a JSON array', async () => {
      await put('plans/object.json', '{"group":0}');
      for (const key of ['plans/absent.json', 'plans/object.json']) {
        expect(await run(reading(key, 'JSON'), echo)).toMatchObject({ status: 'FAILED', error: 'States.ItemReaderFailed' });
      }
    });
  });

  it('bounds the child executions in flight by MaxConcurrency', async () => {
    const peak = async (maxConcurrency: number) => {
      let inFlight = 0;
      let max = 0;
      const def = definition({ MaxConcurrency: maxConcurrency, ItemBatcher: { MaxItemsPerBatch: 1 } });
      const result = await run(def, async () => {
        max = Math.max(max, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 30));
        inFlight--;
        return {};
      });
      expect(result.status).toBe('SUCCEEDED');
      return max;
    };
    expect(await peak(1)).toBe(1);
    expect(await peak(3)).toBe(3);
  });

  describe('with far fewer workers than MaxConcurrency, time limits run from when a worker takes the batch', () => {
    /*
     * Semantics, not speed: each batch runs far less, or far more, than its limit, and the
     * workers are started before the run (a Task timeout counts a fresh worker's start-up, as a
     * Lambda cold start counts in Step Functions), so a loaded machine cannot change the outcome.
     */
    const pools: FunctionWorkerPool[] = [];
    /** Longer than any test may take: a batch that must be stopped, not waited for. */
    const FOREVER_MS = 10 * 60_000;
    /** Two started worker threads with the slow-echo fixture; each batch asks for `ms(batch)` of running. */
    const workers = async (ms: (batch: Batch) => number, timeoutSeconds?: number): Promise<LocalFunction> => {
      const pool = new FunctionWorkerPool({ modulePath: join(__dirname, 'fixtures', 'slow-echo-handler.ts'), size: 2, timeoutSeconds });
      pools.push(pool);
      await Promise.all([pool.invoke({ ms: 0 }), pool.invoke({ ms: 0 })]);
      return (payload, options) => pool.invoke({ ms: ms(payload as unknown as Batch) }, options);
    };
    afterAll(() => Promise.all(pools.map((pool) => pool.close())));
    // 21 batches of the 1,005-object listing, all in flight at once on two workers; one failed
    // batch (50 items) is tolerated.
    const manyBatches = (work: Record<string, unknown>) =>
      definition({ MaxConcurrency: 50, ItemBatcher: { MaxItemsPerBatch: 50 }, ToleratedFailureCount: 50 }, [], work);
    /** The batch of big/0500.txt, in the middle of the run: batches are still queued behind it. */
    const slowBatch = (batch: Batch) => (batch.Items[0].Key === 'big/0500.txt' ? FOREVER_MS : 100);

    it('every batch succeeds within TimeoutSeconds 2 although the last ones wait ~3 s for a worker', async () => {
      const events: MapRunEvent[] = [];
      // 21 x 300 ms on 2 workers: at least 11 rounds, 3.3 s, beyond the timeout; each batch runs 300 ms of its 2 s.
      const work = await workers(() => 300);
      const started = performance.now();
      const result = await run(manyBatches({ TimeoutSeconds: 2 }), work, 'big/', events);
      expect(result.status).toBe('SUCCEEDED');
      expect(events.filter((e) => e.type === 'childSucceeded')).toHaveLength(21);
      // The premise, not a speed limit (a loaded machine only lengthens it): the run outlasted the timeout.
      expect(performance.now() - started).toBeGreaterThan(3000);
    });

    it('a batch that runs longer than TimeoutSeconds fails with States.Timeout, and the others still run', async () => {
      const events: MapRunEvent[] = [];
      // TimeoutSeconds 10: ten minutes of running overrun it; 100 ms batches, even one on the
      // replacement worker whose start-up counts, stay far inside it.
      const result = await run(manyBatches({ TimeoutSeconds: 10 }), await workers(slowBatch), 'big/', events);
      expect(result.status).toBe('SUCCEEDED');
      const failed = events.filter((e) => e.type === 'childFailed');
      expect(failed).toEqual([expect.objectContaining({ error: 'States.Timeout', cause: expect.stringMatching(/after 10 s of running.*not counted/) })]);
      // The worker of the slow batch was stopped and replaced: the batches after it were served.
      expect(events.filter((e) => e.type === 'childSucceeded')).toHaveLength(20);
    });

    it("the function's own timeout fails the batch with Lambda's Sandbox.Timedout", async () => {
      const events: MapRunEvent[] = [];
      const result = await run(manyBatches({ TimeoutSeconds: 600 }), await workers(slowBatch, 3), 'big/', events);
      expect(result.status).toBe('SUCCEEDED');
      const failed = events.filter((e) => e.type === 'childFailed') as Extract<MapRunEvent, { type: 'childFailed' }>[];
      expect(failed).toHaveLength(1);
      expect(failed[0].error).toBe('Sandbox.Timedout');
      expect(JSON.parse(failed[0].cause)).toMatchObject({ errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 3.00 seconds' });
      expect(events.filter((e) => e.type === 'childSucceeded')).toHaveLength(20);
    });
  });
});
