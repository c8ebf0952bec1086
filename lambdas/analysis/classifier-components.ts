/**
 * How many PCA components a fitted head (the LDA, logistic regression) sees. More than the k kept
 * for features.csv help it at the product's class count: on the real Test split among 103 classes,
 * logistic regression scored 0.921 over 100 components and 0.967 over 300, the LDA 0.904 and 0.942
 * (docs/FEATURE-CHOICE.md). But a head needs Training rows for every component it weighs: on the
 * 720-image sample (480 Training rows), logistic regression scored 0.971 over 100 and 0.867 over
 * 300. So the further components are held to CLASSIFIER_ROWS_PER_COMPONENT Training rows each, and
 * logistic regression, which weighs every component it sees with nothing to shrink them, is held
 * to as many even below the kept k: the 72 Training images of the demo give it 18 (the LDA, shrunk
 * towards a spherical covariance, keeps the kept k).
 */

/**
 * Training rows per component a fitted head is given at least, when it sees more than the kept k:
 * 4.8 rows each scored as well as 20.6 on the sets above, 1.6 collapsed.
 */
export const CLASSIFIER_ROWS_PER_COMPONENT = 4;

/**
 * The components a fitted head asks the PCA fit for: `wanted`, at most one per
 * CLASSIFIER_ROWS_PER_COMPONENT Training rows (it sees at least the kept k whatever this says).
 */
export function classifierComponentsFor(wanted: number, trainingRows: number): number {
  return Math.max(1, Math.min(wanted, Math.floor(trainingRows / CLASSIFIER_ROWS_PER_COMPONENT)));
}

/**
 * Why a logistic regression fitted on `trainingRows` over `components` may not be trusted (fewer
 * rows than CLASSIFIER_ROWS_PER_COMPONENT for even one component), or undefined.
 */
export function logisticWarning(trainingRows: number, components: number): string | undefined {
  if (trainingRows >= CLASSIFIER_ROWS_PER_COMPONENT * components) return undefined;
  return (
    `logistic regression over ${components} components was fitted on ${trainingRows} Training images ` +
    `(${(trainingRows / components).toFixed(1)} per component, fewer than ${CLASSIFIER_ROWS_PER_COMPONENT}): ` +
    'with so few it can fit what sets single images apart (measured on a 720-image sample: 0.867 over 300 components, 0.971 over 100); ' +
    'keep fewer components or use the LDA'
  );
}
