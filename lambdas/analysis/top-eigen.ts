/**
 * The top k eigenpairs of a symmetric positive semi-definite matrix (a covariance or correlation
 * matrix) without the full decomposition: Chebyshev-filtered subspace iteration with
 * Rayleigh-Ritz, every d x d product on onnxruntime in float64 (kernel-graphs.ts), the small
 * projected problem solved by ml-matrix's EigenvalueDecomposition (the solver ml-pca uses).
 *
 * A block of l = k + oversampling vectors starts as A times a seeded Gaussian block. Each
 * iteration projects A on the block (Rayleigh-Ritz: Ritz values theta and vectors V), checks the
 * residuals r_i = ||A v_i - theta_i v_i||, and, until they are small enough, applies a Chebyshev
 * polynomial of A that damps [0, theta_l] (the unwanted end) and grows everything above it, then
 * re-orthonormalises (Cholesky QR, shifted when the block is ill-conditioned). The leading pairs
 * already accepted are locked: kept as they are, and taken out of the matrix the filter applies
 * (A - sum theta_c v_c v_c^T), so the filter's degree, capped by the spread of the values it grows,
 * is set by the pairs still converging, not by the largest eigenvalue. On a correlation whose top
 * eigenvalue is 100 times its 300th this halves the iterations' cost; on a flat tail under a steep
 * head it converges where the filter held to a low degree did not (top-eigen.test.ts). The locked
 * pairs also stay out of the next Rayleigh-Ritz (the block is kept orthogonal to them), so its
 * small decomposition, in JavaScript, shrinks as pairs converge: at k = 300 on the whole dataset's
 * correlation the decompositions take 375, 375, 361, 247 and 92 columns instead of five of 375.
 *
 * Accuracy is checked, not assumed: a pair is accepted when r_i <= tolerance x gap_i, gap_i being
 * its distance to the neighbouring Ritz values less their own residuals; then the angle between v_i
 * and the true eigenvector is at most r_i / gap_i (Davis-Kahan) and theta_i is within
 * r_i^2 / gap_i of the eigenvalue. A residual at the float64 floor of the products
 * (64 sqrt(d) u theta_1) is accepted whatever the gap: no solver does better on such a pair. If
 * the iteration does not get there within `maxIterations`, the full decomposition answers instead
 * (`method: 'full'`).
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { columnRange, spreadSeed, xorshiftUniform } from '../common';
import { float64Of, KernelOptions, kernelSession, matrixProduct, ort } from './kernel-graphs';

export interface TopEigenOptions extends Pick<KernelOptions, 'intraOpNumThreads'> {
  /** Eigenpairs wanted. */
  readonly k: number;
  /** Block vectors beyond k: more converge faster per iteration but cost more per product. @default max(10, ceil(k / 4)) */
  readonly oversampling?: number;
  /** Largest accepted r_i / gap_i, a bound on each eigenvector's angle error. @default 1e-9 */
  readonly tolerance?: number;
  /** Rayleigh-Ritz iterations before falling back to the full decomposition. @default 30 */
  readonly maxIterations?: number;
  /** Highest Chebyshev degree per iteration. @default 16 */
  readonly maxDegree?: number;
  /** Seed of the starting block. @default 1 */
  readonly seed?: number;
}

export interface TopEigenResult {
  readonly dim: number;
  readonly k: number;
  /** The k largest eigenvalues, descending. */
  readonly values: Float64Array;
  /** k x dim row-major unit eigenvectors, each signed so its largest-magnitude entry is positive (as fitPca). */
  readonly vectors: Float64Array;
  /** Trace of the matrix: the sum of all its eigenvalues (the denominator of explained variance ratios). */
  readonly trace: number;
  /** ||A v_i - lambda_i v_i|| of each returned pair. */
  readonly residuals: Float64Array;
  /** Bound on each eigenvector's angle error (r_i / gap_i; 0 for the full decomposition). */
  readonly angleBounds: Float64Array;
  readonly method: 'subspace' | 'full';
  /** Rayleigh-Ritz iterations run. */
  readonly iterations: number;
  /** Products of A with the block (each dim x dim x l). */
  readonly products: number;
}

