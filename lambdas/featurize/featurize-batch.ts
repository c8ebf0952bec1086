/**
 * One Distributed Map batch: read its images from S3, featurize them (and the altered copies of
 * the Training images field-copies.ts chooses, for the classifier), write one feature shard,
 * return a small summary. Bad images become per-item reasons; only transient storage trouble
 * throws (`TransientStorageError`), for the state machine to retry.
 */
import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  FeaturizeBatchEventSchema,
  FeaturizeBatchSummary,
  ItemProblem,
  ListedObject,
  parseEvent,
  SUMMARY_LIST_LIMIT,
  TransientStorageError,
} from '../contracts/events';
import { shardKey } from '../contracts/bucket-layout';
import type { BatchMeasurements } from '../contracts/metrics';
import { concatFloat32 } from '../common/float-arrays';
import { encodeFeatureShard, ShardHeader } from '../bookkeeping/feature-shard';
import type { Featurizer } from '../model/featurizer';
import { classifyKey } from '../bookkeeping/image-keys';
import { preprocessImage, PreprocessOptions } from '../images/preprocess';
import { objectReaderFor } from '../aws/object-reader';
import { isAccessDeniedError, isMissingObjectError, isTransientS3Error, putObject } from '../aws/s3-client';
import { OrderedReadAhead } from '../common/concurrency';
import { alterImage } from './field-conditions';
import { fieldCopyOf } from './field-copies';

export interface FeaturizeBatchSettings {
  readonly maxInputPixels: number;
  readonly maxInputBytes: number;
  /** Objects read (and decoded) at the same time. */
  readonly readConcurrency: number;
  /** Images decoded before each inference call: bounds the memory a 1,000-item batch needs. */
  readonly chunkSize: number;
  /** One Training image in this many is also featurized as an altered copy (field-copies.ts); 0: none. @default 0 */
  readonly fieldCopyEvery?: number;
}

export interface FeaturizeBatchDeps {
  readonly s3: S3Client;
  readonly featurizer: Featurizer;
  readonly settings: FeaturizeBatchSettings;
  readonly log?: { info(message: string, ...extra: Record<string, unknown>[]): void };
  /** Told the batch's counts and timings once its shard is written (the handler's metrics). */
  readonly onMeasured?: (measured: BatchMeasurements) => void;
}

/**
 * Step Functions caps a state's result at 256 KiB; the summary's lists stay far below that
 * whatever the keys look like (keys alone may be 1 KiB each).
 * https://docs.aws.amazon.com/step-functions/latest/dg/limits-overview.html
 */
const SUMMARY_LISTS_BYTE_BUDGET = 96 * 1024;

/** The fewest images an inference starts with (but the batch's last): tiny ones cost more per image. */
const MIN_INFER_IMAGES = 8;
/** Inferences handed to the featurizer before the first of them is collected. */
const INFERENCES_IN_FLIGHT = 2;

/**
 * The shard is written for every batch, even one without a single good image: its header is the
 * only complete record of the batch's failures and skips (the summary's lists are capped).
 */
