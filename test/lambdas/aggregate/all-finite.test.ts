import { allFinite } from '../../../lambdas/aggregate/aggregate-shared';

describe('allFinite', () => {
  const tiny = 1e-45; // the smallest float32 subnormal
  const largest = 3.4028234663852886e38; // the largest finite float32

  it('takes every finite float32, subnormals, zeros and the largest included', () => {
    const row = Float32Array.of(0, -0, tiny, -tiny, largest, -largest, 1.5, -2);
    expect(allFinite(row, 0, row.length)).toBe(true);
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])('finds %p wherever it sits in the row', (bad) => {
    for (let at = 0; at < 5; at++) {
      const row = new Float32Array(5).fill(1);
      row[at] = bad;
      expect(allFinite(row, 0, 5)).toBe(false);
    }
  });

  it('reads only its row, in a view of a larger buffer', () => {
    const buffer = new Float32Array(12).fill(Number.NaN);
    const shard = new Float32Array(buffer.buffer, 2 * Float32Array.BYTES_PER_ELEMENT, 8);
    shard.fill(1, 0, 4);
    expect(allFinite(shard, 0, 4)).toBe(true);
    expect(allFinite(shard, 1, 4)).toBe(false);
    expect(allFinite(shard, 4, 4)).toBe(false);
  });
});