const UNIT_ROUNDOFF = 2 ** -53;
/** Cap on the growth ratio between the largest and the k-th Ritz value a filter may cause in one iteration. */
const MAX_FILTER_GROWTH = 1e14;

/**
 * The top `k` eigenpairs of the symmetric PSD matrix `matrix` (ml-matrix `Matrix`, or a
 * row-major Float64Array of dim x dim).
 *
 * @example
 * const { correlation } = standardisedCorrelation(moments);
 * const top = await topEigen(correlation, { k: 100 });
 * const ratios = top.values.map((value) => value / top.trace);
 */
export async function topEigen(matrix: Matrix | Float64Array, options: TopEigenOptions): Promise<TopEigenResult> {
  const { data: a, dim: d } = rowMajor(matrix);
  const k = options.k;
  if (!Number.isInteger(k) || k < 1 || k > d) throw new RangeError(`k must be an integer in [1, ${d}], got ${k}`);
  // At least one vector beyond k: the k-th pair's gap is measured against the next Ritz value.
  const l = Math.min(d, k + Math.max(1, options.oversampling ?? Math.max(10, Math.ceil(k / 4))));
  const tolerance = options.tolerance ?? 1e-9;
  const maxIterations = options.maxIterations ?? 30;
  const maxDegree = options.maxDegree ?? 16;
  let trace = 0;
  for (let i = 0; i < d; i++) trace += a[i * d + i];
  if (l >= d) return fullDecomposition(a, d, k, trace, 0, 0);

  const products = new Products(a, d, options.intraOpNumThreads);
  let iteration = 0;
  try {
    // Pairs kept out of the next Rayleigh-Ritz; the block q holds the columns beyond them.
    let locked = NO_LOCKED_PAIRS;
    let q = await orthonormalise(await products.times(gaussianBlock(d, l, options.seed ?? 1), l), d, l, products);
    for (iteration = 1; iteration <= maxIterations; iteration++) {
      const active = await rayleighRitz(q, d, l - locked.count, k - locked.count, products, locked);
      const ritz = withLockedPairs(locked, active, d);
      const check = convergence(ritz, d, k, tolerance);
      if (check.converged) return result(ritz, d, k, trace, check.angleBounds, 'subspace', iteration, products.count);
      // Lock the leading pairs accepted so far: the filter works on the other columns, with them deflated.
      const accepted = lockedPairs(check.worstNeed);
      if (accepted !== products.deflatedPairs) await products.deflate(ritz.vectors, ritz.values, l, accepted);
      const degree = filterDegree(ritz.values, k, l, check.worstNeed, maxDegree, accepted);
      const filtered = await chebyshevFilter(columnRange(ritz.vectors, d, l, accepted, l), d, l - accepted, ritz.values.subarray(accepted), degree, products);
      // They stay out of the next Rayleigh-Ritz too, unless what their own residuals leave in the
      // first pair still converging is most of its residual (or an acceptance was taken back):
      // then the next one takes the whole block, and their vectors are refined with it.
      const floored = accepted < locked.count || (locked.count > 0 && active.lockedShare[accepted - locked.count] > LOCKED_SHARE_LIMIT);
      if (floored) {
        locked = NO_LOCKED_PAIRS;
        q = await orthonormalise(withColumns(ritz.vectors, d, l, accepted, filtered), d, l, products);
      } else {
        locked = leadingPairs(ritz, d, accepted);
        q = await orthonormalise(filtered, d, l - accepted, products, locked);
      }
    }
  } catch (error) {
    // A matrix of rank below the block's width (few rows, many identical features): whole.
    if (!(error instanceof RankDeficientBlockError)) throw error;
  }
  return fullDecomposition(a, d, k, trace, Math.min(iteration, maxIterations), products.count);
}

