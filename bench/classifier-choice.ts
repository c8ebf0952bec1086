/**
 * How the classifier over the PCA components was chosen: every candidate head on the same
 * features, clean and under field conditions, on five sets (docs/FEATURE-CHOICE.md has the table).
 *
 *   npx tsx bench/classifier-choice.ts          # npm run bench:classifier (~30 min on 2 loaded cores once the features are cached)
 *   npx tsx bench/classifier-choice.ts --only "prototypes"   # the candidates whose row matches
 *   npx tsx bench/classifier-choice.ts --quick  # the sample's two sets only
 *   npx tsx bench/classifier-choice.ts --sets "103 classes"  # the sets whose name matches
 *   npx tsx bench/classifier-choice.ts --cost   # the default's and logistic regression's fit and predict at the whole dataset's size
 *   npx tsx bench/classifier-choice.ts --copies # the default with field copies of 1 in n Training images (n = 8, 4, 2, 1)
 *
 * Features: the product's default (MobileNetV2, 1,376 floats), computed once and cached by
 * bench/classifier-features.ts (first run: ~10 min more). Per set, StandardScaler + PCA are fitted
 * on the references (the Training rows) and every row projected on 300 components; candidates use
 * the first 100 or all 300.
 * Sets:
 * - fruits-360-103: 103 classes, 60 references and 30 queries per class, queries from the Training
 *   recordings (flatters: near-duplicate frames);
 * - sample (real Test): the 12-class sample's Training against its real Test split;
 * - real Test, 103 classes: fruits-360-103's Training (all 103 classes) against the sample's real
 *   Test split (12 of them): the real split judged against every class, as the product's will be;
 * - axis holdout: the sample's Training `<n>_100.jpg` against `r_<n>_100.jpg` (another recording);
 * - few references: 20 classes of fruits-360-103 drawn at random, 30 references each, its 30 queries.
 * Columns: `clean` is the queries as photographed; `field` the mean over the seven field conditions
 * of evaluate/field-conditions.ts, every query altered by each in turn, references clean.
 * `+aug`: the references plus one altered copy of each (conditions in turn, other seeds than the
 * queries'), as extra rows of their class; `+aug held out` refits without the copies of the
 * condition being scored (for `combined`, without the combined copies), so the alteration scored
 * is one the classifier never saw.
 */
import { join } from 'node:path';
import { Matrix } from 'ml-matrix';
import { PCA } from 'ml-pca';
import { FeatureMoments, PcaFit, ScatterAccumulator, fitPca } from '../lambdas/analysis/streaming-pca';
import { seededRandom } from '../lambdas/common/seeded-random';
import { fitLdaClassifier, LdaClassifier } from '../lambdas/analysis/lda-classifier';
import { FIELD_CONDITIONS, FieldCondition } from '../evaluate/field-conditions';
import { fieldCopyOf } from '../lambdas/featurize/field-copies';
import { FEATURIZE_SETTINGS } from '../lambdas/contracts/handler-env';
import { powerNormalise } from '../lambdas/model/power-normalisation';
import { CACHED_FEATURE_POWER, datasetFeatures, DatasetFeatures, FeatureSet, subset } from './classifier-features';
import { matmul } from './native-matmul';
import { DEFAULT_LOGISTIC_ROUNDS, fitLogisticClassifier } from '../lambdas/analysis/logistic-classifier';
import { Cell, fixed, load, machine, markdownTable, printTable, Table } from './bench-support';

const SHARED = join(__dirname, '..', '..', 'shared', 'datasets');
const MAX_COMPONENTS = 300;
const DIMS = [100, 300] as const;
const DEFAULT_FEATURE_POWER = FEATURIZE_SETTINGS.featurePower.default;

/** Rows in one space: n x dim float32, row-major, and their class indices. */
export interface Points {
  readonly n: number;
  readonly dim: number;
  readonly x: Float32Array;
  readonly y: Int32Array;
  /** Field condition of each row ('' when clean). */
  readonly conditions: readonly string[];
  /** The image's key below the dataset (`Training/<label>/<file>`). */
  readonly keys: readonly string[];
}

export interface Scenario {
  readonly name: string;
  readonly classes: readonly string[];
  readonly references: Points;
  readonly augmentation: Points;
  readonly clean: Points;
  readonly field: Record<FieldCondition, Points>;
}

export interface Predictions {
  readonly predicted: Int32Array;
  readonly confidence: Float64Array;
}

type Predictor = (queries: Points) => Promise<Predictions>;
/** Fits on the references (plus `extra` rows when augmenting). */
export type Candidate = { readonly name: string; readonly augmented: boolean; readonly fit: (train: Points) => Promise<Predictor> };

// ---------- sets ----------

/** The scenario whose queries are the sample's real Test split and whose references are fruits-360-103's (103 classes). */
export const REAL_TEST_103 = 'real Test, 103 classes';

function toPoints(set: FeatureSet, classes: readonly string[], project: (set: FeatureSet) => Float32Array, dim: number): Points {
  const index = new Map(classes.map((c, i) => [c, i]));
  return { n: set.keys.length, dim, x: project(set), y: Int32Array.from(set.labels, (l) => index.get(l) ?? -1), conditions: set.conditions, keys: set.keys };
}

