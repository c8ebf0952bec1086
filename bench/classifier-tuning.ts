/**
 * Variations on the product's classifier (shrinkage LDA fitted on class statistics with field
 * copies of one Training image in four, then the nearest of 8 clean prototypes per class), on the
 * cached features and sets of bench/classifier-choice.ts: how many components it sees, how its
 * within-class covariance is regularised, how much the copies weigh, how many prototypes, in which
 * space they are matched, and a score that mixes the prototype and the class mean.
 *
 *   npx tsx bench/classifier-tuning.ts                  # every variant, five sets (~25 min on 2 loaded cores)
 *   npx tsx bench/classifier-tuning.ts --quick          # the sample's two sets only
 *   npx tsx bench/classifier-tuning.ts --only "PCs 200"  # the variants whose name matches
 *   npx tsx bench/classifier-tuning.ts --transforms     # per-row maps of the features before the PCA, the product and 5-NN
 *   npx tsx bench/classifier-tuning.ts --transforms "L2"  # the transforms whose name matches
 *   npx tsx bench/classifier-tuning.ts --sets "103"     # the sets whose name matches
 *   npx tsx bench/classifier-tuning.ts --heads          # the product's head against 5-NN and logistic regression, same copies
 *   npx tsx bench/classifier-tuning.ts --heads --copy-every 1  # the same with a copy of every Training image
 *
 * Copies: the Training images `fieldCopyOf` (lambdas/featurize/field-copies.ts) chooses at the
 * product's 1 in 4, as in `classifier-choice.ts --copies`. Columns as there: clean, field (mean of
 * the seven conditions, every query altered), and `held out` (refitted without the copies of the
 * condition scored: an alteration never seen).
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { ClassStatistics, ClassStatisticsAccumulator, mergeClassStatistics } from '../lambdas/analysis/class-statistics';
import { DEFAULT_LDA_SHRINKAGE, ldaClassifierFromStatistics, LdaClassifier } from '../lambdas/analysis/lda-classifier';
import { DEFAULT_LOGISTIC_L2, DEFAULT_LOGISTIC_ROUNDS, fitLogisticClassifier } from '../lambdas/analysis/logistic-classifier';
import { combinedClassifier } from '../lambdas/analysis/combined-classifier';
import { leadingColumns } from '../lambdas/common/float-arrays';
import { classifierComponentsFor } from '../lambdas/analysis/classifier-components';
import { DEFAULT_CLASSIFIER_COMPONENTS } from '../lambdas/contracts/handler-env';
import { fieldCopyOf } from '../lambdas/featurize/field-copies';
import { keyHash } from '../lambdas/common';
import { FIELD_CONDITIONS } from '../evaluate/field-conditions';
import { Cell, fixed, load, machine, markdownTable, printTable, Table } from './bench-support';
import {
  Candidate,
  evaluate,
  FeatureTransform,
  filterRows,
  knn,
  loadScenarios,
  logistic,
  pickRows,
  Points,
  withCopiesOf,
  Predictions,
  rowsOf,
  Scenario,
  Score,
} from './classifier-choice';

/** One Training image in this many has a field copy, as the product's default (`--copy-every <n>` to try others). */
const COPY_EVERY = process.argv.includes('--copy-every') ? Number(process.argv[process.argv.indexOf('--copy-every') + 1]) : 4;

export interface Variant {
  readonly name: string;
  /** Leading PCA components the classifier sees. */
  readonly components: number;
  /** A fixed shrinkage towards the identity, or 'oas' (Oracle Approximating Shrinkage from the statistics). */
  readonly shrinkage: number | 'oas';
  readonly prototypes: number;
  /** Weight of a copy's row in the statistics (1: a row like any other). */
  readonly copyWeight: number;
  /** Directions the prototypes are matched in (undefined: the C - 1 discriminant ones). */
  readonly directions?: number;
  /** Class score = nearest prototype's + meanWeight x the class mean's (both -||y - p||^2 / 2). */
  readonly meanWeight?: number;
  /**
   * Also this many prototypes per class of the copies (k-means of the class's copies), whose
   * score is lowered by copyPenalty x the number of directions: a copy's prototype wins only
   * when clearly nearer than any clean one.
   */
  readonly copyPrototypes?: number;
  readonly copyPenalty?: number;
}

export const PRODUCT: Variant = { name: 'product', components: 100, shrinkage: 0.1, prototypes: 8, copyWeight: 1 };

async function statisticsOf(points: Points, classes: readonly string[]): Promise<ClassStatistics> {
  const accumulator = new ClassStatisticsAccumulator(points.dim);
  for (let r = 0; r < points.n; r++) await accumulator.add(classes[points.y[r]], points.x.subarray(r * points.dim, (r + 1) * points.dim));
  return accumulator.statistics();
}

/**
 * The clean references and the field copies among `train`, and the class statistics of both
 * pooled, each copy's row counted `copyWeight` times.
 */
async function pooledStatistics(train: Points, classes: readonly string[], copyWeight = 1): Promise<{ clean: Points; copies: Points; stats: ClassStatistics }> {
  const clean = filterRows(train, (c) => c === '');
  const copies = filterRows(train, (c) => c !== '');
  const cleanStats = await statisticsOf(clean, classes);
  if (copies.n === 0) return { clean, copies, stats: cleanStats };
  return { clean, copies, stats: mergeClassStatistics(cleanStats, weighted(await statisticsOf(copies, classes), copyWeight)) };
}

