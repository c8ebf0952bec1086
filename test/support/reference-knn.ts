/**
 * k-nearest-neighbours written out plainly from its specification, sharing no code with the
 * project's classifier (lambdas/analysis/knn.ts): the tests score a run with it and compare. A query
 * gets the majority label of its k nearest references (Euclidean distance; ties in distance keep
 * the earlier reference); a tie in votes goes to the tied label whose voters are nearest in total.
 */
export interface ReferenceRow {
  readonly key: string;
  readonly label: string;
  readonly vector: ArrayLike<number>;
}

export interface ReferencePrediction {
  readonly predicted: string;
  /** Distance to the nearest reference. */
  readonly nearest: number;
}

export function referenceKnn(
  references: readonly ReferenceRow[],
  queries: readonly ReferenceRow[],
  k: number,
): { predictions: Map<string, ReferencePrediction>; correct: number; scored: number } {
  const predictions = new Map<string, ReferencePrediction>();
  let correct = 0;
  for (const query of queries) {
    const neighbours = references
      .map((reference, order) => {
        let sum = 0;
        for (let d = 0; d < query.vector.length; d++) sum += (query.vector[d] - reference.vector[d]) ** 2;
        return { label: reference.label, distance: Math.sqrt(sum), order };
      })
      .sort((a, b) => a.distance - b.distance || a.order - b.order)
      .slice(0, k);
    const votes = new Map<string, { count: number; total: number }>();
    for (const { label, distance } of neighbours) {
      const vote = votes.get(label) ?? { count: 0, total: 0 };
      votes.set(label, { count: vote.count + 1, total: vote.total + distance });
    }
    const [predicted] = [...votes.entries()].sort(([, a], [, b]) => b.count - a.count || a.total - b.total)[0];
    predictions.set(query.key, { predicted, nearest: neighbours[0].distance });
    if (predicted === query.label) correct++;
  }
  return { predictions, correct, scored: queries.length };
}
