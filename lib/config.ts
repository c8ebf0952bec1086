/**
 * The pipeline's deployment settings: one zod schema with defaults, filled from the `cdk.json`
 * context key `fruits-pipeline` and passed down as a `readonly config` prop.
 *
 * Usage:
 *   const config = configFromContext(app);   // cdk.json context (or `-c fruits-pipeline='{...}'`)
 *   const config = defaultConfig();          // every default, e.g. for tests
 *   const config = defaultConfig({ batchSize: 10 });
 *
 * Every limit below mirrors a service limit or a contract, with the doc behind it. A setting that
 * reaches a handler takes its bounds and default from the handler's settings table
 * (FEATURIZE_SETTINGS, AGGREGATE_SETTINGS in lambdas/contracts/handler-env.ts), where it is documented.
 */
import type { IConstruct, Node } from 'constructs';
import { z } from 'zod';
import {
  AGGREGATE_SETTINGS as AGGREGATE,
  CLASSIFIERS,
  FEATURIZE_SETTINGS as FEATURIZE,
  FEATURIZER_KINDS,
  LAYER_NAME_PATTERN,
  MODEL_ID_PATTERN,
  MODEL_ID_RULE,
} from '../lambdas/contracts/handler-env';

/** The context key in cdk.json that holds the pipeline settings. */
export const CONFIG_CONTEXT_KEY = 'fruits-pipeline';

/** Retention values CloudWatch Logs accepts (RetentionDays), 9999 being "never expire". */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653, 9999] as const;

// https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
const lambdaMemoryMb = z.number().int().min(128).max(10240);
const lambdaTimeoutSeconds = z.number().int().min(1).max(900);
/** A whole-number setting of a handler, within its table's bounds. */
const handlerInt = (row: { readonly min: number; readonly max: number }) => z.number().int().min(row.min).max(row.max);

