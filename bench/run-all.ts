/**
 * The benchmark suite: featurization, aggregation, the local run end to end, and the AWS cost
 * model built from those figures. Prints tables; a full run rewrites docs/BENCHMARKS.md.
 *
 *   npm run bench                    # full suite (~12 min on 2 cores), writes docs/BENCHMARKS.md
 *   npm run bench -- --quick         # smoke run of every part (~2 min), prints only
 *   npm run bench -- --e2e-10k       # full suite plus the 10,000-image local run (~+7 min)
 *   npm run bench -- --whole-dataset [dir]   # plus one default-settings run on the whole dataset: the
 *                                    # folder given, else fruits-360-103 replicated to 71,022 images (~15 min)
 *   npm run bench -- --quick --write # write the doc from a quick run anyway (marked as such)
 *   npm run bench -- --render out/bench/results-<date>.json   # re-render the doc from saved figures
 *
 * Benchmarks measure; nothing here asserts a time limit. Each comparison is measured side by side
 * in one run (alternating order) so its ratio holds on a busy machine; the load is recorded.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_IMAGE_SIZE } from '../lambdas/model/featurizer';
import { defaultConfig } from '../lib/config';
import { AggregateBenchOptions, aggregateBench, AggregateBenchRow, DEFAULT_AGGREGATE_OPTIONS } from './aggregate';
import { Cell, ChildResult, docSection, fixed, load, machine, markdownTable, median, printTable, Table, withDocSection } from './bench-support';
import { costModel, costTable, PRICES } from './cost';
import {
  DEFAULT_END_TO_END_OPTIONS,
  endToEndBench,
  EndToEndCaseResult,
  EndToEndOptions,
  EndToEndRow,
  wholeDatasetBench,
  WholeDatasetResult,
} from './end-to-end';
import { INPUT_MOUNT_HEADING } from './input-mount';
import { DEFAULT_FEATURIZE_OPTIONS, featurizeBench, FeaturizeBenchOptions, FeaturizeBenchRow, FeaturizeCaseResult } from './featurize';

const DOC = join(__dirname, '..', 'docs', 'BENCHMARKS.md');
const RESULTS_DIR = join(__dirname, '..', 'out', 'bench');

interface SuiteOptions {
  featurize: FeaturizeBenchOptions;
  aggregate: AggregateBenchOptions;
  endToEnd: EndToEndOptions;
}

function suiteOptions(quick: boolean, tenThousand: boolean): SuiteOptions {
  if (quick) {
    return {
      featurize: { ...DEFAULT_FEATURIZE_OPTIONS, sizes: [96, DEFAULT_IMAGE_SIZE], images: { ...DEFAULT_FEATURIZE_OPTIONS.images, cpu: 20 }, rounds: 1 },
      aggregate: { ...DEFAULT_AGGREGATE_OPTIONS, rows: [2_000], mlPcaCapMinutes: 1 },
      endToEnd: { ...DEFAULT_END_TO_END_OPTIONS, images: [300], rounds: 1 },
    };
  }
  return {
    featurize: DEFAULT_FEATURIZE_OPTIONS,
    aggregate: DEFAULT_AGGREGATE_OPTIONS,
    endToEnd: { ...DEFAULT_END_TO_END_OPTIONS, images: tenThousand ? [2_000, 10_000] : [2_000] },
  };
}

const isCase = <T extends object>(row: T | { error: string }): row is T => !('error' in row);
const num = (value: unknown) => (typeof value === 'number' ? value : undefined);

/** Sections of docs/BENCHMARKS.md a full run keeps: written by hand or by another bench. */
const KEPT_HEADINGS = [INPUT_MOUNT_HEADING, '## What was tried for speed'];

const percentOf = (value: number, whole: number) => `${((value / whole) * 100).toFixed(0)}%`;

