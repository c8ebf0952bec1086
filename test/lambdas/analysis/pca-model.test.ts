import { decodeFeatureShard } from '../../../lambdas/bookkeeping/feature-shard';
import { KnnReferences } from '../../../lambdas/analysis/knn';
import {
  decodeKnnReferences,
  encodeKnnReferences,
  parsePcaModel,
  PcaModelError,
  pcaFitOf,
  pcaModelJson,
  referencesFeaturizerId,
} from '../../../lambdas/analysis/pca-model';
import { seededRandom } from '../../../lambdas/common/seeded-random';
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

  it("round-trips the classifier's references, and refuses a file that is not the model's", () => {
    const k = 3;
    const references = new KnnReferences(k, 4, 'float32');
    const keys = ['input/a/Training/Kiwi/1.jpg', 'input/a/Training/Kiwi/2.jpg', 'input/a/Training/Lemon/1.jpg', 'input/a/Training/Lemon/2.jpg'];
    [
      [0.1, 2, -3],
      [0.2, 2.5, -3],
      [9, -1, 0],
      [8.5, -1.5, 0.25],
    ].forEach((vector, i) => references.add(i < 2 ? 'Kiwi' : 'Lemon', vector));
    const { bytes, pointer } = encodeKnnReferences({ runId: 'run-1', featurizer: 'pixels-16x16', k }, keys, references);
    expect(pointer).toEqual({ file: 'knn-references.fsh', count: 4, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(decodeFeatureShard(bytes).header).toMatchObject({ featurizer: referencesFeaturizerId('pixels-16x16', k), dim: k, keys });

    const d = 5;
    const data = rows(10, d, 9);
    const accumulator = new ScatterAccumulator(d);
    accumulator.addRows(data, 10);
    const model = parsePcaModel(
      JSON.stringify(pcaModelJson(fitPca(accumulator.moments(), { components: k }), 'run-1', 'pixels-16x16', META, { components: k }, pointer)),
      'model',
    );
    const decoded = decodeKnnReferences(bytes, model, 'refs');
    expect(decoded.keys).toEqual(keys);
    expect(decoded.references.predict([8.8, -1.2, 0.1], 3)).toMatchObject({ label: 'Lemon' });
    for (let i = 0; i < 4; i++) expect(decoded.references.reference(i)).toEqual(references.reference(i));

    const tampered = Buffer.from(bytes);
    tampered[tampered.length - 1] ^= 1;
    expect(() => decodeKnnReferences(tampered, model, 'refs')).toThrow(PcaModelError);
    expect(() => decodeKnnReferences(bytes, { ...model, k: 2 }, 'refs')).toThrow(/SHA-256|expected/);
    expect(() => decodeKnnReferences(bytes, { ...model, knnReferences: undefined }, 'refs')).toThrow(/no knnReferences/);
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
  });
});
