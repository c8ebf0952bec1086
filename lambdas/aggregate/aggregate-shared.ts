/**
 * What the stages of the aggregate share: its settings and result, the event, reading shards in
 * order with read-ahead, the saved model a projecting run uses, the gallery of misclassified images.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { AggregateEventSchema, FeaturizeBatchSummary, parseEvent, RunSettings, TransientStorageError } from '../contracts/events';
import type { AggregateEvent } from '../contracts/events';
import { decodeFeatureShard, type FailedBatch, FeatureShard } from '../bookkeeping';
import {
  besideModel,
  type ClassificationReport,
  type ComponentSelection,
  decodeKnnReferences,
  knnReferencesParts,
  parsePcaModel,
  type PcaFit,
  PcaModelError,
  pcaFitOf,
  type ReferenceRows,
  referencesPartKeys,
  referencesPartProblem,
  referencesPartsProblem,
  SavedPcaModel,
} from '../analysis';
import type { GalleryEntry, GalleryImage, RunReportBuilder } from '../outputs';
import { thumbnailDataUri } from '../images';
import { resultKey, type ResultFile } from '../contracts/bucket-layout';
import { describeError, MissingObjectError, objectSizes, readBytes, readText } from '../aws/s3-client';
import { mapWithConcurrency, OrderedReadAhead } from '../common/concurrency';
import type { z } from 'zod';
import type { GalleryCandidate } from './aggregate-work';
import type { ClassifierKind } from '../contracts/handler-env';

/** The outputs the aggregate step writes under the run's outputPrefix (failure.json is the state machine's). */
export const OUTPUT_FILES = [
  'features',
  'featuresParts',
  'featuresParquet',
  'predictions',
  'embeddings',
  'embeddingsParts',
  'model',
  'knnReferences',
  'explainedVariance',
  'scree',
  'scatter',
  'readme',
  'report',
  'html',
] as const satisfies readonly ResultFile[];
export type OutputName = (typeof OUTPUT_FILES)[number];
/**
 * Written only by some runs: predictions when there is something to classify, embeddings when
 * kept, the model and its references by a run that fits (the references when it had Training rows).
 */
export type OptionalOutput = 'predictions' | 'featuresParquet' | 'embeddings' | 'embeddingsParts' | 'model' | 'knnReferences';

/** Memory per vCPU of a Lambda function: 1,769 MB is one, and 10,240 MB (the largest) six. */
const LAMBDA_MB_PER_VCPU = 1769;

/**
 * onnxruntime threads of a stage that runs alone in its function (FitModel's eigenpairs,
 * FitClassifier's logistic regression), which no sibling shares: one per vCPU of the function's
 * memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, which Lambda and the local worker pool set), rounded,
 * 1 to 6; two where it is not stated. The aggregate function's default 3,008 MB gets two. A map
 * child keeps one thread (`DEFAULT_INTRA_OP_THREADS`).
 */
export function singleStageThreads(env: NodeJS.ProcessEnv = process.env): number {
  const memoryMb = Number(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE);
  if (!(memoryMb > 0)) return 2;
  return Math.min(6, Math.max(1, Math.round(memoryMb / LAMBDA_MB_PER_VCPU)));
}

/** Misclassified images shown in report.html, and candidates kept while predicting. */
export const GALLERY_IMAGES = 8;
export const GALLERY_CANDIDATES_PER_PAIR = 2;
export const GALLERY_CANDIDATE_LIMIT = 400;

/** What the aggregate step returns to the state machine: small, pointers only. */
export interface AggregateResult {
  runId: string;
  bucket: string;
  /** Rows of features.csv (images processed). */
  rows: number;
  /** Principal components kept (k). */
  components: number;
  /** Cumulative explained variance ratio of the k components. */
  explainedVariance: number;
  /** The saved model the run projected with (no fit), when its event named one. */
  pcaModel?: { key: string; runId: string };
  counts: { processed: number; failed: number; skipped: number; failedBatches: number };
  /** k-NN accuracy on the Test rows; absent when nothing was scored. */
  accuracy?: number;
  /** Object keys (in `bucket`) of every output written. */
  outputs: Omit<Record<OutputName, string>, OptionalOutput> & Partial<Record<OptionalOutput, string>>;
}