/**
 * A map of each raw feature vector (in place), applied to every row of every set before the PCA
 * is fitted: references, copies and queries alike. `standardise: false` fits the PCA on the
 * centred features (the covariance) instead of the standardised ones (StandardScaler).
 */
export interface FeatureTransform {
  readonly name: string;
  readonly row?: (row: Float32Array) => void;
  readonly standardise: boolean;
}

/**
 * The features as the product makes them (its power normalisation, FEATURIZE_SETTINGS.featurePower,
 * from the cache's; at most the cache's power), StandardScaler + PCA.
 */
export const PRODUCT_FEATURES: FeatureTransform = {
  name: `the product's: sign(a) |a|^${DEFAULT_FEATURE_POWER} of the pooled activations`,
  standardise: true,
  row: (row) => powerNormalise(row, DEFAULT_FEATURE_POWER / CACHED_FEATURE_POWER),
};

function transformed(set: FeatureSet, transform: FeatureTransform): FeatureSet {
  if (!transform.row) return set;
  const vectors = Float32Array.from(set.vectors);
  for (let r = 0; r < set.keys.length; r++) transform.row(vectors.subarray(r * set.dim, (r + 1) * set.dim));
  return { ...set, vectors };
}

function transformedFeatures(features: DatasetFeatures, transform: FeatureTransform): DatasetFeatures {
  const each = (sets: Record<FieldCondition, FeatureSet>) => mapConditions(sets, (set) => transformed(set, transform));
  return {
    train: transformed(features.train, transform),
    test: transformed(features.test, transform),
    testAltered: each(features.testAltered),
    trainAltered: features.trainAltered && each(features.trainAltered),
    trainAugmented: transformed(features.trainAugmented, transform),
  };
}

/** PCA of the centred features' covariance (no scaling): the mean and scale `fitPca` reports, its own components. */
function covariancePca(moments: FeatureMoments, components: number): PcaFit {
  const scaled = fitPca(moments, { components });
  const d = moments.dim;
  const covariance = Matrix.from1DArray(
    d,
    d,
    Array.from(moments.scatter, (v) => v / moments.count),
  );
  const vectors = new PCA(covariance, { isCovarianceMatrix: true }).getEigenvectors();
  const k = scaled.k;
  const unit = new Float64Array(k * d);
  for (let c = 0; c < k; c++) unit.set(vectors.getColumn(c), c * d);
  return { ...scaled, scale: new Float64Array(d).fill(1), components: unit };
}

/** StandardScaler (unless `standardise` is false) + PCA fitted on `references`; every set projected on its components (float32). */
function scenarioOf(
  name: string,
  references: FeatureSet,
  augmentation: FeatureSet,
  clean: FeatureSet,
  field: Record<FieldCondition, FeatureSet>,
  components: number,
  standardise = true,
): Promise<Scenario> {
  const accumulator = new ScatterAccumulator(references.dim);
  accumulator.addRows(references.vectors, references.keys.length);
  const fit = standardise ? fitPca(accumulator.moments(), { components }) : covariancePca(accumulator.moments(), components);
  const weights = new Float32Array(fit.dim * fit.k);
  for (let c = 0; c < fit.k; c++) for (let f = 0; f < fit.dim; f++) weights[f * fit.k + c] = fit.components[c * fit.dim + f] / fit.scale[f];
  const classes = [...new Set(references.labels)];
  const project = async (set: FeatureSet) => {
    const centred = new Float32Array(set.vectors.length);
    for (let i = 0; i < set.vectors.length; i++) centred[i] = set.vectors[i] - fit.mean[i % fit.dim];
    return matmul(centred, set.keys.length, fit.dim, weights, fit.k);
  };
  return (async () => {
    const projected = new Map<FeatureSet, Float32Array>();
    for (const set of [references, augmentation, clean, ...Object.values(field)]) projected.set(set, await project(set));
    const points = (set: FeatureSet) => toPoints(set, classes, (s) => projected.get(s)!, fit.k);
    const fieldPoints = {} as Record<FieldCondition, Points>;
    for (const condition of FIELD_CONDITIONS) fieldPoints[condition] = points(field[condition]);
    return { name, classes, references: points(references), augmentation: points(augmentation), clean: points(clean), field: fieldPoints };
  })();
}

function rowsWhere(set: FeatureSet, keep: (key: string, index: number) => boolean): number[] {
  return set.keys.flatMap((key, i) => (keep(key, i) ? [i] : []));
}

function mapConditions(sets: DatasetFeatures['testAltered'], pick: (set: FeatureSet) => FeatureSet): Record<FieldCondition, FeatureSet> {
  const out = {} as Record<FieldCondition, FeatureSet>;
  for (const condition of FIELD_CONDITIONS) out[condition] = pick(sets[condition]);
  return out;
}

/**
 * The five sets (`quick`: the sample's two), each projected on its first `components` components,
 * of the features after `transform`.
 */