export const PipelineConfigSchema = z
  .object({
    /**
     * Images per Distributed Map child (ItemBatcher MaxItemsPerBatch). A batch travels as the
     * child's input, capped at 256 KiB (MAX_BATCH_INPUT_BYTES cuts a batch of long keys smaller);
     * a listed S3 object is ~200 bytes, so 1,000 is a safe top. Each child pays a fixed cost (its
     * transitions, the invocation, the model waiting for its first images, the shard PUT):
     * 250 spreads it over about a second of CPU, enough to keep the handler within 10% of the
     * model's own speed in bench/featurize.ts where 100 is not (docs/BENCHMARKS.md), and a child
     * that fails still costs only 250 images' work.
     */
    batchSize: z.number().int().min(1).max(1000).default(250),
    /**
     * Concurrent featurize children (Distributed Map MaxConcurrency, service maximum 10,000). 200
     * with featurizeMemoryMb 1,769 meets 1,000,000 images in 5 minutes for $1 in the cost model
     * with half the time to spare (docs/SIZING.md, `npx tsx bench/sizing.ts`); the cheapest setting
     * that meets it, 100, costs $0.02 less and leaves 1.7 minutes for what the model assumes. Each
     * child is one cold start, so more children trade dollars for minutes.
     */
    maxConcurrency: z.number().int().min(1).max(10000).default(200),
    /**
     * Share of items a run tolerates failing before the Map state fails. AWS counts items: a child
     * that fails after its retries fails every image of its batch. Bad images never fail a child
     * (they are reported), so this only trips on systemic errors.
     */
    toleratedFailurePercentage: z.number().min(0).max(100).default(5),

    /**
     * Featurize function memory: 1,769 MB is one vCPU. The handler keeps at most about 1.5 cores
     * busy, so more memory bills less time at more GB-s per second (docs/SIZING.md).
     */
    featurizeMemoryMb: lambdaMemoryMb.default(1769),
    featurizeTimeoutSeconds: lambdaTimeoutSeconds.default(300),
    /** Reserved concurrency of the featurize function; unset = share the account's pool. */
    featurizeReservedConcurrency: z.number().int().min(1).optional(),
    /**
     * Aggregate function memory. The streaming PCA holds no vectors, only a dim x dim scatter
     * matrix (peak RSS ~330 MB at 100,000 x 1,280, docs/BENCHMARKS.md); memory buys CPU here
     * (1,769 MB = one vCPU) and the PCA is single-threaded, so more does not help.
     */
    aggregateMemoryMb: lambdaMemoryMb.default(3008),
    aggregateTimeoutSeconds: lambdaTimeoutSeconds.default(900),
    /**
     * Feature shards per group of the aggregate's fanned-out stages (AGGREGATE_SETTINGS.groupShards):
     * each moments, project and classify invocation works on one group, so its time and memory are
     * bounded by the group, not by the run (docs/SIZING.md).
     */
    aggregateGroupShards: handlerInt(AGGREGATE.groupShards).default(AGGREGATE.groupShards.default),
    /** Concurrent children of the aggregate's group maps (Distributed Map MaxConcurrency). */
    aggregateConcurrency: z.number().int().min(1).max(10000).default(100),
    /**
     * Moments partials one merge merges (AGGREGATE_SETTINGS.momentsMergeFanIn): a run of more
     * groups merges its groups' moments as a tree of this fan-in before the fit, which then merges
     * at most this many; a run of fewer skips the tree.
     */
    momentsMergeFanIn: handlerInt(AGGREGATE.momentsMergeFanIn).default(AGGREGATE.momentsMergeFanIn.default),

    /** Principal components kept, the most when pcaVarianceThreshold is set (AGGREGATE_SETTINGS.pcaComponents). */
    pcaComponents: handlerInt(AGGREGATE.pcaComponents).default(AGGREGATE.pcaComponents.default),
    /** Keep the smallest k whose cumulative explained variance reaches this share (AGGREGATE_SETTINGS.pcaVarianceThreshold). */
    pcaVarianceThreshold: z.number().gt(AGGREGATE.pcaVarianceThreshold.above).max(AGGREGATE.pcaVarianceThreshold.max).optional(),

    // ---- Classification and outputs ----
    /** k of the k-NN that classifies every non-Training image against the Training ones (AGGREGATE_SETTINGS.knnNeighbours). */
    knnNeighbours: handlerInt(AGGREGATE.knnNeighbours).default(AGGREGATE.knnNeighbours.default),
    /**
     * One Training image in this many is also featurized as an altered copy (another background,
     * light, blur...), which the LDA learns to ignore; 0 = none (FEATURIZE_SETTINGS.fieldCopyEvery).
     * Each copy costs about one more image of featurize time.
     */
    fieldCopyEvery: handlerInt(FEATURIZE.fieldCopyEvery).default(FEATURIZE.fieldCopyEvery.default),
    /**
     * What predicts every non-Training image: `lda+logistic` (the default), `lda` or `logistic`
     * (saved in pca-model.json), or `knn` (AGGREGATE_SETTINGS.classifier).
     */
    classifier: z.enum(CLASSIFIERS).default(AGGREGATE.classifier.default),
    /**
     * Components a fitted head (`lda+logistic`, `lda`, `logistic`) sees when more than
     * pcaComponents, held to one per 4 Training images; saved in pca-model.json, not in
     * features.csv (AGGREGATE_SETTINGS.classifierComponents).
     */
    classifierComponents: handlerInt(AGGREGATE.classifierComponents).default(AGGREGATE.classifierComponents.default),
    /** Also write the raw feature vectors as embeddings.parquet (AGGREGATE_SETTINGS.keepEmbeddings). */
    keepEmbeddings: z.boolean().default(AGGREGATE.keepEmbeddings.default),
    // ---- end of classification and outputs ----

    /** Pretrained model baked into the image at /opt/model (FEATURIZE_SETTINGS.modelId). */
    modelId: z
      .string()
      .regex(MODEL_ID_PATTERN, `must be a model id of layers/model-weights/manifest.json (${MODEL_ID_RULE})`)
      .default(FEATURIZE.modelId.default),
    /** `cnn`: pooled CNN features; `pixels`: downscaled raw pixels, no model needed (FEATURIZE_SETTINGS.featurizer). */
    featurizer: z.enum(FEATURIZER_KINDS).default(FEATURIZE.featurizer.default),

    // Featurizer tuning. Unset = left out of the function's environment, and the featurize handler
    // applies its table's default (FEATURIZE_SETTINGS, chosen with bench/accuracy.ts): set these
    // only to deploy something else.
    /** Square input side of the CNN, in pixels (FEATURIZE_SETTINGS.imageSize). */
    imageSize: handlerInt(FEATURIZE.imageSize).optional(),
    /** Model layers whose pooled activations make the features, side by side (FEATURIZE_SETTINGS.featureLayers). */
    featureLayers: z.array(z.string().regex(LAYER_NAME_PATTERN, 'must be a layer name')).min(1).optional(),
    /** Exponent of the power normalisation of the pooled features (FEATURIZE_SETTINGS.featurePower). */
    featurePower: z.number().gt(FEATURIZE.featurePower.above).max(FEATURIZE.featurePower.max).optional(),
    /** Images larger than this many pixels are reported as failed, not decoded (FEATURIZE_SETTINGS.maxInputPixels). */
    maxInputPixels: handlerInt(FEATURIZE.maxInputPixels).optional(),
    /** Concurrent S3 reads inside one featurize batch (FEATURIZE_SETTINGS.readConcurrency). */
    readConcurrency: handlerInt(FEATURIZE.readConcurrency).optional(),

    /** CPU architecture of both functions and platform of their image. */
    architecture: z.enum(['x86_64', 'arm64']).default('x86_64'),
    /** Days before intermediate artifacts under work/ expire. */
    intermediateRetentionDays: z.number().int().min(1).default(7),
    /** CloudWatch Logs retention of the functions and state machine (9999 = never expire). */
    logRetentionDays: z
      .number()
      .int()
      .refine((days) => (LOG_RETENTION_DAYS as readonly number[]).includes(days), {
        message: `must be one of ${LOG_RETENTION_DAYS.join(', ')} (CloudWatch Logs retention values)`,
      })
      .default(30),
    /** What happens to the buckets and log groups when the stack is deleted. */
    removalPolicy: z.enum(['retain', 'destroy']).default('retain'),

    // ---- Operations: dashboard, notifications, cost guard-rails, encryption ----
    /** The CloudWatch dashboard of runs, functions and the handlers' metrics. */
    dashboard: z.boolean().default(true),
    /** The notification topic, its alarms and the run-end rule (README "Observe"). */
    notifications: z.boolean().default(true),
    /** Subscribed to the notification topic (alarms and run ends; AWS asks to confirm it). @default - no subscription */
    notificationEmail: z.email().optional(),
    /** Featurize errors, as a share of its invocations over 5 minutes, that raise the error-rate alarm. */
    featurizeErrorRateAlarmPercent: z.number().gt(0).max(100).default(5),
    /** Monthly AWS Budgets budget in USD on the stack's cost-allocation tag. @default - no budget */
    monthlyBudgetUsd: z.number().positive().optional(),
    /** Who the budget alerts (forecast above 100%, actual above 80%); required with monthlyBudgetUsd. */
    budgetEmail: z.email().optional(),
    /** A customer-managed KMS key (rotated) for the bucket, log groups, topic and queue; off = AWS-owned keys. */
    customerManagedKey: z.boolean().default(false),
    /** Extra tags on every resource, next to the cost-allocation tag. */
    tags: z.record(z.string().min(1).max(128), z.string().max(256)).default({}),
    // ---- end of operations ----
  })
  .strict()
  .superRefine((config, ctx) => {
    if ((config.monthlyBudgetUsd === undefined) !== (config.budgetEmail === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['budgetEmail'], message: 'monthlyBudgetUsd and budgetEmail go together: a budget alerts someone' });
    }
    const reserved = config.featurizeReservedConcurrency;
    if (reserved !== undefined && config.maxConcurrency > reserved) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxConcurrency'],
        message: `${config.maxConcurrency} exceeds featurizeReservedConcurrency (${reserved}): the extra children would only be throttled`,
      });
    }
  });

