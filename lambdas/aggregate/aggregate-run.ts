/**
 * The aggregate step, from the Distributed Map's ResultWriter manifest to the run's outputs, as
 * stages of the state machine (docs/DESIGN.md):
 *
 *   1. plan (`plan-stage.ts`): the batch records into groups of shards, in key order;
 *   2. moments (`moments-stage.ts`, a map child per group): check every shard, prove the group's
 *      batches accounted for every key they were handed, and the group's count, mean and scatter;
 *   3. merge-moments (`merge-stage.ts`, a map child per node, only in a fitting run of more groups
 *      than the merge fan-in): the groups' moments merged as a tree, `fanIn` partials a node,
 *      until at most `fanIn` remain;
 *   4. fit (`fit-stage.ts`): merge the proofs (a run that cannot account for every key fails with
 *      `IncompleteRunError` before anything is published) and the moments, fit the PCA (or take
 *      the saved model's fit: a run whose event names a `pcaModel` projects instead of fitting);
 *   5. project (`project-stage.ts`, per group): scores, the Parquet dataset's part, the rows of
 *      features.csv, the references, the rows to predict and the LDA's class statistics;
 *   6. fit-classifier (`classifier-stage.ts`): merge the groups' class statistics and fit the
 *      LDA (or take the saved model's, or choose k-NN); beside it, publish-features
 *      (`publish-stage.ts`): features.csv joined from the groups' parts, which needs no classifier;
 *   7. classify (`classify-stage.ts`, per group, when there is something to classify): the LDA's
 *      predictions of the group's rows, or their k-NN vote against every references part;
 *   8. publish (`publish-stage.ts`): predictions.csv, the model, the plots, report.json and
 *      report.html.
 *
 * No invocation's memory grows with the number of images beyond a group of shards; the merges'
 * inputs grow with the number of groups. `aggregateRun` runs the same stages one after another in
 * this process: what the state machine does, for the tests, the bench and an event without a
 * `stage`.
 */
import { AggregateEvent, AggregateStageEvent, AggregateStageEventSchema, parseEvent } from '../contracts/events';
import { AggregateResult, AggregateRunDeps, parseAggregateEvent } from './aggregate-shared';
import { classifyGroup } from './classify-stage';
import { fitClassifier } from './classifier-stage';
import { fitRun } from './fit-stage';
import { mergeMomentsNode, mergeMomentsTree } from './merge-stage';
import { momentsOfGroup } from './moments-stage';
import { planAggregate, PlanResult } from './plan-stage';
import { projectGroup } from './project-stage';
import { publishFeatures, publishRun } from './publish-stage';
import { DEFAULT_MOMENTS_MERGE_FAN_IN } from '../contracts/handler-env';

export type { AggregateResult, AggregateRunDeps, AggregateSettings, OutputName } from './aggregate-shared';
export { parseAggregateEvent } from './aggregate-shared';

/** What one stage returns to the state machine: small, pointers and counts only. */
export type AggregateStageResult =
  | PlanResult
  | { group: number; rows: number }
  | { level: number; node: number; rows: number }
  | { group: number; predicted: number }
  | { classify: boolean }
  | { classifier: string }
  | { features: string }
  | AggregateResult;

export function parseAggregateStageEvent(rawEvent: unknown): AggregateStageEvent {
  return parseEvent(AggregateStageEventSchema, rawEvent, 'aggregate stage event (AggregateStageEventSchema)');
}

/** One stage, as the state machine invokes it. */
export async function aggregateStage(rawEvent: unknown, deps: AggregateRunDeps): Promise<AggregateStageResult> {
  const event = parseAggregateStageEvent(rawEvent);
  switch (event.stage) {
    case 'plan':
      return planAggregate(event.run, deps);
    case 'moments':
      return momentsOfGroup(event.run, event.group, deps);
    case 'merge-moments':
      return mergeMomentsNode(event.run, event, deps);
    case 'fit':
      return fitRun(event.run, event.groups, event.fanIn, deps);
    case 'project':
      return projectGroup(event.run, event.group, deps);
    case 'fit-classifier':
      return fitClassifier(event.run, event.groups, deps);
    case 'publish-features':
      return publishFeatures(event.run, event.groups, deps);
    case 'classify':
      return classifyGroup(event.run, event.group, deps);
    case 'publish':
      return publishRun(event.run, event.groups, deps);
  }
}

/** Every stage in order, in this process. */
export async function aggregateRun(rawEvent: unknown, deps: AggregateRunDeps): Promise<AggregateResult> {
  const event: AggregateEvent = parseAggregateEvent(rawEvent);
  const { groups } = await planAggregate(event, deps);
  const indices = Array.from({ length: groups }, (_, g) => g);
  for (const g of indices) await momentsOfGroup(event, g, deps);
  const fanIn = deps.settings.momentsMergeFanIn ?? DEFAULT_MOMENTS_MERGE_FAN_IN;
  // As the state machine: a projecting run merges no moments.
  if (!event.pcaModel) await mergeMomentsTree(event, groups, fanIn, deps);
  const { classify } = await fitRun(event, groups, fanIn, deps);
  for (const g of indices) await projectGroup(event, g, deps);
  await fitClassifier(event, groups, deps);
  await publishFeatures(event, groups, deps);
  if (classify) for (const g of indices) await classifyGroup(event, g, deps);
  return publishRun(event, groups, deps);
}
