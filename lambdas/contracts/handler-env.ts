/**
 * The environment the stack gives each function and the handler reads, in one place: the
 * variable names (`FEATURIZE_ENV`, `AGGREGATE_ENV`), the bounds of every setting that travels
 * through them (also the deployment config's bounds, lib/config.ts), the handlers' schemas, and
 * the writers the stack and the local run build the environment with. A name or bound changed here
 * changes both sides.
 */
import { z } from 'zod';

/** The featurize function's variables (docs/DESIGN.md, handlers). */
export const FEATURIZE_ENV = {
  featurizer: 'FEATURIZER',
  modelId: 'MODEL_ID',
  modelDir: 'MODEL_DIR',
  imageSize: 'IMAGE_SIZE',
  featureLayers: 'FEATURE_LAYER',
  featureSqrt: 'FEATURE_SQRT',
  maxInputPixels: 'MAX_INPUT_PIXELS',
  maxInputBytes: 'MAX_INPUT_BYTES',
  readConcurrency: 'READ_CONCURRENCY',
  inferBatchSize: 'INFER_BATCH_SIZE',
  tfBackend: 'TF_BACKEND',
  inferRuntime: 'INFER_RUNTIME',
  inferThreads: 'INFER_THREADS',
  /** One Training image in this many also featurized as an altered copy, for the classifier; 0: none. */
  fieldCopyEvery: 'FIELD_COPY_EVERY',
} as const;

/** The aggregate function's variables. */
export const AGGREGATE_ENV = {
  pcaComponents: 'PCA_COMPONENTS',
  pcaVarianceThreshold: 'PCA_VARIANCE_THRESHOLD',
  /** Feature shards per group of the aggregate's fanned-out stages. */
  groupShards: 'AGGREGATE_GROUP_SHARDS',
} as const;

/**
 * Shards per group when nothing else is set: 40 batches of 250 images are 10,000 rows (55 MB of
 * float32 features at 1,376 values, a 15 MB float64 scatter), a few seconds of each stage's work.
 */
export const DEFAULT_GROUP_SHARDS = 40;

/**
 * Bounds of the settings that reach a handler, checked by the deployment config at synth and by
 * the handler at its cold start, so a synthesizable setting never fails a cold start.
 */
export const SETTING_BOUNDS = {
  /**
   * Principal components kept. At most the feature dimension is ever kept (the fit clamps k and
   * warns); the widest featurizer the handler builds (two MobileNet blocks, average and max pooled)
   * stays below 4,096, and features.csv gets one column per component.
   */
  pcaComponents: { min: 1, max: 4096 },
  /** Square CNN input side, in pixels. */
  /** onnxruntime intra-op threads: more than a Lambda's 6 vCPU gains nothing. */
  inferThreads: { min: 1, max: 6 },
  imageSize: { min: 32, max: 1024 },
  /** Concurrent S3 reads inside one featurize batch. */
  readConcurrency: { min: 1, max: 64 },
  /** The decompression-bomb limit: images above it are reported as failed, not decoded. */
  maxInputPixels: { min: 1, max: 1_000_000_000 },
  /** Objects above it are reported as failed, not read. */
  maxInputBytes: { min: 1, max: 1024 ** 3 },
  /** Images decoded, then run through the model, at a time. */
  inferBatchSize: { min: 1, max: 256 },
  /** Shards per aggregate group: 400 x 250 images of 1,376 float32 values is 550 MB, most of a 1,536 MB function. */
  groupShards: { min: 1, max: 400 },
  /** Field copies: 0 (none), 1 (every Training image) to 64 (one in 64, too few to teach anything). */
  fieldCopyEvery: { min: 0, max: 64 },
} as const;

/**
 * A model id names a manifest entry (layers/model-weights/manifest.json), a cache directory and the image's
 * build argument, so it is one path segment that cannot be `.` or `..`: it starts with a letter or
 * a digit.
 */