/** The statistics with every row counted `weight` times. */
function weighted(stats: ClassStatistics, weight: number): ClassStatistics {
  return {
    dim: stats.dim,
    classes: stats.classes.map((c) => ({ ...c, count: c.count * weight })),
    within: stats.within.map((v) => v * weight),
  };
}

/**
 * Oracle Approximating Shrinkage (Chen, Wiesel, Eldar & Hero 2010, as scikit-learn computes it) of
 * the pooled within-class covariance, from the statistics alone: n = rows - classes.
 */
export function oasShrinkage(stats: ClassStatistics): number {
  const { dim, within } = stats;
  const n = Math.max(1, stats.classes.reduce((sum, c) => sum + c.count, 0) - stats.classes.length);
  let trace = 0;
  let squares = 0;
  for (let i = 0; i < dim; i++) trace += within[i * dim + i] / n;
  for (const v of within) squares += (v / n) ** 2;
  const mu = trace / dim;
  const alpha = squares / (dim * dim);
  const denominator = (n + 1) * (alpha - (mu * mu) / dim);
  return denominator <= 0 ? 1 : Math.min(1, (alpha + mu * mu) / denominator);
}

const chosenShrinkage = new Map<string, number[]>();

function variantCandidate(variant: Variant, classes: readonly string[], scenario: string): Candidate {
  return {
    name: variant.name,
    augmented: true,
    fit: async (train) => {
      const { clean, copies, stats } = await pooledStatistics(train, classes, variant.copyWeight);
      const shrinkage = variant.shrinkage === 'oas' ? oasShrinkage(stats) : variant.shrinkage;
      const key = `${variant.name} | ${scenario}`;
      chosenShrinkage.set(key, [...(chosenShrinkage.get(key) ?? []), shrinkage]);
      const model = await ldaClassifierFromStatistics(stats, { shrinkage, directions: variant.directions }).withPrototypes(
        rowsOf(clean),
        Array.from(clean.y, (y) => classes[y]),
        variant.prototypes,
      );
      const means = variant.meanWeight ? ldaClassifierFromStatistics(stats, { shrinkage, directions: variant.directions }) : undefined;
      const copyLabels = Array.from(copies.y, (y) => classes[y]);
      const copyModel = variant.copyPrototypes && copies.n > 0 ? await model.withPrototypes(rowsOf(copies), copyLabels, variant.copyPrototypes) : undefined;
      if (copyModel) return async (queries) => predictWithCopies(model, copyModel, variant.copyPenalty ?? 0, queries, classes);
      return async (queries) => predict(model, means, variant.meanWeight ?? 0, queries, classes);
    },
  };
}

/**
 * Logistic regression fitted in the LDA's discriminant space: the components whitened by the
 * within-class scatter that includes the field copies, so the directions the conditions move
 * rows along weigh little before logistic regression draws its boundaries.
 */
function ldaSpaceLogistic(classes: readonly string[]): Candidate {
  return {
    name: 'logistic regression in the LDA space',
    augmented: true,
    fit: async (train) => {
      const { stats } = await pooledStatistics(train, classes);
      const lda = ldaClassifierFromStatistics(stats, { shrinkage: DEFAULT_LDA_SHRINKAGE });
      const toLda = (points: Points) => {
        const z = lda.transform(rowsOf(points));
        return { data: Float32Array.from(z.to1DArray()), rows: points.n, dims: z.columns };
      };
      const logistic = await fitLogisticClassifier(
        toLda(train),
        Array.from(train.y, (y) => classes[y]),
      );
      return async (queries) => {
        const predicted = await logistic.predictBlock(toLda(queries));
        return { predicted: Int32Array.from(predicted, (p) => classes.indexOf(p.label)), confidence: Float64Array.from(predicted, (p) => p.confidence) };
      };
    },
  };
}

/** How the bench's pair differs from the product's (combined-classifier.ts, classifier-stage.ts). */
interface PairOptions {
  readonly ldaWeight?: number;
  /** Logistic regression's evaluations of its loss. */
  readonly rounds?: number;
  /** Logistic regression over the leading components the references allow (classifier-components.ts), as a run fits it. */
  readonly held?: boolean;
  readonly l2?: number;
  /** Logistic regression fitted on the clean references alone, not on their copies too (the LDA keeps the copies). */
  readonly logisticOnClean?: boolean;
  /**
   * Both heads fitted and queried with the copies' moves shrunk (nuisanceBasis): how many
   * directions, and what share of them is kept; or, with `soft`, every direction of the moves
   * scaled by sqrt(spread / (spread + soft x move)), its clean references' variance against the
   * copies' mean squared move along it.
   */
  readonly nuisance?: { readonly directions: number; readonly keep: number; readonly soft?: number };
  /**
   * Each head's copies held to those of one Training image in this many (run with `--copy-every 1`):
   * at the whole dataset's size, a class has about 129 copies at the product's 1 in 4, so its
   * logistic sample could take as many copies as clean rows while the LDA keeps them all, 1 in 4.
   */
  readonly copyEvery?: { readonly lda: number; readonly logistic: number };
  /** Each of the LDA's copies counted this many times in its statistics. */
  readonly ldaCopyWeight?: number;
  /**
   * Logistic regression's rows per class, the lowest-hash ones as the product samples them: up to
   * `clean` clean rows and `copies` copies among those of one Training image in `copyEvery`,
   * cycled to `copies` (at most as many as its clean rows) when `repeat` and a class has fewer.
   */
  readonly logisticSample?: { readonly clean: number; readonly copies: number; readonly copyEvery: number; readonly repeat: boolean };
}

