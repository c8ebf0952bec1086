/**
 * The environment the stack gives each function and the handler reads, in one place: one table
 * per function (`FEATURIZE_SETTINGS`, `AGGREGATE_SETTINGS`) holds each setting's variable, bounds,
 * default and doc. The deployment config (lib/config.ts) takes its bounds and defaults from them,
 * the handlers' schemas parse with them, and the writers the stack and the local run build the
 * environment with name the variables from them. A name, bound or default changed here changes
 * every side.
 */
import { z } from 'zod';

/**
 * One row of a settings table: the variable the stack sets and the handler reads; its bounds, a
 * whole number from `min` to `max` (`above`: an exclusive lower bound), which the deployment
 * config checks at synth and the handler at its cold start, so a synthesizable setting never fails
 * a cold start; the default the handler applies when it is unset; and whether it changes a run's
 * results (`shapesResults`: a run id that should differ when they do hashes these,
 * RESULT_SHAPING_ENV). The row's doc comment says what the setting is.
 */
interface SettingRow {
  readonly env: string;
  readonly min?: number;
  readonly max?: number;
  readonly above?: number;
  readonly default?: string | number | boolean;
  readonly shapesResults?: boolean;
}
type SettingsTable = Readonly<Record<string, SettingRow>>;

/** What the featurize function can be: pooled CNN features, or downscaled raw pixels (no model needed). */
export const FEATURIZER_KINDS = ['cnn', 'pixels'] as const;

/**
 * The featurize function's settings (docs/DESIGN.md, handlers). The tuning defaults were chosen
 * with bench/feature-choice.ts and bench/accuracy.ts (docs/BENCHMARKS.md has the tables;
 * lambdas/model/featurizer.ts says why).
 */
export const FEATURIZE_SETTINGS = {
  /** `cnn` or `pixels` (FEATURIZER_KINDS). */
  featurizer: { env: 'FEATURIZER', default: 'cnn', shapesResults: true },
  /**
   * The model: an id of layers/model-weights/manifest.json, baked into the image at /opt/model;
   * the default ships in the repository (`layers/model-weights/`).
   */
  modelId: { env: 'MODEL_ID', default: 'mobilenet_v2_1.0_224_quant', shapesResults: true },
  /** Where the model is. Unset: the fetch-model cache of MODEL_ID. */
  modelDir: { env: 'MODEL_DIR' },
  /** Square CNN input side, in pixels (the weights do not depend on it). */
  imageSize: { env: 'IMAGE_SIZE', min: 32, max: 1024, default: 128, shapesResults: true },
  /** Comma-separated model layers whose pooled activations, side by side, are the features. Unset: the model's own (featurizer.ts). */
  featureLayers: { env: 'FEATURE_LAYER', shapesResults: true },
  /**
   * Exponent p of the power normalisation sign(a) |a|^p of each pooled feature a, above 0 and at
   * most 1: 1 keeps the features as pooled, 0.5 is the signed square root
   * (lambdas/model/power-normalisation.ts says why 0.25).
   */
  featurePower: { env: 'FEATURE_POWER', above: 0, max: 1, default: 0.25, shapesResults: true },
  /**
   * The decompression-bomb limit: images of more pixels are reported as failed, not decoded. Well
   * below sharp's 268 Mpx default: a 100 px dataset never needs more, and one 16k x 16k image would
   * need ~800 MB in a Lambda.
   */
  maxInputPixels: { env: 'MAX_INPUT_PIXELS', min: 1, max: 1_000_000_000, default: 40_000_000, shapesResults: true },
  /** Objects larger than this many bytes are reported as failed, not read. */
  maxInputBytes: { env: 'MAX_INPUT_BYTES', min: 1, max: 1024 ** 3, default: 25 * 1024 * 1024, shapesResults: true },
  /** Concurrent S3 reads inside one featurize batch. */
  readConcurrency: { env: 'READ_CONCURRENCY', min: 1, max: 64, default: 8 },
  /** Images decoded, then run through the model, at a time: bounds tensor memory. */
  inferBatchSize: { env: 'INFER_BATCH_SIZE', min: 1, max: 256, default: 32 },
  /** TF.js backend: `tensorflow`, `wasm` or `cpu`. Unset: the first that works. */
  tfBackend: { env: 'TF_BACKEND' },
  /** TFLite models: `onnxruntime` or `tfjs`. Unset: onnxruntime when it loads. */
  inferRuntime: { env: 'INFER_RUNTIME' },
  /** TFLite models on onnxruntime: intra-op threads; more than a Lambda's 6 vCPU gains nothing (a 3,008 MB Lambda has about 1.7). */
  inferThreads: { env: 'INFER_THREADS', min: 1, max: 6, default: 1 },
  /**
   * One Training image in this many is also featurized as an altered copy (a field condition), which
   * the classifier's statistics learn to ignore; 0: none, 1: every one; one in 64 is too few to teach
   * anything. The default was chosen with `bench/classifier-choice.ts --copies` against what a copy
   * costs (docs/FEATURE-CHOICE.md).
   */
  fieldCopyEvery: { env: 'FIELD_COPY_EVERY', min: 0, max: 64, default: 4, shapesResults: true },
} as const satisfies SettingsTable;

