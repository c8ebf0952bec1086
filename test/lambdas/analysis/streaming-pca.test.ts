import { PCA } from 'ml-pca';
import { chooseComponentCount, classifierFit, fitPca, InsufficientDataError, PcaProjector, ScatterAccumulator } from '../../../lambdas/analysis/streaming-pca';
import { seededRandom } from '../../../lambdas/common/seeded-random';

/** n x d correlated data (a few latent factors + noise), features on different scales and offsets. */
function syntheticFeatures(n: number, d: number, seed = 1, latent = 3): Float32Array {
  const random = seededRandom(seed);
  const normal = () => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
  const loadings = Array.from({ length: latent }, () => Array.from({ length: d }, normal));
  const out = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    const factors = Array.from({ length: latent }, (_, l) => normal() * (latent - l));
    for (let f = 0; f < d; f++) {
      let value = 0.3 * normal();
      for (let l = 0; l < latent; l++) value += factors[l] * loadings[l][f];
      out[r * d + f] = value * (1 + f) + 10 * f;
    }
  }
  return out;
}

function rowsOf(vectors: Float32Array, n: number, d: number): number[][] {
  return Array.from({ length: n }, (_, r) => Array.from(vectors.subarray(r * d, (r + 1) * d)));
}

function accumulate(vectors: Float32Array, n: number, d: number, shards = 1, blockRows?: number) {
  const acc = new ScatterAccumulator(d, blockRows);
  // Uneven shard sizes on purpose: boundaries must not matter.
  const cuts = Array.from({ length: shards - 1 }, (_, i) => Math.floor(((i + 1) * n) / shards + (i % 3)));
  let start = 0;
  for (const end of [...cuts, n]) {
    const shard = vectors.subarray(start * d, end * d);
    acc.addRows(shard, end - start);
    start = end;
  }
  return acc.moments();
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

describe('ScatterAccumulator', () => {
  it('matches a two-pass float64 mean and scatter, even with large offsets', () => {
    const n = 700;
    const d = 7;
    const random = seededRandom(7);
    const data = new Float64Array(n * d);
    for (let i = 0; i < data.length; i++) data[i] = 1e6 + (i % d) * 1e5 + random() * 1e-2;
    const acc = new ScatterAccumulator(d, 64);
    acc.addRows(data, n);
    const { count, mean, scatter } = acc.moments();
    expect(count).toBe(n);
    const refMean = Array.from({ length: d }, (_, f) => {
      let s = 0;
      for (let r = 0; r < n; r++) s += data[r * d + f];
      return s / n;
    });
    for (let f = 0; f < d; f++) expect(mean[f]).toBeCloseTo(refMean[f], 6);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        let s = 0;
        for (let r = 0; r < n; r++) s += (data[r * d + i] - refMean[i]) * (data[r * d + j] - refMean[j]);
        // Deviations of 1e-2 on values of 1e6: E[x^2]-E[x]^2 would be pure noise (1e12 * 1e-16
        // per row), while the inputs themselves are only exact to ~1e-8 of the deviations.
        const bound = 1e-7 * Math.sqrt(scatter[i * d + i] * scatter[j * d + j]);
        expect(Math.abs(scatter[i * d + j] - s)).toBeLessThan(bound);
      }
    }
  });

  it('gives identical moments whether rows arrive in 1 shard or 50', () => {
    const n = 1000;
    const d = 13;
    const vectors = syntheticFeatures(n, d, 3);
    const one = accumulate(vectors, n, d, 1);
    const fifty = accumulate(vectors, n, d, 50);
    expect(Array.from(fifty.mean)).toEqual(Array.from(one.mean));
    expect(Array.from(fifty.scatter)).toEqual(Array.from(one.scatter));
    // A different block size changes the summation order only: equal to ~1e-9 relative.
    const otherBlocks = accumulate(vectors, n, d, 50, 37);
    for (let i = 0; i < d * d; i++) {
      expect(Math.abs(otherBlocks.scatter[i] - one.scatter[i])).toBeLessThan(1e-9 * Math.abs(one.scatter[i]) + 1e-9);
    }
  });
});