/** Logistic regression's rows of `train` as `sample` says. */
function logisticRowsOf(train: Points, sample: NonNullable<PairOptions['logisticSample']>): Points {
  const byHash = (rows: number[]) => rows.sort((a, b) => keyHash(train.keys[a]) - keyHash(train.keys[b]));
  const picked: number[] = [];
  for (let label = 0; label <= Math.max(...train.y); label++) {
    const ofClass = (copy: boolean) => train.conditions.flatMap((c, r) => (train.y[r] === label && (c !== '') === copy ? [r] : []));
    const clean = byHash(ofClass(false)).slice(0, sample.clean);
    picked.push(...clean);
    const copies = byHash(ofClass(true).filter((r) => fieldCopyOf(`input/d/${train.keys[r]}`, sample.copyEvery) !== undefined));
    const wanted = sample.repeat ? Math.min(sample.copies, clean.length) : Math.min(sample.copies, copies.length);
    for (let i = 0; i < wanted && copies.length > 0; i++) picked.push(copies[i % copies.length]);
  }
  return pickRows(train, picked);
}

/** Each copy's row with its clean image's row (the same key), for the copies whose image is among `points`. */
function copiesWithTheirImage(points: Points): [copy: number, clean: number][] {
  const cleanRow = new Map<string, number>();
  points.conditions.forEach((c, r) => c === '' && cleanRow.set(points.keys[r], r));
  return points.conditions.flatMap((c, r): [number, number][] => {
    const clean = cleanRow.get(points.keys[r]);
    return c !== '' && clean !== undefined ? [[r, clean]] : [];
  });
}

/**
 * The `directions` leading eigenvectors (dim x directions) of the scatter of the moves the field
 * conditions make: each copy's row less its clean image's row (paired by key). Directions a
 * background, a light or a blur moves a photo along, with none of the class's own spread.
 */
function nuisanceBasis(train: Points, directions: number): Matrix {
  const { dim, x } = train;
  const moves = copiesWithTheirImage(train).map(([copy, clean]) => Array.from({ length: dim }, (_, i) => x[copy * dim + i] - x[clean * dim + i]));
  const moveMatrix = new Matrix(moves);
  const evd = new EigenvalueDecomposition(moveMatrix.transpose().mmul(moveMatrix), { assumeSymmetric: true });
  // ml-matrix returns the eigenvalues in ascending order.
  const order = evd.realEigenvalues.map((value, i) => [value, i]).sort((a, b) => b[0] - a[0]);
  const basis = new Matrix(dim, directions);
  order.slice(0, directions).forEach(([, i], j) => basis.setColumn(j, evd.eigenvectorMatrix.getColumn(i)));
  return basis;
}

/** `points` with their part along each column of `basis` (orthonormal) scaled by that column's `keep`. */
function shrunkAlong(points: Points, basis: Matrix, keep: readonly number[]): Points {
  const rows = new Matrix(Array.from(rowsOf(points), (row) => Array.from(row)));
  const along = rows.mmul(basis);
  for (let j = 0; j < keep.length; j++)
    along.setColumn(
      j,
      along.getColumn(j).map((v) => v * (1 - keep[j])),
    );
  const shrunk = rows.sub(along.mmul(basis.transpose()));
  return { ...points, x: Float32Array.from(shrunk.to1DArray()) };
}

/** What share of each direction of `basis` is kept: `keep`, or the soft share of nuisance.soft. */
function keptShares(train: Points, basis: Matrix, nuisance: NonNullable<PairOptions['nuisance']>): number[] {
  if (nuisance.soft === undefined) return new Array<number>(basis.columns).fill(nuisance.keep);
  const all = new Matrix(Array.from(rowsOf(train), (row) => Array.from(row))).mmul(basis);
  const clean = train.conditions.flatMap((c, r) => (c === '' ? [r] : []));
  const pairs = copiesWithTheirImage(train);
  return Array.from({ length: basis.columns }, (_, j) => {
    const values = all.getColumn(j);
    const mean = clean.reduce((sum, r) => sum + values[r], 0) / clean.length;
    const spread = clean.reduce((sum, r) => sum + (values[r] - mean) ** 2, 0) / clean.length;
    const move = pairs.reduce((sum, [copy, image]) => sum + (values[copy] - values[image]) ** 2, 0) / Math.max(1, pairs.length);
    return Math.sqrt(spread / (spread + nuisance.soft! * move));
  });
}

