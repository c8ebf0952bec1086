/**
 * The custom CloudWatch metrics the handlers emit (Powertools Metrics, Embedded Metric Format in
 * the function's log) and the dashboard and alarms read: one namespace, one dimension, the metric
 * names and units. Changing a name here changes both sides. docs/DESIGN.md ("Metrics") lists them.
 */

/** Namespace of every custom metric (POWERTOOLS_METRICS_NAMESPACE, set by the stack). */
export const METRICS_NAMESPACE = 'FruitsPipeline';

/**
 * The first dimension: `service` = POWERTOOLS_SERVICE_NAME, which the stack sets to its stack name,
 * so two deployments in one account and region keep their figures apart. Powertools adds it to
 * every metric by default.
 */
export const METRICS_SERVICE_DIMENSION = 'service';

/** The second dimension: `featurize` or `aggregate`, so the functions' memory figures stay apart. */
export const METRICS_FUNCTION_DIMENSION = 'function';

/** The service name outside a stack (tests, the local run without a template value). */
export const DEFAULT_SERVICE_NAME = 'fruits-pipeline';

/** One EMF record per featurize invocation (one Distributed Map batch). */
export const BATCH_METRICS = {
  /** Images featurized into the batch's shard. Count. */
  imagesProcessed: 'ImagesProcessed',
  /** Images reported as failed (bad input, unreadable). Count. */
  imagesFailed: 'ImagesFailed',
  /** Objects skipped (not an image, outside a label folder, the start marker). Count. */
  imagesSkipped: 'ImagesSkipped',
  /** Mean S3 GET time per object read (latency; reads overlap READ_CONCURRENCY at a time). Milliseconds. */
  readMsPerImage: 'ReadMsPerImage',
  /** Mean decode + resize time per object decoded (libjpeg-turbo wasm or sharp). Milliseconds. */
  decodeMsPerImage: 'DecodeMsPerImage',
  /** Model time per featurized image (batched inference, wall time / images). Milliseconds. */
  inferenceMsPerImage: 'InferenceMsPerImage',
  /** The whole batch, from the event to the shard written. Milliseconds. */
  batchDuration: 'BatchDurationMs',
  /**
   * 1 when the batch's CNN ran on TF.js because onnxruntime-node could not start in this container
   * (the featurizer's `runtimeFallback`), else 0. Count.
   */
  runtimeFallback: 'InferenceRuntimeFallback',
} as const;

/** One EMF record per aggregate invocation (one run). */
export const RUN_METRICS = {
  /** Rows of features.csv. Count. */
  rows: 'RunRows',
  /** Principal components kept (k). Count. */
  components: 'RunComponents',
  /** Cumulative explained variance ratio of the k components (0-1). None. */
  explainedVariance: 'RunExplainedVariance',
  /** Images failed in the whole run. Count. */
  imagesFailed: 'RunImagesFailed',
  /** Objects skipped in the whole run. Count. */
  imagesSkipped: 'RunImagesSkipped',
  /** Batches that failed after their retries. Count. */
  failedBatches: 'RunFailedBatches',
  /** Classification accuracy (0-1), only when the run's result carries one. None. */
  accuracy: 'RunAccuracy',
} as const;

/**
 * Peak resident memory of the function's process (`process.resourceUsage().maxRSS`), emitted by
 * both handlers with every record: what Lambda's `Max Memory Used` reports, without parsing the
 * platform's REPORT log line. Megabytes.
 */
export const MEMORY_METRIC = 'MaxMemoryUsedMb';

/** What one featurize batch measured (`featurizeBatch`'s `onMeasured`). Times are summed, in ms. */
export interface BatchMeasurements {
  readonly processed: number;
  readonly failed: number;
  readonly skipped: number;
  /** Summed GET time of the objects read, and how many were read. */
  readonly readMs: number;
  readonly reads: number;
  /** Summed decode + resize time, and how many objects were decoded (read with a body). */
  readonly decodeMs: number;
  readonly decodes: number;
  /** Model time of the batch (the `processed` images). */
  readonly inferenceMs: number;
  readonly totalMs: number;
  /** The featurizer runs on its fallback runtime (TF.js instead of onnxruntime-node). */
  readonly runtimeFallback: boolean;
}

/** What one run produced (the aggregate step's result). */
export interface RunMeasurements {
  readonly rows: number;
  readonly components: number;
  readonly explainedVariance: number;
  readonly counts: { readonly failed: number; readonly skipped: number; readonly failedBatches: number };
  /** Only when the result carries one. */
  readonly accuracy?: number;
}
