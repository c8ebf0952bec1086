/**
 * Shrinkage linear discriminant analysis over the PCA components: the classifier of a run.
 *
 * The discriminant is fitted in closed form from the class statistics (class-statistics.ts:
 * per-class count and mean, pooled within-class scatter), which a map-reduce can gather; only the
 * prototypes iterate (a k-means per class, at most KMEANS_ROUNDS rounds):
 * - the within-class covariance S = scatter / (N - C) is shrunk towards a multiple of the identity,
 *   S' = (1 - shrinkage) S + shrinkage (trace(S) / dim) I, which keeps it well conditioned with few
 *   references per class and stops it trusting directions the references barely vary in;
 * - S' is whitened (eigen-decomposition), and the between-class scatter of the whitened class means
 *   gives the discriminant directions: at most C - 1, the span of the class means;
 * - a row is projected on them, and class c scores -||y - p||^2 / 2 for its nearest prototype p
 *   (equal priors: a class's share of the Training photos says nothing about how often it turns
 *   up). With one prototype per class, its mean, that is plain LDA; dropping the other directions
 *   changes no decision, the class means do not differ along them.
 * - A fruit photographed from several sides is several clusters, not one: `withPrototypes` puts
 *   up to `prototypes` per class (k-means of the class's rows in the discriminant space) in place
 *   of the mean, which keeps LDA's robustness and recovers what k-NN gains on such classes, at a
 *   cost of classes x prototypes distances per row and a head that fits in the model JSON.
 * The confidence of a prediction is its softmax probability over the class scores.
 *
 * Robustness comes from what the statistics hold: fitted with field-condition copies of the
 * Training images as extra rows of their class (`augmentation`), the within-class scatter learns
 * the directions a background or a light moves a photo along, and the discriminant stops relying
 * on them. The prototypes stay those of the clean references: measured, that keeps the clean
 * accuracy that prototypes of the copies too would cost (docs/FEATURE-CHOICE.md).
 *
 * Symmetric API: `fitLdaClassifier(rows, labels, options)`, or `ldaClassifierFromStatistics(stats,
 * options)` then `.withPrototypes(rows, labels)` -> model; `model.predict(rows)`,
 * `model.transform(rows)`, `model.toJSON()`, `loadLdaClassifier(json)`. Products go through
 * ml-matrix, except `model.predictBlock(block)`'s (the aggregate's classify stage predicts with it)
 * and the prototypes' k-means assignments, which run on the native kernel.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { z } from 'zod';
import { numberArray, numberRows } from '../contracts/number-arrays';
import { ClassStatistics, ClassStatisticsAccumulator } from './class-statistics';
import { matrixProduct } from './kernel-graphs';
import { NativeProjector, nearestCentres, type RowBlock } from './native-kernels';

export const LDA_CLASSIFIER_FORMAT = 'fruits-pipeline/lda-classifier@1';

/** Shrinkage towards the identity when nothing else is configured (chosen in bench/classifier-choice.ts). */
export const DEFAULT_LDA_SHRINKAGE = 0.1;
/** Prototypes per class when nothing else is configured (chosen in bench/classifier-choice.ts). */
export const DEFAULT_PROTOTYPES = 8;
/** Lloyd rounds of the per-class k-means. */
const KMEANS_ROUNDS = 15;

export interface LdaOptions {
  /** 0 (plain pooled covariance) to 1 (nearest class mean). @default DEFAULT_LDA_SHRINKAGE */
  readonly shrinkage?: number;
  /**
   * Directions kept: the discriminant ones (at most C - 1) first, then, up to this many, the rest
   * of the whitened space (nearest prototype by the shrunk within-class Mahalanobis distance).
   * @default classes - 1
   */
  readonly directions?: number;
  /** At most this many prototypes per class (fitLdaClassifier only). @default DEFAULT_PROTOTYPES */
  readonly prototypes?: number;
  /**
   * Field-condition copies of the references (fitLdaClassifier only): rows of their class in the
   * statistics, so the discriminant learns what a background or a light changes, but never
   * prototypes, which stay the references' own.
   */
  readonly augmentation?: { readonly rows: Rows; readonly labels: readonly string[] };
}