/** The product's pair: the LDA and logistic regression fitted on the same rows (references and copies), unless `options` say otherwise. */
function ensembleCandidate(classes: readonly string[], options: PairOptions = {}): Candidate {
  const { ldaWeight = 0.1, rounds = DEFAULT_LOGISTIC_ROUNDS, held = false, l2 = DEFAULT_LOGISTIC_L2, logisticOnClean = false, nuisance } = options;
  return {
    name: `LDA + logistic regression, ${ldaWeight}, ${rounds} rounds${held ? ', held' : ''}, L2 ${l2}${logisticOnClean ? ', logistic on clean rows' : ''}`,
    augmented: true,
    fit: async (asGiven) => {
      const basis = nuisance ? nuisanceBasis(asGiven, nuisance.directions) : undefined;
      const keep = basis && nuisance ? keptShares(asGiven, basis, nuisance) : [];
      const seen = (points: Points) => (basis ? shrunkAlong(points, basis, keep) : points);
      const train = seen(asGiven);
      const { clean, stats } = await pooledStatistics(withCopiesOf(train, options.copyEvery?.lda ?? 1), classes, options.ldaCopyWeight);
      const lda = await ldaClassifierFromStatistics(stats, { shrinkage: DEFAULT_LDA_SHRINKAGE }).withPrototypes(
        rowsOf(clean),
        Array.from(clean.y, (y) => classes[y]),
        PRODUCT.prototypes,
      );
      const dims = held ? classifierComponentsFor(train.dim, clean.n) : train.dim;
      const rows = logisticOnClean
        ? clean
        : options.logisticSample
          ? logisticRowsOf(train, options.logisticSample)
          : withCopiesOf(train, options.copyEvery?.logistic ?? 1);
      const logistic = await fitLogisticClassifier(
        { data: leadingColumns(rows.x, rows.n, rows.dim, dims), rows: rows.n, dims },
        Array.from(rows.y, (y) => classes[y]),
        { rounds, l2 },
      );
      // The product's pair (combined-classifier.ts), with this weight.
      const pair = combinedClassifier(lda, logistic, ldaWeight);
      return async (asGiven) => {
        const queries = seen(asGiven);
        const predictions = await pair.predictBlock({ data: queries.x, rows: queries.n, dims: queries.dim });
        return {
          predicted: Int32Array.from(predictions, (p) => classes.indexOf(p.label)),
          confidence: Float64Array.from(predictions, (p) => p.confidence),
        };
      };
    },
  };
}

/** Half the squared distances from each projected row to each of `centres` (rows x centres), as one product. */
function halfSquaredDistances(projected: number[][], centres: readonly number[][]): number[][] {
  const products = new Matrix(projected).mmul(new Matrix(centres as number[][]).transpose()).to2DArray();
  const norms = (rows: readonly number[][]) => rows.map((row) => row.reduce((sum, v) => sum + v * v, 0));
  const rowNorms = norms(projected);
  const centreNorms = norms(centres);
  return products.map((row, r) => row.map((product, c) => 0.5 * (rowNorms[r] + centreNorms[c]) - product));
}

function predict(model: LdaClassifier, means: LdaClassifier | undefined, meanWeight: number, queries: Points, classes: readonly string[]): Predictions {
  const index = new Map(classes.map((c, i) => [c, i]));
  if (!means) {
    const predictions = model.predict(rowsOf(queries));
    return { predicted: Int32Array.from(predictions, (p) => index.get(p.label)!), confidence: Float64Array.from(predictions, (p) => p.confidence) };
  }
  const json = model.toJSON();
  const projected = model.transform(rowsOf(queries)).to2DArray();
  const toPrototypes = halfSquaredDistances(projected, json.prototypes);
  const toMeans = halfSquaredDistances(projected, means.toJSON().prototypes);
  const predicted = new Int32Array(queries.n);
  const confidence = new Float64Array(queries.n);
  projected.forEach((_, r) => {
    const scores = json.labels.map((_label, c) => -meanWeight * toMeans[r][c]);
    const best = new Float64Array(json.labels.length).fill(Number.NEGATIVE_INFINITY);
    json.prototypeLabels.forEach((c, p) => (best[c] = Math.max(best[c], -toPrototypes[r][p])));
    const total = scores.map((s, c) => s + best[c]);
    const top = total.reduce((b, s, c) => (s > total[b] ? c : b), 0);
    predicted[r] = index.get(json.labels[top])!;
    confidence[r] = 1 / total.reduce((sum, s) => sum + Math.exp(s - total[top]), 0);
  });
  return { predicted, confidence };
}

/** Nearest prototype, clean ones or the copies' (those with a penalty); a class without copies keeps its clean ones. */
function predictWithCopies(model: LdaClassifier, copyModel: LdaClassifier, penalty: number, queries: Points, classes: readonly string[]): Predictions {
  const index = new Map(classes.map((c, i) => [c, i]));
  const clean = model.toJSON();
  const copies = copyModel.toJSON();
  const projected = model.transform(rowsOf(queries)).to2DArray();
  const lowered = penalty * (projected[0]?.length ?? 0);
  const toClean = halfSquaredDistances(projected, clean.prototypes);
  const toCopies = halfSquaredDistances(projected, copies.prototypes);
  const predicted = new Int32Array(queries.n);
  const confidence = new Float64Array(queries.n);
  // withPrototypes keeps a class's previous prototypes when it has no copies: those are clean ones.
  const cleanKept = new Set(clean.prototypes.map((p) => p.join()));
  const ofCopies = copies.prototypes.map((p) => !cleanKept.has(p.join()));
  projected.forEach((_, r) => {
    const best = new Float64Array(clean.labels.length).fill(Number.NEGATIVE_INFINITY);
    clean.prototypeLabels.forEach((c, p) => (best[c] = Math.max(best[c], -toClean[r][p])));
    copies.prototypeLabels.forEach((c, p) => {
      if (ofCopies[p]) best[c] = Math.max(best[c], -toCopies[r][p] - lowered);
    });
    const top = best.reduce((b, s, c) => (s > best[b] ? c : b), 0);
    predicted[r] = index.get(clean.labels[top])!;
    confidence[r] = 1 / best.reduce((sum, s) => sum + Math.exp(s - best[top]), 0);
  });
  return { predicted, confidence };
}