function featurizeTables(rows: FeaturizeBenchRow[], options: FeaturizeBenchOptions): Table[] {
  const speed: Table = {
    title: 'Featurization: model ceiling vs the featurize handler path (images/s, median of rounds)',
    headers: [
      'backend',
      'px',
      'images x rounds',
      'ceiling img/s',
      'handler img/s',
      'handler / ceiling',
      'handler overhead',
      'store competing: handler img/s (/ ceiling)',
      'ceiling CPU ms/img',
      'handler CPU ms/img',
      'GET only ms/img (CPU)',
      'model waits for images ms/img',
      'infer ms/img',
      'model load s',
      'first batch s',
      'peak RSS MB',
    ],
    rows: rows.map((row): Cell[] =>
      isCase<FeaturizeCaseResult>(row)
        ? [
            row.backend,
            row.size,
            `${row.images} x ${row.rounds}`,
            row.ceilingImagesPerSecond,
            row.handlerImagesPerSecond,
            percentOf(row.handlerImagesPerSecond, row.ceilingImagesPerSecond),
            `+${row.overheadPercent}%`,
            row.storeCompeting
              ? `${row.storeCompeting.handlerImagesPerSecond} (${percentOf(row.storeCompeting.handlerImagesPerSecond, row.ceilingImagesPerSecond)})`
              : '',
            row.ceilingCpuMsPerImage,
            row.handlerCpuMsPerImage,
            `${row.readOnlyMsPerImage} (${row.readOnlyCpuMsPerImage})`,
            row.handlerReadWaitMsPerImage,
            row.handlerInferMsPerImage,
            row.modelLoadSeconds,
            row.firstBatchSeconds,
            row.peakRssMb,
          ]
        : [row.backend, row.size, '', row.error],
    ),
    notes: [
      'ceiling: featurizer.featurize on images already decoded and resized in memory (scaling + inference + pooling), in batches of the deployed batch size.',
      'handler: featurizeBatch on the JPEGs in the local S3 server on loopback (GET, decode: libjpeg-turbo wasm for small plain JPEGs, sharp otherwise; enlargement to the model size, inference on its own thread, shard PUT), one batch at a time as one Lambda container runs them.',
      "The server runs in a process of its own at the lowest CPU priority (bench/background-s3-server.ts): on AWS, S3's work is not on the function's cores, here it can only use the cycles the handler leaves. store competing: the same handler, in the same rounds, against a second server at normal priority, which takes turns with the model's thread on the 2 cores: what the local run's store costs a handler here, not what S3 costs on AWS.",
      'overhead = (handler time - ceiling time) / ceiling time. "model waits" and infer are the shard meta timings: images are read and decoded while the model runs (on its own thread), so the wait is only the time inference had nothing to run on.',
      `Images: the shared Fruits-360 sample (100x100 JPEG); the cpu backend on ${options.images.cpu} images only (it is 30-50x slower than wasm), wasm and onnxruntime-node on ${options.images.wasm}.` +
        (options.backends.includes('tensorflow') ? '' : ' tfjs-node: not installed here (it needs native binaries from the web), so it is not measured.'),
      'Peak RSS: the case process (model, featurizer, decoded images of the ceiling, SDK); the servers run in other processes and are not counted.',
      "CPU ms/img: process CPU time (user + system, all threads: JS, the model's thread, wasm, sharp) per image. The server side of each GET is not in it.",
      'GET only: the same GETs alone, as the handler reads them (lambdas/aws/object-reader.ts, READ_CONCURRENCY at a time, body read into memory), wall (CPU) ms per image: their share of the handler path.',
      "model load: building the featurizer (backend start + weights). first batch: the first featurizeBatch of a fresh process (kernel compilation, pools), a cold start's extra.",
    ],
  };
  const scored = rows.filter(isCase<FeaturizeCaseResult>).filter((row) => row.accuracy);
  const ks = scored[0]?.accuracy?.map((a) => a.k) ?? [];
  const accuracy: Table = {
    title: `Speed/quality trade-off per input size (${scored[0]?.backend ?? 'wasm'}, product featurizer, 5-NN on the shared sample)`,
    headers: ['px', 'featurizer', 'dim', 'handler img/s', ...ks.map((k) => `Test acc, PCA k=${k}`), ...ks.map((k) => `axis-holdout acc, k=${k}`)],
    rows: scored.map((row) => [
      row.size,
      row.featurizer,
      row.dim,
      row.handlerImagesPerSecond,
      ...row.accuracy!.map((a) => a.test.toFixed(3)),
      ...row.accuracy!.map((a) => a.axisHoldout.toFixed(3)),
    ]),
    notes: [
      "Scored as bench/accuracy.ts scores, from the handler's own shards: StandardScaler + PCA fitted on all 720 images, 5-NN (Euclidean) trained on Training (480), scored on Test (240).",
      'axis holdout: Training `<n>_100.jpg` vs `r_<n>_100.jpg` (another recording of each fruit): never touches Test, much harder. One Test image = 0.004.',
      `The product default is ${DEFAULT_IMAGE_SIZE} px.`,
    ],
  };
  return scored.length > 0 ? [speed, accuracy] : [speed];
}

