/**
 * Download a pinned model (or copy the repository's own copy, for a model that ships with the
 * project) and verify every file against the manifest.
 *
 *   npx tsx tools/model/fetch-model.ts --model mobilenet_v1_0.25_224 [--dest <dir>] [--base-url <mirror>]
 *
 * Used by `npm run model:fetch` (into the cache directory the featurizer looks in) and by the
 * container build (`--dest /opt/model`). Files are written to a sibling temporary directory and
 * moved into place only when all of them match, so `dest` never holds a half-written model.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Command } from 'commander';
// model-loader.ts itself, not the model face: the image build copies only it and lambdas/contracts
// for this step (layers/Dockerfile), and the face would load the whole model runtime.
import { defaultModelCacheDir } from '../../lambdas/model/model-loader';
import { loadModelManifest, ModelManifest, PinnedFile, pinnedModel, REPOSITORY_ROOT, sha256 } from './manifest';

export interface FetchModelOptions {
  readonly modelId: string;
  /** @default the featurizer's cache directory for `modelId` */
  readonly dest?: string;
  /** A mirror holding the same files. @default the manifest's baseUrl */
  readonly baseUrl?: string;
  /** @default layers/model-weights/manifest.json */
  readonly manifest?: ModelManifest;
  /** @default global fetch */
  readonly fetch?: typeof fetch;
  /** Attempts per file for network errors and 5xx answers (never for a wrong hash). @default 3 */
  readonly attempts?: number;
  /** Per-request timeout. @default 60000 */
  readonly timeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface FetchModelResult {
  readonly dest: string;
  readonly files: number;
  readonly bytes: number;
  /** True when `dest` already held verified files and nothing was downloaded. */
  readonly alreadyPresent: boolean;
}

export class ModelVerificationError extends Error {
  override readonly name = 'ModelVerificationError';
}

export async function fetchModel(options: FetchModelOptions): Promise<FetchModelResult> {
  const manifest = options.manifest ?? loadModelManifest();
  const model = pinnedModel(manifest, options.modelId);
  const dest = resolve(options.dest ?? defaultModelCacheDir(options.modelId));
  const baseUrl = withSlash(options.baseUrl ?? model.baseUrl);
  const log = options.log ?? (() => undefined);
  const totalBytes = model.files.reduce((sum, file) => sum + file.bytes, 0);

  if (model.files.every((file) => verifiesOnDisk(dest, file))) {
    log(`${options.modelId}: already present and verified in ${dest}`);
    return { dest, files: model.files.length, bytes: totalBytes, alreadyPresent: true };
  }

  // A model that ships in the repository is copied from it, hermetically, unless a mirror is asked for.
  const shipped = model.shipped && !options.baseUrl ? resolve(REPOSITORY_ROOT, model.shipped) : undefined;
  mkdirSync(dirname(dest), { recursive: true });
  const staging = `${dest}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(staging);
  try {
    for (const file of model.files) {
      const bytes = shipped ? readFileSync(join(shipped, file.path)) : await download(new URL(file.path, baseUrl).toString(), options);
      verify(file, bytes);
      mkdirSync(dirname(join(staging, file.path)), { recursive: true });
      writeFileSync(join(staging, file.path), bytes);
    }
    // Swap in the verified copy; an older, unverifiable one is moved aside first, then removed.
    if (existsSync(dest)) {
      const stale = `${dest}.stale-${randomBytes(4).toString('hex')}`;
      renameSync(dest, stale);
      rmSync(stale, { recursive: true, force: true });
    }
    renameSync(staging, dest);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  log(`${options.modelId}: ${model.files.length} files, ${totalBytes} bytes verified into ${dest}`);
  return { dest, files: model.files.length, bytes: totalBytes, alreadyPresent: false };
}

function verifiesOnDisk(dir: string, file: PinnedFile): boolean {
  const path = join(dir, file.path);
  if (!existsSync(path)) return false;
  const bytes = readFileSync(path);
  return bytes.length === file.bytes && sha256(bytes) === file.sha256;
}

function verify(file: PinnedFile, bytes: Uint8Array): void {
  if (bytes.length !== file.bytes) {
    throw new ModelVerificationError(`${file.path}: got ${bytes.length} bytes, the manifest pins ${file.bytes}`);
  }
  const actual = sha256(bytes);
  if (actual !== file.sha256) {
    throw new ModelVerificationError(`${file.path}: SHA-256 ${actual} does not match the pinned ${file.sha256}`);
  }
}

async function download(url: string, options: FetchModelOptions): Promise<Uint8Array> {
  const fetchImpl = options.fetch ?? fetch;
  const attempts = options.attempts ?? 3;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const response = await fetchImpl(url, { signal: AbortSignal.timeout(options.timeoutMs ?? 60_000) });
      if (response.ok) return new Uint8Array(await response.arrayBuffer());
      const error = new Error(`GET ${url}: HTTP ${response.status}`);
      if (response.status < 500 && response.status !== 429) throw Object.assign(error, { final: true });
      lastError = error;
    } catch (error) {
      if ((error as { final?: boolean }).final) throw error;
      lastError = error;
    }
    if (attempt < attempts) await new Promise((done) => setTimeout(done, 200 * 2 ** attempt));
  }
  throw new Error(`GET ${url} failed after ${attempts} attempts: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
}

const withSlash = (url: string) => (url.endsWith('/') ? url : `${url}/`);

async function main(): Promise<void> {
  const manifest = loadModelManifest();
  const options = new Command()
    .description('Fetch a pinned model (copy it, when it ships in the repository) and verify sizes and SHA-256 against layers/model-weights/manifest.json')
    .option('--model <id>', 'model id from the manifest', manifest.defaultModel)
    .option('--dest <dir>', 'target directory (default: ~/.cache/fruits-pipeline/models/<id>)')
    .option('--base-url <url>', "mirror holding the same files (default: the manifest's baseUrl)")
    .parse()
    .opts<{ model: string; dest?: string; baseUrl?: string }>();
  await fetchModel({ modelId: options.model, dest: options.dest, baseUrl: options.baseUrl, manifest, log: console.log });
}

if (require.main === module) {
  main().catch((error) => {
    console.error(`fetch-model: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  });
}