export interface AggregateSettings extends ComponentSelection {
  /** Rows per block of the scatter update. @default DEFAULT_BLOCK_ROWS */
  readonly blockRows?: number;
  /** Shards downloaded ahead of the one being processed. @default 2 */
  readonly readAhead?: number;
  /** Points drawn in pca-scatter.svg. @default SCATTER_POINT_LIMIT */
  readonly scatterPoints?: number;
  /** What predicts the rows outside Training/. @default DEFAULT_CLASSIFIER */
  readonly classifier?: ClassifierKind;
  /** Neighbours that vote in the k-NN classification. @default DEFAULT_KNN_NEIGHBOURS */
  readonly knnNeighbours?: number;
  /** Also write embeddings.parquet (the raw feature vectors). @default false */
  readonly keepEmbeddings?: boolean;
  /** Misclassified images in report.html's gallery. @default GALLERY_IMAGES */
  readonly galleryImages?: number;
  /** Shards per group of the fanned-out stages. @default DEFAULT_GROUP_SHARDS */
  readonly groupShards?: number;
  /** Partials per merge of the moments merge tree, in a run of every stage in one process. @default DEFAULT_MOMENTS_MERGE_FAN_IN */
  readonly momentsMergeFanIn?: number;
}

export interface AggregateRunDeps {
  readonly s3: S3Client;
  readonly settings: AggregateSettings;
  readonly log?: { info(message: string, ...extra: Record<string, unknown>[]): void; warn(message: string, ...extra: Record<string, unknown>[]): void };
  readonly now?: () => Date;
}

/** A saved model as a projecting run uses it: the fit it restores; its references are named by `model.knnReferences`, read where used. */
export interface ProjectionModel {
  key: string;
  model: SavedPcaModel;
  fit: PcaFit;
}

export function parseAggregateEvent(rawEvent: unknown): AggregateEvent {
  return parseEvent(AggregateEventSchema, rawEvent, 'aggregate event (AggregateEventSchema)');
}

export function outputKeys(outputPrefix: string): Record<OutputName, string> {
  return Object.fromEntries(OUTPUT_FILES.map((name) => [name, resultKey(outputPrefix, name)])) as Record<OutputName, string>;
}

/**
 * The saved model at `key`, checked, and its references parts found beside it with the sizes it
 * states (a HEAD per part, no bytes read): a model that is missing, not JSON, not the format,
 * inconsistent, or whose references are missing or not its size is a `PcaModelError`. Transient
 * storage errors pass through (the step is retried).
 */
export async function readProjectionModel(s3: S3Client, bucket: string, key: string, outputPrefix: string): Promise<ProjectionModel> {
  const model = await readSavedModel(s3, bucket, key, outputPrefix);
  const partKeys = referencesPartKeys(model, key);
  const problem = referencesPartsProblem(model, await objectSizes(s3, bucket, partKeys), (part) => `s3://${bucket}/${partKeys[part]}`);
  if (problem) throw new PcaModelError(problem);
  return { key, model, fit: pcaFitOf(model) };
}

/** The saved model at `key`, checked, without looking for its references. */
export async function readSavedModel(s3: S3Client, bucket: string, key: string, outputPrefix: string): Promise<SavedPcaModel> {
  if (key.startsWith(outputPrefix)) {
    throw new PcaModelError(`pcaModel ${key} lies in this run's own ${outputPrefix}: a run cannot project with a model it would write itself`);
  }
  try {
    return parsePcaModel(Buffer.from(await readBytes(s3, bucket, key)).toString('utf8'), `s3://${bucket}/${key}`);
  } catch (error) {
    if (error instanceof MissingObjectError) {
      throw new PcaModelError(`pca model s3://${bucket}/${key} does not exist${error.accessDenied ? ' (or is not readable)' : ''}`);
    }
    throw error;
  }
}

/**
 * The saved model's references, one part at a time in the model's order, each checked against its
 * SHA-256 and the model as it is read: memory is one part, whatever the number of references.
 */
