/**
 * Sizing: which featurize settings run 1,000,000 images within the goal (5 minutes of wall time,
 * $1) at the account's default Lambda concurrency, and what a run of 71,014 (the whole dataset),
 * 1,000,000 and 10,000,000 images costs and takes on x86_64 and arm64, with each stage's share.
 * Everything comes from bench/cost.ts's model (its RECORDED figures, PRICES and ASSUMED). Prints
 * markdown for docs/SIZING.md:
 *
 *   npx tsx bench/sizing.ts            # print
 *   npx tsx bench/sizing.ts --write    # rewrite the "## The figures" section of docs/SIZING.md
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig, PipelineConfig, PipelineConfigInput } from '../lib/config';
import { markdownTable, Table, withDocSection } from './bench-support';
import {
  ARCHITECTURES,
  ASSUMED,
  Classifier,
  costedClassifier,
  costModel,
  CostRow,
  count,
  FeaturizeMeasured,
  MB_PER_VCPU,
  modelNotes,
  PRICES,
  RECORDED,
  RUN_HEADERS,
  runRows,
  runTableRows,
  StageRow,
  usd,
} from './cost';

/** The goal: one run of this many images in at most this wall time and cost. */
export const GOAL = { images: 1_000_000, minutes: 5, usd: 1 } as const;
/**
 * Wall time the chosen setting leaves spare: the time side of the model rests on assumptions
 * about Step Functions and S3 on AWS (listing, cold starts, overhead per wave) more than the cost
 * side does.
 */
export const SPARE_MINUTES = 1;
export const RUN_SIZES = [71_014, 1_000_000, 10_000_000] as const;
/** The featurize settings searched: memory (MB) and concurrent children (`maxConcurrency`), within the account's 1,000. */
export const FEATURIZE_MEMORIES = [1024, 1769, 3008] as const;
export const FEATURIZE_CONCURRENCIES = [50, 100, 200, 300, 500, 1000] as const;

export const meetsGoal = (row: CostRow): boolean =>
  row.images === GOAL.images && row.wallMinutes <= GOAL.minutes && row.totalUsd <= GOAL.usd && row.limits.length === 0;

export interface GoalCandidate {
  readonly featurizeMemoryMb: number;
  readonly maxConcurrency: number;
  /** The default classifier, per architecture. */
  readonly rows: Record<(typeof ARCHITECTURES)[number], CostRow>;
}

/** The cost model's classifiers as the tables name them. */
const CLASSIFIER_NAMES: Record<Classifier, string> = { knn: 'k-NN', lda: 'LDA', 'lda+logistic': 'LDA + logistic regression' };

/** Every searched setting at GOAL.images with the default classifier and field copies, both architectures. */
export function goalSearch(measured: FeaturizeMeasured = RECORDED.featurize, base: PipelineConfigInput = {}): GoalCandidate[] {
  return FEATURIZE_MEMORIES.flatMap((featurizeMemoryMb) =>
    FEATURIZE_CONCURRENCIES.map((maxConcurrency) => {
      const config = defaultConfig({ ...base, featurizeMemoryMb, maxConcurrency });
      const options = { classifier: costedClassifier(config.classifier) };
      const rows = {
        x86_64: costModel(measured, GOAL.images, 'x86_64', config, options),
        arm64: costModel(measured, GOAL.images, 'arm64', config, options),
      };
      return { featurizeMemoryMb, maxConcurrency, rows };
    }),
  );
}

/**
 * The setting to recommend: the cheapest on x86_64 (the architecture measured) that meets the goal
 * with at least one vCPU (below it the handler's two threads share less than a core, which nothing
 * here measured), with SPARE_MINUTES to spare when one does. Undefined when none meets the goal.
 */
export function chooseSetting(candidates: readonly GoalCandidate[]): GoalCandidate | undefined {
  const fitting = candidates.filter((c) => meetsGoal(c.rows.x86_64) && c.featurizeMemoryMb >= MB_PER_VCPU);
  const spare = fitting.filter((c) => c.rows.x86_64.wallMinutes <= GOAL.minutes - SPARE_MINUTES);
  const cheapest = (list: readonly GoalCandidate[]) =>
    [...list].sort((a, b) => a.rows.x86_64.totalUsd - b.rows.x86_64.totalUsd || a.rows.x86_64.wallMinutes - b.rows.x86_64.wallMinutes)[0];
  return cheapest(spare) ?? cheapest(fitting);
}

