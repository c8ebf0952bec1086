/**
 * The saved model of a run, written and read here: `pca-model.json` (the fitted PCA, its further
 * components when a fitted head saw more than the k kept, and, when the run had Training rows of
 * two classes or more, that head, `classifier`) and, when the run
 * had Training references, the k-NN's references beside it: `knn-references/part-<g>.fsh`, one part
 * per group of shards, each named in the model's `knnReferences` with its rows, byte size and
 * SHA-256. A later run started with `pcaModel` projects its images with them instead of fitting.
 *
 * Restoring is exact: JSON numbers round-trip doubles (`JSON.stringify` writes the shortest text
 * that parses back to the same double), so the restored `PcaFit` holds the very mean, scale and
 * components the model run projected with, and `PcaProjector` gives an image the same scores,
 * bit for bit, in both runs. The references are the model run's own float32 scores, stored as
 * float32: the classifier of a projected run sees exactly what the model run's classifier saw.
 *
 * A references part reuses the feature-shard format (lambdas/bookkeeping/feature-shard.ts): the
 * header names the keys and labels, the vectors are the Training rows' k scores, and the header's
 * `featurizer` is `pca<k>(<featurizer id>)`, so a part can never pass for a shard of raw features.
 * The parts are never joined: a reader takes one at a time, so none grows with the number of
 * images. A model saved as one file (`knnReferences: { file, count, sha256 }`) reads as a model of
 * one part.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { numberArray, numberRows } from '../contracts/number-arrays';
import { RUN_ID_PATTERN } from '../contracts/bucket-layout';
import { decodeFeatureShard, encodeFeatureShard } from '../bookkeeping';
import { LdaClassifierSchema } from './lda-classifier';
import { LOGISTIC_CLASSIFIER_FORMAT, LogisticClassifierSchema } from './logistic-classifier';
import { CombinedClassifierSchema } from './combined-classifier';
import type { ComponentSelection, PcaFit } from './streaming-pca';

export const PCA_MODEL_FORMAT = 'fruits-pipeline/pca-model@1';
export const KNN_REFERENCES_FORMAT = 'fruits-pipeline/knn-references@1';

/** A saved model that cannot be used: missing, not JSON, not this format, inconsistent. Never retried. */
export class PcaModelError extends Error {
  override readonly name = 'PcaModelError';
}

/** The run's features come from another featurizer than the model's: its components do not apply. */
export class FeaturizerMismatchError extends Error {
  override readonly name = 'FeaturizerMismatchError';
}

/** The featurizer id in a references file's header: PCA scores of that featurizer's vectors. */
export function referencesFeaturizerId(featurizer: string, k: number): string {
  return `pca${k}(${featurizer})`;
}

const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
/** A name that is neither empty, `.` nor `..`, and holds no slash. */
const plainName = (name: string) => name !== '.' && name !== '..' && /^[^/\\]+$/.test(name);

/** One part of the references: its file relative to the model's folder (`knn-references/part-00000.fsh`), rows, size and SHA-256. */
const KnnReferencesPartSchema = z.object({
  file: z.string().refine((file) => file.split('/').length === 2 && file.split('/').every(plainName), 'a file one folder deep beside pca-model.json'),
  count: z.number().int().min(1),
  bytes: z.number().int().min(1),
  sha256,
});
export type KnnReferencesPart = z.infer<typeof KnnReferencesPartSchema>;

/** The references as one file beside the model (`knn-references.fsh`): a model that names them so is read as a model of one part. */
const KnnReferencesFileSchema = z.object({
  file: z.string().refine(plainName, 'a file name beside pca-model.json'),
  count: z.number().int().min(1),
  sha256,
});

/** `knnReferences`: the rows over all parts and the parts in group order, or one file. */
const KnnReferencesPointerSchema = z.union([
  z.object({ count: z.number().int().min(1), parts: z.array(KnnReferencesPartSchema).min(1) }),
  KnnReferencesFileSchema,
]);
export type KnnReferencesPointer = z.infer<typeof KnnReferencesPointerSchema>;

