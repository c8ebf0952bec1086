/**
 * The analysis's numeric kernels on onnxruntime (lambdas/analysis/) against the JavaScript they
 * would replace, side by side on the same synthetic data, with the precision each reaches.
 *
 *   npx tsx bench/native-kernels.ts                        # every case at the sizes below
 *   npx tsx bench/native-kernels.ts --case knn --threads 2
 *   npx tsx bench/native-kernels.ts --case eigen --k 100
 *   npx tsx bench/native-kernels.ts --case knn --query-block 64   # queries per GEMM + TopK
 *
 * Cases (d = --dim, 1,376 by default: the product featurizer's length):
 * - `scatter`: count, mean and centred scatter of --rows rows (20,000): `ScatterAccumulator`
 *   (streaming-pca.ts) on --js-rows of them (figures scaled to --rows: the cost is linear in rows)
 *   against `NativeScatterAccumulator` in float64 and float32 on all of them; precision is the
 *   largest relative difference of the covariance from the JS float64 one over the --js-rows
 *   rows, and how the top --k components and explained variance ratios of the two correlation
 *   matrices (topEigen) differ.
 * - `project`: --rows rows standardised and projected on --k components: `PcaProjector.projectRows`
 *   and ml-matrix's `mmul` against `NativeProjector` (float64, float32).
 * - `knn`: --queries (17,000) queries against --references (53,000) references of --knn-dims (100)
 *   PCA-like scores (100 class centres, decaying variance per component): `KnnReferences.predict`
 *   on --js-queries of them (scaled to --queries) against `NativeNeighbourSearch` on all of them,
 *   in one part and in two merged parts; the native nearest neighbour and its distance must equal
 *   the JS one on every query both ran.
 * - `eigen`: the top --k eigenpairs of the correlation matrix of --eigen-rows rows: ml-pca's full
 *   decomposition (what fitPca runs) against topEigen; components (signs aligned), eigenvalues
 *   and explained variance ratios compared.
 *
 * Times are wall clock and the process's CPU time (user + system): the machine is shared, and CPU
 * time is what a Lambda function with the same thread count would spend. Native kernels run
 * with --threads intra-op threads (1 by default).
 */
import { Matrix } from 'ml-matrix';
import { PCA } from 'ml-pca';
import { KnnReferences } from '../lambdas/analysis/knn';
import { FeatureMoments, fitPca, PcaProjector, ScatterAccumulator, standardisedCorrelation } from '../lambdas/analysis/streaming-pca';
import { KernelPrecision, mergeNeighbourLists, NativeNeighbourSearch, NativeProjector, NativeScatterAccumulator } from '../lambdas/analysis/native-kernels';
import { kernelSession, ort } from '../lambdas/analysis/kernel-graphs';
import { topEigen } from '../lambdas/analysis/top-eigen';
import { largestRelativeDifference } from '../lambdas/common/float-arrays';
import { standardNormal, xorshiftUniform } from '../lambdas/common/seeded-random';
import { argValue, load, machine } from './bench-support';

const argv = process.argv.slice(2);
const numberArg = (name: string, fallback: number) => Number(argValue(argv, name) ?? fallback);
const options = {
  case: argValue(argv, 'case') ?? 'all',
  threads: numberArg('threads', 1),
  dim: numberArg('dim', 1376),
  rows: numberArg('rows', 20_000),
  jsRows: numberArg('js-rows', 4_000),
  k: numberArg('k', 100),
  queries: numberArg('queries', 17_000),
  jsQueries: numberArg('js-queries', 1_000),
  references: numberArg('references', 53_000),
  knnDims: numberArg('knn-dims', 100),
  neighbours: numberArg('neighbours', 5),
  eigenRows: numberArg('eigen-rows', 5_000),
  queryBlock: numberArg('query-block', 256),
};

/** Seeded standard normal values. */
function gaussian(seed: number): () => number {
  return standardNormal(xorshiftUniform(seed));
}

/**
 * Feature rows like pooled CNN features: 300 latent factors with a decaying spectrum (factor j
 * has spread 3 / j^0.8) through a random basis, a common offset, uniform noise, clipped at 0 as
 * ReLU outputs are. The factors-times-basis product runs on the native matmul: in JS it would take
 * longer than the cases it feeds.
 */
