/**
 * One group of shards, first pass (a child of the `ComputeMoments` map): check every shard, prove
 * the group's batches accounted for every key they were handed, and (in a fitting run) compute
 * the group's count, mean and scatter in float64, which the fit merges (Chan et al.).
 *
 * A row is left out of the features, with its reason in the report, when its key was already
 * featurized (in this group, or handed to an earlier batch: see the plan), when its vector holds
 * NaN or infinities, or when its shard comes from another featurizer than the run's. A projecting
 * run fails at once on such a shard (`FeaturizerMismatchError`, report.json says why): the saved
 * model's components mean nothing for other features. Work and memory are bounded by the group.
 */
import { FeaturizerMismatchError } from '../analysis/pca-model';
import { splitOfKey } from '../analysis/knn';
import { NativeScatterAccumulator } from '../analysis/native-kernels';
import { InputAccounting } from '../bookkeeping/input-accounting';
import { RunReportBuilder } from '../outputs/run-report';
import type { RunSettings } from '../contracts/events';
import { putObject, readText } from '../aws/s3-client';
import { AggregateRunDeps, allFinite, outputKeys, readShards, reportUnreadableShard, runFields, stopwatch } from './aggregate-shared';
import { aggregateWorkKeys, encodeMoments, GroupFileSchema, MomentsTally, Plan, PlanSchema } from './aggregate-work';

export async function readPlan(deps: AggregateRunDeps, run: RunSettings): Promise<Plan> {
  const key = aggregateWorkKeys(run.workPrefix).plan;
  return PlanSchema.parse(JSON.parse(await readText(deps.s3, run.bucket, key))) as Plan;
}

export async function momentsOfGroup(run: RunSettings, group: number, deps: AggregateRunDeps): Promise<{ group: number; rows: number }> {
  const { s3, settings, log } = deps;
  const clock = stopwatch();
  const work = aggregateWorkKeys(run.workPrefix);
  const plan = await readPlan(deps, run);
  const { batches } = GroupFileSchema.parse(JSON.parse(await readText(s3, run.bucket, work.group(group))));
  const projecting = plan.pcaModel !== undefined;
  const report = new RunReportBuilder();
  const accounting = new InputAccounting();
  // float64 products: the merged covariance matches a float64 pass to rounding (float32 would give ~5e-7).
  const accumulator =
    projecting || plan.dim === 0 ? undefined : new NativeScatterAccumulator(plan.dim, { precision: 'float64', blockRows: settings.blockRows });
  const byShard = new Map(batches.map((batch) => [batch.shard, batch]));
  for (const batch of batches) if (batch.inputKeys) accounting.list(batch.inputKeys);

  const usable: MomentsTally['usable'] = [];
  const seenKeys = new Set<string>();
  let rows = 0;
  let references = 0;
  for await (const read of readShards(
    s3,
    run.bucket,
    batches.map((batch) => batch.shard),
    settings.readAhead ?? 2,
  )) {
    const batch = byShard.get(read.key)!;
    if ('problem' in read) {
      reportUnreadableShard(report, read.key, batch, read.problem);
      continue;
    }
    const { header, vectors } = read.shard;
    report.addShard(header);
    if (header.featurizer !== plan.featurizer || header.dim !== plan.dim) {
      if (projecting) {
        const error = new FeaturizerMismatchError(
          `the model ${plan.pcaModel} was fitted on features of ${plan.featurizer} (${plan.dim} values), ` +
            `but this run's images were featurized with ${header.featurizer} (${header.dim} values, shard ${read.key}): ` +
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
      const reason = `features from ${header.featurizer} (${header.dim} values) cannot be mixed with the run's ${plan.featurizer} (${plan.dim} values)`;
      header.keys.forEach((key) => report.addFailedItem(key, reason));
      report.warn(`shard ${read.key}: ${reason}`);
      continue;
    }
    if (header.keys.length !== batch.summary.count) {
      report.warn(`shard ${read.key} holds ${header.keys.length} images but its batch summary says ${batch.summary.count}`);
    }
    const handedEarlier = new Set(batch.repeatedKeys ?? []);
    const excluded: number[] = [];
    const kept = new Float32Array(vectors.length);
    let keptRows = 0;
    header.keys.forEach((key, row) => {
      if (seenKeys.has(key) || handedEarlier.has(key)) {
        excluded.push(row);
        report.addSkippedItem(key, 'duplicate: the same key was featurized in another batch, kept once');
      } else if (!allFinite(vectors, row * plan.dim, plan.dim)) {
        excluded.push(row);
        report.addFailedItem(key, 'feature vector holds NaN or infinite values');
      } else {
        seenKeys.add(key);
        kept.set(vectors.subarray(row * plan.dim, (row + 1) * plan.dim), keptRows * plan.dim);
        keptRows++;
        rows++;
        if (splitOfKey(key) === 'train') references++;
      }
    });
    await accumulator?.addRows(kept, keptRows);
    const left = new Set(excluded);
    accounting.account(header.keys.filter((_, row) => !left.has(row)));
    report.addProcessed(header.featurizer, header.keys.length - excluded.length);
    usable.push({ shard: read.key, rows: header.keys.length, excluded });
  }
  const problems = report.problemKeys();
  accounting.account(problems.keys);
  if (!problems.complete) accounting.cannotProve('some failed or skipped images are known only by count (capped batch summaries without a readable shard)');

  if (accumulator && rows > 0) await putObject(s3, run.bucket, work.moments(group), encodeMoments(await accumulator.moments()), 'application/octet-stream');
  const tally: MomentsTally = {
    group,
    rows,
    references,
    report: report.part(),
    accounting: accounting.report(),
    usable,
    timingsMs: { moments: clock.total() },
  };
  await putObject(s3, run.bucket, work.momentsTally(group), JSON.stringify(tally), 'application/json');
  log?.info('group moments', { group, rows, shards: batches.length, ms: tally.timingsMs.moments });
  return { group, rows };
}