export async function loadScenarios(quick: boolean, components = MAX_COMPONENTS, transform = PRODUCT_FEATURES): Promise<Scenario[]> {
  const { standardise } = transform;
  const sample = transformedFeatures(await datasetFeatures(join(SHARED, 'fruits-360-sample'), 'sample', { alterTraining: true }), transform);
  const isSecondAxis = (key: string) => key.split('/').pop()!.startsWith('r_');
  const firstAxis = rowsWhere(sample.train, (key) => !isSecondAxis(key));
  const secondAxis = rowsWhere(sample.train, isSecondAxis);
  const scenarios = [
    await scenarioOf('sample (real Test)', sample.train, sample.trainAugmented, sample.test, sample.testAltered, components, standardise),
    await scenarioOf(
      'axis holdout',
      subset(sample.train, firstAxis),
      subset(sample.trainAugmented, firstAxis),
      subset(sample.train, secondAxis),
      mapConditions(sample.trainAltered!, (set) => subset(set, secondAxis)),
      components,
      standardise,
    ),
  ];
  if (quick) return scenarios;
  const f103 = transformedFeatures(await datasetFeatures(join(SHARED, 'fruits-360-103'), 'f103'), transform);
  scenarios.unshift(await scenarioOf('fruits-360-103', f103.train, f103.trainAugmented, f103.test, f103.testAltered, components, standardise));
  // The sample's real Test split among all 103 classes: the nearest this machine gets to the
  // whole dataset's real Test split (a separate recording, judged against every class).
  scenarios.splice(2, 0, await scenarioOf(REAL_TEST_103, f103.train, f103.trainAugmented, sample.test, sample.testAltered, components, standardise));
  // Few references: 20 classes, 30 of each class's 60 Training images, a fixed seeded draw.
  const random = seededRandom(20);
  const shuffle = <T>(items: T[]) => {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  };
  const chosen = new Set(shuffle([...new Set(f103.train.labels)]).slice(0, 20));
  const referenceRows = [...chosen]
    .flatMap((label) => shuffle(rowsWhere(f103.train, (_, i) => f103.train.labels[i] === label)).slice(0, 30))
    .sort((a, b) => a - b);
  const queryRows = rowsWhere(f103.test, (_, i) => chosen.has(f103.test.labels[i]));
  scenarios.push(
    await scenarioOf(
      'few references',
      subset(f103.train, referenceRows),
      subset(f103.trainAugmented, referenceRows),
      subset(f103.test, queryRows),
      mapConditions(f103.testAltered, (set) => subset(set, queryRows)),
      components,
      standardise,
    ),
  );
  return scenarios;
}

// ---------- helpers over points ----------

function leading(points: Points, dim: number): Points {
  if (dim >= points.dim) return points;
  const x = new Float32Array(points.n * dim);
  for (let r = 0; r < points.n; r++) x.set(points.x.subarray(r * points.dim, r * points.dim + dim), r * dim);
  return { ...points, dim, x };
}

function concat(a: Points, b: Points): Points {
  const x = new Float32Array(a.x.length + b.x.length);
  x.set(a.x);
  x.set(b.x, a.x.length);
  const y = new Int32Array(a.n + b.n);
  y.set(a.y);
  y.set(b.y, a.n);
  return { n: a.n + b.n, dim: a.dim, x, y, conditions: [...a.conditions, ...b.conditions], keys: [...a.keys, ...b.keys] };
}

export function filterRows(points: Points, keep: (condition: string, key: string) => boolean): Points {
  return pickRows(
    points,
    points.conditions.flatMap((c, i) => (keep(c, points.keys[i]) ? [i] : [])),
  );
}

/** `points`' clean rows and the field copies of one Training image in `every` (`fieldCopyOf`'s choice; none when `every` is 0). */
export function withCopiesOf(points: Points, every: number): Points {
  return filterRows(points, (condition, key) => condition === '' || fieldCopyOf(`input/d/${key}`, every) !== undefined);
}

/** The rows of `points` at `rows`, in that order (a row may come more than once). */
export function pickRows(points: Points, rows: readonly number[]): Points {
  const x = new Float32Array(rows.length * points.dim);
  rows.forEach((r, i) => x.set(points.x.subarray(r * points.dim, (r + 1) * points.dim), i * points.dim));
  return {
    n: rows.length,
    dim: points.dim,
    x,
    y: Int32Array.from(rows, (r) => points.y[r]),
    conditions: rows.map((r) => points.conditions[r]),
    keys: rows.map((r) => points.keys[r]),
  };
}

export function rowsOf(points: Points): Float32Array[] {
  return Array.from({ length: points.n }, (_, r) => points.x.subarray(r * points.dim, (r + 1) * points.dim));
}

function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c];
  return t;
}

function squaredNorms(points: Points): Float64Array {
  const norms = new Float64Array(points.n);
  for (let r = 0; r < points.n; r++) {
    let sum = 0;
    for (let d = 0; d < points.dim; d++) sum += points.x[r * points.dim + d] ** 2;
    norms[r] = sum;
  }
  return norms;
}

// ---------- candidates ----------

const NEIGHBOURS_KEPT = 10;