export const MODEL_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const MODEL_ID_RULE = 'letters, digits, "_", "." and "-", starting with a letter or digit';
/** A model layer (TF.js) or tensor (TFLite, `block/op`) whose pooled activations are features. */
export const LAYER_NAME_PATTERN = /^[A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*$/;
/**
 * The model baked into the image, shipped in the repository (`layers/model-weights/`) and used by the handler
 * when MODEL_ID is unset: chosen with bench/feature-choice.ts (lambdas/model/featurizer.ts says why).
 */
export const DEFAULT_MODEL_ID = 'mobilenet_v2_1.0_224_quant';
/** Principal components kept by default (the same tables: k = 100, as the candidates were scored). */
export const DEFAULT_PCA_COMPONENTS = 100;
/**
 * One Training image in this many gets a field copy by default: chosen with
 * `bench/classifier-choice.ts --copies` against what a copy costs (docs/FEATURE-CHOICE.md).
 */
export const DEFAULT_FIELD_COPY_EVERY = 4;

const boundedInt = (bounds: { min: number; max: number }) => z.coerce.number().int().min(bounds.min).max(bounds.max);

/**
 * The featurize handler's environment. Unset values take the defaults; tuning left unset here
 * (IMAGE_SIZE, FEATURE_LAYER, FEATURE_SQRT, MAX_INPUT_*) takes the defaults of the code it tunes
 * (lambdas/model/featurizer.ts, lambdas/images/preprocess.ts).
 */
export const FeaturizeEnvSchema = z.object({
  [FEATURIZE_ENV.featurizer]: z.enum(['cnn', 'pixels']).default('cnn'),
  [FEATURIZE_ENV.modelId]: z.string().regex(MODEL_ID_PATTERN, MODEL_ID_RULE).default(DEFAULT_MODEL_ID),
  [FEATURIZE_ENV.modelDir]: z.string().min(1).optional(),
  [FEATURIZE_ENV.imageSize]: boundedInt(SETTING_BOUNDS.imageSize).optional(),
  /** Comma-separated layer names, pooled side by side. */
  [FEATURIZE_ENV.featureLayers]: z.string().min(1).optional(),
  /** `true`/`false`: signed square root of the pooled features. */
  [FEATURIZE_ENV.featureSqrt]: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
  [FEATURIZE_ENV.maxInputPixels]: boundedInt(SETTING_BOUNDS.maxInputPixels).optional(),
  [FEATURIZE_ENV.maxInputBytes]: boundedInt(SETTING_BOUNDS.maxInputBytes).optional(),
  [FEATURIZE_ENV.readConcurrency]: boundedInt(SETTING_BOUNDS.readConcurrency).default(8),
  [FEATURIZE_ENV.inferBatchSize]: boundedInt(SETTING_BOUNDS.inferBatchSize).default(32),
  [FEATURIZE_ENV.tfBackend]: z.enum(['tensorflow', 'wasm', 'cpu']).optional(),
  /** TFLite models: `onnxruntime` or `tfjs`; unset = onnxruntime when it loads. */
  [FEATURIZE_ENV.inferRuntime]: z.enum(['onnxruntime', 'tfjs']).optional(),
  /** TFLite models on onnxruntime: intra-op threads (a 3,008 MB Lambda has about 1.7 vCPU). */
  [FEATURIZE_ENV.inferThreads]: boundedInt(SETTING_BOUNDS.inferThreads).default(1),
  [FEATURIZE_ENV.fieldCopyEvery]: boundedInt(SETTING_BOUNDS.fieldCopyEvery).default(DEFAULT_FIELD_COPY_EVERY),
});
export type FeaturizeEnv = z.infer<typeof FeaturizeEnvSchema>;

// ---- Classification and outputs: the aggregate's k-NN and optional outputs ----

/** The aggregate function's classification and output variables. */
export const CLASSIFY_ENV = {
  /** Neighbours that vote in the k-NN classification of the rows outside Training/. */
  knnNeighbours: 'KNN_NEIGHBOURS',
  /** `true`: also write the raw feature vectors (embeddings.parquet). */
  keepEmbeddings: 'KEEP_EMBEDDINGS',
  /** What predicts the rows outside Training/: `lda` (the model's discriminant) or `knn`. */
  classifier: 'CLASSIFIER',
} as const;

/**
 * `lda`: shrinkage LDA with prototypes, fitted once per run and saved in pca-model.json
 * (lambdas/analysis/lda-classifier.ts, chosen in docs/FEATURE-CHOICE.md); `knn`: the vote of the
 * nearest Training rows.
 */
export const CLASSIFIERS = ['lda', 'knn'] as const;
export type ClassifierKind = (typeof CLASSIFIERS)[number];
export const DEFAULT_CLASSIFIER: ClassifierKind = 'lda';

export const CLASSIFY_BOUNDS = {
  /** k of the k-NN: more than 100 voters only blurs the classes of Fruits-360-sized sets. */
  knnNeighbours: { min: 1, max: 100 },
} as const;

const ClassifyEnvShape = {
  [CLASSIFY_ENV.knnNeighbours]: boundedInt(CLASSIFY_BOUNDS.knnNeighbours).default(5),
  [CLASSIFY_ENV.keepEmbeddings]: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .default(false),
  [CLASSIFY_ENV.classifier]: z.enum(CLASSIFIERS).default(DEFAULT_CLASSIFIER),
};

export function classifyEnvironment(settings: {
  readonly knnNeighbours?: number;
  readonly keepEmbeddings?: boolean;
  readonly classifier?: ClassifierKind;
}): Record<string, string> {
  return definedOnly({
    [CLASSIFY_ENV.knnNeighbours]: settings.knnNeighbours,
    [CLASSIFY_ENV.keepEmbeddings]: settings.keepEmbeddings,
    [CLASSIFY_ENV.classifier]: settings.classifier,
  });
}

/**
 * The variables of both functions whose values change a run's results (features, components,
 * predictions): a run id that should differ when they do hashes these.
 */
export const RESULT_SHAPING_ENV: readonly string[] = [
  FEATURIZE_ENV.featurizer,
  FEATURIZE_ENV.modelId,
  FEATURIZE_ENV.imageSize,
  FEATURIZE_ENV.featureLayers,
  FEATURIZE_ENV.featureSqrt,
  FEATURIZE_ENV.maxInputPixels,
  FEATURIZE_ENV.maxInputBytes,
  FEATURIZE_ENV.fieldCopyEvery,
  AGGREGATE_ENV.pcaComponents,
  AGGREGATE_ENV.pcaVarianceThreshold,
  CLASSIFY_ENV.knnNeighbours,
  CLASSIFY_ENV.classifier,
];
// ---- end of classification and outputs ----

/** The aggregate handler's environment. */
export const AggregateEnvSchema = z.object({
  /** Components kept; the most kept when PCA_VARIANCE_THRESHOLD is set. */
  [AGGREGATE_ENV.pcaComponents]: boundedInt(SETTING_BOUNDS.pcaComponents).default(DEFAULT_PCA_COMPONENTS),
  /** When set, the smallest k (up to PCA_COMPONENTS) whose cumulative explained variance reaches it. */
  [AGGREGATE_ENV.pcaVarianceThreshold]: z.coerce.number().gt(0).lte(1).optional(),
  [AGGREGATE_ENV.groupShards]: boundedInt(SETTING_BOUNDS.groupShards).default(DEFAULT_GROUP_SHARDS),
  ...ClassifyEnvShape,
});
export type AggregateEnv = z.infer<typeof AggregateEnvSchema>;

/** What the stack sets on the featurize function; unset tuning is left out of the environment. */
export interface FeaturizeEnvSettings {
  readonly featurizer: 'cnn' | 'pixels';
  readonly modelId: string;
  readonly modelDir: string;
  readonly imageSize?: number;
  readonly featureLayers?: readonly string[];
  readonly featureSqrt?: boolean;
  readonly maxInputPixels?: number;
  readonly readConcurrency?: number;
  readonly fieldCopyEvery?: number;
}

export function featurizeEnvironment(settings: FeaturizeEnvSettings): Record<string, string> {
  return definedOnly({
    [FEATURIZE_ENV.featurizer]: settings.featurizer,
    [FEATURIZE_ENV.modelId]: settings.modelId,
    [FEATURIZE_ENV.modelDir]: settings.modelDir,
    [FEATURIZE_ENV.imageSize]: settings.imageSize,
    [FEATURIZE_ENV.featureLayers]: settings.featureLayers?.join(','),
    [FEATURIZE_ENV.featureSqrt]: settings.featureSqrt,
    [FEATURIZE_ENV.maxInputPixels]: settings.maxInputPixels,
    [FEATURIZE_ENV.readConcurrency]: settings.readConcurrency,
    [FEATURIZE_ENV.fieldCopyEvery]: settings.fieldCopyEvery,
  });
}

export function aggregateEnvironment(settings: {
  readonly pcaComponents: number;
  readonly pcaVarianceThreshold?: number;
  readonly groupShards?: number;
}): Record<string, string> {
  return definedOnly({
    [AGGREGATE_ENV.pcaComponents]: settings.pcaComponents,
    [AGGREGATE_ENV.pcaVarianceThreshold]: settings.pcaVarianceThreshold,
    [AGGREGATE_ENV.groupShards]: settings.groupShards,
  });
}

/** Environment variables for the settings that are set, as strings. */
function definedOnly(values: Record<string, string | number | boolean | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).flatMap(([name, value]) => (value === undefined ? [] : [[name, String(value)]])));
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
