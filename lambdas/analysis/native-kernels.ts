/**
 * The analysis's heavy products on onnxruntime-node (kernel-graphs.ts), with the float64
 * bookkeeping around them in plain code:
 *
 * - moments: a block of rows -> its count, mean and centred scatter (one GEMM per block), blocks
 *   and groups merged with Chan et al.'s pairwise formula, so a map child's partial moments and the
 *   merged ones of a whole run are computed the same way;
 * - projection: standardise a block of rows and project it on the PCA components (one GEMM);
 * - nearest neighbours: squared distances of a block of queries to a part of the references as one
 *   GEMM plus TopK, candidates re-ranked with exact float64 distances (the classifier's own
 *   arithmetic, knn.ts), the lists of several reference parts merged into one, and the
 *   classifier's vote over them.
 *
 * Pure: no AWS. Every kernel is asynchronous because onnxruntime-node's `run` is; the work itself
 * runs on the calling thread.
 */
import type { KnnPrediction } from './knn';
import type { FeatureMoments, PcaFit } from './streaming-pca';
import { float64Of, KernelOptions, KernelPrecision, kernelSession, ort, scatterStripsSession, tensorOf } from './kernel-graphs';
import { emptyPackedMoments, mergePackedMomentsInto, packedCount, PackedMoments, unpackMoments } from './packed-moments';

export { DEFAULT_INTRA_OP_THREADS } from './kernel-graphs';
export type { KernelOptions, KernelPrecision } from './kernel-graphs';

/** `rows` row-major vectors of `dims` values (a shard's `vectors`, or a slice of them). */
export interface RowBlock<T extends Float32Array | Float64Array = Float32Array> {
  readonly data: T;
  readonly rows: number;
  readonly dims: number;
}

function checkBlock(block: RowBlock<Float32Array | Float64Array>, what: string): void {
  const { rows, dims, data } = block;
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(dims) || dims < 1) throw new RangeError(`${what}: ${rows} x ${dims} is not a block shape`);
  if (data.length < rows * dims) throw new RangeError(`${what}: ${data.length} values cannot hold ${rows} x ${dims}`);
}

/** The first `rows * dims` values of `block` as a tensor of exactly that size. */
function rowsTensor(block: RowBlock<Float32Array>): ort.Tensor {
  const size = block.rows * block.dims;
  return new ort.Tensor('float32', block.data.length === size ? block.data : block.data.subarray(0, size), [block.rows, block.dims]);
}

// ---------------------------------------------------------------------------------------------
// Moments

/** Feature strips of the scatter's product (`scatterStripsSession`): 8 does 56% of the full product's work. */
const SCATTER_STRIPS = 8;
/** Rows and features per tile of the transposition: two 64 x 64 tiles stay in the first-level cache. */
const TRANSPOSE_TILE = 64;

/**
 * Arrays a caller that computes the moments of block after block hands `blockPackedMoments` to
 * fill again, instead of allocating 11 MB (a block of 2,048 x 1,376 centred values) and 7.6 MB
 * (its packed moments) per block: the product has run, and the packed moments been merged, before
 * the next block uses them. `centred` holds at least rows x dims values of the precision.
 */
interface MomentsScratch {
  readonly centred: Float32Array | Float64Array;
  readonly packed: PackedMoments;
}

/**
 * Count, mean and centred scatter (sum of (x - mean)(x - mean)^T, float64) of one block of rows.
 * The block is centred on its own mean in float64 before the product, so the scatter does not
 * suffer the cancellation of `sum x x^T - n mean mean^T`; with `precision: 'float32'` only the
 * product itself is single precision. The product computes the upper block triangle only
 * (`scatterStripsSession`) and mirrors it, so the scatter is exactly symmetric.
 *
 * @example
 * const m = await blockMoments({ data: Float32Array.of(1, 2, 3, 4), rows: 2, dims: 2 });
 * // m.count 2, m.mean [2, 3], m.scatter [2, 2, 2, 2]
 */