function variants(): Variant[] {
  const list: Variant[] = [PRODUCT];
  for (const components of [150, 200, 300, 400]) list.push({ ...PRODUCT, name: `PCs ${components}`, components });
  for (const shrinkage of [0.03, 0.2, 0.3, 'oas'] as const) list.push({ ...PRODUCT, name: `shrinkage ${shrinkage}`, shrinkage });
  for (const copyWeight of [2, 4]) list.push({ ...PRODUCT, name: `copy weight ${copyWeight}`, copyWeight });
  for (const prototypes of [4, 12]) list.push({ ...PRODUCT, name: `prototypes ${prototypes}`, prototypes });
  list.push({ ...PRODUCT, name: 'whitened space, 30 directions', directions: 30 });
  list.push({ ...PRODUCT, name: 'prototype + 0.5 class mean', meanWeight: 0.5 });
  for (const copyPenalty of [0, 0.25, 0.5, 1]) list.push({ ...PRODUCT, name: `+ 4 copy prototypes, penalty ${copyPenalty}`, copyPrototypes: 4, copyPenalty });
  list.push({ ...PRODUCT, name: 'PCs 150, shrinkage 0.3', components: 150, shrinkage: 0.3 });
  list.push({ ...PRODUCT, name: 'PCs 200, shrinkage 0.2', components: 200, shrinkage: 0.2 });
  list.push({ ...PRODUCT, name: 'PCs 200, shrinkage 0.3, copy weight 2', components: 200, shrinkage: 0.3, copyWeight: 2 });
  list.push({
    ...PRODUCT,
    name: 'PCs 200, shrinkage 0.3, + 4 copy prototypes, penalty 0.5',
    components: 200,
    shrinkage: 0.3,
    copyPrototypes: 4,
    copyPenalty: 0.5,
  });
  for (const components of [200, 300]) {
    for (const shrinkage of [0.3, 'oas'] as const) list.push({ ...PRODUCT, name: `PCs ${components}, shrinkage ${shrinkage}`, components, shrinkage });
    list.push({ ...PRODUCT, name: `PCs ${components}, copy weight 4`, components, copyWeight: 4 });
  }
  return list;
}

/** sign(x) |x|^power of each entry: power normalisation, which damps the few large activations. */
function signedPower(row: Float32Array, power: number): void {
  for (let i = 0; i < row.length; i++) row[i] = Math.sign(row[i]) * Math.abs(row[i]) ** power;
}

/** Divides the entries in [start, end) by their Euclidean norm (left alone when it is 0). */
function unitNorm(row: Float32Array, start = 0, end = row.length): void {
  let squares = 0;
  for (let i = start; i < end; i++) squares += row[i] * row[i];
  const norm = Math.sqrt(squares);
  if (norm > 0) for (let i = start; i < end; i++) row[i] /= norm;
}

/** The cached features are sign(a) |a|^CACHED_POWER of the pooled activations a (the featurizer's square root). */
const CACHED_POWER = 0.5;
/** Channels of the default features' first layer (MobileNetV2 `expanded_conv_12/add`); `Conv_1/Relu6`'s 1,280 follow. */
const FIRST_LAYER_CHANNELS = 96;

/**
 * sign(a) |a|^power of the pooled activations a, from the cached features; then `after` (L2), and
 * the PCA with or without the StandardScaler.
 */
function activationPower(power: string, options: { after?: [string, (row: Float32Array) => void]; standardise?: boolean } = {}): FeatureTransform {
  const [numerator, denominator = '1'] = power.split('/');
  const relative = Number(numerator) / Number(denominator) / CACHED_POWER;
  const standardise = options.standardise ?? true;
  return {
    name: [`|a|^${power}`, options.after?.[0], standardise ? undefined : 'PCA without the scaler'].filter(Boolean).join(', '),
    standardise,
    row: (row) => {
      if (relative !== 1) signedPower(row, relative);
      options.after?.[1](row);
    },
  };
}

const L2: [string, (row: Float32Array) => void] = ['L2', (row) => unitNorm(row)];
const L2_PER_LAYER: [string, (row: Float32Array) => void] = [
  'L2 of each layer',
  (row) => (unitNorm(row, 0, FIRST_LAYER_CHANNELS), unitNorm(row, FIRST_LAYER_CHANNELS)),
];

/** Per-row maps of the default features before the scaler and PCA; the first is the cached features unchanged. */
const TRANSFORMS: readonly FeatureTransform[] = [
  { name: '|a|^1/2 (the cached features)', standardise: true },
  activationPower('1'),
  activationPower('1/3'),
  activationPower('1/4'),
  activationPower('1/8'),
  activationPower('1/4', { standardise: false }),
  activationPower('1/2', { after: L2 }),
  activationPower('1/2', { after: L2_PER_LAYER }),
  activationPower('1/4', { after: L2 }),
  activationPower('1/2', { after: L2, standardise: false }),
  activationPower('1/4', { after: L2, standardise: false }),
];

