/**
 * Featurization throughput: the model's ceiling vs the featurize handler's whole path, per TF.js
 * backend and CNN input size, measured side by side in one process.
 *
 *   npx tsx bench/featurize.ts                          # onnxruntime, (tfjs-node,) wasm, cpu at 96/128/160/224 px
 *   npx tsx bench/featurize.ts --backends onnxruntime --sizes 128 --rounds 3   # the default's ratio
 *   npx tsx bench/featurize.ts --backends wasm --sizes 128 --rounds 2
 *   npx tsx bench/featurize.ts --backends onnxruntime --sizes 128 --v8-default-external-memory   # without the handler's V8 flag
 *
 * - ceiling: `featurizer.featurize` on images already decoded and resized to the input size
 *   (uint8 RGB in memory): scaling, inference, pooling. Nothing a batch could do is faster.
 * - handler: `featurizeBatch` on real JPEGs in an S3-compatible server (s3rver on loopback, in a
 *   process of its own at the lowest CPU priority, as S3 is off a function's cores on AWS; its
 *   memory is not counted): GET, sniff, decode + resize (wasm or sharp), inference, shard encode +
 *   PUT, in batches of the deployed batch size, one batch at a time as one Lambda container runs them.
 * - handler, store competing (onnxruntime cases): the same against a second server at normal
 *   priority in the parent process, which takes turns with the model on the two cores.
 * Both use the featurizer and batch settings the handler builds from its environment
 * (`readFeaturizeEnv`), the product's defaults except IMAGE_SIZE and TF_BACKEND.
 *
 * Each (backend, size) runs in a fresh child process: TF.js has one backend per process, and the
 * peak RSS is that case's own. Inside it, after a warm-up, ceiling and handler rounds alternate
 * (each round starts one later: C H S, H S C, S C H ...) so a burst of load elsewhere hits all of
 * them; the figures are medians over rounds.
 * With --accuracy the 5-NN accuracy of the handler's own features is scored as bench/accuracy.ts
 * scores (StandardScaler + PCA on all 720 images, Training -> Test).
 *
 * Needs ../shared (sample images, reference model); exits with a message when it is absent.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Matrix } from 'ml-matrix';
import { defaultConfig } from '../lib/config';
import type { ListedObject } from '../lambdas/contracts/events';
import { decodeFeatureShard } from '../lambdas/bookkeeping/feature-shard';
import { type Featurizer, getFeaturizer } from '../lambdas/model/featurizer';
import { DEFAULT_MODEL_ID } from '../lambdas/contracts/handler-env';
import { preprocessImage } from '../lambdas/images/preprocess';
import { createS3Client } from '../lambdas/aws/s3-client';
import { countExternalMemoryInHeapLimit } from '../lambdas/common';
import { evaluate, loadSample, MODELS, SAMPLE, SampleImage } from './accuracy';
import { argValue, ChildResult, fixed, load, median, peakRssMb, runChild, tfjsNodeInstalled } from './bench-support';
import { listAllObjects, readBytes } from '../lambdas/aws/s3-client';
import { mapWithConcurrency } from '../lambdas/common/concurrency';
import { objectReaderFor } from '../lambdas/aws/object-reader';
import { startBackgroundS3Server } from './background-s3-server';

const BUCKET = 'bench-featurize';
const PREFIX = 'input/fruits-360-sample/';
/** PCA components the accuracy is scored at: the shared README's reference (15) and the product default. */
const ACCURACY_KS = [15, defaultConfig().pcaComponents];

export interface FeaturizeBenchOptions {
  readonly backends: readonly string[];
  readonly sizes: readonly number[];
  /** Images per round on each backend (the cpu backend is slow: fewer). */
  readonly images: Readonly<Record<string, number>>;
  readonly rounds: number;
  /** Score 5-NN accuracy per size (on the first backend, from the handler's features). */
  readonly accuracy: boolean;
  readonly timeoutMinutes: number;
  /** Leave V8's default collection of Buffers, where the handler sets its flag (lambdas/common/external-memory.ts). */
  readonly v8DefaultExternalMemory?: boolean;
}

