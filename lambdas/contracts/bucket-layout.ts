/**
 * Where everything lives in the data bucket (docs/DESIGN.md, bucket layout): the top-level roots the
 * IAM grants are scoped to, the names that become path segments, and the one helper that builds a
 * run's `results/<runId>/` and `work/<runId>/` keys. The stack, the handlers, the local run and the
 * CLI all build their keys here.
 */

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
 * A run id names the run's execution and its `work/<runId>/` and `results/<runId>/` folders, so it
 * is one safe path segment: 1-80 characters (the Step Functions execution name limit,
 * https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html), letters,
 * digits, `.`, `_` and `-`, starting with a letter or digit, never `..`. Dataset names follow the
 * same rule, as `input/<dataset>/` is a prefix the IAM grants and the start-marker rule match on.
 */
export const RUN_ID_PATTERN = /^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;
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

/** Object names under a run's `results/<runId>/`. */
export const RESULT_FILES = {
  features: 'features.csv',
  model: 'pca-model.json',
  explainedVariance: 'explained-variance.csv',
  scree: 'scree.svg',
  scatter: 'pca-scatter.svg',
  report: 'report.json',
  // The classifier's outputs, the Parquet copies and the HTML report.
  /** One row per image the k-NN predicted (every row that is not a Training reference). */
  predictions: 'predictions.csv',
  /** features.csv as typed Parquet columns. */
  featuresParquet: 'features.parquet',
  /** The raw feature vectors, when the run keeps them (KEEP_EMBEDDINGS). */
  embeddings: 'embeddings.parquet',
  /** One self-contained page: counts, plots, accuracy, a gallery of misclassified images. */
  html: 'report.html',
  /** What each output file and column holds. */
  readme: 'README.txt',
  /**
   * The classifier's references (the Training rows' PCA scores, feature-shard format) beside
   * pca-model.json, a part per group (`part-<g>.fsh`), so a later run can classify against them;
   * only when the run had Training rows.
   */
  knnReferences: 'knn-references/',
  /** The features as one Parquet dataset, a part per group (`read_parquet('features/*.parquet')`). */
  featuresParts: 'features/',
  /** The raw feature vectors as one Parquet dataset, when kept. */
  embeddingsParts: 'embeddings/',
  /** Written by the state machine's WriteFailureReport when a run fails. */
  failure: 'failure.json',
} as const;
export type ResultFile = keyof typeof RESULT_FILES;

/**
 * A saved model a run projects with (execution input `pcaModel`): a key of the run's bucket under
 * `results/`, e.g. `results/<runId>/pca-model.json`, without `..`. The state machine checks as much
 * as its wildcards can; the handler's schema checks this rule.
 */
export const PCA_MODEL_KEY_RULE = `a key under ${BUCKET_LAYOUT.resultsRoot} (e.g. ${BUCKET_LAYOUT.resultsRoot}<runId>/pca-model.json) without "..", at most ${S3_KEY_MAX_BYTES} bytes`;

/** Why `key` cannot name a saved model, or undefined when it can. */
export function invalidPcaModelKey(key: string): string | undefined {
  const fine =
    key.startsWith(BUCKET_LAYOUT.resultsRoot) &&
    key.length > BUCKET_LAYOUT.resultsRoot.length &&
    !key.includes('..') &&
    !key.endsWith('/') &&
    Buffer.byteLength(key, 'utf8') <= S3_KEY_MAX_BYTES;
  return fine ? undefined : `pcaModel ${JSON.stringify(key)} is not valid: use ${PCA_MODEL_KEY_RULE}`;
}

/** Folders under a run's `work/<runId>/`. */
export const WORK_FOLDERS = {
  /** One feature shard per batch, `<hash>.fsh`. */
  shards: 'shards',
  /** One batch record per batch, `<hash>.json`: the keys the map handed the batch (`BatchRecordSchema`). */
  batches: 'batches',
  /** The Distributed Map's ResultWriter prefix: `<mapRunId>/manifest.json`, `SUCCEEDED_n.json`... */
  mapResults: 'map-results',
  /** What the aggregate's stages hand each other (plan, groups, moments, parts, tallies). */
  aggregate: 'aggregate',
} as const;

export interface RunLayout {
  /** `results/<runId>/` */
  readonly outputPrefix: string;
  /** `work/<runId>/` */
  readonly workPrefix: string;
  /** `work/<runId>/map-results/` */
  readonly mapResultsPrefix: string;
  /** `results/<runId>/<file>` */
  resultKey(file: ResultFile): string;
}

/**
 * The keys of one run. The state machine derives the same prefixes from the run id
 * (`runLayout('{}')` gives its `States.Format` templates), and hands them to the handlers as
 * `outputPrefix` and `workPrefix`.
 */
export function runLayout(runId: string): RunLayout {
  const outputPrefix = `${BUCKET_LAYOUT.resultsRoot}${runId}/`;
  const workPrefix = `${BUCKET_LAYOUT.workRoot}${runId}/`;
  return {
    outputPrefix,
    workPrefix,
    mapResultsPrefix: `${workPrefix}${WORK_FOLDERS.mapResults}/`,
    resultKey: (file) => resultKey(outputPrefix, file),
  };
}

/** `<outputPrefix>/<file>`, for a handler that knows the prefix, not the run id. */
export function resultKey(outputPrefix: string, file: ResultFile): string {
  return `${withSlash(outputPrefix)}${RESULT_FILES[file]}`;
}

/** `<workPrefix>/shards/<hash>.fsh` */
export function shardKey(workPrefix: string, hash: string): string {
  return `${withSlash(workPrefix)}${WORK_FOLDERS.shards}/${hash}.fsh`;
}

/** `<workPrefix>/batches/<hash>.json`: the record of the batch whose shard is `shardKey(workPrefix, hash)`. */
export function batchRecordKey(workPrefix: string, hash: string): string {
  return `${withSlash(workPrefix)}${WORK_FOLDERS.batches}/${hash}.json`;
}

/** The batch record beside a shard: the same hash under `batches/` (`<hash>.fsh` gives `<hash>.json`). */
export function batchRecordKeyOfShard(workPrefix: string, shard: string): string {
  const name = shard.slice(shard.lastIndexOf('/') + 1);
  return batchRecordKey(workPrefix, name.endsWith('.fsh') ? name.slice(0, -'.fsh'.length) : name);
}

/** `prefix` ending in one `/`, so a file name can follow it. */
export const withSlash = (prefix: string) => (prefix.endsWith('/') ? prefix : `${prefix}/`);
