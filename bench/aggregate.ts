/**
 * Benchmark of the aggregate step's PCA at Lambda scale: can 100,000 x 1,280 features be
 * aggregated inside one function (15 min, up to 10 GB)?
 *
 *   npx tsx bench/aggregate.ts                      # 10k/50k/100k rows, stream vs ml-pca, then the handler at 10k
 *   npx tsx bench/aggregate.ts --dim 128            # the same at the product featurizer's length
 *   npx tsx bench/aggregate.ts --case stream --rows 100000 --dim 1280
 *   npx tsx bench/aggregate.ts --case ml-pca --rows 10000 --dim 1280
 *   npx tsx bench/aggregate.ts --case eigen --rows 5000 --dim 1280      # EVD vs ml-pca on the correlation matrix
 *   npx tsx bench/aggregate.ts --case handler --rows 10000 --dim 1280   # aggregateRun against s3rver
 *
 * Cases:
 * - `stream`: what `aggregateRun` does, minus S3: synthetic shards of `--shard-rows` rows are made
 *   one at a time, encoded and decoded (the shard format), fed to the ScatterAccumulator; then the
 *   fit; then pass 2 regenerates the same shards, projects them and formats CSV rows into a
 *   counting sink. Shard generation is timed apart and left out of the figures.
 * - `ml-pca`: ml-pca's own `new PCA(matrix, { scale: true })` (SVD) on the same data held whole.
 * - `eigen`: the eigen step alone, on the standardised correlation matrix pass 1 of `--rows` rows
 *   gives: ml-matrix's symmetric EVD called directly against ml-pca's
 *   `new PCA(correlation, { isCovarianceMatrix: true })` (the product's fit, which runs that EVD), each run
 *   `--repeat` times in turn; reports both times and the largest difference of eigenvalues and of
 *   the first `--components` components (signs aligned).
 * - `handler`: the real `aggregateRun` against a local S3 server (s3rver on loopback, disk-backed).
 *
 * Each case runs in a fresh child process so its peak RSS (`process.resourceUsage().maxRSS`) is
 * its own.
 */
import { decodeFeatureShard, encodeFeatureShard, ShardHeader } from '../lambdas/bookkeeping/feature-shard';
import { featuresCsvRow } from '../lambdas/outputs/features-csv';
import { fitPca, PcaProjector, ScatterAccumulator, standardisedCorrelation } from '../lambdas/analysis/streaming-pca';
import { spreadSeed, xorshift32 } from '../lambdas/common/seeded-random';
import { SyntheticMapRun } from './synthetic-map-run';
import { ChildResult, load, peakRssMb, runChild } from './bench-support';

interface Options {
  case?: 'stream' | 'ml-pca' | 'eigen' | 'handler';
  rows: number;
  dim: number;
  shardRows: number;
  components: number;
  timeoutMinutes: number;
  repeat: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { rows: 100_000, dim: 1280, shardRows: 500, components: 50, timeoutMinutes: 20, repeat: 2 };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i].replace(/^--/, ''), argv[i + 1]];
    if (name === 'case') options.case = value as Options['case'];
    else if (name === 'rows') options.rows = Number(value);
    else if (name === 'dim') options.dim = Number(value);
    else if (name === 'shard-rows') options.shardRows = Number(value);
    else if (name === 'components') options.components = Number(value);
    else if (name === 'timeout-minutes') options.timeoutMinutes = Number(value);
    else if (name === 'repeat') options.repeat = Number(value);
    else throw new Error(`unknown option --${name}`);
  }
  return options;
}

const LABELS = ['Apple Braeburn', 'Banana', 'Kiwi', 'Lemon', 'Orange', 'Pineapple', 'Raspberry', 'Strawberry', 'Tomato 1', 'Apple Red 1'];
const LATENT = 6;

/**
 * Shard `index` of a synthetic run, the same every time it is asked for: rows are a class centre,
 * a few shared latent factors and noise, non-negative like pooled ReLU features, a few dead
 * (constant zero) channels as real CNN features have.
 */