/** The product's classifier and today's fallback (5-NN) on one scenario: clean, field, held out. */
async function productAndKnn(scenario: Scenario): Promise<{ head: string; score: Score; heldOut: Score }[]> {
  const product = variantCandidate(PRODUCT, scenario.classes, scenario.name);
  const fiveNn = knn('5-NN', 5, false, false);
  const productScore = await evaluate(scenario, product, PRODUCT.components, false);
  const knnScore = await evaluate(scenario, fiveNn, PRODUCT.components, false);
  return [
    { head: 'product (LDA + 8 clean prototypes)', score: productScore, heldOut: await evaluate(scenario, product, PRODUCT.components, true) },
    // 5-NN fits on the clean references alone: every field condition is one it never saw.
    { head: '5-NN', score: knnScore, heldOut: knnScore },
  ];
}

/** Each transform of the features, then the product's classifier and 5-NN, on every set. */
async function transformsTable(quick: boolean, only: RegExp | undefined, sets: RegExp | undefined): Promise<void> {
  const rows: Cell[][] = [];
  let names: string[] = [];
  for (const transform of TRANSFORMS.filter((t, i) => i === 0 || !only || only.test(t.name))) {
    const scenarios = (await loadScenarios(quick, PRODUCT.components, transform)).filter((s) => !sets || sets.test(s.name));
    names = scenarios.map((s) => s.name);
    const byHead = new Map<string, Cell[]>();
    for (const full of scenarios) {
      const scenario = { ...full, augmentation: withCopiesOf(full.augmentation, COPY_EVERY) };
      for (const { head, score, heldOut } of await productAndKnn(scenario)) {
        console.log(
          `  ${transform.name} | ${head} | ${scenario.name}: clean ${score.clean.toFixed(4)}, field ${score.field.toFixed(4)} ` +
            `(${FIELD_CONDITIONS.map((c) => score.perCondition[c].toFixed(3)).join(' ')}), held out ${heldOut.field.toFixed(4)}, ${load()}`,
        );
        byHead.set(head, [...(byHead.get(head) ?? []), `${score.clean.toFixed(3)} / ${score.field.toFixed(3)} / ${heldOut.field.toFixed(3)}`]);
      }
    }
    for (const [head, cells] of byHead) rows.push([transform.name, transform.standardise ? 'yes' : 'no', head, ...cells]);
  }
  const table: Table = {
    title: `Per-row transforms of the features before the PCA (${PRODUCT.components} PCs, copies of 1 in ${COPY_EVERY}): clean / field / field on alterations never seen`,
    headers: ['features', 'StandardScaler', 'classifier', ...names],
    rows,
  };
  printTable(table);
  console.log(`\n${markdownTable(table)}\n`);
}

/** A head of the table; `as run`: the product's rule, CLASSIFIER_COMPONENTS held to one per 4 references, at least the kept 100. */
interface Head {
  readonly name: string;
  readonly components: number | 'as run';
  readonly candidate: (scenario: Scenario) => Candidate;
  readonly heldOut: boolean;
}

/** The default pair (held, the LDA x 0.1) with `options`, named by what they change. */
function pairVariant(what: string, options: PairOptions): Head {
  return {
    name: `LDA x 0.1 + logistic regression held, ${what}`,
    components: 'as run',
    candidate: (s) => ensembleCandidate(s.classes, { held: true, ...options }),
    heldOut: true,
  };
}

/**
 * The default pair learning otherwise from the field copies: the directions the copies move along
 * shrunk before both heads, and how many copies each head sees. The last two groups need a copy of
 * every Training image (`--copy-every 1`): the LDA keeps those of one in 4, as at the default.
 */
function copyVariants(): Head[] {
  const removed = (
    [
      [5, 0],
      [10, 0],
      [20, 0],
      [40, 0],
      [20, 0.3],
    ] as const
  ).map(([directions, keep]) => pairVariant(`the copies' ${directions} leading moves x ${keep}`, { nuisance: { directions, keep } }));
  const soft = (
    [
      [30, 1],
      [30, 4],
      [60, 1],
    ] as const
  ).map(([directions, soft]) => pairVariant(`the copies' ${directions} leading moves softly x ${soft}`, { nuisance: { directions, keep: 0, soft } }));
  const perHead = (
    [
      [4, 1],
      [1, 1],
      [2, 1],
      [4, 4],
      [1, 4],
      [1, 2],
    ] as const
  ).map(([logistic, ldaCopyWeight]) =>
    pairVariant(`copies of 1 in 4 for the LDA (each counted ${ldaCopyWeight} times), 1 in ${logistic} for logistic regression`, {
      copyEvery: { lda: 4, logistic },
      ldaCopyWeight,
    }),
  );
  const sampled = (
    [
      [60, 60, 4, true],
      [60, 30, 4, true],
      [38, 38, 1, false],
      [60, 60, 1, false],
      [60, 15, 4, false],
    ] as const
  ).map(([clean, copies, copyEvery, repeat]) =>
    pairVariant(`its sample ${clean} clean + ${copies} copies of 1 in ${copyEvery}${repeat ? ', repeated' : ''}`, {
      copyEvery: { lda: 4, logistic: 1 },
      logisticSample: { clean, copies, copyEvery, repeat },
    }),
  );
  // The fit's settings again where logistic regression sees a copy per reference, as a class of the whole dataset now gives it.
  const atScale = [
    ...[3e-4, 3e-3].map((l2) => pairVariant(`a copy of each for logistic regression, L2 ${l2}`, { copyEvery: { lda: 4, logistic: 1 }, l2 })),
    ...[30, 40, 75].map((rounds) =>
      pairVariant(`a copy of each for logistic regression, ${rounds} evaluations`, { copyEvery: { lda: 4, logistic: 1 }, rounds }),
    ),
  ];
  return [...removed, ...soft, ...perHead, ...sampled, ...atScale];
}

