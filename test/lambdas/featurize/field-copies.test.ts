import { fieldCopyOf } from '../../../lambdas/featurize/field-copies';
import { FIELD_CONDITIONS } from '../../../lambdas/featurize/field-conditions';
import { decodeFeatureShard, encodeFeatureShard } from '../../../lambdas/bookkeeping/feature-shard';

describe('field copies (lambdas/featurize/field-copies.ts)', () => {
  const keys = Array.from({ length: 4000 }, (_, i) => `input/fruits/Training/Class ${i % 40}/${i}_100.jpg`);

  it('chooses about one Training image in `every`, by its key alone, the conditions spread', () => {
    for (const every of [1, 2, 4, 8]) {
      const chosen = keys.filter((key) => fieldCopyOf(key, every));
      expect(chosen.length / keys.length).toBeGreaterThan(0.85 / every);
      expect(chosen.length / keys.length).toBeLessThan(1.15 / every);
    }
    const conditions = new Map<string, number>();
    for (const key of keys) conditions.set(fieldCopyOf(key, 1)!.condition, (conditions.get(fieldCopyOf(key, 1)!.condition) ?? 0) + 1);
    expect([...conditions.keys()].sort()).toEqual([...FIELD_CONDITIONS].sort());
    for (const count of conditions.values()) expect(count).toBeGreaterThan(keys.length / FIELD_CONDITIONS.length / 2);
    expect(fieldCopyOf(keys[7], 1)).toEqual(fieldCopyOf(keys[7], 1));
  });

  it('never copies a Test or unsplit image, nor anything with 0', () => {
    expect(fieldCopyOf('input/fruits/Test/Kiwi/1.jpg', 1)).toBeUndefined();
    expect(fieldCopyOf('input/fruits/Kiwi/1.jpg', 1)).toBeUndefined();
    expect(keys.filter((key) => fieldCopyOf(key, 0))).toEqual([]);
  });

  it('travel in the shard after the images, checked', () => {
    const header = {
      featurizer: 'pixels-16x16',
      dim: 2,
      keys: ['input/d/Training/A/1.jpg', 'input/d/Test/A/2.jpg'],
      labels: ['A', 'A'],
      failed: [],
      skipped: [],
      fieldCopies: { keys: ['input/d/Training/A/1.jpg'], labels: ['A'], conditions: ['blur'] },
    };
    const vectors = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const decoded = decodeFeatureShard(encodeFeatureShard({ header, vectors }));
    expect(decoded.header.fieldCopies).toEqual(header.fieldCopies);
    expect(Array.from(decoded.vectors)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => encodeFeatureShard({ header, vectors: vectors.subarray(0, 4) })).toThrow(/expected 3 x 2/);
    expect(() => encodeFeatureShard({ header: { ...header, fieldCopies: { ...header.fieldCopies, conditions: [] } }, vectors })).toThrow(/differ in length/);
  });
});
