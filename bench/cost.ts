/**
 * AWS cost and wall-time model of one run, from figures measured by the other benchmarks (per-image
 * CPU time of the featurize handler, the streaming PCA's time) and the deployed defaults
 * (lib/config.ts). Every price and assumption is listed with the result, so the table can be
 * redone when one of them is wrong.
 */
import { defaultConfig, PipelineConfig } from '../lib/config';
import { Table } from './bench-support';

/** USD, us-east-1 list prices assumed (the figures). */
const PRICES = {
  lambdaGbSecond: { x86_64: 0.0000166667, arm64: 0.0000133334 },
  lambdaRequest: 0.2 / 1e6,
  stepFunctionsTransition: 0.025 / 1000,
  s3Put: 0.005 / 1000,
  s3Get: 0.0004 / 1000,
} as const;

export interface MeasuredInputs {
  /** Featurize handler, process CPU ms per image (all threads), at the default image size. */
  readonly featurizeCpuMsPerImage: number;
  /** Backend and featurizer the figure was measured with. */
  readonly measuredWith: string;
  /** Seconds a fresh process spends before it runs at speed (model load, first batch's extra). */
  readonly modelLoadSeconds: number;
  /** Streaming PCA: seconds per row of pass 1 + pass 2, and the fit's seconds, at the default feature length. */
  readonly aggregateSecondsPerRow: number;
  readonly aggregateFitSeconds: number;
  readonly aggregateMeasuredRows: number;
  /** What the aggregate figure is: @default 'streaming PCA ... (passes 1 + 2)' */
  readonly aggregateMeasuredWith?: string;
  /** Feature length of the default featurizer (shard bytes per image = 4 x dim). */
  readonly dim: number;
}

/** Assumptions that are not measured here; each is printed with the table. */
const ASSUMED = {
  /** Container-image cold start (image pull, runtime, module init), billed since Aug 2025. */
  coldStartSeconds: 5,
  /** Step Functions transitions of the parent on the happy path (the upload-trigger route). */
  parentTransitions: 12,
  /** Per Distributed Map child execution (one Task state): its start and its Task. */
  childTransitions: 2,
  /** Seconds a Distributed Map child spends starting and returning, beyond the function's run. */
  childOverheadSeconds: 1,
  /** S3 -> Lambda throughput the aggregate function reads shards at (two passes). */
  aggregateReadMBps: 100,
  /** ResultWriter objects, outputs, report: a few dozen PUT/GETs whatever N (rounded up). */
  fixedRequests: 50,
} as const;

export interface CostRow {
  images: number;
  architecture: 'x86_64' | 'arm64';
  batches: number;
  featurizeLambdaUsd: number;
  aggregateLambdaUsd: number;
  stepFunctionsUsd: number;
  s3RequestsUsd: number;
  totalUsd: number;
  /** The images' own upload (N PUTs), if they are not in S3 yet: not in the total. */
  uploadUsd: number;
  wallMinutes: number;
  aggregateMinutes: number;
}

export function costModel(measured: MeasuredInputs, images: number, architecture: 'x86_64' | 'arm64', config: PipelineConfig = defaultConfig()): CostRow {
  const batches = Math.ceil(images / config.batchSize);
  const batchSeconds = (config.batchSize * measured.featurizeCpuMsPerImage) / 1000;
  const containers = Math.min(config.maxConcurrency, batches);
  const coldSeconds = ASSUMED.coldStartSeconds + measured.modelLoadSeconds;
  const featurizeSeconds = (images * measured.featurizeCpuMsPerImage) / 1000 + containers * coldSeconds;
  const gbPrice = PRICES.lambdaGbSecond[architecture];
  const featurizeLambdaUsd = featurizeSeconds * (config.featurizeMemoryMb / 1024) * gbPrice + batches * PRICES.lambdaRequest;

  const shardMB = (images * measured.dim * 4) / 1e6;
  const aggregateSeconds = images * measured.aggregateSecondsPerRow + measured.aggregateFitSeconds + (2 * shardMB) / ASSUMED.aggregateReadMBps + coldSeconds;
  const aggregateLambdaUsd = aggregateSeconds * (config.aggregateMemoryMb / 1024) * gbPrice + PRICES.lambdaRequest;

  const stepFunctionsUsd = (ASSUMED.parentTransitions + batches * ASSUMED.childTransitions) * PRICES.stepFunctionsTransition;
  // GET: every image once, every shard twice (two passes). PUT-priced: one shard per batch, the
  // ItemReader's ListObjectsV2 pages (1,000 keys each), the fixed outputs.
  const gets = images + 2 * batches + ASSUMED.fixedRequests;
  const puts = batches + Math.ceil(images / 1000) + ASSUMED.fixedRequests;
  const s3RequestsUsd = gets * PRICES.s3Get + puts * PRICES.s3Put;

  const waves = Math.ceil(batches / config.maxConcurrency);
  const wallSeconds = coldSeconds + waves * (batchSeconds + ASSUMED.childOverheadSeconds) + aggregateSeconds;
  return {
    images,
    architecture,
    batches,
    featurizeLambdaUsd,
    aggregateLambdaUsd,
    stepFunctionsUsd,
    s3RequestsUsd,
    totalUsd: featurizeLambdaUsd + aggregateLambdaUsd + stepFunctionsUsd + s3RequestsUsd,
    uploadUsd: images * PRICES.s3Put,
    wallMinutes: wallSeconds / 60,
    aggregateMinutes: aggregateSeconds / 60,
  };
}

