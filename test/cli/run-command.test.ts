/** `fruits run <dir> --json` as a user starts it (`npm start -- run ...`): a real process, tsx, the CLI wiring. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateDemoDataset, writeDemoDataset } from '../../local/demo-dataset';
import { pcaModelJson } from '../../lambdas/analysis/pca-model';
import { fitPca, ScatterAccumulator } from '../../lambdas/analysis/streaming-pca';
import { suiteWorkFolder } from '../support/work-folder';

/** A pca-model.json as a run writes it, of the given featurizer, in `dir`. */
function writeModel(dir: string, featurizer: string, extra: Record<string, unknown> = {}): string {
  const accumulator = new ScatterAccumulator(3);
  accumulator.addRows(Float32Array.from([1, 2, 3, 2, 1, 0, 5, 5, 1, 0, 3, 3]), 4);
  const model = pcaModelJson(
    fitPca(accumulator.moments(), { components: 2 }),
    'model-run',
    featurizer,
    { modelIds: [], imageSizes: [], backends: [] },
    { components: 2 },
  );
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'pca-model.json'), JSON.stringify({ ...model, ...extra }));
  return join(dir, 'pca-model.json');
}

describe('fruits run (process)', () => {
  const work = suiteWorkFolder('fruits-cli-run-');
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [require.resolve('tsx/cli'), join(__dirname, '..', '..', 'bin', 'cli.ts'), ...args], {
      cwd: work,
      encoding: 'utf8',
      timeout: 120_000,
    });

  it('runs a folder and prints the summary as JSON; a bad flag is a usage error', async () => {
    const dataset = join(work, 'tiny fruits');
    await writeDemoDataset(dataset, { trainingPerClass: 3, testPerClass: 1 });

    const settings = [
      '--featurizer',
      'pixels',
      '--components',
      '3',
      '--batch-size',
      '7',
      '--workers',
      '1',
      '--data-dir',
      join(work, 's3'),
      '--out',
      join(work, 'out'),
    ];
    const run = cli('run', dataset, '--json', ...settings);
    expect({ status: run.status, stderr: run.stderr.slice(-2000) }).toEqual({ status: 0, stderr: expect.any(String) });
    const summary = JSON.parse(run.stdout);
    // Served from the folder in place by default: nothing copied.
    expect(summary).toMatchObject({
      status: 'SUCCEEDED',
      dataset: 'tiny-fruits',
      processed: 20,
      failed: 0,
      components: 3,
      workers: 1,
      served: 20,
      uploaded: 0,
    });
    expect(readdirSync(join(work, 'out', summary.runId))).toEqual(
      expect.arrayContaining(['features.csv', 'features.parquet', 'predictions.csv', 'report.html', 'README.txt']),
    );
    // The run id ends with the digest of the settings that change the results.
    expect(summary.runId).toMatch(new RegExp(`^tiny-fruits-[0-9a-f]{12}-${summary.settings.digest}$`));
    expect(summary.settings.values).toMatchObject({ FEATURIZER: 'pixels', PCA_COMPONENTS: '3', KNN_NEIGHBOURS: '5', CLASSIFIER: 'lda+logistic' });

    // --copy-input uploads a copy instead, to the same run; the text summary says which.
    const copied = cli('run', dataset, '--copy-input', ...settings);
    expect({ status: copied.status, stderr: copied.stderr.slice(-2000) }).toEqual({ status: 0, stderr: expect.any(String) });
    expect(copied.stdout).toContain(`Run ${summary.runId}: SUCCEEDED`);
    expect(copied.stdout).toMatch(/input {7}s3:\/\/\S+\/input\/tiny-fruits\/ \(20 uploaded, 0 already there\)/);

    const bad = cli('run', dataset, '--batch-size', 'zero');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('expected a positive integer');
  });

  it('reports every mistake it can find before the upload: one line on stderr, exit 1, nothing uploaded', async () => {
    const dataset = join(work, 'errors');
    mkdirSync(join(dataset, 'Kiwi'), { recursive: true });
    writeFileSync(join(dataset, 'Kiwi', 'a.png'), (await generateDemoDataset({ trainingPerClass: 1, testPerClass: 0 }))[0].body);
    const file = join(work, 'a-file');
    writeFileSync(file, 'not a folder');
    const s3 = join(work, 's3-errors');
    // The other --model-from mistakes are test/local/model-from.test.ts's (in process, no CLI start each).
    const cnnModel = writeModel(join(work, 'cnn-model'), 'mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg-pow0.25@128');
    const cases: [string[], RegExp][] = [
      [['run', dataset, '--model-from', 'no-such-run'], /^fruits: --model-from no-such-run: no run no-such-run in .*\/out \(and no such file\)/],
      [
        ['run', dataset, '--model-from', cnnModel],
        /^fruits: --model-from .*: the model was fitted on features of mobilenet_v2_1.0_224_quant@7aad0c74\/.*@128, this run would featurize with pixels-16x16: /,
      ],
      [['run', join(work, 'no such folder')], /^fruits: input folder .*no such folder does not exist$/],
      [['run', dataset, '--components', '5000'], /^fruits: Invalid .*: pcaComponents: .*4096$/],
      [['run', dataset, '--knn', '1000'], /^fruits: Invalid .*: knnNeighbours: .*100$/],
      [['run', dataset, '--out', join(file, 'out')], /^fruits: --out .*a-file\/out is not a writable folder \(ENOTDIR\)$/],
      [['run', dataset, '--data-dir', file], /^fruits: --data-dir .*a-file is not a writable folder/],
    ];
    for (const [args, message] of cases) {
      const run = cli(...args, '--featurizer', 'pixels', '--json', ...(args.includes('--data-dir') ? [] : ['--data-dir', s3]));
      expect({ args, status: run.status, stdout: run.stdout, stderr: run.stderr.trim().split('\n') }).toEqual({
        args,
        status: 1,
        stdout: '',
        stderr: [expect.stringMatching(message)],
      });
    }
    // Nothing was uploaded: the store was never even started for these.
    expect(existsSync(join(s3, 'fruits-pipeline-local'))).toBe(false);
  });

  it("prints JSON that parses with the README's exact command (npm start --silent -- run ... --json)", async () => {
    const dataset = join(work, 'npm start');
    await writeDemoDataset(dataset, { trainingPerClass: 2, testPerClass: 1 });
    const npm = spawnSync(
      'npm',
      [
        'start',
        '--silent',
        '--',
        'run',
        dataset,
        '--json',
        '--featurizer',
        'pixels',
        '--components',
        '2',
        '--workers',
        '1',
        '--data-dir',
        join(work, 's3-npm'),
        '--out',
        join(work, 'out-npm'),
      ],
      {
        cwd: join(__dirname, '..', '..'),
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect({ status: npm.status, stderr: npm.stderr.slice(-2000) }).toEqual({ status: 0, stderr: expect.any(String) });
    expect(JSON.parse(npm.stdout)).toMatchObject({ status: 'SUCCEEDED', processed: 15 });
  });
});