/**
 * What predicts the rows outside Training/: `lda`, shrinkage LDA with prototypes, fitted once per
 * run and saved in pca-model.json (lambdas/analysis/lda-classifier.ts); `logistic`, multinomial
 * logistic regression fitted on a per-class sample of the Training rows and their field copies,
 * saved the same way (lambdas/analysis/logistic-classifier.ts); `lda+logistic`, the default, both
 * as one head (lambdas/analysis/combined-classifier.ts, chosen in docs/FEATURE-CHOICE.md); `knn`,
 * the vote of the nearest Training rows.
 */
export const CLASSIFIERS = ['lda', 'logistic', 'lda+logistic', 'knn'] as const;
export type ClassifierKind = (typeof CLASSIFIERS)[number];

/** The aggregate function's settings: the PCA, the groups of its fanned-out stages, the classification and optional outputs. */
export const AGGREGATE_SETTINGS = {
  /**
   * Principal components kept (the most kept when PCA_VARIANCE_THRESHOLD is set). At most the
   * feature dimension is ever kept (the fit clamps k and warns); the widest featurizer the handler
   * builds (two MobileNet blocks, average and max pooled) stays below 4,096, and features.csv gets
   * one column per component. The default is k = 100, as the featurizer candidates were scored.
   */
  pcaComponents: { env: 'PCA_COMPONENTS', min: 1, max: 4096, default: 100, shapesResults: true },
  /** When set, the smallest k (up to PCA_COMPONENTS) whose cumulative explained variance reaches this share. */
  pcaVarianceThreshold: { env: 'PCA_VARIANCE_THRESHOLD', above: 0, max: 1, shapesResults: true },
  /**
   * Feature shards at most per group of the aggregate's fanned-out stages (the plan spreads a run's
   * shards evenly over the fewest groups that hold them: 285 shards make 8 groups of 35 or 36).
   * 40 batches of 250 images are 10,000 rows (55 MB of float32 features at 1,376 values, a 15 MB
   * float64 scatter), a few seconds of each stage's work; 400 x 250 images of 1,376 float32 values
   * is 550 MB, most of a 1,536 MB function. It shapes the results: the features/ Parquet parts are one per group, and the
   * moments are summed in another order (a few cells of features.csv move by 1e-8).
   */
  groupShards: { env: 'AGGREGATE_GROUP_SHARDS', min: 1, max: 400, default: 40, shapesResults: true },
  /**
   * Moments partials (7.6 MB each at 1,376 features) one merge merges: a run of more groups
   * merges them as a tree of this fan-in (the state machine's `MergeMoments` loop) until at most
   * this many remain for the fit. A partial costs about 0.1 s of CPU to read and merge, an
   * invocation about 2 s before its first one (bench/aggregate-scale.ts --fan-in 4, docs/BENCHMARKS.md),
   * and a level a map run more: the fan-in that makes a tree cheapest, F (ln F - 1) = 20, is about
   * 14. At 16 the demo and the whole dataset (8 groups) and 160,000 images never reach the tree,
   * 1,000,000 images (100 groups) take one level of 7 merges and 10,000,000 two, and no merge reads
   * more than the fit of 16 groups does. The state machine hands the value to the stages it
   * builds; this variable serves a run of every stage in one invocation. It shapes the results as
   * the group size does: the order the moments are summed in.
   */
  momentsMergeFanIn: { env: 'MOMENTS_MERGE_FAN_IN', min: 2, max: 64, default: 16, shapesResults: true },
  /**
   * Neighbours that vote in the k-NN classification of the rows outside Training/: more than 100
   * voters only blurs the classes of Fruits-360-sized sets.
   */
  knnNeighbours: { env: 'KNN_NEIGHBOURS', min: 1, max: 100, default: 5, shapesResults: true },
  /** `lda`, `logistic`, `lda+logistic` or `knn` (CLASSIFIERS). */
  classifier: { env: 'CLASSIFIER', default: 'lda+logistic' as ClassifierKind, shapesResults: true },
  /**
   * Components a fitted head (`lda+logistic`, `lda`, `logistic`) sees, when more than
   * PCA_COMPONENTS: the fit computes that many and saves them in pca-model.json, features.csv keeps
   * PCA_COMPONENTS. Held to one per 4 Training images (logistic regression even below
   * PCA_COMPONENTS: lambdas/analysis/classifier-components.ts); k-NN votes over the kept ones.
   */
  classifierComponents: { env: 'CLASSIFIER_COMPONENTS', min: 1, max: 4096, default: 300, shapesResults: true },
  /** `true`: also write the raw feature vectors (embeddings.parquet). */
  keepEmbeddings: { env: 'KEEP_EMBEDDINGS', default: false },
} as const satisfies SettingsTable;