const minutes = (row: CostRow) => row.wallMinutes.toFixed(1);
const verdict = (row: CostRow) => (meetsGoal(row) ? 'yes' : row.limits.length ? 'no (limits)' : 'no');

function searchTable(candidates: readonly GoalCandidate[], chosen: GoalCandidate | undefined): Table {
  return {
    title: `Featurize settings for ${count(GOAL.images)} images (${CLASSIFIER_NAMES[costedClassifier(defaultConfig().classifier)]}, field copies at the default; goal: ${GOAL.minutes} min, $${GOAL.usd})`,
    headers: [
      'featurizeMemoryMb',
      'maxConcurrency',
      'list + featurize (min)',
      'wall time (min)',
      'x86_64 total',
      'arm64 total',
      'meets the goal: x86_64',
      'arm64',
    ],
    rows: candidates.map((c) => [
      `${count(c.featurizeMemoryMb)}${c === chosen ? ' (chosen)' : ''}`,
      count(c.maxConcurrency),
      c.rows.x86_64.featurizeMinutes.toFixed(1),
      minutes(c.rows.x86_64),
      usd(c.rows.x86_64.totalUsd),
      usd(c.rows.arm64.totalUsd),
      verdict(c.rows.x86_64),
      verdict(c.rows.arm64),
    ]),
    notes: [
      'Every other setting at its default (lib/config.ts): batch 250, aggregate 3,008 MB, groups of 40 shards, aggregateConcurrency 100. The wall time is the same on both architectures (arm64 assumed as fast).',
      'Featurize memory below 1,769 MB (one vCPU) stretches each batch and cold start in proportion at the same GB-s per image; above it the handler uses at most 1.54 cores, so 3,008 MB bills 35% less time at 70% more memory. ' +
        'Each concurrent child costs one cold start (about 6 s billed), so the concurrency trades cold starts against waves of children.',
    ],
  };
}

function runTable(title: string, config: PipelineConfig, sizes: readonly number[], measured: FeaturizeMeasured): Table {
  const rows = runRows(measured, sizes, config);
  const limits = [...new Set(rows.flatMap((r) => r.limits.map((limit) => `${count(r.images)} (${r.classifier}): ${limit}`)))];
  return {
    title,
    headers: RUN_HEADERS,
    rows: runTableRows(rows),
    notes: [
      `Settings: maxConcurrency ${config.maxConcurrency}, featurizeMemoryMb ${count(config.featurizeMemoryMb)}, aggregateConcurrency ${config.aggregateConcurrency}, aggregateMemoryMb ${count(config.aggregateMemoryMb)}, batch ${config.batchSize}, groups of ${config.aggregateGroupShards} shards.`,
      ...(limits.length ? [`Would not run as configured: ${limits.join('; ')}.`] : []),
    ],
  };
}

const stageCell = (row: StageRow | undefined) =>
  row ? `${row.wallSeconds.toFixed(0)} s / ${usd(row.lambdaUsd + row.transitions * PRICES.stepFunctionsTransition)}` : '';

