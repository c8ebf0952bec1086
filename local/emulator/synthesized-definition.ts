/**
 * The state machine definition the local runner executes is the one `cdk synth` emits: the stack
 * is synthesized in-process, DefinitionString is taken from the template, and its CloudFormation
 * intrinsics are resolved the way CloudFormation would, with local stand-ins:
 * - `Fn::GetAtt [<function>, Arn]` -> a placeholder Lambda ARN named after the logical id, which
 *   the runner maps to the function's local handler module;
 * - `Ref <bucket>` -> the local bucket's name; pseudo parameters -> the local ARN scope.
 * Nothing of the definition is written by hand here.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { CfnFunction } from 'aws-cdk-lib/aws-lambda';
import { CfnBucket } from 'aws-cdk-lib/aws-s3';
import { CfnStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { CONFIG_CONTEXT_KEY, parsePipelineConfig, PipelineConfig, PipelineConfigInput } from '../../lib/config';
import { FruitsPipelineStack } from '../../lib/fruits-pipeline-stack';
import { DEFAULT_STACK_NAME } from '../../lambdas/contracts/state-machine';
import { AslDefinition, LOCAL_ARN_SCOPE, LocalArnScope } from './asl';

/** A Lambda function of the template, as the runner needs it. */
export interface SynthesizedFunction {
  readonly logicalId: string;
  /** The placeholder ARN that stands for the function in the resolved definition. */
  readonly arn: string;
  /** The function's environment in the template (the local run overrides some of it). */
  readonly environment: Record<string, string>;
  /** The function's `Timeout` in the template, seconds (Lambda's default, 3, when absent). */
  readonly timeoutSeconds: number;
  /** The function's `MemorySize` in the template, MB (Lambda's default, 128, when absent). */
  readonly memorySizeMb: number;
}

export interface SynthesizedPipeline {
  readonly definition: AslDefinition;
  readonly config: PipelineConfig;
  readonly featurize: SynthesizedFunction;
  readonly aggregate: SynthesizedFunction;
}

/** https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html (Timeout) */
const LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3;
const LAMBDA_DEFAULT_MEMORY_MB = 128;

type CfnTemplate = { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };

export interface SynthesizeOptions {
  /** Settings over the ones in cdk.json's `fruits-pipeline` context (what `cdk synth` would use). @default none */
  readonly config?: PipelineConfigInput;
  /** Name the bucket Ref resolves to. */
  readonly bucketName: string;
  readonly scope?: LocalArnScope;
}