export async function* savedReferenceParts(s3: S3Client, bucket: string, key: string, model: SavedPcaModel): AsyncGenerator<ReferenceRows> {
  for (const part of knnReferencesParts(model)) {
    const partKey = besideModel(key, part.file);
    let bytes: Uint8Array;
    try {
      bytes = await readBytes(s3, bucket, partKey);
    } catch (error) {
      if (error instanceof MissingObjectError) throw new PcaModelError(referencesPartProblem(model, part, undefined, `s3://${bucket}/${partKey}`));
      throw error;
    }
    yield decodeKnnReferences(bytes, model, part, `s3://${bucket}/${partKey}`);
  }
}

/**
 * A few misclassified images beside their nearest reference: one per confused pair, most
 * confused first (a second per pair if pairs run out). The images are read from the input,
 * thumbnailed. An image that cannot be read (deleted since, or not readable) shows why instead of
 * failing the run.
 */
export async function galleryOf(
  s3: S3Client,
  bucket: string,
  classification: Extract<ClassificationReport, { status: 'classified' }>,
  candidates: readonly GalleryCandidate[],
  limit: number,
): Promise<GalleryEntry[]> {
  const byPair = new Map<string, GalleryCandidate[]>();
  for (const candidate of candidates) {
    const pair = `${candidate.label}\u0000${candidate.predicted}`;
    const list = byPair.get(pair) ?? [];
    if (list.length < GALLERY_CANDIDATES_PER_PAIR) byPair.set(pair, [...list, candidate]);
  }
  const pairs = classification.mostConfused.map((pair) => byPair.get(`${pair.actual}\u0000${pair.predicted}`) ?? []);
  const chosen: GalleryCandidate[] = [];
  for (let round = 0; round < GALLERY_CANDIDATES_PER_PAIR && chosen.length < limit; round++) {
    for (const list of pairs) if (list[round] && chosen.length < limit) chosen.push(list[round]);
  }
  const imageOf = async (key: string, label: string): Promise<GalleryImage> => {
    try {
      return { key, label, image: await thumbnailDataUri(await readBytes(s3, bucket, key)) };
    } catch (error) {
      return { key, label, problem: error instanceof MissingObjectError ? 'image no longer readable' : `no thumbnail (${describeError(error)})` };
    }
  };
  const entries: GalleryEntry[] = [];
  for (const candidate of chosen) {
    entries.push({
      query: await imageOf(candidate.key, candidate.label),
      predicted: candidate.predicted,
      confidence: candidate.confidence,
      distance: candidate.distance,
      ...(candidate.nearestKey ? { nearest: await imageOf(candidate.nearestKey, candidate.nearestLabel) } : {}),
    });
  }
  return entries;
}

export function runFields(event: RunSettings, mapRunArn: string | undefined) {
  return { runId: event.runId, bucket: event.bucket, inputPrefix: event.inputPrefix, outputPrefix: event.outputPrefix, mapRunArn };
}

/**
 * A shard that cannot be read (gone, corrupt) turns its batch into a failed batch: the summary's
 * failed/skipped lists still count, and its featurized images, when the record's input names
 * them, are failed with the reason.
 */
export function reportUnreadableShard(
  report: RunReportBuilder,
  key: string,
  batch: { summary: FeaturizeBatchSummary; inputKeys?: string[] },
  problem: string,
): void {
  const { summary, inputKeys } = batch;
  const accounted = new Set([...summary.failed, ...summary.skipped].map((p) => p.key));
  const featurized = inputKeys && !summary.truncated ? inputKeys.filter((k) => !accounted.has(k)) : undefined;
  const failedBatch: Pick<FailedBatch, 'status' | 'error' | 'cause' | 'inputKeys'> = {
    status: 'SUCCEEDED',
    error: 'UnreadableShard',
    cause: `feature shard ${key}: ${problem}`,
    ...(featurized && featurized.length === summary.count ? { inputKeys: featurized } : {}),
  };
  report.addFailedBatch(failedBatch, summary.count, summary);
}

/** A float32's exponent bits: all set in an infinity and in a NaN, and only there. */
const FLOAT32_EXPONENT_BITS = 0x7f800000;

/**
 * Whether `vectors[offset .. offset + dim)` are all finite, read as their bits: in the moments
 * stage's worker this checks a shard's rows in a quarter of the CPU time `Number.isFinite` takes
 * on each value (0.1 s against 0.4 s a worker on the whole dataset).
 */