function aggregateTable(rows: AggregateBenchRow[], options: AggregateBenchOptions): Table {
  const text = (result: ChildResult | { skipped: string }, field: string) =>
    'skipped' in result ? String(result.skipped) : result.error ? `failed: ${result.error}` : num(result[field]);
  return {
    title: 'Aggregation: streaming PCA (what aggregateRun does, minus S3) vs ml-pca `new PCA(matrix)`',
    headers: [
      'dim',
      'rows',
      'stream pass 1 s',
      'stream fit s',
      'stream pass 2 s',
      'stream total s',
      'stream peak RSS MB',
      'ml-pca fit s',
      'ml-pca peak RSS MB',
      'speed-up (model)',
      'explained var (stream / ml-pca)',
    ],
    rows: rows.map((row) => {
      const s = row.stream;
      const m = row.mlPca;
      const model = num(s.pass1_s) !== undefined ? Number(s.pass1_s) + Number(s.fit_s) : undefined;
      const mlFit = 'fit_s' in m ? Number(m.fit_s) : undefined;
      return [
        row.dim,
        row.rows.toLocaleString('en-US'),
        s.error ? `failed: ${s.error}` : num(s.pass1_s),
        num(s.fit_s),
        num(s.pass2_s),
        num(s.total_s),
        num(s.peakRssMB),
        text(m, 'fit_s'),
        'skipped' in m ? '' : num(m.peakRssMB),
        model !== undefined && mlFit !== undefined ? `${(mlFit / Math.max(model, 0.05)).toFixed(1)}x` : '',
        `${num(s.explainedVariance) ?? ''} / ${'explainedVariance' in m ? m.explainedVariance : ''}`,
      ];
    }),
    notes: [
      `Synthetic shards of 500 rows (class centres + ${6} latent factors + noise, non-negative, a few dead channels), encoded and decoded in the shard format; generating them is timed apart and left out.`,
      `dims: ${options.dims.join(' and ')} (the product featurizer's length, and a large model's). k = ${options.components} components.`,
      "speed-up (model) = ml-pca fit time / (stream pass 1 + fit): both end with a fitted model. Pass 2 (project + CSV rows) is extra work ml-pca's figure does not include.",
      `ml-pca: SVD of the whole standardised matrix (scale: true, ignoreZeroVariance), data built before the clock starts; not started when a smaller N, extrapolated linearly, exceeds ${options.mlPcaCapMinutes} min (SVD grows at least linearly in N and holds N x dim float64 several times).`,
      'Each case in its own process (peak RSS is its own); stream and ml-pca alternate which runs first.',
    ],
  };
}

function endToEndTables(rows: EndToEndRow[]): Table[] {
  const runs: Table = {
    title: 'End to end, local run (runLocally: s3rver, synthesized state machine, worker threads)',
    headers: [
      'images',
      'workers',
      'total s',
      'upload s',
      'synth s',
      'featurize s',
      'aggregate s',
      'overall img/s',
      'upload img/s',
      'featurize img/s',
      'aggregate img/s',
      'peak RSS MB',
      '5-NN acc',
    ],
    rows: rows.map((row): Cell[] =>
      isCase<EndToEndCaseResult>(row)
        ? [
            row.images.toLocaleString('en-US'),
            row.workers,
            row.seconds,
            row.phaseSeconds.upload,
            row.phaseSeconds.synth,
            row.phaseSeconds.featurize,
            row.phaseSeconds.aggregate,
            row.imagesPerSecond.overall,
            row.imagesPerSecond.upload,
            row.imagesPerSecond.featurize,
            row.imagesPerSecond.aggregate,
            row.peakRssMb,
            row.knnAccuracy,
          ]
        : [row.images, row.workers, row.error],
    ),
    notes: [
      `Images: the shared sample replicated under new keys (copy<i>/<split>/<label>/<file>); a fresh S3 data directory per run. upload: placing the input in the store, the time to index the folder it serves in place (uploading a copy instead: --copy-input; the two side by side: "Upload vs mounted folder" below). Product defaults (batch ${defaultConfig().batchSize}, onnxruntime-node, 128 px).`,
      'synth: synthesizing the CDK stack in-process for the definition (fixed cost). 5-NN accuracy is inflated: replicated copies of Test images are among the references.',
      'Peak RSS: the whole run process (s3rver, state machine, the worker threads with one model each).',
    ],
  };
  const scaling: Table = {
    title: 'Worker-thread scaling (featurize phase, median of runs)',
    headers: ['images', 'workers', 'featurize img/s', 'vs 1 worker'],
    rows: [...new Set(rows.map((r) => r.images))].flatMap((images) => {
      const byWorkers = new Map<number, number>();
      for (const row of rows.filter(isCase<EndToEndCaseResult>).filter((r) => r.images === images)) {
        byWorkers.set(
          row.workers,
          median([
            ...rows
              .filter(isCase<EndToEndCaseResult>)
              .filter((r) => r.images === images && r.workers === row.workers)
              .map((r) => r.imagesPerSecond.featurize),
          ]),
        );
      }
      const one = byWorkers.get(1);
      return [...byWorkers]
        .sort((a, b) => a[0] - b[0])
        .map(([workers, rate]) => [images.toLocaleString('en-US'), workers, fixed(rate), one ? `${(rate / one).toFixed(2)}x` : '']);
    }),
  };
  return [runs, scaling];
}