/**
 * Heads other than the LDA's, fitted with the same field copies (1 in COPY_EVERY) where they take
 * copies: the product, the product over 300 components, 5-NN, and multinomial logistic regression
 * (classifier-choice.ts: L2 1e-3) over 100 and 300 components, with and without the copies; and
 * the product, logistic regression and the two together over the components a run gives them, with
 * their variants.
 */
function heads(): Head[] {
  return [
    { name: 'product (LDA + 8 clean prototypes)', components: 100, candidate: (s) => variantCandidate(PRODUCT, s.classes, s.name), heldOut: true },
    {
      name: 'product (LDA + 8 clean prototypes)',
      components: 300,
      candidate: (s) => variantCandidate({ ...PRODUCT, name: 'PCs 300', components: 300 }, s.classes, s.name),
      heldOut: true,
    },
    { name: '5-NN', components: 100, candidate: () => knn('5-NN', 5, false, false), heldOut: false },
    { name: 'logistic regression', components: 300, candidate: (s) => logistic('logistic', 1e-3, false, s.classes.length), heldOut: false },
    { name: 'logistic regression + copies', components: 100, candidate: (s) => logistic('logistic', 1e-3, true, s.classes.length), heldOut: true },
    { name: 'logistic regression + copies', components: 300, candidate: (s) => logistic('logistic', 1e-3, true, s.classes.length), heldOut: true },
    {
      name: 'product (LDA + 8 clean prototypes)',
      components: 'as run',
      candidate: (s) => variantCandidate({ ...PRODUCT, name: 'as run' }, s.classes, s.name),
      heldOut: true,
    },
    { name: 'logistic regression + copies', components: 'as run', candidate: (s) => logistic('logistic', 1e-3, true, s.classes.length), heldOut: true },
    { name: 'LDA x 0.1 + logistic regression (log-probabilities)', components: 'as run', candidate: (s) => ensembleCandidate(s.classes), heldOut: true },
    {
      name: 'LDA x 0.1 + logistic regression held to the references (the default)',
      components: 'as run',
      candidate: (s) => ensembleCandidate(s.classes, { held: true }),
      heldOut: true,
    },
    { name: 'logistic regression in the LDA space', components: 'as run', candidate: (s) => ldaSpaceLogistic(s.classes), heldOut: true },
    ...[30, 40, 75].map((rounds) => pairVariant(`${rounds} evaluations`, { rounds })),
    ...[3e-4, 3e-3, 1e-2].map((l2) => pairVariant(`L2 ${l2}`, { l2 })),
    ...[0.05, 0.2].map((ldaWeight) => ({
      name: `LDA x ${ldaWeight} + logistic regression held, the LDA's weight`,
      components: 'as run' as const,
      candidate: (s: Scenario) => ensembleCandidate(s.classes, { ldaWeight, held: true }),
      heldOut: true,
    })),
    ...[0.1, 0.3].map((ldaWeight) => ({
      name: `LDA x ${ldaWeight} + logistic regression held, fitted on the clean references alone`,
      components: 'as run' as const,
      candidate: (s: Scenario) => ensembleCandidate(s.classes, { ldaWeight, held: true, logisticOnClean: true }),
      heldOut: true,
    })),
    ...copyVariants(),
    ...[75, 150].map((rounds) => ({
      name: `logistic regression + copies, ${rounds} evaluations`,
      components: 'as run' as const,
      candidate: (s: Scenario) => logistic('logistic', 1e-3, true, s.classes.length, rounds),
      heldOut: true,
    })),
    ...[1, 0.1, 0.03].flatMap((weight) =>
      [100, 300].map((components) => ({
        name: `LDA x ${weight} + logistic regression (log-probabilities)`,
        components,
        candidate: (s: Scenario) => ensembleCandidate(s.classes, { ldaWeight: weight }),
        heldOut: true,
      })),
    ),
  ];
}

