/**
 * A set of rows' moments (count, mean, centred scatter) packed: the scatter's upper triangle only,
 * which is all a symmetric scatter holds. The form the native accumulator sums blocks in, the
 * moments stage writes, and the merge tree and the fit add up, with Chan et al.'s pairwise formula.
 */
import type { FeatureMoments } from './streaming-pca';
import { mirrorUpperTriangle } from '../common';

/**
 * Count, mean and the scatter's upper triangle, as float64 values: `[count, dim, mean...,
 * S[0][0..d), S[1][1..d), ...]`; its bytes are what the moments stage writes. The scatter is
 * symmetric, and every reader of it (the merge, the correlation the fit builds) takes S[i][j] for
 * j >= i only, so the lower half would be bytes read for nothing: 7.6 MB instead of 15 MB at 1,376
 * features. The merges add these up a partial at a time, without the whole scatter.
 */
export type PackedMoments = Float64Array;

/** The packed moments in `bytes` (a view when they are 8-byte aligned, else a copy), checked. */
export function packedMomentsOf(bytes: Uint8Array, where: string): PackedMoments {
  const length = bytes.byteLength >> 3;
  const values = bytes.byteOffset % 8 === 0 ? new Float64Array(bytes.buffer, bytes.byteOffset, length) : new Float64Array(bytes.slice(0, length * 8).buffer);
  const dim = values[1];
  if (bytes.byteLength % 8 !== 0 || !Number.isInteger(dim) || dim < 0 || length !== 2 + dim + (dim * (dim + 1)) / 2)
    throw new Error(`moments ${where}: ${bytes.byteLength} bytes is not count, dim, mean and the scatter's upper triangle`);
  return values;
}

/** The packed moments of no rows of `dim` features: the identity of `mergePackedMomentsInto`. */
export function emptyPackedMoments(dim: number): PackedMoments {
  const packed = new Float64Array(2 + dim + (dim * (dim + 1)) / 2);
  packed[1] = dim;
  return packed;
}

/** The count of rows the packed moments hold. */
export function packedCount(packed: PackedMoments): number {
  return packed[0];
}

/** The bytes of packed moments, as the moments stage writes them. */
export function packedBytes(packed: PackedMoments): Uint8Array {
  return new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength);
}

/**
 * Adds `part` into `into` (in place), both packed, with Chan, Golub & LeVeque's pairwise formula,
 * scatter += part.scatter + (na nb / n) delta delta^T (delta = part.mean - into.mean), on the
 * upper triangle, which is all a symmetric scatter holds. Exact in any grouping up to float64
 * rounding, so the partial moments of map children merge in any tree; bit for bit the upper
 * triangle of the full-matrix merge (test/support/reference-moments.ts).
 */
export function mergePackedMomentsInto(into: PackedMoments, part: PackedMoments): PackedMoments {
  const [na, d] = [into[0], into[1]];
  const nb = part[0];
  if (part[1] !== d) throw new RangeError(`cannot merge moments of ${part[1]} features into moments of ${d}`);
  if (nb === 0) return into;
  if (na === 0) {
    into.set(part);
    return into;
  }
  const n = na + nb;
  const coefficient = (na * nb) / n;
  const delta = new Float64Array(d);
  for (let f = 0; f < d; f++) delta[f] = part[2 + f] - into[2 + f];
  let at = 2 + d;
  for (let i = 0; i < d; i++) {
    const di = coefficient * delta[i];
    for (let j = i; j < d; j++, at++) into[at] += part[at] + di * delta[j];
  }
  for (let f = 0; f < d; f++) into[2 + f] += (delta[f] * nb) / n;
  into[0] = n;
  return into;
}

/** The moments of packed moments: the scatter whole, its lower half mirrored from the upper. */
export function unpackMoments(packed: PackedMoments): FeatureMoments {
  const [count, dim] = [packed[0], packed[1]];
  const scatter = new Float64Array(dim * dim);
  let at = 2 + dim;
  for (let i = 0; i < dim; i++) {
    scatter.set(packed.subarray(at, at + dim - i), i * dim + i);
    at += dim - i;
  }
  return { count, dim, mean: packed.slice(2, 2 + dim), scatter: mirrorUpperTriangle(scatter, dim) };
}