export interface Prediction {
  readonly label: string;
  /** Softmax probability of the label, in (0, 1]. */
  readonly confidence: number;
  /** Euclidean distance to the nearest prototype of the label, in the discriminant space. */
  readonly distance: number;
  /** Index of that prototype (into the model's prototypes and prototypeKeys). */
  readonly prototype: number;
}

type Rows = readonly ArrayLike<number>[];

export const LdaClassifierSchema = z
  .object({
    format: z.literal(LDA_CLASSIFIER_FORMAT),
    dim: z.number().int().min(1),
    shrinkage: z.number().min(0).max(1),
    /** Rows the statistics held, for the record. */
    count: z.number().int().min(1),
    labels: z.array(z.string()).min(1),
    /** Subtracted from a row before it is projected. */
    centre: numberArray(),
    /** dim x directions: a row's coordinates are (row - centre) . projection. */
    projection: numberRows(),
    /** In the projected space: each class's mean, or its k-means prototypes. */
    prototypes: numberRows().refine((rows) => rows.length > 0, 'expected at least one prototype'),
    /** The label (index into labels) of each prototype. */
    prototypeLabels: z.array(z.number().int().nonnegative()),
    /** The key of the Training row nearest each prototype: what report.html shows beside a misclassified image. */
    prototypeKeys: z.array(z.string()).optional(),
  })
  .superRefine((model, context) => {
    const problem = (message: string) => context.addIssue({ code: 'custom', message });
    const directions = model.projection[0]?.length ?? 0;
    if (model.centre.length !== model.dim) problem(`centre holds ${model.centre.length} values, expected dim = ${model.dim}`);
    if (model.projection.length !== model.dim) problem(`projection holds ${model.projection.length} rows, expected dim = ${model.dim}`);
    if (directions < 1 || model.projection.some((row) => row.length !== directions)) problem('projection rows differ in length or are empty');
    if (model.prototypeLabels.length !== model.prototypes.length) {
      problem(`prototypeLabels holds ${model.prototypeLabels.length} values, expected one per prototype (${model.prototypes.length})`);
    }
    if (model.prototypeKeys && model.prototypeKeys.length !== model.prototypes.length) {
      problem(`prototypeKeys holds ${model.prototypeKeys.length} values, expected one per prototype (${model.prototypes.length})`);
    }
    if (model.prototypes.some((row) => row.length !== directions)) problem(`a prototype does not hold ${directions} values`);
    if (model.prototypeLabels.some((label) => label >= model.labels.length)) problem('a prototype label is not an index of labels');
    else if (new Set(model.prototypeLabels).size !== model.labels.length) problem('a label has no prototype');
    if (new Set(model.labels).size !== model.labels.length) problem('a label is listed twice');
  });
export type LdaClassifierJson = z.infer<typeof LdaClassifierSchema>;

/** Rows' class scores (`LdaClassifier.classScoresBlock`): rows x classes, row-major, with the prototype behind each. */
export interface ClassScores {
  readonly rows: number;
  readonly classes: number;
  /** -||y - p||^2 / 2 + ||y||^2 / 2 for the class's nearest prototype p of the row's coordinates y. */
  readonly scores: Float64Array;
  /** That prototype's index. */
  readonly prototypes: Int32Array;
  /** ||y||^2 of each row. */
  readonly squaredNorms: Float64Array;
}

/** The distance from row `r` to its nearest prototype of class `c`, from the class scores. */
export function prototypeDistance({ scores, squaredNorms, classes }: Pick<ClassScores, 'scores' | 'squaredNorms' | 'classes'>, r: number, c: number): number {
  return Math.sqrt(Math.max(0, squaredNorms[r] - 2 * scores[r * classes + c]));
}

