/**
 * Lambda entry point of the Distributed Map child (`FeaturizeBatch`): env read once at init,
 * the featurizer loaded once per container, the work done by `featurizeBatch`.
 */
import { type FeaturizeBatchSummary } from '../contracts/events';
import { FeaturizeEnv, FeaturizeEnvSchema, parseHandlerEnv } from '../contracts/handler-env';
import { Featurizer, featurizerConfigFromEnv, getFeaturizer } from '../model';
import { createS3Client } from '../aws/s3-client';
import { createObservability, observedHandler, recordBatchMetrics } from '../aws/observability';
import { featurizeBatch, FeaturizeBatchSettings } from './featurize-batch';
import { countExternalMemoryInHeapLimit } from '../common';

export { featurizeBatch, batchHash } from './featurize-batch';
export type { FeaturizeBatchDeps, FeaturizeBatchSettings } from './featurize-batch';

/** Parse the environment (lambdas/contracts/handler-env.ts); throws with every bad variable named (a cold start fails fast). */
export function readFeaturizeEnv(env: NodeJS.ProcessEnv = process.env): FeaturizeEnv {
  return parseHandlerEnv(FeaturizeEnvSchema, env, 'featurize');
}

/** The featurizer's configuration from the environment (lambdas/model/featurizer.ts). */
export const featurizerConfigFrom = featurizerConfigFromEnv;

export function batchSettingsFrom(env: FeaturizeEnv): FeaturizeBatchSettings {
  return {
    maxInputPixels: env.MAX_INPUT_PIXELS,
    maxInputBytes: env.MAX_INPUT_BYTES,
    readConcurrency: env.READ_CONCURRENCY,
    chunkSize: env.INFER_BATCH_SIZE,
    fieldCopyEvery: env.FIELD_COPY_EVERY,
  };
}

countExternalMemoryInHeapLimit();
const env = readFeaturizeEnv();
const observability = createObservability('featurize');
const { logger, tracer } = observability;
// Captured: every GET and the shard PUT are subsegments of the invocation's trace.
const s3 = tracer ? tracer.captureAWSv3Client(createS3Client()) : createS3Client();
const settings = batchSettingsFrom(env);
const featurizerConfig = featurizerConfigFrom(env);
let featurizerAnnounced = false;

/** getFeaturizer caches the model per container (and retries a failed load); this logs it once. */
function announce(featurizer: Featurizer): void {
  if (featurizerAnnounced) return;
  featurizerAnnounced = true;
  logger.info('featurizer ready', {
    featurizer: featurizer.id,
    backend: featurizer.backend,
    backendsSkipped: featurizer.backendsSkipped,
    dim: featurizer.dim,
    imageSize: featurizer.imageSize,
  });
  for (const warning of featurizer.warnings) logger.warn(warning);
}

/** Logger context, tracer subsegment and one EMF record per batch (lambdas/aws/observability.ts). */
export const handler = observedHandler(observability, 'featurize', async (event, metrics): Promise<FeaturizeBatchSummary> => {
  const featurizer = await getFeaturizer(featurizerConfig);
  announce(featurizer);
  return featurizeBatch(event, { s3, featurizer, settings, log: logger, onMeasured: (measured) => recordBatchMetrics(metrics, measured) });
});
