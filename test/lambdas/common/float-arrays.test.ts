/** The float array helpers every program may use. */
import { columnRange, leadingColumns, mirrorUpperTriangle } from '../../../lambdas/common/float-arrays';

describe('mirrorUpperTriangle', () => {
  // Sizes below, at and across the 64 x 64 tile, and one that no tile divides.
  it.each([1, 2, 63, 64, 65, 130, 200])('copies the upper triangle of a %i x %i matrix onto the lower, leaving the upper as it was', (dim) => {
    const matrix = new Float64Array(dim * dim);
    for (let i = 0; i < dim; i++) for (let j = i; j < dim; j++) matrix[i * dim + j] = i * 1000 + j + 0.5;
    const upper = matrix.slice();
    expect(mirrorUpperTriangle(matrix, dim)).toBe(matrix);
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j < dim; j++) expect(matrix[i * dim + j]).toBe(upper[Math.min(i, j) * dim + Math.max(i, j)]);
    }
  });

  it('rejects an array too short for the matrix', () => {
    expect(() => mirrorUpperTriangle(new Float64Array(8), 3)).toThrow(RangeError);
  });
});

describe('columnRange and leadingColumns (row-major arrays)', () => {
  // Two rows of four: 0 1 2 3 / 4 5 6 7.
  const rows = 2;
  const width = 4;

  it('takes a range of columns of every row, in an array of the same type', () => {
    const f64 = columnRange(
      Float64Array.from({ length: 8 }, (_, i) => i),
      rows,
      width,
      1,
      3,
    );
    expect(f64).toBeInstanceOf(Float64Array);
    expect(Array.from(f64)).toEqual([1, 2, 5, 6]);
    const f32 = leadingColumns(
      Float32Array.from({ length: 8 }, (_, i) => i),
      rows,
      width,
      3,
    );
    expect(f32).toBeInstanceOf(Float32Array);
    expect(Array.from(f32)).toEqual([0, 1, 2, 4, 5, 6]);
  });

  it('gives a view of the array when the range is all of its columns, and refuses a range outside them', () => {
    const data = new Float64Array(10);
    const all = columnRange(data, rows, width, 0, width);
    expect(all.buffer).toBe(data.buffer);
    expect(all).toHaveLength(8);
    expect(() => columnRange(data, rows, width, 3, 5)).toThrow(RangeError);
    expect(() => columnRange(data, rows, width, 2, 1)).toThrow(RangeError);
    expect(() => leadingColumns(new Float32Array(8), rows, width, 5)).toThrow(/5 columns of rows 4 wide/);
  });
});
