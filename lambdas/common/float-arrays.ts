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

/** The first `columns` of each of the `rows` rows of a row-major array `width` values wide, as rows of their own. */
export function leadingColumns(data: Float32Array, rows: number, width: number, columns: number): Float32Array {
  if (columns > width) throw new RangeError(`leadingColumns: ${columns} columns of rows ${width} wide`);
  return columnRange(data, rows, width, 0, columns);
}

/**
 * Columns `from` .. `to` - 1 of each of the `rows` rows of a row-major array `width` values wide,
 * as rows of their own, in an array of the same type (a view of `data` when they are all of it).
 */
export function columnRange<T extends Float32Array | Float64Array>(data: T, rows: number, width: number, from: number, to: number): T {
  if (!(0 <= from && from <= to && to <= width)) throw new RangeError(`columnRange: columns ${from} to ${to} of rows ${width} wide`);
  if (from === 0 && to === width) return data.subarray(0, rows * width) as T;
  const columns = to - from;
  const out = (data instanceof Float32Array ? new Float32Array(rows * columns) : new Float64Array(rows * columns)) as T;
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * width + from, r * width + to), r * columns);
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

/** Rows and columns per tile of `mirrorUpperTriangle`: a 64 x 64 tile of float64 and its mirror stay in the first-level cache. */
const MIRROR_TILE = 64;

/**
 * Copies the upper triangle of the row-major `dim` x `dim` `matrix` onto its lower triangle, in
 * place, tile by tile: a symmetric matrix whose products filled only j >= i. Element by element,
 * the lower triangle's column-wise writes would miss the cache on every one of its dim^2 / 2 values.
 */
export function mirrorUpperTriangle(matrix: Float64Array, dim: number): Float64Array {
  if (matrix.length < dim * dim) throw new RangeError(`mirrorUpperTriangle: ${matrix.length} values cannot hold ${dim} x ${dim}`);
  for (let i0 = 0; i0 < dim; i0 += MIRROR_TILE) {
    const i1 = Math.min(dim, i0 + MIRROR_TILE);
    for (let j0 = i0; j0 < dim; j0 += MIRROR_TILE) {
      const j1 = Math.min(dim, j0 + MIRROR_TILE);
      for (let j = j0; j < j1; j++) {
        const row = j * dim;
        for (let i = i0; i < Math.min(i1, j); i++) matrix[row + i] = matrix[i * dim + j];
      }
    }
  }
  return matrix;
}
