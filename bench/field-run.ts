/**
 * The product's own field accuracy, end to end: `runLocally` (the synthesized state machine, the
 * real featurize and aggregate handlers, a real S3 server on loopback) on the 12-class sample at
 * default settings, then, for each field condition of lambdas/featurize/field-conditions.ts, a
 * run with `modelFrom` that projects and classifies the sample's Test photos altered by that
 * condition (every photo, seed = its index) with the first run's saved model: Training clean, its
 * field copies as the product makes them, Test photos as the robots might take them.
 *
 *   npx tsx bench/field-run.ts                     # the sample (~15 min on 2 loaded cores)
 *   npx tsx bench/field-run.ts --dataset <folder>  # another <split>/<label>/<image> folder
 *   npx tsx bench/field-run.ts --classifier knn    # the same with the k-NN
 *   npx tsx bench/field-run.ts --classifier logistic --components 300  # logistic regression over 300 components
 *   npx tsx bench/field-run.ts --training ../shared/datasets/fruits-360-103  # that folder's Training
 *     images as the references (the sample's real Test split judged against its 103 classes)
 *   npx tsx bench/field-run.ts --field-copy-every 1  # a field copy of every Training image (config fieldCopyEvery)
 *
 * Prints one line per run, the clean run's most confused pairs (its report.json), and a table
 * (accuracy = the run's own predictions.csv against the Test folders' labels, as summary.knn
 * scores it).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { alterImage, FIELD_CONDITIONS, FieldCondition } from '../evaluate/field-conditions';
import { runLocally } from '../local/local-run';
import type { ClassifierKind } from '../lambdas/contracts/handler-env';
import { RESULT_FILES } from '../lambdas/contracts/bucket-layout';
import type { ConfusedPair } from '../lambdas/analysis/classification';
import { argValue, Cell, fixed, load, machine, markdownTable, printTable, Table } from './bench-support';

const SAMPLE = join(__dirname, '..', '..', 'shared', 'datasets', 'fruits-360-sample');

function testPhotos(dataset: string): { label: string; file: string }[] {
  const root = join(dataset, 'Test');
  return readdirSync(root)
    .sort()
    .flatMap((label) =>
      readdirSync(join(root, label))
        .sort()
        .map((file) => ({ label, file: join(root, label, file) })),
    );
}

/** The Test photos of `dataset`, each altered by `condition`, as `<folder>/Test/<label>/<image>.jpg`. */
async function alteredTestFolder(dataset: string, condition: FieldCondition, folder: string): Promise<number> {
  const photos = testPhotos(dataset);
  for (const [index, photo] of photos.entries()) {
    mkdirSync(join(folder, 'Test', photo.label), { recursive: true });
    const name = basename(photo.file).replace(/\.[^.]+$/, '.jpg');
    writeFileSync(join(folder, 'Test', photo.label, name), await alterImage(readFileSync(photo.file), condition, index));
  }
  return photos.length;
}

/** A folder whose Training split is `training`'s and whose Test split is `dataset`'s (both linked, not copied). */
function withTrainingOf(dataset: string, training: string, folder: string): string {
  mkdirSync(folder);
  symlinkSync(resolve(training, 'Training'), join(folder, 'Training'), 'dir');
  symlinkSync(resolve(dataset, 'Test'), join(folder, 'Test'), 'dir');
  return folder;
}

/** The clean run's largest off-diagonal cells of its confusion (report.json), `actual -> predicted: count`. */
function mostConfused(outDir: string | undefined): string {
  const report = outDir ? join(outDir, RESULT_FILES.report) : undefined;
  if (!report || !existsSync(report)) return 'no report.json';
  const classification = (JSON.parse(readFileSync(report, 'utf8')) as { classification?: { mostConfused?: ConfusedPair[] } }).classification;
  const pairs = classification?.mostConfused ?? [];
  return pairs.length === 0
    ? 'none'
    : pairs
        .slice(0, 10)
        .map((p) => `${p.actual} -> ${p.predicted}: ${p.count}`)
        .join('; ');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const dataset = argValue(argv, 'dataset') ?? SAMPLE;
  const training = argValue(argv, 'training');
  const classifier = argValue(argv, 'classifier') as ClassifierKind | undefined;
  const components = argValue(argv, 'components');
  const copyEvery = argValue(argv, 'field-copy-every');
  const config = {
    ...(classifier ? { classifier } : {}),
    ...(components ? { pcaComponents: Number(components) } : {}),
    ...(copyEvery ? { fieldCopyEvery: Number(copyEvery) } : {}),
  };
  const work = mkdtempSync(join(tmpdir(), 'fruits-field-run-'));
  const input = training ? withTrainingOf(dataset, training, join(work, 'input')) : dataset;
  const dataDir = join(work, 's3');
  const outDir = join(work, 'out');
  console.log(
    `field run: ${machine().cores} cores, ${new Date().toISOString()}, ${load()}, ${dataset}${training ? `, Training of ${training}` : ''}, config ${JSON.stringify(config)}`,
  );
  const rows: Cell[][] = [];
  try {
    const model = (await runLocally({ inputDir: input, dataDir, outDir, workers: 2, config })).summary;
    if (model.status !== 'SUCCEEDED' || !model.knn) throw new Error(`the model run ${model.runId} did not score its Test split (${model.status})`);
    const line = (condition: string, knn: NonNullable<typeof model.knn>, seconds: number) => {
      console.log(`  ${condition}: ${knn.classifier} ${knn.accuracy.toFixed(4)} (${knn.correct}/${knn.scored}), ${seconds.toFixed(0)} s, ${load()}`);
      rows.push([condition, knn.classifier, fixed(knn.accuracy, 3), `${knn.correct}/${knn.scored}`]);
    };
    line('clean', model.knn, model.seconds);
    console.log(`  most confused (clean): ${mostConfused(model.outDir)}`);
    const field: number[] = [];
    for (const condition of FIELD_CONDITIONS) {
      const folder = join(work, `test-${condition}`);
      await alteredTestFolder(dataset, condition, folder);
      const run = (await runLocally({ inputDir: folder, dataDir, outDir, workers: 2, modelFrom: model.runId, config })).summary;
      if (run.status !== 'SUCCEEDED' || !run.knn) throw new Error(`the ${condition} run ${run.runId} did not score its photos (${run.status})`);
      line(condition, run.knn, run.seconds);
      field.push(run.knn.accuracy);
      rmSync(folder, { recursive: true, force: true });
    }
    rows.push(['field (mean of the 7)', '', fixed(field.reduce((a, b) => a + b, 0) / field.length, 3), '']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const table: Table = {
    title: `The product end to end on ${basename(dataset)}${training ? ` (Training of ${basename(training)})` : ''}: Training clean, Test photos altered (one run per condition, --model-from the clean run)`,
    headers: ['Test photos', 'classifier', 'accuracy', 'correct'],
    rows,
  };
  printTable(table);
  console.log(`\n${markdownTable(table)}\n\nfinished ${new Date().toISOString()}, ${load()}`);
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
