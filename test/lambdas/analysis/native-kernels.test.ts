/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 *
 * The native kernels against hand-computed values and against the JavaScript code they replace
 * (ScatterAccumulator, PcaProjector, KnnReferences).
 */
import { KnnReferences } from '../../../lambdas/analysis/knn';
import { largestRelativeDifference } from '../../../lambdas/common/float-arrays';
import { xorshift32 } from '../../../lambdas/common/seeded-random';
import { fitPca, PcaProjector, ScatterAccumulator } from '../../../lambdas/analysis/streaming-pca';
import {
  blockMoments,
  emptyMoments,
  mergeNeighbourLists,
  NativeNeighbourSearch,
  NativeProjector,
  NativeScatterAccumulator,
  nearestCentres,
  voteNeighbours,
} from '../../../lambdas/analysis/native-kernels';
import { mergeMomentsInto } from '../../support/reference-moments';

/** Seeded uniform values in [0, 1): the same data every run. */
function seeded(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 4294967296;
}

/** rows x dims values with a large common offset and features of different spreads. */
function features(rows: number, dims: number, seed = 1): Float32Array {
  const random = seeded(seed);
  const data = new Float32Array(rows * dims);
  for (let r = 0; r < rows; r++) for (let f = 0; f < dims; f++) data[r * dims + f] = 100 + (f + 1) * random() + (f % 3) * data[r * dims];
  return data;
}

describe('blockMoments', () => {
  // Rows (1, 2), (3, 4), (5, 9): mean (3, 5); deviations (-2, -3), (0, -1), (2, 4);
  // scatter xx = 4 + 0 + 4 = 8, xy = 6 + 0 + 8 = 14, yy = 9 + 1 + 16 = 26.
  it.each(['float64', 'float32'] as const)('gives the count, mean and centred scatter of a hand-checked block (%s)', async (precision) => {
    const moments = await blockMoments({ data: Float32Array.of(1, 2, 3, 4, 5, 9), rows: 3, dims: 2 }, { precision });
    expect(moments.count).toBe(3);
    expect(Array.from(moments.mean)).toEqual([3, 5]);
    expect(Array.from(moments.scatter)).toEqual([8, 14, 14, 26]);
  });

  // The product is formed strip by strip above the diagonal and mirrored: every shape of strips
  // (fewer features than strips, widths that do not divide the features) must give the full scatter.
  it.each([1, 3, 8, 23, 70])('gives the full, exactly symmetric scatter of %i features', async (dims) => {
    const rows = 57;
    const data = features(rows, dims, dims);
    const reference = new ScatterAccumulator(dims);
    reference.addRows(data, rows);
    const expected = reference.moments();
    const moments = await blockMoments({ data, rows, dims });
    expect(largestRelativeDifference(moments.mean, expected.mean)).toBeLessThan(1e-14);
    expect(largestRelativeDifference(moments.scatter, expected.scatter)).toBeLessThan(1e-12);
    for (let i = 0; i < dims; i++) for (let j = 0; j < i; j++) expect(moments.scatter[i * dims + j]).toBe(moments.scatter[j * dims + i]);
  });

  it('gives the empty moments for no rows', async () => {
    expect(await blockMoments({ data: new Float32Array(0), rows: 0, dims: 3 })).toEqual(emptyMoments(3));
  });

  it('rejects a block whose data is too short', async () => {
    await expect(blockMoments({ data: new Float32Array(5), rows: 2, dims: 3 })).rejects.toThrow(RangeError);
  });
});

describe('mergeMomentsInto (the reference merge, test/support/reference-moments.ts)', () => {
  it('merging the moments of two halves gives those of the whole', async () => {
    const data = features(40, 5);
    const whole = await blockMoments({ data, rows: 40, dims: 5 });
    const merged = mergeMomentsInto(
      await blockMoments({ data: data.subarray(0, 15 * 5), rows: 15, dims: 5 }),
      await blockMoments({ data: data.subarray(15 * 5), rows: 25, dims: 5 }),
    );
    expect(merged.count).toBe(40);
    expect(largestRelativeDifference(merged.mean, whole.mean)).toBeLessThan(1e-14);
    expect(largestRelativeDifference(merged.scatter, whole.scatter)).toBeLessThan(1e-12);
  });

  it('refuses moments of another dimension', () => {
    expect(() => mergeMomentsInto(emptyMoments(2), emptyMoments(3))).toThrow(RangeError);
  });
});

