/**
 * The aggregate's stages at scale: does any invocation's time or memory grow with the number of
 * images? Synthetic shards in the real shard format (250 rows of `--dim` float32 values, a class
 * structure, three Training rows to one Test row, a field copy of the Training rows `fieldCopyOf`
 * chooses at the default one in 4) with their batch records, a ResultWriter manifest
 * and its COMPACT file of the children's summaries as Step Functions writes them, in a local S3
 * server on loopback; then each stage's invocations as the state machine makes them, each in a
 * process of its own, so its peak RSS is its own (as a Lambda invocation's memory is):
 *
 *   npm run bench:aggregate-scale                          # 100,000 and 1,000,000 rows
 *   npx tsx bench/aggregate-scale.ts --rows 100000 --sample 3
 *   npx tsx bench/aggregate-scale.ts --rows 1000000 --sample 3 --no-publish   # classify only the sampled groups
 *   npx tsx bench/aggregate-scale.ts --rows 100000,300000 --through moments     # the plan and moments alone
 *   npx tsx bench/aggregate-scale.ts --rows 100000 --v8-default-external-memory # without the handlers' V8 flag
 *
 * The plan, fit and publish run once per run (merges); moments and project run for every group
 * (the fit and publish need them all), the moments merge tree's nodes when the run has more groups
 * than `--fan-in` (default: the setting's), classify for `--sample` groups spread over the run
 * (each group's classification is the same work against the same references). Every invocation
 * of a stage is timed; the table gives each stage's slowest invocation (wall seconds, peak RSS)
 * and the CPU it took summed over its invocations.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { seededRandom } from '../lambdas/common/seeded-random';
import { DEFAULT_GROUP_SHARDS, DEFAULT_MOMENTS_MERGE_FAN_IN, FEATURIZE_SETTINGS } from '../lambdas/contracts/handler-env';
import { fieldCopyOf } from '../lambdas/featurize/field-copies';
import { momentsMergeLevels } from '../lambdas/aggregate/aggregate-work';
import { startLocalS3Server } from '../local/emulator/s3/s3-server';
import { SyntheticMapRun } from './synthetic-map-run';
import { argValue, Cell, fixed, load, machine, printTable } from './bench-support';

const BUCKET = 'aggregate-scale';
const SHARD_ROWS = 250;
const CLASSES = 103;
/** One Training row in this many has a field copy in its shard, as the featurize step's default. */
const COPY_EVERY = FEATURIZE_SETTINGS.fieldCopyEvery.default;

interface StageFigures {
  wallS: number;
  cpuS: number;
  peakRssMb: number;
}

/** One stage invocation in a child process: its wall time, CPU and peak RSS. */
function invoke(event: unknown, env: NodeJS.ProcessEnv): Promise<StageFigures & { result: unknown }> {
  const script = `
    // As the handler does at its cold start, unless the bench was asked for V8's default.
    if (process.env.V8_DEFAULT_EXTERNAL_MEMORY !== '1') require('./lambdas/common').countExternalMemoryInHeapLimit();
    const { aggregateStage } = require('./lambdas/aggregate/aggregate-run');
    const { createS3Client } = require('./lambdas/aws/s3-client');
    const started = performance.now();
    aggregateStage(JSON.parse(process.env.STAGE_EVENT), { s3: createS3Client(), settings: { components: 100, groupShards: Number(process.env.GROUP_SHARDS) } })
      .then((result) => {
        const usage = process.resourceUsage();
        process.stdout.write(JSON.stringify({ result, wallS: (performance.now() - started) / 1000, cpuS: (usage.userCPUTime + usage.systemCPUTime) / 1e6, peakRssMb: usage.maxRSS / 1024 }));
      }, (error) => { console.error(error); process.exit(1); });`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: join(__dirname, '..'),
      env: { ...env, STAGE_EVENT: JSON.stringify(event) },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`stage failed (${code}): ${err.slice(-2000)}`))));
  });
}