export async function blockMoments(block: RowBlock, options: KernelOptions = {}): Promise<FeatureMoments> {
  checkBlock(block, 'blockMoments');
  const { rows, dims } = block;
  if (rows === 0) return emptyMoments(dims);
  return unpackMoments(await blockPackedMoments(block, options));
}

/**
 * A block's count, mean and centred scatter, packed (packed-moments.ts): the product gives the
 * scatter's upper triangle in strips (part i: rows `starts[i]` .. `starts[i + 1] - 1`, `dims -
 * starts[i]` values each from column `starts[i]`), and each row is taken from its diagonal on.
 */
async function blockPackedMoments(block: RowBlock, options: KernelOptions, scratch?: MomentsScratch): Promise<PackedMoments> {
  const { rows, dims } = block;
  const precision = options.precision ?? 'float64';
  const mean = columnMeans(block);
  const centred = centredTransposed(block, mean, precision, scratch?.centred);
  const strips = Math.min(SCATTER_STRIPS, dims);
  const starts = Array.from({ length: strips + 1 }, (_, i) => Math.floor((i * dims) / strips));
  const feeds: Record<string, ort.Tensor> = {};
  for (let i = 0; i < strips; i++) {
    const [first, end] = [starts[i], starts[i + 1]];
    feeds[`strip${i}`] = new ort.Tensor(precision, centred.subarray(first * rows, end * rows), [end - first, rows]);
    feeds[`tail${i}`] = new ort.Tensor(precision, centred.subarray(first * rows, dims * rows), [dims - first, rows]);
  }
  const result = await (await scatterStripsSession(strips, options)).run(feeds);
  // Every value of the packed moments is written below: count, dim, mean and the whole triangle.
  const packed = scratch?.packed ?? emptyPackedMoments(dims);
  packed[0] = rows;
  packed.set(mean, 2);
  let at = 2 + dims;
  for (let i = 0; i < strips; i++) {
    const part = result[`part${i}`].data as Float32Array | Float64Array;
    const tail = dims - starts[i];
    for (let r = 0; r < starts[i + 1] - starts[i]; r++) {
      packed.set(part.subarray(r * tail + r, (r + 1) * tail), at);
      at += tail - r;
    }
  }
  return packed;
}

/** The mean of each feature over the block's rows, summed in float64 in row order. */
function columnMeans({ data, rows, dims }: RowBlock): Float64Array {
  const mean = new Float64Array(dims);
  for (let r = 0; r < rows; r++) {
    const offset = r * dims;
    for (let f = 0; f < dims; f++) mean[f] += data[offset + f];
  }
  for (let f = 0; f < dims; f++) mean[f] /= rows;
  return mean;
}

/**
 * The block's rows less `mean`, in float64, stored transposed (`dims` rows of `rows` values) in
 * `precision`: the layout in which each strip of features is one contiguous range. Copied tile by
 * tile so that reads and writes both stay in cache.
 */
function centredTransposed(
  { data, rows, dims }: RowBlock,
  mean: Float64Array,
  precision: KernelPrecision,
  into?: Float32Array | Float64Array,
): Float32Array | Float64Array {
  const centred = into ? into.subarray(0, rows * dims) : floatArray(precision, rows * dims);
  for (let r0 = 0; r0 < rows; r0 += TRANSPOSE_TILE) {
    const r1 = Math.min(rows, r0 + TRANSPOSE_TILE);
    for (let f0 = 0; f0 < dims; f0 += TRANSPOSE_TILE) {
      const f1 = Math.min(dims, f0 + TRANSPOSE_TILE);
      for (let f = f0; f < f1; f++) {
        const m = mean[f];
        const out = f * rows;
        for (let r = r0; r < r1; r++) centred[out + r] = data[r * dims + f] - m;
      }
    }
  }
  return centred;
}

/** `length` zeros in `precision`'s array type. */
function floatArray(precision: KernelPrecision, length: number): Float32Array | Float64Array {
  return precision === 'float32' ? new Float32Array(length) : new Float64Array(length);
}

