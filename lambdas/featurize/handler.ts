/**
 * Lambda entry point of the Distributed Map child (`FeaturizeBatch`): env read once at init,
 * the featurizer loaded once per container, the work done by `featurizeBatch`.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { z } from 'zod';
import { MAX_INPUT_PIXELS_LIMIT, type FeaturizeBatchSummary } from '../contracts/events';
import { DEFAULT_MODEL_ID, Featurizer, FeaturizerConfig, getFeaturizer } from '../core/featurizer';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS } from '../core/preprocess';
import { createS3Client } from '../aws/s3-client';
import { featurizeBatch, FeaturizeBatchSettings } from './featurize-batch';
import { parseHandlerEnv } from '../contracts/handler-env';

export { featurizeBatch, batchHash } from './featurize-batch';
export type { FeaturizeBatchDeps, FeaturizeBatchSettings } from './featurize-batch';

const positiveInt = (max: number) => z.coerce.number().int().positive().max(max);

/** The handler's environment (docs/DESIGN.md lists it). Unset values take the defaults. */
export const FeaturizeEnvSchema = z.object({
  FEATURIZER: z.enum(['cnn', 'pixels']).default('cnn'),
  MODEL_ID: z.string().regex(/^[A-Za-z0-9._-]+$/).default(DEFAULT_MODEL_ID),
  MODEL_DIR: z.string().min(1).optional(),
  /** CNN input side; unset = DEFAULT_IMAGE_SIZE (featurizer.ts). */
  IMAGE_SIZE: z.coerce.number().int().min(32).max(1024).optional(),
  /** Comma-separated layer names, pooled side by side; unset = DEFAULT_FEATURE_LAYERS. */
  FEATURE_LAYER: z.string().min(1).optional(),
  /** `true`/`false`: signed square root of the pooled features; unset = DEFAULT_SQRT. */
  FEATURE_SQRT: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
  MAX_INPUT_PIXELS: positiveInt(MAX_INPUT_PIXELS_LIMIT).default(DEFAULT_MAX_INPUT_PIXELS),
  MAX_INPUT_BYTES: positiveInt(1024 ** 3).default(DEFAULT_MAX_INPUT_BYTES),
  READ_CONCURRENCY: positiveInt(64).default(8),
  /** Images decoded, then featurized, at a time. */
  INFER_BATCH_SIZE: positiveInt(256).default(32),
  TF_BACKEND: z.enum(['tensorflow', 'wasm', 'cpu']).optional(),
});
export type FeaturizeEnv = z.infer<typeof FeaturizeEnvSchema>;

/** Parse the environment; throws with every bad variable named (a cold start fails fast). */
export function readFeaturizeEnv(env: NodeJS.ProcessEnv = process.env): FeaturizeEnv {
  return parseHandlerEnv(FeaturizeEnvSchema, env, 'featurize');
}

export function featurizerConfigFrom(env: FeaturizeEnv): FeaturizerConfig {
  return {
    kind: env.FEATURIZER,
    modelId: env.MODEL_ID,
    modelDir: env.MODEL_DIR,
    imageSize: env.IMAGE_SIZE,
    featureLayers: env.FEATURE_LAYER?.split(',').map((name) => name.trim()).filter(Boolean),
    sqrt: env.FEATURE_SQRT,
    inferBatchSize: env.INFER_BATCH_SIZE,
    backend: env.TF_BACKEND,
  };
}

export function batchSettingsFrom(env: FeaturizeEnv): FeaturizeBatchSettings {
  return {
    maxInputPixels: env.MAX_INPUT_PIXELS,
    maxInputBytes: env.MAX_INPUT_BYTES,
    readConcurrency: env.READ_CONCURRENCY,
    chunkSize: env.INFER_BATCH_SIZE,
  };
}

const env = readFeaturizeEnv();
const logger = new Logger({ serviceName: 'fruits-pipeline', persistentKeys: { function: 'featurize' } });
const s3 = createS3Client();
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

export async function handler(event: unknown): Promise<FeaturizeBatchSummary> {
  const featurizer = await getFeaturizer(featurizerConfig);
  announce(featurizer);
  return featurizeBatch(event, { s3, featurizer, settings, log: logger });
}
