/**
 * The one k-nearest-neighbours classifier: the aggregate step's classification, the run summary,
 * the benchmarks and the tests all vote through `KnnReferences.predict` (evaluate/knn.ts wraps it
 * for feature tables).
 *
 * A query gets the majority label of its k nearest references (Euclidean distance over the first
 * `dims` components). A tie in votes goes to the tied label whose voting neighbours are nearest in
 * total (sum of their distances); a tie in distance among the k-th neighbours keeps the reference
 * that was added first. Brute force: each query costs references x dims multiply-adds, which for
 * Fruits-360 (~67,000 Training images, k = 50 components) is ~3.4 M per Test image.
 *
 * Split by key path, as Fruits-360 ships it: an image under a `Training/` (or `Train/`) folder is
 * a reference, one under `Test/` (or `Testing/`, `Validation/`) is scored against them.
 */

export type Split = 'train' | 'test';

/** Neighbours that vote when nothing else is configured. */
export const DEFAULT_KNN_NEIGHBOURS = 5;

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

export interface KnnPrediction {
  /** The voted label. */
  readonly label: string;
  /** Euclidean distance to the nearest reference. */
  readonly distance: number;
  /** Index (in the order added) of the nearest reference. */
  readonly nearest: number;
}

/**
 * Reference vectors packed in one typed array (`float32` keeps 100,000 x 50 components in 20 MB),
 * labels as indices into a label table. Capacity is fixed up front: the caller knows how many
 * references it will add.
 */
export class KnnReferences {
  private readonly vectors: Float32Array | Float64Array;
  private readonly labelIndex: Int32Array;
  private readonly labels: string[] = [];
  private readonly labelIds = new Map<string, number>();
  private count = 0;

  constructor(
    readonly dims: number,
    readonly capacity: number,
    storage: 'float32' | 'float64' = 'float32',
  ) {
    this.vectors = storage === 'float32' ? new Float32Array(dims * capacity) : new Float64Array(dims * capacity);
    this.labelIndex = new Int32Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** The labels seen, in order of first appearance. */
  get labelTable(): readonly string[] {
    return this.labels;
  }

  /** Adds `vector[offset .. offset + dims)` with its label. */
  add(label: string, vector: ArrayLike<number>, offset = 0): void {
    if (this.count >= this.capacity) throw new RangeError(`KnnReferences holds at most ${this.capacity} references`);
    let id = this.labelIds.get(label);
    if (id === undefined) {
      id = this.labels.length;
      this.labels.push(label);
      this.labelIds.set(label, id);
    }
    const base = this.count * this.dims;
    for (let d = 0; d < this.dims; d++) this.vectors[base + d] = vector[offset + d];
    this.labelIndex[this.count] = id;
    this.count++;
  }

  /** The label and vector of reference `index`. */
  reference(index: number): { label: string; vector: Float32Array | Float64Array } {
    return { label: this.labels[this.labelIndex[index]], vector: this.vectors.subarray(index * this.dims, (index + 1) * this.dims) };
  }

  /**
   * The vote of the `k` nearest references for `query[offset .. offset + dims)`, over its first
   * `dims` components (at most the references' own). Undefined without references.
   */
  predict(query: ArrayLike<number>, k: number = DEFAULT_KNN_NEIGHBOURS, options: { offset?: number; dims?: number } = {}): KnnPrediction | undefined {
    if (this.count === 0) return undefined;
    const offset = options.offset ?? 0;
    const dims = Math.min(options.dims ?? this.dims, this.dims);
    const keep = Math.max(1, Math.min(k, this.count));
    // The k nearest so far, ascending; an equal distance goes after the ones already held.
    const nearestDistance = new Float64Array(keep);
    const nearestIndex = new Int32Array(keep);
    let held = 0;
    const { vectors, dims: stride } = this;
    const q = new Float64Array(dims);
    for (let d = 0; d < dims; d++) q[d] = query[offset + d];
    for (let r = 0; r < this.count; r++) {
      const base = r * stride;
      // PCA components come in decreasing variance, so most of a distance is in the first ones: a
      // reference already as far as the k-th nearest is dropped early. Exact, not approximate:
      // partial sums of squares only grow, so such a reference would have been dropped anyway.
      const limit = held === keep ? nearestDistance[held - 1] : Number.POSITIVE_INFINITY;
      let distance = 0;
      for (let d = 0; d < dims; d++) {
        const diff = q[d] - vectors[base + d];
        distance += diff * diff;
        if ((d & 7) === 7 && distance >= limit) break;
      }
      if (distance >= limit) continue;
      let at = held < keep ? held++ : held - 1;
      while (at > 0 && nearestDistance[at - 1] > distance) {
        nearestDistance[at] = nearestDistance[at - 1];
        nearestIndex[at] = nearestIndex[at - 1];
        at--;
      }
      nearestDistance[at] = distance;
      nearestIndex[at] = r;
    }
    // Votes in order of first appearance among the neighbours (nearest first).
    const voteLabels: number[] = [];
    const voteCount: number[] = [];
    const voteDistance: number[] = [];
    for (let n = 0; n < held; n++) {
      const label = this.labelIndex[nearestIndex[n]];
      let v = voteLabels.indexOf(label);
      if (v < 0) {
        v = voteLabels.length;
        voteLabels.push(label);
        voteCount.push(0);
        voteDistance.push(0);
      }
      voteCount[v]++;
      voteDistance[v] += Math.sqrt(nearestDistance[n]);
    }
    let best = 0;
    for (let v = 1; v < voteLabels.length; v++) {
      if (voteCount[v] > voteCount[best] || (voteCount[v] === voteCount[best] && voteDistance[v] < voteDistance[best])) best = v;
    }
    return { label: this.labels[voteLabels[best]], distance: Math.sqrt(nearestDistance[0]), nearest: nearestIndex[0] };
  }
}
