/**
 * The messages that cross the state machine: execution input, the Distributed Map batch event,
 * the featurize summary and the aggregate step's input. One place, validated with zod, shared by
 * the CDK definition's documentation, the handlers and the local runner.
 *
 * Everything here stays small on purpose: a state's input/output is capped at 256 KiB
 * (https://docs.aws.amazon.com/step-functions/latest/dg/limits-overview.html), so only pointers to
 * S3 objects travel through the state machine, never feature vectors.
 */
import { z } from 'zod';

/** Fixed top-level prefixes; IAM grants are scoped to them (see lib/constructs). */
export const BUCKET_LAYOUT = {
  /** Images live under `input/<dataset>/<label>/<file>`. */
  inputRoot: 'input/',
  /** Intermediate artifacts of a run (feature shards, map results): expired by a lifecycle rule. */
  workRoot: 'work/',
  /** Final outputs of a run (CSV, model, plots, report): kept. */
  resultsRoot: 'results/',
  /** Name of the marker object that starts a run for the folder it sits in. */
  startMarker: '_START',
} as const;

/**
 * Upper bound of MAX_INPUT_PIXELS, the decompression-bomb limit: the deployment config and the
 * featurize handler's environment check against this one value, so a synthesizable setting never
 * fails the function's cold start.
 */
export const MAX_INPUT_PIXELS_LIMIT = 1_000_000_000;

/**
 * A run id names the run's execution and its `work/<runId>/` and `results/<runId>/` folders, so it
 * is one safe path segment: 1-80 characters (the Step Functions execution name limit,
 * https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html), letters,
 * digits, `.`, `_` and `-`, starting with a letter or digit, never `..`. Dataset names follow the
 * same rule, as `input/<dataset>/` is a prefix the IAM grants and the start-marker rule match on.
 */
export const RUN_ID_PATTERN = /^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;
export const DATASET_NAME_PATTERN = RUN_ID_PATTERN;
export const NAME_RULE = '1-80 characters: letters, digits, ".", "_" and "-", starting with a letter or digit, without ".."';

/** Why `value` is not a valid run id or dataset name, or undefined when it is one. */
export function invalidName(value: string, what: 'run id' | 'dataset name'): string | undefined {
  return RUN_ID_PATTERN.test(value) ? undefined : `${what} ${JSON.stringify(value)} is not valid: use ${NAME_RULE}`;
}

/** S3's longest object key, in UTF-8 bytes (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html). */
export const S3_KEY_MAX_BYTES = 1024;

/** Where a dataset's images live in the bucket: `input/<dataset>/`. */
export function datasetInputPrefix(dataset: string): string {
  return `${BUCKET_LAYOUT.inputRoot}${dataset}/`;
}

/** Execution input after the definition filled in its defaults. */
export const RunSettingsSchema = z.object({
  bucket: z.string().min(3),
  inputPrefix: z.string().min(1),
  runId: z.string().regex(RUN_ID_PATTERN, `runId: ${NAME_RULE}`),
  outputPrefix: z.string().min(1),
  workPrefix: z.string().min(1),
});
export type RunSettings = z.infer<typeof RunSettingsSchema>;

/** One object as the Distributed Map's ItemReader (S3 ListObjectsV2) hands it over. */
export const ListedObjectSchema = z
  .object({
    Key: z.string().min(1),
    Size: z.number().int().nonnegative().optional(),
    ETag: z.string().optional(),
    LastModified: z.string().optional(),
    StorageClass: z.string().optional(),
  })
  .passthrough();
export type ListedObject = z.infer<typeof ListedObjectSchema>;

/** The ItemBatcher event a featurize child receives: `{ Items, BatchInput }`. */
export const FeaturizeBatchEventSchema = z.object({
  Items: z.array(ListedObjectSchema).min(1),
  BatchInput: RunSettingsSchema,
});
export type FeaturizeBatchEvent = z.infer<typeof FeaturizeBatchEventSchema>;

/** Per-image outcome that is not a feature vector. */
export const ItemProblemSchema = z.object({ key: z.string(), reason: z.string() });
export type ItemProblem = z.infer<typeof ItemProblemSchema>;

/**
 * What a featurize child returns: a pointer and counts, never the vectors. The aggregator checks
 * each child's output against this schema on the way in.
 */
export const FeaturizeBatchSummarySchema = z.object({
  /**
   * S3 key of the batch's feature shard (in BatchInput.bucket). The featurize handler writes it even
   * when no image succeeded, since its header is the only complete list of the batch's failures;
   * readers still accept null (a batch with no shard contributes no rows).
   */
  shard: z.string().min(1).nullable(),
  /** Images featurized into the shard. */
  count: z.number().int().nonnegative(),
  /** Images that could not be featurized, at most SUMMARY_LIST_LIMIT of them (all are in the shard). */
  failed: z.array(ItemProblemSchema),
  failedCount: z.number().int().nonnegative(),
  /** Keys that are not images of a label folder (marker, notes, misplaced files). */
  skipped: z.array(ItemProblemSchema),
  skippedCount: z.number().int().nonnegative(),
  /** True when `failed`/`skipped` were cut to SUMMARY_LIST_LIMIT entries. */
  truncated: z.boolean(),
});
export type FeaturizeBatchSummary = z.infer<typeof FeaturizeBatchSummarySchema>;
export const SUMMARY_LIST_LIMIT = 100;

/** Where the Distributed Map's ResultWriter put its manifest (the Map state's output). */
export const ResultWriterDetailsSchema = z.object({
  Bucket: z.string().min(3),
  Key: z.string().min(1),
});

/** The aggregate step's input: run settings plus the ResultWriter manifest location. */
export const AggregateEventSchema = RunSettingsSchema.extend({
  mapResult: z.object({
    MapRunArn: z.string().optional(),
    ResultWriterDetails: ResultWriterDetailsSchema,
  }),
});
export type AggregateEvent = z.infer<typeof AggregateEventSchema>;

/** Thrown for an event that does not match its schema: a wiring bug, never retried. */
export class MalformedEventError extends Error {
  override readonly name = 'MalformedEventError';
}

/** A handler's event checked against its schema; the first problems are named in the error. */
export function parseEvent<S extends z.ZodType>(schema: S, rawEvent: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(rawEvent);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 5).map((issue) => `${issue.path.join('.') || '(event)'}: ${issue.message}`);
    throw new MalformedEventError(`${what} does not match its schema: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/**
 * Thrown for transient storage failures that survived the SDK's own retries (5xx, throttling,
 * connection resets). The state machine retries it with backoff; bad images never throw it.
 */
export class TransientStorageError extends Error {
  override readonly name = 'TransientStorageError';
}