/** The 10 nearest references of each query (Euclidean, native products), nearest first. */
async function nearest(references: Points, queries: Points): Promise<{ index: Int32Array; distance: Float64Array }> {
  const refT = transpose(references.x, references.n, references.dim);
  const refNorms = squaredNorms(references);
  const queryNorms = squaredNorms(queries);
  const kept = Math.min(NEIGHBOURS_KEPT, references.n);
  const index = new Int32Array(queries.n * NEIGHBOURS_KEPT).fill(-1);
  const distance = new Float64Array(queries.n * NEIGHBOURS_KEPT).fill(Number.POSITIVE_INFINITY);
  const CHUNK = 512;
  for (let start = 0; start < queries.n; start += CHUNK) {
    const m = Math.min(CHUNK, queries.n - start);
    const products = await matmul(queries.x.subarray(start * queries.dim, (start + m) * queries.dim), m, queries.dim, refT, references.n);
    for (let q = 0; q < m; q++) {
      const base = (start + q) * NEIGHBOURS_KEPT;
      const qn = queryNorms[start + q];
      for (let r = 0; r < references.n; r++) {
        const d = qn + refNorms[r] - 2 * products[q * references.n + r];
        if (d >= distance[base + kept - 1]) continue;
        let at = kept - 1;
        while (at > 0 && distance[base + at - 1] > d) {
          distance[base + at] = distance[base + at - 1];
          index[base + at] = index[base + at - 1];
          at--;
        }
        distance[base + at] = d;
        index[base + at] = r;
      }
    }
  }
  for (let i = 0; i < distance.length; i++) distance[i] = Math.sqrt(Math.max(0, distance[i]));
  return { index, distance };
}

/**
 * k-NN votes from the neighbour lists: `weighted` votes 1/distance, else one each with ties to
 * the label whose voters are nearest in total (lambdas/analysis/knn.ts's rule). Confidence: the
 * winner's share of the votes.
 */
function vote(references: Points, found: { index: Int32Array; distance: Float64Array }, queries: number, k: number, weighted: boolean): Predictions {
  const predicted = new Int32Array(queries);
  const confidence = new Float64Array(queries);
  for (let q = 0; q < queries; q++) {
    const votes = new Map<number, { weight: number; distance: number }>();
    let total = 0;
    for (let n = 0; n < k; n++) {
      const r = found.index[q * NEIGHBOURS_KEPT + n];
      if (r < 0) break;
      const d = found.distance[q * NEIGHBOURS_KEPT + n];
      const w = weighted ? 1 / (d + 1e-9) : 1;
      const entry = votes.get(references.y[r]) ?? { weight: 0, distance: 0 };
      entry.weight += w;
      entry.distance += d;
      votes.set(references.y[r], entry);
      total += w;
    }
    let best = -1;
    let bestVote = { weight: -1, distance: 0 };
    for (const [label, v] of votes) {
      if (v.weight > bestVote.weight || (v.weight === bestVote.weight && v.distance < bestVote.distance)) [best, bestVote] = [label, v];
    }
    predicted[q] = best;
    confidence[q] = bestVote.weight / total;
  }
  return { predicted, confidence };
}

/**
 * k-NN over the training rows (`cleanReferences`: over the clean ones only, the altered copies
 * serving the space's fit alone), in the components or in the space `space` fits.
 */
export function knn(
  name: string,
  k: number,
  weighted: boolean,
  augmented: boolean,
  space?: (train: Points) => Promise<(points: Points) => Points>,
  cleanReferences = false,
): Candidate {
  return {
    name,
    augmented,
    fit: async (train) => {
      const map = space ? await space(train) : (p: Points) => p;
      const references = map(cleanReferences ? filterRows(train, (c) => c === '') : train);
      return async (queries) => {
        const mapped = map(queries);
        return vote(references, await nearest(references, mapped), mapped.n, k, weighted);
      };
    },
  };
}

/** Class means of `points` (classes x dim). */
function classMeans(points: Points, classes: number): Float64Array {
  const sums = new Float64Array(classes * points.dim);
  const counts = new Float64Array(classes);
  for (let r = 0; r < points.n; r++) {
    counts[points.y[r]]++;
    for (let d = 0; d < points.dim; d++) sums[points.y[r] * points.dim + d] += points.x[r * points.dim + d];
  }
  return sums.map((v, i) => v / Math.max(1, counts[Math.floor(i / points.dim)]));
}

function argmaxRows(scores: Float32Array, rows: number, cols: number, temperature = 1): Predictions {
  const predicted = new Int32Array(rows);
  const confidence = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (scores[r * cols + c] > scores[r * cols + best]) best = c;
    let total = 0;
    for (let c = 0; c < cols; c++) total += Math.exp((scores[r * cols + c] - scores[r * cols + best]) / temperature);
    predicted[r] = best;
    confidence[r] = 1 / total;
  }
  return { predicted, confidence };
}

