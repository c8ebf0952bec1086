/**
 * The model manifest (`layers/model-weights/manifest.json`): for each model id, where the public files
 * live (a TF.js layers model or a TFLite flatbuffer), the exact bytes we accept (size + SHA-256 of
 * every file) and, for a model that ships in this repository, where its copy is. How a model is used
 * (feature layer, input size) is the featurizer's business (lambdas/model/featurizer.ts). Fetching verifies
 * against it, so a changed or tampered upstream file fails the build instead of changing features.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { MODEL_ID_PATTERN, MODEL_ID_RULE } from '../../lambdas/contracts/handler-env';

/** The folder `shipped` paths are relative to. */
export const REPOSITORY_ROOT = resolve(__dirname, '..', '..');
/** The model-weights image layer's pins, beside the weights that ship with the project. */
export const MANIFEST_PATH = resolve(REPOSITORY_ROOT, 'layers', 'model-weights', 'manifest.json');

export const PinnedFileSchema = z.object({
  path: z
    .string()
    .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, 'a relative path without ".." or odd characters')
    .refine((p) => !p.split('/').includes('..')),
  bytes: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type PinnedFile = z.infer<typeof PinnedFileSchema>;

export const PinnedModelSchema = z.object({
  /** Directory URL the files are fetched from (ends with `/`). */
  baseUrl: z.url().refine((url) => url.endsWith('/'), 'baseUrl must end with /'),
  format: z.enum(['tfjs-layers', 'tflite']),
  /**
   * Repository folder holding a copy of the files (the default model, so a clone runs offline and
   * the image build copies instead of downloading); checked against the same pins.
   */
  shipped: z
    .string()
    .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/$/, 'a repository folder ending with /')
    .optional(),
  /** Where the pinned bytes were taken from (hashes are never typed in by hand). */
  pinnedFrom: z.string().min(1),
  files: z.array(PinnedFileSchema).min(1),
});
export type PinnedModel = z.infer<typeof PinnedModelSchema>;

export const ModelManifestSchema = z
  .object({
    defaultModel: z.string().min(1),
    models: z.record(z.string().regex(MODEL_ID_PATTERN, MODEL_ID_RULE), PinnedModelSchema),
  })
  .refine((m) => m.defaultModel in m.models, 'defaultModel must be one of models');
export type ModelManifest = z.infer<typeof ModelManifestSchema>;

export function loadModelManifest(path = MANIFEST_PATH): ModelManifest {
  return ModelManifestSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
}

export function pinnedModel(manifest: ModelManifest, modelId: string): PinnedModel {
  const model = manifest.models[modelId];
  if (!model) throw new Error(`model "${modelId}" is not in the manifest (known: ${Object.keys(manifest.models).join(', ')})`);
  return model;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Pins for the files of a model on disk: its `.tflite` file, or for a layers model model.json
 * first, then every weight shard it names, in its order. Used to write the manifest from a
 * reference copy.
 */
export function pinModelFiles(dir: string): PinnedFile[] {
  const tflite = readdirSync(dir).filter((name) => name.endsWith('.tflite'));
  if (tflite.length > 0) return tflite.map((path) => ({ path, bytes: statSync(join(dir, path)).size, sha256: sha256(readFileSync(join(dir, path))) }));
  const modelJson = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  const paths = ['model.json', ...modelJson.weightsManifest.flatMap((group) => group.paths)];
  return paths.map((path) => ({ path, bytes: statSync(join(dir, path)).size, sha256: sha256(readFileSync(join(dir, path))) }));
}

/** Files in `dir` that the pins do not cover (reported, never pinned silently). */
export function unpinnedFiles(dir: string, pins: readonly PinnedFile[]): string[] {
  const pinned = new Set(pins.map((pin) => pin.path));
  return readdirSync(dir).filter((name) => !pinned.has(name));
}
