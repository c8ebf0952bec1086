/**
 * Lambda entry point of `AggregateFeatures`: env read once at init, the work done by
 * `aggregateRun` (streaming PCA, features.csv, model, plots, report).
 */
import { createS3Client } from '../aws/s3-client';
import { createObservability, observedHandler, recordRunMetrics } from '../aws/observability';
import { AggregateResult, aggregateRun, AggregateSettings } from './aggregate-run';
import { AggregateEnv, AggregateEnvSchema, parseHandlerEnv } from '../contracts/handler-env';

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
    keepEmbeddings: env.KEEP_EMBEDDINGS,
  };
}

const settings = aggregateSettingsFrom(readAggregateEnv());
const observability = createObservability('aggregate');
const { logger, tracer } = observability;
// Captured: the manifest and shard GETs and the output PUTs are subsegments of the trace.
const s3 = tracer ? tracer.captureAWSv3Client(createS3Client()) : createS3Client();

/** Logger context, tracer subsegment and one EMF record per run (lambdas/aws/observability.ts). */
export const handler = observedHandler(observability, 'aggregate', async (event, metrics): Promise<AggregateResult> => {
  const result = await aggregateRun(event, { s3, settings, log: logger });
  // Accuracy is there when the run had Test rows to classify (the k-NN of the aggregate step).
  recordRunMetrics(metrics, result);
  return result;
});
