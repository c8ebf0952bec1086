/**
 * The aggregate's first stage: what the featurize map produced, as groups of shards for the
 * stages that fan out.
 *
 * It reads the ResultWriter manifest and files (Transformation COMPACT: a succeeded child's
 * output, its summary of ~150 bytes; a failed or pending child's full record with its input), and
 * writes:
 * - `groups/<g>.json`: consecutive shards in key order (the same groups, so the same bytes, for the
 *   same map run whatever order the ResultWriter listed its children in), each with its summary;
 *   the keys each batch was handed are in its batch record, which the group reads and proves;
 * - `groups.json`, the list `[{ "group": g }]` that the group maps read (ItemReader);
 * - `plan.json`: the run's featurizer (the first readable shard's, or the saved model's), and the
 *   report and accounting of the batches that left no shard (failed children, with their keys).
 *
 * Its work is a pass over one summary per batch and the failed children's inputs: nothing per
 * image of a batch that succeeded. A projecting run's saved model is read and checked here,
 * before any shard.
 */
import { BatchOutcome, readMapRunResults } from '../bookkeeping/map-results';
import { InputAccounting } from '../bookkeeping/input-accounting';
import { decodeFeatureShard } from '../bookkeeping/feature-shard';
import { PcaModelError } from '../analysis/pca-model';
import { RunReportBuilder } from '../outputs/run-report';
import { AggregateEvent, FeaturizeBatchSummary, TransientStorageError } from '../contracts/events';
import { MissingObjectError, putObject, readBytes, readText } from '../aws/s3-client';
import { AggregateRunDeps, outputKeys, readProjectionModel, runFields, stopwatch } from './aggregate-shared';
import { aggregateWorkKeys, GroupBatch, Plan } from './aggregate-work';
import { DEFAULT_GROUP_SHARDS } from '../contracts/handler-env';

export interface PlanResult {
  /** Groups of shards (0 when no batch left a shard). */
  groups: number;
  /** `groups.json`, the group maps' ItemReader input. */
  groupsKey: string;
}

/** The featurizer the run's rows come from, and the saved model's run when the run projects with one. */
interface RunFeaturizer {
  featurizer: string;
  dim: number;
  modelRunId?: string;
}

/**
 * The plan of the run: the featurize map's batches read, those without a shard reported and
 * accounted, the shards in groups, the run's featurizer found, and the groups and plan written.
 */
export async function planAggregate(event: AggregateEvent, deps: AggregateRunDeps): Promise<PlanResult> {
  const { s3, log } = deps;
  const clock = stopwatch();
  const { bucket } = event;
  const work = aggregateWorkKeys(event.workPrefix);
  const report = new RunReportBuilder();
  const accounting = new InputAccounting();

  const { manifest, outcomes } = await readResultWriterOutput(event, deps);
  const mapRunArn = event.mapResult.MapRunArn ?? manifest.MapRunArn;
  const shardBatches = sortedBatches(outcomes, report, accounting);
  const problems = report.problemKeys();
  accounting.account(problems.keys);
  if (!problems.complete) accounting.cannotProve('some failed or skipped images are known only by count (capped batch summaries without a readable shard)');
  if (manifest.ResultFiles.PENDING?.length) accounting.cannotProve('the map run ended with child executions still pending');
  const shardKeys = [...shardBatches.keys()].sort();
  const groups = groupsOfShards(
    shardKeys.map((shard): GroupBatch => ({ shard, summary: shardBatches.get(shard)! })),
    deps.settings.groupShards ?? DEFAULT_GROUP_SHARDS,
  );
  const { featurizer, dim, modelRunId } = event.pcaModel
    ? await savedModelFeaturizer(event, event.pcaModel, { report, mapRunArn }, deps)
    : await firstShardFeaturizer(bucket, shardKeys, deps);

  for (const [g, batches] of groups.entries()) await putObject(s3, bucket, work.group(g), JSON.stringify({ group: g, batches }), 'application/json');
  await putObject(s3, bucket, work.groups, JSON.stringify(groups.map((_, g) => ({ group: g }))), 'application/json');
  const plan: Plan = {
    ...(mapRunArn ? { mapRunArn } : {}),
    ...(event.pcaModel ? { pcaModel: event.pcaModel } : {}),
    ...(modelRunId ? { modelRunId } : {}),
    groups: groups.length,
    featurizer,
    dim,
    report: report.part(),
    accounting: accounting.report(),
    timingsMs: { plan: clock.total() },
  };
  await putObject(s3, bucket, work.plan, JSON.stringify(plan), 'application/json');
  log?.info('aggregate planned', { mapRunArn, batches: outcomes.length, shards: shardKeys.length, groups: groups.length });
  return { groups: groups.length, groupsKey: work.groups };
}