type EnvNames<T extends SettingsTable> = { readonly [K in keyof T]: T[K]['env'] };
const envNames = <T extends SettingsTable>(table: T): EnvNames<T> =>
  Object.fromEntries(Object.entries(table).map(([setting, row]) => [setting, row.env])) as EnvNames<T>;

/** The featurize function's variables, by setting (FEATURIZE_SETTINGS). */
export const FEATURIZE_ENV = envNames(FEATURIZE_SETTINGS);
/** The aggregate function's variables, by setting (AGGREGATE_SETTINGS). */
export const AGGREGATE_ENV = envNames(AGGREGATE_SETTINGS);

/** The table's default model (FEATURIZE_SETTINGS.modelId), which tools and benches name. */
export const DEFAULT_MODEL_ID = FEATURIZE_SETTINGS.modelId.default;
/** The table's shards per group (AGGREGATE_SETTINGS.groupShards). */
export const DEFAULT_GROUP_SHARDS = AGGREGATE_SETTINGS.groupShards.default;
/** The table's moments merge fan-in (AGGREGATE_SETTINGS.momentsMergeFanIn). */
export const DEFAULT_MOMENTS_MERGE_FAN_IN = AGGREGATE_SETTINGS.momentsMergeFanIn.default;
/** The table's classifier (AGGREGATE_SETTINGS.classifier). */
export const DEFAULT_CLASSIFIER: ClassifierKind = AGGREGATE_SETTINGS.classifier.default;
/** The table's components of a fitted head (AGGREGATE_SETTINGS.classifierComponents). */
export const DEFAULT_CLASSIFIER_COMPONENTS = AGGREGATE_SETTINGS.classifierComponents.default;

/**
 * A model id names a manifest entry (layers/model-weights/manifest.json), a cache directory and the image's
 * build argument, so it is one path segment that cannot be `.` or `..`: it starts with a letter or
 * a digit.
 */