/** Nearest class mean, Euclidean or cosine (on the centred components). */
function nearestMean(name: string, cosine: boolean, augmented: boolean, classes: number): Candidate {
  return {
    name,
    augmented,
    fit: async (train) => {
      const means = classMeans(train, classes);
      const dim = train.dim;
      const unit = (v: Float32Array | Float64Array, n: number) => {
        for (let r = 0; r < n; r++) {
          const norm = Math.hypot(...v.subarray(r * dim, (r + 1) * dim)) || 1;
          for (let d = 0; d < dim; d++) v[r * dim + d] /= norm;
        }
      };
      if (cosine) unit(means, classes);
      const meansT = transpose(Float32Array.from(means), classes, dim);
      const offsets = new Float64Array(classes);
      for (let c = 0; c < classes; c++) for (let d = 0; d < dim; d++) offsets[c] -= cosine ? 0 : 0.5 * means[c * dim + d] ** 2;
      return async (queries) => {
        const x = Float32Array.from(queries.x);
        if (cosine) unit(x, queries.n);
        const scores = await matmul(x, queries.n, dim, meansT, classes);
        for (let r = 0; r < queries.n; r++) for (let c = 0; c < classes; c++) scores[r * classes + c] += offsets[c];
        return argmaxRows(scores, queries.n, classes, cosine ? 0.05 : 1);
      };
    },
  };
}

function toLdaSpace(model: LdaClassifier) {
  return (points: Points): Points => {
    const t = model.transform(rowsOf(points));
    return { ...points, dim: t.columns, x: Float32Array.from(t.to1DArray()) };
  };
}

function lda(name: string, shrinkage: number, augmented: boolean, classes: readonly string[]): Candidate {
  return {
    name,
    augmented,
    fit: async (train) => {
      const model = await fitLdaClassifier(
        rowsOf(train),
        Array.from(train.y, (y) => classes[y]),
        { shrinkage, prototypes: 1 },
      );
      const index = new Map(classes.map((c, i) => [c, i]));
      return async (queries) => {
        const predictions = model.predict(rowsOf(queries));
        return { predicted: Int32Array.from(predictions, (p) => index.get(p.label)!), confidence: Float64Array.from(predictions, (p) => p.confidence) };
      };
    },
  };
}

function ldaKnn(name: string, shrinkage: number, k: number, augmented: boolean, classes: readonly string[], cleanReferences = false): Candidate {
  return knn(
    name,
    k,
    false,
    augmented,
    async (train) =>
      toLdaSpace(
        await fitLdaClassifier(
          rowsOf(train),
          Array.from(train.y, (y) => classes[y]),
          { shrinkage, prototypes: 1 },
        ),
      ),
    cleanReferences,
  );
}

/**
 * The product's classifier (lambdas/analysis/lda-classifier.ts): LDA, then the nearest of up to
 * `perClass` k-means prototypes per class in the discriminant space (`cleanReferences`: the
 * prototypes of the clean rows only), its softmax confidence.
 */
function ldaPrototypes(name: string, shrinkage: number, perClass: number, augmented: boolean, classes: readonly string[], cleanReferences: boolean): Candidate {
  const index = new Map(classes.map((c, i) => [c, i]));
  return {
    name,
    augmented,
    fit: async (train) => {
      const labelsOf = (points: Points) => Array.from(points.y, (y) => classes[y]);
      const clean = filterRows(train, (c) => c === '');
      const copies = filterRows(train, (c) => c !== '');
      const model = cleanReferences
        ? await fitLdaClassifier(rowsOf(clean), labelsOf(clean), {
            shrinkage,
            prototypes: perClass,
            augmentation: { rows: rowsOf(copies), labels: labelsOf(copies) },
          })
        : await fitLdaClassifier(rowsOf(train), labelsOf(train), { shrinkage, prototypes: perClass });
      return async (queries) => {
        const predictions = model.predict(rowsOf(queries));
        return { predicted: Int32Array.from(predictions, (p) => index.get(p.label)!), confidence: Float64Array.from(predictions, (p) => p.confidence) };
      };
    },
  };
}

/**
 * Multinomial logistic regression with an L2 penalty on the standardised components: the
 * product's module (lambdas/analysis/logistic-classifier.ts), at most `iterations` evaluations of the loss.
 */
export function logistic(name: string, lambda: number, augmented: boolean, classes: number, iterations = DEFAULT_LOGISTIC_ROUNDS): Candidate {
  return {
    name,
    augmented,
    fit: async (train) => {
      const labels = Array.from(train.y, String);
      const model = await fitLogisticClassifier({ data: train.x, rows: train.n, dims: train.dim }, labels, { l2: lambda, rounds: iterations });
      if (model.labels.length > classes) throw new Error(`${model.labels.length} labels for ${classes} classes`);
      return async (queries) => {
        const predictions = await model.predictBlock({ data: queries.x, rows: queries.n, dims: queries.dim });
        return { predicted: Int32Array.from(predictions, (p) => Number(p.label)), confidence: Float64Array.from(predictions, (p) => p.confidence) };
      };
    },
  };
}

// ---------- scoring ----------

export interface Score {
  clean: number;
  perCondition: Record<FieldCondition, number>;
  field: number;
  /** Confidence of the pooled clean + field predictions: AUROC (right vs wrong) and ECE. */
  auroc: number;
  ece: number;
  fitMs: number;
  predictMsPer1000: number;
}

function accuracy(points: Points, predictions: Predictions): number {
  let correct = 0;
  for (let r = 0; r < points.n; r++) if (predictions.predicted[r] === points.y[r]) correct++;
  return correct / points.n;
}

