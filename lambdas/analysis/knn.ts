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
import { AGGREGATE_SETTINGS } from '../contracts/handler-env';

export type Split = 'train' | 'test';

/** Neighbours that vote when nothing else is configured (the table's KNN_NEIGHBOURS default). */
export const DEFAULT_KNN_NEIGHBOURS = AGGREGATE_SETTINGS.knnNeighbours.default;

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
    const nearest = new NearestReferences(Math.min(k, this.count));
    this.offerNearest(query, nearest, options);
    return nearest.vote();
  }

  /**
   * Offers every reference to `nearest` as a neighbour of `query`, numbered from `firstIndex`:
   * references split in parts (read one after another) give the same neighbours, and so the same
   * vote, as one set holding them all in that order.
   */
  offerNearest(query: ArrayLike<number>, nearest: NearestReferences, options: { offset?: number; dims?: number; firstIndex?: number } = {}): void {
    const offset = options.offset ?? 0;
    const firstIndex = options.firstIndex ?? 0;
    const dims = Math.min(options.dims ?? this.dims, this.dims);
    const { vectors, dims: stride } = this;
    const q = new Float64Array(dims);
    for (let d = 0; d < dims; d++) q[d] = query[offset + d];
    for (let r = 0; r < this.count; r++) {
      const base = r * stride;
      // PCA components come in decreasing variance, so most of a distance is in the first ones: a
      // reference already as far as the k-th nearest is dropped early. Exact, not approximate:
      // partial sums of squares only grow, so such a reference would have been dropped anyway.
      const limit = nearest.limit;
      let distance = 0;
      for (let d = 0; d < dims; d++) {
        const diff = q[d] - vectors[base + d];
        distance += diff * diff;
        if ((d & 7) === 7 && distance >= limit) break;
      }
      if (distance < limit) nearest.offer(distance, firstIndex + r, this.labels[this.labelIndex[r]]);
    }
  }
}

/**
 * The k nearest references of one query met so far, ascending by squared distance; a reference
 * at the same distance as one already held goes after it (the one met first is kept).
 */
export class NearestReferences {
  readonly squaredDistances: Float64Array;
  readonly indices: Int32Array;
  readonly labels: string[] = [];
  private held = 0;

  constructor(readonly keep: number) {
    const size = Math.max(1, keep);
    this.squaredDistances = new Float64Array(size);
    this.indices = new Int32Array(size);
  }

  get size(): number {
    return this.held;
  }

  /** The squared distance a reference must be under to be kept. */
  get limit(): number {
    return this.held === this.squaredDistances.length ? this.squaredDistances[this.held - 1] : Number.POSITIVE_INFINITY;
  }

  offer(squaredDistance: number, index: number, label: string): void {
    if (squaredDistance >= this.limit) return;
    const { squaredDistances, indices, labels } = this;
    let at = this.held < squaredDistances.length ? this.held++ : this.held - 1;
    while (at > 0 && squaredDistances[at - 1] > squaredDistance) {
      squaredDistances[at] = squaredDistances[at - 1];
      indices[at] = indices[at - 1];
      labels[at] = labels[at - 1];
      at--;
    }
    squaredDistances[at] = squaredDistance;
    indices[at] = index;
    labels[at] = label;
  }

  /**
   * The majority label of the neighbours held; a tie in votes goes to the tied label whose voting
   * neighbours are nearest in total. Undefined when none is held.
   */
  vote(): KnnPrediction | undefined {
    if (this.held === 0) return undefined;
    // Votes in order of first appearance among the neighbours (nearest first).
    const voteLabels: string[] = [];
    const voteCount: number[] = [];
    const voteDistance: number[] = [];
    for (let n = 0; n < this.held; n++) {
      const label = this.labels[n];
      let v = voteLabels.indexOf(label);
      if (v < 0) {
        v = voteLabels.length;
        voteLabels.push(label);
        voteCount.push(0);
        voteDistance.push(0);
      }
      voteCount[v]++;
      voteDistance[v] += Math.sqrt(this.squaredDistances[n]);
    }
    let best = 0;
    for (let v = 1; v < voteLabels.length; v++) {
      if (voteCount[v] > voteCount[best] || (voteCount[v] === voteCount[best] && voteDistance[v] < voteDistance[best])) best = v;
    }
    return { label: voteLabels[best], distance: Math.sqrt(this.squaredDistances[0]), nearest: this.indices[0] };
  }
}
