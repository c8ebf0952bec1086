/**
 * The embedded default: the whole pipeline on this machine, no AWS account.
 *
 * 1. An S3-compatible server on loopback (s3rver) keeps its objects in `dataDir` and serves the
 *    input folder itself under `input/<dataset>/`, read-only, listed as its upload would list
 *    (input-folder.ts); with `copyInput` the images are uploaded instead, as `submit` uploads them.
 * 2. The state machine definition is the synthesized stack's (`synthesized-definition.ts`), run by
 *    aws-local-stepfunctions with the Distributed Map emulated (`local-execution.ts`).
 * 3. The Lambda functions are their handler modules in worker threads: featurize with one thread
 *    (and one model) per core, aggregate in one thread; each gets the environment the template
 *    gives the function, pointed at the local server and a local model directory.
 * 4. The run's outputs are copied to `<outDir>/<runId>/`.
 *
 * With `modelFrom` (`--model-from`), the run projects with a saved model instead of fitting: the
 * model is found and checked (model-from.ts), its featurizer held against the one this run's
 * settings give (`featurizerIdOf`), all before the upload; it is then put into the store and named
 * by the execution input's `pcaModel`.
 *
 * Idempotent: the run id is derived from the input's content and from the settings that change the
 * results (`resultSettings`: same images and settings, same run id, served in place or copied),
 * uploads skip objects whose ETag already matches, map results and shards are written to keys
 * derived from the run id, and the copy in `outDir` is replaced. A second run of the same folder
 * with the same settings overwrites the first run's results instead of adding new ones; other
 * settings make another run id.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { AggregateResult } from '../lambdas/aggregate/aggregate-run';
import { datasetInputPrefix, invalidName, runLayout } from '../lambdas/contracts/bucket-layout';
import type { ItemProblem } from '../lambdas/contracts/events';
import { FEATURIZE_ENV, FeaturizeEnvSchema, LOCAL_OBSERVABILITY_ENV, parseHandlerEnv, RESULT_SHAPING_ENV } from '../lambdas/contracts/handler-env';
import { putObject, readJsonIfPresent } from '../lambdas/aws/s3-client';
import { defaultModelDir, featurizerConfigFromEnv, featurizerIdOf, hasModel } from '../lambdas/model';
import { countExternalMemoryInHeapLimit, mapWithConcurrency } from '../lambdas/common';
import { describeIncompleteAccounting, InputAccounting, InputAccountingReport, readableCause } from '../lambdas/bookkeeping';
import type { RunReport } from '../lambdas/outputs';
// Not the analysis face: it loads onnxruntime-node, which the local run's main thread never needs.
import { classifierName, type ClassificationReport } from '../lambdas/analysis/classification';
import { datasetName, readDatasetFolder, type FolderFile, type FolderProblem } from '../client/dataset-folder';
import { batchFailureReason, countReasons, type MapRunFacts, readMapRunFacts } from '../client/failed-run';
import { DEFAULT_OUT_DIR, downloadRunOutputs } from '../client/run-outputs';
import { PipelineConfigError, type PipelineConfigInput } from '../lib/config';
import { knnAccuracy, KnnResult, readFeaturesCsv } from '../evaluate/knn';
import { lockDataDir } from './data-dir-lock';
import { LocalModelSource, readModelFrom } from './model-from';
import { Json, JsonObject } from './emulator/asl';
import { MapRunEvent } from './emulator/distributed-map';
import { MAP_RUN_LABEL as FEATURIZE_MAP_STATE } from '../lambdas/contracts/state-machine';
import { FunctionWorkerPool } from './emulator/function-worker-pool';
import { type LocalExecutionResult, runLocalExecution } from './emulator/local-execution';
import { describeNoSpaceLeft, readStoreSnapshot } from './emulator/s3/object-store';
import { LocalS3Server, startLocalS3Server } from './emulator/s3/s3-server';
import { synthesizePipeline } from './emulator/synthesized-definition';
import { copyInputFolder, type InputPlacement, serveInputFolder, UPLOAD_CONCURRENCY } from './input-folder';

/** The local bucket: what `Ref <bucket>` resolves to in the local definition. */
export const LOCAL_BUCKET = 'fruits-pipeline-local';
const PROJECT_ROOT = resolve(__dirname, '..');

/** Where the local S3 server keeps its objects when nothing else is asked for. */
export const DEFAULT_DATA_DIR = '.s3-data';

/** Files hashed at once for the run id. */
const DIGEST_CONCURRENCY = 16;