function syntheticShard(index: number, rows: number, dim: number): { header: ShardHeader; vectors: Float32Array } {
  const next = xorshift32(spreadSeed(index + 1));
  const random = () => next() / 4294967296;
  const vectors = new Float32Array(rows * dim);
  const keys: string[] = [];
  const labels: string[] = [];
  const factor = new Float64Array(LATENT);
  for (let r = 0; r < rows; r++) {
    const row = index * rows + r;
    const label = LABELS[row % LABELS.length];
    keys.push(`input/bench/${label}/${row}_100.jpg`);
    labels.push(label);
    for (let l = 0; l < LATENT; l++) factor[l] = random() - 0.5;
    const c = row % LABELS.length;
    for (let f = 0; f < dim; f++) {
      if (f % 97 === 0) continue; // dead channel
      let value = Math.abs(Math.sin(c * 1.7 + f * 0.37)) * 2 + random() * 0.5;
      for (let l = 0; l < LATENT; l++) value += factor[l] * Math.cos((l + 1) * f * 0.013);
      vectors[r * dim + f] = Math.max(0, value);
    }
  }
  return { header: { featurizer: `synthetic-${dim}`, dim, keys, labels, failed: [], skipped: [] }, vectors };
}

function shardCount(o: Options): number {
  return Math.ceil(o.rows / o.shardRows);
}
function rowsOfShard(o: Options, s: number): number {
  return Math.min(o.shardRows, o.rows - s * o.shardRows);
}

async function runStream(o: Options): Promise<Record<string, unknown>> {
  const baselineRss = peakRssMb();
  let generateMs = 0;
  const shard = (s: number) => {
    const t = performance.now();
    const bytes = encodeFeatureShard(syntheticShard(s, rowsOfShard(o, s), o.dim));
    generateMs += performance.now() - t;
    return decodeFeatureShard(bytes);
  };
  const started = performance.now();
  const accumulator = new ScatterAccumulator(o.dim);
  for (let s = 0; s < shardCount(o); s++) {
    const { header, vectors } = shard(s);
    for (let r = 0; r < header.keys.length; r++) accumulator.addRow(vectors, r * o.dim);
  }
  const moments = accumulator.moments();
  const pass1Ms = performance.now() - started - generateMs;

  let t = performance.now();
  const fit = fitPca(moments, { components: o.components });
  const fitMs = performance.now() - t;

  const generatedBefore = generateMs;
  t = performance.now();
  const projector = new PcaProjector(fit);
  let csvBytes = 0;
  for (let s = 0; s < shardCount(o); s++) {
    const { header, vectors } = shard(s);
    const scores = projector.projectRows(vectors, header.keys.length);
    for (let r = 0; r < header.keys.length; r++) {
      csvBytes += featuresCsvRow(header.keys[r], header.labels[r], undefined, scores.subarray(r * fit.k, (r + 1) * fit.k), fit.k).length;
    }
  }
  const pass2Ms = performance.now() - t - (generateMs - generatedBefore);
  return {
    case: 'stream',
    rows: o.rows,
    dim: o.dim,
    k: fit.k,
    pass1_s: +(pass1Ms / 1000).toFixed(1),
    fit_s: +(fitMs / 1000).toFixed(1),
    pass2_s: +(pass2Ms / 1000).toFixed(1),
    total_s: +((pass1Ms + fitMs + pass2Ms) / 1000).toFixed(1),
    explainedVariance: +fit.explainedVariance.toFixed(4),
    csvMB: +(csvBytes / 1e6).toFixed(1),
    syntheticDataGeneration_s: +(generateMs / 1000).toFixed(1),
    baselineRssMB: baselineRss,
    peakRssMB: peakRssMb(),
  };
}

async function runMlPca(o: Options): Promise<Record<string, unknown>> {
  // Loaded here so the stream case's RSS does not include it.
  const { PCA } = await import('ml-pca');
  const { Matrix } = await import('ml-matrix');
  const matrix = new Matrix(o.rows, o.dim);
  for (let s = 0; s < shardCount(o); s++) {
    const { header, vectors } = syntheticShard(s, rowsOfShard(o, s), o.dim);
    for (let r = 0; r < header.keys.length; r++) {
      const row = s * o.shardRows + r;
      for (let f = 0; f < o.dim; f++) matrix.set(row, f, vectors[r * o.dim + f]);
    }
  }
  const dataRss = peakRssMb();
  const started = performance.now();
  // ignoreZeroVariance: the synthetic data has dead channels, as CNN features do.
  const pca = new PCA(matrix, { scale: true, ignoreZeroVariance: true });
  const fitMs = performance.now() - started;
  const ratios = pca.getExplainedVariance();
  let explained = 0;
  for (let c = 0; c < Math.min(o.components, ratios.length); c++) explained += ratios[c];
  return {
    case: 'ml-pca new PCA(matrix, {scale: true})',
    rows: o.rows,
    dim: o.dim,
    fit_s: +(fitMs / 1000).toFixed(1),
    explainedVariance: +explained.toFixed(4),
    rssWithDataMB: dataRss,
    peakRssMB: peakRssMb(),
  };
}

