/**
 * Which Training images the featurize children also featurize as an altered copy, and how: the
 * copies are rows of their class in the LDA's within-class statistics (classifier-stage.ts), so the
 * discriminant learns the directions a background, a light or a blur moves a photo along and stops
 * relying on them (docs/FEATURE-CHOICE.md). A copy costs a decode, an alteration and an inference:
 * one in `every` Training images gets one, chosen by a hash of its key (the same image gets the same
 * copy in every run, whatever its batch), the conditions of field-conditions.ts spread by the hash.
 */
import { keyHash } from '../common';
// knn.ts alone, not the analysis face: the featurize function has no use for the PCA and its kernels.
import { splitOfKey } from '../analysis/knn';
import { FIELD_CONDITIONS, FieldCondition } from './field-conditions';

export interface FieldCopy {
  readonly condition: FieldCondition;
  readonly seed: number;
}

/** The copy of the image at `key`, or undefined: not a Training image, not chosen, or `every` 0 (no copies). */
export function fieldCopyOf(key: string, every: number): FieldCopy | undefined {
  if (every <= 0 || splitOfKey(key) !== 'train') return undefined;
  const hash = keyHash(key);
  // The low half chooses the images, the high half the condition: independent of each other.
  if ((hash & 0xffff) % every !== 0) return undefined;
  return { condition: FIELD_CONDITIONS[(hash >>> 16) % FIELD_CONDITIONS.length], seed: hash };
}
