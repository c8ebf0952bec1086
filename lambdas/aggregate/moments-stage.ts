/**
 * One group of shards, first pass (a child of the `ComputeMoments` map): check every shard, prove
 * the group's batches accounted for every key they were handed (their batch records), and (in a
 * fitting run) compute the group's count, mean and scatter in float64, which the fit merges (Chan
 * et al.).
 *
 * A row is left out of the features, with its reason in the report, when its key was already
 * featurized in this group (a key handed out twice: the accounting fails the run), when its
 * vector holds NaN or infinities, or when its shard comes from another featurizer than the run's.
 * A projecting run fails at once on such a shard (`FeaturizerMismatchError`, report.json says
 * why): the saved model's components mean nothing for other features. Work and memory are
 * bounded by the group.
 */
import { FeaturizerMismatchError } from '../analysis/pca-model';
import { splitOfKey } from '../analysis/knn';
import { NativeScatterAccumulator, type KernelPrecision } from '../analysis/native-kernels';
import { packedBytes } from '../analysis/packed-moments';
import { InputAccounting } from '../bookkeeping/input-accounting';
import { batchRecordKeyOfShard } from '../contracts/bucket-layout';
import type { FeatureShard, ShardHeader } from '../bookkeeping/feature-shard';
import { RunReportBuilder } from '../outputs/run-report';
import { BatchRecordSchema, type RunSettings } from '../contracts/events';
import { MissingObjectError, putObject, readText } from '../aws/s3-client';
import { AggregateRunDeps, allFinite, outputKeys, readShards, reportUnreadableShard, runFields, stopwatch } from './aggregate-shared';
import {
  addTrainingClasses,
  aggregateWorkKeys,
  countsOfClass,
  GroupBatch,
  GroupFileSchema,
  MomentsTally,
  Plan,
  PlanSchema,
  TrainingClasses,
} from './aggregate-work';

export async function readPlan(deps: AggregateRunDeps, run: RunSettings): Promise<Plan> {
  const key = aggregateWorkKeys(run.workPrefix).plan;
  return PlanSchema.parse(JSON.parse(await readText(deps.s3, run.bucket, key))) as Plan;
}

/** A shard's rows sorted into kept and left out, the left out reported with their reason. */
interface ShardRows {
  /** The kept rows' vectors, packed from the start. */
  readonly kept: Float32Array;
  readonly keptRows: number;
  /** Kept rows under Training/: the references a classifier is fitted on. */
  readonly references: number;
  /** The kept Training rows and the field copies of them, by class. */
  readonly trainingClasses: TrainingClasses;
  /** The rows left out, by their row in the shard. */
  readonly excluded: number[];
}

/**
 * The precision of the scatter's product (each block of rows is centred on its mean in float64
 * first, and the blocks' scatters are added in float64): MLAS's single-precision GEMM is about 2.5
 * times its double-precision one, and the product is most of the stage. On the whole dataset
 * (71,014 rows) the fitted components then lie within 7.6e-7 of those of float64 products, the
 * explained variance ratios within 1.1e-10, and every prediction is the same (docs/BENCHMARKS.md).
 */
export const MOMENTS_PRODUCT_PRECISION: KernelPrecision = 'float32';

/**
 * One group's first pass: each of its shards checked and its rows sorted, the group's moments
 * (a fitting run) and its tally written for the fit.
 */
