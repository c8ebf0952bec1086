/**
 * Lambda entry point of `AggregateFeatures`: env read once at init, the work done by
 * `aggregateRun` (streaming PCA, features.csv, model, plots, report).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { createS3Client } from '../aws/s3-client';
import { AggregateResult, aggregateRun, AggregateSettings } from './aggregate-run';
import { AggregateEnv, AggregateEnvSchema, parseHandlerEnv } from '../contracts/handler-env';

export { aggregateRun } from './aggregate-run';
export type { AggregateResult, AggregateSettings } from './aggregate-run';

/** Parse the environment; throws with every bad variable named (a cold start fails fast). */
export function readAggregateEnv(env: NodeJS.ProcessEnv = process.env): AggregateEnv {
  return parseHandlerEnv(AggregateEnvSchema, env, 'aggregate');
}

export function aggregateSettingsFrom(env: AggregateEnv): AggregateSettings {
  return { components: env.PCA_COMPONENTS, varianceThreshold: env.PCA_VARIANCE_THRESHOLD };
}

const settings = aggregateSettingsFrom(readAggregateEnv());
const logger = new Logger({ serviceName: 'fruits-pipeline', persistentKeys: { function: 'aggregate' } });
const s3 = createS3Client();

export async function handler(event: unknown): Promise<AggregateResult> {
  return aggregateRun(event, { s3, settings, log: logger });
}
