import { RunReportBuilder } from '../../../lambdas/outputs/run-report';

const run = { runId: 'r', bucket: 'b', inputPrefix: 'input/d/', outputPrefix: 'results/r/', now: new Date('2026-11-25T00:00:00Z') };

describe('run report', () => {
  it('keeps exact counts when a summary capped its lists, and says the lists are incomplete', () => {
    const report = new RunReportBuilder();
    report.addSummary({
      shard: null,
      count: 0,
      failed: [{ key: 'a', reason: 'cannot decode image' }],
      failedCount: 150,
      skipped: [],
      skippedCount: 0,
      truncated: true,
    });
    const built = report.build(run);
    expect(built.counts).toMatchObject({ images: 150, processed: 0, failed: 150, batches: 1 });
    expect(built.failed.complete).toBe(false);
    expect(built.failed.byReason).toEqual([
      { reason: '(not listed: the batch summary capped its list)', count: 149 },
      { reason: 'cannot decode image', count: 1 },
    ]);
  });

  it('counts a failed batch without its input as images of unknown keys', () => {
    const report = new RunReportBuilder();
    report.addFailedBatch({ status: 'FAILED', error: 'States.Timeout', cause: 'timed out' });
    report.addFailedBatch({ status: 'FAILED', error: 'Lambda.Unknown', cause: 'killed', inputKeys: ['x', 'y'] });
    const built = report.build(run);
    expect(built.counts).toMatchObject({ failed: 2, failedBatches: 2, batchesWithUnknownKeys: 1 });
    expect(built.failed.complete).toBe(false);
    expect(built.failed.items).toEqual([
      { key: 'x', reason: 'batch failed (Lambda.Unknown): killed' },
      { key: 'y', reason: 'batch failed (Lambda.Unknown): killed' },
    ]);
  });

  it('collects how the features were made and warns about the pixels fallback', () => {
    const report = new RunReportBuilder();
    const meta = {
      featurizerKind: 'pixels',
      backend: 'cpu',
      imageSize: 16,
      warnings: ['model not found: fell back to pixels'],
      timingsMs: { infer: 5, decode: 2 },
    };
    report.addShard({ featurizer: 'pixels-16x16', dim: 768, keys: ['k1'], labels: ['L'], failed: [], skipped: [{ key: 's', reason: 'not an image' }], meta });
    report.addShard({ featurizer: 'pixels-16x16', dim: 768, keys: ['k2'], labels: ['L'], failed: [], skipped: [], meta });
    report.addProcessed('pixels-16x16', 2);
    const built = report.build({ ...run, error: new Error('boom') });
    expect(built.status).toBe('FAILED');
    expect(built.error).toEqual({ name: 'Error', message: 'boom' });
    expect(built.featurizer).toEqual({
      ids: { 'pixels-16x16': 2 },
      dim: 768,
      backends: ['cpu'],
      modelIds: [],
      imageSizes: [16],
      timingsMsSummed: { infer: 10, decode: 4 },
    });
    expect(built.warnings).toEqual(['model not found: fell back to pixels', 'features come from the raw-pixels fallback (pixels-16x16), not from the CNN']);
    expect(built.counts).toMatchObject({ images: 3, processed: 2, skipped: 1 });
  });
});