/** What a projecting run reads of pca-model.json; other fields (selection, backends...) are descriptive. */
export const PcaModelSchema = z
  .object({
    format: z.literal(PCA_MODEL_FORMAT),
    runId: z.string().regex(RUN_ID_PATTERN, 'runId: not a valid run id'),
    featurizer: z.string().min(1),
    count: z.number().int().min(2),
    dim: z.number().int().min(1),
    k: z.number().int().min(1),
    /** Components the classifier sees when more than k: `components` holds this many, the leading k kept. */
    classifierK: z.number().int().min(2).optional(),
    mean: numberArray(),
    scale: numberArray('positive'),
    constantFeatures: z.array(z.number().int().nonnegative()),
    components: numberRows(),
    eigenvalues: numberArray('nonnegative'),
    explainedVarianceRatio: numberArray('nonnegative'),
    explainedVariance: z.number().finite(),
    knnReferences: KnnReferencesPointerSchema.optional(),
    /**
     * The classifier the model run fitted over these components (a run with Training rows of two
     * classes or more): the LDA, logistic regression or both, told apart by `format`.
     */
    classifier: z.union([LdaClassifierSchema, LogisticClassifierSchema, CombinedClassifierSchema]).optional(),
  })
  .passthrough()
  .superRefine((model, context) => {
    const problem = (message: string) => context.addIssue({ code: z.ZodIssueCode.custom, message });
    const { dim, k } = model;
    const projected = model.classifierK ?? k;
    if (k > dim) problem(`k = ${k} components of ${dim} features`);
    if (projected <= k && model.classifierK !== undefined) problem(`classifierK = ${projected} is not more than k = ${k}`);
    if (projected > dim) problem(`classifierK = ${projected} components of ${dim} features`);
    for (const field of ['mean', 'scale'] as const) {
      if (model[field].length !== dim) problem(`${field} holds ${model[field].length} values, expected dim = ${dim}`);
    }
    // The leading part of the spectrum: at least the components held, at most every one.
    for (const field of ['eigenvalues', 'explainedVarianceRatio'] as const) {
      const length = model[field].length;
      if (length < projected || length > dim) problem(`${field} holds ${length} values, expected ${projected} to dim = ${dim}`);
    }
    if (model.eigenvalues.length !== model.explainedVarianceRatio.length) problem('eigenvalues and explainedVarianceRatio differ in length');
    if (model.components.length !== projected) {
      problem(`components holds ${model.components.length} vectors, expected ${model.classifierK ? `classifierK = ${projected}` : `k = ${k}`}`);
    }
    const short = model.components.findIndex((component) => component.length !== dim);
    if (short >= 0) problem(`component ${short + 1} holds ${model.components[short].length} values, expected dim = ${dim}`);
    if (model.constantFeatures.some((f) => f >= dim)) problem(`constantFeatures names a feature beyond dim = ${dim}`);
    // Logistic regression alone may be held to the leading components (classifier-components.ts).
    const heldHead = model.classifier?.format === LOGISTIC_CLASSIFIER_FORMAT;
    if (model.classifier && (heldHead ? model.classifier.dim > projected : model.classifier.dim !== projected)) {
      const expected = model.classifierK ? `classifierK = ${projected}` : `k = ${k}`;
      problem(`classifier.dim is ${model.classifier.dim}, expected ${heldHead ? `at most ${expected}` : expected}`);
    }
    const pointer = model.knnReferences;
    if (pointer && 'parts' in pointer) {
      const rows = pointer.parts.reduce((sum, part) => sum + part.count, 0);
      if (rows !== pointer.count) problem(`knnReferences.parts hold ${rows} rows, knnReferences.count says ${pointer.count}`);
    }
  });
export type SavedPcaModel = z.infer<typeof PcaModelSchema>;