export interface LocalRunOptions {
  /** Folder of `<label>/<image>` (or `<split>/<label>/<image>`). @default DEMO_PHOTOS, real Fruits-360 photos */
  readonly inputDir?: string;
  /** Where the S3 server stores objects. @default DEFAULT_DATA_DIR */
  readonly dataDir?: string;
  /**
   * Upload a copy of the input folder into the store (as `submit` uploads to AWS) instead of
   * serving the folder in place. @default false
   */
  readonly copyInput?: boolean;
  /** Outputs are copied to `<outDir>/<runId>/`. @default ./out */
  readonly outDir?: string;
  /** Pipeline settings (batchSize, maxConcurrency, pcaComponents, pcaVarianceThreshold, imageSize, featurizer...). */
  readonly config?: PipelineConfigInput;
  /** Directory of the TF.js model. @default $MODEL_DIR, else the fetch-model cache */
  readonly modelDir?: string;
  /** @default derived from the input's content */
  readonly runId?: string;
  /**
   * Project with a saved model instead of fitting: the run id of an earlier run (its
   * `results/<runId>/pca-model.json` in the store of `dataDir`, else `<outDir>/<runId>/`) or the
   * path of a pca-model.json (model-from.ts).
   */
  readonly modelFrom?: string;
  /** Featurize worker threads. @default available parallelism */
  readonly workers?: number;
  /** Leave the S3 server running; the caller closes it with `result.close()`. */
  readonly keepServer?: boolean;
  readonly onProgress?: (progress: RunProgress) => void;
  /** One line of information for the user (notices, not progress). */
  readonly onNotice?: (line: string) => void;
  /**
   * Root of bundled handlers (`<root>/lambdas/<name>/handler.js`, as `layers/handlers/bundle-handlers.ts`
   * writes them for the image), to run exactly the image's code. @default the TypeScript sources
   */
  readonly bundledHandlersDir?: string;
  /** Milliseconds between retries, by state name (tests). @default the definition's */
  readonly retryIntervalOverrides?: Record<string, number | number[]>;
}

export interface RunProgress {
  readonly phase: 'upload' | 'featurize' | 'aggregate';
  /** Objects in the phase: files to upload (or serve), or items the map run listed. */
  readonly total: number;
  readonly done: number;
  /** Images that could not be featurized (bad files and items of failed batches). */
  readonly failed: number;
}

export interface LocalRunSummary {
  readonly runId: string;
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly dataset: string;
  readonly inputPrefix: string;
  readonly endpoint: string;
  readonly bucket: string;
  /** Files copied into the store (`copyInput`). */
  readonly uploaded: number;
  /** Files whose copy was already in the store (`copyInput`). */
  readonly alreadyPresent: number;
  /** Files served from the input folder in place (the default): none copied. */
  readonly served: number;
  /**
   * Symbolic links of the input folder followed (to files and folders). Links that could not be
   * (dangling, or a loop) are failed inputs, in `notUploaded` with their reason.
   */
  readonly linksFollowed: number;
  /** Objects the map run listed (images and anything else under the prefix). */
  readonly listed: number;
  readonly processed: number;
  readonly failed: number;
  readonly skipped: number;
  readonly failuresByReason: { reason: string; count: number }[];
  /** Files of the folder the store refused (a key S3 would refuse too), each with the reason. */
  readonly notUploaded: ItemProblem[];
  /**
   * The input folder held against the run's outputs: every file must be one row of features.csv,
   * a failed or a skipped image, exactly once; a run that cannot show it is FAILED.
   */
  readonly accounting?: InputAccountingReport;
  readonly featurizer?: string;
  readonly backends: string[];
  readonly components?: number;
  readonly explainedVariance?: number;
  /** The saved model the run projected with (`modelFrom`): no PCA was fitted. */
  readonly model?: { readonly key: string; readonly runId: string; readonly path: string };
  readonly knn?: KnnResult;
  /** The settings that change the results, and their digest (the run id's last part). */
  readonly settings: RunSettingsDigest;
  readonly seconds: number;
  /**
   * Wall time of each phase, seconds: upload (the copy, or indexing the folder to serve it),
   * synth (definition), featurize (the map run), aggregate.
   */
  readonly phaseSeconds: Record<'upload' | 'synth' | 'featurize' | 'aggregate', number>;
  /** Featurize worker threads. */
  readonly workers: number;
  /** Where the outputs were copied. */
  readonly outDir?: string;
  readonly error?: { error: string; cause: string };
  readonly notices: string[];
}

export interface LocalRunResult {
  readonly summary: LocalRunSummary;
  readonly server: LocalS3Server;
  /** Stop the S3 server (already done unless `keepServer`). */
  close(): Promise<void>;
}