export class LdaClassifier {
  private readonly centre: Matrix;
  private readonly projection: Matrix;
  /** directions x prototypes, and -||prototype||^2 / 2 each: y.p - ||p||^2 / 2 is one product. */
  private readonly prototypesT: Matrix;
  private readonly offsets: Float64Array;
  /** `transform` on the native kernel: (row - centre) . projection, as a PCA projection of unit scale. */
  private readonly projector: NativeProjector;
  /** The transposed prototypes row-major, as the native product takes them. */
  private readonly prototypesTData: Float64Array;

  private constructor(private readonly json: LdaClassifierJson) {
    this.centre = Matrix.rowVector(json.centre);
    this.projection = new Matrix(json.projection);
    this.prototypesT = new Matrix(json.prototypes).transpose();
    this.offsets = Float64Array.from(json.prototypes, (p) => -0.5 * p.reduce((sum, v) => sum + v * v, 0));
    const [dim, directions] = [json.dim, this.projection.columns];
    this.projector = new NativeProjector({
      dim,
      k: directions,
      mean: Float64Array.from(json.centre),
      scale: new Float64Array(dim).fill(1),
      components: Float64Array.from(this.projection.transpose().to1DArray()),
    });
    this.prototypesTData = Float64Array.from(this.prototypesT.to1DArray());
  }

  static of(json: LdaClassifierJson): LdaClassifier {
    return new LdaClassifier(json);
  }

  get labels(): readonly string[] {
    return this.json.labels;
  }

  get dim(): number {
    return this.json.dim;
  }

  /** Coordinates of each row along the discriminant directions (rows x directions). */
  transform(rows: Rows): Matrix {
    return this.matrixOf(rows).subRowVector(this.centre.getRow(0)).mmul(this.projection);
  }

  predict(rows: Rows): Prediction[] {
    if (rows.length === 0) return [];
    const projected = this.transform(rows);
    const products = projected.mmul(this.prototypesT);
    return this.predictionsOf(this.classScoresOf(Float64Array.from(projected.to1DArray()), Float64Array.from(products.to1DArray()), rows.length));
  }

  /**
   * `predict` with its two products (the discriminant, then the prototypes) on the native kernel
   * in float64: the same predictions, the distances to rounding, for a block of rows of `dim` values.
   */
  async predictBlock(block: RowBlock): Promise<Prediction[]> {
    return this.predictionsOf(await this.classScoresBlock(block));
  }

  /**
   * Each row's score for each class (rows x labels, row-major, labels in `labels` order): minus
   * half its squared distance to the class's nearest prototype in the discriminant space, less
   * half the row's squared norm (the same for every class: it cancels in a softmax), with that
   * prototype; on the native kernel, for a block of rows of `dim` values.
   */
  async classScoresBlock(block: RowBlock): Promise<ClassScores> {
    if (block.rows === 0) return this.classScoresOf(new Float64Array(0), new Float64Array(0), 0);
    const projected = await this.projector.projectRows(block);
    const products = await matrixProduct(projected, block.rows, this.projection.columns, this.prototypesTData, this.json.prototypes.length);
    return this.classScoresOf(projected, products, block.rows);
  }