function rowMajor(matrix: Matrix | Float64Array): { data: Float64Array; dim: number } {
  if (matrix instanceof Float64Array) {
    const dim = Math.round(Math.sqrt(matrix.length));
    if (dim * dim !== matrix.length) throw new RangeError(`a square matrix needs a square number of values, got ${matrix.length}`);
    return { data: matrix, dim };
  }
  if (!matrix.isSquare()) throw new RangeError(`a square matrix is needed, got ${matrix.rows} x ${matrix.columns}`);
  const dim = matrix.rows;
  const data = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) for (let j = 0; j < dim; j++) data[i * dim + j] = matrix.get(i, j);
  return { data, dim };
}

/** The products the iteration needs, on onnxruntime in float64; counts those with A. */
class Products {
  count = 0;
  private readonly a: ort.Tensor;
  /** What the filter multiplies by: A less the locked pairs (Hotelling deflation), or A itself. */
  private filtered: ort.Tensor;
  /** Pairs taken out of `filtered`. */
  deflatedPairs = 0;
  private readonly options: KernelOptions;

  constructor(
    private readonly matrix: Float64Array,
    private readonly d: number,
    intraOpNumThreads: number | undefined,
  ) {
    this.a = new ort.Tensor('float64', matrix, [d, d]);
    this.filtered = this.a;
    this.options = { precision: 'float64', intraOpNumThreads };
  }

  /**
   * The filter's matrix becomes A - sum_{c < pairs} theta_c v_c v_c^T, v_c the columns of the d x l
   * block `vectors`: the locked pairs' eigenvalues fall to about their residuals, inside the damped
   * interval, so the filter no longer grows their directions in what it works on.
   */
  async deflate(vectors: Float64Array, values: Float64Array, l: number, pairs: number): Promise<void> {
    const { d } = this;
    this.deflatedPairs = pairs;
    if (pairs === 0) {
      this.filtered = this.a;
      return;
    }
    const scaled = new Float64Array(d * pairs);
    const transposed = new Float64Array(pairs * d);
    for (let r = 0; r < d; r++) {
      for (let c = 0; c < pairs; c++) {
        scaled[r * pairs + c] = vectors[r * l + c] * values[c];
        transposed[c * d + r] = vectors[r * l + c];
      }
    }
    const outer = await this.matmul(scaled, d, pairs, transposed, d);
    const deflated = new Float64Array(d * d);
    for (let i = 0; i < deflated.length; i++) deflated[i] = this.matrix[i] - outer[i];
    this.filtered = new ort.Tensor('float64', deflated, [d, d]);
  }

  /** A x (d x columns). */
  async times(x: Float64Array, columns: number): Promise<Float64Array> {
    this.count++;
    const session = await kernelSession('matmul', this.options);
    const result = await session.run({ a: this.a, b: new ort.Tensor('float64', x, [this.d, columns]) });
    return float64Of(result.c);
  }

  /** alpha F y + beta y + gamma x, with y and x d x columns, F the filter's matrix (`deflate`). */
  async chebyshevStep(y: Float64Array, x: Float64Array, columns: number, alpha: number, beta: number, gamma: number): Promise<Float64Array> {
    this.count++;
    const session = await kernelSession('chebyshevStep', this.options);
    const scalar = (value: number) => new ort.Tensor('float64', Float64Array.of(value), [1]);
    const result = await session.run({
      a: this.filtered,
      y: new ort.Tensor('float64', y, [this.d, columns]),
      x: new ort.Tensor('float64', x, [this.d, columns]),
      alpha: scalar(alpha),
      beta: scalar(beta),
      gamma: scalar(gamma),
    });
    return float64Of(result.z);
  }

  /** (rows x inner) times (inner x columns). */
  matmul(x: Float64Array, rows: number, inner: number, y: Float64Array, columns: number): Promise<Float64Array> {
    return matrixProduct(x, rows, inner, y, columns, this.options);
  }

  /** x^T y for x (rows x p) and y (rows x q). */
  async innerProducts(x: Float64Array, p: number, y: Float64Array, q: number, rows: number): Promise<Float64Array> {
    const session = await kernelSession('innerProducts', this.options);
    const result = await session.run({ a: new ort.Tensor('float64', x, [rows, p]), b: new ort.Tensor('float64', y, [rows, q]) });
    return float64Of(result.c);
  }
}

