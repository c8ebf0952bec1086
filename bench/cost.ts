/**
 * Cost and wall-time model of one run on AWS, as the state machine runs it
 * (lib/constructs/feature-pipeline.ts): the featurize Distributed Map lists the input and runs one
 * child per batch, then the aggregate's stages run one after another: PlanAggregate (one
 * invocation), ComputeMoments (a Distributed Map, one child per group of shards), FitModel (one),
 * ProjectGroups (a map), FitClassifier (one, not for k-NN), ClassifyGroups (a map), PublishRun (one).
 *
 * Its inputs are figures the other benchmarks measured (RECORDED, each with the section and date
 * of docs/BENCHMARKS.md it comes from), the settings (lib/config.ts), list prices (PRICES) and what
 * is assumed (ASSUMED). Every one of them is printed with the tables, so a table can be redone when
 * one is wrong. A model, not a bill.
 *
 *   npx tsx bench/cost.ts            # docs/BENCHMARKS.md section 4 (the deployed defaults), printed
 *   npx tsx bench/cost.ts --write    # the same, written into docs/BENCHMARKS.md
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig, PipelineConfig } from '../lib/config';
import { markdownTable, Table, withDocSection } from './bench-support';
import { ClassifierKind, FEATURIZE_SETTINGS } from '../lambdas/contracts/handler-env';
import { momentsMergeLevels } from '../lambdas/aggregate/aggregate-work';

export type Architecture = 'x86_64' | 'arm64';
export const ARCHITECTURES: readonly Architecture[] = ['x86_64', 'arm64'];
/**
 * What classifies the non-Training rows: k-NN against every reference part, or the LDA fitted by
 * FitClassifier, alone or with logistic regression (`lda+logistic`).
 */
export type Classifier = 'knn' | 'lda' | 'lda+logistic';

/** The cost model's classifier: it has figures for the LDA (alone and with logistic regression) and k-NN, none for logistic regression alone. */
export function costedClassifier(classifier: ClassifierKind): Classifier {
  if (classifier === 'logistic') throw new Error('the cost model has no figures for classifier logistic: size with lda+logistic, lda or knn');
  return classifier;
}

/**
 * USD, us-east-1 list prices from the AWS pricing pages, recorded here on 2026-11-25 and not
 * re-checked since (no internet on the bench machine): https://aws.amazon.com/lambda/pricing/
 * (first tier of GB-seconds; arm64 20% below x86_64), https://aws.amazon.com/step-functions/pricing/
 * (Standard workflows), https://aws.amazon.com/s3/pricing/ (S3 Standard requests).
 */
export const PRICES = {
  lambdaGbSecond: { x86_64: 0.0000166667, arm64: 0.0000133334 },
  lambdaRequest: 0.2 / 1e6,
  /**
   * A Standard workflow's state transition. Every map of the definition runs its children as
   * STANDARD executions (mapExecutionType), which are billed by transitions too: one for each child
   * started (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-transitions.html) plus
   * the child's own.
   */
  stepFunctionsTransition: 0.025 / 1000,
  /** PUT, COPY, POST and LIST requests. */
  s3Put: 0.005 / 1000,
  s3Get: 0.0004 / 1000,
} as const;

/** Lambda allocates CPU in proportion to memory: 1,769 MB is one vCPU (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). */
export const MB_PER_VCPU = 1769;

/** The featurize handler's figures, from bench/featurize.ts. */
export interface FeaturizeMeasured {
  /** Process CPU ms per image on the handler path (all threads), default featurizer and input size. */
  readonly featurizeCpuMsPerImage: number;
  /** Backend and featurizer the figure was measured with. */
  readonly measuredWith: string;
  /** Seconds a fresh process spends before it runs at speed: model load and the first batch's extra. */
  readonly modelLoadSeconds: number;
  /** Cores the handler path keeps busy at full speed (CPU time / wall time). @default RECORDED's */
  readonly handlerCoresBusy?: number;
  /** The onnxruntime-node probe each cold start runs (a child process building the model). @default RECORDED's */
  readonly probeSeconds?: number;
  /** Peak RSS of one featurizing process, MB. @default RECORDED's */
  readonly peakRssMb?: number;
  /**
   * CPU of one field copy (the alteration, its decode and its inference) in images' worth of
   * `featurizeCpuMsPerImage`: the copies of one Training image in `fieldCopyEvery` cost
   * trainingShare / fieldCopyEvery x this on top of every image. @default RECORDED's
   */
  readonly fieldCopyCpuRatio?: number;
}

/**
 * How a stage's slowest invocation grows with the run: `flat`, the same work whatever the run's
 * size (the largest measured figure is taken); `linear` in the images, through the measured points
 * (through zero from a single point).
 */
export type Growth = 'flat' | 'linear';

/** A stage's slowest invocation in a run of `images` images. */
export interface StagePoint {
  readonly images: number;
  readonly seconds: number;
  readonly peakRssMb: number;
}