function confidenceQuality(pairs: { confidence: number; right: boolean }[]): { auroc: number; ece: number } {
  const sorted = [...pairs].sort((a, b) => a.confidence - b.confidence);
  // AUROC by ranks (ties averaged).
  let rankSumRight = 0;
  let rights = 0;
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j < sorted.length && sorted[j].confidence === sorted[i].confidence) j++;
    const rank = (i + j + 1) / 2;
    for (let t = i; t < j; t++) {
      if (!sorted[t].right) continue;
      rankSumRight += rank;
      rights++;
    }
    i = j;
  }
  const wrongs = sorted.length - rights;
  const auroc = rights && wrongs ? (rankSumRight - (rights * (rights + 1)) / 2) / (rights * wrongs) : Number.NaN;
  const bins = Array.from({ length: 10 }, () => ({ n: 0, confidence: 0, right: 0 }));
  for (const p of pairs) {
    const bin = bins[Math.min(9, Math.floor(p.confidence * 10))];
    bin.n++;
    bin.confidence += p.confidence;
    bin.right += p.right ? 1 : 0;
  }
  const ece = bins.reduce((sum, b) => sum + Math.abs(b.confidence - b.right), 0) / pairs.length;
  return { auroc, ece };
}

export async function evaluate(scenario: Scenario, candidate: Candidate, dim: number, heldOut: boolean): Promise<Score> {
  const references = leading(scenario.references, dim);
  const augmentation = leading(scenario.augmentation, dim);
  const train = candidate.augmented ? concat(references, augmentation) : references;
  const started = performance.now();
  const predictor = await candidate.fit(train);
  const fitMs = performance.now() - started;
  const clean = leading(scenario.clean, dim);
  const predictStarted = performance.now();
  const cleanPredictions = await predictor(clean);
  const predictMsPer1000 = ((performance.now() - predictStarted) / clean.n) * 1000;
  const pairs = Array.from(cleanPredictions.predicted, (p, r) => ({ confidence: cleanPredictions.confidence[r], right: p === clean.y[r] }));
  const perCondition = {} as Record<FieldCondition, number>;
  for (const condition of FIELD_CONDITIONS) {
    const queries = leading(scenario.field[condition], dim);
    let conditionPredictor = predictor;
    if (heldOut && candidate.augmented) {
      const unseen = filterRows(augmentation, (c) => c !== condition);
      conditionPredictor = await candidate.fit(concat(references, unseen));
    }
    const predictions = await conditionPredictor(queries);
    perCondition[condition] = accuracy(queries, predictions);
    for (let r = 0; r < queries.n; r++) pairs.push({ confidence: predictions.confidence[r], right: predictions.predicted[r] === queries.y[r] });
  }
  const field = FIELD_CONDITIONS.reduce((sum, c) => sum + perCondition[c], 0) / FIELD_CONDITIONS.length;
  return { clean: accuracy(clean, cleanPredictions), perCondition, field, ...confidenceQuality(pairs), fitMs, predictMsPer1000 };
}

function candidatesFor(classes: readonly string[], shrinkages: readonly number[]): { candidate: Candidate; heldOut?: boolean }[] {
  const C = classes.length;
  const list: { candidate: Candidate; heldOut?: boolean }[] = [
    { candidate: knn('5-NN (today)', 5, false, false) },
    { candidate: knn('1-NN', 1, false, false) },
    { candidate: knn('10-NN, 1/distance votes', 10, true, false) },
    { candidate: nearestMean('nearest class mean', false, false, C) },
    { candidate: nearestMean('nearest class mean, cosine', true, false, C) },
    { candidate: logistic('logistic regression, L2 1e-3', 1e-3, false, C) },
    ...shrinkages.map((s) => ({ candidate: lda(`LDA shrinkage ${s}`, s, false, classes) })),
    { candidate: ldaKnn('LDA 0.1, then 5-NN', 0.1, 5, false, classes) },
    { candidate: knn('5-NN +aug', 5, false, true) },
    { candidate: knn('5-NN +aug', 5, false, true), heldOut: true },
    { candidate: nearestMean('nearest class mean +aug', false, true, C) },
    { candidate: logistic('logistic regression, L2 1e-3 +aug', 1e-3, true, C) },
    { candidate: logistic('logistic regression, L2 1e-2 +aug', 1e-2, true, C) },
    { candidate: logistic('logistic regression, L2 1e-1 +aug', 1e-1, true, C) },
    ...shrinkages.map((s) => ({ candidate: lda(`LDA shrinkage ${s} +aug`, s, true, classes) })),
    ...shrinkages.map((s) => ({ candidate: lda(`LDA shrinkage ${s} +aug`, s, true, classes), heldOut: true })),
    { candidate: ldaKnn('LDA 0.1 +aug, then 5-NN', 0.1, 5, true, classes) },
    { candidate: ldaKnn('LDA 0.1 +aug, then 5-NN', 0.1, 5, true, classes), heldOut: true },
    { candidate: ldaKnn('LDA 0.1 +aug, then 5-NN over clean references', 0.1, 5, true, classes, true) },
    { candidate: ldaKnn('LDA 0.1 +aug, then 5-NN over clean references', 0.1, 5, true, classes, true), heldOut: true },
    { candidate: ldaKnn('LDA 0.3 +aug, then 5-NN over clean references', 0.3, 5, true, classes, true) },
    { candidate: ldaKnn('LDA 0.1 +aug, then 1-NN over clean references', 0.1, 1, true, classes, true) },
    { candidate: ldaPrototypes('LDA 0.1 +aug, then nearest of 8 prototypes per class', 0.1, 8, true, classes, false) },
    { candidate: ldaPrototypes('LDA 0.1 +aug, then nearest of 8 prototypes per class', 0.1, 8, true, classes, false), heldOut: true },
    { candidate: ldaPrototypes('LDA 0.1 +aug, then nearest of 16 prototypes per class', 0.1, 16, true, classes, false) },
    { candidate: ldaPrototypes('LDA 0.1 +aug, then nearest of 8 clean prototypes per class', 0.1, 8, true, classes, true) },
    { candidate: ldaPrototypes('LDA 0.1 +aug, then nearest of 8 clean prototypes per class', 0.1, 8, true, classes, true), heldOut: true },
  ];
  return list;
}