export async function momentsOfGroup(run: RunSettings, group: number, deps: AggregateRunDeps): Promise<{ group: number; rows: number }> {
  const { s3, settings, log } = deps;
  const clock = stopwatch();
  const work = aggregateWorkKeys(run.workPrefix);
  const plan = await readPlan(deps, run);
  const { batches } = GroupFileSchema.parse(JSON.parse(await readText(s3, run.bucket, work.group(group))));
  const projecting = plan.pcaModel !== undefined;
  const report = new RunReportBuilder();
  const accounting = new InputAccounting();
  const accumulator =
    projecting || plan.dim === 0 ? undefined : new NativeScatterAccumulator(plan.dim, { precision: MOMENTS_PRODUCT_PRECISION, blockRows: settings.blockRows });
  const byShard = new Map(batches.map((batch) => [batch.shard, batch]));
  const handed = await readBatchRecords(run, batches, deps);
  for (const keys of handed.values()) accounting.list(keys);
  const unrecorded = batches.filter((batch) => !handed.has(batch.shard)).map((batch) => batch.shard);
  if (unrecorded.length > 0) {
    const named = unrecorded.slice(0, 3).join(', ') + (unrecorded.length > 3 ? ', ...' : '');
    accounting.cannotProve(
      `no readable batch record for ${unrecorded.length} of the group's shards (${named}): the keys their batches were handed are not known`,
    );
  }

  const usable: MomentsTally['usable'] = [];
  const seenKeys = new Set<string>();
  let rows = 0;
  let references = 0;
  const trainingClasses: TrainingClasses = {};
  for await (const read of readShards(
    s3,
    run.bucket,
    batches.map((batch) => batch.shard),
    settings.readAhead ?? 2,
  )) {
    const batch = byShard.get(read.key)!;
    if ('problem' in read) {
      reportUnreadableShard(report, read.key, { summary: batch.summary, inputKeys: handed.get(read.key) }, read.problem);
      continue;
    }
    const { header } = read.shard;
    report.addShard(header);
    if (header.featurizer !== plan.featurizer || header.dim !== plan.dim) {
      if (projecting) await failOnOtherFeaturizer(run, plan, read.key, header, report, deps);
      reportOtherFeaturizer(plan, read.key, header, report);
      continue;
    }
    if (header.keys.length !== batch.summary.count) {
      report.warn(`shard ${read.key} holds ${header.keys.length} images but its batch summary says ${batch.summary.count}`);
    }
    const sorted = sortShardRows(read.shard, plan.dim, seenKeys, report);
    rows += sorted.keptRows;
    references += sorted.references;
    addTrainingClasses(trainingClasses, sorted.trainingClasses);
    await accumulator?.addRows(sorted.kept, sorted.keptRows);
    const left = new Set(sorted.excluded);
    accounting.account(header.keys.filter((_, row) => !left.has(row)));
    report.addProcessed(header.featurizer, header.keys.length - sorted.excluded.length);
    usable.push({ shard: read.key, rows: header.keys.length, excluded: sorted.excluded });
  }
  const problems = report.problemKeys();
  accounting.account(problems.keys);
  if (!problems.complete) accounting.cannotProve('some failed or skipped images are known only by count (capped batch summaries without a readable shard)');

  if (accumulator && rows > 0) await putObject(s3, run.bucket, work.moments(group), packedBytes(await accumulator.packedMoments()), 'application/octet-stream');
  const tally: MomentsTally = {
    group,
    rows,
    references,
    trainingClasses,
    report: report.part(),
    accounting: accounting.report(),
    usable,
    timingsMs: { moments: clock.total() },
  };
  await putObject(s3, run.bucket, work.momentsTally(group), JSON.stringify(tally), 'application/json');
  log?.info('group moments', { group, rows, shards: batches.length, ms: tally.timingsMs.moments });
  return { group, rows };
}

/**
 * A projecting run meets a shard of another featurizer than its saved model's: the run fails, with
 * report.json written to say why.
 */
async function failOnOtherFeaturizer(
  run: RunSettings,
  plan: Plan,
  shard: string,
  header: ShardHeader,
  report: RunReportBuilder,
  { s3, log }: AggregateRunDeps,
): Promise<never> {
  const error = new FeaturizerMismatchError(
    `the model ${plan.pcaModel} was fitted on features of ${plan.featurizer} (${plan.dim} values), ` +
      `but this run's images were featurized with ${header.featurizer} (${header.dim} values, shard ${shard}): ` +
      'featurize with the settings of the model run, or fit a new model',
  );
  const failure = report.build({
    ...runFields(run, plan.mapRunArn),
    error,
    pca: { source: 'model', model: plan.pcaModel, modelRunId: plan.modelRunId, modelFeaturizer: plan.featurizer, runFeaturizer: header.featurizer },
    outputs: {},
  });
  await putObject(s3, run.bucket, outputKeys(run.outputPrefix).report, JSON.stringify(failure, null, 2), 'application/json');
  log?.warn('featurizer differs from the model', { reason: error.message });
  throw error;
}