  /**
   * The class scores from the rows' coordinates (rows x directions) and their products with the
   * prototypes (rows x prototypes), both row-major.
   */
  private classScoresOf(projected: Float64Array, products: Float64Array, rows: number): ClassScores {
    const { labels, prototypeLabels } = this.json;
    const classes = labels.length;
    const directions = this.projection.columns;
    const count = prototypeLabels.length;
    const scores = new Float64Array(rows * classes).fill(Number.NEGATIVE_INFINITY);
    const prototypes = new Int32Array(rows * classes);
    const squaredNorms = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      // -||y - p||^2 / 2 = y.p - ||p||^2 / 2 - ||y||^2 / 2.
      for (let p = 0; p < count; p++) {
        const score = products[r * count + p] + this.offsets[p];
        const cell = r * classes + prototypeLabels[p];
        if (score > scores[cell]) [scores[cell], prototypes[cell]] = [score, p];
      }
      for (let d = 0; d < directions; d++) squaredNorms[r] += projected[r * directions + d] ** 2;
    }
    return { rows, classes, scores, prototypes, squaredNorms };
  }

  /** Each row's class: the class of the nearest prototype, its softmax probability and distance. */
  private predictionsOf({ rows, classes, scores, prototypes, squaredNorms }: ClassScores): Prediction[] {
    const predictions: Prediction[] = [];
    for (let r = 0; r < rows; r++) {
      const row = scores.subarray(r * classes, (r + 1) * classes);
      let best = 0;
      for (let c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
      // Softmax with the best score subtracted: exp never overflows, the best term is exactly 1.
      let total = 0;
      for (const score of row) total += Math.exp(score - row[best]);
      const distance = prototypeDistance({ scores, squaredNorms, classes }, r, best);
      predictions.push({ label: this.json.labels[best], confidence: 1 / total, distance, prototype: prototypes[r * classes + best] });
    }
    return predictions;
  }

  /**
   * The same discriminant with up to `perClass` prototypes per class in place of the means: each
   * class's rows (any of `labels`' classes; rows of other labels are ignored) clustered by k-means
   * in the discriminant space, started from rows spread evenly through the class's rows in order.
   * With `keys` (one per row), each prototype also records the key of its class's row nearest it.
   */
  async withPrototypes(rows: Rows, labels: readonly string[], perClass: number = DEFAULT_PROTOTYPES, keys?: readonly string[]): Promise<LdaClassifier> {
    const projected = this.transform(rows);
    return this.withPrototypesOf({ data: Float64Array.from(projected.to1DArray()), rows: projected.rows, dims: projected.columns }, labels, perClass, keys);
  }

  /** `withPrototypes` of a block of rows, projected on the native kernel (`predictBlock`'s first product). */
  async withPrototypesBlock(block: RowBlock, labels: readonly string[], perClass: number = DEFAULT_PROTOTYPES, keys?: readonly string[]) {
    const projected = await this.projector.projectRows(block);
    return this.withPrototypesOf({ data: projected, rows: block.rows, dims: this.projection.columns }, labels, perClass, keys);
  }

  /** The prototypes clustered from rows already projected on the discriminant (rows x directions). */
  private async withPrototypesOf(
    projected: RowBlock<Float64Array>,
    labels: readonly string[],
    perClass: number,
    keys: readonly string[] | undefined,
  ): Promise<LdaClassifier> {
    const { rows } = projected;
    if (keys && keys.length !== rows) throw new RangeError(`${rows} rows but ${keys.length} keys`);
    if (!Number.isInteger(perClass) || perClass < 1) throw new RangeError(`prototypes per class must be a positive integer, got ${perClass}`);
    if (rows !== labels.length) throw new RangeError(`${rows} rows but ${labels.length} labels`);
    const prototypes: number[][] = [];
    const prototypeLabels: number[] = [];
    const prototypeKeys: string[] = [];
    const membersOf = new Map<string, number[]>();
    labels.forEach((label, i) => (membersOf.get(label) ?? membersOf.set(label, []).get(label)!).push(i));
    for (const [c, label] of this.json.labels.entries()) {
      const members = membersOf.get(label) ?? [];
      const means =
        members.length === 0
          ? this.json.prototypes.filter((_, p) => this.json.prototypeLabels[p] === c)
          : rowsOf(await kMeans(selectedRows(projected, members), perClass));
      for (const mean of means) {
        prototypes.push(mean);
        prototypeLabels.push(c);
        if (keys) prototypeKeys.push(members.length === 0 ? '' : keys[nearestRow(projected, members, mean)]);
      }
    }
    const { prototypeKeys: _previous, ...json } = this.json;
    return LdaClassifier.of({ ...json, prototypes, prototypeLabels, ...(keys ? { prototypeKeys } : {}) });
  }

  toJSON(): LdaClassifierJson {
    return this.json;
  }

  private matrixOf(rows: Rows): Matrix {
    const matrix = new Matrix(rows.length, this.json.dim);
    rows.forEach((row, r) => {
      if (row.length < this.json.dim) throw new RangeError(`row ${r} holds ${row.length} values, the classifier needs ${this.json.dim}`);
      for (let d = 0; d < this.json.dim; d++) matrix.set(r, d, row[d]);
    });
    return matrix;
  }
}