export interface StageFigures {
  /** Smallest run first. */
  readonly points: readonly StagePoint[];
  readonly time: Growth;
  readonly memory: Growth;
  /** Measured, or assumed and from what. */
  readonly basis: string;
}

export interface StageFigureSet {
  readonly plan: StageFigures;
  readonly moments: StageFigures;
  /** A node of the moments merge tree: up to the fan-in partials merged into one. */
  readonly mergeMoments: StageFigures;
  readonly fit: StageFigures;
  readonly project: StageFigures;
  /** FitClassifier with each fitted head. */
  readonly fitClassifier: Record<Exclude<Classifier, 'knn'>, StageFigures>;
  readonly classify: Record<Classifier, StageFigures>;
  readonly publish: StageFigures;
  /**
   * Images per group the per-group figures were measured with (shards per group x rows per
   * shard). A run with other groups scales its per-group times by the ratio: each group's work is
   * its rows (the k-NN's, its rows against the references).
   */
  readonly groupImages: number;
}

const point = (images: number, seconds: number, peakRssMb: number): StagePoint => ({ images, seconds, peakRssMb });

/**
 * The measured figures the model starts from. No results file holds them (bench/run-all.ts keeps
 * only its own sections; bench/aggregate-scale.ts prints), so they are copied here from
 * docs/BENCHMARKS.md: re-run those benches and update this table when the code they measure changes.
 */
export const RECORDED = {
  featurize: {
    featurizeCpuMsPerImage: 3.76,
    measuredWith: 'onnxruntime-node (cpu, 1 thread), mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg-sqrt@128',
    modelLoadSeconds: 0.2,
    handlerCoresBusy: 1.54,
    probeSeconds: 1,
    peakRssMb: 564,
    fieldCopyCpuRatio: 1.86,
    fieldCopySource:
      '`FIELD_COPY_EVERY=<0|4|8> npx tsx bench/featurize.ts --backends onnxruntime --sizes 128 --rounds 2`, run one after another (2026-12-06, load 6-7): ' +
      'handler CPU 4.68 ms per image with no copies, 6.11 with one Training image in 4 copied, 5.41 with one in 8 (480 of the 720 images are Training): ' +
      "8.6-8.8 ms per copy, 1.86 images' worth; a first pair under heavier load gave 27.9 ms per copy, not reproduced",
    source:
      'docs/BENCHMARKS.md section 1 (`npm run bench -- --whole-dataset`, 2026-12-01, x86_64, 2 cores): 3.76 ms of CPU per image on the handler path, ' +
      '1.54 cores busy, model load 0.2 s, first batch 0.69 s, peak RSS 564 MB at 128 px; the probe 0.7 s of CPU (docs/DESIGN.md, "When onnxruntime-node cannot start"), taken as 1 s',
  },
  stages: {
    groupImages: 40 * 250,
    plan: {
      points: [point(100_000, 0.1, 161), point(1_000_000, 0.35, 297)],
      time: 'linear',
      memory: 'linear',
      basis: 'measured; one summary per batch (about 150 bytes), no key read',
    },
    moments: { points: [point(100_000, 1.19, 425), point(1_000_000, 1.92, 423)], time: 'flat', memory: 'flat', basis: 'measured' },
    mergeMoments: { points: [point(1_000_000, 0.83, 401)], time: 'flat', memory: 'flat', basis: 'measured (7 nodes of up to 16 partials)' },
    fit: {
      points: [point(100_000, 5.18, 548), point(1_000_000, 6.43, 545)],
      time: 'flat',
      memory: 'flat',
      basis:
        "measured; at most the fan-in partials, and 300 eigenpairs, whose solve depends on the spectrum, not on the images: the synthetic shards' flat tail takes 14 iterations (FitModel took about 2.5 s on the real whole dataset's features, docs/FEATURE-CHOICE.md)",
    },
    project: { points: [point(100_000, 2.0, 512), point(1_000_000, 2.24, 494)], time: 'flat', memory: 'flat', basis: 'measured' },
    fitClassifier: {
      'lda+logistic': {
        points: [point(100_000, 3.6, 844), point(1_000_000, 5.01, 1044)],
        time: 'linear',
        memory: 'flat',
        basis:
          "measured (the shards with field copies of one Training row in 4); one class statistics record per group (610 KB, about 8 ms to read and merge; the samples' rows are bounded run-wide), and logistic regression's fit on 103 x (128 + 128) sampled rows whatever the images",
      },
      lda: {
        points: [point(100_000, 2.37, 393), point(1_000_000, 5.85, 420)],
        time: 'linear',
        memory: 'flat',
        basis: 'measured at 100 components (2026-12-06 19:30-19:48); one class statistics record and prototype sample per group',
      },
    },
    classify: {
      knn: {
        points: [point(100_000, 1.91, 290), point(1_000_000, 12.7, 347)],
        time: 'linear',
        memory: 'flat',
        basis: 'measured (3 groups timed, 14:07-14:38): each group against every reference, so linear in the images per group',
      },
      lda: { points: [point(100_000, 0.91, 228), point(1_000_000, 1.27, 236)], time: 'flat', memory: 'flat', basis: 'measured; no reference read' },
      'lda+logistic': { points: [point(100_000, 0.39, 295), point(1_000_000, 0.51, 304)], time: 'flat', memory: 'flat', basis: 'measured' },
    },
    publish: {
      points: [point(100_000, 1.12, 335), point(1_000_000, 7.62, 459)],
      time: 'linear',
      memory: 'flat',
      basis: "measured; a tally, a predictions part and a features part copy per group (the local S3 server's copying is most of the 1,000,000 figure)",
    },
  } satisfies StageFigureSet,
  stagesSource:
    'docs/BENCHMARKS.md, "The aggregate as stages, at scale" (`npx tsx bench/aggregate-scale.ts --rows 100000,1000000 --sample 100`, 2026-12-07 17:07-17:20 at 1649cb0, x86_64, 2 cores, load 0.4-2, the defaults: lda+logistic over 300 components, the shards with field copies, each stage process setting V8\'s flag for Buffers as the handlers do): each stage\'s slowest invocation at 100,000 and 1,000,000 images, process start (about 0.8 s) included; ' +
    'the k-NN classify, and the LDA alone, from the same bench at 100 components on 2026-12-06 (14:07-14:38 and 19:30-19:48)',
} as const;