export interface FeaturizeCaseResult {
  backend: string;
  size: number;
  images: number;
  rounds: number;
  featurizer: string;
  dim: number;
  /** Seconds to load the model and build the featurizer (a Lambda cold start's share). */
  modelLoadSeconds: number;
  /** Seconds of the first batch through the handler (kernels compiled, pools filled): cold-start share. */
  firstBatchSeconds: number;
  ceilingImagesPerSecond: number;
  handlerImagesPerSecond: number;
  /** (handler time - ceiling time) / ceiling time per image, %. */
  overheadPercent: number;
  /** The handler against a store at normal priority, competing for the cores (onnxruntime cases). */
  storeCompeting?: { handlerImagesPerSecond: number; overheadPercent: number };
  /** Process CPU seconds (all threads: JS, the model thread, wasm, sharp) per image on the handler path. */
  handlerCpuMsPerImage: number;
  ceilingCpuMsPerImage: number;
  /** GET + body read of every image alone (READ_CONCURRENCY at a time): wall and CPU ms per image. */
  readOnlyMsPerImage: number;
  readOnlyCpuMsPerImage: number;
  /** Per image, summed over batches, from the shard meta's timings. */
  handlerReadWaitMsPerImage: number;
  handlerInferMsPerImage: number;
  peakRssMb: number;
  accuracy?: { k: number; test: number; axisHoldout: number }[];
  load: string;
}

export type FeaturizeBenchRow = FeaturizeCaseResult | { backend: string; size: number; error: string };

