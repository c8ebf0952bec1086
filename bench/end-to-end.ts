/**
 * The whole local pipeline (`runLocally`, what `npm start -- run <dir>` does) on N images: the
 * input folder served in place by the local S3 store (the `upload` phase is the time to index it;
 * bench/input-mount.ts compares it with uploading a copy), the synthesized state machine,
 * featurize in worker threads, aggregate.
 *
 *   npx tsx bench/end-to-end.ts                         # 2,000 images, 1 and 2 workers
 *   npx tsx bench/end-to-end.ts --images 10000 --rounds 1
 *   npx tsx bench/end-to-end.ts --dataset <fruits-360>   # one run on a whole dataset folder, default settings
 *   npx tsx bench/end-to-end.ts --whole-dataset          # fruits-360-103 replicated to 71,022 images (the
 *                                                        # whole Fruits-360's count), default settings
 *   npx tsx bench/end-to-end.ts --whole-dataset --config '{"aggregateTimeoutSeconds":60}'
 *                                                        # settings over cdk.json's, as a user's cdk.json
 *                                                        # "fruits-pipeline" context would give them
 *   npx tsx bench/end-to-end.ts --whole-dataset --keep <dir>   # keep the input, store and outputs in <dir>
 *
 * N images are the shared Fruits-360 sample replicated under new keys
 * (`copy<i>/<split>/<label>/<file>`, same label and split folders): the same bytes as real
 * photos, so decode and inference cost what they cost on the sample. Each run gets a fresh S3 data
 * directory, and runs in its own child process (peak RSS is the
 * run's: the worker threads live in that process). Worker counts alternate (1 2 2 1 ...).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { datasetFiles } from '../client/dataset-folder';
import { DEFAULT_MODEL_ID } from '../lambdas/contracts/handler-env';
import type { PipelineConfigInput } from '../lib/config';
import { loadSample, MODELS, SAMPLE } from './accuracy';
import { argValue, ChildResult, fixed, load, peakRssMb, replicateFolder, runChild } from './bench-support';
import { readFeaturesCsv } from '../evaluate/knn';

export interface EndToEndOptions {
  readonly images: readonly number[];
  readonly workers: readonly number[];
  readonly rounds: number;
  readonly timeoutMinutes: number;
}

export interface EndToEndCaseResult {
  images: number;
  workers: number;
  status: string;
  processed: number;
  failed: number;
  /** Files that are not images of a label folder (a LICENSE beside the images, say). */
  skippedFiles: number;
  seconds: number;
  phaseSeconds: Record<'upload' | 'synth' | 'featurize' | 'aggregate', number>;
  /** The aggregate's stages as report.json times them (ms): plan, moments, fit, project and classify (slowest group and summed), publish. */
  aggregateStagesMs?: Record<string, number>;
  imagesPerSecond: { overall: number; upload: number; featurize: number; aggregate: number };
  featurizer?: string;
  backends: string[];
  knnAccuracy?: number;
  peakRssMb: number;
  load: string;
}

export type EndToEndRow = EndToEndCaseResult | { images: number; workers: number; error: string };

/** Images in the whole Fruits-360 (Training + Test, 103 classes, version 2019.05.06.1). */
export const WHOLE_FRUITS_360_IMAGES = 71_022;
export const FRUITS_360_103 = join(__dirname, '..', '..', 'shared', 'datasets', 'fruits-360-103');

export interface WholeDatasetOptions {
  /** A dataset folder to run as it is. @default fruits-360-103 replicated to `images` */
  readonly dir?: string;
  /** @default WHOLE_FRUITS_360_IMAGES */
  readonly images?: number;
  readonly timeoutMinutes?: number;
  /** Settings over cdk.json's `fruits-pipeline` context, as the local run takes them. @default none */
  readonly config?: PipelineConfigInput;
  /** Keep the replicated input, the store and the outputs in this folder. @default a scratch folder, removed */
  readonly keepDir?: string;
}

export type WholeDatasetResult =
  (EndToEndCaseResult & { dataset: string; files: number; rows: number; accountedPerFile: number }) | { skipped: string } | { error: string };

/**
 * One local run at default settings (workers = cores, the configured concurrency and batch size,
 * the default featurizer) on the product's real scale, from an empty store: the figures of the
 * speed goal, with each phase's wall time, and whether every file became exactly one row.
 */
export async function wholeDatasetBench(options: WholeDatasetOptions = {}): Promise<WholeDatasetResult> {
  const scratch = options.keepDir ? resolve(options.keepDir) : mkdtempSync(join(tmpdir(), 'bench-whole-'));
  mkdirSync(scratch, { recursive: true });
  try {
    let inputDir = options.dir ? resolve(options.dir) : undefined;
    let dataset = inputDir ?? '';
    if (!inputDir) {
      if (!existsSync(FRUITS_360_103)) return { skipped: `the shared fruits-360-103 set is not at ${FRUITS_360_103}; pass --dataset <dir>` };
      const images = options.images ?? WHOLE_FRUITS_360_IMAGES;
      inputDir = join(scratch, 'fruits-360');
      if (!existsSync(inputDir)) replicateFolder(FRUITS_360_103, inputDir, images);
      dataset = `fruits-360-103 replicated to ${images} images`;
    }
    const files = [...datasetFiles(inputDir)].length;
    const config = options.config ? ['--config', JSON.stringify(options.config)] : [];
    const result = await runChild(__filename, ['--case', inputDir, '--run-dir', join(scratch, 'run'), ...config], {
      timeoutMinutes: options.timeoutMinutes ?? 60,
    });
    if (result.error) return { error: result.error };
    const row = result as unknown as EndToEndCaseResult & { rows: number };
    // 1 when every file is exactly one CSV row, one failed or one skipped file.
    return { ...row, dataset, files, accountedPerFile: fixed((row.rows + row.failed + row.skippedFiles) / files, 6) };
  } finally {
    if (!options.keepDir) rmSync(scratch, { recursive: true, force: true });
  }
}