/** Not measured here; each is printed with the tables. */
export const ASSUMED = {
  /**
   * A container-image cold start before the handler's own init (image fetch, runtime, module load),
   * seconds. Billed as a whole here: a container image's Init phase is billed, the fetch before it
   * probably not, so this is the upper side.
   */
  coldStartSeconds: 5,
  /** Step Functions starting a Lambda Task (a map child's or the parent's) and reading its answer, seconds. */
  invokeOverheadSeconds: 1,
  /** Per map child: its start (billed as one transition) and its one Task state. */
  childTransitions: 2,
  /**
   * The parent's states on the upload-trigger route: ReadRunRequest, ParseStartMarker,
   * CheckStartMarker, RunRequestFromMarker, DefaultBucketAndRunId, ApplyBucketAndRunId,
   * ChooseRunSettings, RunSettings, CheckRunSettings, FeaturizeImages, PlanAggregate,
   * ComputeMoments, ChooseMomentsMerge, FitModel, ProjectGroups, FitClassifierBesideFeatures and
   * its branches' FitClassifier and PublishFeatures, ChooseClassification, ClassifyGroups,
   * PublishRun (a run of more groups than the merge fan-in adds the merge tree's few per level).
   */
  parentTransitions: 21,
  /** ListObjectsV2 returns 1,000 keys a page; pages taken one after another before the children (the upper side: the map may start children while it lists). */
  listSecondsPerPage: 0.05,
  /** A project child's PUTs: its CSV and Parquet parts (multipart, 8 MiB parts), references, queries, tally. */
  projectPutsPerGroup: 8,
  /** CSV bytes per row that PublishRun streams into features.csv and predictions.csv (about 100 MB per 100,000 rows). */
  csvBytesPerRow: 1000,
  /** StreamedUpload's part size (lambdas/aws/streamed-upload.ts). */
  uploadPartBytes: 8 * 1024 * 1024,
  /** ResultWriter's files, the run's small outputs (model, plots, report, README): a few dozen whatever the size. */
  fixedRequests: 50,
  /** Share of a run's images under Training/, which get field copies: Fruits-360's (53,177 of 71,022). */
  trainingShare: 0.75,
  /** arm64 time per unit of work / x86_64's: not measured, taken as equal. */
  arm64TimeRatio: 1,
  /** The account's default Lambda concurrency (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html). */
  accountConcurrency: 1000,
} as const;

/** One line of the run: a stage of the state machine, or what is billed apart from the stages. */
export interface StageRow {
  readonly stage: string;
  readonly invocations: number;
  /** The slowest invocation (a featurize batch, a group, or the one invocation), seconds. */
  readonly slowestSeconds: number;
  readonly peakRssMb?: number;
  /** What the stage adds to the run's wall time. */
  readonly wallSeconds: number;
  readonly lambdaUsd: number;
  readonly transitions: number;
  readonly gets: number;
  /** PUT-priced requests (PUT, LIST, multipart parts). */
  readonly puts: number;
}

