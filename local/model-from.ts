/**
 * `run <dir> --model-from <runId | path>`: the saved model a local run projects with, found and
 * checked on this machine before anything is uploaded.
 *
 * A run id names an earlier local run's model: first in the local store, `results/<runId>/` of the
 * data directory (where every run of that directory wrote it, whatever its `--out`, and where the
 * deployed `submit --model-from` looks in the bucket), then in `<outDir>/<runId>/`, the copy of a
 * run of another data directory. A path names a pca-model.json file (or the folder holding one),
 * e.g. one `fruits results` downloaded from the deployed stack. The references parts the model
 * names (`knn-references/part-<g>.fsh`, or one `knn-references.fsh`) are read from beside it one at
 * a time and checked against the model. Every problem is one line naming the flag: no such run or
 * file, not JSON, not the format, a references part missing or not the model's own (named). The
 * local run then puts the model and its parts into its store at `results/<model's runId>/`, the
 * keys the execution input's `pcaModel` names and the model's parts lie beside.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { RESULT_FILES, RUN_ID_PATTERN, runLayout } from '../lambdas/contracts/bucket-layout';
// pca-model.ts, not the analysis face: the face loads the native kernels (onnxruntime-node), which
// reading a saved model does not need.
import { decodeKnnReferences, knnReferencesParts, parsePcaModel, PcaModelError, SavedPcaModel } from '../lambdas/analysis/pca-model';
import type { StoreSnapshot } from './emulator/s3/object-store';

export interface LocalModelSource {
  /** The pca-model.json read: a path, or the data directory and key of the store's copy. */
  readonly path: string;
  /** Where a run id was found: the local store, `--out`; or a path given as such. */
  readonly foundIn: 'store' | 'out' | 'path';
  readonly model: SavedPcaModel;
  readonly modelBytes: Buffer;
  /** `results/<model runId>/pca-model.json`: the execution input's `pcaModel`. */
  readonly key: string;
  /** The references parts beside the model, each with its key beside the model's, when the model names some. */
  readonly references?: readonly LocalReferencesPart[];
  /** `<model runId>@<8 hex of pca-model.json's SHA-256>`: what the run id's settings digest takes in. */
  readonly digest: string;
}

/** One references part found beside the model: where, its key in the store, and its bytes (read when asked: one part at a time). */
export interface LocalReferencesPart {
  readonly path: string;
  readonly key: string;
  readonly read: () => Buffer;
}

/** The local store a run id is looked up in first. */
export interface LocalModelStore {
  /** The data directory, as the user named it. */
  readonly dataDir: string;
  /** The run's bucket, as it stands on disk (undefined: no store there yet). */
  readonly snapshot: StoreSnapshot | undefined;
}

/** A model file found, and how to read a file beside it. */
interface FoundModel {
  readonly path: string;
  readonly foundIn: LocalModelSource['foundIn'];
  readonly bytes: () => Buffer;
  readonly beside: (file: string) => { readonly path: string; readonly read: () => Buffer | undefined };
}

/**
 * The model `value` names (a run id in the store, else under `outDir`; or a path), checked; throws
 * one line naming `--model-from`.
 */