/** d x l standard normal values from a seeded xorshift generator (Box-Muller). */
function gaussianBlock(d: number, l: number, seed: number): Float64Array {
  const uniform = xorshiftUniform(spreadSeed(seed));
  const block = new Float64Array(d * l);
  for (let i = 0; i < block.length; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    block[i] = radius * Math.cos(angle);
    if (i + 1 < block.length) block[i + 1] = radius * Math.sin(angle);
  }
  return block;
}

/** Cholesky-QR passes at most: two make a well-conditioned block orthonormal to rounding. */
const MAX_ORTHONORMALISE_PASSES = 4;

/** The block spans fewer directions than its width (the matrix's rank is below k + oversampling). */
class RankDeficientBlockError extends Error {
  override readonly name = 'RankDeficientBlockError';
}

/**
 * An orthonormal basis of the columns of y (d x l, full column rank assumed), orthogonal to the
 * locked pairs' vectors: columns scaled to unit length, then, twice, the locked directions taken
 * out and a Cholesky QR pass; three times, with a shifted first pass, when the Gram matrix is too
 * ill-conditioned to factor (shifted CholeskyQR3, Fukaya et al. 2020).
 */
async function orthonormalise(y: Float64Array, d: number, l: number, products: Products, locked: LockedPairs = NO_LOCKED_PAIRS): Promise<Float64Array> {
  for (let c = 0; c < l; c++) {
    let sum = 0;
    for (let r = 0; r < d; r++) sum += y[r * l + c] * y[r * l + c];
    const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
    for (let r = 0; r < d; r++) y[r * l + c] *= scale;
  }
  let passes = 2;
  for (let pass = 0; pass < passes; pass++) {
    if (locked.count > 0) y = await withoutLockedDirections(y, d, l, locked, products);
    const gram = await products.innerProducts(y, l, y, l, d);
    let factor = cholesky(gram, l, 0);
    if (!factor) {
      let norm = 0;
      for (let i = 0; i < l; i++) norm += gram[i * l + i];
      factor = cholesky(gram, l, 11 * (d * l + l * (l + 1)) * UNIT_ROUNDOFF * norm);
      if (!factor) throw new RankDeficientBlockError('orthonormalise: the block is rank-deficient even after a shift');
      // Once more after a shifted pass, and no more than that: a block wider than the matrix's rank
      // needs the shift on every pass, and topEigen then decomposes the matrix whole.
      if (pass + 1 >= MAX_ORTHONORMALISE_PASSES) throw new RankDeficientBlockError(`orthonormalise: still rank-deficient after ${pass + 1} passes`);
      passes = Math.max(passes, pass + 2);
    }
    y = await products.matmul(y, d, l, invertUpper(factor, l), l);
  }
  return y;
}

/** Upper-triangular R with R^T R = g + shift I, or undefined when a pivot is not positive. */
function cholesky(g: Float64Array, n: number, shift: number): Float64Array | undefined {
  const r = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let pivot = g[j * n + j] + shift;
    for (let p = 0; p < j; p++) pivot -= r[p * n + j] * r[p * n + j];
    if (!(pivot > 0)) return undefined;
    const rjj = Math.sqrt(pivot);
    r[j * n + j] = rjj;
    for (let i = j + 1; i < n; i++) {
      let sum = g[j * n + i];
      for (let p = 0; p < j; p++) sum -= r[p * n + j] * r[p * n + i];
      r[j * n + i] = sum / rjj;
    }
  }
  return r;
}

/** The inverse of an upper-triangular n x n matrix (upper-triangular too). */
function invertUpper(r: Float64Array, n: number): Float64Array {
  const inverse = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    inverse[j * n + j] = 1 / r[j * n + j];
    for (let i = j - 1; i >= 0; i--) {
      let sum = 0;
      for (let p = i + 1; p <= j; p++) sum += r[i * n + p] * inverse[p * n + j];
      inverse[i * n + j] = -sum / r[i * n + i];
    }
  }
  return inverse;
}

