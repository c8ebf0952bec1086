/**
 * Parallel states in the local runner: the library runs each branch as a machine of its own, so the
 * runner's stand-ins must reach into branches as they do at the top level: a Lambda Task invokes
 * the local function with its TimeoutSeconds, a Distributed Map runs on the emulation, and a
 * branch's failure fails the Parallel with the function's error, for its Catch.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { AslDefinition, Json } from '../../../local/emulator/asl';
import { runLocalExecution } from '../../../local/emulator/local-execution';
import { LocalFunction, LocalFunctionOptions } from '../../../local/emulator/service-integrations';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';

const BUCKET = 'parallel-test';
const FN_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:Worker';

const lambdaTask = (payload: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke',
  Parameters: { FunctionName: FN_ARN, Payload: payload },
  OutputPath: '$.Payload',
  End: true,
  ...extra,
});

/** A Parallel of a Lambda Task and a Distributed Map over `small/`, caught as the pipeline catches its stages. */
function definition(first: Record<string, unknown> = {}): AslDefinition {
  return {
    StartAt: 'BothSides',
    States: {
      BothSides: {
        Type: 'Parallel',
        Branches: [
          { StartAt: 'One', States: { One: lambdaTask({ side: 'one' }, first) } },
          {
            StartAt: 'Many',
            States: {
              Many: {
                Type: 'Map',
                ItemReader: { Resource: 'arn:aws:states:::s3:listObjectsV2', Parameters: { 'Bucket.$': '$.bucket', Prefix: 'small/' } },
                ItemSelector: { 'key.$': '$$.Map.Item.Value.Key' },
                ItemProcessor: {
                  ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
                  StartAt: 'Each',
                  States: { Each: lambdaTask({ 'key.$': '$.key' }) },
                },
                ResultWriter: { Resource: 'arn:aws:states:::s3:putObject', Parameters: { 'Bucket.$': '$.bucket', Prefix: 'map-results' } },
                ResultSelector: { 'MapRunArn.$': '$.MapRunArn' },
                End: true,
              },
            },
          },
        ],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Failed' }],
        Next: 'Done',
      },
      Done: { Type: 'Succeed' },
      Failed: { Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' },
    },
  } as unknown as AslDefinition;
}

describe('Parallel states in the local runner', () => {
  let s3: LocalS3Server;
  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET] });
    for (const name of ['a', 'b', 'c']) await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `small/${name}.txt`, Body: name }));
  });
  afterAll(() => s3.close());

  async function run(def: AslDefinition, fn: LocalFunction) {
    return runLocalExecution({ definition: def, functions: new Map([[FN_ARN, fn]]), s3: s3.client }, 'exec-1', { bucket: BUCKET });
  }

  it("runs a branch's Lambda Task with its TimeoutSeconds and a branch's Distributed Map on the emulation, and returns both outputs in order", async () => {
    const calls: { payload: Json; options?: LocalFunctionOptions }[] = [];
    const result = await run(definition({ TimeoutSeconds: 42 }), async (payload, options) => {
      calls.push({ payload, options });
      return { echoed: payload };
    });
    expect(result.status).toBe('SUCCEEDED');
    // The Task's own clock, kept by the function: not the library's.
    expect(calls.find((call) => (call.payload as { side?: string }).side === 'one')?.options).toEqual({ timeoutMs: 42_000 });
    // One child per listed object, each an invocation of the function.
    const keys = calls.flatMap((call) => ((call.payload as { key?: string }).key ? [(call.payload as { key: string }).key] : []));
    expect(keys.sort()).toEqual(['small/a.txt', 'small/b.txt', 'small/c.txt']);
    // The map's ResultWriter wrote its manifest, as the top-level maps do.
    const mapRunArn = ((result as { output: Json[] }).output[1] as { MapRunArn: string }).MapRunArn;
    expect((result as { output: Json[] }).output[0]).toEqual({ echoed: { side: 'one' } });
    const manifest = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `map-results/${mapRunArn.split(':').pop()}/manifest.json` }));
    expect(JSON.parse(await manifest.Body!.transformToString())).toMatchObject({ DestinationBucket: BUCKET });
  });

  it("fails the Parallel with a branch's function error, which its Catch receives", async () => {
    const result = await run(definition(), async (payload) => {
      if ((payload as { side?: string }).side === 'one') {
        const error = new Error('the classifier could not be fitted');
        error.name = 'FitFailedError';
        throw error;
      }
      return {};
    });
    expect(result).toMatchObject({ status: 'FAILED', error: 'FitFailedError', cause: expect.stringContaining('the classifier could not be fitted') });
  });
});
