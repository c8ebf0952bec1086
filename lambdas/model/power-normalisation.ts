/**
 * Power normalisation of pooled CNN features: each value a becomes sign(a) |a|^p, 0 < p <= 1.
 *
 * Pooled activations are heavy-tailed: a few channels fire hard on many images, and a photo's
 * background, light or blur moves those most. A power below 1 compresses the large values against
 * the small ones, so neither the PCA nor the distances after it are dominated by them. p = 0.5 is
 * the signed square root; the default p = 0.25 gains field accuracy over it on three of the four
 * sets the classifier is chosen on and loses none, for both the LDA head and 5-NN, at the same
 * clean accuracy within an image (docs/FEATURE-CHOICE.md, "The features the classifier sees").
 */

/** Replaces every value of `features` by sign(a) |a|^power, in place; returns `features`. */
export function powerNormalise(features: Float32Array, power: number): Float32Array {
  if (!(power > 0 && power <= 1)) throw new RangeError(`the feature power must be in (0, 1], got ${power}`);
  if (power === 1) return features;
  for (let i = 0; i < features.length; i++) {
    const value = features[i];
    features[i] = value < 0 ? -((-value) ** power) : value ** power;
  }
  return features;
}

/**
 * How a featurizer id names the power: nothing for 1 (the features as pooled), `-sqrt` for 0.5
 * (the name the square-root features have always carried, so models saved with them still match
 * a run that asks for 0.5), `-pow<p>` for any other.
 */
export function powerSuffix(power: number): string {
  if (power === 1) return '';
  return power === 0.5 ? '-sqrt' : `-pow${power}`;
}