/** Each stage's wall time and its Lambda + Step Functions cost, at 1M and 10M, k-NN and the default LDA + logistic regression, x86_64. */
function stageTable(millionConfig: PipelineConfig, tenMillionConfig: PipelineConfig, measured: FeaturizeMeasured): Table {
  const classifiers: Classifier[] = ['knn', 'lda+logistic'];
  const runs = [
    ...classifiers.map((classifier) => costModel(measured, 1_000_000, 'x86_64', millionConfig, { classifier })),
    ...classifiers.map((classifier) => costModel(measured, 10_000_000, 'x86_64', tenMillionConfig, { classifier })),
  ];
  const name = (stage: string) => stage.replace(/ \(map, (knn|lda|lda\+logistic)\)/, ' (map)');
  // The fitted head's run has every stage (FitClassifier too), in the state machine's order.
  const stages = runs[1].stages.map((s) => name(s.stage));
  const s3 = (run: CostRow) => usd(run.s3RequestsUsd);
  const largest = runs[2];
  return {
    title: `Each stage at ${count(1_000_000)} and ${count(10_000_000)} images, x86_64 (wall s / Lambda + transitions $)`,
    headers: ['stage', '1M k-NN', '1M LDA + LR', '10M k-NN', '10M LDA + LR', '10M: invocations, slowest s / peak MB'],
    rows: [
      ...stages.map((stage) => {
        const of = (run: CostRow) => run.stages.find((s) => name(s.stage) === stage);
        const at10M = of(largest) ?? of(runs[3]);
        return [
          stage,
          ...runs.map((run) => stageCell(of(run))),
          at10M && at10M.invocations > 0
            ? `${count(at10M.invocations)}, ${at10M.slowestSeconds.toFixed(1)} s / ${at10M.peakRssMb === undefined ? '' : count(at10M.peakRssMb)} MB`
            : '',
        ];
      }),
      ['S3 requests (all stages)', ...runs.map(s3), ''],
      ['total', ...runs.map((run) => `${run.wallMinutes.toFixed(1)} min / ${usd(run.totalUsd)}`), ''],
    ],
    notes: [
      `1M at the chosen settings, 10M with both concurrencies at ${count(ASSUMED.accountConcurrency)}. A stage's $ is its Lambda GB-s, requests and its children's transitions; "the parent workflow" is its ${ASSUMED.parentTransitions} transitions. S3 requests are summed apart: GETs of every image and shard, the k-NN's reads of every references part by every group, PUTs of shards and parts.`,
    ],
  };
}

export function sizingTables(measured: FeaturizeMeasured = RECORDED.featurize): { tables: Table[]; chosen?: GoalCandidate; notes: string[] } {
  const candidates = goalSearch(measured);
  const chosen = chooseSetting(candidates);
  const chosenConfig = chosen ? defaultConfig({ featurizeMemoryMb: chosen.featurizeMemoryMb, maxConcurrency: chosen.maxConcurrency }) : defaultConfig();
  const tenMillionWide = defaultConfig({
    featurizeMemoryMb: chosenConfig.featurizeMemoryMb,
    maxConcurrency: ASSUMED.accountConcurrency,
    aggregateConcurrency: ASSUMED.accountConcurrency,
  });
  const tables = [
    searchTable(candidates, chosen),
    runTable(
      chosen
        ? `One run at the chosen settings (featurizeMemoryMb ${count(chosen.featurizeMemoryMb)}, maxConcurrency ${count(chosen.maxConcurrency)})`
        : 'One run (no setting meets the goal)',
      chosenConfig,
      RUN_SIZES,
      measured,
    ),
    runTable(
      `${count(10_000_000)} images with maxConcurrency and aggregateConcurrency at ${count(ASSUMED.accountConcurrency)}`,
      tenMillionWide,
      [10_000_000],
      measured,
    ),
    runTable('One run at the deployed defaults', defaultConfig(), RUN_SIZES, measured),
    stageTable(chosenConfig, tenMillionWide, measured),
  ];
  return { tables, chosen, notes: modelNotes(measured) };
}

export const FIGURES_HEADING = '## The figures';

export function renderFigures(measured: FeaturizeMeasured = RECORDED.featurize): string {
  const { tables, notes } = sizingTables(measured);
  return [
    FIGURES_HEADING,
    '',
    'Generated by `npx tsx bench/sizing.ts --write` from bench/cost.ts; do not edit by hand.',
    '',
    ...tables.flatMap((table) => [`### ${table.title}`, '', markdownTable(table), '', ...(table.notes ?? []).map((note) => `- ${note}`), '']),
    '### What the model takes as given',
    '',
    ...notes.map((note) => `- ${note}`),
    '',
  ].join('\n');
}

if (require.main === module) {
  const text = renderFigures();
  console.log(text);
  if (process.argv.includes('--write')) {
    const doc = join(__dirname, '..', 'docs', 'SIZING.md');
    writeFileSync(doc, withDocSection(readFileSync(doc, 'utf8'), FIGURES_HEADING, text));
  }
}