/**
 * Fits on `rows` (each at least `dim` = rows[0].length values) and their labels: the statistics
 * of the rows and of `options.augmentation`'s, the discriminant, then the rows' prototypes.
 */
export async function fitLdaClassifier(rows: Rows, labels: readonly string[], options: LdaOptions = {}): Promise<LdaClassifier> {
  const augmentation = options.augmentation ?? { rows: [], labels: [] };
  for (const [what, r, l] of [['rows', rows, labels] as const, ['augmentation rows', augmentation.rows, augmentation.labels] as const]) {
    if (r.length !== l.length) throw new RangeError(`${r.length} ${what} but ${l.length} labels`);
  }
  if (rows.length === 0) throw new RangeError('no rows to fit on');
  const accumulator = new ClassStatisticsAccumulator(rows[0].length);
  for (let i = 0; i < rows.length; i++) await accumulator.add(labels[i], rows[i]);
  for (let i = 0; i < augmentation.rows.length; i++) await accumulator.add(augmentation.labels[i], augmentation.rows[i]);
  const model = ldaClassifierFromStatistics(await accumulator.statistics(), options);
  return options.prototypes === 1 ? model : await model.withPrototypes(rows, labels, options.prototypes ?? DEFAULT_PROTOTYPES);
}

/** The classifier the statistics of the references describe, one prototype per class: its mean. */
export function ldaClassifierFromStatistics(stats: ClassStatistics, options: LdaOptions = {}): LdaClassifier {
  const shrinkage = options.shrinkage ?? DEFAULT_LDA_SHRINKAGE;
  if (!(shrinkage >= 0 && shrinkage <= 1)) throw new RangeError(`shrinkage must be in [0, 1], got ${shrinkage}`);
  const { dim, classes } = stats;
  if (classes.length < 2) throw new RangeError(`a classifier needs at least 2 classes, got ${classes.length}`);
  const count = classes.reduce((sum, c) => sum + c.count, 0);

  const whitening = whiteningOf(stats, count, shrinkage);
  const centre = new Float64Array(dim);
  for (const c of classes) for (let d = 0; d < dim; d++) centre[d] += (c.mean[d] * c.count) / count;
  const means = new Matrix(classes.map((c) => Array.from(c.mean, (value, d) => value - centre[d])));
  const whitenedMeans = means.mmul(whitening);

  // Discriminant directions: the between-class scatter of the whitened means, largest first.
  const weights = Matrix.columnVector(classes.map((c) => c.count / count));
  const between = whitenedMeans.transpose().mmul(whitenedMeans.clone().mulColumnVector(weights));
  const { realEigenvalues, eigenvectorMatrix } = new EigenvalueDecomposition(between, { assumeSymmetric: true });
  const order = realEigenvalues.map((value, index) => ({ value, index })).sort((a, b) => b.value - a.value);
  const directions = order.slice(0, Math.min(options.directions ?? classes.length - 1, dim)).map((e) => e.index);
  const projection = whitening.mmul(eigenvectorMatrix.subMatrixColumn(directions));

  return LdaClassifier.of({
    format: LDA_CLASSIFIER_FORMAT,
    dim,
    shrinkage,
    count,
    labels: classes.map((c) => c.label),
    centre: Array.from(centre),
    projection: projection.to2DArray(),
    prototypes: means.mmul(projection).to2DArray(),
    prototypeLabels: classes.map((_, c) => c),
  });
}

/**
 * Lloyd's k-means of the rows of `points` into at most `k` means, started from rows spread evenly
 * through them; an emptied cluster keeps its mean. Each round's assignment is one product on the
 * native kernel (`nearestCentres`).
 */
