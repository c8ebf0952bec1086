/** `--model-from` of the local run: what it finds, and the one line for each mistake, before anything starts. */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeKnnReferences, pcaModelJson } from '../../lambdas/analysis/pca-model';
import { fitPca, ScatterAccumulator } from '../../lambdas/analysis/streaming-pca';
import { putObject } from '../../lambdas/aws/s3-client';
import { readStoreSnapshot } from '../../local/emulator/s3/object-store';
import { startLocalS3Server } from '../../local/emulator/s3/s3-server';
import { LOCAL_BUCKET, runLocally } from '../../local/local-run';
import { readModelFrom } from '../../local/model-from';
import { suiteWorkFolder } from '../support/work-folder';

describe('--model-from (local/model-from.ts)', () => {
  const work = suiteWorkFolder('fruits-model-from-');
  const out = join(work, 'out');

  /**
   * `<dir>/pca-model.json` of run `runId` and, when asked, its references as a run writes them (two
   * parts under knn-references/) or as one knn-references.fsh (`oneFile`).
   */
  function writeModel(dir: string, runId: string, options: { references?: boolean; oneFile?: boolean; extra?: Record<string, unknown> } = {}): string {
    const accumulator = new ScatterAccumulator(3);
    accumulator.addRows(Float32Array.from([1, 2, 3, 2, 1, 0, 5, 5, 1, 0, 3, 3]), 4);
    const fit = fitPca(accumulator.moments(), { components: 2 });
    mkdirSync(dir, { recursive: true });
    let pointer: Parameters<typeof pcaModelJson>[5];
    const model = { runId, featurizer: 'pixels-16x16', k: 2 };
    const kiwi = { keys: ['input/a/Training/Kiwi/1.jpg'], labels: ['Kiwi'], vectors: Float32Array.from([1, 2]) };
    const lemon = { keys: ['input/a/Training/Lemon/1.jpg'], labels: ['Lemon'], vectors: Float32Array.from([-1, 0]) };
    if (options.oneFile) {
      const both = { keys: [...kiwi.keys, ...lemon.keys], labels: ['Kiwi', 'Lemon'], vectors: Float32Array.from([1, 2, -1, 0]) };
      const { bytes, stated } = encodeKnnReferences(model, both);
      writeFileSync(join(dir, 'knn-references.fsh'), bytes);
      pointer = { file: 'knn-references.fsh', count: 2, sha256: stated.sha256 };
    } else if (options.references) {
      mkdirSync(join(dir, 'knn-references'), { recursive: true });
      const parts = [kiwi, lemon].map((rows, g) => {
        const { bytes, stated } = encodeKnnReferences(model, rows);
        const file = `knn-references/part-0000${g}.fsh`;
        writeFileSync(join(dir, file), bytes);
        return { file, ...stated };
      });
      pointer = { count: 2, parts };
    }
    const json = pcaModelJson(fit, runId, 'pixels-16x16', { modelIds: [], imageSizes: [16], backends: [] }, { components: 2 }, pointer);
    writeFileSync(join(dir, 'pca-model.json'), JSON.stringify({ ...json, ...options.extra }));
    return join(dir, 'pca-model.json');
  }

  it('finds an earlier run by its id, or a pca-model.json (or its folder) by path, with the references beside it', () => {
    const path = writeModel(join(out, 'run-a'), 'run-a', { references: true });
    const byId = readModelFrom('run-a', out);
    expect(byId).toMatchObject({
      path,
      key: 'results/run-a/pca-model.json',
      model: { runId: 'run-a', featurizer: 'pixels-16x16', k: 2 },
      references: [
        { path: join(out, 'run-a', 'knn-references', 'part-00000.fsh'), key: 'results/run-a/knn-references/part-00000.fsh' },
        { path: join(out, 'run-a', 'knn-references', 'part-00001.fsh'), key: 'results/run-a/knn-references/part-00001.fsh' },
      ],
      digest: expect.stringMatching(/^run-a@[0-9a-f]{8}$/),
    });
    // The local run copies each part into its store as read here.
    expect(byId.references![1].read().equals(readFileSync(join(out, 'run-a', 'knn-references', 'part-00001.fsh')))).toBe(true);
    // A model that names its references as one file.
    const oneFile = readModelFrom(writeModel(join(work, 'one-file'), 'one-file', { oneFile: true }), out);
    expect(oneFile.references).toMatchObject([{ path: join(work, 'one-file', 'knn-references.fsh'), key: 'results/one-file/knn-references.fsh' }]);
    // Elsewhere on disk, e.g. downloaded with `fruits results`: the key comes from the model's run id.
    const copy = writeModel(join(work, 'downloaded'), 'deployed-run');
    const downloaded = readModelFrom(copy, out);
    expect(downloaded).toMatchObject({ key: 'results/deployed-run/pca-model.json' });
    expect(downloaded.references).toBeUndefined();
    expect(readModelFrom(join(work, 'downloaded'), out).path).toBe(copy);
  });

  it('finds a run id in the local store first (any --out of the same data directory), then in --out', async () => {
    // Run store-run's outputs as a run leaves them in its store: results/store-run/ of the bucket.
    const dataDir = join(work, 'store-s3');
    const written = writeModel(join(work, 'store-run-files'), 'store-run', { references: true });
    const server = await startLocalS3Server({ directory: dataDir, buckets: [LOCAL_BUCKET] });
    try {
      await putObject(server.client, LOCAL_BUCKET, 'results/store-run/pca-model.json', readFileSync(written), 'application/json');
      for (const part of ['part-00000.fsh', 'part-00001.fsh']) {
        const bytes = readFileSync(join(work, 'store-run-files', 'knn-references', part));
        await putObject(server.client, LOCAL_BUCKET, `results/store-run/knn-references/${part}`, bytes, 'application/octet-stream');
      }
      await putObject(
        server.client,
        LOCAL_BUCKET,
        'results/store-projected/report.json',
        JSON.stringify({ pca: { source: 'model', modelRunId: 'store-run' } }),
        'application/json',
      );
    } finally {
      await server.close();
    }
    const store = { dataDir, snapshot: readStoreSnapshot(dataDir, LOCAL_BUCKET) };
    const otherOut = join(work, 'other-out');
    const found = readModelFrom('store-run', otherOut, store);
    expect(found).toMatchObject({
      foundIn: 'store',
      path: `results/store-run/pca-model.json of the local store in ${dataDir}`,
      key: 'results/store-run/pca-model.json',
      model: { runId: 'store-run' },
      references: [
        { key: 'results/store-run/knn-references/part-00000.fsh', path: `results/store-run/knn-references/part-00000.fsh of the local store in ${dataDir}` },
        { key: 'results/store-run/knn-references/part-00001.fsh', path: `results/store-run/knn-references/part-00001.fsh of the local store in ${dataDir}` },
      ],
    });
    expect(found.modelBytes.equals(readFileSync(written))).toBe(true);
    // A run of another data directory is still found by its copy in --out.
    writeModel(join(otherOut, 'out-run'), 'out-run');
    expect(readModelFrom('out-run', otherOut, store)).toMatchObject({ foundIn: 'out', path: join(otherOut, 'out-run', 'pca-model.json') });
    expect(() => readModelFrom('store-projected', otherOut, store)).toThrow(
      /^--model-from store-projected: run store-projected fitted no model \(it projected with the model of run store-run\): use --model-from store-run$/,
    );
    expect(() => readModelFrom('nowhere', otherOut, store)).toThrow(
      `--model-from nowhere: no run nowhere in the local store in ${dataDir} or in ${otherOut} (and no such file): pass the run id of an earlier run, or a path to its pca-model.json`,
    );
    // A data directory without a store yet: --out only.
    expect(readModelFrom('out-run', otherOut, { dataDir: join(work, 'empty'), snapshot: readStoreSnapshot(join(work, 'empty'), LOCAL_BUCKET) }).foundIn).toBe(
      'out',
    );
  });

  it('names each mistake in one line', () => {
    writeFileSync(join(work, 'not-json.json'), 'not json {');
    writeFileSync(join(work, 'other.json'), JSON.stringify({ format: 'sklearn-pca' }));
    writeModel(join(work, 'lost'), 'lost', { extra: { knnReferences: { file: 'knn-references.fsh', count: 2, sha256: 'a'.repeat(64) } } });
    writeModel(join(work, 'lost-part'), 'lost-part', { references: true });
    rmSync(join(work, 'lost-part', 'knn-references', 'part-00001.fsh'));
    writeModel(join(work, 'swapped'), 'swapped', { references: true });
    writeFileSync(join(work, 'swapped', 'knn-references', 'part-00001.fsh'), readFileSync(join(work, 'swapped', 'knn-references', 'part-00000.fsh')));
    writeModel(join(work, 'swapped-file'), 'swapped-file', { oneFile: true });
    writeFileSync(join(work, 'swapped-file', 'knn-references.fsh'), Buffer.from('FSH1 and not the model'));
    writeModel(join(work, 'short'), 'short', { extra: { scale: [1] } });
    mkdirSync(join(out, 'projected'), { recursive: true });
    writeFileSync(join(out, 'projected', 'report.json'), JSON.stringify({ pca: { source: 'model', modelRunId: 'run-a' } }));
    mkdirSync(join(out, 'failed-run'), { recursive: true });
    const cases: [string, RegExp][] = [
      [
        'no-such-run',
        /^--model-from no-such-run: no run no-such-run in .*\/out \(and no such file\): pass the run id of an earlier run, or a path to its pca-model.json$/,
      ],
      ['projected', /^--model-from projected: run projected fitted no model \(it projected with the model of run run-a\): use --model-from run-a$/],
      ['failed-run', /^--model-from failed-run: .*failed-run\/pca-model.json does not exist: run failed-run wrote no model/],
      [join(work, 'missing.json'), /^--model-from .*missing.json: no such file or folder$/],
      [join(work, 'not-json.json'), /^--model-from .*not-json.json: .*not-json.json is not JSON/],
      [
        join(work, 'other.json'),
        /^--model-from .*other.json: .*other.json is not a fruits-pipeline\/pca-model@1 file \(format "sklearn-pca"\): pass the pca-model.json of a run$/,
      ],
      [join(work, 'short'), /^--model-from .*short: .*is not a usable PCA model: scale holds 1 values, expected dim = 3/],
      [
        join(work, 'lost'),
        /^--model-from .*lost: the model names its references knn-references.fsh, but .*lost\/knn-references.fsh does not exist: copy it beside .*lost\/pca-model.json$/,
      ],
      [
        join(work, 'lost-part'),
        /^--model-from .*lost-part: the model names its references knn-references\/part-00001.fsh, but .*lost-part\/knn-references\/part-00001.fsh does not exist: copy the knn-references\/ folder beside .*lost-part\/pca-model.json$/,
      ],
      [
        join(work, 'swapped'),
        /^--model-from .*swapped: .*swapped\/knn-references\/part-00001.fsh is not the references file of the model of run swapped \(its SHA-256 differs/,
      ],
      [
        join(work, 'swapped-file'),
        /^--model-from .*swapped-file: .*swapped-file\/knn-references.fsh is not the references file of the model of run swapped-file/,
      ],
    ];
    for (const [value, message] of cases) expect(() => readModelFrom(value, out)).toThrow(message);
  });

  it('the local run refuses a model of another featurizer or feature power, or its own run id, before the store starts', async () => {
    const dataset = join(work, 'photos');
    mkdirSync(join(dataset, 'Kiwi'), { recursive: true });
    writeFileSync(join(dataset, 'Kiwi', 'a.jpg'), 'not read');
    const dataDir = join(work, 's3');
    const model = writeModel(join(work, 'pixels-model'), 'pixels-run');
    const run = (options: Parameters<typeof runLocally>[0]) =>
      runLocally({ inputDir: dataset, dataDir, outDir: out, workers: 1, modelFrom: model, ...options });
    // The shipped CNN would make other features than the model's raw pixels.
    await expect(run({})).rejects.toThrow(
      /^--model-from .*pixels-model\/pca-model.json: the model was fitted on features of pixels-16x16, this run would featurize with mobilenet_v2_1.0_224_quant@7aad0c74\/expanded_conv_12\/add\+Conv_1\/Relu6\/avg-pow0.25@128: run with the featurizer settings of run pixels-run/,
    );
    // A model of the signed square root's features (FEATURE_POWER 0.5, an older run's default) is
    // not mixed with this run's fourth root: the ids differ in the power.
    const squareRoot = writeModel(join(work, 'sqrt-model'), 'sqrt-run', {
      extra: { featurizer: 'mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg-sqrt@128' },
    });
    await expect(run({ modelFrom: squareRoot })).rejects.toThrow(
      /^--model-from .*sqrt-model\/pca-model.json: the model was fitted on features of .*\/avg-sqrt@128, this run would featurize with .*\/avg-pow0.25@128: run with the featurizer settings of run sqrt-run/,
    );
    await expect(run({ config: { featurizer: 'pixels' }, runId: 'pixels-run' })).rejects.toThrow(/--run-id pixels-run is the model's own run/);
    expect(existsSync(join(dataDir, 'fruits-pipeline-local'))).toBe(false);
  });
});
