/**
 * k-nearest-neighbours accuracy of a feature table: how well the principal components separate
 * the labels. The one evaluator the local run, the tests and the benchmarks share.
 *
 * Split by key path, as Fruits-360 ships it: an image under a `Training/` (or `Train/`) folder is
 * a reference, one under `Test/` (or `Validation/`) is scored against them.
 */
import { restoreTextField } from '../lambdas/core/features-csv';
import { parseCsv } from './csv';

export interface LabelledVector {
  readonly key: string;
  readonly label: string;
  readonly vector: ArrayLike<number>;
}

export type Split = 'train' | 'test';

const TRAIN_FOLDERS = new Set(['training', 'train']);
const TEST_FOLDERS = new Set(['test', 'testing', 'validation']);

/** The split an object key belongs to, from its folders; undefined when it names none. */
export function splitOfKey(key: string): Split | undefined {
  const folders = key
    .split('/')
    .slice(0, -1)
    .map((folder) => folder.toLowerCase());
  // The innermost split folder wins (`input/train-set/Test/Apple/x.jpg` is a test image).
  for (let i = folders.length - 1; i >= 0; i--) {
    if (TRAIN_FOLDERS.has(folders[i])) return 'train';
    if (TEST_FOLDERS.has(folders[i])) return 'test';
  }
  return undefined;
}

export interface KnnResult {
  readonly k: number;
  /** Correct / scored; NaN when nothing could be scored. */
  readonly accuracy: number;
  readonly correct: number;
  readonly scored: number;
  readonly references: number;
  /** Rows in neither split. */
  readonly unsplit: number;
}

export interface KnnOptions {
  /** Neighbours that vote. @default 5 */
  readonly k?: number;
  /** How many leading components to use. @default all */
  readonly dims?: number;
  readonly splitOf?: (key: string) => Split | undefined;
}

export function knnAccuracy(rows: readonly LabelledVector[], options: KnnOptions = {}): KnnResult {
  const k = options.k ?? 5;
  const splitOf = options.splitOf ?? splitOfKey;
  const train: LabelledVector[] = [];
  const test: LabelledVector[] = [];
  let unsplit = 0;
  for (const row of rows) {
    const split = splitOf(row.key);
    if (split === 'train') train.push(row);
    else if (split === 'test') test.push(row);
    else unsplit++;
  }
  const { correct, scored } = scoreKnn(train, test, { k, dims: options.dims });
  return { k, accuracy: scored > 0 ? correct / scored : Number.NaN, correct, scored, references: train.length, unsplit };
}

/**
 * The one k-NN scorer (the run summary, the benchmarks and the tests use it): each query gets the
 * majority label of its k nearest references (Euclidean distance over the first `dims`
 * components). A tie in votes goes to the tied label whose voting neighbours are nearest in total
 * (sum of their distances); a tie in distance among the k-th neighbours keeps the reference that
 * comes first. Nothing is scored without references.
 */
export function scoreKnn(
  references: readonly { label: string; vector: ArrayLike<number> }[],
  queries: readonly { label: string; vector: ArrayLike<number> }[],
  options: { k?: number; dims?: number } = {},
): { correct: number; scored: number } {
  if (references.length === 0) return { correct: 0, scored: 0 };
  const k = options.k ?? 5;
  const dims = Math.min(options.dims ?? Number.POSITIVE_INFINITY, references[0].vector.length);
  let correct = 0;
  for (const query of queries) {
    if (predict(query.vector, references, k, dims) === query.label) correct++;
  }
  return { correct, scored: queries.length };
}

function predict(query: ArrayLike<number>, references: readonly { label: string; vector: ArrayLike<number> }[], k: number, dims: number): string {
  const nearest: { distance: number; label: string }[] = [];
  for (const reference of references) {
    let distance = 0;
    for (let d = 0; d < dims; d++) {
      const diff = query[d] - reference.vector[d];
      distance += diff * diff;
    }
    if (nearest.length < k || distance < nearest[nearest.length - 1].distance) {
      nearest.push({ distance, label: reference.label });
      nearest.sort((a, b) => a.distance - b.distance);
      if (nearest.length > k) nearest.pop();
    }
  }
  const votes = new Map<string, { count: number; distance: number }>();
  for (const { label, distance } of nearest) {
    const vote = votes.get(label) ?? { count: 0, distance: 0 };
    vote.count++;
    vote.distance += Math.sqrt(distance);
    votes.set(label, vote);
  }
  return [...votes.entries()].sort((a, b) => b[1].count - a[1].count || a[1].distance - b[1].distance)[0][0];
}

/** Rows of `features.csv` (`key,label,pc_1..pc_k`). */
export function readFeaturesCsv(text: string): LabelledVector[] {
  const [header, ...rows] = parseCsv(text).filter((row) => row.length > 1 || row[0] !== '');
  if (!header) return [];
  const keyAt = header.indexOf('key');
  const labelAt = header.indexOf('label');
  const components = header.map((name, index) => (/^pc_?\d+$/i.test(name) ? index : -1)).filter((index) => index >= 0);
  if (keyAt < 0 || labelAt < 0 || components.length === 0) {
    throw new Error(`features.csv header must have key, label and pc_<n> columns, got: ${header.slice(0, 5).join(',')}...`);
  }
  return rows.map((row) => ({
    key: restoreTextField(row[keyAt]),
    label: restoreTextField(row[labelAt]),
    vector: Float64Array.from(components, (index) => Number(row[index])),
  }));
}