export async function runLocally(options: LocalRunOptions = {}): Promise<LocalRunResult> {
  const started = performance.now();
  // This thread serves the emulated S3 and state machine: every body it reads or writes is a Buffer.
  countExternalMemoryInHeapLimit();
  const notices: string[] = [];
  const notice = (line: string) => {
    notices.push(line);
    options.onNotice?.(line);
  };

  const badRunId = options.runId === undefined ? undefined : invalidName(options.runId, 'run id');
  if (badRunId) throw new Error(badRunId);
  const input = await readInput(options.inputDir);
  const dataDir = writableFolder(options.dataDir ?? DEFAULT_DATA_DIR, '--data-dir');
  // The store of a data directory is one process's: a second run on it stops here, at once.
  const lock = lockDataDir(dataDir, { onNotice: notice });
  let lockHandedOver = false;
  try {
    // 1-2. Everything that can be wrong with the request, found before anything is uploaded.
    const run = await prepareRun(options, input, dataDir, notice);
    const server = await startLocalS3Server({ directory: dataDir, buckets: [LOCAL_BUCKET] });
    const pools: FunctionWorkerPool[] = [];
    try {
      const mark: PhaseMarks = { start: performance.now(), uploaded: 0, mapStarted: 0, mapFinished: 0, finished: 0 };
      const placed = await placeInput(server, options, run);
      mark.uploaded = performance.now();
      // 3. The functions as worker threads, run by the synthesized definition.
      const { featurizePool, aggregatePool } = startFunctionPools(options, run, server);
      pools.push(featurizePool, aggregatePool);
      // The aggregate's workers load their modules while featurize runs (a second or two of CPU
      // each), not at the start of the aggregate, one stage after another.
      void aggregatePool.warm();
      const featurizeMap = trackFeaturizeMap(mark, options.onProgress);
      const execution = await runLocalExecution(
        {
          definition: run.pipeline.definition,
          functions: new Map([
            [run.pipeline.featurize.arn, featurizePool.invoke],
            [run.pipeline.aggregate.arn, aggregatePool.invoke],
          ]),
          s3: server.client,
          retryIntervalOverrides: options.retryIntervalOverrides,
          onMapRunEvent: featurizeMap.onMapRunEvent,
        },
        run.runId,
        run.savedModel ? { inputPrefix: run.inputPrefix, pcaModel: run.savedModel.key } : { inputPrefix: run.inputPrefix },
      );
      mark.finished = performance.now();
      // A write the store could not make for want of space failed some request of the run: say so
      // and where, rather than leave the InternalError it answered with to explain it.
      const noSpace = server.noSpaceLeft();
      if (noSpace) notice(`Run ${run.runId}: ${describeNoSpaceLeft(noSpace)}; what the store kept is whole: free space and run again`);

      // 4. The outputs copied to outDir, and the run held against its input folder.
      const outcome = await readRunOutcome(server.client, options, run, placed, execution, featurizeMap);
      if (outcome.incomplete) notice(`Run ${run.runId} FAILED: ${outcome.incomplete}`);
      const summary = summarizeRun({ run, placed, execution, featurizeMap, outcome, noSpace, server, mark, started, workers: featurizePool.size, notices });
      if (!options.keepServer) await server.close();
      // Kept with the server: the store stays open until the caller closes it.
      lockHandedOver = options.keepServer === true;
      return { summary, server, close: () => (options.keepServer ? server.close().finally(() => lock.release()) : Promise.resolve()) };
    } catch (error) {
      const noSpace = server.noSpaceLeft();
      await server.close();
      if (noSpace) throw new Error(`${describeNoSpaceLeft(noSpace)}: free space and run again (${(error as Error).message})`);
      throw error;
    } finally {
      await Promise.all(pools.map((pool) => pool.close()));
    }
  } finally {
    if (!lockHandedOver) lock.release();
  }
}

/** The input folder as `readInput` found it. */
type RunInput = Awaited<ReturnType<typeof readInput>>;

/** What a run is, once checked: its definition and environments, the saved model, its settings and id. */
interface PreparedRun {
  readonly input: RunInput;
  readonly inputPrefix: string;
  readonly pipeline: ReturnType<typeof synthesizePipeline>;
  readonly synthSeconds: number;
  /** The featurize function's model directory (and featurizer, when it falls back to pixels) on this machine. */
  readonly modelEnv: Record<string, string>;
  readonly savedModel?: LocalModelSource;
  readonly settings: RunSettingsDigest;
  readonly runId: string;
}

