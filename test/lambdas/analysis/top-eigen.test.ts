/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 *
 * topEigen on matrices with known eigenpairs, and against ml-pca's full decomposition.
 */
import { Matrix, QrDecomposition } from 'ml-matrix';
import { PCA } from 'ml-pca';
import { ScatterAccumulator, standardisedCorrelation } from '../../../lambdas/analysis/streaming-pca';
import { topEigen } from '../../../lambdas/analysis/top-eigen';
import { standardNormal, xorshiftUniform } from '../../../lambdas/common/seeded-random';

function expectClose(actual: ArrayLike<number>, expected: number[], tolerance: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(Math.abs(actual[i] - expected[i])).toBeLessThan(tolerance);
}

describe('topEigen on hand-checkable matrices', () => {
  // [[5, 2, 0], [2, 2, 0], [0, 0, 3]]: the 2 x 2 block has eigenvalues 6 and 1, eigenvectors
  // (2, 1) / sqrt 5 and (1, -2) / sqrt 5; the third axis is an eigenvector of value 3.
  const matrix = Float64Array.of(5, 2, 0, 2, 2, 0, 0, 0, 3);

  it('finds the top pair by subspace iteration (a block of 2 in 3 dimensions)', async () => {
    const top = await topEigen(matrix, { k: 1, oversampling: 1 });
    expect(top.method).toBe('subspace');
    expect(top.trace).toBe(10);
    expectClose(top.values, [6], 1e-12);
    expectClose(top.vectors, [2 / Math.sqrt(5), 1 / Math.sqrt(5), 0], 1e-9);
  });

  it('solves a block as large as the matrix directly', async () => {
    const top = await topEigen(
      new Matrix([
        [2, 1],
        [1, 2],
      ]),
      { k: 2 },
    );
    expect(top.method).toBe('full');
    expectClose(top.values, [3, 1], 1e-12);
    // Each vector signed so its largest-magnitude entry (the first, among equals) is positive.
    expectClose(top.vectors, [Math.SQRT1_2, Math.SQRT1_2, Math.SQRT1_2, -Math.SQRT1_2], 1e-12);
  });

  it('rejects k out of range and a matrix that is not square', async () => {
    await expect(topEigen(matrix, { k: 4 })).rejects.toThrow(RangeError);
    await expect(topEigen(new Float64Array(5), { k: 1 })).rejects.toThrow(RangeError);
  });
});

/** Rows of a low-rank signal with a decaying spectrum plus noise, non-negative like pooled ReLU features. */
function features(rows: number, dims: number, rank: number): Float32Array {
  const gaussian = standardNormal(xorshiftUniform(12345));
  const basis = Float64Array.from({ length: rank * dims }, gaussian);
  const data = new Float32Array(rows * dims);
  const factors = new Float64Array(rank);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < rank; j++) factors[j] = (3 * gaussian()) / Math.pow(j + 1, 0.8);
    for (let f = 0; f < dims; f++) {
      let value = 2 + 0.3 * gaussian();
      for (let j = 0; j < rank; j++) value += factors[j] * basis[j * dims + f];
      data[r * dims + f] = Math.max(0, value);
    }
  }
  return data;
}

