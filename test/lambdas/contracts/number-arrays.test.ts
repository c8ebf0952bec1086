/** The one-loop schemas of number arrays that model and statistics files are checked with. */
import { numberArray, numberRows } from '../../../lambdas/contracts/number-arrays';

describe('numberArray', () => {
  it('accepts finite numbers, and under a bound only those within it', () => {
    expect(numberArray().parse([1, -2.5, 0])).toEqual([1, -2.5, 0]);
    expect(numberArray('nonnegative').safeParse([0, 3]).success).toBe(true);
    expect(numberArray('nonnegative').safeParse([0, -3]).success).toBe(false);
    expect(numberArray('positive').safeParse([1, 0]).success).toBe(false);
  });

  it('names the first bad value by its index, and refuses what is not an array', () => {
    const result = numberArray('positive').safeParse([1, 2, 'NaN', null]);
    expect(result.success).toBe(false);
    expect(result.error!.issues).toHaveLength(1);
    expect(result.error!.issues[0]).toMatchObject({ path: [2], message: 'expected number (finite, positive), got "NaN"' });
    expect(numberArray().safeParse([1, Infinity]).error!.issues[0].path).toEqual([1]);
    expect(numberArray().safeParse({ 0: 1 }).success).toBe(false);
  });
});

describe('numberRows', () => {
  it('accepts rows of finite numbers and names a bad value by its row and column', () => {
    expect(numberRows().parse([[1, 2], [3]])).toEqual([[1, 2], [3]]);
    expect(numberRows().safeParse([[1], [2, NaN]]).error!.issues[0].path).toEqual([1, 1]);
    expect(numberRows().safeParse([[1], 2]).success).toBe(false);
  });
});