describe('NativeScatterAccumulator', () => {
  it('agrees with ScatterAccumulator to float64 rounding, however the rows are sharded', async () => {
    const rows = 301;
    const dims = 23;
    const data = features(rows, dims, 3);
    const reference = new ScatterAccumulator(dims);
    reference.addRows(data, rows);
    const expected = reference.moments();

    const oneShard = new NativeScatterAccumulator(dims, { blockRows: 64 });
    await oneShard.addRows(data, rows);
    const sharded = new NativeScatterAccumulator(dims, { blockRows: 64 });
    for (const [first, count] of [
      [0, 10],
      [10, 100],
      [110, 191],
    ]) {
      await sharded.addRows(data.subarray(first * dims), count);
    }
    const a = await oneShard.moments();
    const b = await sharded.moments();
    expect(a.count).toBe(rows);
    expect(largestRelativeDifference(a.mean, expected.mean)).toBeLessThan(1e-14);
    expect(largestRelativeDifference(a.scatter, expected.scatter)).toBeLessThan(1e-12);
    // Blocks are cut by row count, so the sharding does not change a bit.
    expect(b.scatter).toEqual(a.scatter);
    expect(b.mean).toEqual(a.mean);
  });

  it("merges each block as mergeMomentsInto merges the block's moments, and its scatter is exactly symmetric", async () => {
    const rows = 200;
    const dims = 19;
    const data = features(rows, dims, 11);
    const accumulator = new NativeScatterAccumulator(dims, { blockRows: 64 });
    await accumulator.addRows(data, rows);
    const merged = emptyMoments(dims);
    for (let first = 0; first < rows; first += 64) {
      const count = Math.min(64, rows - first);
      mergeMomentsInto(merged, await blockMoments({ data: data.subarray(first * dims, (first + count) * dims), rows: count, dims }));
    }
    const result = await accumulator.moments();
    expect(result.count).toBe(rows);
    expect(result.mean).toEqual(merged.mean);
    // The upper triangle bit for bit; the lower one is its mirror.
    for (let i = 0; i < dims; i++) {
      for (let j = 0; j < dims; j++) expect(result.scatter[i * dims + j]).toBe(merged.scatter[Math.min(i, j) * dims + Math.max(i, j)]);
    }
  });

  it('takes rows one at a time, from any array, as float32 rows of the same blocks', async () => {
    const rows = 150;
    const dims = 7;
    const data = features(rows, dims, 5);
    const blocks = new NativeScatterAccumulator(dims, { blockRows: 64 });
    await blocks.addRows(data, rows);
    const single = new NativeScatterAccumulator(dims, { blockRows: 64 });
    // Float64 values a float32 rounding away from the rows: the block holds the same float32 rows.
    const wider = Float64Array.from(data, (value) => value + value * 2 ** -30);
    for (let r = 0; r < rows; r++) await single.addRow(wider, r * dims);
    expect(single.rows).toBe(rows);
    expect(await single.moments()).toEqual(await blocks.moments());
    await expect(single.addRow(wider, rows * dims - 3)).rejects.toThrow(/no row of 7/);
  });
});

describe("the moments stage's float32 products", () => {
  // Rows of a few latent factors of decreasing spread on a large offset, plus noise: a spectrum
  // like the CNN features', whose leading components the product's rounding must not move.
  function factorRows(rows: number, dims: number, factors: number): Float32Array {
    const random = seeded(11);
    const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    const loadings = Array.from({ length: factors * dims }, normal);
    const data = new Float32Array(rows * dims);
    for (let r = 0; r < rows; r++) {
      const latent = Array.from({ length: factors }, (_, f) => normal() * 2 ** -f);
      for (let d = 0; d < dims; d++) {
        let value = 5 + 0.01 * normal();
        for (let f = 0; f < factors; f++) value += latent[f] * loadings[f * dims + d];
        data[r * dims + d] = value;
      }
    }
    return data;
  }

  // The product's rounding moves a component by about 1e-7 of the scatter over its eigengap: the
  // leading ones stay within 1e-6; those in the noise floor (here below 0.5% of the first
  // eigenvalue, the 7th and 8th) move by up to 1e-5, as the float32 features' own rounding moves them.
  it('fit the leading components of float64 products to within 1e-6, and the explained variance ratios to 1e-8', async () => {
    const [rows, dims] = [5000, 96];
    const data = factorRows(rows, dims, 12);
    const fitOf = async (precision: 'float32' | 'float64') => {
      const accumulator = new NativeScatterAccumulator(dims, { precision, blockRows: 1024 });
      await accumulator.addRows(data, rows);
      return fitPca(await accumulator.moments(), { components: 8 });
    };
    const [single, double] = [await fitOf('float32'), await fitOf('float64')];
    expect(single.k).toBe(8);
    const leading = Array.from(double.eigenvalues.slice(0, 8)).filter((value) => value >= 0.005 * double.eigenvalues[0]).length;
    expect(leading).toBe(6);
    expect(largestRelativeDifference(single.components.subarray(0, leading * dims), double.components.subarray(0, leading * dims))).toBeLessThan(1e-6);
    expect(largestRelativeDifference(single.components, double.components)).toBeLessThan(1e-4);
    for (let c = 0; c < 8; c++) expect(Math.abs(single.explainedVarianceRatio[c] - double.explainedVarianceRatio[c])).toBeLessThan(1e-8);
    expect(Array.from(single.mean)).toEqual(Array.from(double.mean));
  });
});