/** The product's default path at the default size: onnxruntime-node where it ran, else TF.js wasm. */
function defaultCase(cases: readonly FeaturizeCaseResult[]): FeaturizeCaseResult | undefined {
  const atSize = cases.filter((r) => r.size === DEFAULT_IMAGE_SIZE);
  return atSize.find((r) => r.backend.startsWith('onnxruntime')) ?? atSize.find((r) => r.backend.endsWith('wasm')) ?? cases[0];
}

/**
 * The cost model's inputs from this run: the default featurize path's CPU per image, and the
 * aggregate's time per row, from the whole-dataset run when there is one (the product's features,
 * classification included), else from the streaming-PCA case of the nearest dimension.
 */
function measuredForCost(featurize: FeaturizeBenchRow[], aggregate: AggregateBenchRow[], whole?: WholeDatasetResult) {
  const cases = featurize.filter(isCase<FeaturizeCaseResult>);
  const base = defaultCase(cases);
  if (!base) return undefined;
  const common = {
    featurizeCpuMsPerImage: base.handlerCpuMsPerImage,
    measuredWith: `${base.backend}, ${base.featurizer}`,
    // A cold start's measured share: the model load and the first batch's extra over a warm one.
    modelLoadSeconds: fixed(base.modelLoadSeconds + Math.max(0, base.firstBatchSeconds - (defaultConfig().batchSize * base.handlerCpuMsPerImage) / 1000), 2),
    dim: base.dim,
  };
  if (whole && !('skipped' in whole) && !('error' in whole) && whole.rows > 0) {
    // The fit is a few seconds of it; the rest grows with the rows.
    return {
      ...common,
      aggregateSecondsPerRow: whole.phaseSeconds.aggregate / whole.rows,
      aggregateFitSeconds: 0,
      aggregateMeasuredRows: whole.rows,
      aggregateMeasuredWith: "the whole-dataset run's aggregate step (both passes, fit, k-NN classification, CSV and Parquet)",
    };
  }
  const streams = aggregate.filter((r) => !r.stream.error).sort((a, b) => Math.abs(a.dim - base.dim) - Math.abs(b.dim - base.dim) || b.rows - a.rows);
  const largest = streams[0];
  if (!largest) return undefined;
  return {
    ...common,
    aggregateSecondsPerRow: (Number(largest.stream.pass1_s) + Number(largest.stream.pass2_s)) / largest.rows,
    aggregateFitSeconds: Number(largest.stream.fit_s),
    aggregateMeasuredRows: largest.rows,
  };
}

/** Everything a run measured: saved as JSON (out/bench/) so the doc can be re-rendered without re-measuring. */
interface SuiteResults {
  command: string;
  quick: boolean;
  tenThousand: boolean;
  started: string;
  finished: string;
  host: ReturnType<typeof machine>;
  loadAtStart: string;
  loadAfter: { featurize: string; aggregate: string; endToEnd: string };
  options: SuiteOptions;
  featurize: FeaturizeBenchRow[] | { skipped: string };
  aggregate: AggregateBenchRow[];
  endToEnd: EndToEndRow[] | { skipped: string };
  wholeDataset?: WholeDatasetResult;
}

async function measure(argv: string[]): Promise<SuiteResults> {
  const quick = argv.includes('--quick');
  const tenThousand = argv.includes('--e2e-10k');
  const options = suiteOptions(quick, tenThousand);
  const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const started = new Date().toISOString();
  const host = machine();
  const loadAtStart = load();
  console.log(`${command}: ${host.cores} cores, ${host.cpuModel}, node ${host.node}, ${started}, ${loadAtStart}`);
  console.log('\n1. featurization');
  const featurize = await featurizeBench(options.featurize);
  const afterFeaturize = load();
  console.log('\n2. aggregation');
  const aggregate = await aggregateBench(options.aggregate);
  const afterAggregate = load();
  console.log('\n3. end to end');
  const endToEnd = await endToEndBench(options.endToEnd);
  const wholeAt = argv.indexOf('--whole-dataset');
  let wholeDataset: WholeDatasetResult | undefined;
  if (wholeAt >= 0) {
    const dir = argv[wholeAt + 1]?.startsWith('--') === false ? argv[wholeAt + 1] : undefined;
    console.log('\n3b. the whole dataset, default settings');
    wholeDataset = await wholeDatasetBench({ dir });
    console.log(JSON.stringify(wholeDataset));
  }
  return {
    command,
    quick,
    tenThousand,
    started,
    finished: new Date().toISOString(),
    host,
    loadAtStart,
    loadAfter: { featurize: afterFeaturize, aggregate: afterAggregate, endToEnd: load() },
    options,
    featurize,
    aggregate,
    endToEnd,
    wholeDataset,
  };
}

