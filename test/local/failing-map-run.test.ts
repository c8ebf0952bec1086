/**
 * A map run whose every batch fails: the run ends FAILED with the reasons of the failed children
 * in the summary (and the CLI's text), never an uncaught error.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatRunSummary } from '../../cli/run-command';
import { writeDemoDataset } from '../../local/demo-dataset';
import { runLocallyIn } from '../support/local-run-in';
import { suiteWorkFolder } from '../support/work-folder';

describe('a failing map run', () => {
  const work = suiteWorkFolder('fruits-failing-map-');

  it('ends FAILED with the failed batches and their reason in the summary and its text', async () => {
    const dataset = join(work, 'photos');
    await writeDemoDataset(dataset, { trainingPerClass: 2, testPerClass: 1 });
    // A featurize function that fails every batch with an error no Retry matches.
    const handlers = join(work, 'handlers');
    mkdirSync(join(handlers, 'lambdas', 'featurize'), { recursive: true });
    writeFileSync(
      join(handlers, 'lambdas', 'featurize', 'handler.js'),
      "exports.handler = async () => { throw Object.assign(new Error('the model file is damaged'), { name: 'ModelLoadError' }); };\n",
    );
    const { summary } = await runLocallyIn(work, {
      inputDir: dataset,
      config: { featurizer: 'pixels', batchSize: 4 },
      workers: 1,
      bundledHandlersDir: handlers,
    });
    expect(summary).toMatchObject({
      status: 'FAILED',
      listed: 15,
      processed: 0,
      failed: 15,
      failuresByReason: [{ reason: 'batch failed: ModelLoadError: the model file is damaged', count: 15 }],
      error: { error: 'States.ExceedToleratedFailureThreshold' },
    });
    const text = formatRunSummary(summary);
    expect(text).toMatch(/^Run \S+: FAILED in /);
    expect(text).toContain('   15 x batch failed: ModelLoadError: the model file is damaged');
    expect(text).toMatch(/error {7}States.ExceedToleratedFailureThreshold: The specified tolerated failure threshold was exceeded: 15 of 15 items failed/);
  });
});