describe('NativeProjector', () => {
  it('gives PcaProjector scores to float64 rounding', async () => {
    const rows = 120;
    const dims = 16;
    const data = features(rows, dims, 5);
    const accumulator = new ScatterAccumulator(dims);
    accumulator.addRows(data, rows);
    const fit = fitPca(accumulator.moments(), { components: 5 });
    const expected = new PcaProjector(fit).projectRows(data, rows);
    const scores = await new NativeProjector(fit).projectRows({ data, rows, dims });
    expect(scores.length).toBe(rows * 5);
    expect(largestRelativeDifference(scores, expected)).toBeLessThan(1e-12);
    const single = await new NativeProjector(fit, { precision: 'float32' }).projectRows({ data, rows, dims });
    expect(largestRelativeDifference(single, expected)).toBeLessThan(1e-5);
  });

  it('rejects rows of another dimension', async () => {
    const fit = { dim: 2, k: 1, mean: Float64Array.of(0, 0), scale: Float64Array.of(1, 1), components: Float64Array.of(1, 0) };
    await expect(new NativeProjector(fit).projectRows({ data: new Float32Array(3), rows: 1, dims: 3 })).rejects.toThrow(RangeError);
  });
});

describe('NativeNeighbourSearch', () => {
  it('finds the known neighbours of a toy set, equal distances in the order the references were added', async () => {
    // References on a line at 0, 1, 2, 3 and a second one at 1 (index 4); query 1.25.
    const search = new NativeNeighbourSearch({ data: Float32Array.of(0, 1, 2, 3, 1), rows: 5, dims: 1 });
    const { indices, distances } = await search.search({ data: Float64Array.of(1.25), rows: 1, dims: 1 }, 3);
    expect(Array.from(indices)).toEqual([1, 4, 2]);
    expect(Array.from(distances)).toEqual([0.0625, 0.0625, 0.5625]);
  });

  it('pads with -1 when there are fewer references than k', async () => {
    const search = new NativeNeighbourSearch({ data: Float32Array.of(0, 0, 3, 4), rows: 2, dims: 2 }, { offset: 10 });
    const { indices, distances } = await search.search({ data: Float32Array.of(0, 0), rows: 1, dims: 2 }, 3);
    expect(Array.from(indices)).toEqual([10, 11, -1]);
    expect(Array.from(distances)).toEqual([0, 25, Number.POSITIVE_INFINITY]);
  });

  it('agrees with KnnReferences: same nearest reference and distance for every query', async () => {
    const dims = 12;
    const random = seeded(9);
    const references = Float32Array.from({ length: 400 * dims }, () => random() * 10);
    const queries = Float64Array.from({ length: 150 * dims }, () => random() * 10);
    const knn = new KnnReferences(dims, 400);
    for (let r = 0; r < 400; r++) knn.add(`label ${r % 7}`, references, r * dims);
    const lists = await new NativeNeighbourSearch({ data: references, rows: 400, dims }, { queryBlockRows: 64 }).search({ data: queries, rows: 150, dims }, 5);
    for (let q = 0; q < 150; q++) {
      const prediction = knn.predict(queries, 5, { offset: q * dims })!;
      expect(lists.indices[q * 5]).toBe(prediction.nearest);
      expect(Math.sqrt(lists.distances[q * 5])).toBe(prediction.distance);
    }
  });

  it('votes as KnnReferences.predict does: label, distance and nearest for every query, ties included', async () => {
    const dims = 4;
    const random = seeded(17);
    // Small integer coordinates and 3 labels: ties in votes and in distances are common.
    const references = Float32Array.from({ length: 250 * dims }, () => Math.round(random() * 3));
    const queries = Float32Array.from({ length: 80 * dims }, () => Math.round(random() * 3));
    const labels = ['apple', 'banana', 'cherry'];
    const referenceLabels = Int32Array.from({ length: 250 }, () => Math.floor(random() * 3));
    const knn = new KnnReferences(dims, 250);
    for (let r = 0; r < 250; r++) knn.add(labels[referenceLabels[r]], references, r * dims);
    // The label table follows first appearance in KnnReferences; voteNeighbours takes any table.
    for (const k of [1, 4, 7]) {
      const lists = await new NativeNeighbourSearch({ data: references, rows: 250, dims }).search({ data: queries, rows: 80, dims }, k);
      const predictions = voteNeighbours(lists, referenceLabels, labels);
      for (let q = 0; q < 80; q++) {
        const { share, ...prediction } = predictions[q];
        expect(prediction).toEqual(knn.predict(queries, k, { offset: q * dims }));
        // The winner's share of the k votes.
        expect(share * k).toBeCloseTo(Math.round(share * k), 9);
        expect(share).toBeGreaterThan(0);
        expect(share).toBeLessThanOrEqual(1);
      }
    }
  });

  it('merging the lists of reference parts equals one search over all of them', async () => {
    const dims = 8;
    const random = seeded(11);
    const references = Float32Array.from({ length: 300 * dims }, () => Math.round(random() * 4));
    const queries = Float32Array.from({ length: 60 * dims }, () => Math.round(random() * 4));
    const block = { data: queries, rows: 60, dims };
    const whole = await new NativeNeighbourSearch({ data: references, rows: 300, dims }).search(block, 7);
    const cuts = [0, 90, 91, 300];
    const parts = [];
    for (let p = 0; p + 1 < cuts.length; p++) {
      const part = { data: references.subarray(cuts[p] * dims, cuts[p + 1] * dims), rows: cuts[p + 1] - cuts[p], dims };
      parts.push(await new NativeNeighbourSearch(part, { offset: cuts[p] }).search(block, 7));
    }
    const merged = mergeNeighbourLists(parts);
    // Small integer coordinates: many equal distances, so the order of ties is exercised too.
    expect(merged.indices).toEqual(whole.indices);
    expect(merged.distances).toEqual(whole.distances);
  });

  it('falls back to the exact scan when the candidates cannot settle the k-th neighbour, with the same result', async () => {
    const dims = 6;
    const random = seeded(13);
    const references = Float32Array.from({ length: 200 * dims }, () => random());
    const queries = Float32Array.from({ length: 40 * dims }, () => random());
    const block = { data: queries, rows: 40, dims };
    const usual = new NativeNeighbourSearch({ data: references, rows: 200, dims });
    // No extra candidates: the k-th candidate's own rounding never leaves a margin.
    const tight = new NativeNeighbourSearch({ data: references, rows: 200, dims }, { extraCandidates: 0 });
    const expected = await usual.search(block, 4);
    const actual = await tight.search(block, 4);
    expect(usual.fallbacks).toBe(0);
    expect(tight.fallbacks).toBe(40);
    expect(actual).toEqual(expected);
  });
});