/** The moments of no rows: the identity of their merge. */
export function emptyMoments(dim: number): FeatureMoments {
  return { count: 0, dim, mean: new Float64Array(dim), scatter: new Float64Array(dim * dim) };
}

/** Rows per native block: 2,048 x 1,376 float64 is 22 MB inside onnxruntime, and the GEMM runs near its peak. */
export const DEFAULT_NATIVE_BLOCK_ROWS = 2048;

/**
 * `ScatterAccumulator`'s job on the native kernel: rows in, shard by shard; `moments()` out. Blocks
 * are cut by row count, not by shard, so the result is the same however the rows are sharded.
 *
 * @example
 * const accumulator = new NativeScatterAccumulator(shard.header.dim);
 * await accumulator.addRows(shard.vectors, shard.header.keys.length);
 * const { count, mean, scatter } = await accumulator.moments();
 */
export class NativeScatterAccumulator {
  readonly dim: number;
  readonly blockRows: number;
  private readonly block: Float32Array;
  /** The flushed blocks' moments, packed: the upper triangle of the scatter. */
  private readonly total: PackedMoments;
  private buffered = 0;
  private readonly scratch: MomentsScratch;

  constructor(
    dim: number,
    private readonly options: KernelOptions & { blockRows?: number } = {},
  ) {
    const blockRows = options.blockRows ?? DEFAULT_NATIVE_BLOCK_ROWS;
    if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`feature dimension must be a positive integer, got ${dim}`);
    if (!Number.isInteger(blockRows) || blockRows < 1) throw new RangeError(`blockRows must be a positive integer, got ${blockRows}`);
    this.dim = dim;
    this.blockRows = blockRows;
    this.block = new Float32Array(blockRows * dim);
    this.total = emptyPackedMoments(dim);
    const size = blockRows * dim;
    this.scratch = { centred: floatArray(options.precision ?? 'float64', size), packed: emptyPackedMoments(dim) };
  }

  /** Rows seen so far (buffered ones included). */
  get rows(): number {
    return packedCount(this.total) + this.buffered;
  }

  /** Adds `vector[offset .. offset + dim)` as one row (in float32, as every row of the block). */
  async addRow(vector: ArrayLike<number>, offset = 0): Promise<void> {
    const { dim } = this;
    if (vector.length < offset + dim) throw new RangeError(`addRow: ${vector.length} values hold no row of ${dim} at ${offset}`);
    const start = this.buffered * dim;
    for (let f = 0; f < dim; f++) this.block[start + f] = vector[offset + f];
    this.buffered++;
    if (this.buffered === this.blockRows) await this.flush();
  }

  /** Adds the first `rows` rows of a row-major `rows x dim` array. */
  async addRows(vectors: Float32Array, rows: number): Promise<void> {
    const { dim, blockRows } = this;
    if (vectors.length < rows * dim) throw new RangeError(`addRows: ${vectors.length} values cannot hold ${rows} x ${dim}`);
    let row = 0;
    while (row < rows) {
      const take = Math.min(rows - row, blockRows - this.buffered);
      this.block.set(vectors.subarray(row * dim, (row + take) * dim), this.buffered * dim);
      this.buffered += take;
      row += take;
      if (this.buffered === blockRows) await this.flush();
    }
  }

  /** The moments of every row added so far (flushes the partial block). */
  async moments(): Promise<FeatureMoments> {
    return unpackMoments(await this.packedMoments());
  }

  /** The same moments packed (packed-moments.ts), as the moments stage writes them: a copy. */
  async packedMoments(): Promise<PackedMoments> {
    await this.flush();
    return this.total.slice();
  }

  private async flush(): Promise<void> {
    if (this.buffered === 0) return;
    mergePackedMomentsInto(this.total, await blockPackedMoments({ data: this.block, rows: this.buffered, dims: this.dim }, this.options, this.scratch));
    this.buffered = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Projection

/**
 * `PcaProjector`'s job on the native kernel: ((x - mean) / scale) . component for every row of a
 * block and every kept component, as one product with 1/scale folded into the weights. In float64
 * (the default) the scores agree with `PcaProjector` to rounding (~1e-13 relative).
 *
 * @example
 * const projector = new NativeProjector(fit);
 * const scores = await projector.projectRows({ data: shard.vectors, rows, dims: fit.dim }); // rows x k
 */
export class NativeProjector {
  readonly k: number;
  readonly dim: number;
  private readonly mean: ort.Tensor;
  private readonly weights: ort.Tensor;

  constructor(
    fit: Pick<PcaFit, 'dim' | 'k' | 'mean' | 'scale' | 'components'>,
    private readonly options: KernelOptions = {},
  ) {
    const { dim, k } = fit;
    this.k = k;
    this.dim = dim;
    const weights = new Float64Array(dim * k);
    for (let c = 0; c < k; c++) {
      for (let f = 0; f < dim; f++) weights[f * k + c] = fit.components[c * dim + f] / fit.scale[f];
    }
    this.mean = new ort.Tensor('float64', Float64Array.from(fit.mean.subarray(0, dim)), [1, dim]);
    this.weights = tensorOf(weights, [dim, k], options.precision ?? 'float64');
  }

  /** Scores of the block's rows, row-major `rows x k`, float64. */
  async projectRows(block: RowBlock): Promise<Float64Array> {
    checkBlock(block, 'projectRows');
    if (block.dims !== this.dim) throw new RangeError(`projectRows: rows of ${block.dims} values, the fit has ${this.dim}`);
    if (block.rows === 0) return new Float64Array(0);
    const session = await kernelSession('project', this.options);
    const result = await session.run({ rows: rowsTensor(block), mean: this.mean, weights: this.weights });
    return float64Of(result.scores);
  }
}

// ---------------------------------------------------------------------------------------------
// Nearest neighbours

/**
 * The k nearest references of each query: `indices[q * k + j]` is the j-th nearest (global
 * reference index), `distances[q * k + j]` its squared Euclidean distance in float64, in the order
 * the classifier uses (distance ascending, then the reference added first). Fewer than k
 * references pad with index -1 and distance Infinity.
 */
export interface NeighbourLists {
  readonly queries: number;
  readonly k: number;
  readonly indices: Int32Array;
  readonly distances: Float64Array;
}

export interface NeighbourSearchOptions extends KernelOptions {
  /** Global index of this part's first reference, so lists of several parts can be merged. @default 0 */
  readonly offset?: number;
  /** Queries per product: 256 queries x 53,000 references is a 54 MB float32 distance block. @default 256 */
  readonly queryBlockRows?: number;
  /** Candidates fetched beyond k for the exact re-ranking. @default 8 */
  readonly extraCandidates?: number;
}

/** Unit roundoff of the product's precision. */
const UNIT_ROUNDOFF = { float32: 2 ** -24, float64: 2 ** -53 } as const;

/**
 * Brute-force k nearest neighbours of one part of the references, on the native kernel.
 *
 * Each block of queries costs one GEMM (`-2 q r^T + ||r||^2`: the squared distances less ||q||^2,
 * which does not change a query's order) and a TopK of k + extra candidates. The candidates' distances are then recomputed exactly in float64, as knn.ts computes
 * them (the references are float32, the queries taken as given), and sorted by (distance, index).
 * The result is exact, not approximate: a reference outside the candidates has an approximate
 * distance at least the last candidate's, and the product's rounding error is bounded by
 * (dims + 5) u (||q|| + ||r||)^2 (u the unit roundoff, the norms' and the query's rounding
 * included); when the k-th exact distance is not below the last candidate's minus that bound, the
 * query is searched again in plain float64 (`fallbacks` counts those).
 *
 * @example
 * const search = new NativeNeighbourSearch({ data: references, rows: 53_000, dims: 100 });
 * const { indices, distances } = await search.search({ data: queries, rows: 17_000, dims: 100 }, 5);
 */
export class NativeNeighbourSearch {
  /** Queries that needed the exact float64 pass, over every `search` so far. */
  fallbacks = 0;
  private readonly references: RowBlock;
  private readonly referenceTensor: ort.Tensor;
  private readonly normsTensor: ort.Tensor;
  private readonly largestNorm: number;
  private readonly offset: number;
  private readonly queryBlockRows: number;
  private readonly extraCandidates: number;

  constructor(
    references: RowBlock,
    private readonly options: NeighbourSearchOptions = {},
  ) {
    checkBlock(references, 'NativeNeighbourSearch');
    this.references = references;
    this.offset = options.offset ?? 0;
    this.queryBlockRows = options.queryBlockRows ?? 256;
    this.extraCandidates = options.extraCandidates ?? 8;
    const precision = options.precision ?? 'float32';
    const { rows, dims, data } = references;
    const norms = squaredNorms(references);
    this.largestNorm = Math.sqrt(norms.reduce((largest, norm) => Math.max(largest, norm), 0));
    this.referenceTensor = tensorOf(data.subarray(0, rows * dims), [rows, dims], precision);
    this.normsTensor = tensorOf(norms, [1, rows], precision);
  }

  /** The k nearest references of each query of the block (see `NeighbourLists`). */
  async search(queries: RowBlock<Float32Array | Float64Array>, k: number): Promise<NeighbourLists> {
    checkBlock(queries, 'search');
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
    const { dims } = this.references;
    if (queries.dims !== dims) throw new RangeError(`search: queries of ${queries.dims} values, references of ${dims}`);
    const indices = new Int32Array(queries.rows * k).fill(-1);
    const distances = new Float64Array(queries.rows * k).fill(Number.POSITIVE_INFINITY);
    const lists = { queries: queries.rows, k, indices, distances };
    const referenceCount = this.references.rows;
    if (referenceCount === 0 || queries.rows === 0) return lists;

    const precision = this.options.precision ?? 'float32';
    const session = await kernelSession('nearest', { ...this.options, precision });
    const candidates = Math.min(referenceCount, k + this.extraCandidates);
    const count = new ort.Tensor('int64', BigInt64Array.of(BigInt(candidates)), [1]);
    const u = UNIT_ROUNDOFF[precision];
    const keep = Math.min(k, referenceCount);
    const exact = new Float64Array(candidates);
    const order = new Int32Array(candidates);

    for (let first = 0; first < queries.rows; first += this.queryBlockRows) {
      const rows = Math.min(this.queryBlockRows, queries.rows - first);
      const slice = queries.data.subarray(first * dims, (first + rows) * dims);
      const result = await session.run({
        queries: tensorOf(slice, [rows, dims], precision),
        references: this.referenceTensor,
        referenceNorms: this.normsTensor,
        count,
      });
      const approximate = result.values.data as Float32Array | Float64Array;
      const found = result.indices.data as BigInt64Array;
      for (let q = 0; q < rows; q++) {
        const query = first + q;
        const queryOffset = query * dims;
        let queryNorm = 0;
        for (let d = 0; d < dims; d++) queryNorm += queries.data[queryOffset + d] * queries.data[queryOffset + d];
        // Exact distances of the candidates, sorted by (distance, index).
        for (let c = 0; c < candidates; c++) {
          const reference = Number(found[q * candidates + c]);
          exact[c] = squaredDistance(queries.data, queryOffset, this.references.data, reference * dims, dims);
          order[c] = reference;
        }
        sortByDistanceThenIndex(exact, order, candidates);
        const bound = (dims + 5) * u * (Math.sqrt(queryNorm) + this.largestNorm) ** 2;
        // The kernel's values leave out ||q||^2, the same for every reference of the query.
        const last = approximate[q * candidates + candidates - 1] + queryNorm;
        const settled = candidates === referenceCount || exact[keep - 1] < last - bound;
        const base = query * k;
        if (settled) {
          for (let j = 0; j < keep; j++) {
            indices[base + j] = order[j] + this.offset;
            distances[base + j] = exact[j];
          }
        } else {
          this.fallbacks++;
          this.exactSearch(queries.data, queryOffset, keep, indices, distances, base);
        }
      }
    }
    return lists;
  }

  /** Plain float64 scan of every reference for one query (the rare query the bound cannot settle). */
  private exactSearch(query: ArrayLike<number>, queryOffset: number, keep: number, indices: Int32Array, distances: Float64Array, base: number): void {
    const { rows, dims, data } = this.references;
    let held = 0;
    for (let r = 0; r < rows; r++) {
      const distance = squaredDistance(query, queryOffset, data, r * dims, dims);
      if (held === keep && distance >= distances[base + keep - 1]) continue;
      let at = held < keep ? held++ : held - 1;
      while (at > 0 && distances[base + at - 1] > distance) {
        distances[base + at] = distances[base + at - 1];
        indices[base + at] = indices[base + at - 1];
        at--;
      }
      distances[base + at] = distance;
      indices[base + at] = r + this.offset;
    }
  }
}

/**
 * Each row of `rows`' nearest row of `centres`, as an index (the lower one among equals), in
 * float64 on the `nearest` graph: the distances in the product form ||c||^2 - 2 r.c (||r||^2 is the
 * same for every centre), one Gemm and a TopK of one. A k-means' assignment step; unlike
 * `NativeNeighbourSearch` it does not re-rank exactly, and needs no more.
 */
export async function nearestCentres(rows: RowBlock<Float64Array>, centres: RowBlock<Float64Array>): Promise<Int32Array> {
  checkBlock(rows, 'nearestCentres');
  checkBlock(centres, 'nearestCentres');
  if (rows.dims !== centres.dims) throw new RangeError(`nearestCentres: rows of ${rows.dims} values, centres of ${centres.dims}`);
  if (centres.rows === 0) throw new RangeError('nearestCentres: no centres');
  const nearest = new Int32Array(rows.rows);
  if (rows.rows === 0) return nearest;
  const { dims } = centres;
  const norms = squaredNorms(centres);
  const session = await kernelSession('nearest', { precision: 'float64' });
  const result = await session.run({
    queries: tensorOf(rows.data.subarray(0, rows.rows * dims), [rows.rows, dims], 'float64'),
    references: tensorOf(centres.data.subarray(0, centres.rows * dims), [centres.rows, dims], 'float64'),
    referenceNorms: tensorOf(norms, [1, centres.rows], 'float64'),
    count: new ort.Tensor('int64', BigInt64Array.of(1n), [1]),
  });
  const indices = result.indices.data as BigInt64Array;
  for (let r = 0; r < rows.rows; r++) nearest[r] = Number(indices[r]);
  return nearest;
}

/** Each row's squared Euclidean norm in float64, summed in dimension order: the `nearest` graph's `referenceNorms`. */
function squaredNorms({ data, rows, dims }: RowBlock<Float32Array | Float64Array>): Float64Array {
  const norms = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let d = 0; d < dims; d++) sum += data[r * dims + d] * data[r * dims + d];
    norms[r] = sum;
  }
  return norms;
}

