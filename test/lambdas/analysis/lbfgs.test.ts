import { lbfgsMinimum, LbfgsObjective } from '../../../lambdas/analysis/lbfgs';

/** An objective that counts its evaluations. */
function counted(f: (x: Float64Array) => { loss: number; gradient: Float64Array }) {
  const calls = { count: 0 };
  const objective: LbfgsObjective = async (x) => {
    calls.count++;
    return f(x);
  };
  return { objective, calls };
}

/** sum_i scale_i (x_i - target_i)^2 / 2, whose minimum is `target`. */
function bowl(scales: number[], target: number[]) {
  return counted((x) => ({
    loss: scales.reduce((sum, a, i) => sum + (a * (x[i] - target[i]) ** 2) / 2, 0),
    gradient: Float64Array.from(scales, (a, i) => a * (x[i] - target[i])),
  }));
}

describe('L-BFGS (lambdas/analysis/lbfgs.ts)', () => {
  it("finds an ill-conditioned quadratic bowl's minimum in far fewer evaluations than its 60 dimensions' condition asks of a gradient descent", async () => {
    const scales = Array.from({ length: 60 }, (_, i) => 1 + i * 5);
    const target = Array.from({ length: 60 }, (_, i) => Math.sin(i));
    const { objective, calls } = bowl(scales, target);
    const point = await lbfgsMinimum(objective, 60, { evaluations: 80, firstStep: 1 / Math.max(...scales) });
    for (let i = 0; i < 60; i++) expect(point[i]).toBeCloseTo(target[i], 6);
    expect(calls.count).toBeLessThanOrEqual(80);
  });

  it("reaches Rosenbrock's valley floor and minimum (1, 1), a non-quadratic function", async () => {
    const { objective } = counted(([x, y]) => ({
      loss: (1 - x) ** 2 + 100 * (y - x * x) ** 2,
      gradient: Float64Array.of(-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)),
    }));
    const [x, y] = await lbfgsMinimum(objective, 2, { evaluations: 200, firstStep: 1e-3 });
    expect(x).toBeCloseTo(1, 4);
    expect(y).toBeCloseTo(1, 4);
  });

  it('keeps to its budget of evaluations, and never returns a point above the start', async () => {
    const scales = Array.from({ length: 30 }, (_, i) => 1 + i * 20);
    const target = Array.from({ length: 30 }, () => 3);
    for (const evaluations of [1, 2, 5, 12]) {
      const { objective, calls } = bowl(scales, target);
      const point = await lbfgsMinimum(objective, 30, { evaluations, firstStep: 1 / 600 });
      expect(calls.count).toBeLessThanOrEqual(evaluations);
      const loss = (await objective(point)).loss;
      const atStart = (await objective(new Float64Array(30))).loss;
      expect(loss).toBeLessThanOrEqual(atStart);
      if (evaluations === 1) expect(Array.from(point)).toEqual(new Array(30).fill(0));
    }
  });

  it('stops before its budget at a minimum where no step lowers the loss, instead of spending every evaluation', async () => {
    // A loss rounded to float32, as the native graph's: at the minimum no step passes the search.
    const { objective, calls } = counted((x) => ({
      loss: Math.fround(x.reduce((sum, v) => sum + (v - 1) ** 2, 0)),
      gradient: x.map((v) => 2 * (v - 1)),
    }));
    const point = await lbfgsMinimum(objective, 5, { evaluations: 1000, firstStep: 0.25 });
    for (const v of point) expect(v).toBeCloseTo(1, 3);
    expect(calls.count).toBeLessThan(100);
  });

  it('refuses a budget or a first step it cannot use', async () => {
    const { objective } = bowl([1], [0]);
    await expect(lbfgsMinimum(objective, 1, { evaluations: 0, firstStep: 1 })).rejects.toThrow(/evaluations/);
    await expect(lbfgsMinimum(objective, 1, { evaluations: 1.5, firstStep: 1 })).rejects.toThrow(/evaluations/);
    await expect(lbfgsMinimum(objective, 1, { evaluations: 10, firstStep: 0 })).rejects.toThrow(/firstStep/);
    await expect(lbfgsMinimum(objective, 1, { evaluations: 10, firstStep: Number.NaN })).rejects.toThrow(/firstStep/);
  });
});