export interface CostRow {
  readonly images: number;
  readonly architecture: Architecture;
  readonly classifier: Classifier;
  readonly batches: number;
  readonly groups: number;
  readonly stages: readonly StageRow[];
  readonly featurizeLambdaUsd: number;
  readonly aggregateLambdaUsd: number;
  readonly stepFunctionsUsd: number;
  readonly s3RequestsUsd: number;
  readonly totalUsd: number;
  /** The images' own upload (one PUT each), when they are not in S3 yet: not in the total. */
  readonly uploadUsd: number;
  readonly wallMinutes: number;
  /** Listing and featurizing. */
  readonly featurizeMinutes: number;
  readonly aggregateMinutes: number;
  /** What would not run as configured: an invocation over its timeout or memory, a concurrency over the account's. */
  readonly limits: readonly string[];
}

export interface ModelOptions {
  /** @default 'knn' */
  readonly classifier?: Classifier;
  /** @default RECORDED.stages */
  readonly stages?: StageFigureSet;
}

/** A stage's figure (seconds or peak RSS) in a run of `images` images. */
export function grown(figures: StageFigures, of: 'seconds' | 'peakRssMb', images: number): number {
  const growth = of === 'seconds' ? figures.time : figures.memory;
  const values = figures.points.map((p) => p[of]);
  if (growth === 'flat') return Math.max(...values);
  const first = figures.points[0];
  const last = figures.points[figures.points.length - 1];
  if (first === last) return (first[of] * images) / first.images;
  const slope = (last[of] - first[of]) / (last.images - first.images);
  return Math.max(0, first[of] + slope * (images - first.images));
}

/** Billed ms per image: the CPU work spread over as many vCPUs as the memory buys and the handler can use. */
export function billedMsPerImage(featurize: FeaturizeMeasured, memoryMb: number): number {
  const cores = featurize.handlerCoresBusy ?? RECORDED.featurize.handlerCoresBusy;
  return featurize.featurizeCpuMsPerImage / Math.min(memoryMb / MB_PER_VCPU, cores);
}

/** The featurize work per image with the field copies: 1 + trainingShare / fieldCopyEvery x a copy's cost in images. */
export function fieldCopyFactor(featurize: FeaturizeMeasured, fieldCopyEvery: number): number {
  if (fieldCopyEvery <= 0) return 1;
  return 1 + (ASSUMED.trainingShare / fieldCopyEvery) * (featurize.fieldCopyCpuRatio ?? RECORDED.featurize.fieldCopyCpuRatio);
}

/** What every stage of one run's model reads: the run's size, its settings and the figures it starts from. */
interface ModelledRun {
  readonly images: number;
  readonly architecture: Architecture;
  readonly classifier: Classifier;
  readonly config: PipelineConfig;
  readonly featurize: Required<FeaturizeMeasured>;
  readonly figures: StageFigureSet;
  /** USD per GB-second on the run's architecture. */
  readonly gbSecond: number;
  /** Time per unit of work on the run's architecture / x86_64's. */
  readonly timeRatio: number;
  readonly batches: number;
  readonly groups: number;
}

/**
 * One run's cost and wall time: the input listed, the featurize map, the aggregate's stages and
 * the parent workflow's own transitions, each a row, summed into the run's totals.
 */
export function costModel(
  measured: FeaturizeMeasured,
  images: number,
  architecture: Architecture,
  config: PipelineConfig = defaultConfig(),
  options: ModelOptions = {},
): CostRow {
  const batches = Math.ceil(images / config.batchSize);
  const run: ModelledRun = {
    images,
    architecture,
    classifier: options.classifier ?? 'knn',
    config,
    featurize: { ...RECORDED.featurize, ...measured },
    figures: options.stages ?? RECORDED.stages,
    gbSecond: PRICES.lambdaGbSecond[architecture],
    timeRatio: architecture === 'arm64' ? ASSUMED.arm64TimeRatio : 1,
    batches,
    groups: Math.ceil(batches / config.aggregateGroupShards),
  };
  const limits: string[] = [];
  const rows = [listingRow(run), featurizeRow(run, limits), ...aggregateRows(run, limits), parentWorkflowRow()];
  return runTotals(run, rows, limits);
}

/** The input listed by the featurize map's ItemReader. */
function listingRow(run: ModelledRun): StageRow {
  const pages = Math.ceil(run.images / 1000);
  return {
    stage: 'list the input',
    invocations: 0,
    slowestSeconds: 0,
    wallSeconds: pages * ASSUMED.listSecondsPerPage,
    lambdaUsd: 0,
    transitions: 0,
    gets: 0,
    puts: pages,
  };
}

