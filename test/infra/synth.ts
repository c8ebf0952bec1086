/**
 * Test apps for the infrastructure tests, all built from one factory: the context of cdk.json
 * (feature flags and pipeline settings), optionally with other pipeline settings.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CONFIG_CONTEXT_KEY, configFromContext, PipelineConfigInput } from '../../lib/config';
import { FruitsPipelineStack } from '../../lib/fruits-pipeline-stack';

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
  const app = new App({ context: { ...context, [CONFIG_CONTEXT_KEY]: settings } });
  const stack = new FruitsPipelineStack(app, 'FruitsPipeline', { config: configFromContext(app) });
  return { app, stack, template: Template.fromStack(stack) };
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Placeholder values for the references a definition makes to the rest of the template. */
export const PLACEHOLDERS = {
  partition: 'aws',
  region: 'us-east-1',
  account: '123456789012',
  bucket: 'fruits-pipeline-data-placeholder',
  functionArn: (logicalId: string) => `arn:aws:lambda:us-east-1:123456789012:function:${logicalId}`,
};

/** Resolves the intrinsics a state machine definition uses (Fn::Join, Ref, Fn::GetAtt Arn) to placeholders. */
export function resolvePlaceholders(value: Json, bucketLogicalId: string): Json {
  if (Array.isArray(value)) return value.map((item) => resolvePlaceholders(item, bucketLogicalId));
  if (value === null || typeof value !== 'object') return value;
  if ('Fn::Join' in value) {
    const [separator, parts] = value['Fn::Join'] as [string, Json[]];
    return parts.map((part) => resolvePlaceholders(part, bucketLogicalId)).join(separator);
  }
  if ('Ref' in value) {
    const ref = value.Ref as string;
    if (ref === 'AWS::Partition') return PLACEHOLDERS.partition;
    if (ref === 'AWS::Region') return PLACEHOLDERS.region;
    if (ref === 'AWS::AccountId') return PLACEHOLDERS.account;
    if (ref === bucketLogicalId) return PLACEHOLDERS.bucket;
    throw new Error(`definition refers to an unexpected resource: Ref ${ref}`);
  }
  if ('Fn::GetAtt' in value) {
    const [logicalId, attribute] = value['Fn::GetAtt'] as [string, string];
    if (attribute !== 'Arn') throw new Error(`definition refers to an unexpected attribute: ${logicalId}.${attribute}`);
    return PLACEHOLDERS.functionArn(logicalId);
  }
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, resolvePlaceholders(item, bucketLogicalId)]));
}

/** The state machine's ASL definition with placeholder ARNs and bucket name. */
export function stateMachineDefinition(pipeline: SynthesizedPipeline): Record<string, any> {
  const { stack, template } = pipeline;
  const [machine] = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
  const bucketLogicalId = stack.getLogicalId(stack.bucket.node.defaultChild as any);
  const definitionString = resolvePlaceholders(machine.Properties.DefinitionString, bucketLogicalId);
  return JSON.parse(definitionString as string);
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