/** `pca-model.json` of a fit: everything a later run needs to project and classify without refitting. */
export function pcaModelJson(
  fit: PcaFit,
  runId: string,
  featurizer: string,
  featurizerMeta: { modelIds: string[]; imageSizes: number[]; backends: string[] },
  selection: ComponentSelection,
  knnReferences?: KnnReferencesPointer,
) {
  const components: number[][] = [];
  const projected = fit.classifierK ?? fit.k;
  for (let c = 0; c < projected; c++) components.push(Array.from(fit.components.subarray(c * fit.dim, (c + 1) * fit.dim)));
  return {
    format: PCA_MODEL_FORMAT,
    runId,
    featurizer,
    modelId: featurizerMeta.modelIds.length === 1 ? featurizerMeta.modelIds[0] : featurizerMeta.modelIds,
    imageSize: featurizerMeta.imageSizes.length === 1 ? featurizerMeta.imageSizes[0] : featurizerMeta.imageSizes,
    backends: featurizerMeta.backends,
    count: fit.count,
    dim: fit.dim,
    k: fit.k,
    ...(fit.classifierK ? { classifierK: fit.classifierK } : {}),
    selection: {
      components: selection.components,
      varianceThreshold: selection.varianceThreshold ?? null,
      classifierComponents: selection.classifierComponents ?? null,
    },
    /** score = ((x - mean) / scale) . component, for each component held: the k kept, then the classifier's further ones. */
    standardization: 'StandardScaler: population standard deviation; constant features (see constantFeatures) have scale 1',
    mean: Array.from(fit.mean),
    scale: Array.from(fit.scale),
    constantFeatures: fit.constantFeatures,
    components,
    eigenvalues: Array.from(fit.eigenvalues),
    explainedVarianceRatio: Array.from(fit.explainedVarianceRatio),
    explainedVariance: fit.explainedVariance,
    // The classifier's references (the Training rows' scores), in parts beside this file; absent without any.
    ...(knnReferences ? { knnReferences } : {}),
  };
}

