/**
 * The LDA and logistic regression together: each class's score is the LDA's log-probability (the
 * softmax of its nearest-prototype scores) times `ldaWeight`, plus logistic regression's
 * log-probability. Logistic regression separates the look-alike varieties the LDA confuses; the
 * LDA's prototypes, fitted on statistics that include the field copies, keep the head steady when
 * the photos change. At 0.1 the pair scored at least as well as either head on the sets of 103
 * classes, clean and in the field (docs/FEATURE-CHOICE.md, "The real Test split at the product's
 * class count").
 *
 * The LDA sees every component of the head; logistic regression may see only the leading ones, at
 * most one per CLASSIFIER_ROWS_PER_COMPONENT Training rows (classifier-components.ts).
 *
 * A prediction's confidence is the softmax of the combined scores at the predicted class; its
 * distance and prototype are the LDA's nearest prototype of that class (report.html shows the
 * Training image behind it).
 *
 * API: `combinedClassifier(lda, logistic, ldaWeight)` -> model; `model.predictBlock(block)`,
 * `model.toJSON()`, `CombinedClassifier.of(json)`.
 */
import { z } from 'zod';
import { LdaClassifier, LdaClassifierSchema, prototypeDistance } from './lda-classifier';
import { LogisticClassifier, LogisticClassifierSchema } from './logistic-classifier';
import type { RowBlock } from './native-kernels';

export const COMBINED_CLASSIFIER_FORMAT = 'fruits-pipeline/lda-logistic-classifier@1';

/** The LDA's weight beside logistic regression's (bench/classifier-tuning.ts --heads: 0.1 against 1 and 0.03). */
export const DEFAULT_LDA_WEIGHT = 0.1;

export const CombinedClassifierSchema = z
  .object({
    format: z.literal(COMBINED_CLASSIFIER_FORMAT),
    dim: z.number().int().min(1),
    ldaWeight: z.number().min(0).finite(),
    lda: LdaClassifierSchema,
    logistic: LogisticClassifierSchema,
  })
  .superRefine((model, context) => {
    const problem = (message: string) => context.addIssue({ code: 'custom', message });
    if (model.lda.dim !== model.dim) problem(`lda.dim (${model.lda.dim}) must be dim = ${model.dim}`);
    // Logistic regression may be held to the leading components (classifier-components.ts).
    if (model.logistic.dim > model.dim) problem(`logistic.dim (${model.logistic.dim}) must be at most dim = ${model.dim}`);
    const logisticLabels = new Set(model.logistic.labels);
    if (model.lda.labels.length !== logisticLabels.size || model.lda.labels.some((label) => !logisticLabels.has(label))) {
      problem('lda.labels and logistic.labels must name the same classes');
    }
  });
export type CombinedClassifierJson = z.infer<typeof CombinedClassifierSchema>;

export interface CombinedPrediction {
  readonly label: string;
  /** Softmax of the combined scores at the label, in (0, 1]. */
  readonly confidence: number;
  /** Distance to the label's nearest LDA prototype, in the discriminant space. */
  readonly distance: number;
  /** That prototype's index in the LDA's prototypes. */
  readonly prototype: number;
}

const SMALLEST_PROBABILITY = 2 ** -126;

export class CombinedClassifier {
  private readonly lda: LdaClassifier;
  private readonly logistic: LogisticClassifier;
  /** For each of the LDA's labels, its column in logistic regression's probabilities. */
  private readonly logisticColumn: Int32Array;

  private constructor(private readonly json: CombinedClassifierJson) {
    this.lda = LdaClassifier.of(json.lda);
    this.logistic = new LogisticClassifier(json.logistic);
    this.logisticColumn = Int32Array.from(json.lda.labels, (label) => json.logistic.labels.indexOf(label));
  }

  static of(json: CombinedClassifierJson): CombinedClassifier {
    return new CombinedClassifier(CombinedClassifierSchema.parse(json));
  }

  get labels(): readonly string[] {
    return this.json.lda.labels;
  }

  get dim(): number {
    return this.json.dim;
  }

  /** The label of each row of `block` (rows x dim), with its confidence and nearest prototype; both heads' products on the native kernel. */
  async predictBlock(block: RowBlock): Promise<CombinedPrediction[]> {
    if (block.rows === 0) return [];
    const lda = await this.lda.classScoresBlock(block);
    const probabilities = await this.logistic.probabilitiesBlock(block);
    const { classes, scores } = lda;
    const logisticClasses = this.json.logistic.labels.length;
    const combined = new Float64Array(classes);
    const predictions: CombinedPrediction[] = [];
    for (let r = 0; r < block.rows; r++) {
      const ldaLog = logSoftmax(scores.subarray(r * classes, (r + 1) * classes));
      let best = 0;
      for (let c = 0; c < classes; c++) {
        // A probability float32 rounds to 0 counts as the smallest normal float32: every score stays finite.
        const probability = Math.max(probabilities[r * logisticClasses + this.logisticColumn[c]], SMALLEST_PROBABILITY);
        combined[c] = this.json.ldaWeight * ldaLog[c] + Math.log(probability);
        if (combined[c] > combined[best]) best = c;
      }
      let total = 0;
      for (const score of combined) total += Math.exp(score - combined[best]);
      predictions.push({
        label: this.labels[best],
        confidence: 1 / total,
        distance: prototypeDistance(lda, r, best),
        prototype: lda.prototypes[r * classes + best],
      });
    }
    return predictions;
  }

  toJSON(): CombinedClassifierJson {
    return this.json;
  }
}

/**
 * The pair as one head, fitted on the same classes: the LDA over the head's components, logistic
 * regression over as many or over the leading ones.
 */
export function combinedClassifier(lda: LdaClassifier, logistic: LogisticClassifier, ldaWeight: number = DEFAULT_LDA_WEIGHT): CombinedClassifier {
  return CombinedClassifier.of({ format: COMBINED_CLASSIFIER_FORMAT, dim: lda.dim, ldaWeight, lda: lda.toJSON(), logistic: logistic.toJSON() });
}

/** log softmax(scores), the largest subtracted first. */
function logSoftmax(scores: Float64Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const score of scores) if (score > max) max = score;
  let total = 0;
  for (const score of scores) total += Math.exp(score - max);
  const log = max + Math.log(total);
  return scores.map((score) => score - log);
}