/** Squared Euclidean distance in float64, summed in dimension order (as knn.ts sums it). */
function squaredDistance(a: ArrayLike<number>, aOffset: number, b: ArrayLike<number>, bOffset: number, dims: number): number {
  let sum = 0;
  for (let d = 0; d < dims; d++) {
    const diff = a[aOffset + d] - b[bOffset + d];
    sum += diff * diff;
  }
  return sum;
}

/** Insertion sort of the first `n` (distance, index) pairs: n is k + a few. */
function sortByDistanceThenIndex(distance: Float64Array, index: Int32Array, n: number): void {
  for (let i = 1; i < n; i++) {
    const dv = distance[i];
    const iv = index[i];
    let j = i - 1;
    while (j >= 0 && (distance[j] > dv || (distance[j] === dv && index[j] > iv))) {
      distance[j + 1] = distance[j];
      index[j + 1] = index[j];
      j--;
    }
    distance[j + 1] = dv;
    index[j + 1] = iv;
  }
}

/**
 * The k nearest over several reference parts (each searched with its own `offset`): per query, the
 * parts' lists merged by (distance, index). Equal to one search over all the references.
 *
 * @example
 * const lists = await Promise.all(parts.map((part) => part.search(queries, 5)));
 * const nearest = mergeNeighbourLists(lists);
 */