export function allFinite(vectors: Float32Array, offset: number, dim: number): boolean {
  const bits = new Uint32Array(vectors.buffer, vectors.byteOffset + offset * Float32Array.BYTES_PER_ELEMENT, dim);
  for (let f = 0; f < dim; f++) if ((bits[f] & FLOAT32_EXPONENT_BITS) === FLOAT32_EXPONENT_BITS) return false;
  return true;
}

export type ShardRead = { key: string; shard: FeatureShard } | { key: string; problem: string };

/**
 * The shards in order, `readAhead` downloads in flight beyond the one being processed: the next
 * shard arrives while this one is accumulated. Missing or undecodable shards come back as a
 * problem; transient storage errors are thrown when their turn comes.
 */
export async function* readShards(s3: S3Client, bucket: string, keys: readonly string[], readAhead: number): AsyncGenerator<ShardRead> {
  const start = (key: string): Promise<ShardRead | { key: string; error: unknown }> =>
    readBytes(s3, bucket, key).then(
      (bytes): ShardRead | { key: string; error: unknown } => {
        try {
          return { key, shard: decodeFeatureShard(bytes) };
        } catch (error) {
          return { key, problem: `unreadable (${(error as Error).message})` };
        }
      },
      (error: unknown) =>
        error instanceof MissingObjectError
          ? { key, problem: error.accessDenied ? 'missing or not readable (403 AccessDenied)' : 'missing (no such key)' }
          : { key, error },
    );
  const inFlight: Promise<ShardRead | { key: string; error: unknown }>[] = [];
  let next = 0;
  while (next < keys.length || inFlight.length > 0) {
    while (next < keys.length && inFlight.length <= readAhead) inFlight.push(start(keys[next++]));
    const read = await inFlight.shift()!;
    if ('error' in read) {
      throw read.error instanceof TransientStorageError ? read.error : new Error(`reading shard s3://${bucket}/${read.key}: ${describeError(read.error)}`);
    }
    yield read;
  }
}

export function stopwatch() {
  const started = performance.now();
  let last = started;
  return {
    lap(): number {
      const t = performance.now();
      const ms = Math.round(t - last);
      last = t;
      return ms;
    },
    total: () => Math.round(performance.now() - started),
  };
}

/** Small per-group records read at once: one GET's latency each, not their bytes, is what they cost. */
const GROUP_RECORDS_IN_FLIGHT = 16;

/** Every group's record at `keyOf(g)` (a stage's tally), checked by `schema`, in group order. */
export async function readGroupRecords<S extends z.ZodTypeAny>(
  s3: S3Client,
  bucket: string,
  groups: readonly number[],
  keyOf: (group: number) => string,
  schema: S,
): Promise<z.infer<S>[]> {
  return mapWithConcurrency(groups, GROUP_RECORDS_IN_FLIGHT, async (g) => schema.parse(JSON.parse(await readText(s3, bucket, keyOf(g)))) as z.infer<S>);
}

/**
 * Per-group parts read at once ahead of the one being used: a GET's latency, not its bytes, is
 * most of what a part costs. The window bounds what is held: parts of one group each (a class
 * statistics part is 610 KB at 300 components and 103 classes, a references part 4 MB at 10,000
 * rows of 100 scores).
 */
const GROUP_PARTS_READ_AHEAD = 8;

/**
 * Each group's part at `keyOf(g)`, in group order, undefined for a group that wrote none (no
 * Training rows, say), `GROUP_PARTS_READ_AHEAD` GETs in flight.
 */
export function groupPartsInOrder(s3: S3Client, bucket: string, groups: number, keyOf: (group: number) => string): AsyncIterable<Uint8Array | undefined> {
  const indices = Array.from({ length: groups }, (_, g) => g);
  return new OrderedReadAhead(indices, GROUP_PARTS_READ_AHEAD, GROUP_PARTS_READ_AHEAD, async (g) => {
    try {
      return await readBytes(s3, bucket, keyOf(g));
    } catch (error) {
      if (error instanceof MissingObjectError) return undefined;
      throw error;
    }
  });
}