/** FeaturizeImages: one child per batch, MaxConcurrency at a time, each container cold once. */
function featurizeRow(run: ModelledRun, limits: string[]): StageRow {
  const { config, featurize, images, batches, timeRatio } = run;
  const featurizeGb = config.featurizeMemoryMb / 1024;
  const msPerImage = timeRatio * billedMsPerImage(featurize, config.featurizeMemoryMb) * fieldCopyFactor(featurize, config.fieldCopyEvery);
  const belowOneVcpu = Math.max(1, MB_PER_VCPU / config.featurizeMemoryMb);
  const featurizeInit = ASSUMED.coldStartSeconds + timeRatio * belowOneVcpu * (featurize.probeSeconds + featurize.modelLoadSeconds);
  const batchSeconds = (Math.min(config.batchSize, images) * msPerImage) / 1000;
  const featurizeContainers = Math.min(config.maxConcurrency, batches);
  const featurizeWaves = Math.ceil(batches / config.maxConcurrency);
  limits.push(...featurizeLimits(run, featurizeInit + batchSeconds));
  return {
    stage: 'FeaturizeImages (map)',
    invocations: batches,
    slowestSeconds: batchSeconds,
    peakRssMb: featurize.peakRssMb,
    wallSeconds: featurizeInit + featurizeWaves * (batchSeconds + ASSUMED.invokeOverheadSeconds),
    lambdaUsd: ((images * msPerImage) / 1000 + featurizeContainers * featurizeInit) * featurizeGb * run.gbSecond + batches * PRICES.lambdaRequest,
    transitions: batches * ASSUMED.childTransitions,
    gets: images,
    // Each batch's shard and its batch record.
    puts: 2 * batches,
  };
}

/** What of the featurize map would not run as configured: its slowest batch, its memory, the concurrencies. */
function featurizeLimits({ config, featurize }: ModelledRun, slowestBatchSeconds: number): string[] {
  const limits: string[] = [];
  if (slowestBatchSeconds > config.featurizeTimeoutSeconds)
    limits.push(`a featurize batch takes ${slowestBatchSeconds.toFixed(0)} s (timeout ${config.featurizeTimeoutSeconds} s)`);
  if (featurize.peakRssMb > config.featurizeMemoryMb)
    limits.push(`featurize needs ${count(featurize.peakRssMb)} MB (memory ${count(config.featurizeMemoryMb)} MB)`);
  if (config.maxConcurrency > ASSUMED.accountConcurrency)
    limits.push(`maxConcurrency ${count(config.maxConcurrency)} is above the account's ${count(ASSUMED.accountConcurrency)}`);
  if (config.aggregateConcurrency > ASSUMED.accountConcurrency)
    limits.push(`aggregateConcurrency ${count(config.aggregateConcurrency)} is above the account's ${count(ASSUMED.accountConcurrency)}`);
  return limits;
}

/**
 * The aggregate's stages, on the aggregate function. One container serves the single
 * invocations; the group maps' containers start cold in ComputeMoments and are warm for the later
 * maps.
 */
function aggregateRows(run: ModelledRun, limits: string[]): StageRow[] {
  const { config, figures, classifier, images, batches, groups } = run;
  const stage = (name: string, stageFigures: StageFigures, perGroup: boolean, requests: StageRequests, coldContainers: number) =>
    aggregateStageRow(run, limits, { name, figures: stageFigures, perGroup, requests, coldContainers });
  const csvParts = Math.ceil((images * ASSUMED.csvBytesPerRow) / ASSUMED.uploadPartBytes);
  // GETs: the plan reads the ResultWriter manifest and its summaries; a moments child its group's
  // shards and their batch records; a merge node up to the fan-in partials; the fit the tallies and
  // at most the fan-in partials; a project child its group's shards and a few records; a k-NN child
  // every group's references; publish four small parts per group (the references parts are not
  // read: the model names them from the project tallies). PUTs as each stage writes them.
  const classifyGets = classifier === 'knn' ? groups * (groups + 2) : 3 * groups;
  const fanIn = config.momentsMergeFanIn;
  const levels = momentsMergeLevels(groups, fanIn);
  const merges = levels.slice(1);
  const mergeNodes = merges.reduce((sum, nodes) => sum + nodes, 0);
  const mergeWaves = merges.reduce((sum, nodes) => sum + Math.ceil(nodes / config.aggregateConcurrency), 0);
  const fitPartials = levels[levels.length - 1];
  return [
    stage('PlanAggregate', figures.plan, false, { gets: 2, puts: groups + 2 }, 1),
    stage('ComputeMoments (map)', figures.moments, true, { gets: 2 * batches + 2 * groups, puts: 2 * groups }, Math.min(groups, config.aggregateConcurrency)),
    ...(mergeNodes > 0
      ? [
          aggregateStageRow(run, limits, {
            name: 'MergeMoments (map)',
            figures: figures.mergeMoments,
            perGroup: false,
            fanOut: { invocations: mergeNodes, waves: mergeWaves },
            requests: { gets: groups + mergeNodes * fanIn, puts: mergeNodes },
            coldContainers: 0,
          }),
        ]
      : []),
    // The fit writes the run's facts and the model as two objects; the project groups, FitClassifier and publish read both.
    stage('FitModel', figures.fit, false, { gets: 1 + groups + fitPartials, puts: 2 }, 0),
    stage('ProjectGroups (map)', figures.project, true, { gets: batches + 4 * groups, puts: ASSUMED.projectPutsPerGroup * groups }, 0),
    // FitClassifier reads per group the class statistics and the prototypes' sample, and the copies' sample for logistic regression.
    ...(classifier !== 'knn'
      ? [stage('FitClassifier', figures.fitClassifier[classifier], false, { gets: 2 + (classifier === 'lda' ? 2 : 3) * groups, puts: 1 }, 0)]
      : []),
    stage(`ClassifyGroups (map, ${classifier})`, figures.classify[classifier], true, { gets: classifyGets, puts: 2 * groups }, 0),
    // PublishRun's figures were measured with features.csv's join in it, which PublishFeatures now
    // does beside FitClassifier: its wall time here is an upper bound by that join; its requests
    // are the two stages'.
    stage('PublishRun', figures.publish, false, { gets: 2 + 4 * groups, puts: csvParts + ASSUMED.fixedRequests }, 0),
  ];
}

