/**
 * The whole local pipeline (`runLocally`, what `npm start -- run <dir>` does) on N images: upload
 * to s3rver, the synthesized state machine, featurize in worker threads, aggregate.
 *
 *   npx tsx bench/end-to-end.ts                         # 2,000 images, 1 and 2 workers
 *   npx tsx bench/end-to-end.ts --images 10000 --rounds 1
 *
 * N images are the shared Fruits-360 sample replicated under new keys
 * (`copy<i>/<split>/<label>/<file>`, same label and split folders): the same bytes as real
 * photos, so decode and inference cost what they cost on the sample. Each run gets a fresh S3 data
 * directory, so the upload is measured too, and runs in its own child process (peak RSS is the
 * run's: the worker threads live in that process). Worker counts alternate (1 2 2 1 ...).
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DEFAULT_MODEL_ID } from '../lambdas/core/featurizer';
import { loadSample, MODELS, SAMPLE } from './accuracy';
import { argValue, ChildResult, fixed, load, peakRssMb, runChild } from './bench-support';

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
  seconds: number;
  phaseSeconds: Record<'upload' | 'synth' | 'featurize' | 'aggregate', number>;
  imagesPerSecond: { overall: number; upload: number; featurize: number; aggregate: number };
  featurizer?: string;
  backends: string[];
  knnAccuracy?: number;
  peakRssMb: number;
  load: string;
}

export type EndToEndRow = EndToEndCaseResult | { images: number; workers: number; error: string };

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
          const result: ChildResult = await runChild(__filename, ['--case', inputDir, '--workers', String(workers), '--run-dir', runDir], { timeoutMinutes: options.timeoutMinutes });
          rmSync(runDir, { recursive: true, force: true });
          const row = result.error ? { images, workers, error: result.error } : (result as unknown as EndToEndCaseResult);
          console.log(`  end to end ${images} images, ${workers} worker(s): ${'error' in row ? row.error : `${row.seconds} s, ${row.imagesPerSecond.overall} img/s`}`);
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
  const sample = loadSample();
  for (let i = 0; i < count; i++) {
    const image = sample[i % sample.length];
    const target = join(dir, `copy${Math.floor(i / sample.length)}`, image.path);
    mkdirSync(dirname(target), { recursive: true });
    try {
      linkSync(join(SAMPLE, image.path), target);
    } catch {
      copyFileSync(join(SAMPLE, image.path), target);
    }
  }
}

async function runCase(inputDir: string, workers: number, runDir: string): Promise<EndToEndCaseResult> {
  const { runLocally } = await import('../lib/local/local-run');
  const { summary } = await runLocally({
    inputDir,
    dataDir: join(runDir, 's3'),
    outDir: join(runDir, 'out'),
    modelDir: join(MODELS, DEFAULT_MODEL_ID),
    workers,
  });
  const images = summary.processed + summary.failed;
  const rate = (seconds: number) => (seconds > 0 ? fixed(images / seconds) : 0);
  return {
    images,
    workers: summary.workers,
    status: summary.status,
    processed: summary.processed,
    failed: summary.failed,
    seconds: fixed(summary.seconds),
    phaseSeconds: {
      upload: fixed(summary.phaseSeconds.upload),
      synth: fixed(summary.phaseSeconds.synth),
      featurize: fixed(summary.phaseSeconds.featurize),
      aggregate: fixed(summary.phaseSeconds.aggregate),
    },
    imagesPerSecond: {
      overall: rate(summary.seconds),
      upload: rate(summary.phaseSeconds.upload),
      featurize: rate(summary.phaseSeconds.featurize),
      aggregate: rate(summary.phaseSeconds.aggregate),
    },
    featurizer: summary.featurizer,
    backends: summary.backends,
    knnAccuracy: summary.knn ? fixed(summary.knn.accuracy, 3) : undefined,
    peakRssMb: peakRssMb(),
    load: load(),
  };
}

export const DEFAULT_END_TO_END_OPTIONS: EndToEndOptions = { images: [2000], workers: [1, 2], rounds: 2, timeoutMinutes: 20 };

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => argValue(argv, name);
  const caseDir = value('case');
  if (caseDir) {
    console.log(JSON.stringify(await runCase(caseDir, Number(value('workers')), value('run-dir')!)));
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