/** Synthesize FruitsPipelineStack in-process and return its resolved definition and functions. */
export function synthesizePipeline(options: SynthesizeOptions): SynthesizedPipeline {
  const { flags, settings } = cdkJson();
  const config = parsePipelineConfig({ ...settings, ...options.config }, `cdk.json "${CONFIG_CONTEXT_KEY}" with local overrides`);
  const outdir = mkdtempSync(join(tmpdir(), 'fruits-synth-'));
  try {
    // cdk.json's context (feature flags) makes the in-process synth the same as `cdk synth`'s.
    // Staging would copy the whole image build context into outdir: the definition does not need it.
    const app = new App({ outdir, context: { ...flags, 'aws:cdk:disable-asset-staging': true } });
    const stack = new FruitsPipelineStack(app, DEFAULT_STACK_NAME, { config });
    const template = app.synth().getStackByName(stack.stackName).template as CfnTemplate;
    const scope = options.scope ?? LOCAL_ARN_SCOPE;
    const fn = (construct: { node: { defaultChild?: unknown } }): SynthesizedFunction => {
      const logicalId = stack.getLogicalId(construct.node.defaultChild as CfnFunction);
      const properties = template.Resources[logicalId]?.Properties ?? {};
      const variables = ((properties.Environment as { Variables?: Record<string, string> }) ?? {}).Variables ?? {};
      const timeoutSeconds = typeof properties.Timeout === 'number' ? properties.Timeout : LAMBDA_DEFAULT_TIMEOUT_SECONDS;
      const memorySizeMb = typeof properties.MemorySize === 'number' ? properties.MemorySize : LAMBDA_DEFAULT_MEMORY_MB;
      return { logicalId, arn: placeholderFunctionArn(scope, logicalId), environment: { ...variables }, timeoutSeconds, memorySizeMb };
    };
    const featurize = fn(stack.featurizeFunction);
    const aggregate = fn(stack.aggregateFunction);
    const definition = resolveStateMachineDefinition(template, {
      stateMachineLogicalId: stack.getLogicalId(stack.stateMachine.node.defaultChild as CfnStateMachine),
      refs: { [stack.getLogicalId(stack.bucket.node.defaultChild as CfnBucket)]: options.bucketName },
      scope,
    });
    return { definition, config, featurize, aggregate };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** The project's cdk.json context: feature flags, and the pipeline settings `cdk synth` would use. */
function cdkJson(): { flags: Record<string, unknown>; settings: Record<string, unknown> } {
  const file = join(__dirname, '..', '..', 'cdk.json');
  if (!existsSync(file)) return { flags: {}, settings: {} };
  const context = (JSON.parse(readFileSync(file, 'utf8')) as { context?: Record<string, unknown> }).context ?? {};
  // The settings reach the stack as its `config` prop, not through the context.
  const { [CONFIG_CONTEXT_KEY]: settings, ...flags } = context;
  return { flags, settings: typeof settings === 'object' && settings !== null ? (settings as Record<string, unknown>) : {} };
}

function placeholderFunctionArn(scope: LocalArnScope, logicalId: string): string {
  return `arn:${scope.partition}:lambda:${scope.region}:${scope.account}:function:${logicalId}`;
}

export interface ResolveOptions {
  /** Which state machine of the template. @default the only one */
  readonly stateMachineLogicalId?: string;
  /** Values for `Ref <logicalId>` (buckets...). Lambda functions resolve by themselves. */
  readonly refs?: Record<string, string>;
  readonly scope?: LocalArnScope;
}

/** Resolve the DefinitionString (and DefinitionSubstitutions) of a synthesized state machine. */
export function resolveStateMachineDefinition(template: CfnTemplate, options: ResolveOptions = {}): AslDefinition {
  const machines = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine');
  const found = options.stateMachineLogicalId ? machines.find(([id]) => id === options.stateMachineLogicalId) : machines.length === 1 ? machines[0] : undefined;
  if (!found) throw new Error(`expected one state machine in the template, found ${machines.map(([id]) => id).join(', ') || 'none'}`);
  const [id, machine] = found;
  const scope = options.scope ?? LOCAL_ARN_SCOPE;
  const resolve = (value: unknown): unknown => resolveIntrinsics(value, template, options.refs ?? {}, scope);
  const props = machine.Properties ?? {};
  let text: string;
  if (props.DefinitionString !== undefined) text = String(resolve(props.DefinitionString));
  else if (props.Definition !== undefined) text = JSON.stringify(resolve(props.Definition));
  else throw new Error(`state machine ${id} has no DefinitionString`);
  const substitutions = (props.DefinitionSubstitutions ?? {}) as Record<string, unknown>;
  for (const [name, value] of Object.entries(substitutions)) {
    text = text.split(`\${${name}}`).join(String(resolve(value)));
  }
  return JSON.parse(text) as AslDefinition;
}

function resolveIntrinsics(value: unknown, template: CfnTemplate, refs: Record<string, string>, scope: LocalArnScope): unknown {
  const recurse = (v: unknown) => resolveIntrinsics(v, template, refs, scope);
  if (Array.isArray(value)) return value.map(recurse);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 1) {
    const [fn, arg] = entries[0];
    if (fn === 'Fn::Join') {
      const [separator, parts] = arg as [string, unknown[]];
      return (recurse(parts) as unknown[]).join(separator);
    }
    if (fn === 'Ref') return resolveRef(String(arg), template, refs, scope);
    if (fn === 'Fn::GetAtt') {
      const [logicalId, attribute] = Array.isArray(arg) ? (arg as string[]) : String(arg).split('.');
      const resource = template.Resources[logicalId];
      if (resource?.Type === 'AWS::Lambda::Function' && attribute === 'Arn') return placeholderFunctionArn(scope, logicalId);
      if (resource?.Type === 'AWS::S3::Bucket' && attribute === 'Arn' && refs[logicalId]) return `arn:${scope.partition}:s3:::${refs[logicalId]}`;
      throw new Error(`cannot resolve Fn::GetAtt ${logicalId}.${attribute} locally`);
    }
    if (fn.startsWith('Fn::')) throw new Error(`cannot resolve ${fn} locally`);
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, recurse(v)]));
}

function resolveRef(name: string, template: CfnTemplate, refs: Record<string, string>, scope: LocalArnScope): string {
  // Only what the pipeline's definition uses: anything else is a change worth failing on.
  const pseudo: Record<string, string> = {
    'AWS::Partition': scope.partition,
    'AWS::Region': scope.region,
    'AWS::AccountId': scope.account,
  };
  if (name in pseudo) return pseudo[name];
  if (name in refs) return refs[name];
  throw new Error(`cannot resolve Ref ${name} locally (${template.Resources[name]?.Type ?? 'not in the template'})`);
}