describe('fitPca', () => {
  const n = 300;
  const d = 12;
  const vectors = syntheticFeatures(n, d, 11);
  const reference = new PCA(rowsOf(vectors, n, d), { scale: true });

  it('agrees with ml-pca on the full matrix (scale: true): variance, components up to sign, orthonormal', () => {
    const fit = fitPca(accumulate(vectors, n, d, 50), { components: d });
    const refRatio = reference.getExplainedVariance();
    const refEigen = reference.getEigenvalues();
    const refVectors = reference.getEigenvectors();
    expect(fit.k).toBe(d);
    for (let c = 0; c < d; c++) {
      expect(fit.explainedVarianceRatio[c]).toBeCloseTo(refRatio[c], 9);
      // Eigenvalues of the correlation matrix do not depend on the n vs n - 1 convention.
      expect(fit.eigenvalues[c]).toBeCloseTo(refEigen[c], 8);
    }
    for (let c = 0; c < fit.k; c++) {
      const ours = fit.components.subarray(c * d, (c + 1) * d);
      const theirs = refVectors.getColumn(c);
      expect(Math.abs(Math.abs(dot(ours, theirs)) - 1)).toBeLessThan(1e-8);
      for (let e = 0; e < fit.k; e++) {
        const other = fit.components.subarray(e * d, (e + 1) * d);
        expect(dot(ours, other)).toBeCloseTo(c === e ? 1 : 0, 10);
      }
    }
    expect(fit.explainedVariance).toBeCloseTo(1, 12);
  });

  it('projects like ml-pca predict, up to sign and the population/sample std factor', () => {
    const fit = fitPca(accumulate(vectors, n, d, 7), { components: 4 });
    const projector = new PcaProjector(fit);
    const theirs = reference.predict(rowsOf(vectors, n, d), { nComponents: 4 });
    // ml-pca scales by the sample std; StandardScaler (and we) by the population std.
    const factor = Math.sqrt((n - 1) / n);
    for (let c = 0; c < 4; c++) {
      const sign = Math.sign(dot(fit.components.subarray(c * d, (c + 1) * d), reference.getEigenvectors().getColumn(c)));
      for (const r of [0, 1, 57, n - 1]) {
        const ours = projector.project(vectors, r * d);
        expect(ours[c] * factor * sign).toBeCloseTo(theirs.get(r, c), 6);
      }
    }
  });

  it('projects a block of rows exactly as row by row (odd k, rows not a multiple of the tile)', () => {
    const fit = fitPca(accumulate(vectors, n, d), { components: 3 });
    const projector = new PcaProjector(fit);
    const rows = 7;
    const block = projector.projectRows(vectors, rows);
    for (let r = 0; r < rows; r++) {
      expect(Array.from(block.subarray(r * 3, r * 3 + 3))).toEqual(Array.from(projector.project(vectors, r * d)));
    }
  });

  it('scales zero-variance features by 1 and leaves them out of every component (no NaN)', () => {
    const wide = d + 2;
    const withConstants = new Float32Array(n * wide);
    for (let r = 0; r < n; r++) {
      withConstants.set(vectors.subarray(r * d, r * d + 5), r * wide);
      withConstants[r * wide + 5] = 0; // a dead ReLU channel
      withConstants.set(vectors.subarray(r * d + 5, (r + 1) * d), r * wide + 6);
      withConstants[r * wide + wide - 1] = 5.3; // constant, non-zero
    }
    const fit = fitPca(accumulate(withConstants, n, wide, 9), { components: 5 });
    expect(fit.constantFeatures).toEqual([5, wide - 1]);
    expect(fit.scale[5]).toBe(1);
    expect(fit.scale[wide - 1]).toBe(1);
    expect(fit.warnings.join(' ')).toMatch(/2 of 14 features are constant/);
    expect(Array.from(fit.components).every(Number.isFinite)).toBe(true);
    const refRatio = reference.getExplainedVariance();
    for (let c = 0; c < 5; c++) {
      expect(fit.components[c * wide + 5]).toBe(0);
      expect(fit.components[c * wide + wide - 1]).toBe(0);
      expect(fit.explainedVarianceRatio[c]).toBeCloseTo(refRatio[c], 9);
    }
    const scores = new PcaProjector(fit).project(withConstants, 0);
    expect(Array.from(scores).every(Number.isFinite)).toBe(true);
  });

  it('picks the smallest k reaching the variance threshold', () => {
    const fit = fitPca(accumulate(vectors, n, d), { components: d, varianceThreshold: 0.9 });
    let cumulative = 0;
    let expected = 0;
    while (cumulative < 0.9) cumulative += fit.explainedVarianceRatio[expected++];
    expect(fit.k).toBe(expected);
    expect(fit.explainedVariance).toBeGreaterThanOrEqual(0.9);
    expect(fit.explainedVariance - fit.explainedVarianceRatio[fit.k - 1]).toBeLessThan(0.9);
    // PCA_COMPONENTS stays an upper bound.
    const capped = fitPca(accumulate(vectors, n, d), { components: 1, varianceThreshold: 0.9 });
    expect(capped.k).toBe(1);
    expect(capped.warnings.join(' ')).toMatch(/threshold 0.9 not reached within PCA_COMPONENTS = 1/);
  });

  it("holds a classifier's further components after the kept k, which stay as they were; classifierFit sees them all", () => {
    const moments = accumulate(vectors, n, d);
    const kept = fitPca(moments, { components: 3 });
    const wide = fitPca(moments, { components: 3, classifierComponents: 8 });
    expect(wide).toMatchObject({ k: 3, classifierK: 8, explainedVariance: kept.explainedVariance });
    expect(Array.from(wide.components.subarray(0, 3 * d))).toEqual(Array.from(kept.components));
    // The projector of the fit gives the kept k; of classifierFit, those k then the 5 further ones.
    const scores = new PcaProjector(wide).project(vectors, 0);
    const all = new PcaProjector(classifierFit(wide)).project(vectors, 0);
    expect(scores).toHaveLength(3);
    expect(all).toHaveLength(8);
    expect(Array.from(all.subarray(0, 3))).toEqual(Array.from(scores));
    expect(classifierFit(wide).explainedVariance).toBeCloseTo(
      wide.explainedVarianceRatio.slice(0, 8).reduce((a, b) => a + b, 0),
      12,
    );
    expect(classifierFit(kept)).toBe(kept);
    // Not fewer than k, not more than the data supports.
    expect(fitPca(moments, { components: 3, classifierComponents: 2 }).classifierK).toBeUndefined();
    expect(fitPca(moments, { components: 3, classifierComponents: 50 }).classifierK).toBe(d);
    expect(fitPca(accumulate(syntheticFeatures(6, d, 2), 6, d), { components: 2, classifierComponents: 50 }).classifierK).toBe(5);
    expect(() => fitPca(moments, { components: 3, classifierComponents: 0 })).toThrow(/classifierComponents must be a positive integer/);
  });

  it('clamps k to min(features, images - 1) with a warning', () => {
    const few = syntheticFeatures(5, d, 2);
    const fit = fitPca(accumulate(few, 5, d), { components: 50 });
    expect(fit.k).toBe(4);
    expect(fit.warnings.join(' ')).toMatch(/at most 4/);
  });

  it('refuses data that cannot give a PCA, with a clear error', () => {
    expect(() => fitPca(new ScatterAccumulator(4).moments(), { components: 2 })).toThrow(InsufficientDataError);
    const one = new ScatterAccumulator(4);
    one.addRow([1, 2, 3, 4], 0);
    expect(() => fitPca(one.moments(), { components: 2 })).toThrow(/at least 2 images, got 1/);
    const flat = new ScatterAccumulator(3);
    for (let r = 0; r < 10; r++) flat.addRow([1, 0, 0.1], 0);
    expect(() => fitPca(flat.moments(), { components: 2 })).toThrow(/all 3 features are constant/);
    expect(() => fitPca(accumulate(vectors, n, d), { components: 0 })).toThrow(RangeError);
    expect(() => fitPca(accumulate(vectors, n, d), { components: 2, varianceThreshold: 1.5 })).toThrow(RangeError);
  });

  it('chooseComponentCount reaches a threshold of 1 despite round-off', () => {
    const ratios = [0.5, 0.3, 0.2 - 1e-15];
    expect(chooseComponentCount(ratios, { components: 50, varianceThreshold: 1 }, 3)).toBe(3);
    const warnings: string[] = [];
    expect(chooseComponentCount([0.5, 0.3, 0.2], { components: 50, varianceThreshold: 0.95 }, 2, warnings)).toBe(2);
    expect(warnings[0]).toMatch(/not reached/);
  });
});
