/**
 * Add or refresh a model's pins in `layers/model-weights/manifest.json` from a local reference copy:
 *
 *   npx tsx tools/model/pin-model.ts --model mobilenet_v1_0.25_224 --from ../shared/models/mobilenet_v1_0.25_224 \
 *     --base-url https://storage.googleapis.com/tfjs-models/tfjs/mobilenet_v1_0.25_224/
 *
 * Sizes and SHA-256 always come from bytes on disk, never from typing.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { loadModelManifest, MANIFEST_PATH, ModelManifestSchema, pinModelFiles, PinnedModel, unpinnedFiles } from './manifest';

function main(): void {
  const options = new Command()
    .requiredOption('--model <id>', 'model id (manifest key)')
    .requiredOption('--from <dir>', 'directory holding the reference copy (model.json + shards)')
    .requiredOption('--base-url <url>', 'public directory URL the files are fetched from')
    .option('--pinned-from <text>', 'provenance of the reference copy')
    .option('--default', 'make it the default model')
    .parse()
    .opts<{ model: string; from: string; baseUrl: string; pinnedFrom?: string; default?: boolean }>();

  const dir = resolve(options.from);
  const files = pinModelFiles(dir);
  const entry: PinnedModel = {
    baseUrl: options.baseUrl.endsWith('/') ? options.baseUrl : `${options.baseUrl}/`,
    format: files[0].path.endsWith('.tflite') ? 'tflite' : 'tfjs-layers',
    pinnedFrom: options.pinnedFrom ?? `reference copy ${options.from}`,
    files,
  };
  let manifest;
  try {
    manifest = loadModelManifest();
  } catch {
    manifest = { defaultModel: options.model, models: {} };
  }
  manifest.models[options.model] = entry;
  if (options.default) manifest.defaultModel = options.model;
  writeFileSync(MANIFEST_PATH, JSON.stringify(ModelManifestSchema.parse(manifest), null, 2) + '\n');
  const extra = unpinnedFiles(dir, files);
  console.log(
    `pinned ${options.model}: ${files.length} files, ${files.reduce((s, f) => s + f.bytes, 0)} bytes` +
      (extra.length ? ` (not pinned, not needed to load: ${extra.join(', ')})` : ''),
  );
}

main();
