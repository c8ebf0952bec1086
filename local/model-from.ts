/**
 * `run <dir> --model-from <runId | path>`: the saved model a local run projects with, found and
 * checked on this machine before anything is uploaded.
 *
 * A run id names an earlier local run's copy, `<outDir>/<runId>/pca-model.json`; a path names a
 * pca-model.json file (or the folder holding one), e.g. one `fruits results` downloaded from the
 * deployed stack. The references (`knn-references.fsh`) are read from beside it when the model
 * names them. Every problem is one line naming the flag: no such run or file, not JSON, not the
 * format, references missing or not the model's own. The local run then puts both into its store
 * at `results/<model's runId>/`, the key the execution input's `pcaModel` names.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { RESULT_FILES, RUN_ID_PATTERN, runLayout } from '../lambdas/contracts/bucket-layout';
import { decodeKnnReferences, parsePcaModel, PcaModelError, SavedPcaModel } from '../lambdas/analysis/pca-model';

export interface LocalModelSource {
  /** The pca-model.json read. */
  readonly path: string;
  readonly model: SavedPcaModel;
  readonly modelBytes: Buffer;
  /** `results/<model runId>/pca-model.json`: the execution input's `pcaModel`. */
  readonly key: string;
  /** The references file and its key beside the model's, when the model names one. */
  readonly references?: { readonly path: string; readonly key: string; readonly bytes: Buffer };
  /** `<model runId>@<8 hex of pca-model.json's SHA-256>`: what the run id's settings digest takes in. */
  readonly digest: string;
}

/** The model `value` names (a run id under `outDir`, or a path), checked; throws one line naming `--model-from`. */
export function readModelFrom(value: string, outDir: string): LocalModelSource {
  const fail = (problem: string): never => {
    throw new Error(`--model-from ${value}: ${problem}`);
  };
  const path = modelPath(value, outDir, fail);
  let modelBytes: Buffer;
  try {
    modelBytes = readFileSync(path);
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
  const source = { path, model, modelBytes, key: layout.resultKey('model'), digest };
  const pointer = model.knnReferences;
  if (!pointer) return source;
  const referencesPath = join(dirname(path), pointer.file);
  if (!existsSync(referencesPath)) {
    return fail(`the model names its classifier's references ${pointer.file}, but ${referencesPath} does not exist: copy it beside ${path}`);
  }
  const bytes = readFileSync(referencesPath);
  try {
    decodeKnnReferences(bytes, model, referencesPath);
  } catch (error) {
    if (error instanceof PcaModelError) return fail(error.message);
    throw error;
  }
  return { ...source, references: { path: referencesPath, key: `${layout.outputPrefix}${pointer.file}`, bytes } };
}

/** The pca-model.json a `--model-from` value names. */
function modelPath(value: string, outDir: string, fail: (problem: string) => never): string {
  if (existsSync(value)) {
    const path = resolve(value);
    return statSync(path).isDirectory() ? join(path, RESULT_FILES.model) : path;
  }
  const looksLikeRunId = RUN_ID_PATTERN.test(value) && !value.endsWith('.json');
  if (!looksLikeRunId) return fail(`no such file or folder`);
  const runDir = join(resolve(outDir), value);
  const path = join(runDir, RESULT_FILES.model);
  if (existsSync(path)) return path;
  if (!existsSync(runDir))
    return fail(`no run ${value} in ${resolve(outDir)} (and no such file): pass the run id of an earlier run, or a path to its pca-model.json`);
  // A run that projected with a model keeps none of its own: name the one it used.
  const used = projectedWith(join(runDir, RESULT_FILES.report));
  return fail(
    used
      ? `run ${value} fitted no model (it projected with the model of run ${used}): use --model-from ${used}`
      : `${path} does not exist: run ${value} wrote no model (did it fail?)`,
  );
}

function projectedWith(reportPath: string): string | undefined {
  try {
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { pca?: { source?: string; modelRunId?: string } };
    return report.pca?.source === 'model' ? report.pca.modelRunId : undefined;
  } catch {
    return undefined;
  }
}
