/** The float array helpers every program may use. */
import { mirrorUpperTriangle } from '../../../lambdas/common/float-arrays';

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