interface Ritz {
  /** l Ritz values, descending. */
  values: Float64Array;
  /** d x l Ritz vectors (columns, in the order of `values`). */
  vectors: Float64Array;
  /** ||A v_i - theta_i v_i|| of the first k + 1 pairs. */
  residuals: Float64Array;
}

/**
 * Leading Ritz pairs accepted and frozen (hard locking): their vectors are kept out of the block
 * that Rayleigh-Ritz and the filter work on, so each iteration's products and its small
 * decomposition shrink with the pairs still converging. Their residuals were measured against A
 * itself and stay exact while the vectors do not change.
 */
interface LockedPairs {
  readonly count: number;
  /** d x count, the pairs' vectors as columns. */
  readonly vectors: Float64Array;
  readonly values: Float64Array;
  readonly residuals: Float64Array;
}

const NO_LOCKED_PAIRS: LockedPairs = { count: 0, vectors: new Float64Array(0), values: new Float64Array(0), residuals: new Float64Array(0) };

/** The first `count` pairs of `ritz` (d x l), frozen. */
function leadingPairs(ritz: Ritz, d: number, count: number): LockedPairs {
  if (count === 0) return NO_LOCKED_PAIRS;
  const l = ritz.values.length;
  return { count, vectors: columnRange(ritz.vectors, d, l, 0, count), values: ritz.values.slice(0, count), residuals: ritz.residuals.slice(0, count) };
}

/** The locked pairs, then the Ritz pairs of the block beyond them: the whole block's pairs, in that order. */
function withLockedPairs(locked: LockedPairs, active: Ritz, d: number): Ritz {
  if (locked.count === 0) return active;
  const width = active.values.length;
  const l = locked.count + width;
  const vectors = new Float64Array(d * l);
  for (let r = 0; r < d; r++) {
    vectors.set(locked.vectors.subarray(r * locked.count, (r + 1) * locked.count), r * l);
    vectors.set(active.vectors.subarray(r * width, (r + 1) * width), r * l + locked.count);
  }
  return { values: Float64Array.of(...locked.values, ...active.values), vectors, residuals: Float64Array.of(...locked.residuals, ...active.residuals) };
}

/** y (d x width) less its components along the locked pairs' vectors: y - V (V^T y). */
async function withoutLockedDirections(y: Float64Array, d: number, width: number, locked: LockedPairs, products: Products): Promise<Float64Array> {
  const coefficients = await products.innerProducts(locked.vectors, locked.count, y, width, d);
  const along = await products.matmul(locked.vectors, d, locked.count, coefficients, width);
  const out = new Float64Array(y.length);
  for (let i = 0; i < out.length; i++) out[i] = y[i] - along[i];
  return out;
}

/**
 * The part of a residual along the locked pairs' vectors, beyond which the pairs projected without
 * them are refined with them (one Rayleigh-Ritz over the whole block).
 */
const LOCKED_SHARE_LIMIT = 0.5;

/** Ritz pairs of a block orthogonal to the locked pairs, and how much of each checked residual lies along them. */
interface ActiveRitz extends Ritz {
  /** ||V_locked^T (A v_i - theta_i v_i)|| / r_i of the first k + 1 pairs: what a Rayleigh-Ritz without the locked vectors cannot reduce. */
  lockedShare: Float64Array;
}

