/**
 * The field conditions the benchmarks and tests alter photos with: the featurize children's own
 * (lambdas/featurize/field-conditions.ts), which alter copies of Training images for the classifier.
 */
export { alterImage, FIELD_CONDITIONS, type FieldCondition } from '../lambdas/featurize/field-conditions';