describe('nearestCentres (the k-means assignment on the native kernel)', () => {
  it("gives each row its nearest centre's index, as a scan of every centre does", async () => {
    const next = seeded(7);
    const [rows, centres, dims] = [300, 8, 12];
    const data = Float64Array.from({ length: rows * dims }, () => next() * 4 - 2);
    const means = Float64Array.from({ length: centres * dims }, () => next() * 4 - 2);
    const expected = Array.from({ length: rows }, (_, r) => {
      let best = 0;
      let bestDistance = Number.POSITIVE_INFINITY;
      for (let c = 0; c < centres; c++) {
        let distance = 0;
        for (let d = 0; d < dims; d++) distance += (data[r * dims + d] - means[c * dims + d]) ** 2;
        if (distance < bestDistance) [best, bestDistance] = [c, distance];
      }
      return best;
    });
    expect(Array.from(await nearestCentres({ data, rows, dims }, { data: means, rows: centres, dims }))).toEqual(expected);
  });

  it('takes the lower index between two equal centres, and checks its shapes', async () => {
    const centres = { data: Float64Array.of(1, 1, 0, 0, 1, 1), rows: 3, dims: 2 };
    expect(Array.from(await nearestCentres({ data: Float64Array.of(0.9, 1.1, 0, 0.1), rows: 2, dims: 2 }, centres))).toEqual([0, 1]);
    expect(await nearestCentres({ data: new Float64Array(0), rows: 0, dims: 2 }, centres)).toEqual(new Int32Array(0));
    await expect(nearestCentres({ data: Float64Array.of(1, 2, 3), rows: 1, dims: 3 }, centres)).rejects.toThrow(/rows of 3 values, centres of 2/);
    await expect(nearestCentres({ data: Float64Array.of(1, 2), rows: 1, dims: 2 }, { data: new Float64Array(0), rows: 0, dims: 2 })).rejects.toThrow(
      /no centres/,
    );
  });
});