/** The ResultWriter manifest and the batch outcomes its files list. */
async function readResultWriterOutput(event: AggregateEvent, { s3 }: AggregateRunDeps): Promise<Awaited<ReturnType<typeof readMapRunResults>>> {
  const details = event.mapResult.ResultWriterDetails;
  let manifestText: string;
  try {
    manifestText = await readText(s3, details.Bucket, details.Key);
  } catch (error) {
    if (error instanceof MissingObjectError) throw new Error(`ResultWriter manifest s3://${details.Bucket}/${details.Key} does not exist`);
    throw error;
  }
  return readMapRunResults(manifestText, (b, k) => readText(s3, b, k));
}

/**
 * Batches with a shard go to the groups (by shard), whose children list and account their keys
 * from the batch records; the others are reported and accounted here: a failed child by the
 * input of its record, a succeeded one without a shard by its summary, which then lists its
 * whole batch (no image featurized, no list cut).
 */
function sortedBatches(outcomes: readonly BatchOutcome[], report: RunReportBuilder, accounting: InputAccounting): Map<string, FeaturizeBatchSummary> {
  const shardBatches = new Map<string, FeaturizeBatchSummary>();
  for (const outcome of outcomes) {
    if (outcome.kind === 'failed') {
      if (outcome.inputKeys) accounting.list(outcome.inputKeys);
      else
        accounting.cannotProve(
          `a ${outcome.status.toLowerCase()} batch's result record does not include its input (${outcome.executionArn ?? 'execution unknown'})`,
        );
      report.addFailedBatch(outcome);
    } else if (outcome.summary.shard === null) {
      const { summary } = outcome;
      if (summary.count === 0 && !summary.truncated) accounting.list([...summary.failed, ...summary.skipped].map((problem) => problem.key));
      else
        accounting.cannotProve(`a batch without a shard featurized ${summary.count} images or cut its lists (${outcome.executionArn ?? 'execution unknown'})`);
      report.addSummary(summary);
    } else if (shardBatches.has(outcome.summary.shard)) {
      // The same batch twice (a redrive re-wrote the same content-named shard): count it once.
      report.warn(`shard ${outcome.summary.shard} is listed by more than one child execution; counted once`);
    } else {
      shardBatches.set(outcome.summary.shard, outcome.summary);
    }
  }
  return shardBatches;
}

/**
 * Consecutive shards in key order, in the fewest groups of at most `groupShards` shards, their
 * sizes as even as can be (the first groups one shard more than the others when the division is
 * not exact). A map stage lasts as long as its largest group: 285 shards in groups of at most 40
 * make 8 groups of 35 or 36, not 7 of 40 and one of 5.
 */
export function groupsOfShards<T>(shards: readonly T[], groupShards: number): T[][] {
  const count = Math.ceil(shards.length / groupShards);
  const [smaller, larger] = [Math.floor(shards.length / count), shards.length % count];
  const groups: T[][] = [];
  let first = 0;
  for (let g = 0; g < count; g++) {
    const size = smaller + (g < larger ? 1 : 0);
    groups.push(shards.slice(first, first + size));
    first += size;
  }
  return groups;
}

/**
 * A projecting run's featurizer: the saved model's, read and checked before any shard. A model
 * that is not usable fails the run, with report.json written to say why.
 */
async function savedModelFeaturizer(
  event: AggregateEvent,
  pcaModel: string,
  failing: { report: RunReportBuilder; mapRunArn: string | undefined },
  { s3, log, now = () => new Date() }: AggregateRunDeps,
): Promise<RunFeaturizer> {
  try {
    const saved = await readProjectionModel(s3, event.bucket, pcaModel, event.outputPrefix);
    log?.info('pca model read', { pcaModel: saved.key, modelRunId: saved.model.runId, k: saved.model.k, references: saved.model.knnReferences?.count ?? 0 });
    return { featurizer: saved.model.featurizer, dim: saved.model.dim, modelRunId: saved.model.runId };
  } catch (error) {
    if (error instanceof PcaModelError) {
      const failure = failing.report.build({
        ...runFields(event, failing.mapRunArn),
        error,
        pca: { source: 'model', model: pcaModel },
        outputs: {},
        now: now(),
      });
      await putObject(s3, event.bucket, outputKeys(event.outputPrefix).report, JSON.stringify(failure, null, 2), 'application/json');
      log?.warn('pca model not usable', { pcaModel, reason: error.message });
    }
    throw error;
  }
}

/** A fitting run's featurizer: the first readable shard's (none readable: no featurizer, dimension 0). */
async function firstShardFeaturizer(bucket: string, shardKeys: readonly string[], { s3 }: AggregateRunDeps): Promise<RunFeaturizer> {
  for (const shard of shardKeys) {
    try {
      const { header } = decodeFeatureShard(await readBytes(s3, bucket, shard));
      return { featurizer: header.featurizer, dim: header.dim };
    } catch (error) {
      // Missing or corrupt: its group reports it; the next shard names the featurizer.
      if (error instanceof TransientStorageError) throw error;
    }
  }
  return { featurizer: '', dim: 0 };
}