/** When each phase began and ended (performance.now()); 0 until it has. */
interface PhaseMarks {
  start: number;
  uploaded: number;
  mapStarted: number;
  mapFinished: number;
  finished: number;
}

/**
 * The settings (the synth validates them), the model, the folders the run writes to, the saved
 * model of `modelFrom`, then the run id from the input's content and the result-shaping settings.
 */
async function prepareRun(options: LocalRunOptions, input: RunInput, dataDir: string, notice: (line: string) => void): Promise<PreparedRun> {
  const synthStarted = performance.now();
  const pipeline = synthesizeWithOneLineErrors(options.config);
  const synthSeconds = (performance.now() - synthStarted) / 1000;
  const modelEnv = localModelEnv(pipeline.featurize.environment, options.modelDir, options.config?.featurizer === 'cnn', notice);
  writableFolder(options.outDir ?? DEFAULT_OUT_DIR, '--out');
  const savedModel = options.modelFrom === undefined ? undefined : checkedModel(options, dataDir, { ...pipeline.featurize.environment, ...modelEnv });
  if (savedModel) {
    const elsewhere = savedModel.foundIn === 'out' ? ` (the local store in ${options.dataDir ?? DEFAULT_DATA_DIR} has no run ${options.modelFrom})` : '';
    notice(`--model-from ${options.modelFrom}: projecting with the model of run ${savedModel.model.runId}, ${savedModel.path}${elsewhere}`);
  }
  // The run id names the input's content and the settings that change the results (the model projected with among them).
  const settings = resultSettings(
    { ...pipeline.featurize.environment, ...modelEnv },
    pipeline.aggregate.environment,
    savedModel ? { pcaModel: savedModel.digest } : {},
  );
  // Bounded: one file open per lane (71,000 at once run out of file descriptors).
  const contentDigests = await mapWithConcurrency(input.files, DIGEST_CONCURRENCY, async (file) => ({ path: file.path, md5: (await file.digests()).md5 }));
  const runId = options.runId ?? contentRunId(input.dataset, contentDigests, settings.digest);
  return { input, inputPrefix: datasetInputPrefix(input.dataset), pipeline, synthSeconds, modelEnv, savedModel, settings, runId };
}

/** Where the input went (`placed`), with the links the folder walk could not follow as refused inputs. */
interface PlacedInput {
  readonly placed: InputPlacement;
  readonly unfollowed: ItemProblem[];
}

/**
 * The input folder served in place (or copied, `copyInput`) under `input/<dataset>/`, and the
 * saved model put where the execution input points: results/<model runId>/ of the local store.
 */
async function placeInput(server: LocalS3Server, options: LocalRunOptions, run: PreparedRun): Promise<PlacedInput> {
  const { files, problems, root } = run.input;
  const onUploadProgress = (done: number, total: number) => options.onProgress?.({ phase: 'upload', total, done, failed: 0 });
  const folder = { bucket: LOCAL_BUCKET, prefix: run.inputPrefix, root, files };
  const placement = options.copyInput
    ? await copyInputFolder(server.client, folder, { concurrency: UPLOAD_CONCURRENCY, onProgress: onUploadProgress })
    : await serveInputFolder(server, folder);
  // A link the walk could not follow is an input of the folder that failed, with its reason.
  const unfollowed = problems.map(({ path, reason }) => ({ key: `${run.inputPrefix}${path}`, reason: `not read: ${reason}` }));
  if (!options.copyInput) onUploadProgress(files.length, files.length);

  const { savedModel } = run;
  if (savedModel && savedModel.foundIn !== 'store') {
    await putObject(server.client, LOCAL_BUCKET, savedModel.key, savedModel.modelBytes, 'application/json');
    for (const part of savedModel.references ?? []) await putObject(server.client, LOCAL_BUCKET, part.key, part.read(), 'application/octet-stream');
  }
  return { placed: { ...placement, refused: [...unfollowed, ...placement.refused] }, unfollowed };
}