function sectionsOf(r: SuiteResults): { heading: string; tables: Table[]; text?: string[] }[] {
  const sections: { heading: string; tables: Table[]; text?: string[] }[] = [];
  if ('skipped' in r.featurize) sections.push({ heading: '1. Featurization', tables: [], text: [`skipped: ${r.featurize.skipped}`] });
  else
    sections.push({
      heading: '1. Featurization',
      tables: featurizeTables(r.featurize, r.options.featurize),
      text: [`Load after this part: ${r.loadAfter.featurize}.`],
    });
  sections.push({
    heading: '2. Aggregation',
    tables: [aggregateTable(r.aggregate, r.options.aggregate)],
    text: [`Load after this part: ${r.loadAfter.aggregate}.`],
  });
  if ('skipped' in r.endToEnd) sections.push({ heading: '3. End to end (local)', tables: [], text: [`skipped: ${r.endToEnd.skipped}`] });
  else {
    const text = [`Load after this part: ${r.loadAfter.endToEnd}.`];
    if (!r.tenThousand) text.push('The 10,000-image case is behind `--e2e-10k` (about 1.5-2 min per run on this machine, 4 runs).');
    sections.push({ heading: '3. End to end (local)', tables: endToEndTables(r.endToEnd), text });
  }
  if (r.wholeDataset)
    sections.push({
      heading: '3b. The whole dataset, default settings (local)',
      tables: wholeDatasetTables(r.wholeDataset),
      text: wholeDatasetText(r.wholeDataset),
    });
  const measured = 'skipped' in r.featurize ? undefined : measuredForCost(r.featurize, r.aggregate, r.wholeDataset);
  sections.push(
    measured
      ? { heading: '4. Cost model (AWS)', tables: [costTable(measured)] }
      : { heading: '4. Cost model (AWS)', tables: [], text: ['skipped: needs the featurize and aggregate figures'] },
  );
  return sections;
}

function wholeDatasetTables(result: WholeDatasetResult): Table[] {
  if ('skipped' in result || 'error' in result) return [];
  const t = result.phaseSeconds;
  return [
    {
      title: `${result.dataset}: one run of \`npm start -- run <dir>\` at default settings, from an empty store`,
      headers: [
        'files',
        'CSV rows',
        'failed',
        'skipped',
        'accounted / file',
        'status',
        'total s',
        'upload s',
        'synth s',
        'featurize s',
        'aggregate s',
        'featurize img/s',
        'workers',
        'featurizer',
        'backend',
        '5-NN',
        'peak RSS MB',
      ],
      rows: [
        [
          result.files,
          result.rows,
          result.failed,
          result.skippedFiles,
          result.accountedPerFile,
          result.status,
          result.seconds,
          t.upload,
          t.synth,
          t.featurize,
          t.aggregate,
          result.imagesPerSecond.featurize,
          result.workers,
          result.featurizer ?? '',
          result.backends.join(', '),
          result.knnAccuracy ?? '',
          result.peakRssMb,
        ],
      ],
    },
  ];
}

function wholeDatasetText(result: WholeDatasetResult): string[] {
  if ('skipped' in result) return [`skipped: ${result.skipped}`];
  if ('error' in result) return [`failed: ${result.error}`];
  return [
    `Load: ${result.load}. Accounted per file 1 means every input file became exactly one CSV row, one failed or one skipped file (the run's own accounting checks the same and fails the run otherwise). The 5-NN figure is meaningless for a replicated set (the same photos are in Training and Test).`,
  ];
}

