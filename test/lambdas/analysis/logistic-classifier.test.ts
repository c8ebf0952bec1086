/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 */
import { kernelSession, ort } from '../../../lambdas/analysis/kernel-graphs';
import {
  fitLogisticClassifier,
  LOGISTIC_CLASSIFIER_FORMAT,
  LogisticClassifierSchema,
  loadLogisticClassifier,
} from '../../../lambdas/analysis/logistic-classifier';
import { seededRandom } from '../../../lambdas/common/seeded-random';
import { blobs } from '../../support/blobs';

function accuracy(predicted: readonly { label: string }[], labels: readonly string[]): number {
  return predicted.filter((p, i) => p.label === labels[i]).length / labels.length;
}

describe('logistic regression (lambdas/analysis/logistic-classifier.ts)', () => {
  it('separates a separable toy set, on its rows and on a fresh draw, with confident probabilities', async () => {
    const train = blobs(4, 40, 6, 1);
    const model = await fitLogisticClassifier(train.block, train.labels, { rounds: 200 });
    expect(model.labels).toEqual(['class 0', 'class 1', 'class 2', 'class 3']);
    expect(accuracy(await model.predictBlock(train.block), train.labels)).toBe(1);
    const test = blobs(4, 50, 6, 2);
    const predicted = await model.predictBlock(test.block);
    expect(accuracy(predicted, test.labels)).toBeGreaterThanOrEqual(0.99);
    for (const p of predicted) expect(p.confidence).toBeGreaterThan(0.25);
    expect(predicted.filter((p) => p.confidence > 0.9).length).toBeGreaterThan(0.9 * predicted.length);
  });

  it('separates a class lying on both sides of another, given the features that make the boundary linear', async () => {
    // Class a lies on both sides of class b along axis 0: no single centre describes it, a
    // linear boundary in (x, x^2) does. The rows carry x and x^2.
    const random = seededRandom(3);
    const rows = 300;
    const data = new Float32Array(rows * 2);
    const labels: string[] = [];
    for (let i = 0; i < rows; i++) {
      const x = (random() - 0.5) * 6;
      data[i * 2] = x;
      data[i * 2 + 1] = x * x;
      labels.push(Math.abs(x) > 1.5 ? 'a' : 'b');
    }
    const model = await fitLogisticClassifier({ data, rows, dims: 2 }, labels, { rounds: 500, l2: 0 });
    expect(accuracy(await model.predictBlock({ data, rows, dims: 2 }), labels)).toBeGreaterThanOrEqual(0.97);
  });

  it("reaches the penalised loss's minimum: at the fitted weights its gradient is near zero, well below the start's", async () => {
    // Overlapping classes (separation 2), so the minimum is finite and the penalty matters.
    const train = blobs(4, 60, 5, 21, 2);
    const l2 = 0.01;
    const gradientAt = (weights: readonly (readonly number[])[], scale: readonly number[]) => {
      const { data, rows, dims } = train.block;
      const classes = 4;
      const gradient = weights.map((row) => row.map(() => 0));
      for (let r = 0; r < rows; r++) {
        const x = [...Array.from(data.subarray(r * dims, (r + 1) * dims), (v, d) => v / scale[d]), 1];
        const scores = Array.from({ length: classes }, (_, c) => x.reduce((sum, v, d) => sum + v * weights[d][c], 0));
        const max = Math.max(...scores);
        const total = scores.reduce((sum, s) => sum + Math.exp(s - max), 0);
        const target = Number(train.labels[r].slice('class '.length));
        scores.forEach((s, c) => x.forEach((v, d) => (gradient[d][c] += (v * (Math.exp(s - max) / total - (c === target ? 1 : 0))) / rows)));
      }
      // The penalty's share; the bias row (the last) is not penalised.
      return gradient.flatMap((row, d) => row.map((g, c) => (d < dims ? g + l2 * weights[d][c] : g)));
    };
    const model = await fitLogisticClassifier(train.block, train.labels, { rounds: 100, l2 });
    const { weights, scale } = model.toJSON();
    const largest = (values: number[]) => Math.max(...values.map(Math.abs));
    const atStart = largest(
      gradientAt(
        weights.map((row) => row.map(() => 0)),
        scale,
      ),
    );
    expect(largest(gradientAt(weights, scale))).toBeLessThan(1e-3 * atStart);
  });

  it("gives each row's probability of every label, which sum to 1 and whose largest is the prediction", async () => {
    const train = blobs(3, 30, 5, 8, 3);
    const model = await fitLogisticClassifier(train.block, train.labels, { rounds: 50 });
    const test = blobs(3, 20, 5, 9, 3);
    const probabilities = await model.probabilitiesBlock(test.block);
    expect(probabilities).toHaveLength(60 * 3);
    const predictions = await model.predictBlock(test.block);
    predictions.forEach((prediction, r) => {
      const row = Array.from(probabilities.subarray(r * 3, (r + 1) * 3));
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      expect(model.labels[row.indexOf(Math.max(...row))]).toBe(prediction.label);
      expect(Math.max(...row)).toBe(prediction.confidence);
    });
  });

  it('predicts identically after a save and a load', async () => {
    const train = blobs(3, 30, 5, 4, 3);
    const model = await fitLogisticClassifier(train.block, train.labels, { rounds: 50 });
    const json = JSON.parse(JSON.stringify(model.toJSON()));
    expect(json.format).toBe(LOGISTIC_CLASSIFIER_FORMAT);
    const loaded = loadLogisticClassifier(json);
    const test = blobs(3, 20, 5, 5, 3);
    expect(await loaded.predictBlock(test.block)).toEqual(await model.predictBlock(test.block));
  });

  it('computes the cross-entropy and its gradient natively as their definitions say', async () => {
    const random = seededRandom(6);
    const [n, p, c] = [7, 4, 3];
    const x = Float32Array.from({ length: n * p }, () => random() * 2 - 1);
    const w = Float32Array.from({ length: p * c }, () => random() * 2 - 1);
    const targets = new Float32Array(n * c);
    for (let r = 0; r < n; r++) targets[r * c + (r % c)] = 1;
    const session = await kernelSession('softmaxGradient', { precision: 'float32' });
    const { gradient, loss } = await session.run({
      x: new ort.Tensor('float32', x, [n, p]),
      w: new ort.Tensor('float32', w, [p, c]),
      targets: new ort.Tensor('float32', targets, [n, c]),
      invN: new ort.Tensor('float32', Float32Array.of(1 / n), [1]),
    });
    const expected = new Float64Array(p * c);
    let expectedLoss = 0;
    for (let r = 0; r < n; r++) {
      const scores = Array.from({ length: c }, (_, k) => Array.from({ length: p }, (_, d) => x[r * p + d] * w[d * c + k]).reduce((a, b) => a + b, 0));
      const max = Math.max(...scores);
      const total = scores.reduce((sum, s) => sum + Math.exp(s - max), 0);
      expectedLoss -= (scores[r % c] - max - Math.log(total)) / n;
      for (let k = 0; k < c; k++) {
        const residual = Math.exp(scores[k] - max) / total - targets[r * c + k];
        for (let d = 0; d < p; d++) expected[d * c + k] += (x[r * p + d] * residual) / n;
      }
    }
    const got = gradient.data as Float32Array;
    for (let i = 0; i < p * c; i++) expect(got[i]).toBeCloseTo(expected[i], 5);
    expect((loss.data as Float32Array)[0]).toBeCloseTo(expectedLoss, 5);
  });

  it('reads the leading dim values of wider rows: a head held to fewer components than the rows hold', async () => {
    const train = blobs(3, 20, 4, 11);
    const model = await fitLogisticClassifier(train.block, train.labels, { rounds: 50 });
    const test = blobs(3, 10, 4, 12);
    const wider = new Float32Array(test.block.rows * 6);
    for (let r = 0; r < test.block.rows; r++) {
      wider.set(test.block.data.subarray(r * 4, (r + 1) * 4), r * 6);
      wider.set([100 * r, -7], r * 6 + 4);
    }
    expect(await model.predictBlock({ data: wider, rows: test.block.rows, dims: 6 })).toEqual(await model.predictBlock(test.block));
  });

  it('refuses what it cannot fit or predict, with the reason', async () => {
    const train = blobs(2, 10, 3, 7);
    await expect(
      fitLogisticClassifier(
        train.block,
        train.labels.map(() => 'only'),
      ),
    ).rejects.toThrow(/two classes at least/);
    await expect(fitLogisticClassifier(train.block, train.labels.slice(1))).rejects.toThrow(/19 labels for 20 rows/);
    const data = Float32Array.from(train.block.data);
    data[4] = Number.NaN;
    await expect(fitLogisticClassifier({ ...train.block, data }, train.labels)).rejects.toThrow(/not finite/);
    await expect(fitLogisticClassifier(train.block, train.labels, { rounds: 0 })).rejects.toThrow(/rounds must be a positive integer/);
    const model = await fitLogisticClassifier(train.block, train.labels, { rounds: 5 });
    await expect(model.predictBlock({ data: new Float32Array(4), rows: 2, dims: 2 })).rejects.toThrow(/takes 3 components, the rows hold 2/);
    const json = model.toJSON();
    expect(() => loadLogisticClassifier({ ...json, weights: json.weights.slice(1) })).toThrow(/expected dim \+ 1 = 4/);
    expect(LogisticClassifierSchema.safeParse({ ...json, scale: [1, 0, 1] }).success).toBe(false);
    expect(LogisticClassifierSchema.safeParse({ ...json, labels: ['class 0', 'class 0'] }).success).toBe(false);
  });
});