async function featureRows(rows: number, dim: number, seed = 7): Promise<Float32Array> {
  const random = gaussian(seed);
  const rank = Math.min(300, dim);
  const basis = Float32Array.from({ length: rank * dim }, random);
  const factors = new Float32Array(rows * rank);
  for (let r = 0; r < rows; r++) for (let j = 0; j < rank; j++) factors[r * rank + j] = (3 * random()) / Math.pow(j + 1, 0.8);
  const session = await kernelSession('matmul', { precision: 'float32', intraOpNumThreads: options.threads });
  const product = await session.run({ a: new ort.Tensor('float32', factors, [rows, rank]), b: new ort.Tensor('float32', basis, [rank, dim]) });
  const data = product.c.data as Float32Array;
  let state = seed;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = Math.max(0, data[i] + 2 + 0.6 * (state / 4294967296 - 0.5));
  }
  return data;
}

interface Timing {
  wallMs: number;
  cpuMs: number;
}

async function timed<T>(work: () => Promise<T> | T): Promise<{ value: T } & Timing> {
  const start = performance.now();
  const cpu = process.cpuUsage();
  const value = await work();
  const used = process.cpuUsage(cpu);
  return { value, wallMs: performance.now() - start, cpuMs: (used.user + used.system) / 1000 };
}

function row(name: string, timing: Timing, scale = 1, extra = ''): void {
  const scaled =
    scale === 1 ? '' : ` (measured ${(timing.wallMs / 1000).toFixed(2)} s wall / ${(timing.cpuMs / 1000).toFixed(2)} s CPU, x ${scale.toFixed(2)})`;
  console.log(
    `  ${name.padEnd(44)} ${((timing.wallMs * scale) / 1000).toFixed(2).padStart(7)} s wall ${((timing.cpuMs * scale) / 1000).toFixed(2).padStart(7)} s CPU${scaled}${extra ? `  ${extra}` : ''}`,
  );
}

/** Largest difference of eigenvalue ratios and of components (signs aligned) between two top-k results. */
function compareTop(a: { values: Float64Array; vectors: Float64Array; trace: number }, b: typeof a, k: number, d: number) {
  let ratio = 0;
  let component = 0;
  for (let c = 0; c < k; c++) {
    ratio = Math.max(ratio, Math.abs(a.values[c] / a.trace - b.values[c] / b.trace));
    let dot = 0;
    for (let f = 0; f < d; f++) dot += a.vectors[c * d + f] * b.vectors[c * d + f];
    const sign = dot < 0 ? -1 : 1;
    for (let f = 0; f < d; f++) component = Math.max(component, Math.abs(a.vectors[c * d + f] - sign * b.vectors[c * d + f]));
  }
  return { ratio, component };
}

function covariance(moments: FeatureMoments): Float64Array {
  return moments.scatter.map((value) => value / moments.count);
}

async function scatterCase(): Promise<void> {
  const { dim, rows, jsRows, threads, k } = options;
  console.log(`scatter: ${rows} rows x ${dim} features (JS on ${jsRows} rows, scaled x ${(rows / jsRows).toFixed(2)})`);
  const data = await featureRows(rows, dim);
  const js = await timed(() => {
    const accumulator = new ScatterAccumulator(dim);
    accumulator.addRows(data, jsRows);
    return accumulator.moments();
  });
  row('ScatterAccumulator (JS, float64)', js, rows / jsRows);
  const reference = covariance(js.value);
  const { correlation: referenceCorrelation } = standardisedCorrelation(js.value);
  const referenceTop = await topEigen(referenceCorrelation, { k, intraOpNumThreads: threads });
  for (const precision of ['float64', 'float32'] as KernelPrecision[]) {
    const full = await timed(async () => {
      const accumulator = new NativeScatterAccumulator(dim, { precision, intraOpNumThreads: threads });
      await accumulator.addRows(data, rows);
      return accumulator.moments();
    });
    // The same rows as the JS run, for the precision.
    const accumulator = new NativeScatterAccumulator(dim, { precision, intraOpNumThreads: threads });
    await accumulator.addRows(data, jsRows);
    const moments = await accumulator.moments();
    const top = await topEigen(standardisedCorrelation(moments).correlation, { k, intraOpNumThreads: threads });
    const { ratio, component } = compareTop(top, referenceTop, k, dim);
    row(
      `NativeScatterAccumulator (${precision})`,
      full,
      1,
      `covariance rel. diff ${largestRelativeDifference(covariance(moments), reference).toExponential(1)}; top ${k}: components ${component.toExponential(1)}, variance ratios ${ratio.toExponential(1)}`,
    );
  }
}