export const MODEL_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const MODEL_ID_RULE = 'letters, digits, "_", "." and "-", starting with a letter or digit';
/** A model layer (TF.js) or tensor (TFLite, `block/op`) whose pooled activations are features. */
export const LAYER_NAME_PATTERN = /^[A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*$/;

const boundedInt = (bounds: { min: number; max: number }) => z.coerce.number().int().min(bounds.min).max(bounds.max);
const flag = () => z.enum(['true', 'false']).transform((v) => v === 'true');
const F = FEATURIZE_SETTINGS;
const A = AGGREGATE_SETTINGS;

/** The featurize handler's environment: the table's bounds, and its defaults for what is unset. */
export const FeaturizeEnvSchema = z.object({
  [F.featurizer.env]: z.enum(FEATURIZER_KINDS).default(F.featurizer.default),
  [F.modelId.env]: z.string().regex(MODEL_ID_PATTERN, MODEL_ID_RULE).default(F.modelId.default),
  [F.modelDir.env]: z.string().min(1).optional(),
  [F.imageSize.env]: boundedInt(F.imageSize).default(F.imageSize.default),
  [F.featureLayers.env]: z.string().min(1).optional(),
  [F.featurePower.env]: z.coerce.number().gt(F.featurePower.above).lte(F.featurePower.max).default(F.featurePower.default),
  [F.maxInputPixels.env]: boundedInt(F.maxInputPixels).default(F.maxInputPixels.default),
  [F.maxInputBytes.env]: boundedInt(F.maxInputBytes).default(F.maxInputBytes.default),
  [F.readConcurrency.env]: boundedInt(F.readConcurrency).default(F.readConcurrency.default),
  [F.inferBatchSize.env]: boundedInt(F.inferBatchSize).default(F.inferBatchSize.default),
  [F.tfBackend.env]: z.enum(['tensorflow', 'wasm', 'cpu']).optional(),
  [F.inferRuntime.env]: z.enum(['onnxruntime', 'tfjs']).optional(),
  [F.inferThreads.env]: boundedInt(F.inferThreads).default(F.inferThreads.default),
  [F.fieldCopyEvery.env]: boundedInt(F.fieldCopyEvery).default(F.fieldCopyEvery.default),
});
export type FeaturizeEnv = z.infer<typeof FeaturizeEnvSchema>;

/** The aggregate handler's environment: the table's bounds, and its defaults for what is unset. */
export const AggregateEnvSchema = z.object({
  [A.pcaComponents.env]: boundedInt(A.pcaComponents).default(A.pcaComponents.default),
  [A.pcaVarianceThreshold.env]: z.coerce.number().gt(A.pcaVarianceThreshold.above).lte(A.pcaVarianceThreshold.max).optional(),
  [A.groupShards.env]: boundedInt(A.groupShards).default(A.groupShards.default),
  [A.momentsMergeFanIn.env]: boundedInt(A.momentsMergeFanIn).default(A.momentsMergeFanIn.default),
  [A.knnNeighbours.env]: boundedInt(A.knnNeighbours).default(A.knnNeighbours.default),
  [A.classifier.env]: z.enum(CLASSIFIERS).default(A.classifier.default),
  [A.classifierComponents.env]: boundedInt(A.classifierComponents).default(A.classifierComponents.default),
  [A.keepEmbeddings.env]: flag().default(A.keepEmbeddings.default),
});
export type AggregateEnv = z.infer<typeof AggregateEnvSchema>;

/**
 * The variables of both functions whose values change a run's results (features, components,
 * predictions), in table order: a run id that should differ when they do hashes these.
 */
export const RESULT_SHAPING_ENV: readonly string[] = [...Object.values(FEATURIZE_SETTINGS), ...Object.values(AGGREGATE_SETTINGS)]
  .filter((row: SettingRow) => row.shapesResults)
  .map((row) => row.env);

/** What the stack sets on the featurize function; unset tuning is left out of the environment. */
export interface FeaturizeEnvSettings {
  readonly featurizer: (typeof FEATURIZER_KINDS)[number];
  readonly modelId: string;
  readonly modelDir: string;
  readonly imageSize?: number;
  readonly featureLayers?: readonly string[];
  readonly featurePower?: number;
  readonly maxInputPixels?: number;
  readonly readConcurrency?: number;
  readonly fieldCopyEvery?: number;
}

/** What the stack sets on the aggregate function; unset settings are left out of the environment. */
export interface AggregateEnvSettings {
  readonly pcaComponents: number;
  readonly pcaVarianceThreshold?: number;
  readonly groupShards?: number;
  readonly momentsMergeFanIn?: number;
  readonly knnNeighbours?: number;
  readonly classifier?: ClassifierKind;
  readonly classifierComponents?: number;
  readonly keepEmbeddings?: boolean;
}

export function featurizeEnvironment(settings: FeaturizeEnvSettings): Record<string, string> {
  return environmentOf(FEATURIZE_SETTINGS, settings);
}

export function aggregateEnvironment(settings: AggregateEnvSettings): Record<string, string> {
  return environmentOf(AGGREGATE_SETTINGS, settings);
}

type SettingValue = string | number | boolean | readonly string[] | undefined;

/** The variables of the settings that are set, as strings (a list comma-separated), named by `table`. */
function environmentOf<T extends SettingsTable>(table: T, settings: { readonly [K in keyof T]?: SettingValue }): Record<string, string> {
  return Object.fromEntries(
    Object.entries(settings as Record<string, SettingValue>).flatMap(([setting, value]) =>
      value === undefined ? [] : [[table[setting].env, Array.isArray(value) ? value.join(',') : String(value)]],
    ),
  );
}

/**
 * Parse a handler's environment with its schema, once at init: a bad value fails the cold start
 * with every offending variable named, instead of surfacing as odd behaviour mid-run. Empty values
 * count as unset, so a CDK environment entry left blank falls back to the schema's default.
 */
export function parseHandlerEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv, what: string): z.output<S> {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    throw new Error(`bad ${what} configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

// ---- Observability: Powertools' own variables, set by the stack on both functions ----
// Kept apart from the featurizer settings above. The handlers do not parse these: Powertools reads
// them itself (https://docs.powertools.aws.dev/lambda/typescript/latest/environment-variables/).

/** Powertools variables the stack sets on both functions, and the ones the local run sets. */
export const OBSERVABILITY_ENV = {
  /** Metric namespace (METRICS_NAMESPACE in lambdas/contracts/metrics.ts). */
  metricsNamespace: 'POWERTOOLS_METRICS_NAMESPACE',
  /** Logger, Metrics (`service` dimension) and Tracer service name: the stack name. */
  serviceName: 'POWERTOOLS_SERVICE_NAME',
  /** `true` stops Metrics writing EMF (the local run sets it: EMF lines would bury its progress display). */
  metricsDisabled: 'POWERTOOLS_METRICS_DISABLED',
  /** `false` turns the Tracer off; outside Lambda (no AWS_EXECUTION_ENV) it is off anyway. */
  traceEnabled: 'POWERTOOLS_TRACE_ENABLED',
} as const;

/** What the stack sets on both functions for Powertools. */
export function observabilityEnvironment(settings: { readonly metricsNamespace: string; readonly serviceName: string }): Record<string, string> {
  return {
    [OBSERVABILITY_ENV.metricsNamespace]: settings.metricsNamespace,
    [OBSERVABILITY_ENV.serviceName]: settings.serviceName,
  };
}

/** What the local run adds: no EMF on stdout, no tracer (there is no X-Ray daemon). */
export const LOCAL_OBSERVABILITY_ENV: Record<string, string> = {
  [OBSERVABILITY_ENV.metricsDisabled]: 'true',
  [OBSERVABILITY_ENV.traceEnabled]: 'false',
};
// ---- end of observability ----
