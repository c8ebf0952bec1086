/**
 * zod schemas of number arrays checked in one loop. A model or statistics file holds 10^5 values
 * and more (pca-model.json: 100 components of 1,376 features), and every stage that reads one
 * checks it: `z.array(z.number().finite())` parses each value as a schema of its own, at about
 * ten times the cost of the loop (0.1 s per pca-model.json).
 */
import { z } from 'zod';

type Bound = 'finite' | 'nonnegative' | 'positive';

const ACCEPTS: Record<Bound, (value: unknown) => boolean> = {
  finite: (value) => typeof value === 'number' && Number.isFinite(value),
  nonnegative: (value) => typeof value === 'number' && Number.isFinite(value) && value >= 0,
  positive: (value) => typeof value === 'number' && Number.isFinite(value) && value > 0,
};

const DESCRIBED: Record<Bound, string> = { finite: 'finite', nonnegative: 'finite, non-negative', positive: 'finite, positive' };

/** The first value of `values` that `accepts` refuses, reported at its index. */
function checkValues(values: unknown[], accepts: (value: unknown) => boolean, bound: Bound, context: z.RefinementCtx, path: number[] = []): void {
  const bad = values.findIndex((value) => !accepts(value));
  if (bad >= 0)
    context.addIssue({ code: 'custom', path: [...path, bad], message: `expected number (${DESCRIBED[bound]}), got ${JSON.stringify(values[bad])}` });
}

/** An array of numbers, each finite (and non-negative or positive when asked); the first bad one is named by its index. */
export function numberArray(bound: Bound = 'finite') {
  const accepts = ACCEPTS[bound];
  return z
    .custom<number[]>((value) => Array.isArray(value), { message: 'expected an array of numbers' })
    .superRefine((values, context) => checkValues(values, accepts, bound, context));
}

/** An array of arrays of finite numbers (rows of a matrix; their lengths are the caller's to check). */
export function numberRows() {
  return z
    .custom<number[][]>((value) => Array.isArray(value) && value.every((row) => Array.isArray(row)), { message: 'expected an array of arrays of numbers' })
    .superRefine((rows, context) => {
      for (const [r, row] of rows.entries()) checkValues(row, ACCEPTS.finite, 'finite', context, [r]);
    });
}