/** Rayleigh-Ritz on the orthonormal block q (orthogonal to the `locked` vectors): eigenpairs of q^T A q, mapped back. */
async function rayleighRitz(q: Float64Array, d: number, l: number, k: number, products: Products, locked: LockedPairs): Promise<ActiveRitz> {
  const aq = await products.times(q, l);
  const h = await products.innerProducts(q, l, aq, l, d);
  const projected = new Matrix(l, l);
  for (let i = 0; i < l; i++) for (let j = 0; j < l; j++) projected.set(i, j, (h[i * l + j] + h[j * l + i]) / 2);
  const evd = new EigenvalueDecomposition(projected, { assumeSymmetric: true });
  const order = evd.realEigenvalues.map((value, index) => [value, index]).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
  const values = Float64Array.from(order, ([value]) => value);
  const rotation = new Float64Array(l * l);
  const eigenvectors = evd.eigenvectorMatrix;
  for (let i = 0; i < l; i++) for (let c = 0; c < l; c++) rotation[i * l + c] = eigenvectors.get(i, order[c][1]);
  const vectors = await products.matmul(q, d, l, rotation, l);
  const images = await products.matmul(aq, d, l, rotation, l);
  const checked = Math.min(k + 1, l);
  const residuals = new Float64Array(checked);
  for (let c = 0; c < checked; c++) {
    let sum = 0;
    for (let r = 0; r < d; r++) {
      const difference = images[r * l + c] - values[c] * vectors[r * l + c];
      sum += difference * difference;
    }
    residuals[c] = Math.sqrt(sum);
  }
  const lockedShare = new Float64Array(checked);
  if (locked.count > 0) {
    // v_i is orthogonal to the locked vectors, so V^T (A v_i - theta_i v_i) = V^T A v_i.
    const along = await products.innerProducts(locked.vectors, locked.count, images, l, d);
    for (let c = 0; c < checked; c++) {
      let sum = 0;
      for (let p = 0; p < locked.count; p++) sum += along[p * l + c] ** 2;
      lockedShare[c] = residuals[c] > 0 ? Math.sqrt(sum) / residuals[c] : 0;
    }
  }
  return { values, vectors, residuals, lockedShare };
}

/**
 * Whether the first k Ritz pairs are accurate enough, each pair's angle bound, and how far the
 * worst one still is from its target (residual / target, 1 when converged).
 */
function convergence(ritz: Ritz, d: number, k: number, tolerance: number): { converged: boolean; angleBounds: Float64Array; worstNeed: number[] } {
  const { values, residuals } = ritz;
  const floor = 64 * Math.sqrt(d) * UNIT_ROUNDOFF * Math.abs(values[0]);
  const angleBounds = new Float64Array(k);
  const worstNeed: number[] = [];
  let converged = true;
  for (let i = 0; i < k; i++) {
    const above = i > 0 ? values[i - 1] - values[i] - residuals[i - 1] : Number.POSITIVE_INFINITY;
    const below = values[i] - values[i + 1] - residuals[i + 1];
    const gap = Math.min(above, below);
    const target = Math.max(gap > 0 ? tolerance * gap : 0, floor);
    angleBounds[i] = gap > 0 ? residuals[i] / gap : Number.POSITIVE_INFINITY;
    const need = residuals[i] / target;
    worstNeed.push(need);
    if (need > 1) converged = false;
  }
  return { converged, angleBounds, worstNeed };
}

/**
 * The Chebyshev degree for the next filter: enough to bring every unconverged pair to its target at
 * the convergence rate its Ritz value gives, capped by `maxDegree` and so that the filter grows the
 * first Ritz value it works on (the first not `locked`) at most MAX_FILTER_GROWTH times more than
 * the k-th (beyond that the block loses the k-th direction to rounding).
 */
function filterDegree(values: Float64Array, k: number, l: number, need: number[], maxDegree: number, locked = 0): number {
  const { centre, halfWidth } = filterInterval(values, l);
  const rate = (theta: number) => {
    const x = (theta - centre) / halfWidth;
    return x > 1 ? Math.log(x + Math.sqrt(x * x - 1)) : 0;
  };
  let degree = 1;
  for (let i = 0; i < k; i++) {
    if (need[i] <= 1) continue;
    const r = rate(values[i]);
    degree = Math.max(degree, r > 0 ? Math.ceil(Math.log(need[i]) / r) + 1 : maxDegree);
  }
  const spread = rate(values[Math.min(locked, k - 1)]) - rate(values[k - 1]);
  if (spread > 0) degree = Math.min(degree, Math.max(2, Math.floor(Math.log(MAX_FILTER_GROWTH) / spread)));
  return Math.max(1, Math.min(degree, maxDegree));
}

/** How many leading pairs are accepted, one after another from the first. */
function lockedPairs(need: readonly number[]): number {
  let locked = 0;
  while (locked < need.length && need[locked] <= 1) locked++;
  return locked;
}