export async function endToEndBench(options: EndToEndOptions): Promise<EndToEndRow[] | { skipped: string }> {
  if (!existsSync(SAMPLE)) return { skipped: `the shared Fruits-360 sample is not at ${SAMPLE}` };
  const rows: EndToEndRow[] = [];
  for (const images of options.images) {
    const scratch = mkdtempSync(join(tmpdir(), 'bench-e2e-'));
    try {
      const inputDir = join(scratch, `fruits-${images}`);
      replicateSample(inputDir, images);
      let turn = 0;
      for (let round = 0; round < options.rounds; round++) {
        const order = round % 2 === 0 ? options.workers : [...options.workers].reverse();
        for (const workers of order) {
          const runDir = join(scratch, `run-${turn++}`);
          const result: ChildResult = await runChild(__filename, ['--case', inputDir, '--workers', String(workers), '--run-dir', runDir], {
            timeoutMinutes: options.timeoutMinutes,
          });
          rmSync(runDir, { recursive: true, force: true });
          const row = result.error ? { images, workers, error: result.error } : (result as unknown as EndToEndCaseResult);
          console.log(
            `  end to end ${images} images, ${workers} worker(s): ${'error' in row ? row.error : `${row.seconds} s, ${row.imagesPerSecond.overall} img/s`}`,
          );
          rows.push(row);
        }
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  return rows;
}

/** `count` images: copies of the sample under `copy<i>/`, hard-linked where the filesystem allows. */
function replicateSample(dir: string, count: number): void {
  replicateFolder(
    SAMPLE,
    dir,
    count,
    loadSample().map((image) => image.path),
  );
}

/** One local run in this process; `workers` undefined: the default (one per core). */
async function runCase(
  inputDir: string,
  workers: number | undefined,
  runDir: string,
  config?: PipelineConfigInput,
): Promise<EndToEndCaseResult & { rows: number }> {
  const { runLocally } = await import('../local/local-run');
  const { summary } = await runLocally({
    inputDir,
    dataDir: join(runDir, 's3'),
    outDir: join(runDir, 'out'),
    modelDir: join(MODELS, DEFAULT_MODEL_ID),
    workers,
    config,
  });
  const csv = summary.outDir ? join(summary.outDir, 'features.csv') : undefined;
  const rows = csv && existsSync(csv) ? readFeaturesCsv(readFileSync(csv, 'utf8')).length : 0;
  const reportFile = summary.outDir ? join(summary.outDir, 'report.json') : undefined;
  const aggregateStagesMs =
    reportFile && existsSync(reportFile) ? (JSON.parse(readFileSync(reportFile, 'utf8')).timingsMs as Record<string, number>) : undefined;
  const images = summary.processed + summary.failed;
  const rate = (seconds: number) => (seconds > 0 ? fixed(images / seconds) : 0);
  return {
    images,
    workers: summary.workers,
    status: summary.status,
    processed: summary.processed,
    failed: summary.failed,
    skippedFiles: summary.skipped,
    seconds: fixed(summary.seconds),
    phaseSeconds: {
      upload: fixed(summary.phaseSeconds.upload),
      synth: fixed(summary.phaseSeconds.synth),
      featurize: fixed(summary.phaseSeconds.featurize),
      aggregate: fixed(summary.phaseSeconds.aggregate),
    },
    aggregateStagesMs,
    imagesPerSecond: {
      overall: rate(summary.seconds),
      upload: rate(summary.phaseSeconds.upload),
      featurize: rate(summary.phaseSeconds.featurize),
      aggregate: rate(summary.phaseSeconds.aggregate),
    },
    featurizer: summary.featurizer,
    backends: summary.backends,
    knnAccuracy: summary.knn ? fixed(summary.knn.accuracy, 3) : undefined,
    rows,
    peakRssMb: peakRssMb(),
    load: load(),
  };
}

export const DEFAULT_END_TO_END_OPTIONS: EndToEndOptions = { images: [2000], workers: [1, 2], rounds: 2, timeoutMinutes: 20 };

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => argValue(argv, name);
  const caseDir = value('case');
  const configText = value('config');
  const config = configText === undefined ? undefined : (JSON.parse(configText) as PipelineConfigInput);
  if (caseDir) {
    const workers = value('workers');
    console.log(JSON.stringify(await runCase(caseDir, workers === undefined ? undefined : Number(workers), value('run-dir')!, config)));
    return;
  }
  const dataset = value('dataset');
  if (dataset !== undefined || argv.includes('--whole-dataset')) {
    const images = value('images');
    const result = await wholeDatasetBench({ dir: dataset, images: images === undefined ? undefined : Number(images), config, keepDir: value('keep') });
    console.log(JSON.stringify(result, null, 1));
    return;
  }
  const options: EndToEndOptions = {
    ...DEFAULT_END_TO_END_OPTIONS,
    images: value('images')?.split(',').map(Number) ?? DEFAULT_END_TO_END_OPTIONS.images,
    rounds: Number(value('rounds') ?? DEFAULT_END_TO_END_OPTIONS.rounds),
  };
  console.log(JSON.stringify(await endToEndBench(options), null, 1));
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
