/**
 * Multinomial logistic regression over the PCA components: a discriminative head, fitted on rows
 * (not on statistics), which draws each class boundary where the classes meet instead of around
 * each class's shape. Measured on the sample's real Test split judged against all 103 classes, it
 * separates the near-identical varieties (Tomato 1 and 3, the red apples) that the LDA and k-NN
 * confuse (docs/FEATURE-CHOICE.md, "The real Test split at the product's class count").
 *
 * - Inputs are the components divided by their root mean square over the fitted rows, plus a
 *   bias column: the loss's curvature is then bounded by half the largest eigenvalue of X^T X / n,
 *   whose inverse (with l2) is the first step's length.
 * - The loss is the mean cross-entropy plus l2 / 2 ||W||^2 (the bias row unpenalised), minimised by
 *   L-BFGS (lbfgs.ts: the last steps' curvature, a backtracking Armijo search) in at most
 *   `rounds` evaluations of the loss and its gradient, each one run of the native `softmaxGradient`
 *   graph (kernel-graphs.ts, float32: MLAS's GEMM and softmax); only the (dim + 1) x classes
 *   weights live in JavaScript. It stops sooner when no step lowers the loss any more.
 * - A prediction's confidence is its softmax probability.
 *
 * API: `fitLogisticClassifier(block, labels, options)` -> model; `model.predictBlock(block)`,
 * `model.probabilitiesBlock(block)`, `model.toJSON()`, `loadLogisticClassifier(json)`.
 */
import { z } from 'zod';
import { numberArray, numberRows } from '../contracts/number-arrays';
import { float64Of, KernelOptions, kernelSession, ort } from './kernel-graphs';
import type { RowBlock } from './native-kernels';
import { lbfgsMinimum, LbfgsObjective } from './lbfgs';
import { topEigen } from './top-eigen';

export const LOGISTIC_CLASSIFIER_FORMAT = 'fruits-pipeline/logistic-classifier@1';

/** The L2 penalty when nothing else is configured (bench/classifier-choice.ts: 1e-3 beat 1e-2 and 1e-1 on every set at 103 classes). */
export const DEFAULT_LOGISTIC_L2 = 1e-3;
/**
 * Evaluations of the loss and its gradient when nothing else is configured (bench/classifier-tuning.ts
 * --heads: alone and beside the LDA, 50 score within one image of 75 and 150 on each set).
 */
export const DEFAULT_LOGISTIC_ROUNDS = 50;
/** Rows per run of the prediction graph. */
const PREDICT_ROWS = 4096;

export interface LogisticOptions extends Pick<KernelOptions, 'intraOpNumThreads'> {
  /** @default DEFAULT_LOGISTIC_L2 */
  readonly l2?: number;
  /** Evaluations of the loss and its gradient, at most. @default DEFAULT_LOGISTIC_ROUNDS */
  readonly rounds?: number;
}

export interface LogisticPrediction {
  readonly label: string;
  /** Softmax probability of the label, in (0, 1]. */
  readonly confidence: number;
}

export const LogisticClassifierSchema = z
  .object({
    format: z.literal(LOGISTIC_CLASSIFIER_FORMAT),
    dim: z.number().int().min(1),
    l2: z.number().min(0),
    /** Evaluations of the loss and its gradient the fit was allowed, for the record. */
    rounds: z.number().int().min(1),
    /** Rows it was fitted on, for the record. */
    count: z.number().int().min(1),
    labels: z.array(z.string()).min(2),
    /** A component is divided by its scale before the weights apply. */
    scale: numberArray(),
    /** (dim + 1) x classes: a row's class scores are [row / scale, 1] . weights. */
    weights: numberRows(),
  })
  .superRefine((model, context) => {
    const problem = (message: string) => context.addIssue({ code: 'custom', message });
    if (model.scale.length !== model.dim) problem(`scale holds ${model.scale.length} values, expected dim = ${model.dim}`);
    if (model.scale.some((s) => !(s > 0))) problem('a scale is not positive');
    if (model.weights.length !== model.dim + 1) problem(`weights hold ${model.weights.length} rows, expected dim + 1 = ${model.dim + 1}`);
    if (model.weights.some((row) => row.length !== model.labels.length)) problem(`a weights row does not hold one value per label (${model.labels.length})`);
    if (new Set(model.labels).size !== model.labels.length) problem('a label is listed twice');
  });
