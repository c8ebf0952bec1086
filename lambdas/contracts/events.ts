/**
 * The messages that cross the state machine: execution input, the Distributed Map batch event,
 * the featurize summary and the aggregate step's input. One place, validated with zod, shared by
 * the CDK definition's documentation, the handlers and the local runner. The bucket layout is in
 * `bucket-layout.ts`, the handlers' environment in `handler-env.ts`.
 *
 * Everything here stays small on purpose: a state's input/output is capped at 256 KiB
 * (https://docs.aws.amazon.com/step-functions/latest/dg/limits-overview.html), so only pointers to
 * S3 objects travel through the state machine, never feature vectors.
 */
import { z } from 'zod';
import { datasetInputPrefix, invalidPcaModelKey, NAME_RULE, PCA_MODEL_KEY_RULE, RUN_ID_PATTERN, runLayout } from './bucket-layout';

/**
 * Execution input after the definition filled in its defaults. `pcaModel` is there only when the
 * execution input gave one: the run then projects with that saved model instead of fitting (the
 * featurize children never get it, their BatchInput is the required fields).
 */
export const RunSettingsSchema = z.object({
  bucket: z.string().min(3),
  inputPrefix: z.string().min(1),
  runId: z.string().regex(RUN_ID_PATTERN, `runId: ${NAME_RULE}`),
  outputPrefix: z.string().min(1),
  workPrefix: z.string().min(1),
  pcaModel: z
    .string()
    .refine((key) => invalidPcaModelKey(key) === undefined, `pcaModel: ${PCA_MODEL_KEY_RULE}`)
    .optional(),
});
export type RunSettings = z.infer<typeof RunSettingsSchema>;

/**
 * The settings the state machine fills in for run `runId` of the images of `dataset` in `bucket`,
 * for what starts a handler without it (benches, tests).
 */
export function runSettingsFor(bucket: string, runId: string, dataset: string = runId): RunSettings {
  const { outputPrefix, workPrefix } = runLayout(runId);
  return { bucket, inputPrefix: datasetInputPrefix(dataset), runId, outputPrefix, workPrefix };
}

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

/**
 * The batch record a featurize child writes beside its shard (`batchRecordKey`): the keys of its
 * `Items`, in the order the map handed them. The ResultWriter keeps only the children's outputs
 * (Transformation COMPACT), so this is where the group that reads the shard finds what the batch
 * was handed, and proves each key came out once; a missing shard's keys are still known by it.
 */
export const BatchRecordSchema = z.object({ items: z.array(z.string().min(1)).min(1) });
export type BatchRecord = z.infer<typeof BatchRecordSchema>;

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

const GroupIndexSchema = z.number().int().nonnegative();
const GroupCountSchema = z.number().int().nonnegative();
/** Partials one node of the moments merge tree merges, and the most the fit merges (`momentsMergeLevels`). */
const MergeFanInSchema = z.number().int().min(2);

/**
 * The aggregate as stages of the state machine, each one invocation of the aggregate function:
 * `plan` (the ResultWriter's summaries into groups of shards), `moments` and `project` and
 * `classify` (one child of a Distributed Map per group), `merge-moments` (a child of the moments
 * merge tree: partials `first` to `first + fanIn` of level `level - 1`, of the `inputs` there, into
 * one of level `level`), `fit`, `fit-classifier`, `publish-features` (beside `fit-classifier`) and
 * `publish` (merges whose input grows with the number of groups, not of images; the fit merges the
 * top level of the tree that `fanIn` gives).
 * Map children get the run's required settings; anything else they need is in the plan the `plan`
 * stage wrote.
 */
export const AggregateStageEventSchema = z.discriminatedUnion('stage', [
  z.object({ stage: z.literal('plan'), run: AggregateEventSchema }),
  z.object({ stage: z.literal('moments'), run: RunSettingsSchema, group: GroupIndexSchema }),
  z.object({
    stage: z.literal('merge-moments'),
    run: RunSettingsSchema,
    level: z.number().int().min(1),
    first: GroupIndexSchema,
    inputs: GroupCountSchema,
    fanIn: MergeFanInSchema,
  }),
  z.object({ stage: z.literal('fit'), run: RunSettingsSchema, groups: GroupCountSchema, fanIn: MergeFanInSchema }),
  z.object({ stage: z.literal('project'), run: RunSettingsSchema, group: GroupIndexSchema }),
  z.object({ stage: z.literal('fit-classifier'), run: RunSettingsSchema, groups: GroupCountSchema }),
  z.object({ stage: z.literal('publish-features'), run: RunSettingsSchema, groups: GroupCountSchema }),
  z.object({ stage: z.literal('classify'), run: RunSettingsSchema, group: GroupIndexSchema }),
  z.object({ stage: z.literal('publish'), run: RunSettingsSchema, groups: GroupCountSchema }),
]);
export type AggregateStageEvent = z.infer<typeof AggregateStageEventSchema>;
export type AggregateStage = AggregateStageEvent['stage'];

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
