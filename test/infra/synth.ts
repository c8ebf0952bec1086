/**
 * Test apps for the infrastructure tests, all built from one factory: the context of cdk.json
 * (feature flags and pipeline settings), optionally with other pipeline settings.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { App } from 'aws-cdk-lib';
import { testApp } from '../support/cdk-app';
import { Template } from 'aws-cdk-lib/assertions';
import { CONFIG_CONTEXT_KEY, configFromContext, PipelineConfigInput } from '../../lib/config';
import { FruitsPipelineStack } from '../../lib/fruits-pipeline-stack';
import { resolveStateMachineDefinition } from '../../local/emulator/synthesized-definition';

export const PROJECT_ROOT = join(__dirname, '..', '..');

/** cdk.json as `cdk synth` reads it. */
export function cdkJson(): { app: string; context: Record<string, unknown> } {
  return JSON.parse(readFileSync(join(PROJECT_ROOT, 'cdk.json'), 'utf8'));
}

export interface SynthesizedPipeline {
  readonly app: App;
  readonly stack: FruitsPipelineStack;
  readonly template: Template;
}

/** The stack as `cdk synth` makes it, with `overrides` merged over the cdk.json settings. */
export function synthesizePipeline(overrides: PipelineConfigInput = {}): SynthesizedPipeline {
  const context = cdkJson().context;
  const settings = { ...(context[CONFIG_CONTEXT_KEY] as object), ...overrides };
  const app = testApp({ context: { ...context, [CONFIG_CONTEXT_KEY]: settings } });
  const stack = new FruitsPipelineStack(app, 'FruitsPipeline', { config: configFromContext(app) });
  return { app, stack, template: Template.fromStack(stack) };
}

/** Placeholder values for the references a definition makes to the rest of the template. */
export const PLACEHOLDERS = {
  partition: 'aws',
  region: 'us-east-1',
  account: '123456789012',
  bucket: 'fruits-pipeline-data-placeholder',
};

/**
 * The state machine's ASL definition with placeholder ARNs and bucket name, resolved by the same
 * code the local runner uses (functions become `arn:aws:lambda:<region>:<account>:function:<id>`).
 */
export function stateMachineDefinition(pipeline: SynthesizedPipeline): Record<string, any> {
  const { stack, template } = pipeline;
  const bucketLogicalId = stack.getLogicalId(stack.bucket.node.defaultChild as any);
  const { bucket, ...scope } = PLACEHOLDERS;
  return resolveStateMachineDefinition(template.toJSON() as any, { refs: { [bucketLogicalId]: bucket }, scope }) as Record<string, any>;
}

/** Replaces the 64-hex asset hashes (image tags, S3 keys, digests) so a snapshot only follows infrastructure. */
export function maskAssetHashes(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(/[0-9a-f]{64}/g, '[ASSET-HASH]');
  if (Array.isArray(value)) return value.map(maskAssetHashes);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [maskAssetHashes(key) as string, maskAssetHashes(item)]));
  }
  return value;
}