async function runEigen(o: Options): Promise<Record<string, unknown>> {
  const { EVD, Matrix } = await import('ml-matrix');
  const { PCA } = await import('ml-pca');
  const accumulator = new ScatterAccumulator(o.dim);
  for (let s = 0; s < shardCount(o); s++) {
    const { header, vectors } = syntheticShard(s, rowsOfShard(o, s), o.dim);
    accumulator.addRows(vectors, header.keys.length);
  }
  const { correlation } = standardisedCorrelation(accumulator.moments());
  const d = o.dim;
  // Both as descending eigenvalues and the matching eigenvectors as columns.
  const viaEvd = () => {
    const evd = new EVD(Matrix.from1DArray(d, d, correlation), { assumeSymmetric: true });
    const values = evd.realEigenvalues.slice().reverse();
    const vectors = evd.eigenvectorMatrix;
    return { values, vector: (c: number, f: number) => vectors.get(f, d - 1 - c) };
  };
  const viaMlPca = () => {
    const pca = new PCA(Matrix.from1DArray(d, d, correlation), { isCovarianceMatrix: true });
    const vectors = pca.getEigenvectors();
    return { values: pca.getEigenvalues(), vector: (c: number, f: number) => vectors.get(f, c) };
  };
  const times = { evd: [] as number[], mlPca: [] as number[] };
  let evd = viaEvd();
  let mlPca = viaMlPca();
  for (let i = 0; i < o.repeat; i++) {
    for (const [name, run] of i % 2 === 0
      ? ([
          ['evd', viaEvd],
          ['mlPca', viaMlPca],
        ] as const)
      : ([
          ['mlPca', viaMlPca],
          ['evd', viaEvd],
        ] as const)) {
      const t = performance.now();
      const result = run();
      times[name].push(+((performance.now() - t) / 1000).toFixed(2));
      if (name === 'evd') evd = result;
      else mlPca = result;
    }
  }
  let valueDiff = 0;
  for (let c = 0; c < d; c++) valueDiff = Math.max(valueDiff, Math.abs(evd.values[c] - mlPca.values[c]));
  let componentDiff = 0;
  for (let c = 0; c < Math.min(o.components, d); c++) {
    let dot = 0;
    for (let f = 0; f < d; f++) dot += evd.vector(c, f) * mlPca.vector(c, f);
    const sign = dot < 0 ? -1 : 1;
    for (let f = 0; f < d; f++) componentDiff = Math.max(componentDiff, Math.abs(evd.vector(c, f) - sign * mlPca.vector(c, f)));
  }
  return {
    case: 'eigen: ml-matrix EVD vs ml-pca isCovarianceMatrix',
    rows: o.rows,
    dim: d,
    components: o.components,
    evd_s: times.evd,
    mlPca_s: times.mlPca,
    maxEigenvalueDiff: valueDiff,
    maxComponentDiff: componentDiff,
    peakRssMB: peakRssMb(),
  };
}

async function runHandler(o: Options): Promise<Record<string, unknown>> {
  const { startLocalS3Server } = await import('../local/emulator/s3/s3-server');
  const { aggregateRun } = await import('../lambdas/aggregate/aggregate-run');
  const bucket = 'bench-aggregate';
  const server = await startLocalS3Server({ buckets: [bucket] });
  try {
    const runId = 'bench';
    const mapRun = new SyntheticMapRun(server.client, bucket, runId);
    for (let s = 0; s < shardCount(o); s++) await mapRun.addShard(mapRun.shardKey(s), syntheticShard(s, rowsOfShard(o, s), o.dim));
    const event = await mapRun.finish();
    const before = peakRssMb();
    const started = performance.now();
    const result = await aggregateRun(event, { s3: server.client, settings: { components: o.components } });
    return {
      case: 'handler aggregateRun (s3rver on loopback)',
      rows: result.rows,
      dim: o.dim,
      k: result.components,
      total_s: +((performance.now() - started) / 1000).toFixed(1),
      explainedVariance: +result.explainedVariance.toFixed(4),
      rssBeforeRunMB: before,
      peakRssMB: peakRssMb(),
      note: 'peak RSS includes the in-process s3rver',
    };
  } finally {
    await server.close();
  }
}