describe('topEigen against ml-pca', () => {
  it('gives the top 40 components and explained variance ratios of a 300-feature correlation matrix within 1e-6', async () => {
    const dims = 300;
    const rows = 900;
    const accumulator = new ScatterAccumulator(dims);
    accumulator.addRows(features(rows, dims, 120), rows);
    const { correlation } = standardisedCorrelation(accumulator.moments());
    const pca = new PCA(Matrix.from1DArray(dims, dims, correlation), { isCovarianceMatrix: true });
    const eigenvalues = pca.getEigenvalues();
    const eigenvectors = pca.getEigenvectors();
    const total = eigenvalues.reduce((sum, value) => sum + value, 0);

    const k = 40;
    const top = await topEigen(correlation, { k });
    expect(top.method).toBe('subspace');
    expect(Math.abs(top.trace - total)).toBeLessThan(1e-9);
    for (let c = 0; c < k; c++) {
      expect(Math.abs(top.values[c] / top.trace - eigenvalues[c] / total)).toBeLessThan(1e-12);
      expect(top.angleBounds[c]).toBeLessThan(1e-9);
      let dot = 0;
      for (let f = 0; f < dims; f++) dot += eigenvectors.get(f, c) * top.vectors[c * dims + f];
      const sign = Math.sign(dot);
      let difference = 0;
      for (let f = 0; f < dims; f++) difference = Math.max(difference, Math.abs(sign * eigenvectors.get(f, c) - top.vectors[c * dims + f]));
      expect(difference).toBeLessThan(1e-6);
    }
  });

  it('handles a rank-deficient matrix (fewer rows than features, constant features): the top pairs agree, the rest are 0', async () => {
    const dims = 150;
    const rows = 30;
    const data = features(rows, dims, 20);
    for (let r = 0; r < rows; r++) for (let f = 0; f < 10; f++) data[r * dims + f] = 1;
    const accumulator = new ScatterAccumulator(dims);
    accumulator.addRows(data, rows);
    const { correlation } = standardisedCorrelation(accumulator.moments());
    const eigenvalues = new PCA(Matrix.from1DArray(dims, dims, correlation), { isCovarianceMatrix: true }).getEigenvalues();
    // 30 centred rows span at most 29 directions.
    const top = await topEigen(correlation, { k: 40 });
    expect(top.method).toBe('subspace');
    for (let c = 0; c < 20; c++) expect(Math.abs(top.values[c] - eigenvalues[c])).toBeLessThan(1e-10);
    for (let c = 29; c < 40; c++) expect(Math.abs(top.values[c])).toBeLessThan(1e-10);
  });

  it('keeps the accepted leading pairs out of the filter: a top eigenvalue 10,000 times a flat tail does not hold back the pairs in the tail', async () => {
    // Ten eigenvalues from 10,000 halving, then 190 in [0.9, 1.1], in a seeded random basis. The
    // filter's growth is capped by the spread of the eigenvalues it works on: with the top ones
    // in it, the cap held it to a low degree and 30 iterations did not get there.
    const d = 200;
    const k = 40;
    const uniform = xorshiftUniform(11);
    const normal = standardNormal(uniform);
    const basis = new QrDecomposition(new Matrix(Array.from({ length: d }, () => Array.from({ length: d }, normal)))).orthogonalMatrix;
    const spectrum = Array.from({ length: d }, (_, i) => (i < 10 ? 1e4 * 0.5 ** i : 0.9 + 0.2 * uniform()));
    const product = basis.clone().mulRowVector(spectrum).mmul(basis.transpose());
    const matrix = new Matrix(d, d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) matrix.set(i, j, (product.get(i, j) + product.get(j, i)) / 2);
    const top = await topEigen(matrix, { k });
    expect(top.method).toBe('subspace');
    expect(top.iterations).toBeLessThanOrEqual(15);
    const order = [...spectrum.keys()].sort((x, y) => spectrum[y] - spectrum[x]);
    for (let c = 0; c < k; c++) {
      expect(Math.abs(top.values[c] - spectrum[order[c]]) / spectrum[order[c]]).toBeLessThan(1e-12);
      let cosine = 0;
      for (let r = 0; r < d; r++) cosine += top.vectors[c * d + r] * basis.get(r, order[c]);
      // The tail's eigenvalues lie about 0.001 apart: each vector within the angle its gap allows.
      expect(1 - Math.abs(cosine)).toBeLessThan(1e-12);
    }
  });

  it('falls back to the full decomposition when the iteration is cut short, with the same answer', async () => {
    const dims = 60;
    const accumulator = new ScatterAccumulator(dims);
    accumulator.addRows(features(200, dims, 30), 200);
    const { correlation } = standardisedCorrelation(accumulator.moments());
    const converged = await topEigen(correlation, { k: 5 });
    const cut = await topEigen(correlation, { k: 5, maxIterations: 1, tolerance: 1e-15 });
    expect(converged.method).toBe('subspace');
    expect(cut.method).toBe('full');
    for (let i = 0; i < converged.vectors.length; i++) expect(Math.abs(cut.vectors[i] - converged.vectors[i])).toBeLessThan(1e-8);
  });
});

describe('fitPcaTop', () => {
  it('gives the components and explained variance of the full fit (within 1e-6), only the leading ones', async () => {
    const { fitPca, fitPcaTop, FULL_SPECTRUM_MAX_DIM, ScatterAccumulator } = await import('../../../lambdas/analysis/streaming-pca');
    const dim = FULL_SPECTRUM_MAX_DIM + 40;
    const rows = 900;
    let seed = 7;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5;
    const latent = Array.from({ length: 60 }, () => Float64Array.from({ length: dim }, random));
    const accumulator = new ScatterAccumulator(dim);
    const row = new Float64Array(dim);
    for (let r = 0; r < rows; r++) {
      row.fill(0);
      latent.forEach((factor, j) => {
        const weight = (random() * 3) / (j + 1);
        for (let f = 0; f < dim; f++) row[f] += weight * factor[f];
      });
      for (let f = 0; f < dim; f++) row[f] += random() * 0.05;
      accumulator.addRow(row, 0);
    }
    const moments = accumulator.moments();
    const full = fitPca(moments, { components: 20 });
    const top = await fitPcaTop(moments, { components: 20 });
    expect(top.k).toBe(20);
    expect(top.eigenvalues).toHaveLength(20);
    for (let c = 0; c < 20; c++) {
      expect(Math.abs(top.explainedVarianceRatio[c] - full.explainedVarianceRatio[c])).toBeLessThan(1e-9);
      for (let f = 0; f < dim; f++) expect(Math.abs(top.components[c * dim + f] - full.components[c * dim + f])).toBeLessThan(1e-6);
    }
    expect(top.explainedVariance).toBeCloseTo(full.explainedVariance, 9);

    // A classifier's further components: computed too, the kept ones unchanged.
    const wide = await fitPcaTop(moments, { components: 20, classifierComponents: 30 });
    expect(wide).toMatchObject({ k: 20, classifierK: 30 });
    expect(wide.explainedVariance).toBeCloseTo(top.explainedVariance, 9);
    expect(wide.components).toHaveLength(30 * dim);
    for (let i = 0; i < 20 * dim; i++) expect(Math.abs(wide.components[i] - top.components[i])).toBeLessThan(1e-6);
  });
});

describe('topEigen on a matrix of rank below its block', () => {
  it('falls back to the whole decomposition instead of iterating forever (four solid-colour images: rank 3)', async () => {
    const { topEigen } = await import('../../../lambdas/analysis/top-eigen');
    const d = 600;
    // Three directions, each repeated over a third of the features: rank 3, many identical rows.
    const a = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) a[i * d + j] = Math.floor((3 * i) / d) === Math.floor((3 * j) / d) ? 1 : 0;
    const top = await topEigen(a, { k: 2 });
    expect(top.values[0]).toBeCloseTo(200, 6);
    expect(top.values[1]).toBeCloseTo(200, 6);
  });
});