export function readModelFrom(value: string, outDir: string, store?: LocalModelStore): LocalModelSource {
  const fail = (problem: string): never => {
    throw new Error(`--model-from ${value}: ${problem}`);
  };
  const foundModel = findModel(value, outDir, store, fail);
  const path = foundModel.path;
  let modelBytes: Buffer;
  try {
    modelBytes = foundModel.bytes();
  } catch (error) {
    return fail(`${path} is not readable (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let model: SavedPcaModel;
  try {
    model = parsePcaModel(modelBytes.toString('utf8'), path);
  } catch (error) {
    if (error instanceof PcaModelError) return fail(error.message);
    throw error;
  }
  const layout = runLayout(model.runId);
  const digest = `${model.runId}@${createHash('sha256').update(modelBytes).digest('hex').slice(0, 8)}`;
  const source = { path, foundIn: foundModel.foundIn, model, modelBytes, key: layout.resultKey('model'), digest };
  const parts = knnReferencesParts(model);
  if (parts.length === 0) return source;
  const references = parts.map((part): LocalReferencesPart => {
    const found = foundModel.beside(part.file);
    const bytes = found.read();
    if (bytes === undefined) {
      const folder = posix.dirname(part.file);
      return fail(
        `the model names its references ${part.file}, but ${found.path} does not exist: copy ${folder === '.' ? 'it' : `the ${folder}/ folder`} beside ${path}`,
      );
    }
    try {
      decodeKnnReferences(bytes, model, part, found.path);
    } catch (error) {
      if (error instanceof PcaModelError) return fail(error.message);
      throw error;
    }
    return { path: found.path, key: `${layout.outputPrefix}${part.file}`, read: () => found.read()! };
  });
  return { ...source, references };
}

/** The pca-model.json a `--model-from` value names. */
function findModel(value: string, outDir: string, store: LocalModelStore | undefined, fail: (problem: string) => never): FoundModel {
  if (existsSync(value)) {
    const resolved = resolve(value);
    return inFolder(statSync(resolved).isDirectory() ? join(resolved, RESULT_FILES.model) : resolved, 'path');
  }
  const looksLikeRunId = RUN_ID_PATTERN.test(value) && !value.endsWith('.json');
  if (!looksLikeRunId) return fail(`no such file or folder`);
  const layout = runLayout(value);
  const snapshot = store?.snapshot;
  if (snapshot?.hasPrefix(layout.outputPrefix)) {
    const label = (key: string) => `${key} of the local store in ${store!.dataDir}`;
    const modelKey = layout.resultKey('model');
    const bytes = snapshot.read(modelKey);
    if (bytes) {
      return {
        path: label(modelKey),
        foundIn: 'store',
        bytes: () => bytes,
        beside: (file) => ({ path: label(`${layout.outputPrefix}${file}`), read: () => snapshot.read(`${layout.outputPrefix}${file}`) }),
      };
    }
    return noModel(
      value,
      label(modelKey),
      projectedWith(() => snapshot.read(layout.resultKey('report'))),
      fail,
    );
  }
  const runDir = join(resolve(outDir), value);
  const path = join(runDir, RESULT_FILES.model);
  if (existsSync(path)) return inFolder(path, 'out');
  if (!existsSync(runDir)) {
    const where = store ? `the local store in ${store.dataDir} or in ${resolve(outDir)}` : resolve(outDir);
    return fail(`no run ${value} in ${where} (and no such file): pass the run id of an earlier run, or a path to its pca-model.json`);
  }
  return noModel(
    value,
    path,
    projectedWith(() => readFileSync(join(runDir, RESULT_FILES.report))),
    fail,
  );
}

/** A model file on disk, its references parts beside it. */
function inFolder(path: string, foundIn: 'out' | 'path'): FoundModel {
  return {
    path,
    foundIn,
    bytes: () => readFileSync(path),
    beside: (file) => {
      const besidePath = join(dirname(path), ...file.split('/'));
      return { path: besidePath, read: () => (existsSync(besidePath) ? readFileSync(besidePath) : undefined) };
    },
  };
}

/** A run that kept no model: a projected run names the one it used. */
function noModel(value: string, path: string, used: string | undefined, fail: (problem: string) => never): never {
  return fail(
    used
      ? `run ${value} fitted no model (it projected with the model of run ${used}): use --model-from ${used}`
      : `${path} does not exist: run ${value} wrote no model (did it fail?)`,
  );
}

function projectedWith(readReport: () => Buffer | undefined): string | undefined {
  try {
    const bytes = readReport();
    if (!bytes) return undefined;
    const report = JSON.parse(bytes.toString('utf8')) as { pca?: { source?: string; modelRunId?: string } };
    return report.pca?.source === 'model' ? report.pca.modelRunId : undefined;
  } catch {
    return undefined;
  }
}
