import { FeaturizeEnvSchema } from '../../../lambdas/contracts/handler-env';
import { powerNormalise, powerSuffix } from '../../../lambdas/model/power-normalisation';

describe('power normalisation of pooled features', () => {
  it('maps each value a to sign(a) |a|^p in place, 0 staying 0', () => {
    const features = Float32Array.of(16, -16, 0, 0.0625, -1, 6);
    expect(powerNormalise(features, 0.25)).toBe(features);
    expect(Array.from(features)).toEqual([2, -2, 0, 0.5, -1, Math.fround(6 ** 0.25)]);
    expect(Array.from(powerNormalise(Float32Array.of(9, -4), 0.5))).toEqual([3, -2]);
  });

  it('leaves the features as pooled at power 1, and refuses a power outside (0, 1]', () => {
    expect(Array.from(powerNormalise(Float32Array.of(-2.5, 7), 1))).toEqual([-2.5, 7]);
    for (const power of [0, -0.5, 1.5, Number.NaN]) expect(() => powerNormalise(new Float32Array(1), power)).toThrow(/feature power must be in \(0, 1\]/);
  });

  it('is named in the featurizer id: nothing at 1, -sqrt at 0.5 as before, -pow<p> otherwise', () => {
    expect([1, 0.5, 0.25, 0.3].map(powerSuffix)).toEqual(['', '-sqrt', '-pow0.25', '-pow0.3']);
  });

  it('is 0.25 unless FEATURE_POWER says otherwise, which must lie in (0, 1]', () => {
    expect(FeaturizeEnvSchema.parse({}).FEATURE_POWER).toBe(0.25);
    expect(FeaturizeEnvSchema.parse({ FEATURE_POWER: '0.5' }).FEATURE_POWER).toBe(0.5);
    for (const bad of ['0', '1.5', 'sqrt']) expect(() => FeaturizeEnvSchema.parse({ FEATURE_POWER: bad })).toThrow();
  });
});