/** A fitting run leaves out a shard of another featurizer than the run's: its images fail, with the reason. */
function reportOtherFeaturizer(plan: Plan, shard: string, header: ShardHeader, report: RunReportBuilder): void {
  const reason = `features from ${header.featurizer} (${header.dim} values) cannot be mixed with the run's ${plan.featurizer} (${plan.dim} values)`;
  header.keys.forEach((key) => report.addFailedItem(key, reason));
  report.warn(`shard ${shard}: ${reason}`);
}

/**
 * The keys each batch of the group was handed, by shard, from the batch records its featurize
 * child wrote beside the shard; a record missing or not a batch record is left out (the group
 * cannot prove that batch).
 */
async function readBatchRecords(run: RunSettings, batches: readonly GroupBatch[], { s3 }: AggregateRunDeps): Promise<Map<string, string[]>> {
  const records = await Promise.all(
    batches.map(async (batch): Promise<[string, string[] | undefined]> => {
      let text: string;
      try {
        text = await readText(s3, run.bucket, batchRecordKeyOfShard(run.workPrefix, batch.shard));
      } catch (error) {
        if (error instanceof MissingObjectError) return [batch.shard, undefined];
        throw error;
      }
      return [batch.shard, BatchRecordSchema.safeParse(parseJsonOrUndefined(text)).data?.items];
    }),
  );
  return new Map(records.filter((entry): entry is [string, string[]] => entry[1] !== undefined));
}

function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * A shard's rows, kept or left out: a key already featurized in this group (in `seenKeys`) is
 * skipped as a duplicate, a vector with NaN or infinities fails. When every row is kept (the usual
 * case) the kept rows are the shard's own, not a copy.
 */
function sortShardRows({ header, vectors }: FeatureShard, dim: number, seenKeys: Set<string>, report: RunReportBuilder): ShardRows {
  const excluded: number[] = [];
  let references = 0;
  const trainingClasses: TrainingClasses = {};
  const keptTraining = new Set<string>();
  header.keys.forEach((key, row) => {
    if (seenKeys.has(key)) {
      excluded.push(row);
      report.addSkippedItem(key, 'duplicate: the same key was featurized in another batch, kept once');
    } else if (!allFinite(vectors, row * dim, dim)) {
      excluded.push(row);
      report.addFailedItem(key, 'feature vector holds NaN or infinite values');
    } else {
      seenKeys.add(key);
      if (splitOfKey(key) === 'train') {
        references++;
        countsOfClass(trainingClasses, header.labels[row]).rows++;
        keptTraining.add(key);
      }
    }
  });
  // The copies the project stage adds: those of the kept Training rows.
  const copies = header.fieldCopies;
  copies?.keys.forEach((key, c) => {
    if (keptTraining.has(key)) countsOfClass(trainingClasses, copies.labels[c]).copies++;
  });
  const rows = header.keys.length;
  const keptRows = rows - excluded.length;
  if (excluded.length === 0) return { kept: vectors.subarray(0, rows * dim), keptRows, references, trainingClasses, excluded };
  const kept = new Float32Array(keptRows * dim);
  const left = new Set(excluded);
  let at = 0;
  for (let row = 0; row < rows; row++) {
    if (left.has(row)) continue;
    kept.set(vectors.subarray(row * dim, (row + 1) * dim), at * dim);
    at++;
  }
  return { kept, keptRows, references, trainingClasses, excluded };
}
