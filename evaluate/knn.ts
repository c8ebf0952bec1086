/**
 * k-nearest-neighbours accuracy of a feature table: how well the principal components separate
 * the labels, for the local run's summary, the tests and the benchmarks. The classifier itself and
 * the split rule (`splitOfKey`: `Training/` references, `Test/` queries) are lambdas/analysis/knn.ts's,
 * the same the aggregate step classifies with.
 */
// The modules themselves, not the outputs and analysis faces: those load the Parquet writer, Vega
// and the native kernels (onnxruntime-node), which scoring a feature table does not need.
import { restoreTextField } from '../lambdas/outputs/features-csv';
import { DEFAULT_KNN_NEIGHBOURS, KnnReferences, Split, splitOfKey } from '../lambdas/analysis/knn';
import { parseCsv } from './csv';

export { splitOfKey, type Split } from '../lambdas/analysis/knn';

export interface LabelledVector {
  readonly key: string;
  readonly label: string;
  readonly vector: ArrayLike<number>;
}

export interface KnnResult {
  readonly k: number;
  /** The run's classifier as report.json names it (`LDA`, `5-NN`), when the aggregate scored the run. */
  readonly classifier?: string;
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
  const k = options.k ?? DEFAULT_KNN_NEIGHBOURS;
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
 * Accuracy of the one k-NN classifier (`KnnReferences` in lambdas/analysis/knn.ts, which the aggregate
 * step classifies with): each query gets the majority label of its k nearest references
 * (Euclidean distance over the first `dims` components), a tie in votes going to the tied label
 * whose voting neighbours are nearest in total. Nothing is scored without references.
 */
export function scoreKnn(
  references: readonly { label: string; vector: ArrayLike<number> }[],
  queries: readonly { label: string; vector: ArrayLike<number> }[],
  options: { k?: number; dims?: number } = {},
): { correct: number; scored: number } {
  if (references.length === 0) return { correct: 0, scored: 0 };
  const k = options.k ?? DEFAULT_KNN_NEIGHBOURS;
  const dims = Math.min(options.dims ?? Number.POSITIVE_INFINITY, references[0].vector.length);
  const index = new KnnReferences(dims, references.length, 'float64');
  for (const reference of references) index.add(reference.label, reference.vector);
  let correct = 0;
  for (const query of queries) {
    if (index.predict(query.vector, k)?.label === query.label) correct++;
  }
  return { correct, scored: queries.length };
}

/** Rows of `features.csv` (`key,label,split,pc_1..pc_k`; the split column is optional). */
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