/**
 * The default classifier at the whole dataset's size, on synthetic rows (the cost depends on the
 * shapes only): 103 classes, 516 Training rows per class and one altered copy of each, 100
 * components; 17,800 rows predicted (the Test split). Fit = statistics + discriminant + prototypes.
 */
async function costOfDefault(): Promise<void> {
  const classes = 103;
  const dim = 100;
  const random = seededRandom(1);
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const centres = Array.from({ length: classes }, () => Array.from({ length: dim }, () => 3 * gaussian()));
  const draw = (n: number) => Array.from({ length: n }, (_, i) => Float64Array.from(centres[i % classes], (v) => v + gaussian()));
  const labels = (n: number) => Array.from({ length: n }, (_, i) => `class ${i % classes}`);
  const training = draw(classes * 516);
  const copies = draw(classes * 516);
  const queries = draw(17_800);
  const started = performance.now();
  const model = await fitLdaClassifier(training, labels(training.length), { augmentation: { rows: copies, labels: labels(copies.length) } });
  const fitted = performance.now();
  model.predict(queries);
  const predicted = performance.now();
  const json = JSON.stringify(model.toJSON());
  console.log(
    `default classifier, ${training.length} references + ${copies.length} altered copies x ${dim} components, ${classes} classes: fit ${((fitted - started) / 1000).toFixed(2)} s, ` +
      `predict ${queries.length} rows ${((predicted - fitted) / 1000).toFixed(2)} s, model JSON ${(json.length / 1e6).toFixed(2)} MB, ${load()}`,
  );
}

/**
 * Logistic regression (lambdas/analysis/logistic-classifier.ts, the default L2 and rounds) at the
 * whole dataset's size, on synthetic rows of the shapes that matter: 103 classes, 300 components,
 * fitted on every Training row and its copies (516 + 129 per class) or on a per-class sample of
 * them (256 + 64, what a fit stage could keep), 17,800 rows predicted.
 */
async function costOfLogistic(): Promise<void> {
  const classes = 103;
  const dim = 300;
  const random = seededRandom(2);
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const centres = Array.from({ length: classes }, () => Float32Array.from({ length: dim }, () => 3 * gaussian()));
  const draw = (rows: number) => {
    const data = new Float32Array(rows * dim);
    for (let r = 0; r < rows; r++) for (let d = 0; d < dim; d++) data[r * dim + d] = centres[r % classes][d] + gaussian();
    return { block: { data, rows, dims: dim }, labels: Array.from({ length: rows }, (_, r) => `class ${r % classes}`) };
  };
  const queries = draw(17_800);
  for (const [what, perClass] of [
    ['every Training row and its copies', 516 + 129],
    ['a sample of 256 + 64 per class', 256 + 64],
  ] as const) {
    const training = draw(classes * perClass);
    const started = performance.now();
    const model = await fitLogisticClassifier(training.block, training.labels);
    const fitted = performance.now();
    await model.predictBlock(queries.block);
    const predicted = performance.now();
    console.log(
      `logistic regression, ${what} (${training.block.rows} rows) x ${dim} components, ${classes} classes: fit ${((fitted - started) / 1000).toFixed(2)} s, ` +
        `predict ${queries.block.rows} rows ${((predicted - fitted) / 1000).toFixed(2)} s, model JSON ${(JSON.stringify(model.toJSON()).length / 1e6).toFixed(2)} MB, ${load()}`,
    );
  }
}

/**
 * How many field copies the default needs: the product's classifier fitted with the copies of one
 * Training image in `every` (the images `fieldCopyOf` in lambdas/featurize/field-copies.ts
 * chooses; each keeps the condition its cached copy has), at the product's 100 components. A copy
 * costs about what featurizing its image costs (docs/FEATURE-CHOICE.md).
 */