async function writeRun(s3: S3Client, runId: string, rows: number, dim: number) {
  const shards = Math.ceil(rows / SHARD_ROWS);
  const centres = Array.from({ length: CLASSES }, (_, c) => {
    const random = seededRandom(10_000 + c);
    return Float32Array.from({ length: dim }, () => random() * 2);
  });
  const mapRun = new SyntheticMapRun(s3, BUCKET, runId);
  for (let s = 0; s < shards; s++) {
    const random = seededRandom(s);
    const count = Math.min(SHARD_ROWS, rows - s * SHARD_ROWS);
    const keys: string[] = [];
    const labels: string[] = [];
    const rowsOf: number[][] = [];
    const copied: number[] = [];
    for (let r = 0; r < count; r++) {
      const c = Math.floor(random() * CLASSES);
      const split = random() < 0.75 ? 'Training' : 'Test';
      labels.push(`Class ${c}`);
      keys.push(`input/${runId}/${split}/Class ${c}/${s}_${r}.jpg`);
      rowsOf.push(Array.from(centres[c], (centre) => Math.max(0, centre + (random() - 0.5))));
      if (split === 'Training' && fieldCopyOf(keys[r], COPY_EVERY)) copied.push(r);
    }
    // A copy row: its image's row moved, as a field condition moves it (its own stream: the images' rows stay as they were).
    const moves = seededRandom(1_000_000 + s);
    const copyRows = copied.map((r) => rowsOf[r].map((value) => Math.max(0, value + (moves() - 0.5) * 0.5)));
    const vectors = Float32Array.from([...rowsOf, ...copyRows].flat());
    const fieldCopies = { keys: copied.map((r) => keys[r]), labels: copied.map((r) => labels[r]), conditions: copied.map(() => 'lighting') };
    await mapRun.addShard(mapRun.shardKey(s), { header: { featurizer: 'synthetic@1', dim, keys, labels, failed: [], skipped: [], fieldCopies }, vectors });
  }
  return mapRun.finish();
}

/** `work` over `items`, `lanes` at a time (the map's children on this machine's cores). */
async function lanes<T, R>(items: readonly T[], count: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: count }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await work(items[index]);
      }
    }),
  );
  return results;
}

/** What a run of the bench does: `through` stops after that stage (`--through plan` times the plan alone). */
interface ScaleOptions {
  readonly dim: number;
  readonly sample: number;
  readonly publish: boolean;
  readonly fanIn: number;
  readonly through?: string;
}