export type PipelineConfig = z.output<typeof PipelineConfigSchema>;
/** What a person writes in cdk.json: every key optional. */
export type PipelineConfigInput = z.input<typeof PipelineConfigSchema>;

/** Thrown for settings that do not match the schema; the message lists every problem. */
export class PipelineConfigError extends Error {
  override readonly name = 'PipelineConfigError';
}

/** Validate raw settings and fill the defaults. */
export function parsePipelineConfig(raw: unknown, source = 'config'): PipelineConfig {
  const result = PipelineConfigSchema.safeParse(raw ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `  - ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  throw new PipelineConfigError(`Invalid ${source}:\n${problems.join('\n')}`);
}

/** Every default, optionally overridden: the one factory tests build their apps from. */
export function defaultConfig(overrides: PipelineConfigInput = {}): PipelineConfig {
  return parsePipelineConfig(overrides, 'config overrides');
}

/**
 * Settings from the `fruits-pipeline` context key, seen from any construct (the App usually) or
 * its node. A value given on the command line (`-c fruits-pipeline='{"batchSize":10}'`) arrives
 * as a string and is parsed as JSON.
 */
export function configFromContext(scope: IConstruct | Node): PipelineConfig {
  const source = `cdk.json context "${CONFIG_CONTEXT_KEY}"`;
  const node = 'node' in scope ? scope.node : scope;
  let raw: unknown = node.tryGetContext(CONFIG_CONTEXT_KEY);
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (error) {
      throw new PipelineConfigError(`Invalid ${source}: not JSON (${(error as Error).message})`);
    }
  }
  return parsePipelineConfig(raw, source);
}
