/**
 * The statistics a linear discriminant is fitted from, in a form a map-reduce accumulates: per
 * class its row count and mean, and the pooled within-class scatter (the sum over every row of
 * (x - its class mean)(x - its class mean)^T). Each group of rows (a shard, a batch, a worker)
 * accumulates its own `ClassStatistics`; `mergeClassStatistics` combines two with Chan et al.'s
 * pairwise formula, so the result is the same however the rows were grouped (up to float64
 * round-off) and no row is ever held.
 *
 * Inside a group the rows go through `NativeScatterAccumulator` (the total scatter about the group
 * mean, one product per block of rows on the native kernel, the rows held in float32 as the
 * features are) beside per-class sums in float64; the within-class scatter is then the total minus
 * the between-class part, sum_c n_c (mean_c - mean)(mean_c - mean)^T. No class means are needed up
 * front, and a group holds one block of rows, whatever its size.
 */
import { z } from 'zod';
import { numberArray } from '../contracts/number-arrays';
import { mirrorUpperTriangle } from '../common';
import { KernelOptions, NativeScatterAccumulator } from './native-kernels';

export interface ClassMoments {
  readonly label: string;
  readonly count: number;
  readonly mean: Float64Array;
}

export interface ClassStatistics {
  readonly dim: number;
  /** In order of first appearance. */
  readonly classes: readonly ClassMoments[];
  /** dim x dim, row-major, symmetric: pooled within-class scatter. */
  readonly within: Float64Array;
}

/** Accumulates the rows of one group. */
export class ClassStatisticsAccumulator {
  private readonly total: NativeScatterAccumulator;
  private readonly sums = new Map<string, { count: number; sum: Float64Array }>();

  constructor(
    readonly dim: number,
    options: KernelOptions = {},
  ) {
    this.total = new NativeScatterAccumulator(dim, options);
  }

  /** Adds `vector[offset .. offset + dim)` as a row of class `label`. */
  async add(label: string, vector: ArrayLike<number>, offset = 0): Promise<void> {
    let entry = this.sums.get(label);
    if (!entry) this.sums.set(label, (entry = { count: 0, sum: new Float64Array(this.dim) }));
    entry.count++;
    // The values the scatter's block holds (float32), so the total and the class means describe the same rows.
    for (let d = 0; d < this.dim; d++) entry.sum[d] += Math.fround(vector[offset + d]);
    await this.total.addRow(vector, offset);
  }

  async statistics(): Promise<ClassStatistics> {
    const { dim } = this;
    const moments = await this.total.moments();
    const classes = [...this.sums].map(([label, { count, sum }]) => ({ label, count, mean: sum.map((value) => value / count) }));
    // Less the between-class scatter: sum_c n_c (mean_c - mean)(mean_c - mean)^T.
    const between = classes.map(({ count, mean }) => ({ weight: -count, delta: mean.map((value, d) => value - moments.mean[d]) }));
    return { dim, classes, within: addOuterProducts(moments.scatter, dim, between) };
  }
}

/** The statistics of two groups' rows together (Chan, Golub & LeVeque, per class). */
export function mergeClassStatistics(a: ClassStatistics, b: ClassStatistics): ClassStatistics {
  if (a.dim !== b.dim) throw new RangeError(`cannot merge class statistics of ${a.dim} and ${b.dim} dimensions`);
  const { dim } = a;
  const within = new Float64Array(dim * dim);
  for (let i = 0; i < within.length; i++) within[i] = a.within[i] + b.within[i];
  const classes = new Map<string, ClassMoments>(a.classes.map((c) => [c.label, c]));
  const shared: { weight: number; delta: Float64Array }[] = [];
  for (const other of b.classes) {
    const own = classes.get(other.label);
    if (!own) {
      classes.set(other.label, other);
      continue;
    }
    const count = own.count + other.count;
    const delta = other.mean.map((value, d) => value - own.mean[d]);
    classes.set(other.label, { label: other.label, count, mean: own.mean.map((value, d) => value + (delta[d] * other.count) / count) });
    shared.push({ weight: (own.count * other.count) / count, delta });
  }
  return { dim, classes: [...classes.values()], within: addOuterProducts(within, dim, shared) };
}

/**
 * `matrix` (dim x dim, symmetric, changed in place) plus sum_t weight_t delta_t delta_t^T: the
 * upper triangle updated a row at a time, then mirrored. About 5 ms for 103 terms of 300.
 */
function addOuterProducts(matrix: Float64Array, dim: number, terms: readonly { weight: number; delta: Float64Array }[]): Float64Array {
  for (let i = 0; i < dim; i++) {
    const row = i * dim;
    for (const { weight, delta } of terms) {
      const scaled = weight * delta[i];
      for (let j = i; j < dim; j++) matrix[row + j] += scaled * delta[j];
    }
  }
  return mirrorUpperTriangle(matrix, dim);
}

export const ClassStatisticsSchema = z
  .object({
    dim: z.number().int().min(1),
    classes: z.array(z.object({ label: z.string(), count: z.number().int().min(1), mean: numberArray() })),
    within: numberArray(),
  })
  .superRefine((value, context) => {
    const problem = (message: string) => context.addIssue({ code: 'custom', message });
    if (value.within.length !== value.dim * value.dim) problem(`within holds ${value.within.length} values, expected dim^2 = ${value.dim ** 2}`);
    const wrong = value.classes.find((c) => c.mean.length !== value.dim);
    if (wrong) problem(`the mean of class ${JSON.stringify(wrong.label)} holds ${wrong.mean.length} values, expected dim = ${value.dim}`);
    if (new Set(value.classes.map((c) => c.label)).size !== value.classes.length) problem('a class is listed twice');
  });

/** JSON for a map step's output (numbers round-trip exactly). */
export function classStatisticsToJson(stats: ClassStatistics): z.infer<typeof ClassStatisticsSchema> {
  return {
    dim: stats.dim,
    classes: stats.classes.map((c) => ({ label: c.label, count: c.count, mean: Array.from(c.mean) })),
    within: Array.from(stats.within),
  };
}

export function classStatisticsFromJson(json: unknown): ClassStatistics {
  const value = ClassStatisticsSchema.parse(json);
  return {
    dim: value.dim,
    classes: value.classes.map((c) => ({ label: c.label, count: c.count, mean: Float64Array.from(c.mean) })),
    within: Float64Array.from(value.within),
  };
}
