import { packedBytes, packedMomentsOf, unpackMoments } from '../../lambdas/analysis/packed-moments';
import type { FeatureMoments } from '../../lambdas/analysis/streaming-pca';

/**
 * The reference the product's packed merge (mergePackedMomentsInto, packed-moments.ts) is checked
 * against: Chan, Golub & LeVeque's pairwise formula on the full d x d scatter, added into `into`
 * in place (`part` is left as it is): scatter += part.scatter + (na nb / n) delta delta^T,
 * delta = part.mean - into.mean.
 *
 * @example
 * const total = emptyMoments(dim); // native-kernels.ts
 * for (const part of parts) mergeMomentsInto(total, part);
 */
export function mergeMomentsInto(into: FeatureMoments, part: FeatureMoments): FeatureMoments {
  if (into.dim !== part.dim) throw new RangeError(`cannot merge moments of ${part.dim} features into moments of ${into.dim}`);
  const d = into.dim;
  const na = into.count;
  const nb = part.count;
  if (nb === 0) return into;
  const { scatter, mean } = into;
  if (na === 0) {
    mean.set(part.mean);
    scatter.set(part.scatter);
    into.count = nb;
    return into;
  }
  const n = na + nb;
  const coefficient = (na * nb) / n;
  const delta = new Float64Array(d);
  for (let f = 0; f < d; f++) delta[f] = part.mean[f] - mean[f];
  const other = part.scatter;
  for (let i = 0; i < d; i++) {
    const di = coefficient * delta[i];
    const row = i * d;
    for (let j = 0; j < d; j++) scatter[row + j] += other[row + j] + di * delta[j];
  }
  for (let f = 0; f < d; f++) mean[f] += (delta[f] * nb) / n;
  into.count = n;
  return into;
}

/** Full moments as the moments stage writes its packed ones (packed-moments.ts): count, dim, mean, the scatter's upper triangle. */
export function encodeMoments(moments: FeatureMoments): Uint8Array {
  const { dim } = moments;
  const values = new Float64Array(2 + dim + (dim * (dim + 1)) / 2);
  values[0] = moments.count;
  values[1] = dim;
  values.set(moments.mean, 2);
  let at = 2 + dim;
  for (let i = 0; i < dim; i++) {
    values.set(moments.scatter.subarray(i * dim + i, (i + 1) * dim), at);
    at += dim - i;
  }
  return packedBytes(values);
}

/** `encodeMoments` read back, checked: the scatter whole again, its lower half mirrored from the upper. */
export function decodeMoments(bytes: Uint8Array, where: string): FeatureMoments {
  return unpackMoments(packedMomentsOf(bytes, where));
}