async function scale(rows: number, { dim, sample, publish, fanIn, through }: ScaleOptions, env: NodeJS.ProcessEnv, s3: S3Client) {
  const runId = `scale-${rows}`;
  const generated = performance.now();
  const run = await writeRun(s3, runId, rows, dim);
  console.log(`${rows} rows: ${Math.ceil(rows / SHARD_ROWS)} shards written in ${fixed((performance.now() - generated) / 1000)} s`);
  const { groups, ...settings } = { groups: 0, ...run };
  void groups;
  const required = { bucket: run.bucket, inputPrefix: run.inputPrefix, runId, outputPrefix: run.outputPrefix, workPrefix: run.workPrefix };
  const figures: Record<string, StageFigures[]> = {};
  const record = (stage: string, figure: StageFigures) => (figures[stage] ??= []).push(figure);
  const plan = await invoke({ stage: 'plan', run: settings }, env);
  record('plan', plan);
  const groupCount = (plan.result as { groups: number }).groups;
  if (through === 'plan') return { rows, groups: groupCount, figures };
  const indices = Array.from({ length: groupCount }, (_, g) => g);
  for (const figure of await lanes(indices, 2, (group) => invoke({ stage: 'moments', run: required, group }, env))) record('moments', figure);
  if (through === 'moments') return { rows, groups: groupCount, figures };
  const levels = momentsMergeLevels(groupCount, fanIn);
  for (let level = 1; level < levels.length; level++) {
    const inputs = levels[level - 1];
    const firsts = Array.from({ length: levels[level] }, (_, node) => node * fanIn);
    for (const figure of await lanes(firsts, 2, (first) => invoke({ stage: 'merge-moments', run: required, level, first, inputs, fanIn }, env))) {
      record('merge-moments', figure);
    }
  }
  const fit = await invoke({ stage: 'fit', run: required, groups: groupCount, fanIn }, env);
  record('fit', fit);
  for (const figure of await lanes(indices, 2, (group) => invoke({ stage: 'project', run: required, group }, env))) record('project', figure);
  record('fit-classifier', await invoke({ stage: 'fit-classifier', run: required, groups: groupCount }, env));
  // Beside FitClassifier in the state machine; timed alone here.
  record('publish-features', await invoke({ stage: 'publish-features', run: required, groups: groupCount }, env));
  const sampled = [...new Set(Array.from({ length: Math.min(sample, groupCount) }, (_, i) => Math.round((i * (groupCount - 1)) / Math.max(1, sample - 1))))];
  for (const figure of await lanes(sampled, 2, (group) => invoke({ stage: 'classify', run: required, group }, env))) record('classify', figure);
  // Publish needs every group's predictions: the classify of the groups not timed runs untimed
  // (or publish is left out, `--no-publish`, when the run is too large to classify whole here).
  if (!publish) return { rows, groups: groupCount, figures };
  await lanes(
    indices.filter((g) => !sampled.includes(g)),
    2,
    (group) => invoke({ stage: 'classify', run: required, group }, env),
  );
  record('publish', await invoke({ stage: 'publish', run: required, groups: groupCount }, env));
  return { rows, groups: groupCount, figures };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const rowsList = (argValue(argv, 'rows') ?? '100000,1000000').split(',').map(Number);
  const dim = Number(argValue(argv, 'dim') ?? 1376);
  const sample = Number(argValue(argv, 'sample') ?? 3);
  const publish = !argv.includes('--no-publish');
  const through = argValue(argv, 'through');
  const fanIn = Number(argValue(argv, 'fan-in') ?? DEFAULT_MOMENTS_MERGE_FAN_IN);
  const dir = mkdtempSync(join(tmpdir(), 'aggregate-scale-'));
  const server = await startLocalS3Server({ buckets: [BUCKET], directory: dir });
  const env = {
    ...process.env,
    ...server.env,
    GROUP_SHARDS: String(DEFAULT_GROUP_SHARDS),
    ...(argv.includes('--v8-default-external-memory') ? { V8_DEFAULT_EXTERNAL_MEMORY: '1' } : {}),
  };
  console.log(
    `machine ${JSON.stringify(machine())}, ${load()}, dim ${dim}, ${DEFAULT_GROUP_SHARDS} shards of ${SHARD_ROWS} rows per group, merge fan-in ${fanIn}`,
  );
  const results: Awaited<ReturnType<typeof scale>>[] = [];
  try {
    for (const rows of rowsList) results.push(await scale(rows, { dim, sample, publish, fanIn, through }, env, server.client));
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const stages = ['plan', 'moments', 'merge-moments', 'fit', 'project', 'fit-classifier', 'publish-features', 'classify', 'publish'].filter((stage) =>
    results.some((r) => r.figures[stage]),
  );
  printTable({
    title: `Aggregate stages by run size (npx tsx bench/aggregate-scale.ts --rows ${rowsList.join(',')} --dim ${dim} --sample ${sample} --fan-in ${fanIn})`,
    headers: ['stage', ...results.flatMap((r) => [`${r.rows} rows: slowest s`, 'peak RSS MB', 'CPU s (all timed)'])],
    rows: stages.map((stage) => [
      stage,
      ...results.flatMap((r): Cell[] => {
        const list = r.figures[stage] ?? [];
        // A stage the run did not need (the merge tree of a run of few groups): no figures.
        if (list.length === 0) return ['-', '-', '-'];
        const slowest = list.reduce((a, b) => (b.wallS > a.wallS ? b : a), list[0]);
        return [
          fixed(slowest.wallS, 2),
          fixed(Math.max(...list.map((f) => f.peakRssMb)), 0),
          fixed(
            list.reduce((sum, f) => sum + f.cpuS, 0),
            1,
          ),
        ];
      }),
    ]),
  });
  for (const r of results) {
    const merges = r.figures['merge-moments']?.length ?? 0;
    console.log(`${r.rows} rows: ${r.groups} groups, ${merges} merges of moments; classify timed on ${Math.min(sample, r.groups)} of them`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