export async function featurizeBatch(rawEvent: unknown, deps: FeaturizeBatchDeps): Promise<FeaturizeBatchSummary> {
  const event = parseEvent(FeaturizeBatchEventSchema, rawEvent, 'featurize batch event (FeaturizeBatchEventSchema)');
  const { bucket, inputPrefix, workPrefix } = event.BatchInput;
  const { featurizer, settings } = deps;
  const started = performance.now();

  const failed: ItemProblem[] = [];
  const skipped: ItemProblem[] = [];
  const toRead: { key: string; label: string; item: ListedObject }[] = [];
  for (const item of event.Items) {
    const classified = classifyKey(item.Key, inputPrefix);
    if (classified.kind === 'skip') skipped.push({ key: item.Key, reason: classified.reason });
    else if (item.Size === 0) failed.push({ key: item.Key, reason: 'empty object (0 bytes)' });
    else if (item.Size !== undefined && item.Size > settings.maxInputBytes) failed.push({ key: item.Key, reason: tooLarge(item.Size, settings) });
    else toRead.push({ key: item.Key, label: classified.label, item });
  }

  const preprocessOptions: PreprocessOptions = { size: featurizer.imageSize, maxInputPixels: settings.maxInputPixels, maxInputBytes: settings.maxInputBytes };
  const keys: string[] = [];
  const labels: string[] = [];
  const vectorChunks: Float32Array[] = [];
  // readWait: time the model had nothing to run, waiting for decoded images; infer: time at least
  // one inference was running (reads and decodes overlap both).
  const timings = { readWait: 0, decode: 0, infer: 0 };
  // Summed per object (reads and decodes overlap): the metrics' per-image means.
  const perObject = { readMs: 0, reads: 0, decodes: 0 };
  // A chosen Training image's altered copy is made from the bytes already read; a copy that cannot
  // be made is left out (the image itself is not affected).
  const copies: { key: string; label: string; condition: string; rgb: Uint8Array }[] = [];
  const copyProblems: string[] = [];
  type Outcome = { rgb: Uint8Array; copy?: { condition: string; rgb: Uint8Array } } | { reason: string };
  const readAndDecode = async ({ key, item }: (typeof toRead)[number]): Promise<Outcome> => {
    const readStarted = performance.now();
    const read = await readObject(deps.s3, bucket, item, settings);
    perObject.readMs += performance.now() - readStarted;
    perObject.reads++;
    if ('reason' in read) return read;
    perObject.decodes++;
    const decodeStarted = performance.now();
    const result = await preprocessImage(read.bytes, preprocessOptions);
    const copy = result.ok ? await fieldCopy(key, read.bytes) : undefined;
    timings.decode += performance.now() - decodeStarted;
    return result.ok ? { rgb: result.rgb, ...(copy ? { copy } : {}) } : { reason: result.reason };
  };
  const fieldCopy = async (key: string, bytes: Uint8Array) => {
    const chosen = fieldCopyOf(key, settings.fieldCopyEvery ?? 0);
    if (!chosen) return undefined;
    try {
      const altered = await preprocessImage(await alterImage(bytes, chosen.condition, chosen.seed), preprocessOptions);
      if (altered.ok) return { condition: chosen.condition, rgb: altered.rgb };
      copyProblems.push(`${key} (${chosen.condition}): ${altered.reason}`);
    } catch (error) {
      copyProblems.push(`${key} (${chosen.condition}): ${describe(error)}`);
    }
    return undefined;
  };

  // Images are read and decoded ahead (at most two inference chunks beyond the model, which bounds
  // memory) while the model runs on its own thread; each inference takes what is ready, in order,
  // so the model starts on the first few images instead of waiting for a whole chunk, and the last
  // inference of the batch is small. The next inference is handed over before the current one
  // returns, so the model's thread never waits for this thread to collect a result
  // (bench/featurize.ts measures the overlap).
  const reads = new OrderedReadAhead(toRead, settings.readConcurrency, 2 * settings.chunkSize, readAndDecode);
  const inferences: Promise<Float32Array>[] = [];
  let inferring = 0;
  let inferStarted = 0;
  const infer = (images: Uint8Array[]): Promise<Float32Array> => {
    if (inferring++ === 0) inferStarted = performance.now();
    const result = featurizer.featurize(images).finally(() => {
      if (--inferring === 0) timings.infer += performance.now() - inferStarted;
    });
    // Awaited in order below; until then its failure must not count as an unhandled rejection.
    result.catch(() => undefined);
    return result;
  };
  let position = 0;
  while (reads.remaining > 0) {
    const waitStarted = performance.now();
    const modelIdle = inferring === 0;
    const outcomes = await reads.take(Math.min(MIN_INFER_IMAGES, settings.chunkSize), settings.chunkSize);
    if (modelIdle) timings.readWait += performance.now() - waitStarted;
    const images: Uint8Array[] = [];
    outcomes.forEach((outcome) => {
      const { key, label } = toRead[position++];
      if ('reason' in outcome) failed.push({ key, reason: outcome.reason });
      else {
        images.push(outcome.rgb);
        keys.push(key);
        labels.push(label);
        if (outcome.copy) copies.push({ key, label, ...outcome.copy });
      }
    });
    if (images.length > 0) inferences.push(infer(images));
    if (inferences.length >= INFERENCES_IN_FLIGHT) vectorChunks.push(await inferences.shift()!);
  }
  for (const inference of inferences) vectorChunks.push(await inference);
  // The copies after the images, in chunks of the same size.
  for (let start = 0; start < copies.length; start += settings.chunkSize) {
    vectorChunks.push(await infer(copies.slice(start, start + settings.chunkSize).map((copy) => copy.rgb)));
  }

  const header: ShardHeader = {
    featurizer: featurizer.id,
    dim: featurizer.dim,
    keys,
    labels,
    failed,
    skipped,
    ...(copies.length > 0
      ? { fieldCopies: { keys: copies.map((c) => c.key), labels: copies.map((c) => c.label), conditions: copies.map((c) => c.condition) } }
      : {}),
    meta: {
      ...(copyProblems.length > 0 ? { fieldCopyProblems: copyProblems.slice(0, 20) } : {}),
      featurizerKind: featurizer.kind,
      modelId: featurizer.modelId,
      backend: featurizer.backend,
      backendsSkipped: featurizer.backendsSkipped,
      imageSize: featurizer.imageSize,
      warnings: featurizer.warnings,
      items: event.Items.length,
      timingsMs: {
        readWait: round(timings.readWait),
        decode: round(timings.decode),
        infer: round(timings.infer),
        total: round(performance.now() - started),
      },
    },
  };
  const shard = shardKey(workPrefix, batchHash(event.Items));
  const body = encodeFeatureShard({ header, vectors: concatFloat32(vectorChunks) });
  await putObject(deps.s3, bucket, shard, body, 'application/octet-stream');
  deps.onMeasured?.({
    processed: keys.length,
    failed: failed.length,
    skipped: skipped.length,
    readMs: perObject.readMs,
    reads: perObject.reads,
    decodeMs: timings.decode,
    decodes: perObject.decodes,
    inferenceMs: timings.infer,
    totalMs: performance.now() - started,
    runtimeFallback: featurizer.runtimeFallback !== undefined,
  });
  deps.log?.info('batch featurized', { shard, count: keys.length, failed: failed.length, skipped: skipped.length, ...header.meta });
  return summarise(shard, keys.length, failed, skipped);
}