/** The heads' table on the cached features, clean / field / held out per set. */
async function headsTable(quick: boolean, sets: RegExp | undefined, only: RegExp | undefined): Promise<void> {
  const scenarios = (await loadScenarios(quick, 300)).filter((s) => !sets || sets.test(s.name));
  const chosen = heads().filter((head) => !only || only.test(`${head.name}, ${head.components} PCs`));
  const cells = chosen.map(() => [] as string[]);
  for (const full of scenarios) {
    const scenario = { ...full, augmentation: withCopiesOf(full.augmentation, COPY_EVERY) };
    for (const [i, head] of chosen.entries()) {
      const candidate = head.candidate(scenario);
      const components =
        head.components === 'as run'
          ? Math.max(PRODUCT.components, classifierComponentsFor(DEFAULT_CLASSIFIER_COMPONENTS, scenario.references.n))
          : head.components;
      const score = await evaluate(scenario, candidate, components, false);
      // A head fitted without the copies has seen no alteration: its field is its held out.
      const heldOut = head.heldOut ? await evaluate(scenario, candidate, components, true) : score;
      console.log(
        `  ${head.name}, ${components} PCs | ${scenario.name}: clean ${score.clean.toFixed(4)}, field ${score.field.toFixed(4)} ` +
          `(${FIELD_CONDITIONS.map((c) => score.perCondition[c].toFixed(3)).join(' ')}), held out ${heldOut.field.toFixed(4)}, fit ${score.fitMs.toFixed(0)} ms, ${load()}`,
      );
      cells[i].push(`${score.clean.toFixed(3)} / ${score.field.toFixed(3)} / ${heldOut.field.toFixed(3)}`);
    }
  }
  const table: Table = {
    title: `Heads over the components (copies of 1 in ${COPY_EVERY} where a head takes them): clean / field / field on alterations never seen`,
    headers: ['head', 'PCs (at most the references less one)', ...scenarios.map((s) => s.name)],
    rows: chosen.map((head, i): Cell[] => [head.name, head.components, ...cells[i]]),
  };
  printTable(table);
  console.log(`\n${markdownTable(table)}\n`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const sets = argv.includes('--sets') ? new RegExp(argv[argv.indexOf('--sets') + 1]) : undefined;
  if (argv.includes('--transforms')) {
    const pattern = argv[argv.indexOf('--transforms') + 1];
    console.log(`feature transforms: ${machine().cores} cores, ${machine().cpuModel}, ${new Date().toISOString()}, ${load()}`);
    await transformsTable(quick, pattern && !pattern.startsWith('--') ? new RegExp(pattern) : undefined, sets);
    console.log(`finished ${new Date().toISOString()}, ${load()}`);
    return;
  }
  if (argv.includes('--heads')) {
    console.log(`heads: ${machine().cores} cores, ${machine().cpuModel}, ${new Date().toISOString()}, ${load()}`);
    await headsTable(quick, sets, argv.includes('--only') ? new RegExp(argv[argv.indexOf('--only') + 1]) : undefined);
    console.log(`finished ${new Date().toISOString()}, ${load()}`);
    return;
  }
  const only = argv.includes('--only') ? new RegExp(argv[argv.indexOf('--only') + 1]) : undefined;
  const chosen = variants().filter((v) => v.name === 'product' || !only || only.test(v.name));
  console.log(`classifier tuning: ${machine().cores} cores, ${machine().cpuModel}, ${new Date().toISOString()}, ${load()}`);
  const widest = Math.max(...chosen.map((v) => v.components));
  const scenarios = (await loadScenarios(quick, widest)).filter((s) => !sets || sets.test(s.name));
  const results = new Map<string, Map<string, { score: Score; heldOut: Score }>>();
  for (const full of scenarios) {
    const scenario = { ...full, augmentation: withCopiesOf(full.augmentation, COPY_EVERY) };
    console.log(
      `${scenario.name}: ${scenario.references.n} references, ${scenario.augmentation.n} copies, ${scenario.clean.n} queries, up to ${scenario.references.dim} components`,
    );
    for (const variant of chosen) {
      const candidate = variantCandidate(variant, scenario.classes, scenario.name);
      const score = await evaluate(scenario, candidate, variant.components, false);
      const heldOut = await evaluate(scenario, candidate, variant.components, true);
      if (!results.has(variant.name)) results.set(variant.name, new Map());
      results.get(variant.name)!.set(scenario.name, { score, heldOut });
      const shrinkages = chosenShrinkage.get(`${variant.name} | ${scenario.name}`) ?? [];
      console.log(
        `  ${variant.name}: clean ${score.clean.toFixed(4)}, field ${score.field.toFixed(4)} (${FIELD_CONDITIONS.map((c) => score.perCondition[c].toFixed(3)).join(' ')}), ` +
          `held out ${heldOut.field.toFixed(4)}, shrinkage ${shrinkages[0]?.toFixed(3)}, fit ${score.fitMs.toFixed(0)} ms`,
      );
    }
  }
  const names = scenarios.map((s) => s.name);
  const table: Table = {
    title: `Variations on the product's classifier (copies of 1 in ${COPY_EVERY}): clean / field / field on alterations never seen`,
    headers: ['variant', 'PCs (at most the references less one)', ...names],
    rows: [...results].map(([name, scores]): Cell[] => [
      name,
      chosen.find((v) => v.name === name)!.components,
      ...names.map((n) => {
        const s = scores.get(n);
        return s ? `${fixed(s.score.clean, 3)} / ${fixed(s.score.field, 3)} / ${fixed(s.heldOut.field, 3)}` : '';
      }),
    ]),
  };
  printTable(table);
  console.log(`\n${markdownTable(table)}\n`);
  console.log(`finished ${new Date().toISOString()}, ${load()}`);
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