export async function featurizeBench(options: FeaturizeBenchOptions): Promise<FeaturizeBenchRow[] | { skipped: string }> {
  if (!existsSync(SAMPLE)) return { skipped: `the shared Fruits-360 sample is not at ${SAMPLE}` };
  const modelDir = join(MODELS, DEFAULT_MODEL_ID);
  if (!existsSync(modelDir)) return { skipped: `no reference copy of ${DEFAULT_MODEL_ID} at ${modelDir}` };
  // Loaded here, not at the top: a case child must not carry s3rver in its RSS.
  const { startLocalS3Server } = await import('../local/emulator/s3/s3-server');
  const server = await startBackgroundS3Server([BUCKET]);
  const competingServer = await startLocalS3Server({ buckets: [BUCKET] });
  const scratch = mkdtempSync(join(tmpdir(), 'bench-featurize-'));
  try {
    const sample = loadSample();
    for (const image of sample) {
      const body = readFileSync(join(SAMPLE, image.path));
      for (const client of [server.client, competingServer.client]) {
        await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}${image.path}`, Body: body }));
      }
    }
    const items = await listItems(server.client);
    const itemsFile = join(scratch, 'items.json');
    writeFileSync(itemsFile, JSON.stringify(items));
    const rows: FeaturizeBenchRow[] = [];
    for (const backend of options.backends) {
      for (const size of options.sizes) {
        const args = ['--case', itemsFile, '--images', String(options.images[backend] ?? items.length), '--rounds', String(options.rounds)];
        if (options.accuracy && backend === options.backends[0]) args.push('--accuracy');
        if (backend === 'onnxruntime') args.push('--competing-store', competingServer.endpoint);
        if (options.v8DefaultExternalMemory) args.push('--v8-default-external-memory');
        // `onnxruntime`: the TFLite default's native runtime; a TF.js backend otherwise (the TF.js executor for TFLite models).
        const runtime = backend === 'onnxruntime' ? { INFER_RUNTIME: 'onnxruntime' } : { INFER_RUNTIME: 'tfjs', TF_BACKEND: backend };
        const env = { ...server.env, MODEL_DIR: modelDir, IMAGE_SIZE: String(size), ...runtime, POWERTOOLS_LOG_LEVEL: 'WARN' };
        const result: ChildResult = await runChild(__filename, args, { timeoutMinutes: options.timeoutMinutes, env });
        const row = result.error ? { backend, size, error: result.error } : (result as unknown as FeaturizeCaseResult);
        rows.push(row);
        console.log(
          `  featurize ${backend} ${size}px: ${'error' in row ? row.error : `ceiling ${row.ceilingImagesPerSecond} img/s, handler ${row.handlerImagesPerSecond} img/s`}`,
        );
      }
    }
    return rows;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await server.close();
    await competingServer.close();
  }
}

async function listItems(s3: S3Client): Promise<ListedObject[]> {
  return (await listAllObjects(s3, BUCKET, PREFIX)).map((object) => ({ Key: object.Key!, Size: object.Size, ETag: object.ETag }));
}

/** A run's wall and CPU time. */
type Run = { seconds: number; cpuSeconds: number };

async function timed(run: () => Promise<void>): Promise<Run> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await run();
  const used = process.cpuUsage(cpu);
  return { seconds: (performance.now() - started) / 1000, cpuSeconds: (used.user + used.system) / 1e6 };
}

/** The ceiling's input: every image decoded and resized once, up front. */
async function decodeAll(
  s3: S3Client,
  items: readonly ListedObject[],
  size: number,
  limits: { maxInputPixels: number; maxInputBytes: number },
): Promise<Uint8Array[]> {
  const rgb: Uint8Array[] = [];
  for (const item of items) {
    const result = await preprocessImage(await readBytes(s3, BUCKET, item.Key), {
      size,
      maxInputPixels: limits.maxInputPixels,
      maxInputBytes: limits.maxInputBytes,
    });
    if (!result.ok) throw new Error(`${item.Key}: ${result.reason}`);
    rgb.push(result.rgb);
  }
  return rgb;
}

/** What the handler's shards of the last round recorded: its read wait and inference time (ms), and every key's vector. */
async function shardFacts(s3: S3Client, shards: readonly string[]) {
  let readWait = 0;
  let infer = 0;
  const vectors = new Map<string, Float32Array>();
  for (const key of shards) {
    const shard = decodeFeatureShard(await readBytes(s3, BUCKET, key));
    const timings = shard.header.meta?.timingsMs as { readWait: number; infer: number };
    readWait += timings.readWait;
    infer += timings.infer;
    shard.header.keys.forEach((k, r) => vectors.set(k, shard.vectors.subarray(r * shard.header.dim, (r + 1) * shard.header.dim)));
  }
  return { readWait, infer, vectors };
}

/** One (backend, size) in this process; the environment carries the handler settings. */
async function runCase(itemsFile: string, imageCount: number, rounds: number, withAccuracy: boolean, competingEndpoint?: string): Promise<FeaturizeCaseResult> {
  // The handler module reads its environment once at import: the same settings a Lambda gets.
  const { batchSettingsFrom, featurizeBatch, featurizerConfigFrom, readFeaturizeEnv } = await import('../lambdas/featurize/handler');
  const env = readFeaturizeEnv();
  const s3 = createS3Client();
  const settings = batchSettingsFrom(env);
  const batchSize = defaultConfig().batchSize;
  const loadStarted = performance.now();
  const featurizer = await getFeaturizer(featurizerConfigFrom(env));
  const modelLoadSeconds = (performance.now() - loadStarted) / 1000;
  const wanted = env.INFER_RUNTIME === 'onnxruntime' ? 'onnxruntime-node' : env.TF_BACKEND;
  if (wanted && !featurizer.backend.includes(wanted)) throw new Error(`asked for ${wanted}, got ${featurizer.backend}`);

  const items = (JSON.parse(readFileSync(itemsFile, 'utf8')) as ListedObject[]).slice(0, imageCount);
  const bucket = BUCKET;
  const runSettings = (round: number) => ({
    bucket,
    inputPrefix: PREFIX,
    runId: `bench-${round}`,
    outputPrefix: `results/bench-${round}/`,
    workPrefix: `work/bench-${round}/`,
  });

  const rgb = await decodeAll(s3, items, featurizer.imageSize, settings);

  const ceiling = async () => {
    for (let start = 0; start < rgb.length; start += batchSize) await featurizer.featurize(rgb.slice(start, start + batchSize));
  };
  let lastShards: string[] = [];
  const handler = async (round: number, store: S3Client) => {
    const shards: string[] = [];
    for (let start = 0; start < items.length; start += batchSize) {
      const summary = await featurizeBatch(
        { Items: items.slice(start, start + batchSize), BatchInput: runSettings(round) },
        { s3: store, featurizer, settings },
      );
      if (summary.failedCount > 0 || !summary.shard) throw new Error(`batch failed: ${JSON.stringify(summary.failed.slice(0, 2))}`);
      shards.push(summary.shard);
    }
    if (store === s3) lastShards = shards;
  };
  const competingStore = competingEndpoint ? createS3Client({ ...process.env, S3_ENDPOINT: competingEndpoint }) : undefined;

  // Warm-up: the first calls compile kernels and fill sharp's and the SDK's pools.
  const firstStarted = performance.now();
  await featurizeBatch({ Items: items.slice(0, Math.min(batchSize, items.length)), BatchInput: runSettings(0) }, { s3, featurizer, settings });
  const firstBatchSeconds = (performance.now() - firstStarted) / 1000;
  await featurizer.featurize(rgb.slice(0, Math.min(32, rgb.length)));

  // What the S3 reads alone cost (their share of the handler's CPU), as the handler reads them.
  const reader = objectReaderFor(s3);
  const readOnly = async (): Promise<void> => {
    await mapWithConcurrency(items, settings.readConcurrency, async (item) => {
      await reader.read(bucket, item.Key, settings.maxInputBytes);
    });
  };

  const sides = {
    ceiling,
    handler: (round: number) => handler(round, s3),
    ...(competingStore && { competing: (round: number) => handler(round, competingStore) }),
  };
  const runs: Record<string, Run[]> = { ceiling: [], handler: [], competing: [], reads: [] };
  for (let round = 1; round <= rounds; round++) {
    // C H S, H S C, S C H ...: no side always runs first.
    const names = Object.keys(sides) as (keyof typeof sides)[];
    for (let i = 0; i < names.length; i++) {
      const side = names[(round - 1 + i) % names.length];
      runs[side].push(await timed(() => sides[side]!(round)));
    }
    runs.reads.push(await timed(readOnly));
  }
  const { readWait, infer, vectors } = await shardFacts(s3, lastShards);

  const result = caseResult(featurizer, items.length, rounds, runs, {
    modelLoadSeconds,
    firstBatchSeconds,
    readWait,
    infer,
    competing: competingStore !== undefined,
  });
  if (withAccuracy) result.accuracy = accuracyOf(vectors);
  return result;
}

/** The case's figures: medians over the rounds, per image where that reads better. */
function caseResult(
  featurizer: Featurizer,
  n: number,
  rounds: number,
  runs: Record<string, Run[]>,
  measured: { modelLoadSeconds: number; firstBatchSeconds: number; readWait: number; infer: number; competing: boolean },
): FeaturizeCaseResult {
  const ceilingSeconds = median(runs.ceiling.map((r) => r.seconds));
  const handlerSeconds = median(runs.handler.map((r) => r.seconds));
  const perImageMs = (seconds: number) => fixed((seconds * 1000) / n, 2);
  return {
    backend: featurizer.backend,
    size: featurizer.imageSize,
    images: n,
    rounds,
    featurizer: featurizer.id,
    dim: featurizer.dim,
    modelLoadSeconds: fixed(measured.modelLoadSeconds, 2),
    firstBatchSeconds: fixed(measured.firstBatchSeconds, 2),
    ceilingImagesPerSecond: fixed(n / ceilingSeconds),
    handlerImagesPerSecond: fixed(n / handlerSeconds),
    overheadPercent: fixed(((handlerSeconds - ceilingSeconds) / ceilingSeconds) * 100),
    ...(measured.competing && {
      storeCompeting: {
        handlerImagesPerSecond: fixed(n / median(runs.competing.map((r) => r.seconds))),
        overheadPercent: fixed(((median(runs.competing.map((r) => r.seconds)) - ceilingSeconds) / ceilingSeconds) * 100),
      },
    }),
    handlerCpuMsPerImage: perImageMs(median(runs.handler.map((r) => r.cpuSeconds))),
    ceilingCpuMsPerImage: perImageMs(median(runs.ceiling.map((r) => r.cpuSeconds))),
    readOnlyMsPerImage: perImageMs(median(runs.reads.map((r) => r.seconds))),
    readOnlyCpuMsPerImage: perImageMs(median(runs.reads.map((r) => r.cpuSeconds))),
    handlerReadWaitMsPerImage: perImageMs(measured.readWait / 1000),
    handlerInferMsPerImage: perImageMs(measured.infer / 1000),
    peakRssMb: peakRssMb(),
    load: load(),
  };
}

/** 5-NN accuracy of the handler's features, scored exactly as bench/accuracy.ts scores. */
function accuracyOf(vectors: Map<string, Float32Array>): { k: number; test: number; axisHoldout: number }[] {
  const sample: SampleImage[] = loadSample().filter((image) => vectors.has(`${PREFIX}${image.path}`));
  const features = new Matrix(sample.map((image) => Array.from(vectors.get(`${PREFIX}${image.path}`)!)));
  return evaluate(features, sample, ACCURACY_KS, []).map((row) => ({ k: Number(row.k), test: fixed(row.accuracy, 3), axisHoldout: fixed(row.axisHoldout, 3) }));
}

export const DEFAULT_FEATURIZE_OPTIONS: FeaturizeBenchOptions = {
  // tfjs-node only where it is installed (the Lambda image); wasm and cpu always.
  backends: ['onnxruntime', ...(tfjsNodeInstalled() ? ['tensorflow'] : []), 'wasm', 'cpu'],
  sizes: [96, 128, 160, 224],
  // The cpu backend (plain JS kernels) runs MobileNetV2 at a few images per second: 20 give its figure.
  images: { onnxruntime: 720, tensorflow: 720, wasm: 720, cpu: 20 },
  rounds: 3,
  accuracy: true,
  timeoutMinutes: 20,
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => argValue(argv, name);
  const caseFile = value('case');
  if (caseFile) {
    // As the handler does at its cold start.
    if (!argv.includes('--v8-default-external-memory')) countExternalMemoryInHeapLimit();
    const result = await runCase(caseFile, Number(value('images')), Number(value('rounds')), argv.includes('--accuracy'), value('competing-store'));
    console.log(JSON.stringify(result));
    return;
  }
  const options: FeaturizeBenchOptions = {
    ...DEFAULT_FEATURIZE_OPTIONS,
    backends: value('backends')?.split(',') ?? DEFAULT_FEATURIZE_OPTIONS.backends,
    sizes: value('sizes')?.split(',').map(Number) ?? DEFAULT_FEATURIZE_OPTIONS.sizes,
    rounds: Number(value('rounds') ?? DEFAULT_FEATURIZE_OPTIONS.rounds),
    images: value('images') ? { wasm: Number(value('images')), cpu: Number(value('images')) } : DEFAULT_FEATURIZE_OPTIONS.images,
    v8DefaultExternalMemory: argv.includes('--v8-default-external-memory'),
  };
  console.log(JSON.stringify(await featurizeBench(options), null, 1));
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