export function mergeNeighbourLists(parts: readonly NeighbourLists[]): NeighbourLists {
  if (parts.length === 0) throw new RangeError('mergeNeighbourLists needs at least one list');
  const { queries, k } = parts[0];
  for (const part of parts) {
    if (part.queries !== queries || part.k !== k) throw new RangeError(`cannot merge lists of ${part.queries} x ${part.k} with ${queries} x ${k}`);
  }
  const indices = new Int32Array(queries * k).fill(-1);
  const distances = new Float64Array(queries * k).fill(Number.POSITIVE_INFINITY);
  const cursor = new Int32Array(parts.length);
  for (let q = 0; q < queries; q++) {
    cursor.fill(0);
    for (let j = 0; j < k; j++) {
      let best = -1;
      for (let p = 0; p < parts.length; p++) {
        const at = q * k + cursor[p];
        if (cursor[p] >= k || parts[p].indices[at] < 0) continue;
        if (best < 0) {
          best = p;
          continue;
        }
        const here = parts[p].distances[at];
        const there = parts[best].distances[q * k + cursor[best]];
        if (here < there || (here === there && parts[p].indices[at] < parts[best].indices[q * k + cursor[best]])) best = p;
      }
      if (best < 0) break;
      indices[q * k + j] = parts[best].indices[q * k + cursor[best]];
      distances[q * k + j] = parts[best].distances[q * k + cursor[best]];
      cursor[best]++;
    }
  }
  return { queries, k, indices, distances };
}

