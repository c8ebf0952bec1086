import { ClassificationTally } from '../../../lambdas/analysis/classification';
import { KnnReferences, splitOfKey } from '../../../lambdas/analysis/knn';
import { seededRandom } from '../../../lambdas/common/seeded-random';

/** The scorer as evaluate/knn.ts had it before it moved here: sort-based, the specification. */
function sortedVote(query: number[], references: { label: string; vector: number[] }[], k: number): string {
  const nearest: { distance: number; label: string }[] = [];
  for (const reference of references) {
    let distance = 0;
    for (let d = 0; d < query.length; d++) distance += (query[d] - reference.vector[d]) ** 2;
    if (nearest.length < k || distance < nearest[nearest.length - 1].distance) {
      nearest.push({ distance, label: reference.label });
      nearest.sort((a, b) => a.distance - b.distance);
      if (nearest.length > k) nearest.pop();
    }
  }
  const votes = new Map<string, { count: number; distance: number }>();
  for (const { label, distance } of nearest) {
    const vote = votes.get(label) ?? { count: 0, distance: 0 };
    vote.count++;
    vote.distance += Math.sqrt(distance);
    votes.set(label, vote);
  }
  return [...votes.entries()].sort((a, b) => b[1].count - a[1].count || a[1].distance - b[1].distance)[0][0];
}

describe('k-NN classifier (lambdas/analysis/knn.ts)', () => {
  it('votes as the sort-based specification does, ties included (integer grid: many equal distances)', () => {
    const random = seededRandom(7);
    const references = Array.from({ length: 300 }, (_, i) => ({ label: `c${i % 7}`, vector: [0, 0, 0].map(() => Math.floor(random() * 4)) }));
    const index = new KnnReferences(3, references.length, 'float64');
    references.forEach((r) => index.add(r.label, r.vector));
    for (const k of [1, 2, 5, 8]) {
      for (let q = 0; q < 200; q++) {
        const query = [0, 0, 0].map(() => Math.floor(random() * 4));
        expect(index.predict(query, k)!.label).toBe(sortedVote(query, references, k));
      }
    }
  });

  it('gives the nearest reference and its distance; float32 storage, offsets and fewer dims', () => {
    const index = new KnnReferences(2, 3);
    index.add('a', [0, 0]);
    index.add('b', [3, 4]);
    index.add('b', [0, 9, 99, 99], 0);
    expect(index.predict([0, 0], 1)).toEqual({ label: 'a', distance: 0, nearest: 0 });
    expect(index.predict([9, 3, 4], 1, { offset: 1 })).toEqual({ label: 'b', distance: 0, nearest: 1 });
    expect(index.predict([1, 1], 3)!.label).toBe('b');
    expect(index.predict([2.9, 100], 1, { dims: 1 })).toMatchObject({ label: 'b', nearest: 1 });
    expect(index.reference(2)).toEqual({ label: 'b', vector: Float32Array.from([0, 9]) });
    expect(() => index.add('c', [1, 1])).toThrow(RangeError);
    expect(new KnnReferences(2, 1).predict([0, 0])).toBeUndefined();
  });

  it('reads the split from the innermost split folder', () => {
    expect(splitOfKey('input/d/Training/Kiwi/1.jpg')).toBe('train');
    expect(splitOfKey('input/train-set/Test/Kiwi/1.jpg')).toBe('test');
    expect(splitOfKey('input/d/Kiwi/1.jpg')).toBeUndefined();
  });
});

describe('classification tally', () => {
  it('scores Test rows only, keeps a sparse confusion matrix and ranks confused pairs', () => {
    const tally = new ClassificationTally({ classifier: 'knn', neighbours: 5 }, 10, 100);
    const add = (label: string, predicted: string, times: number, split: 'test' | 'none' = 'test') => {
      for (let i = 0; i < times; i++) tally.add(label, split === 'test' ? 'test' : undefined, predicted, predicted === label ? 0.8 : 0.4);
    };
    add('Apple Braeburn', 'Apple Braeburn', 6);
    add('Apple Braeburn', 'Apple Granny Smith', 3);
    add('Apple Granny Smith', 'Apple Granny Smith', 9);
    add('Kiwi', 'Lemon', 1);
    add('Unlabelled', 'Kiwi', 4, 'none');
    const report = tally.report();
    if (report.status !== 'classified') throw new Error('expected a classification');
    expect(report).toMatchObject({ predicted: 23, scored: 19, correct: 15, accuracy: 15 / 19, unscored: 4, references: 100, classifier: 'knn', neighbours: 5 });
    expect(report.confidence.meanCorrect).toBeCloseTo(0.8, 12);
    expect(report.confidence.meanWrong).toBeCloseTo(0.4, 12);
    expect(report.confidence.mean).toBeCloseTo((15 * 0.8 + 4 * 0.4) / 19, 12);
    expect(report.confusion.cells).toEqual([
      { actual: 'Apple Braeburn', predicted: 'Apple Braeburn', count: 6 },
      { actual: 'Apple Braeburn', predicted: 'Apple Granny Smith', count: 3 },
      { actual: 'Apple Granny Smith', predicted: 'Apple Granny Smith', count: 9 },
      { actual: 'Kiwi', predicted: 'Lemon', count: 1 },
    ]);
    expect(report.perClass.find((c) => c.label === 'Kiwi')).toEqual({ label: 'Kiwi', support: 1, correct: 0, accuracy: 0 });
    expect(report.mostConfused[0]).toEqual({ actual: 'Apple Braeburn', predicted: 'Apple Granny Smith', count: 3, shareOfActual: 1 / 3 });
    expect(new ClassificationTally({ classifier: 'lda', shrinkage: 0.1, prototypes: 8 }, 2, 1).report()).toMatchObject({
      classifier: 'lda',
      scored: 0,
      accuracy: null,
      confidence: { mean: null, meanCorrect: null, meanWrong: null },
    });
  });
});