/** The two functions as worker pools with the template's environment, pointed at the local server and model. */
function startFunctionPools(options: LocalRunOptions, run: PreparedRun, server: LocalS3Server) {
  const { pipeline } = run;
  // The handlers' structured logs would bury the progress display; warnings still come through.
  // Metrics' EMF lines would too (no CloudWatch reads them here), and there is no X-Ray daemon.
  const quiet = { POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? 'WARN', ...LOCAL_OBSERVABILITY_ENV };
  const featurizePool = new FunctionWorkerPool({
    modulePath: handlerModule('featurize', options.bundledHandlersDir),
    size: Math.min(options.workers ?? availableParallelism(), pipeline.config.maxConcurrency),
    environment: { ...pipeline.featurize.environment, ...server.env, ...quiet, ...run.modelEnv },
    timeoutSeconds: pipeline.featurize.timeoutSeconds,
    memorySizeMb: pipeline.featurize.memorySizeMb,
  });
  const aggregatePool = new FunctionWorkerPool({
    modulePath: handlerModule('aggregate', options.bundledHandlersDir),
    // The aggregate's group maps run a child per group: as many at once as the featurize map.
    size: Math.min(options.workers ?? availableParallelism(), pipeline.config.aggregateConcurrency),
    environment: { ...pipeline.aggregate.environment, ...server.env, ...quiet },
    timeoutSeconds: pipeline.aggregate.timeoutSeconds,
    memorySizeMb: pipeline.aggregate.memorySizeMb,
  });
  return { featurizePool, aggregatePool };
}

/** What the featurize map run told as it went: progress, the failed children, its result. */
interface FeaturizeMapTracker {
  readonly progress: { total: number; done: number; failed: number };
  readonly failedChildren: { reason: string; count: number }[];
  mapResult?: Json;
  readonly onMapRunEvent: (state: string, event: MapRunEvent) => void;
}

/** Follows the featurize map run, marks its start and end, and reports its progress. */
function trackFeaturizeMap(mark: PhaseMarks, onProgress: LocalRunOptions['onProgress']): FeaturizeMapTracker {
  const tracker: FeaturizeMapTracker = {
    progress: { total: 0, done: 0, failed: 0 },
    failedChildren: [],
    onMapRunEvent: (state, event) => {
      // The aggregate's group maps are part of the aggregate phase; only the featurize map counts images.
      if (state !== FEATURIZE_MAP_STATE) return;
      const { progress } = tracker;
      if (event.type === 'started') {
        progress.total = event.totalItems;
        mark.mapStarted = performance.now();
      } else if (event.type === 'childFailed') {
        progress.done += event.items;
        progress.failed += event.items;
        tracker.failedChildren.push({ reason: batchFailureReason(event), count: event.items });
      } else if (event.type === 'childSucceeded') {
        progress.done += event.items;
        progress.failed += Number((event.output as JsonObject)?.failedCount ?? 0);
      } else if (event.type === 'finished') {
        tracker.mapResult = event.result;
        mark.mapFinished = performance.now();
      }
      const phase = event.type === 'finished' ? 'aggregate' : 'featurize';
      onProgress?.({ phase, ...progress });
    },
  };
  return tracker;
}

/** What a finished run left: its outputs copied, its report, the facts behind its counts, its score and accounting. */
interface RunOutcome {
  readonly outDir: string;
  readonly copied: string[];
  readonly report?: RunReport & { classification?: ClassificationReport };
  readonly aggregate?: AggregateResult;
  readonly batches: MapRunFacts;
  readonly knn?: KnnResult;
  readonly accounting?: InputAccountingReport;
  /** Why the run cannot show that every file came out exactly once. */
  readonly incomplete?: string;
}

async function readRunOutcome(
  s3: S3Client,
  options: LocalRunOptions,
  run: PreparedRun,
  { placed, unfollowed }: PlacedInput,
  execution: LocalExecutionResult,
  featurizeMap: FeaturizeMapTracker,
): Promise<RunOutcome> {
  const layout = runLayout(run.runId);
  const { dir: outDir, files: copied } = await downloadRunOutputs(s3, LOCAL_BUCKET, run.runId, options.outDir ?? DEFAULT_OUT_DIR);
  const report = await readJsonIfPresent<RunReport & { classification?: ClassificationReport }>(s3, LOCAL_BUCKET, layout.resultKey('report'));
  const aggregate = execution.status === 'SUCCEEDED' ? (execution.output as unknown as AggregateResult) : undefined;
  const { mapResult, failedChildren } = featurizeMap;
  // Only a fallback for a run without report.json (read only then): a problem reading it must not
  // hide the run's outcome.
  const batches = await mapRunFacts(s3, report ? undefined : mapResult).catch(() => mapRunFacts(s3, undefined));
  // A map run that wrote no results (the execution failed before it finished) still told why
  // its children failed, as they ended.
  if (!report && mapResult === undefined && failedChildren.length > 0) {
    batches.failed = failedChildren.reduce((total, child) => total + child.count, 0);
    batches.byReason = mergeReasons(failedChildren);
  }
  const rows = copied.includes('features.csv') ? readFeaturesCsv(readFileSync(join(outDir, 'features.csv'), 'utf8')) : undefined;
  // The aggregate already scored the run (report.json's classification): scoring again here
  // would double the k-NN, a minute on the whole dataset. features.csv is scored only without it.
  // A projected run is classified against the model's references or not at all: never against its own rows.
  const knn = knnFromReport(report?.classification) ?? (rows && !run.savedModel ? knnAccuracy(rows, { k: run.pipeline.config.knnNeighbours }) : undefined);
  // What the run must account for is the folder itself, not the store's listing of it.
  const accounting =
    execution.status === 'SUCCEEDED'
      ? accountForInputFolder(
          [...run.input.files.map((file) => `${run.inputPrefix}${file.path}`), ...unfollowed.map((problem) => problem.key)],
          placed.refused,
          rows,
          report,
        )
      : undefined;
  const incomplete = accounting && !accounting.complete ? describeIncompleteAccounting(accounting, 'files of the input folder') : undefined;
  return { outDir, copied, report, aggregate, batches, knn, accounting, incomplete };
}