/** `v` (d x l) with its columns `from` .. l - 1 replaced by `tail` (d x (l - from)). */
function withColumns(v: Float64Array, d: number, l: number, from: number, tail: Float64Array): Float64Array {
  if (from === 0) return tail;
  const width = l - from;
  const out = v.slice();
  for (let r = 0; r < d; r++) out.set(tail.subarray(r * width, (r + 1) * width), r * l + from);
  return out;
}

/** The damped interval [0, theta_l]: the smallest Ritz value bounds the unwanted end from above. */
function filterInterval(values: Float64Array, l: number): { centre: number; halfWidth: number } {
  const upper = Math.max(values[l - 1], Number.MIN_VALUE);
  return { centre: upper / 2, halfWidth: upper / 2 };
}

/**
 * p(A) v for the degree-`degree` Chebyshev polynomial of the damped interval, scaled to 1 at the
 * largest Ritz value so nothing overflows (Zhou, Saad, Tiago & Chelikowsky 2006, Algorithm 4.1).
 */
async function chebyshevFilter(v: Float64Array, d: number, l: number, values: Float64Array, degree: number, products: Products): Promise<Float64Array> {
  const { centre: c, halfWidth: e } = filterInterval(values, l);
  const scaleAt = values[0];
  if (!(scaleAt > c + e)) return products.times(v, l);
  let sigma = e / (scaleAt - c);
  const tau = 2 / sigma;
  let previous = v;
  let current = await products.chebyshevStep(v, v, l, sigma / e, (-sigma * c) / e, 0);
  for (let step = 2; step <= degree; step++) {
    const next = 1 / (tau - sigma);
    const following = await products.chebyshevStep(current, previous, l, (2 * next) / e, (-2 * next * c) / e, -sigma * next);
    previous = current;
    current = following;
    sigma = next;
  }
  return current;
}

function result(
  ritz: Ritz,
  d: number,
  k: number,
  trace: number,
  angleBounds: Float64Array,
  method: 'subspace' | 'full',
  iterations: number,
  products: number,
): TopEigenResult {
  const l = ritz.vectors.length / d;
  const vectors = new Float64Array(k * d);
  for (let c = 0; c < k; c++) {
    let largest = 0;
    for (let r = 0; r < d; r++) if (Math.abs(ritz.vectors[r * l + c]) > Math.abs(largest)) largest = ritz.vectors[r * l + c];
    const sign = largest < 0 ? -1 : 1;
    for (let r = 0; r < d; r++) vectors[c * d + r] = sign * ritz.vectors[r * l + c];
  }
  return {
    dim: d,
    k,
    values: ritz.values.slice(0, k),
    vectors,
    trace,
    residuals: ritz.residuals.slice(0, k),
    angleBounds,
    method,
    iterations,
    products,
  };
}

/** The answer from ml-matrix's full symmetric decomposition: small matrices, or no convergence. */
function fullDecomposition(a: Float64Array, d: number, k: number, trace: number, iterations: number, products: number): TopEigenResult {
  const matrix = new Matrix(d, d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) matrix.set(i, j, (a[i * d + j] + a[j * d + i]) / 2);
  const evd = new EigenvalueDecomposition(matrix, { assumeSymmetric: true });
  const order = evd.realEigenvalues.map((value, index) => [value, index]).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
  const values = Float64Array.from(order, ([value]) => value);
  const vectors = new Float64Array(d * d);
  for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) vectors[r * d + c] = evd.eigenvectorMatrix.get(r, order[c][1]);
  const residuals = new Float64Array(Math.min(k + 1, d));
  for (let c = 0; c < residuals.length; c++) {
    let sum = 0;
    for (let r = 0; r < d; r++) {
      let image = 0;
      for (let j = 0; j < d; j++) image += a[r * d + j] * vectors[j * d + c];
      sum += (image - values[c] * vectors[r * d + c]) ** 2;
    }
    residuals[c] = Math.sqrt(sum);
  }
  return result({ values, vectors, residuals }, d, k, trace, new Float64Array(k), 'full', iterations, products);
}
