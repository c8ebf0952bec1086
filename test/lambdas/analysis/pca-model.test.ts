import { decodeFeatureShard } from '../../../lambdas/bookkeeping/feature-shard';
import {
  decodeKnnReferences,
  encodeKnnReferences,
  knnReferencesParts,
  parsePcaModel,
  PcaModelError,
  pcaFitOf,
  pcaModelJson,
  referencesPartKeys,
  referencesFeaturizerId,
  referencesPartsProblem,
} from '../../../lambdas/analysis/pca-model';
import { seededRandom } from '../../../lambdas/common/seeded-random';
import { LOGISTIC_CLASSIFIER_FORMAT } from '../../../lambdas/analysis/logistic-classifier';
import { fitPca, PcaProjector, ScatterAccumulator } from '../../../lambdas/analysis/streaming-pca';

const META = { modelIds: ['m'], imageSizes: [128], backends: ['onnxruntime'] };

/** n x d float32 rows with scales far apart and one constant feature (scale 1, zero weights). */
function rows(n: number, d: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(n * d);
  for (let r = 0; r < n; r++) for (let f = 0; f < d; f++) out[r * d + f] = f === 3 ? 7.25 : (random() - 0.5) * 10 ** (f % 5) + f;
  return out;
}

describe('saved PCA model (lambdas/analysis/pca-model.ts)', () => {
  it('restores the very fit from pca-model.json: the same scores, bit for bit', () => {
    const d = 24;
    const n = 300;
    const data = rows(n, d, 3);
    const accumulator = new ScatterAccumulator(d, 64);
    accumulator.addRows(data, n);
    const fit = fitPca(accumulator.moments(), { components: 7 });
    expect(fit.constantFeatures).toEqual([3]);

    const text = JSON.stringify(pcaModelJson(fit, 'run-1', 'pixels-16x16', META, { components: 7 }));
    const restored = pcaFitOf(parsePcaModel(text, 'pca-model.json'));
    for (const field of ['mean', 'scale', 'components', 'eigenvalues', 'explainedVarianceRatio'] as const) {
      expect(Buffer.from(restored[field].buffer)).toEqual(Buffer.from(fit[field].buffer));
    }
    expect(restored).toMatchObject({ count: n, dim: d, k: 7, explainedVariance: fit.explainedVariance, constantFeatures: [3] });

    // New rows, projected by both fits with both projector paths: identical doubles.
    const fresh = rows(37, d, 4);
    const original = new PcaProjector(fit);
    const again = new PcaProjector(restored);
    const byRows = again.projectRows(fresh, 37);
    expect(Buffer.from(byRows.buffer)).toEqual(Buffer.from(original.projectRows(fresh, 37).buffer));
    for (let r = 0; r < 37; r++) expect(Array.from(again.project(fresh, r * d))).toEqual(Array.from(byRows.subarray(r * 7, (r + 1) * 7)));
  });

  it("saves a classifier's further components after the kept k (classifierK), and refuses a model whose widths disagree", () => {
    const d = 24;
    const accumulator = new ScatterAccumulator(d, 64);
    accumulator.addRows(rows(300, d, 3), 300);
    const selection = { components: 4, classifierComponents: 10 };
    const fit = fitPca(accumulator.moments(), selection);
    const json = JSON.parse(JSON.stringify(pcaModelJson(fit, 'run-1', 'pixels-16x16', META, selection)));
    expect(json).toMatchObject({ k: 4, classifierK: 10, selection: { components: 4, classifierComponents: 10 } });
    expect(json.components).toHaveLength(10);
    const restored = pcaFitOf(parsePcaModel(JSON.stringify(json), 'pca-model.json'));
    expect(restored).toMatchObject({ k: 4, classifierK: 10 });
    expect(Buffer.from(restored.components.buffer)).toEqual(Buffer.from(fit.components.buffer));

    const problem = (model: object) => () => parsePcaModel(JSON.stringify(model), 'model');
    expect(problem({ ...json, components: json.components.slice(0, 4) })).toThrow(/components holds 4 vectors, expected classifierK = 10/);
    expect(problem({ ...json, classifierK: 4 })).toThrow(/classifierK = 4 is not more than k = 4/);
    expect(problem({ ...json, classifierK: 30 })).toThrow(/classifierK = 30 components of 24 features/);
    expect(problem({ ...json, eigenvalues: json.eigenvalues.slice(0, 8), explainedVarianceRatio: json.explainedVarianceRatio.slice(0, 8) })).toThrow(
      /eigenvalues holds 8 values, expected 10 to dim = 24/,
    );
    const classifier = {
      format: LOGISTIC_CLASSIFIER_FORMAT,
      dim: 4,
      l2: 0.001,
      rounds: 10,
      count: 4,
      labels: ['Kiwi', 'Lemon'],
      scale: [1, 1, 1, 1],
      weights: [
        [0, 0],
        [1, -1],
        [0, 0],
        [0, 0],
        [0, 0],
      ],
    };
    // Logistic regression may be held to the leading components, never more than the model projects on.
    expect(parsePcaModel(JSON.stringify({ ...json, classifier }), 'model').classifier).toEqual(classifier);
    const wide = { ...classifier, dim: 11, scale: Array(11).fill(1), weights: Array.from({ length: 12 }, () => [0, 0]) };
    expect(problem({ ...json, classifier: wide })).toThrow(/classifier.dim is 11, expected at most classifierK = 10/);
  });

  /** A model of k = 3 components over 5 features, with `knnReferences` as given. */
  function modelWith(knnReferences: Parameters<typeof pcaModelJson>[5]) {
    const d = 5;
    const accumulator = new ScatterAccumulator(d);
    accumulator.addRows(rows(10, d, 9), 10);
    return parsePcaModel(
      JSON.stringify(pcaModelJson(fitPca(accumulator.moments(), { components: 3 }), 'run-1', 'pixels-16x16', META, { components: 3 }, knnReferences)),
      'model',
    );
  }
  const k = 3;
  const kiwis = {
    keys: ['input/a/Training/Kiwi/1.jpg', 'input/a/Training/Kiwi/2.jpg'],
    labels: ['Kiwi', 'Kiwi'],
    vectors: Float32Array.from([0.1, 2, -3, 0.2, 2.5, -3]),
  };
  const lemons = {
    keys: ['input/a/Training/Lemon/1.jpg', 'input/a/Training/Lemon/2.jpg'],
    labels: ['Lemon', 'Lemon'],
    vectors: Float32Array.from([9, -1, 0, 8.5, -1.5, 0.25]),
  };

  it('takes either classifier, told apart by its format, and refuses one wider than k', () => {
    const base = JSON.parse(JSON.stringify(modelWith(undefined)));
    const logistic = {
      format: LOGISTIC_CLASSIFIER_FORMAT,
      dim: k,
      l2: 0.001,
      rounds: 10,
      count: 4,
      labels: ['Kiwi', 'Lemon'],
      scale: [1, 2, 3],
      weights: [
        [1, -1],
        [0, 0],
        [0.5, -0.5],
        [0, 0],
      ],
    };
    expect(parsePcaModel(JSON.stringify({ ...base, classifier: logistic }), 'model').classifier).toEqual(logistic);
    const narrow = { ...logistic, dim: 2, scale: [1, 2], weights: logistic.weights.slice(1) };
    expect(parsePcaModel(JSON.stringify({ ...base, classifier: narrow }), 'model').classifier).toEqual(narrow);
    const wide = { ...logistic, dim: 4, scale: [1, 2, 3, 4], weights: [...logistic.weights, [0, 0]] };
    expect(() => parsePcaModel(JSON.stringify({ ...base, classifier: wide }), 'model')).toThrow(/classifier.dim is 4, expected at most k = 3/);
    expect(() => parsePcaModel(JSON.stringify({ ...base, classifier: { ...logistic, format: 'fruits-pipeline/other@1' } }), 'model')).toThrow(PcaModelError);
  });

  it("round-trips the classifier's references part by part, and refuses a part that is not the model's", () => {
    const first = encodeKnnReferences({ runId: 'run-1', featurizer: 'pixels-16x16', k }, kiwis);
    const second = encodeKnnReferences({ runId: 'run-1', featurizer: 'pixels-16x16', k }, lemons);
    expect(first.stated).toEqual({ count: 2, bytes: first.bytes.byteLength, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(decodeFeatureShard(first.bytes).header).toMatchObject({ featurizer: referencesFeaturizerId('pixels-16x16', k), dim: k, keys: kiwis.keys });
    const parts = [
      { file: 'knn-references/part-00000.fsh', ...first.stated },
      { file: 'knn-references/part-00002.fsh', ...second.stated },
    ];
    const model = modelWith({ count: 4, parts });
    expect(knnReferencesParts(model)).toEqual(parts);
    expect(referencesPartKeys(model, 'results/run-1/pca-model.json')).toEqual([
      'results/run-1/knn-references/part-00000.fsh',
      'results/run-1/knn-references/part-00002.fsh',
    ]);
    const decoded = [decodeKnnReferences(first.bytes, model, parts[0], 'p0'), decodeKnnReferences(second.bytes, model, parts[1], 'p2')];
    expect(decoded.map((part) => [part.keys, part.labels, Array.from(part.vectors)])).toEqual(
      [kiwis, lemons].map((part) => [part.keys, part.labels, Array.from(part.vectors)]),
    );

    // Each part against its own statement: swapped, tampered, or another k.
    expect(() => decodeKnnReferences(second.bytes, model, parts[0], 'p0')).toThrow(
      /p0 is not the references file of the model of run run-1 \(its SHA-256 differs/,
    );
    const tampered = Buffer.from(first.bytes);
    tampered[tampered.length - 1] ^= 1;
    expect(() => decodeKnnReferences(tampered, model, parts[0], 'p0')).toThrow(PcaModelError);
    expect(() => decodeKnnReferences(first.bytes, { ...model, k: 2 }, parts[0], 'p0')).toThrow(
      /p0 holds 2 references of pca3\(pixels-16x16\) \(3 values\), expected 2 of pca2/,
    );
    // What a HEAD can tell: absent, or not the stated size.
    const where = (index: number) => `part ${index}`;
    expect(referencesPartsProblem(model, [first.bytes.byteLength, second.bytes.byteLength], where)).toBeUndefined();
    expect(referencesPartsProblem(model, [first.bytes.byteLength, undefined], where)).toBe("the model's references part 1 does not exist");
    expect(referencesPartsProblem(model, [first.bytes.byteLength + 1, second.bytes.byteLength], where)).toMatch(
      new RegExp(
        `^part 0 is not the references file of the model of run run-1 \\(${first.bytes.byteLength + 1} bytes, pca-model.json states ${first.bytes.byteLength}\\)$`,
      ),
    );
  });

  it('reads a model whose references are one file (knn-references.fsh) as a model of one part', () => {
    const all = {
      keys: [...kiwis.keys, ...lemons.keys],
      labels: [...kiwis.labels, ...lemons.labels],
      vectors: Float32Array.from([...kiwis.vectors, ...lemons.vectors]),
    };
    const { bytes, stated } = encodeKnnReferences({ runId: 'run-1', featurizer: 'pixels-16x16', k }, all);
    const model = modelWith({ file: 'knn-references.fsh', count: 4, sha256: stated.sha256 });
    const [part] = knnReferencesParts(model);
    expect(knnReferencesParts(model)).toEqual([{ file: 'knn-references.fsh', count: 4, sha256: stated.sha256 }]);
    expect(decodeKnnReferences(bytes, model, part, 'refs')).toMatchObject({ keys: all.keys, labels: all.labels });
    // Its size is not stated: a HEAD can only say whether it is there.
    expect(referencesPartsProblem(model, [bytes.byteLength + 7], (index) => `part ${index}`)).toBeUndefined();
    expect(referencesPartsProblem(model, [undefined], () => 'results/run-1/knn-references.fsh')).toMatch(
      /references results\/run-1\/knn-references.fsh does not exist/,
    );
    expect(knnReferencesParts(modelWith(undefined))).toEqual([]);
  });

  it('names what is wrong with a file that is not a usable model', () => {
    expect(() => parsePcaModel('{', 'f')).toThrow(/f is not JSON/);
    expect(() => parsePcaModel('{"format": "other"}', 'f')).toThrow(/f is not a fruits-pipeline\/pca-model@1 file \(format "other"\)/);
    expect(() => parsePcaModel('[]', 'f')).toThrow(/format null/);
    const d = 4;
    const accumulator = new ScatterAccumulator(d);
    accumulator.addRows(rows(8, d, 1), 8);
    const model = pcaModelJson(fitPca(accumulator.moments(), { components: 2 }), 'run-1', 'pixels-16x16', META, { components: 2 });
    expect(() => parsePcaModel(JSON.stringify({ ...model, components: model.components.slice(1) }), 'f')).toThrow(/components holds 1 vectors, expected k = 2/);
    expect(() => parsePcaModel(JSON.stringify({ ...model, k: 9 }), 'f')).toThrow(/k = 9 components of 4 features/);
    expect(() => parsePcaModel(JSON.stringify({ ...model, runId: '../x' }), 'f')).toThrow(/runId/);
    expect(() => parsePcaModel(JSON.stringify({ ...model, knnReferences: { file: '../x.fsh', count: 1, sha256: 'a'.repeat(64) } }), 'f')).toThrow(
      /knnReferences.file/,
    );
    const part = { file: 'knn-references/part-00000.fsh', count: 2, bytes: 100, sha256: 'a'.repeat(64) };
    const withParts = (knnReferences: unknown) => () => parsePcaModel(JSON.stringify({ ...model, knnReferences }), 'f');
    expect(withParts({ count: 2, parts: [part] })).not.toThrow();
    for (const file of ['../part-00000.fsh', 'part-00000.fsh', 'a/b/part-00000.fsh', 'knn-references/..', '/knn-references/part.fsh']) {
      expect(withParts({ count: 2, parts: [{ ...part, file }] })).toThrow(/knnReferences.parts.0.file: a file one folder deep beside pca-model.json/);
    }
    expect(withParts({ count: 3, parts: [part] })).toThrow(/knnReferences.parts hold 2 rows, knnReferences.count says 3/);
    expect(withParts({ count: 2, parts: [] })).toThrow(/knnReferences.parts/);
    expect(withParts({ count: 2, parts: [{ ...part, bytes: 0 }] })).toThrow(/knnReferences.parts.0.bytes/);
  });
});
