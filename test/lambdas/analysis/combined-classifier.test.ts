/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 */
import { CombinedClassifier, combinedClassifier, COMBINED_CLASSIFIER_FORMAT, DEFAULT_LDA_WEIGHT } from '../../../lambdas/analysis/combined-classifier';
import { fitLdaClassifier } from '../../../lambdas/analysis/lda-classifier';
import { fitLogisticClassifier, loadLogisticClassifier } from '../../../lambdas/analysis/logistic-classifier';
import { blobs } from '../../support/blobs';

async function bothHeads(separation = 6) {
  const train = blobs(4, 40, 6, 1, separation);
  const lda = await (await fitLdaClassifier(train.rowArrays(), train.labels)).withPrototypes(train.rowArrays(), train.labels, 3);
  const fitted = (await fitLogisticClassifier(train.block, train.labels, { rounds: 200 })).toJSON();
  // The same model with its labels (and weight columns) in reverse order: the pair matches them by name.
  const logistic = loadLogisticClassifier({ ...fitted, labels: [...fitted.labels].reverse(), weights: fitted.weights.map((row) => [...row].reverse()) });
  return { lda, logistic };
}

describe('the LDA and logistic regression together (lambdas/analysis/combined-classifier.ts)', () => {
  it('separates a separable toy set, with a confidence and the distance to the winning class nearest LDA prototype', async () => {
    const { lda, logistic } = await bothHeads();
    expect(logistic.labels).not.toEqual(lda.labels);
    const model = combinedClassifier(lda, logistic);
    expect(model.toJSON()).toMatchObject({ format: COMBINED_CLASSIFIER_FORMAT, dim: 6, ldaWeight: DEFAULT_LDA_WEIGHT });
    const test = blobs(4, 50, 6, 2);
    const predicted = await model.predictBlock(test.block);
    expect(predicted.filter((p, i) => p.label === test.labels[i]).length / test.labels.length).toBeGreaterThanOrEqual(0.99);
    const byLda = await lda.predictBlock(test.block);
    predicted.forEach((p, r) => {
      expect(p.confidence).toBeGreaterThan(0);
      expect(p.confidence).toBeLessThanOrEqual(1);
      if (byLda[r].label === p.label) {
        expect(p.prototype).toBe(byLda[r].prototype);
        expect(p.distance).toBeCloseTo(byLda[r].distance, 9);
      }
    });
  });

  it('is logistic regression at weight 0 and the LDA at a large weight, on rows the two heads disagree on', async () => {
    const { lda, logistic } = await bothHeads(1.2);
    const test = blobs(4, 100, 6, 3, 1.2);
    const [byLda, byLogistic] = [await lda.predictBlock(test.block), await logistic.predictBlock(test.block)];
    expect(byLda.some((p, r) => p.label !== byLogistic[r].label)).toBe(true);
    expect((await combinedClassifier(lda, logistic, 0).predictBlock(test.block)).map((p) => p.label)).toEqual(byLogistic.map((p) => p.label));
    expect((await combinedClassifier(lda, logistic, 1e6).predictBlock(test.block)).map((p) => p.label)).toEqual(byLda.map((p) => p.label));
  });

  it('predicts identically once saved and loaded, and refuses heads of other widths or classes', async () => {
    const { lda, logistic } = await bothHeads();
    const model = combinedClassifier(lda, logistic);
    const loaded = CombinedClassifier.of(JSON.parse(JSON.stringify(model.toJSON())));
    const test = blobs(4, 30, 6, 4);
    expect(await loaded.predictBlock(test.block)).toEqual(await model.predictBlock(test.block));
    const json = model.toJSON();
    expect(() => CombinedClassifier.of({ ...json, dim: 5 })).toThrow(/lda.dim \(6\) must be dim = 5/);
    expect(() => CombinedClassifier.of({ ...json, dim: 5, lda: { ...json.lda, dim: 5 } })).toThrow(/logistic.dim \(6\) must be at most dim = 5/);
    expect(() => CombinedClassifier.of({ ...json, logistic: { ...json.logistic, labels: ['a', 'b', 'c', 'd'] } })).toThrow(/name the same classes/);
    expect(await model.predictBlock({ data: new Float32Array(0), rows: 0, dims: 6 })).toEqual([]);
  });
});