export interface AggregateBenchOptions {
  /** Feature lengths: the product featurizer's and a large model's. */
  readonly dims: readonly number[];
  readonly rows: readonly number[];
  readonly components: number;
  /** ml-pca is not started when its time, extrapolated linearly from a smaller N, exceeds this. */
  readonly mlPcaCapMinutes: number;
  readonly timeoutMinutes: number;
}

export interface AggregateBenchRow {
  dim: number;
  rows: number;
  stream: ChildResult;
  mlPca: ChildResult | { skipped: string };
  load: string;
}

/**
 * Streaming PCA vs ml-pca, each (dim, N) side by side (alternating which runs first), each case
 * in its own process. ml-pca's SVD grows with N x dim^2 and holds the whole matrix (and U): once
 * a smaller N shows it would pass the cap, larger N are skipped, and the table says so.
 */
export async function aggregateBench(options: AggregateBenchOptions): Promise<AggregateBenchRow[]> {
  const results: AggregateBenchRow[] = [];
  let turn = 0;
  for (const dim of options.dims) {
    let mlPcaRate: { rows: number; seconds: number } | undefined;
    for (const rows of options.rows) {
      const args = (kind: string) => ['--case', kind, '--rows', String(rows), '--dim', String(dim), '--components', String(options.components)];
      const predicted = mlPcaRate ? (mlPcaRate.seconds * rows) / mlPcaRate.rows : 0;
      const skip =
        predicted > options.mlPcaCapMinutes * 60
          ? `not run: ${mlPcaRate!.rows.toLocaleString('en-US')} rows took ${mlPcaRate!.seconds.toFixed(0)} s, so about ${(predicted / 60).toFixed(0)} min expected (cap ${options.mlPcaCapMinutes} min)`
          : undefined;
      const streamCase = () => runChild(__filename, args('stream'), { timeoutMinutes: options.timeoutMinutes });
      const mlPcaCase = async (): Promise<ChildResult | { skipped: string }> =>
        skip ? { skipped: skip } : runChild(__filename, args('ml-pca'), { timeoutMinutes: options.mlPcaCapMinutes * 2 });
      let stream: ChildResult;
      let mlPca: ChildResult | { skipped: string };
      if (turn++ % 2 === 0) {
        stream = await streamCase();
        mlPca = await mlPcaCase();
      } else {
        mlPca = await mlPcaCase();
        stream = await streamCase();
      }
      if ('fit_s' in mlPca) mlPcaRate = { rows, seconds: Number(mlPca.fit_s) };
      else if ('error' in mlPca) mlPcaRate = { rows, seconds: options.mlPcaCapMinutes * 2 * 60 };
      const row = { dim, rows, stream, mlPca, load: load() };
      console.log(
        `  aggregate ${rows} x ${dim}: stream ${stream.error ?? `${stream.total_s} s`}, ml-pca ${'skipped' in mlPca ? 'skipped' : (mlPca.error ?? `${mlPca.fit_s} s`)}`,
      );
      results.push(row);
    }
  }
  return results;
}

export const DEFAULT_AGGREGATE_OPTIONS: AggregateBenchOptions = {
  dims: [128, 1280],
  rows: [10_000, 50_000, 100_000],
  components: 50,
  mlPcaCapMinutes: 5,
  timeoutMinutes: 20,
};

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  if (options.case) {
    const run = { stream: runStream, 'ml-pca': runMlPca, eigen: runEigen, handler: runHandler }[options.case];
    console.log(JSON.stringify(await run(options)));
    return;
  }
  console.log(`aggregate benchmark: node ${process.version}, ${new Date().toISOString()}, ${load()}`);
  const rows = await aggregateBench({ ...DEFAULT_AGGREGATE_OPTIONS, dims: [options.dim], timeoutMinutes: options.timeoutMinutes });
  for (const row of rows) console.log(JSON.stringify(row));
  console.log(
    JSON.stringify(
      await runChild(__filename, ['--case', 'handler', '--rows', '10000', '--dim', String(options.dim)], { timeoutMinutes: options.timeoutMinutes }),
    ),
  );
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
