import { MalformedMapResultError, parseResultFile, parseResultManifest, readMapRunResults, toBatchOutcome } from '../../../lambdas/bookkeeping/map-results';

const summary = { shard: 'work/r1/shards/abc.fsh', count: 2, failed: [], failedCount: 0, skipped: [], skippedCount: 0, truncated: false };
const batchInput = { Items: [{ Key: 'input/d/Kiwi/a.jpg', Size: 10 }, { Key: 'input/d/Kiwi/b, "c".jpg' }], BatchInput: { bucket: 'b' } };

/** A child execution record as the ResultWriter exports it with Transformation NONE. */
function record(status: 'SUCCEEDED' | 'FAILED', extra: Record<string, unknown>) {
  return {
    ExecutionArn: `arn:aws:states:us-east-1:123456789012:execution:sm/FeaturizeImages:${status}-1`,
    Input: JSON.stringify(batchInput),
    InputDetails: { Included: true },
    Name: `${status}-1`,
    RedriveCount: 0,
    StartDate: '2026-01-01T00:00:00.000Z',
    StateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:sm/FeaturizeImages',
    Status: status,
    StopDate: '2026-01-01T00:00:01.000Z',
    ...extra,
  };
}

describe('ResultWriter results', () => {
  it('reads the manifest and every result file, in the AWS layout', async () => {
    const files: Record<string, string> = {
      'work/r1/map-results/run/SUCCEEDED_0.json': JSON.stringify([record('SUCCEEDED', { Output: JSON.stringify(summary), OutputDetails: { Included: true } })]),
      'work/r1/map-results/run/FAILED_0.json': JSON.stringify([
        record('FAILED', {
          Error: 'Lambda.Unknown',
          Cause: JSON.stringify({ errorType: 'Error', errorMessage: 'Runtime exited with error: signal: killed', trace: [] }),
        }),
      ]),
    };
    const manifest = {
      DestinationBucket: 'bucket',
      MapRunArn: 'arn:aws:states:us-east-1:123456789012:mapRun:sm/FeaturizeImages:run',
      ResultFiles: {
        FAILED: [{ Key: 'work/r1/map-results/run/FAILED_0.json', Size: 1 }],
        PENDING: [],
        SUCCEEDED: [{ Key: 'work/r1/map-results/run/SUCCEEDED_0.json', Size: 1 }],
      },
    };
    const read: string[] = [];
    const { outcomes } = await readMapRunResults(JSON.stringify(manifest), async (bucket, key) => {
      read.push(`${bucket}/${key}`);
      return files[key];
    });
    expect(read).toEqual(['bucket/work/r1/map-results/run/SUCCEEDED_0.json', 'bucket/work/r1/map-results/run/FAILED_0.json']);
    // A succeeded child's input is not read: its keys are in its batch record.
    expect(outcomes[0]).toEqual({ kind: 'succeeded', summary, executionArn: expect.stringContaining('SUCCEEDED-1') });
    expect(outcomes[1]).toMatchObject({
      kind: 'failed',
      status: 'FAILED',
      error: 'Lambda.Unknown',
      cause: 'Error: Runtime exited with error: signal: killed',
      inputKeys: ['input/d/Kiwi/a.jpg', 'input/d/Kiwi/b, "c".jpg'],
    });
  });

  it('accepts JSONL files and COMPACT bare outputs (ResultWriterV2 WriterConfig)', () => {
    const jsonl = [JSON.stringify(summary), JSON.stringify({ ...summary, shard: null, count: 0 })].join('\n') + '\n';
    const entries = parseResultFile(jsonl);
    expect(entries).toHaveLength(2);
    expect(entries.map((e) => toBatchOutcome(e, 'SUCCEEDED').kind)).toEqual(['succeeded', 'succeeded']);
    // A FAILED record stays a full record even with COMPACT.
    expect(parseResultFile(JSON.stringify(record('FAILED', { Error: 'TransientStorageError', Cause: 'slow down' })) + '\n')).toHaveLength(1);
    expect(parseResultFile('')).toEqual([]);
  });

  it('tolerates the lambda:invoke envelope when OutputPath is missing', () => {
    const outcome = toBatchOutcome(record('SUCCEEDED', { Output: JSON.stringify({ StatusCode: 200, Payload: summary }) }), 'SUCCEEDED');
    expect(outcome).toMatchObject({ kind: 'succeeded', summary });
  });

  it('turns unreadable outputs and pending children into failed batches with a reason', () => {
    // Its keys are read from its input then: they are accounted as failed with the batch.
    expect(toBatchOutcome(record('SUCCEEDED', { Output: '{"oops":1}' }), 'SUCCEEDED')).toMatchObject({
      kind: 'failed',
      error: 'UnreadableBatchOutput',
      inputKeys: ['input/d/Kiwi/a.jpg', 'input/d/Kiwi/b, "c".jpg'],
    });
    expect(toBatchOutcome(record('SUCCEEDED', {}), 'SUCCEEDED')).toMatchObject({ kind: 'failed', error: 'OutputNotIncluded' });
    const pending = { ...record('FAILED', {}), Status: 'PENDING', Input: undefined };
    expect(toBatchOutcome(pending, 'PENDING')).toEqual({
      kind: 'failed',
      status: 'PENDING',
      executionArn: expect.any(String),
      error: 'States.Pending',
      cause: expect.stringMatching(/had not finished/),
    });
  });

  it('rejects a manifest that is not ResultWriter output', () => {
    expect(() => parseResultManifest('not json')).toThrow(MalformedMapResultError);
    expect(() => parseResultManifest('{"ResultFiles":{}}')).toThrow(/DestinationBucket/);
    expect(() => parseResultFile('[{"a":1}]\n{broken')).toThrow(MalformedMapResultError);
  });
});
