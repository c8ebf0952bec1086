import { decodeFeatureShard, encodeFeatureShard } from '../../../lambdas/bookkeeping/feature-shard';

describe('feature shard format', () => {
  it('round-trips keys with unicode, spaces and percent signs, and exact float32 vectors', () => {
    const keys = ['input/d/Apple Red 1/ü 1.jpg', 'input/d/Kiwi/a+b%20.png', 'input/d/Kiwi/x.jpg'];
    const vectors = Float32Array.from({ length: 3 * 5 }, (_, i) => Math.fround(i * 0.1 - 0.7));
    const bytes = encodeFeatureShard({
      header: { featurizer: 'test', dim: 5, keys, labels: ['Apple Red 1', 'Kiwi', 'Kiwi'], failed: [{ key: 'k', reason: 'r' }], skipped: [] },
      vectors,
    });
    expect((bytes.readUInt32LE(4) + 8) % 4).toBe(0);
    const back = decodeFeatureShard(bytes.subarray(0));
    expect(back.header.keys).toEqual(keys);
    expect(back.header.failed).toEqual([{ key: 'k', reason: 'r' }]);
    expect(Array.from(back.vectors)).toEqual(Array.from(vectors));
  });

  it('rejects what is not a shard, or a truncated one', () => {
    expect(() => decodeFeatureShard(Buffer.from('hello world'))).toThrow(/bad magic/);
    const bytes = encodeFeatureShard({
      header: { featurizer: 't', dim: 2, keys: ['a'], labels: ['L'], failed: [], skipped: [] },
      vectors: new Float32Array([1, 2]),
    });
    expect(() => decodeFeatureShard(bytes.subarray(0, bytes.length - 1))).toThrow(/expected 8/);
  });
});
