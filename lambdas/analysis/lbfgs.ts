/**
 * L-BFGS (Nocedal and Wright, Numerical Optimization, algorithms 7.4 and 7.5): the minimum of a
 * smooth function from the last LBFGS_MEMORY steps' curvature, each step's length found by a
 * backtracking search that halves it until the Armijo condition holds.
 *
 * The objective is asynchronous (its value and gradient come from a native graph run, as logistic
 * regression's do: logistic-classifier.ts), which the JavaScript optimisers on npm do not take, and
 * the budget counts its evaluations, line-search steps included. The vectors are float64; the
 * two-loop recursion costs about 4 x memory x size operations a step, light beside an evaluation.
 *
 * API: `lbfgsMinimum(objective, size, { evaluations, firstStep })` -> the point reached from 0.
 */

/** The function's value and gradient at a point. */
export type LbfgsObjective = (point: Float64Array) => Promise<{ loss: number; gradient: Float64Array }>;

export interface LbfgsOptions {
  /** Evaluations of the objective, at most, the first (at 0) included. */
  readonly evaluations: number;
  /** The first step is -firstStep x gradient: the inverse of a bound on the curvature suits it. */
  readonly firstStep: number;
}

/** Steps whose curvature the inverse Hessian's estimate keeps. */
export const LBFGS_MEMORY = 10;
/** The Armijo condition's fraction of the decrease the slope promises. */
const ARMIJO = 1e-4;
/** Halvings of a step before the search gives up: no step lowers the loss along the direction. */
const MAX_HALVINGS = 10;

interface Pair {
  readonly s: Float64Array;
  readonly y: Float64Array;
  readonly rho: number;
}

/**
 * The point L-BFGS reaches from 0 in at most `evaluations` evaluations; sooner at a zero gradient or
 * when a search finds no step that lowers the loss (at the minimum, to the objective's precision).
 * The loss at the point returned is never above the loss at 0.
 */
export async function lbfgsMinimum(objective: LbfgsObjective, size: number, { evaluations, firstStep }: LbfgsOptions): Promise<Float64Array> {
  if (!Number.isInteger(evaluations) || evaluations < 1) throw new RangeError(`evaluations must be a positive integer, got ${evaluations}`);
  if (!(firstStep > 0)) throw new RangeError(`firstStep must be positive, got ${firstStep}`);
  let point: Float64Array = new Float64Array(size);
  let { loss, gradient } = await objective(point);
  let used = 1;
  const history: Pair[] = [];
  while (used < evaluations) {
    let direction = history.length ? twoLoopDirection(gradient, history) : scaledCopy(gradient, -firstStep);
    let slope = dot(gradient, direction);
    if (!(slope < 0)) {
      // Not a descent direction (the curvature estimate has gone wrong): start again from the gradient.
      history.length = 0;
      direction = scaledCopy(gradient, -firstStep);
      slope = dot(gradient, direction);
      // A zero gradient: the point is a minimum, nothing lowers the loss from it.
      if (!(slope < 0)) break;
    }
    let accepted: { point: Float64Array; loss: number; gradient: Float64Array } | undefined;
    for (let t = 1, halvings = 0; used < evaluations && halvings <= MAX_HALVINGS; t *= 0.5, halvings++) {
      const candidate = point.map((value, i) => value + t * direction[i]);
      const next = await objective(candidate);
      used++;
      if (next.loss <= loss + ARMIJO * t * slope) {
        accepted = { point: candidate, ...next };
        break;
      }
    }
    if (!accepted) break;
    const s = accepted.point.map((value, i) => value - point[i]);
    const y = accepted.gradient.map((value, i) => value - gradient[i]);
    const sy = dot(s, y);
    // Only a pair of positive curvature keeps the estimate positive definite.
    if (sy > 1e-12) {
      history.push({ s, y, rho: 1 / sy });
      if (history.length > LBFGS_MEMORY) history.shift();
    }
    ({ point, loss, gradient } = accepted);
  }
  return point;
}

/** -H g by the two-loop recursion over `history` (oldest first), H0 scaled by the newest pair. */
function twoLoopDirection(gradient: Float64Array, history: readonly Pair[]): Float64Array {
  const q = Float64Array.from(gradient);
  const alphas = new Float64Array(history.length);
  for (let i = history.length - 1; i >= 0; i--) {
    const { s, y, rho } = history[i];
    alphas[i] = rho * dot(s, q);
    for (let j = 0; j < q.length; j++) q[j] -= alphas[i] * y[j];
  }
  const newest = history[history.length - 1];
  const gamma = dot(newest.s, newest.y) / dot(newest.y, newest.y);
  for (let j = 0; j < q.length; j++) q[j] *= gamma;
  for (let i = 0; i < history.length; i++) {
    const { s, y, rho } = history[i];
    const beta = rho * dot(y, q);
    for (let j = 0; j < q.length; j++) q[j] += s[j] * (alphas[i] - beta);
  }
  for (let j = 0; j < q.length; j++) q[j] = -q[j];
  return q;
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

function scaledCopy(a: Float64Array, factor: number): Float64Array {
  return a.map((value) => value * factor);
}