/** The model in `text`, checked; `where` names it in the error (an S3 URI or a path). */
export function parsePcaModel(text: string, where: string): SavedPcaModel {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PcaModelError(`${where} is not JSON (${(error as Error).message})`);
  }
  const parsed = PcaModelSchema.safeParse(json);
  if (!parsed.success) {
    const format = (json as { format?: unknown } | null)?.format;
    if (format !== PCA_MODEL_FORMAT) {
      throw new PcaModelError(`${where} is not a ${PCA_MODEL_FORMAT} file (format ${JSON.stringify(format ?? null)}): pass the pca-model.json of a run`);
    }
    const issues = parsed.error.issues.slice(0, 4).map((issue) => `${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}`);
    throw new PcaModelError(`${where} is not a usable PCA model: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** The fit a saved model describes, to project with `PcaProjector` exactly as the model run did. */
export function pcaFitOf(model: SavedPcaModel): PcaFit {
  return {
    count: model.count,
    dim: model.dim,
    mean: Float64Array.from(model.mean),
    scale: Float64Array.from(model.scale),
    constantFeatures: [...model.constantFeatures],
    k: model.k,
    ...(model.classifierK ? { classifierK: model.classifierK } : {}),
    components: concatRows(model.components, model.dim),
    eigenvalues: Float64Array.from(model.eigenvalues),
    explainedVarianceRatio: Float64Array.from(model.explainedVarianceRatio),
    explainedVariance: model.explainedVariance,
    warnings: [],
  };
}

/** Rows of `width` numbers, one after another (each row's length is checked by parsePcaModel). */
function concatRows(rows: readonly (readonly number[])[], width: number): Float64Array {
  const out = new Float64Array(rows.length * width);
  rows.forEach((row, r) => out.set(row, r * width));
  return out;
}

/** The key of a file named in the model (a references part), beside the model's own key or path. */
export function besideModel(modelKey: string, file: string): string {
  const slash = modelKey.lastIndexOf('/');
  return `${modelKey.slice(0, slash + 1)}${file}`;
}

/** A references part as a reader sees it: the size is unknown for a model saved with one references file. */
export type NamedReferencesPart = Omit<KnnReferencesPart, 'bytes'> & { bytes?: number };

/** The references parts a model names, in order; a model saved with one references file has that one part. */
export function knnReferencesParts(model: SavedPcaModel): NamedReferencesPart[] {
  const pointer = model.knnReferences;
  if (!pointer) return [];
  return 'parts' in pointer ? pointer.parts : [{ file: pointer.file, count: pointer.count, sha256: pointer.sha256 }];
}

/** The keys of the model's references parts, beside the model's own key or path, in order. */
export function referencesPartKeys(model: SavedPcaModel, modelKey: string): string[] {
  return knnReferencesParts(model).map((part) => besideModel(modelKey, part.file));
}

/**
 * Why a references part cannot be the model's from what a HEAD says of it: absent (`size`
 * undefined), or not the size the model states. Undefined when it may be (its bytes are checked
 * against the SHA-256 where they are read). `where` names the part.
 */
export function referencesPartProblem(model: SavedPcaModel, part: NamedReferencesPart, size: number | undefined, where: string): string | undefined {
  if (size === undefined) return `the model's references ${where} does not exist`;
  if (part.bytes !== undefined && size !== part.bytes) {
    return `${where} is not the references file of the model of run ${model.runId} (${size} bytes, pca-model.json states ${part.bytes})`;
  }
  return undefined;
}

/** The first of the model's references parts that cannot be its own, from their sizes (`referencesPartKeys`' order), or undefined. */
export function referencesPartsProblem(model: SavedPcaModel, sizes: readonly (number | undefined)[], where: (index: number) => string): string | undefined {
  const parts = knnReferencesParts(model);
  for (const [index, part] of parts.entries()) {
    const problem = referencesPartProblem(model, part, sizes[index], where(index));
    if (problem) return problem;
  }
  return undefined;
}

/** Training rows' keys, labels and k float32 scores: a references part's content. */
export interface ReferenceRows {
  readonly keys: readonly string[];
  readonly labels: readonly string[];
  /** rows x k, row-major. */
  readonly vectors: Float32Array;
}

/** A references part of a fit: the Training rows of one group, and what the model states of it. */
export function encodeKnnReferences(
  model: { runId: string; featurizer: string; k: number },
  rows: ReferenceRows,
): { bytes: Uint8Array; stated: Omit<KnnReferencesPart, 'file'> } {
  const { k } = model;
  const bytes = encodeFeatureShard({
    header: {
      featurizer: referencesFeaturizerId(model.featurizer, k),
      dim: k,
      keys: [...rows.keys],
      labels: [...rows.labels],
      failed: [],
      skipped: [],
      meta: { format: KNN_REFERENCES_FORMAT, runId: model.runId, featurizer: model.featurizer, vectors: 'float32 PCA scores of the Training rows' },
    },
    vectors: rows.vectors,
  });
  return { bytes, stated: { count: rows.keys.length, bytes: bytes.byteLength, sha256: sha256Hex(bytes) } };
}

/** A references part the model names, checked against the model (its SHA-256, featurizer, k and rows); `where` names it in errors. */
export function decodeKnnReferences(bytes: Uint8Array, model: SavedPcaModel, part: NamedReferencesPart, where: string): ReferenceRows {
  if (sha256Hex(bytes) !== part.sha256) {
    throw new PcaModelError(`${where} is not the references file of the model of run ${model.runId} (its SHA-256 differs from pca-model.json's)`);
  }
  let shard;
  try {
    shard = decodeFeatureShard(bytes);
  } catch (error) {
    throw new PcaModelError(`${where} is not a references file (${(error as Error).message})`);
  }
  const { header, vectors } = shard;
  const expected = referencesFeaturizerId(model.featurizer, model.k);
  if (header.featurizer !== expected || header.dim !== model.k || header.keys.length !== part.count) {
    throw new PcaModelError(
      `${where} holds ${header.keys.length} references of ${header.featurizer} (${header.dim} values), expected ${part.count} of ${expected} (${model.k} values)`,
    );
  }
  if (!vectors.every(Number.isFinite)) throw new PcaModelError(`${where} holds NaN or infinite scores`);
  return { keys: header.keys, labels: header.labels, vectors };
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
