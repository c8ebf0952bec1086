/**
 * The moments of several groups of rows as the moments of all of them: Chan, Golub & LeVeque's
 * pairwise formula, so a mean and scatter merged from parts stay as accurate as one pass over
 * every row (no `E[x^2] - E[x]^2` cancellation):
 *
 *   n = na + nb,  delta = mean_b - mean_a,
 *   mean = mean_a + delta * nb / n,  scatter = scatter_a + scatter_b + delta delta^T * na * nb / n.
 *
 * Each merge is O(dim^2): the fit's cost grows with the number of groups, not of rows.
 */
import type { FeatureMoments } from './streaming-pca';

export function mergeMoments(parts: readonly FeatureMoments[]): FeatureMoments {
  if (parts.length === 0) throw new RangeError('no moments to merge');
  const dim = parts[0].dim;
  const mean = Float64Array.from(parts[0].mean);
  const scatter = Float64Array.from(parts[0].scatter);
  let count = parts[0].count;
  for (const part of parts.slice(1)) {
    if (part.dim !== dim) throw new RangeError(`moments of ${part.dim} features cannot be merged with moments of ${dim}`);
    if (part.count === 0) continue;
    const n = count + part.count;
    const delta = new Float64Array(dim);
    for (let f = 0; f < dim; f++) delta[f] = part.mean[f] - mean[f];
    const weight = (count * part.count) / n;
    for (let i = 0; i < dim; i++) {
      const di = weight * delta[i];
      const row = i * dim;
      for (let j = 0; j < dim; j++) scatter[row + j] += part.scatter[row + j] + di * delta[j];
    }
    for (let f = 0; f < dim; f++) mean[f] += (delta[f] * part.count) / n;
    count = n;
  }
  return { count, dim, mean, scatter };
}