/**
 * The classifier's vote over neighbour lists, with knn.ts's rule: the label most of a query's
 * neighbours carry; a tie goes to the tied label whose voting neighbours are nearest in total (sum
 * of distances), then to the one met first, nearest first. Gives what `KnnReferences.predict`
 * gives for the same references.
 *
 * @example
 * const predictions = voteNeighbours(mergeNeighbourLists(lists), referenceLabels, labelTable);
 * // predictions[q].label, .distance (to the nearest), .nearest (its index), .share (of the votes)
 */
export function voteNeighbours(lists: NeighbourLists, referenceLabels: Int32Array, labels: readonly string[]): (KnnPrediction & { share: number })[] {
  const { queries, k, indices, distances } = lists;
  const predictions: (KnnPrediction & { share: number })[] = [];
  const voteLabel = new Int32Array(k);
  const voteCount = new Int32Array(k);
  const voteDistance = new Float64Array(k);
  for (let q = 0; q < queries; q++) {
    let votes = 0;
    let voters = 0;
    for (let j = 0; j < k && indices[q * k + j] >= 0; j++, voters++) {
      const label = referenceLabels[indices[q * k + j]];
      let v = 0;
      while (v < votes && voteLabel[v] !== label) v++;
      if (v === votes) {
        voteLabel[v] = label;
        voteCount[v] = 0;
        voteDistance[v] = 0;
        votes++;
      }
      voteCount[v]++;
      voteDistance[v] += Math.sqrt(distances[q * k + j]);
    }
    if (votes === 0) throw new RangeError(`query ${q} has no neighbours to vote`);
    let best = 0;
    for (let v = 1; v < votes; v++) {
      if (voteCount[v] > voteCount[best] || (voteCount[v] === voteCount[best] && voteDistance[v] < voteDistance[best])) best = v;
    }
    predictions.push({ label: labels[voteLabel[best]], distance: Math.sqrt(distances[q * k]), nearest: indices[q * k], share: voteCount[best] / voters });
  }
  return predictions;
}