type ReadOutcome = { bytes: Uint8Array } | { reason: string };

async function readObject(s3: S3Client, bucket: string, item: ListedObject, settings: FeaturizeBatchSettings): Promise<ReadOutcome> {
  try {
    const read = await objectReaderFor(s3).read(bucket, item.Key, settings.maxInputBytes);
    if ('tooLarge' in read) return { reason: tooLarge(read.tooLarge, settings) };
    return read.bytes.length === 0 ? { reason: 'empty object (0 bytes)' } : { bytes: read.bytes };
  } catch (error) {
    if (isMissingObjectError(error)) return { reason: 'object no longer exists (deleted after listing: NoSuchKey)' };
    // What S3 answers for a missing key to a role without s3:ListBucket, as the featurize role is.
    if (isAccessDeniedError(error)) return { reason: 'object missing or not readable (403 AccessDenied: deleted after listing, or no read permission)' };
    if (isTransientS3Error(error)) throw new TransientStorageError(`reading s3://${bucket}/${item.Key}: ${describe(error)}`);
    return { reason: `cannot read object: ${describe(error)}` };
  }
}

const tooLarge = (bytes: number, settings: FeaturizeBatchSettings) =>
  `object is ${bytes} bytes, above the limit of ${settings.maxInputBytes} bytes (MAX_INPUT_BYTES)`;

/**
 * Names the shard after the batch's content (keys + ETags, order-independent), so a retried or
 * redriven batch overwrites its earlier shard instead of adding a duplicate.
 */
export function batchHash(items: readonly ListedObject[]): string {
  const lines = items.map((item) => `${item.Key}\u0000${item.ETag ?? ''}`).sort();
  return createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 32);
}

/** Lists cut to SUMMARY_LIST_LIMIT entries and a byte budget; the shard keeps them whole. */
function summarise(shard: string | null, count: number, failed: ItemProblem[], skipped: ItemProblem[]): FeaturizeBatchSummary {
  let budget = SUMMARY_LISTS_BYTE_BUDGET;
  const cut = (problems: ItemProblem[]) => {
    const kept: ItemProblem[] = [];
    for (const problem of problems) {
      const size = Buffer.byteLength(JSON.stringify(problem), 'utf8') + 1;
      if (kept.length >= SUMMARY_LIST_LIMIT || size > budget) break;
      kept.push(problem);
      budget -= size;
    }
    return kept;
  };
  const keptFailed = cut(failed);
  const keptSkipped = cut(skipped);
  return {
    shard,
    count,
    failed: keptFailed,
    failedCount: failed.length,
    skipped: keptSkipped,
    skippedCount: skipped.length,
    truncated: keptFailed.length < failed.length || keptSkipped.length < skipped.length,
  };
}

const round = (ms: number) => Math.round(ms);
const describe = (error: unknown) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, 300);