/** A stage's S3 requests over the whole run. */
interface StageRequests {
  readonly gets: number;
  readonly puts: number;
}

/** One of the aggregate's stages: a single invocation, or a group map (`perGroup`). */
interface AggregateStage {
  /** The row's name; what follows a ` (` is left out of its limits. */
  readonly name: string;
  readonly figures: StageFigures;
  readonly perGroup: boolean;
  /** A map over something other than the groups (the merge tree's nodes): its invocations and its waves in all. */
  readonly fanOut?: { readonly invocations: number; readonly waves: number };
  readonly requests: StageRequests;
  /** Containers that start cold in this stage. */
  readonly coldContainers: number;
}

/** An aggregate stage's row; what would not run as configured is added to `limits`. */
function aggregateStageRow(run: ModelledRun, limits: string[], stage: AggregateStage): StageRow {
  const { config, images, groups } = run;
  const aggregateGb = config.aggregateMemoryMb / 1024;
  const aggregateSlower = run.timeRatio * Math.max(1, MB_PER_VCPU / config.aggregateMemoryMb);
  const aggregateWaves = Math.ceil(groups / config.aggregateConcurrency);
  const groupScale = (config.batchSize * config.aggregateGroupShards) / run.figures.groupImages;
  const { perGroup, fanOut, coldContainers } = stage;
  const seconds = aggregateSlower * (perGroup ? groupScale : 1) * grown(stage.figures, 'seconds', images);
  const peakRssMb = grown(stage.figures, 'peakRssMb', images);
  const invocations = fanOut?.invocations ?? (perGroup ? groups : 1);
  const waves = fanOut?.waves ?? (perGroup ? aggregateWaves : 1);
  const name = stage.name.replace(/ \(.*/, '');
  if (seconds > config.aggregateTimeoutSeconds) limits.push(`${name} takes ${seconds.toFixed(0)} s (timeout ${config.aggregateTimeoutSeconds} s)`);
  if (peakRssMb > config.aggregateMemoryMb) limits.push(`${name} needs ${count(peakRssMb)} MB (memory ${count(config.aggregateMemoryMb)} MB)`);
  const cold = coldContainers > 0 ? ASSUMED.coldStartSeconds : 0;
  return {
    stage: stage.name,
    invocations,
    slowestSeconds: seconds,
    peakRssMb,
    wallSeconds: cold + waves * (seconds + ASSUMED.invokeOverheadSeconds),
    lambdaUsd: (invocations * seconds + coldContainers * ASSUMED.coldStartSeconds) * aggregateGb * run.gbSecond + invocations * PRICES.lambdaRequest,
    transitions: perGroup || fanOut ? invocations * ASSUMED.childTransitions : 0,
    ...stage.requests,
  };
}

/** The parent workflow's own state transitions. */
function parentWorkflowRow(): StageRow {
  return {
    stage: 'the parent workflow',
    invocations: 0,
    slowestSeconds: 0,
    wallSeconds: 0,
    lambdaUsd: 0,
    transitions: ASSUMED.parentTransitions,
    gets: 0,
    puts: 0,
  };
}

/** The run's rows summed: the first two are listing and featurizing, the last the parent workflow, the aggregate's between. */
function runTotals(run: ModelledRun, rows: readonly StageRow[], limits: readonly string[]): CostRow {
  const { images } = run;
  const sum = (of: (row: StageRow) => number, from: readonly StageRow[] = rows) => from.reduce((total, row) => total + of(row), 0);
  const featurizeRows = rows.slice(0, 2);
  const aggregateRows = rows.slice(2, -1);
  const featurizeLambdaUsd = sum((r) => r.lambdaUsd, featurizeRows);
  const aggregateLambdaUsd = sum((r) => r.lambdaUsd, aggregateRows);
  const stepFunctionsUsd = sum((r) => r.transitions) * PRICES.stepFunctionsTransition;
  const s3RequestsUsd = sum((r) => r.gets) * PRICES.s3Get + sum((r) => r.puts) * PRICES.s3Put;
  return {
    images,
    architecture: run.architecture,
    classifier: run.classifier,
    batches: run.batches,
    groups: run.groups,
    stages: rows,
    featurizeLambdaUsd,
    aggregateLambdaUsd,
    stepFunctionsUsd,
    s3RequestsUsd,
    totalUsd: featurizeLambdaUsd + aggregateLambdaUsd + stepFunctionsUsd + s3RequestsUsd,
    uploadUsd: images * PRICES.s3Put,
    wallMinutes: sum((r) => r.wallSeconds) / 60,
    featurizeMinutes: sum((r) => r.wallSeconds, featurizeRows) / 60,
    aggregateMinutes: sum((r) => r.wallSeconds, aggregateRows) / 60,
    limits,
  };
}

export const usd = (value: number): string => (value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`);
export const count = (value: number): string => Math.round(value).toLocaleString('en-US');

/** The notes every table of the model carries: its inputs, prices and assumptions. */
export function modelNotes(measured: FeaturizeMeasured): string[] {
  const featurize = { ...RECORDED.featurize, ...measured };
  const stages = RECORDED.stages;
  const stageLine = (name: string, f: StageFigures) =>
    `${name} ${f.points.map((p) => `${p.seconds} s / ${count(p.peakRssMb)} MB at ${count(p.images)}`).join(', ')} (${f.time}${f.basis === 'measured' ? '' : `; ${f.basis}`})`;
  return [
    `Measured, featurize (x86_64): ${featurize.featurizeCpuMsPerImage} ms of CPU per image on the handler path (${featurize.measuredWith}), ${featurize.handlerCoresBusy} cores busy at full speed, ` +
      `${featurize.modelLoadSeconds} s model load and first-batch extra, ${featurize.probeSeconds} s for the onnxruntime-node probe per cold start, ${featurize.peakRssMb} MB peak RSS. Source: ${RECORDED.featurize.source}.`,
    `Billed featurize ms per image = CPU ms / min(memory / ${count(MB_PER_VCPU)} MB, ${featurize.handlerCoresBusy} cores): below one vCPU the work takes longer in proportion; above it the handler cannot use more than the cores it used here.`,
    `Field copies (fieldCopyEvery, default ${FEATURIZE_SETTINGS.fieldCopyEvery.default}): a copy costs ${featurize.fieldCopyCpuRatio} images' worth of CPU; with ${ASSUMED.trainingShare * 100}% of the images under Training/ the featurize work per image is x${fieldCopyFactor(featurize, FEATURIZE_SETTINGS.fieldCopyEvery.default).toFixed(2)} at the default. Source: ${RECORDED.featurize.fieldCopySource}.`,
    `Measured, aggregate stages (x86_64), slowest invocation s / peak RSS MB, and how it is taken to grow: ${[
      stageLine('plan', stages.plan),
      stageLine('moments (per group)', stages.moments),
      stageLine('merge-moments (per tree node)', stages.mergeMoments),
      stageLine('fit', stages.fit),
      stageLine('project (per group)', stages.project),
      stageLine('fit-classifier LDA + logistic regression', stages.fitClassifier['lda+logistic']),
      stageLine('fit-classifier LDA', stages.fitClassifier.lda),
      stageLine('classify LDA (per group)', stages.classify.lda),
      stageLine('classify LDA + logistic regression (per group)', stages.classify['lda+logistic']),
      stageLine('classify k-NN (per group)', stages.classify.knn),
      stageLine('publish', stages.publish),
    ].join('; ')}. Source: ${RECORDED.stagesSource}. Every invocation of a map stage is billed at its slowest.`,
    `Assumed for the LDA (not measured again at 300 components): ${stageLine('FitClassifier', stages.fitClassifier.lda)}; ${stageLine('classify LDA (per group)', stages.classify.lda)}.`,
    `Prices (USD, us-east-1 list prices, recorded 2026-11-25): Lambda $${PRICES.lambdaGbSecond.x86_64} per GB-s on x86_64 and $${PRICES.lambdaGbSecond.arm64} on arm64 (20% less), $0.20 per million requests; ` +
      'Step Functions Standard $0.025 per 1,000 state transitions, the map children being STANDARD executions (one transition to start each, then its own); S3 PUT/LIST $0.005 and GET $0.0004 per 1,000. ' +
      'Storage, data transfer, CloudWatch Logs, X-Ray and ECR are not counted, nor free tiers.',
    `Assumed, not measured: ${ASSUMED.coldStartSeconds} s container cold start (billed, before the probe and model load) once per concurrent featurize child and once per aggregate container (one for the single stages, one per concurrent group in ComputeMoments, warm after it); ` +
      `${ASSUMED.invokeOverheadSeconds} s for Step Functions to start a Task and read its answer, once per wave of children; ${ASSUMED.childTransitions} transitions per child and ${ASSUMED.parentTransitions} for the parent; no retries; ` +
      `${ASSUMED.listSecondsPerPage * 1000} ms per page of 1,000 listed keys, one page after another before the children start (the upper side); S3 GET latency hidden by READ_CONCURRENCY (as on loopback here); ` +
      'Lambda vCPUs as fast as these cores; aggregate stages slower in proportion below one vCPU, no faster above it.',
    `Assumed for arm64, not measured: the same time per unit of work as the x86_64 measured (ratio ${ASSUMED.arm64TimeRatio}), with the CNN on onnxruntime-node (InferenceRuntimeFallback = 0; on its TF.js fallback inference takes 3-6x as long, docs/SIZING.md). Only the GB-s price differs.`,
    'Wall time = listing + featurize (cold start + waves x (batch + overhead)) + each aggregate stage in turn (a group map: waves of `aggregateConcurrency` children x (slowest child + overhead)). ' +
      `Lambda scales a function by 1,000 environments every 10 s (https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html), so up to the account's ${count(ASSUMED.accountConcurrency)} the first wave is not held back.`,
  ];
}