async function kMeans(points: RowBlock<Float64Array>, k: number): Promise<RowBlock<Float64Array>> {
  const { rows, dims, data } = points;
  const m = Math.min(k, rows);
  const means = new Float64Array(m * dims);
  for (let j = 0; j < m; j++) {
    const start = Math.floor((j * rows) / m) * dims;
    means.set(data.subarray(start, start + dims), j * dims);
  }
  const centres = { data: means, rows: m, dims };
  const assignment = new Int32Array(rows).fill(-1);
  for (let round = 0; round < KMEANS_ROUNDS; round++) {
    const nearest = await nearestCentres(points, centres);
    let moved = false;
    for (let r = 0; r < rows; r++) {
      if (assignment[r] !== nearest[r]) moved = true;
      assignment[r] = nearest[r];
    }
    if (!moved) break;
    const sums = new Float64Array(m * dims);
    const counts = new Int32Array(m);
    for (let r = 0; r < rows; r++) {
      const at = assignment[r] * dims;
      counts[assignment[r]]++;
      for (let d = 0; d < dims; d++) sums[at + d] += data[r * dims + d];
    }
    for (let j = 0; j < m; j++) {
      if (counts[j] === 0) continue;
      for (let d = 0; d < dims; d++) means[j * dims + d] = sums[j * dims + d] / counts[j];
    }
  }
  return centres;
}

/** The rows of `block` at `indices`, in that order, as a block of their own. */
function selectedRows(block: RowBlock<Float64Array>, indices: readonly number[]): RowBlock<Float64Array> {
  const { dims } = block;
  const data = new Float64Array(indices.length * dims);
  indices.forEach((row, i) => data.set(block.data.subarray(row * dims, (row + 1) * dims), i * dims));
  return { data, rows: indices.length, dims };
}

/** A block's rows as arrays, as the model JSON holds them. */
function rowsOf(block: RowBlock<Float64Array>): number[][] {
  return Array.from({ length: block.rows }, (_, r) => Array.from(block.data.subarray(r * block.dims, (r + 1) * block.dims)));
}

/** The member of `rows` (row indices into `points`) nearest `target`. */
function nearestRow(points: RowBlock<Float64Array>, rows: readonly number[], target: readonly number[]): number {
  const { dims, data } = points;
  let nearest = rows[0];
  let nearestDistance = Number.POSITIVE_INFINITY;
  for (const r of rows) {
    let distance = 0;
    for (let d = 0; d < dims; d++) distance += (data[r * dims + d] - target[d]) ** 2;
    if (distance < nearestDistance) [nearest, nearestDistance] = [r, distance];
  }
  return nearest;
}

/** W with W^T S' W = I, S' the shrunk within-class covariance. */
function whiteningOf(stats: ClassStatistics, count: number, shrinkage: number): Matrix {
  const { dim, within } = stats;
  const freedom = Math.max(1, count - stats.classes.length);
  const covariance = new Matrix(dim, dim);
  let trace = 0;
  for (let i = 0; i < dim; i++) trace += within[i * dim + i] / freedom;
  // A set whose references never vary (one per class) has a within-class scatter of 0, up to
  // round-off of either sign: the trace is held at 0 or above, and a floor keeps it invertible.
  trace = Math.max(0, trace);
  const ridge = shrinkage * (trace / dim) + 1e-9 * Math.max(trace / dim, 1e-12);
  for (let i = 0; i < dim; i++) {
    for (let j = 0; j < dim; j++) covariance.set(i, j, (1 - shrinkage) * (within[i * dim + j] / freedom) + (i === j ? ridge : 0));
  }
  const { realEigenvalues, eigenvectorMatrix } = new EigenvalueDecomposition(covariance, { assumeSymmetric: true });
  const scale = realEigenvalues.map((value) => 1 / Math.sqrt(Math.max(value, ridge)));
  return eigenvectorMatrix.mulRowVector(scale);
}

/** The classifier saved in `json` (a parsed object), checked. */
export function loadLdaClassifier(json: unknown): LdaClassifier {
  return LdaClassifier.of(LdaClassifierSchema.parse(json));
}