export type LogisticClassifierJson = z.infer<typeof LogisticClassifierSchema>;

export class LogisticClassifier {
  private readonly scale: Float64Array;
  private readonly weights: ort.Tensor;

  constructor(private readonly model: LogisticClassifierJson) {
    this.scale = Float64Array.from(model.scale);
    this.weights = new ort.Tensor('float32', Float32Array.from(model.weights.flat()), [model.dim + 1, model.labels.length]);
  }

  get labels(): readonly string[] {
    return this.model.labels;
  }

  get dim(): number {
    return this.model.dim;
  }

  /**
   * Each row's probability of each label (rows x labels, row-major, labels in `labels` order), on
   * the native kernel, for a block of rows of at least `dim` values: it reads each row's leading
   * `dim` (a head held to fewer components than the model projects on, classifier-components.ts).
   */
  async probabilitiesBlock(block: RowBlock<Float32Array | Float64Array>, options: Pick<KernelOptions, 'intraOpNumThreads'> = {}): Promise<Float32Array> {
    const { dim, labels } = this.model;
    if (block.dims < dim) throw new RangeError(`the classifier takes ${dim} components, the rows hold ${block.dims}`);
    const session = await kernelSession('softmax', { ...options, precision: 'float32' });
    const probabilities = new Float32Array(block.rows * labels.length);
    for (let start = 0; start < block.rows; start += PREDICT_ROWS) {
      const rows = Math.min(PREDICT_ROWS, block.rows - start);
      const x = designRows(block.data.subarray(start * block.dims, (start + rows) * block.dims), rows, this.scale, block.dims);
      const result = await session.run({ x: new ort.Tensor('float32', x, [rows, dim + 1]), w: this.weights });
      probabilities.set(result.probabilities.data as Float32Array, start * labels.length);
    }
    return probabilities;
  }

  /** The label and its probability for each row of `block` (rows x dim), on the native kernel. */
  async predictBlock(block: RowBlock<Float32Array | Float64Array>, options: Pick<KernelOptions, 'intraOpNumThreads'> = {}): Promise<LogisticPrediction[]> {
    const { labels } = this.model;
    const classes = labels.length;
    const p = await this.probabilitiesBlock(block, options);
    const predictions: LogisticPrediction[] = [];
    for (let r = 0; r < block.rows; r++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (p[r * classes + c] > p[r * classes + best]) best = c;
      predictions.push({ label: labels[best], confidence: p[r * classes + best] });
    }
    return predictions;
  }

  toJSON(): LogisticClassifierJson {
    return this.model;
  }
}

/**
 * The leading dim = scale.length values of each row (rows `width` apart) / scale, with a trailing 1
 * (the bias column): rows x (dim + 1), float32.
 */
function designRows(data: ArrayLike<number>, rows: number, scale: Float64Array, width: number = scale.length): Float32Array {
  const dim = scale.length;
  const x = new Float32Array(rows * (dim + 1));
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < dim; d++) x[r * (dim + 1) + d] = data[r * width + d] / scale[d];
    x[r * (dim + 1) + dim] = 1;
  }
  return x;
}

/** Root mean square of each column: the scale that makes every component weigh alike. */
function columnScale({ data, rows, dims }: RowBlock<Float32Array | Float64Array>): Float64Array {
  const scale = new Float64Array(dims);
  for (let r = 0; r < rows; r++) for (let d = 0; d < dims; d++) scale[d] += data[r * dims + d] ** 2;
  for (let d = 0; d < dims; d++) scale[d] = Math.sqrt(scale[d] / rows) || 1;
  return scale;
}