async function projectCase(): Promise<void> {
  const { dim, rows, threads, k } = options;
  console.log(`project: ${rows} rows x ${dim} features on ${k} components`);
  const data = await featureRows(rows, dim);
  // A fit on the first 2,000 rows: only its shape matters for the timing.
  const accumulator = new ScatterAccumulator(dim);
  accumulator.addRows(data, 2000);
  const fit = fitPca(accumulator.moments(), { components: k });
  const js = await timed(() => new PcaProjector(fit).projectRows(data, rows));
  row('PcaProjector.projectRows (JS, float64)', js);
  const centred = new Matrix(rows, dim);
  for (let r = 0; r < rows; r++) for (let f = 0; f < dim; f++) centred.set(r, f, (data[r * dim + f] - fit.mean[f]) / fit.scale[f]);
  const weights = new Matrix(dim, fit.k);
  for (let c = 0; c < fit.k; c++) for (let f = 0; f < dim; f++) weights.set(f, c, fit.components[c * dim + f]);
  const mlMatrix = await timed(() => centred.mmul(weights));
  row('ml-matrix mmul (standardised rows ready)', mlMatrix, 1, `rel. diff ${largestRelativeDifference(mlMatrix.value.to1DArray(), js.value).toExponential(1)}`);
  for (const precision of ['float64', 'float32'] as KernelPrecision[]) {
    const projector = new NativeProjector(fit, { precision, intraOpNumThreads: threads });
    await projector.projectRows({ data, rows: 10, dims: dim });
    const native = await timed(async () => {
      const scores = new Float64Array(rows * fit.k);
      for (let first = 0; first < rows; first += 2048) {
        const count = Math.min(2048, rows - first);
        scores.set(await projector.projectRows({ data: data.subarray(first * dim, (first + count) * dim), rows: count, dims: dim }), first * fit.k);
      }
      return scores;
    });
    row(`NativeProjector (${precision}, blocks of 2,048)`, native, 1, `rel. diff ${largestRelativeDifference(native.value, js.value).toExponential(1)}`);
  }
}

/** PCA-like scores: 100 class centres, component j spread ~ j^-0.4 (variance j^-0.8), rows near a centre. */
function scoreRows(rows: number, dims: number, seed: number): Float32Array {
  const centresRandom = gaussian(1);
  const centres = Float64Array.from({ length: 100 * dims }, (_, i) => (4 * centresRandom()) / Math.pow((i % dims) + 1, 0.4));
  const random = gaussian(seed);
  const data = new Float32Array(rows * dims);
  for (let r = 0; r < rows; r++) {
    const centre = Math.floor(Math.abs(random() * 1e6)) % 100;
    for (let j = 0; j < dims; j++) data[r * dims + j] = centres[centre * dims + j] + (2 * random()) / Math.pow(j + 1, 0.4);
  }
  return data;
}