/** The run summary: counts from report.json, else the aggregate's result, else the map run's own results. */
function summarizeRun(parts: {
  run: PreparedRun;
  placed: PlacedInput;
  execution: LocalExecutionResult;
  featurizeMap: FeaturizeMapTracker;
  outcome: RunOutcome;
  noSpace: ReturnType<LocalS3Server['noSpaceLeft']>;
  server: LocalS3Server;
  mark: PhaseMarks;
  started: number;
  workers: number;
  notices: string[];
}): LocalRunSummary {
  const { run, execution, outcome, mark, noSpace } = parts;
  const { placed } = parts.placed;
  const { report, aggregate, batches, knn } = outcome;
  const { savedModel } = run;
  return {
    runId: run.runId,
    status: outcome.incomplete ? 'FAILED' : execution.status,
    dataset: run.input.dataset,
    inputPrefix: run.inputPrefix,
    endpoint: parts.server.endpoint,
    bucket: LOCAL_BUCKET,
    uploaded: placed.uploaded,
    alreadyPresent: placed.alreadyPresent,
    served: placed.served,
    linksFollowed: run.input.linksFollowed,
    listed: parts.featurizeMap.progress.total,
    processed: report?.counts.processed ?? aggregate?.counts.processed ?? batches.processed,
    failed: (report?.counts.failed ?? aggregate?.counts.failed ?? batches.failed) + placed.refused.length,
    skipped: report?.counts.skipped ?? aggregate?.counts.skipped ?? batches.skipped,
    failuresByReason: [...countReasons(placed.refused), ...(report?.failed.byReason ?? batches.byReason)],
    notUploaded: placed.refused,
    accounting: outcome.accounting,
    featurizer: report ? Object.keys(report.featurizer.ids).join(', ') || undefined : batches.featurizer,
    backends: report?.featurizer.backends ?? batches.backends,
    components: aggregate?.components,
    explainedVariance: aggregate?.explainedVariance,
    model: savedModel ? { key: savedModel.key, runId: savedModel.model.runId, path: savedModel.path } : undefined,
    knn: knn && knn.scored > 0 ? knn : undefined,
    settings: run.settings,
    seconds: (performance.now() - parts.started) / 1000,
    phaseSeconds: {
      upload: (mark.uploaded - mark.start) / 1000,
      synth: run.synthSeconds,
      featurize: mark.mapFinished ? (mark.mapFinished - mark.mapStarted) / 1000 : 0,
      aggregate: mark.mapFinished ? (mark.finished - mark.mapFinished) / 1000 : 0,
    },
    workers: parts.workers,
    outDir: outcome.copied.length > 0 ? outcome.outDir : undefined,
    error:
      execution.status === 'FAILED' && noSpace
        ? {
            error: 'NoSpaceLeft',
            cause: `${describeNoSpaceLeft(noSpace)}; the run ended with ${execution.error}: ${readableCause(execution.cause, execution.error)}`,
          }
        : execution.status === 'FAILED'
          ? { error: execution.error, cause: execution.cause }
          : outcome.incomplete
            ? { error: 'IncompleteRunError', cause: outcome.incomplete }
            : undefined,
    notices: parts.notices,
  };
}

/** Real Fruits-360 photos shipped with the project (datasets/fruits-360-demo/README.md): `npm start`'s input. */
export const DEMO_PHOTOS = resolve(__dirname, '..', 'datasets', 'fruits-360-demo', 'images');