const stageCells = (row: CostRow) => [
  count(row.images),
  row.architecture,
  row.classifier,
  count(row.batches),
  count(row.groups),
  usd(row.featurizeLambdaUsd),
  usd(row.aggregateLambdaUsd),
  usd(row.stepFunctionsUsd),
  usd(row.s3RequestsUsd),
  usd(row.totalUsd),
  usd(row.uploadUsd),
  row.featurizeMinutes.toFixed(1),
  row.aggregateMinutes.toFixed(1),
  row.wallMinutes.toFixed(1),
];

export const RUN_HEADERS = [
  'images',
  'arch',
  'classify',
  'batches',
  'groups',
  'featurize Lambda',
  'aggregate Lambda',
  'Step Functions',
  'S3 requests',
  'total',
  'upload PUTs (extra)',
  'list + featurize (min)',
  'aggregate (min)',
  'wall time (min)',
] as const;

/** One row per run size, architecture and classifier, at `config`. */
export function runRows(
  measured: FeaturizeMeasured,
  imageCounts: readonly number[],
  config: PipelineConfig,
  classifiers: readonly Classifier[] = ['knn', costedClassifier(config.classifier)],
): CostRow[] {
  return imageCounts.flatMap((images) =>
    classifiers.flatMap((classifier) => ARCHITECTURES.map((arch) => costModel(measured, images, arch, config, { classifier }))),
  );
}