async function knnCase(): Promise<void> {
  const { queries, jsQueries, references, knnDims: dims, neighbours: k, threads } = options;
  console.log(
    `knn: ${queries} queries x ${references} references x ${dims} dims, k = ${k} (JS on ${jsQueries} queries, scaled x ${(queries / jsQueries).toFixed(1)})`,
  );
  const referenceData = scoreRows(references, dims, 2);
  const queryData = Float64Array.from(scoreRows(queries, dims, 3));
  const knn = new KnnReferences(dims, references);
  for (let r = 0; r < references; r++) knn.add(`class ${r % 100}`, referenceData, r * dims);
  const js = await timed(() => {
    const nearest: { index: number; distance: number }[] = [];
    for (let q = 0; q < jsQueries; q++) {
      const prediction = knn.predict(queryData, k, { offset: q * dims })!;
      nearest.push({ index: prediction.nearest, distance: prediction.distance });
    }
    return nearest;
  });
  row('KnnReferences.predict (JS)', js, queries / jsQueries);
  const agree = (lists: { indices: Int32Array; distances: Float64Array }) =>
    js.value.every(({ index, distance }, q) => lists.indices[q * k] === index && Math.sqrt(lists.distances[q * k]) === distance);
  for (const precision of ['float32', 'float64'] as KernelPrecision[]) {
    const search = new NativeNeighbourSearch(
      { data: referenceData, rows: references, dims },
      { precision, intraOpNumThreads: threads, queryBlockRows: options.queryBlock },
    );
    const native = await timed(() => search.search({ data: queryData, rows: queries, dims }, k));
    row(`NativeNeighbourSearch (${precision} GEMM + TopK)`, native, 1, `same nearest as JS: ${agree(native.value)}; exact fallbacks ${search.fallbacks}`);
  }
  const half = Math.floor(references / 2);
  const parts = [
    new NativeNeighbourSearch(
      { data: referenceData.subarray(0, half * dims), rows: half, dims },
      { intraOpNumThreads: threads, queryBlockRows: options.queryBlock },
    ),
    new NativeNeighbourSearch(
      { data: referenceData.subarray(half * dims), rows: references - half, dims },
      { offset: half, intraOpNumThreads: threads, queryBlockRows: options.queryBlock },
    ),
  ];
  const merged = await timed(async () => {
    const lists = [];
    for (const part of parts) lists.push(await part.search({ data: queryData, rows: queries, dims }, k));
    return mergeNeighbourLists(lists);
  });
  row('NativeNeighbourSearch, 2 parts merged (float32)', merged, 1, `same nearest as JS: ${agree(merged.value)}`);
}

async function eigenCase(): Promise<void> {
  const { dim, eigenRows, k, threads } = options;
  console.log(`eigen: top ${k} of the ${dim} x ${dim} correlation matrix of ${eigenRows} rows`);
  const accumulator = new NativeScatterAccumulator(dim, { intraOpNumThreads: threads });
  await accumulator.addRows(await featureRows(eigenRows, dim), eigenRows);
  const { correlation } = standardisedCorrelation(await accumulator.moments());
  const full = await timed(() => new PCA(Matrix.from1DArray(dim, dim, correlation), { isCovarianceMatrix: true }));
  row('ml-pca full decomposition (JS)', full);
  const values = Float64Array.from(full.value.getEigenvalues());
  const eigenvectors = full.value.getEigenvectors();
  const vectors = new Float64Array(k * dim);
  for (let c = 0; c < k; c++) for (let f = 0; f < dim; f++) vectors[c * dim + f] = eigenvectors.get(f, c);
  const trace = values.reduce((sum, value) => sum + value, 0);
  // The first call creates its sessions and warms the JIT only when no case ran before it (--case eigen).
  for (const run of ['first', 'second']) {
    const top = await timed(() => topEigen(correlation, { k, intraOpNumThreads: threads }));
    const { ratio, component } = compareTop(top.value, { values, vectors, trace }, k, dim);
    let eigenvalue = 0;
    for (let c = 0; c < k; c++) eigenvalue = Math.max(eigenvalue, Math.abs(top.value.values[c] - values[c]) / values[0]);
    row(
      `topEigen, ${run}`,
      top,
      1,
      `${top.value.method}, ${top.value.iterations} iterations, ${top.value.products} products; components ${component.toExponential(1)}, eigenvalues ${eigenvalue.toExponential(1)} (rel. to the largest), ratios ${ratio.toExponential(1)}, largest angle bound ${Math.max(...top.value.angleBounds).toExponential(1)}`,
    );
  }
}

async function main(): Promise<void> {
  const { cores, cpuModel, node } = machine();
  console.log(`${cpuModel}, ${cores} cores, Node ${node}, onnxruntime intra-op threads ${options.threads}; ${load()}`);
  const cases: Record<string, () => Promise<void>> = { scatter: scatterCase, project: projectCase, knn: knnCase, eigen: eigenCase };
  for (const [name, run] of Object.entries(cases)) if (options.case === 'all' || options.case === name) await run();
  console.log(load());
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