const usd = (value: number) => (value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`);

export function costTable(measured: MeasuredInputs, imageCounts: readonly number[] = [90_000, 1_000_000]): Table {
  const config = defaultConfig();
  const rows = imageCounts.flatMap((images) => (['x86_64', 'arm64'] as const).map((arch) => costModel(measured, images, arch, config)));
  return {
    title: 'Cost model: one run on AWS at the deployed defaults',
    headers: [
      'images',
      'arch',
      'batches',
      'featurize Lambda',
      'aggregate Lambda',
      'Step Functions',
      'S3 requests',
      'total',
      'upload PUTs (extra)',
      'wall time (min)',
      'aggregate (min)',
    ],
    rows: rows.map((r) => [
      r.images.toLocaleString('en-US'),
      r.architecture,
      r.batches.toLocaleString('en-US'),
      usd(r.featurizeLambdaUsd),
      usd(r.aggregateLambdaUsd),
      usd(r.stepFunctionsUsd),
      usd(r.s3RequestsUsd),
      usd(r.totalUsd),
      usd(r.uploadUsd),
      r.wallMinutes.toFixed(1),
      r.aggregateMinutes.toFixed(1),
    ]),
    notes: [
      `Measured inputs: featurize handler ${measured.featurizeCpuMsPerImage} ms CPU per image (${measured.measuredWith}); init ${measured.modelLoadSeconds} s per container (model load + the first batch's extra); ` +
        `${measured.aggregateMeasuredWith ?? 'streaming PCA'} ${(measured.aggregateSecondsPerRow * 1e6).toFixed(0)} us per row${measured.aggregateMeasuredWith ? '' : ' (passes 1 + 2)'} + ${measured.aggregateFitSeconds} s fit, measured at ${measured.aggregateMeasuredRows.toLocaleString('en-US')} x ${measured.dim}.`,
      `Config (lib/config.ts defaults): batch ${config.batchSize} images, MaxConcurrency ${config.maxConcurrency}, featurize ${config.featurizeMemoryMb} MB, aggregate ${config.aggregateMemoryMb} MB.`,
      `Prices (USD, assumed): Lambda x86 $${PRICES.lambdaGbSecond.x86_64} and arm64 $${PRICES.lambdaGbSecond.arm64} per GB-s, $0.20 per 1M requests; ` +
        'Step Functions standard $0.025 per 1,000 transitions (Distributed Map child executions count theirs); S3 PUT/LIST $0.005, GET $0.0004 per 1,000. Storage, data transfer, CloudWatch Logs and ECR are not counted.',
      'Assumption: billed featurize time per image = the CPU time measured here, i.e. one vCPU share at 3,008 MB does the work one core does here, serially. ' +
        'Lambda gives ~1.7 vCPU at 3,008 MB and the handler overlaps decode with inference, so the billed duration (and this cost) may be up to ~1.7x lower: the table takes the conservative side.',
      'Assumption: arm64 runs at the same speed as the x86 measured here (not measured; wasm SIMD on Graviton may differ either way).',
      'Not measured: tfjs-node (not installed here). The image prefers it; if it is faster the inference share of the featurize cost shrinks by that factor, decode does not. No speed-up factor is assumed in this table.',
      `Assumed, not measured: ${ASSUMED.coldStartSeconds} s cold start per container (one per concurrent child), ${ASSUMED.childTransitions} transitions per child execution and ` +
        `${ASSUMED.parentTransitions} for the parent, no retries, ${ASSUMED.childOverheadSeconds} s Distributed Map overhead per wave of children, ` +
        `shards read from S3 at ${ASSUMED.aggregateReadMBps} MB/s, real S3 GET latency hidden by READ_CONCURRENCY; aggregate time scaled linearly in N from the measured size (the fit does not grow with N).`,
      'Wall time = cold start + ceil(batches / MaxConcurrency) waves x (batch duration + overhead) + aggregate. Lambda concurrency quotas (1,000 per account by default) are not the limit at 50.',
    ],
  };
}