/** The input: the folder's files (symbolic links followed), or the demo photos. */
async function readInput(
  inputDir: string | undefined,
): Promise<{ dataset: string; root: string; files: FolderFile[]; problems: FolderProblem[]; linksFollowed: number }> {
  if (inputDir === undefined) return { dataset: 'demo', root: DEMO_PHOTOS, ...readDatasetFolder(DEMO_PHOTOS) };
  const root = resolve(inputDir);
  if (!existsSync(root)) throw new Error(`input folder ${inputDir} does not exist`);
  if (!statSync(root).isDirectory()) throw new Error(`${inputDir} is not a directory`);
  const folder = readDatasetFolder(root);
  if (folder.files.length === 0) {
    const links =
      folder.problems.length > 0
        ? ` (${folder.problems.length} symbolic link(s) not followed, e.g. ${folder.problems[0].path}: ${folder.problems[0].reason})`
        : '';
    throw new Error(`${inputDir} holds no files${links}`);
  }
  return { dataset: datasetName(basename(root)), root, ...folder };
}

/** The module a local task runs: the handler's source, or its bundle when one is given. */
function handlerModule(name: 'featurize' | 'aggregate', bundledHandlersDir: string | undefined): string {
  return bundledHandlersDir ? join(resolve(bundledHandlersDir), 'lambdas', name, 'handler.js') : join(PROJECT_ROOT, 'lambdas', name, 'handler.ts');
}

/**
 * `<dataset>-<12 hex of the content hash>[-<6 hex of the settings digest>]`: a valid execution name
 * (at most 80 characters, no spaces). The same images with other settings (featurizer, model,
 * image size, k, classifier k) get another run id, so one experiment never overwrites another.
 */
export function contentRunId(dataset: string, files: readonly { path: string; md5: string }[], settingsDigest?: string): string {
  const hash = createHash('sha256');
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) hash.update(`${file.path}\u0000${file.md5}\n`);
  const content = `${dataset.slice(0, 60)}-${hash.digest('hex').slice(0, 12)}`;
  return settingsDigest ? `${content}-${settingsDigest.slice(0, 6)}` : content;
}

export interface RunSettingsDigest {
  /** 6 hex of the SHA-256 of `values`. */
  readonly digest: string;
  /**
   * The handlers' variables that change the results (RESULT_SHAPING_ENV), as the run sets them
   * (unset ones are absent), and `pcaModel` (`<runId>@<hash>` of the saved model) when the run
   * projects with one: a projected run never takes the run id of a fitted run of the same images.
   */
  readonly values: Record<string, string>;
}

/** The result-shaping settings of a run, from the environments its functions get and the execution input's model. */
export function resultSettings(
  featurizeEnv: Record<string, string>,
  aggregateEnv: Record<string, string>,
  input: { readonly pcaModel?: string } = {},
): RunSettingsDigest {
  const all = { ...featurizeEnv, ...aggregateEnv };
  const values = Object.fromEntries(RESULT_SHAPING_ENV.filter((name) => all[name] !== undefined && all[name] !== '').map((name) => [name, all[name]]));
  if (input.pcaModel) values.pcaModel = input.pcaModel;
  const digest = createHash('sha256').update(JSON.stringify(values)).digest('hex').slice(0, 6);
  return { digest, values };
}

/**
 * The saved model of `--model-from`, checked against this run before anything is uploaded: its
 * featurizer must be the one this run's settings give (the aggregate step checks the shards again).
 */
function checkedModel(options: LocalRunOptions, dataDir: string, featurizeEnv: Record<string, string>): LocalModelSource {
  const store = { dataDir: options.dataDir ?? DEFAULT_DATA_DIR, snapshot: readStoreSnapshot(dataDir, LOCAL_BUCKET) };
  const source = readModelFrom(options.modelFrom!, options.outDir ?? DEFAULT_OUT_DIR, store);
  const prefix = `--model-from ${options.modelFrom}`;
  const runFeaturizer = featurizerIdOf(featurizerConfigFromEnv(parseHandlerEnv(FeaturizeEnvSchema, featurizeEnv, 'featurize')));
  if (runFeaturizer !== source.model.featurizer) {
    throw new Error(
      `${prefix}: the model was fitted on features of ${source.model.featurizer}, this run would featurize with ${runFeaturizer}: ` +
        `run with the featurizer settings of run ${source.model.runId} (--featurizer, --image-size, --model-dir)`,
    );
  }
  if (options.runId === source.model.runId) {
    throw new Error(`${prefix}: --run-id ${options.runId} is the model's own run: a projected run must not overwrite the run it projects with`);
  }
  return source;
}