export const runTableRows = (rows: readonly CostRow[]) => rows.map(stageCells);

/** docs/BENCHMARKS.md section 4: the deployed defaults at the whole dataset's size and at 1,000,000 images. */
export function costTable(measured: FeaturizeMeasured, imageCounts: readonly number[] = [71_014, 1_000_000]): Table {
  const config = defaultConfig();
  const rows = runRows(measured, imageCounts, config, [costedClassifier(config.classifier)]);
  const limits = [...new Set(rows.flatMap((r) => r.limits.map((limit) => `${count(r.images)}: ${limit}`)))];
  return {
    title: 'Cost model: one run on AWS at the deployed defaults',
    headers: RUN_HEADERS,
    rows: runTableRows(rows),
    notes: [
      `Config (lib/config.ts defaults): batch ${config.batchSize} images, maxConcurrency ${config.maxConcurrency}, featurize ${count(config.featurizeMemoryMb)} MB, ` +
        `groups of ${config.aggregateGroupShards} shards, aggregateConcurrency ${config.aggregateConcurrency}, aggregate ${count(config.aggregateMemoryMb)} MB. ` +
        'docs/SIZING.md (`npx tsx bench/sizing.ts`) has the settings that meet 1,000,000 images in 5 minutes for $1, 10,000,000 on paper, the LDA and each stage.',
      ...modelNotes(measured),
      ...(limits.length ? [`Would not run as configured: ${limits.join('; ')}.`] : []),
    ],
  };
}

/** `### title`, the table and its notes, as bench/run-all.ts renders a section. */
export function renderTable(table: Table): string {
  return [`### ${table.title}`, '', markdownTable(table), '', ...(table.notes ?? []).map((note) => `- ${note}`)].join('\n');
}

const COST_HEADING = '## 4. Cost model (AWS)';

if (require.main === module) {
  const section = [COST_HEADING, '', renderTable(costTable(RECORDED.featurize)), ''].join('\n');
  console.log(section);
  if (process.argv.includes('--write')) {
    const doc = join(__dirname, '..', 'docs', 'BENCHMARKS.md');
    writeFileSync(doc, withDocSection(readFileSync(doc, 'utf8'), COST_HEADING, `${section}\n`));
  }
}