/** The largest eigenvalue of X^T X / n: the Gram matrix computed natively, its top eigenvalue by `topEigen`. */
async function largestGramEigenvalue(x: Float32Array, rows: number, cols: number, options: LogisticOptions): Promise<number> {
  const session = await kernelSession('innerProducts', { intraOpNumThreads: options.intraOpNumThreads, precision: 'float32' });
  const tensor = new ort.Tensor('float32', x, [rows, cols]);
  const gram = float64Of((await session.run({ a: tensor, b: tensor })).c);
  const top = await topEigen(gram, { k: 1, intraOpNumThreads: options.intraOpNumThreads });
  return top.values[0] / rows;
}

/**
 * The classifier fitted on `block` (rows x dims, e.g. Training rows' components and their field
 * copies) with one label per row. Needs two labels at least and finite rows.
 */
export async function fitLogisticClassifier(
  block: RowBlock<Float32Array | Float64Array>,
  rowLabels: readonly string[],
  options: LogisticOptions = {},
): Promise<LogisticClassifier> {
  const { rows, dims } = block;
  if (rowLabels.length !== rows) throw new RangeError(`${rowLabels.length} labels for ${rows} rows`);
  if (!block.data.subarray(0, rows * dims).every(Number.isFinite)) throw new RangeError('a row holds a value that is not finite');
  const labels = [...new Set(rowLabels)].sort();
  if (labels.length < 2) throw new RangeError(`logistic regression needs two classes at least, the rows hold ${labels.length}`);
  const l2 = options.l2 ?? DEFAULT_LOGISTIC_L2;
  const rounds = options.rounds ?? DEFAULT_LOGISTIC_ROUNDS;
  if (!(l2 >= 0)) throw new RangeError(`l2 must be 0 or more, got ${l2}`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`rounds must be a positive integer, got ${rounds}`);

  const classes = labels.length;
  const cols = dims + 1;
  const scale = columnScale(block);
  const x = designRows(block.data, rows, scale);
  const index = new Map(labels.map((label, c) => [label, c]));
  const targets = new Float32Array(rows * classes);
  rowLabels.forEach((label, r) => (targets[r * classes + index.get(label)!] = 1));

  const step = 1 / (0.5 * (await largestGramEigenvalue(x, rows, cols, options)) + l2);
  const session = await kernelSession('softmaxGradient', { intraOpNumThreads: options.intraOpNumThreads, precision: 'float32' });
  const feeds = {
    x: new ort.Tensor('float32', x, [rows, cols]),
    targets: new ort.Tensor('float32', targets, [rows, classes]),
    invN: new ort.Tensor('float32', Float32Array.of(1 / rows), [1]),
  };
  const size = cols * classes;
  const penalised = dims * classes; // the bias row (the last) is not penalised
  /** The penalised loss and its gradient at `weights`: one run of the native graph. */
  const objective: LbfgsObjective = async (weights) => {
    const result = await session.run({ ...feeds, w: new ort.Tensor('float32', Float32Array.from(weights), [cols, classes]) });
    const gradient = Float64Array.from(result.gradient.data as Float32Array);
    let penalty = 0;
    for (let i = 0; i < penalised; i++) {
      gradient[i] += l2 * weights[i];
      penalty += weights[i] * weights[i];
    }
    return { loss: (result.loss.data as Float32Array)[0] + 0.5 * l2 * penalty, gradient };
  };
  const w = await lbfgsMinimum(objective, size, { evaluations: rounds, firstStep: step });
  const weights = Array.from({ length: cols }, (_, r) => Array.from(Float32Array.from(w.subarray(r * classes, (r + 1) * classes))));
  return new LogisticClassifier({ format: LOGISTIC_CLASSIFIER_FORMAT, dim: dims, l2, rounds, count: rows, labels, scale: Array.from(scale), weights });
}

/** A saved classifier (its `toJSON()`), checked. */
export function loadLogisticClassifier(json: unknown): LogisticClassifier {
  return new LogisticClassifier(LogisticClassifierSchema.parse(json));
}
