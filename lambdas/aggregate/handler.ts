/**
 * Lambda entry point of the aggregate's stages (`PlanAggregate`, the `ComputeMoments`,
 * `MergeMoments`, `ProjectGroups` and `ClassifyGroups` map children, `FitModel`, `FitClassifier`,
 * `PublishFeatures`, `PublishRun`): env read once at
 * init, the event's `stage` names the work (aggregate-run.ts). An event without a `stage` (an
 * AggregateEvent) runs every stage in this one invocation.
 */
import { createS3Client } from '../aws/s3-client';
import { createObservability, observedHandler, recordRunMetrics } from '../aws/observability';
import { AggregateResult, aggregateRun, AggregateSettings, aggregateStage, AggregateStageResult } from './aggregate-run';
import { AggregateEnv, AggregateEnvSchema, parseHandlerEnv } from '../contracts/handler-env';
import { countExternalMemoryInHeapLimit } from '../common';

export { aggregateRun } from './aggregate-run';
export type { AggregateResult, AggregateSettings } from './aggregate-run';

/** Parse the environment; throws with every bad variable named (a cold start fails fast). */
export function readAggregateEnv(env: NodeJS.ProcessEnv = process.env): AggregateEnv {
  return parseHandlerEnv(AggregateEnvSchema, env, 'aggregate');
}

export function aggregateSettingsFrom(env: AggregateEnv): AggregateSettings {
  return {
    components: env.PCA_COMPONENTS,
    varianceThreshold: env.PCA_VARIANCE_THRESHOLD,
    knnNeighbours: env.KNN_NEIGHBOURS,
    classifier: env.CLASSIFIER,
    classifierComponents: env.CLASSIFIER_COMPONENTS,
    keepEmbeddings: env.KEEP_EMBEDDINGS,
    groupShards: env.AGGREGATE_GROUP_SHARDS,
    momentsMergeFanIn: env.MOMENTS_MERGE_FAN_IN,
  };
}

countExternalMemoryInHeapLimit();
const settings = aggregateSettingsFrom(readAggregateEnv());
const observability = createObservability('aggregate');
const { logger, tracer } = observability;
// Captured: the manifest and shard GETs and the output PUTs are subsegments of the trace.
const s3 = tracer ? tracer.captureAWSv3Client(createS3Client()) : createS3Client();

/** Logger context, tracer subsegment and one EMF record per run (lambdas/aws/observability.ts). */
export const handler = observedHandler(observability, 'aggregate', async (event, metrics): Promise<AggregateStageResult> => {
  const deps = { s3, settings, log: logger };
  const staged = typeof event === 'object' && event !== null && 'stage' in event;
  const result = staged ? await aggregateStage(event, deps) : await aggregateRun(event, deps);
  // The run's figures once, from the stage that publishes; accuracy when it had Test rows to classify.
  if ('outputs' in result) recordRunMetrics(metrics, result as AggregateResult);
  return result;
});
