/** Float32 arrays end to end in one array: batches of features, or feature parts side by side. */
export function concatFloat32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((length, part) => length + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * The largest difference between `actual` and `expected`, element by element, relative to the
 * largest magnitude in `expected`: how far a faster or lower-precision result is from its reference.
 */
export function largestRelativeDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let scale = 0;
  let difference = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
    difference = Math.max(difference, Math.abs(actual[i] - expected[i]));
  }
  return difference / scale;
}