function renderDoc(r: SuiteResults): string {
  const minutes = ((new Date(r.finished).getTime() - new Date(r.started).getTime()) / 60000).toFixed(0);
  return [
    '# Benchmarks',
    '',
    `Generated by \`${r.command}\` (bench/run-all.ts); rewritten by every full run${r.quick ? '. **This was a quick smoke run: small counts, not figures to quote.**' : '.'}`,
    '',
    `- Date: ${r.started} to ${r.finished} (${minutes} min)`,
    `- Machine: ${r.host.cores} cores, ${r.host.cpuModel}, ${r.host.memoryGb} GB, ${r.host.platform}, Node ${r.host.node}`,
    `- TF.js backends measured: ${r.options.featurize.backends.join(', ')}${r.options.featurize.backends.includes('tensorflow') ? '' : '; tfjs-node (`tensorflow`): not installed here, not measured'}. The product picks the first that starts: tfjs-node (in the Lambda image), else wasm, else cpu.`,
    `- Load (\`uptime\`): ${r.loadAtStart} at start, ${r.loadAfter.endToEnd} at the end. Each comparison is measured side by side (alternating order) within this run, so its ratio holds even when the absolute figures move with the load.`,
    '- Benchmarks measure; no test asserts a time limit.',
    '- How the default features were chosen (accuracy clean and under field conditions, cost per image, every candidate): [FEATURE-CHOICE.md](FEATURE-CHOICE.md), from `npm run bench:accuracy`.',
    '',
    '## What the figures say',
    '',
    ...analysis(r).map((line) => `- ${line}`),
    '',
    ...sectionsOf(r).flatMap((section) => [
      `## ${section.heading}`,
      '',
      ...section.tables.flatMap((table) => [`### ${table.title}`, '', markdownTable(table), '', ...(table.notes ?? []).map((note) => `- ${note}`), '']),
      ...(section.text ?? []).flatMap((line) => [line, '']),
    ]),
  ].join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const renderFrom = argv.indexOf('--render');
  let results: SuiteResults;
  if (renderFrom >= 0) {
    results = JSON.parse(readFileSync(argv[renderFrom + 1], 'utf8')) as SuiteResults;
  } else {
    results = await measure(argv);
    const saved = join(RESULTS_DIR, `results-${results.started.replace(/[:.]/g, '-')}.json`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(saved, JSON.stringify(results, null, 1));
    console.log(`\nraw results: ${saved} (re-render the doc with --render <file>)`);
  }
  for (const section of sectionsOf(results)) {
    console.log(`\n== ${section.heading}`);
    section.tables.forEach(printTable);
    section.text?.forEach((line) => console.log(line));
  }
  console.log('\nWhat the figures say:');
  analysis(results).forEach((line) => console.log(`- ${line}`));
  if (results.quick && !argv.includes('--write')) {
    console.log('\n(quick run: docs/BENCHMARKS.md not written; add --write to write it anyway)');
    return;
  }
  // Sections written elsewhere stay: bench/input-mount.ts's, and the record of what was tried.
  const previous = existsSync(DOC) ? readFileSync(DOC, 'utf8') : '';
  const doc = KEPT_HEADINGS.reduce((text, heading) => {
    const kept = docSection(previous, heading);
    return kept ? withDocSection(text, heading, kept) : text;
  }, renderDoc(results));
  writeFileSync(DOC, doc);
  console.log(`\nwrote ${DOC}`);
}

/**
 * The reading of the figures, with this run's numbers in it: what is good, what is poor, why,
 * and what would fix it.
 */
function analysis(r: SuiteResults): string[] {
  const featurize = 'skipped' in r.featurize ? [] : r.featurize.filter(isCase<FeaturizeCaseResult>);
  const base = defaultCase(featurize);
  return [...featurizeAnalysis(featurize, base), ...streamingPcaAnalysis(r), ...localRunAnalysis(r, base), ...costAnalysis(r)];
}

/** The featurize handler against the model's ceiling, the TF.js fallbacks, and speed against quality per input size. */
function featurizeAnalysis(featurize: FeaturizeCaseResult[], base: FeaturizeCaseResult | undefined): string[] {
  const lines: string[] = [];
  // TF.js backends are named `tfjs-<backend>` by the TFLite featurizer, `<backend>` by the layers one.
  const at = (backend: string, size: number) => featurize.find((row) => (row.backend === backend || row.backend === `tfjs-${backend}`) && row.size === size);
  if (base) {
    const ratio = (base.handlerImagesPerSecond / base.ceilingImagesPerSecond) * 100;
    const restCpu = base.handlerCpuMsPerImage - base.ceilingCpuMsPerImage - base.readOnlyCpuMsPerImage;
    const competing = base.storeCompeting;
    lines.push(
      `Featurize handler at the default ${DEFAULT_IMAGE_SIZE} px on ${base.backend}, in batches of ${defaultConfig().batchSize}: ${base.handlerImagesPerSecond} img/s per process, ${ratio.toFixed(0)}% of the model's ceiling (${base.ceilingImagesPerSecond} img/s), overhead +${base.overheadPercent}%` +
        `${ratio >= 90 ? ' (goal: 90%).' : ': **short of the 90% goal.**'} CPU per image: ${base.handlerCpuMsPerImage} ms on the handler path against ${base.ceilingCpuMsPerImage} ms for the model alone; ` +
        `of the ${fixed(base.handlerCpuMsPerImage - base.ceilingCpuMsPerImage, 2)} ms extra, ${base.readOnlyCpuMsPerImage} ms is the GET (signed by the SDK's signer, sent without its middleware: lambdas/aws/object-reader.ts) and about ${fixed(Math.max(0, restCpu), 2)} ms the rest ` +
        "(JPEG header and wasm decode about 0.15 ms, the enlargement to 128 px about 0.3 ms, pixels to NCHW 0.12 ms, handing images to the model's thread and back, the shard, and the model's own CPU, which grows beside the reading thread: caches and memory are shared), nearly all of it on the other core while the model runs. " +
        'What takes it above the 42% (168 vs 400 img/s, 6.1 ms of CPU per image) of a handler that reads, decodes and infers on one thread: the model runs on its own thread (onnxruntime-node held the JavaScript thread for each inference), two inferences are in flight, ' +
        'small plain JPEGs are decoded by libjpeg-turbo in wasm and enlarged in JavaScript as libvips would (sharp cost 1.3-1.9 ms per call, most of it fixed), the X-Ray SDK is not loaded where nothing is traced, the local store answers small GETs with one synchronous read, the GETs are signed by the SDK signer but sent without its middleware (0.77 -> 0.23 ms of CPU per 5 KB photo), ' +
        'and a batch is 250 images instead of 100: each batch has a fixed cost in which the model waits (its first 8 images, about 13 ms; the shard PUT at the end, 7-15 ms here and more on AWS), 9% of a 100-image batch. ' +
        (competing
          ? `The store runs at the lowest CPU priority, as S3 is off a function's cores on AWS; against a store at normal priority, taking turns with the model's thread on the 2 cores, the same handler ran at ${competing.handlerImagesPerSecond} img/s (${percentOf(competing.handlerImagesPerSecond, base.ceilingImagesPerSecond)}): that difference is the local store's, not the handler's. `
          : '') +
        `Measure on AWS before choosing memory: the handler keeps ${fixed((base.handlerCpuMsPerImage * base.handlerImagesPerSecond) / 1000, 2)} cores busy here; at 1,769 MB (one vCPU) its speed is bound by its CPU per image, at 3,008 MB (about 1.7 vCPU) by the model's thread.`,
    );
  }
  const wasmBase = at('wasm', DEFAULT_IMAGE_SIZE);
  const cpuBase = at('cpu', DEFAULT_IMAGE_SIZE);
  if (base && wasmBase && wasmBase !== base) {
    lines.push(
      `TF.js fallbacks (where onnxruntime-node cannot load), model ceilings at ${DEFAULT_IMAGE_SIZE} px: wasm ${wasmBase.ceilingImagesPerSecond} img/s (${(base.ceilingImagesPerSecond / wasmBase.ceilingImagesPerSecond).toFixed(1)}x slower than onnxruntime-node)` +
        (cpuBase
          ? `, cpu ${cpuBase.ceilingImagesPerSecond} img/s (${(base.ceilingImagesPerSecond / cpuBase.ceilingImagesPerSecond).toFixed(1)}x slower): the last resort`
          : '') +
        '. tfjs-node could not be measured here.',
    );
  }
  const scored = featurize.filter((row) => row.accuracy);
  if (scored.length > 1) {
    const k = scored[0].accuracy![scored[0].accuracy!.length - 1].k;
    const acc = (row: FeaturizeCaseResult) => row.accuracy!.find((a) => a.k === k)!;
    lines.push(
      `Speed/quality per input size (${scored[0].backend}, PCA k=${k}): ${scored.map((row) => `${row.size} px ${row.handlerImagesPerSecond} img/s, Test ${acc(row).test.toFixed(3)}, axis holdout ${acc(row).axisHoldout.toFixed(3)}`).join('; ')}. ` +
        `The photos are 100x100, so larger inputs only upsample them: Test accuracy (near-duplicate frames) stays within ${fixed(Math.min(...scored.map((row) => acc(row).test)), 3)}-${fixed(Math.max(...scored.map((row) => acc(row).test)), 3)} (one Test image is 0.004, so that is noise), ` +
        `while the harder axis-holdout score (another recording of each fruit) goes from ${acc(scored[0]).axisHoldout.toFixed(3)} at ${scored[0].size} px to ${acc(scored[scored.length - 1]).axisHoldout.toFixed(3)} at ${scored[scored.length - 1].size} px, at ${(scored[0].handlerImagesPerSecond / scored[scored.length - 1].handlerImagesPerSecond).toFixed(1)}x the time per image. ` +
        `The default ${DEFAULT_IMAGE_SIZE} px sits in the middle of that trade-off.`,
    );
  }
  return lines;
}

/** The streaming PCA's time and memory, beside ml-pca's on the same data. */
function streamingPcaAnalysis(r: SuiteResults): string[] {
  const lines: string[] = [];
  const big = r.aggregate.filter((row) => !row.stream.error).sort((a, b) => b.rows - a.rows || b.dim - a.dim)[0];
  const compared = r.aggregate.filter((row) => 'fit_s' in row.mlPca && !row.stream.error);
  if (big) {
    const skipped = r.aggregate.filter((row) => 'skipped' in row.mlPca);
    lines.push(
      `Streaming PCA: ${big.rows.toLocaleString('en-US')} x ${big.dim} in ${big.stream.total_s} s (pass 1 ${big.stream.pass1_s} s, fit ${big.stream.fit_s} s, pass 2 ${big.stream.pass2_s} s) at ${big.stream.peakRssMB} MB peak RSS: well inside one Lambda (15 min, 3,008 MB). ` +
        (compared.length
          ? `ml-pca on the same data: ${compared.map((row) => `${row.rows.toLocaleString('en-US')} x ${row.dim} ${(row.mlPca as ChildResult).fit_s} s (${(Number((row.mlPca as ChildResult).fit_s) / Math.max(0.05, Number(row.stream.pass1_s) + Number(row.stream.fit_s))).toFixed(1)}x the streaming fit, ${(row.mlPca as ChildResult).peakRssMB} MB vs ${row.stream.peakRssMB} MB)`).join(', ')}; same explained variance. `
          : '') +
        (skipped.length
          ? `ml-pca not run for ${skipped.map((row) => `${row.rows.toLocaleString('en-US')} x ${row.dim}`).join(', ')} (its time extrapolated past the cap). `
          : '') +
        "Pass 1 (the dim x dim scatter, O(N dim^2)) dominates at 1,280; the product's features have 1,376 values, so the whole-dataset run (3b) is the aggregate figure that counts: there the k-NN classification of the Test rows and the Parquet writer add to the two passes.",
    );
  }
  return lines;
}

/** How the local run scales with its worker threads. */
function localRunAnalysis(r: SuiteResults, base: FeaturizeCaseResult | undefined): string[] {
  const lines: string[] = [];
  const runs = 'skipped' in r.endToEnd ? [] : r.endToEnd.filter(isCase<EndToEndCaseResult>);
  const scalings = [...new Set(runs.map((row) => row.images))].flatMap((images) => {
    const of = (workers: number) => median(runs.filter((row) => row.images === images && row.workers === workers).map((row) => row.imagesPerSecond.featurize));
    const sample = runs.find((row) => row.images === images)!;
    const one = of(1);
    const two = of(2);
    return one && two
      ? [
          `${images.toLocaleString('en-US')} images: featurize ${fixed(one)} img/s with 1 worker, ${fixed(two)} with 2 (${(two / one).toFixed(2)}x), input placed in ${sample.phaseSeconds.upload} s (served in place), synth ${sample.phaseSeconds.synth} s, aggregate ${sample.phaseSeconds.aggregate} s`,
        ]
      : [];
  });
  if (scalings.length > 0) {
    const busy = base
      ? ` (the handler path alone keeps ${fixed((base.handlerCpuMsPerImage * base.handlerImagesPerSecond) / 1000, 2)} cores busy at full speed, measured above)`
      : '';
    lines.push(
      `Local run (medians): ${scalings.join('; ')}. ` +
        `**Scaling from 1 to 2 worker threads is well short of 2x** because this machine has 2 cores and one worker already uses more than one${busy}, while the main thread serves every S3 request (s3rver) and runs the state machine. ` +
        'A second worker mostly competes for the same cores; it should scale on machines with more cores (not measured here). On 2 cores only cutting the per-image costs above would help. ' +
        'The upload and featurize rates also moved with other load on the machine during this part (see the load figures and the spread between repeated runs).',
    );
  }
  return lines;
}

/** What a million images would cost and take, from the measured figures. */
function costAnalysis(r: SuiteResults): string[] {
  const lines: string[] = [];
  const measured = 'skipped' in r.featurize ? undefined : measuredForCost(r.featurize, r.aggregate, r.wholeDataset);
  if (measured) {
    const config = defaultConfig();
    const million = costModel(measured, 1_000_000, 'x86_64', config);
    const featurizeMap = million.stages.find((stage) => stage.stage.startsWith('FeaturizeImages'));
    lines.push(
      `Cost (section 4, a model, not a bill): about $${million.totalUsd.toFixed(2)} and ${million.wallMinutes.toFixed(1)} min for 1,000,000 images on x86_64 at the defaults: ` +
        `featurize Lambda $${million.featurizeLambdaUsd.toFixed(2)}, aggregate Lambda $${million.aggregateLambdaUsd.toFixed(2)}, Step Functions $${million.stepFunctionsUsd.toFixed(2)}, S3 requests $${million.s3RequestsUsd.toFixed(2)}. ` +
        `Most of it is paid per image or per batch whatever the memory and concurrency: a GET per image ($${(1e6 * PRICES.s3Get).toFixed(2)} per million) and two transitions per child of ${config.batchSize} images. ` +
        `The wall time is mostly the featurize map's ${Math.ceil(million.batches / config.maxConcurrency)} waves of ${config.maxConcurrency} children (${((featurizeMap?.wallSeconds ?? 0) / 60).toFixed(1)} min) and the aggregate's stages (${million.aggregateMinutes.toFixed(1)} min); ` +
        'docs/SIZING.md has the settings that meet 1,000,000 images in 5 minutes for $1 and 10,000,000 on paper.',
    );
  }
  return lines;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