async function copiesTable(quick: boolean): Promise<void> {
  const scenarios = await loadScenarios(quick);
  const everies = [0, 8, 4, 2, 1];
  const rows: Cell[][] = [];
  for (const scenario of scenarios) {
    const candidate = ldaPrototypes('default', 0.1, 8, true, scenario.classes, true);
    for (const every of everies) {
      const below = scenario.augmentation.keys.map((key) => `input/d/${key}`);
      const kept = withCopiesOf(scenario.augmentation, every);
      const scored = { ...scenario, augmentation: kept };
      const score = await evaluate(scored, candidate, 100, false);
      const heldOut = every > 0 ? await evaluate(scored, candidate, 100, true) : score;
      const share = every > 0 ? below.filter((key) => fieldCopyOf(key, every)).length / below.length : 0;
      console.log(
        `  ${scenario.name}, copies of 1 in ${every || '-'} (${(100 * share).toFixed(1)}% of ${below.length}): clean ${score.clean.toFixed(4)}, field ${score.field.toFixed(4)}, held out ${heldOut.field.toFixed(4)}`,
      );
      rows.push([
        scenario.name,
        every === 0 ? 'none' : `1 in ${every}`,
        `${(100 * share).toFixed(1)}%`,
        fixed(score.clean, 3),
        fixed(score.field, 3),
        fixed(heldOut.field, 3),
      ]);
    }
  }
  const table: Table = {
    title: 'Field copies of the Training images: the default classifier, 100 PCs',
    headers: ['set', 'copies', 'Training images copied', 'clean', 'field', 'field, alterations never seen'],
    rows,
  };
  printTable(table);
  console.log(`\n${markdownTable(table)}\n`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--cost')) {
    await costOfDefault();
    return costOfLogistic();
  }
  if (argv.includes('--copies')) return copiesTable(argv.includes('--quick'));
  const quick = argv.includes('--quick');
  const only = argv.includes('--only') ? new RegExp(argv[argv.indexOf('--only') + 1]) : undefined;
  const shrinkages = argv.includes('--shrinkages') ? argv[argv.indexOf('--shrinkages') + 1].split(',').map(Number) : [0.01, 0.1, 0.3];
  console.log(`classifier choice: ${machine().cores} cores, ${machine().cpuModel}, ${new Date().toISOString()}, ${load()}`);
  const sets = argv.includes('--sets') ? new RegExp(argv[argv.indexOf('--sets') + 1]) : undefined;
  const scenarios = (await loadScenarios(quick)).filter((s) => !sets || sets.test(s.name));
  const results = new Map<string, Map<string, Score>>();
  for (const scenario of scenarios) {
    console.log(
      `${scenario.name}: ${scenario.classes.length} classes, ${scenario.references.n} references (+${scenario.augmentation.n} altered copies), ${scenario.clean.n} queries x 8 (clean + 7 conditions), ${scenario.references.dim} components`,
    );
    for (const { candidate, heldOut } of candidatesFor(scenario.classes, shrinkages)) {
      for (const dim of DIMS) {
        const row = `${candidate.name}${heldOut ? ' held out' : ''} | ${dim}`;
        if (only && !only.test(row)) continue;
        const score = await evaluate(scenario, candidate, dim, heldOut ?? false);
        if (!results.has(row)) results.set(row, new Map());
        results.get(row)!.set(scenario.name, score);
        console.log(
          `  ${row}: clean ${score.clean.toFixed(4)}, field ${score.field.toFixed(4)} (${FIELD_CONDITIONS.map((c) => score.perCondition[c].toFixed(3)).join(' ')}), AUROC ${score.auroc.toFixed(3)}, ECE ${score.ece.toFixed(3)}, fit ${score.fitMs.toFixed(0)} ms, predict ${score.predictMsPer1000.toFixed(1)} ms/1000`,
        );
      }
    }
  }
  const names = scenarios.map((s) => s.name);
  const summary: Table = {
    title: 'Classifier candidates over the PCA components (clean / field = mean of the 7 field conditions)',
    headers: ['candidate', 'PCs', ...names.flatMap((n) => [`${n}: clean`, `${n}: field`])],
    rows: [...results].map(([row, scores]): Cell[] => {
      const [name, dim] = row.split(' | ');
      return [name, dim, ...names.flatMap((n): Cell[] => (scores.get(n) ? [fixed(scores.get(n)!.clean, 4), fixed(scores.get(n)!.field, 4)] : ['', '']))];
    }),
  };
  const conditions: Table = {
    title: 'Per field condition (accuracy on every query altered that way; references clean)',
    headers: ['candidate', 'PCs', 'set', ...FIELD_CONDITIONS, 'confidence AUROC', 'ECE', 'fit ms', 'predict ms/1000'],
    rows: [...results].flatMap(([row, scores]) => {
      const [name, dim] = row.split(' | ');
      return names
        .filter((n) => scores.has(n))
        .map((n) => {
          const s = scores.get(n)!;
          return [
            name,
            dim,
            n,
            ...FIELD_CONDITIONS.map((c) => fixed(s.perCondition[c], 3)),
            fixed(s.auroc, 3),
            fixed(s.ece, 3),
            Math.round(s.fitMs),
            fixed(s.predictMsPer1000, 1),
          ];
        });
    }),
  };
  printTable(summary);
  printTable(conditions);
  console.log(`\n${markdownTable(summary)}\n\n${markdownTable(conditions)}\n`);
  console.log(`finished ${new Date().toISOString()}, ${load()}`);
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
