/**
 * One Distributed Map batch: read its images from S3, featurize them (and the altered copies of
 * the Training images field-copies.ts chooses, for the classifier), write one feature shard and
 * the batch record (the keys it was handed), return a small summary. Bad images become per-item
 * reasons; only transient storage trouble throws (`TransientStorageError`), for the state machine
 * to retry.
 */
import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  BatchRecord,
  FeaturizeBatchEventSchema,
  FeaturizeBatchSummary,
  ItemProblem,
  ListedObject,
  parseEvent,
  SUMMARY_LIST_LIMIT,
  TransientStorageError,
} from '../contracts/events';
import { batchRecordKey, shardKey } from '../contracts/bucket-layout';
import type { BatchMeasurements } from '../contracts/metrics';
import { classifyKey, encodeFeatureShard, ShardHeader } from '../bookkeeping';
import type { Featurizer } from '../model';
import { preprocessImage, PreprocessOptions } from '../images';
import { objectReaderFor } from '../aws/object-reader';
import { isAccessDeniedError, isMissingObjectError, isTransientS3Error, putObject } from '../aws/s3-client';
import { concatFloat32, OrderedReadAhead } from '../common';
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
  const { featurizer } = deps;
  const started = performance.now();

  // Keys skipped or refused unread, and the images to read.
  const { failed, skipped, toRead } = triageItems(event.Items, inputPrefix, deps.settings);
  // Read, decode and featurize; an image that cannot be read or decoded joins `failed`.
  const featurized = await featurizeImages(toRead, bucket, deps, failed);
  const { keys, timings, perObject } = featurized;

  // One shard for the batch, whatever came out of it; then its counts and timings.
  const header: ShardHeader = {
    featurizer: featurizer.id,
    dim: featurizer.dim,
    keys,
    labels: featurized.labels,
    failed,
    skipped,
    ...(featurized.copies.length > 0
      ? {
          fieldCopies: {
            keys: featurized.copies.map((c) => c.key),
            labels: featurized.copies.map((c) => c.label),
            conditions: featurized.copies.map((c) => c.condition),
          },
        }
      : {}),
    meta: {
      ...(featurized.copyProblems.length > 0 ? { fieldCopyProblems: featurized.copyProblems.slice(0, 20) } : {}),
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
  const hash = batchHash(event.Items);
  const shard = shardKey(workPrefix, hash);
  const body = encodeFeatureShard({ header, vectors: concatFloat32(featurized.vectorChunks) });
  const record: BatchRecord = { items: event.Items.map((item) => item.Key) };
  await Promise.all([
    putObject(deps.s3, bucket, shard, body, 'application/octet-stream'),
    putObject(deps.s3, bucket, batchRecordKey(workPrefix, hash), JSON.stringify(record), 'application/json'),
  ]);
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

/** An image of the batch to read, with the label its key gives it. */
interface ImageToRead {
  readonly key: string;
  readonly label: string;
  readonly item: ListedObject;
}

/** The batch's items sorted by their keys and listed sizes: skipped, failed unread, or to read. */
function triageItems(items: readonly ListedObject[], inputPrefix: string, settings: FeaturizeBatchSettings) {
  const failed: ItemProblem[] = [];
  const skipped: ItemProblem[] = [];
  const toRead: ImageToRead[] = [];
  for (const item of items) {
    const classified = classifyKey(item.Key, inputPrefix);
    if (classified.kind === 'skip') skipped.push({ key: item.Key, reason: classified.reason });
    else if (item.Size === 0) failed.push({ key: item.Key, reason: 'empty object (0 bytes)' });
    else if (item.Size !== undefined && item.Size > settings.maxInputBytes) failed.push({ key: item.Key, reason: tooLarge(item.Size, settings) });
    else toRead.push({ key: item.Key, label: classified.label, item });
  }
  return { failed, skipped, toRead };
}

/** What the images of a batch gave: the rows featurized, their vectors in order, and the time each part took. */
interface FeaturizedImages {
  readonly keys: string[];
  readonly labels: string[];
  /** The images' vectors, then the field copies' (in `copies` order). */
  readonly vectorChunks: Float32Array[];
  /**
   * The chosen Training images' altered copies, made from the bytes already read; a copy that
   * cannot be made is left out with its reason in `copyProblems` (the image itself is not affected).
   */
  readonly copies: FieldCopy[];
  readonly copyProblems: string[];
  /**
   * readWait: time the model had nothing to run, waiting for decoded images; infer: time at least
   * one inference was running (reads and decodes overlap both).
   */
  readonly timings: { readWait: number; decode: number; infer: number };
  /** Summed per object (reads and decodes overlap): the metrics' per-image means. */
  readonly perObject: { readMs: number; reads: number; decodes: number };
}

/**
 * Images are read and decoded ahead (at most two inference chunks beyond the model, which bounds
 * memory) while the model runs on its own thread; each inference takes what is ready, in order,
 * so the model starts on the first few images instead of waiting for a whole chunk, and the last
 * inference of the batch is small. The next inference is handed over before the current one
 * returns, so the model's thread never waits for this thread to collect a result
 * (bench/featurize.ts measures the overlap).
 */
async function featurizeImages(toRead: readonly ImageToRead[], bucket: string, deps: FeaturizeBatchDeps, failed: ItemProblem[]): Promise<FeaturizedImages> {
  const { settings } = deps;
  const done: FeaturizedImages = {
    keys: [],
    labels: [],
    vectorChunks: [],
    copies: [],
    copyProblems: [],
    timings: { readWait: 0, decode: 0, infer: 0 },
    perObject: { readMs: 0, reads: 0, decodes: 0 },
  };
  const reads = new OrderedReadAhead(toRead, settings.readConcurrency, 2 * settings.chunkSize, imageDecoder(bucket, deps, done));
  const model = timedInference(deps.featurizer, done.timings);
  const inferences: Promise<Float32Array>[] = [];
  let position = 0;
  while (reads.remaining > 0) {
    const waitStarted = performance.now();
    const modelIdle = model.idle();
    const outcomes = await reads.take(Math.min(MIN_INFER_IMAGES, settings.chunkSize), settings.chunkSize);
    if (modelIdle) done.timings.readWait += performance.now() - waitStarted;
    const images: Uint8Array[] = [];
    outcomes.forEach((outcome) => {
      const { key, label } = toRead[position++];
      if ('reason' in outcome) failed.push({ key, reason: outcome.reason });
      else {
        images.push(outcome.rgb);
        done.keys.push(key);
        done.labels.push(label);
        if (outcome.copy) done.copies.push({ key, label, ...outcome.copy });
      }
    });
    if (images.length > 0) inferences.push(model.infer(images));
    if (inferences.length >= INFERENCES_IN_FLIGHT) done.vectorChunks.push(await inferences.shift()!);
  }
  for (const inference of inferences) done.vectorChunks.push(await inference);
  // The copies after the images, in chunks of the same size.
  for (let start = 0; start < done.copies.length; start += settings.chunkSize) {
    done.vectorChunks.push(await model.infer(done.copies.slice(start, start + settings.chunkSize).map((copy) => copy.rgb)));
  }
  return done;
}

/** An altered copy of a Training image, decoded to the model's square. */
interface FieldCopy {
  readonly key: string;
  readonly label: string;
  readonly condition: string;
  readonly rgb: Uint8Array;
}

type DecodeOutcome = { rgb: Uint8Array; copy?: { condition: string; rgb: Uint8Array } } | { reason: string };

/** Reads one image and decodes it to the model's square, counting the time of each into `done`. */
function imageDecoder(bucket: string, deps: FeaturizeBatchDeps, done: FeaturizedImages): (image: ImageToRead) => Promise<DecodeOutcome> {
  const { settings } = deps;
  const preprocessOptions: PreprocessOptions = {
    size: deps.featurizer.imageSize,
    maxInputPixels: settings.maxInputPixels,
    maxInputBytes: settings.maxInputBytes,
  };
  const fieldCopy = async (key: string, bytes: Uint8Array) => {
    const chosen = fieldCopyOf(key, settings.fieldCopyEvery ?? 0);
    if (!chosen) return undefined;
    try {
      const altered = await preprocessImage(await alterImage(bytes, chosen.condition, chosen.seed), preprocessOptions);
      if (altered.ok) return { condition: chosen.condition, rgb: altered.rgb };
      done.copyProblems.push(`${key} (${chosen.condition}): ${altered.reason}`);
    } catch (error) {
      done.copyProblems.push(`${key} (${chosen.condition}): ${describe(error)}`);
    }
    return undefined;
  };
  return async ({ key, item }) => {
    const readStarted = performance.now();
    const read = await readObject(deps.s3, bucket, item, settings);
    done.perObject.readMs += performance.now() - readStarted;
    done.perObject.reads++;
    if ('reason' in read) return read;
    done.perObject.decodes++;
    const decodeStarted = performance.now();
    const result = await preprocessImage(read.bytes, preprocessOptions);
    const copy = result.ok ? await fieldCopy(key, read.bytes) : undefined;
    done.timings.decode += performance.now() - decodeStarted;
    return result.ok ? { rgb: result.rgb, ...(copy ? { copy } : {}) } : { reason: result.reason };
  };
}

/** The featurizer's inferences, timed as the span during which at least one is running. */
function timedInference(featurizer: Featurizer, timings: { infer: number }) {
  let inferring = 0;
  let inferStarted = 0;
  return {
    idle: () => inferring === 0,
    infer(images: Uint8Array[]): Promise<Float32Array> {
      if (inferring++ === 0) inferStarted = performance.now();
      const result = featurizer.featurize(images).finally(() => {
        if (--inferring === 0) timings.infer += performance.now() - inferStarted;
      });
      // Awaited in order by the caller; until then its failure must not count as an unhandled rejection.
      result.catch(() => undefined);
      return result;
    },
  };
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