/** The synthesized pipeline; a bad setting is one line naming every problem (the CLI prints it as is). */
function synthesizeWithOneLineErrors(config: PipelineConfigInput | undefined): ReturnType<typeof synthesizePipeline> {
  try {
    return synthesizePipeline({ bucketName: LOCAL_BUCKET, config });
  } catch (error) {
    if (!(error instanceof PipelineConfigError)) throw error;
    const [title, ...problems] = error.message.split('\n').map((line) => line.trim().replace(/^- /, ''));
    throw new PipelineConfigError(`${title.replace(/:$/, '')}: ${problems.filter(Boolean).join('; ')}`);
  }
}

/** `dir`, created if needed, or a one-line error naming the flag when it cannot be written. */
function writableFolder(dir: string, flag: string): string {
  const path = resolve(dir);
  try {
    mkdirSync(path, { recursive: true });
    if (!statSync(path).isDirectory()) throw new Error('not a directory');
    accessSync(path, constants.W_OK);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new Error(`${flag} ${dir} is not a writable folder (${reason})`);
  }
  return path;
}

/**
 * The featurize function's model directory on this machine: the flag, $MODEL_DIR, or the
 * fetch-model cache. Without any model the run still works, with the `pixels` featurizer.
 */
function localModelEnv(
  templateEnv: Record<string, string>,
  modelDir: string | undefined,
  cnnAskedFor: boolean,
  notice: (line: string) => void,
): Record<string, string> {
  const modelId = templateEnv[FEATURIZE_ENV.modelId] ?? '';
  // The default model ships in the repository (layers/model-weights/), so this finds it on a fresh clone.
  const candidate = modelDir ?? process.env[FEATURIZE_ENV.modelDir] ?? defaultModelDir(modelId);
  const found = { [FEATURIZE_ENV.modelDir]: resolve(candidate) };
  if (templateEnv[FEATURIZE_ENV.featurizer] === 'pixels') return found;
  if (hasModel(candidate)) return found;
  if (modelDir !== undefined) throw new Error(`--model-dir ${modelDir} holds no model (a .tflite file or a TF.js model.json)`);
  const fetch = `Run \`npm run model:fetch -- --model ${modelId}\` or pass --model-dir`;
  if (cnnAskedFor) throw new Error(`--featurizer cnn: no model ${modelId} at ${candidate}. ${fetch}.`);
  notice(`No model ${modelId} at ${candidate}: featurizing raw pixels instead. ${fetch} for CNN features.`);
  return { ...found, [FEATURIZE_ENV.featurizer]: 'pixels' };
}

/**
 * Counts and reasons from the map run's own results, for when the aggregate step did not get to
 * write its report (a failed run).
 */
async function mapRunFacts(s3: S3Client, mapResult: Json | undefined) {
  const details = (mapResult as { ResultWriterDetails?: { Bucket: string; Key: string } } | undefined)?.ResultWriterDetails;
  return readMapRunFacts(s3, details ? [{ bucket: details.Bucket, key: details.Key }] : [], { withFeaturizer: true });
}

/** Counts of the same reason added up, most frequent first. */
function mergeReasons(counts: readonly { reason: string; count: number }[]): { reason: string; count: number }[] {
  const merged = new Map<string, number>();
  for (const { reason, count } of counts) merged.set(reason, (merged.get(reason) ?? 0) + count);
  return [...merged].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count);
}

/** Every file of the folder against the run's outputs: rows, failed and skipped images, refused uploads. */
export function accountForInputFolder(
  expectedKeys: readonly string[],
  refused: readonly ItemProblem[],
  rows: readonly { key: string }[] | undefined,
  report: RunReport | undefined,
): InputAccountingReport {
  const accounting = new InputAccounting();
  accounting.list(expectedKeys);
  accounting.account(refused.map((problem) => problem.key));
  if (rows) accounting.account(rows.map((row) => row.key));
  else accounting.cannotProve('the run wrote no features.csv');
  if (report) {
    accounting.account([...report.failed.items, ...report.skipped.items].map((problem) => problem.key));
    if (!report.failed.complete || !report.skipped.complete) accounting.cannotProve('report.json knows some failed or skipped images only by count');
  } else {
    accounting.cannotProve('the run wrote no report.json');
  }
  return accounting.report();
}

/** The run's own score, as the aggregate's classification step wrote it. */
function knnFromReport(classification: ClassificationReport | undefined): KnnResult | undefined {
  if (classification?.status !== 'classified' || classification.accuracy === null) return undefined;
  const { accuracy, correct, scored, references, unscored: unsplit } = classification;
  const k = classification.classifier === 'knn' ? classification.neighbours : 0;
  return { k, classifier: classifierName(classification), accuracy, correct, scored, references, unsplit };
}
