import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { PipelineConfigInput } from '../../lib/config';
import { INVOCATION_MARGIN, MAX_BATCH_INPUT_BYTES } from '../../lib/constructs/feature-pipeline';
import { ServiceWidePolicy } from '../../lib/constructs/service-wide-policy';
import { maskAssetHashes, stateMachineDefinition, synthesizePipeline, SynthesizedPipeline } from './synth';
// asl-validator ships CommonJS with a default-style export.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- asl-validator has no types
const aslValidator = require('asl-validator') as (definition: unknown) => { isValid: boolean; errorsText: (separator?: string) => string };

const AGGREGATE_TASKS = ['PlanAggregate', 'FitModel', 'PublishRun'] as const;
/** The aggregate Tasks that run beside one another, each the one state of a branch of this Parallel. */
const BESIDE = { parallel: 'FitClassifierBesideFeatures', tasks: ['FitClassifier', 'PublishFeatures'] } as const;
/** A Task of a branch of the Parallel. */
function besideTask(states: Record<string, any>, name: string): Record<string, any> {
  const branch = states[BESIDE.parallel].Branches.find((candidate: { States: Record<string, unknown> }) => name in candidate.States);
  return branch.States[name];
}
const AGGREGATE_MAPS = { ComputeMoments: 'MomentsOfGroup', ProjectGroups: 'ProjectGroup', ClassifyGroups: 'ClassifyGroup' } as const;
/** The moments merge tree's states, and the child of its map. */
const MERGE_TREE_STATES = ['ChooseMomentsMerge', 'StartMomentsMerge', 'NextMergeLevel', 'MergeMoments', 'ChooseMoreMerging'] as const;
const STATE_NAMES = [
  'FeaturizeImages',
  'FeaturizeBatch',
  ...AGGREGATE_TASKS,
  BESIDE.parallel,
  ...BESIDE.tasks,
  ...Object.keys(AGGREGATE_MAPS),
  ...Object.values(AGGREGATE_MAPS),
  ...MERGE_TREE_STATES,
  'MergeMomentsNode',
  'ChooseClassification',
  'WriteFailureReport',
  'RunFailed',
];

/** Every setting the tests check away from its cdk.json value, in one second synth. */
const VARIANT: PipelineConfigInput = {
  batchSize: 25,
  maxConcurrency: 7,
  toleratedFailurePercentage: 0,
  intermediateRetentionDays: 2,
  removalPolicy: 'destroy',
  architecture: 'arm64',
  modelId: 'mobilenet_v1_0.75_224',
  featurizeReservedConcurrency: 60,
  pcaVarianceThreshold: 0.9,
  imageSize: 160,
  featureLayers: ['conv_pw_11_relu', 'conv_pw_13_relu'],
  featurePower: 0.5,
  maxInputPixels: 1_000_000,
  readConcurrency: 4,
  momentsMergeFanIn: 8,
};

let pipeline: SynthesizedPipeline;
let variant: SynthesizedPipeline;
let definition: Record<string, any>;
beforeAll(() => {
  pipeline = synthesizePipeline();
  variant = synthesizePipeline(VARIANT);
  definition = stateMachineDefinition(pipeline);
});

type Statement = { Action: string | string[]; Resource: unknown; Effect: string; Condition?: unknown };
function policyStatements(): Statement[] {
  const policies = Object.values(pipeline.template.findResources('AWS::IAM::Policy'));
  return policies.flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}
function asList<T>(value: T | T[]): T[] {
  return Array.isArray(value) ? value : [value];
}
function policyOf(roleIdPrefix: string): Statement[] {
  const policies = pipeline.template.findResources('AWS::IAM::Policy');
  const [id] = Object.keys(policies).filter((logicalId) => logicalId.startsWith(roleIdPrefix));
  return policies[id].Properties.PolicyDocument.Statement;
}
/** The container images of the stack's asset manifest (what `cdk deploy` would build). */
function dockerImageAssets(synthesized: SynthesizedPipeline): Record<string, { source: Record<string, any> }> {
  const assembly = synthesized.app.synth();
  const manifest = JSON.parse(readFileSync(join(assembly.directory, 'FruitsPipeline.assets.json'), 'utf8'));
  return manifest.dockerImages;
}
const bucketId = () => pipeline.stack.getLogicalId(pipeline.stack.bucket.node.defaultChild as any);
const objectsUnder = (prefix: string) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId(), 'Arn'] }, `/${prefix}*`]] });

test('template snapshot (asset hashes masked)', () => {
  expect(maskAssetHashes(pipeline.template.toJSON())).toMatchSnapshot();
});

describe('state machine', () => {
  test('keeps the contract state names', () => {
    const map = definition.States.FeaturizeImages;
    const children = ['FeaturizeBatch', 'MergeMomentsNode', ...Object.values(AGGREGATE_MAPS), ...BESIDE.tasks] as string[];
    expect(Object.keys(definition.States)).toEqual(expect.arrayContaining(STATE_NAMES.filter((name) => !children.includes(name))));
    expect(Object.keys(map.ItemProcessor.States)).toEqual(['FeaturizeBatch']);
  });

  test('FeaturizeImages is a Distributed Map with reader, batcher, V2 result writer and the configured numbers', () => {
    const map = definition.States.FeaturizeImages;
    expect(map).toMatchObject({
      Type: 'Map',
      MaxConcurrency: 200,
      ToleratedFailurePercentage: 5,
      ItemProcessor: { ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' } },
      ItemReader: {
        Resource: 'arn:aws:states:::s3:listObjectsV2',
        Parameters: { 'Bucket.$': '$.bucket', 'Prefix.$': '$.inputPrefix' },
      },
      ItemBatcher: {
        MaxItemsPerBatch: 250,
        MaxInputBytesPerBatch: MAX_BATCH_INPUT_BYTES,
        BatchInput: {
          'bucket.$': '$.bucket',
          'inputPrefix.$': '$.inputPrefix',
          'runId.$': '$.runId',
          'outputPrefix.$': '$.outputPrefix',
          'workPrefix.$': '$.workPrefix',
        },
      },
      // `Bucket.$` from the input only exists in the V2 ResultWriter (feature flag in cdk.json).
      ResultWriter: {
        Resource: 'arn:aws:states:::s3:putObject',
        Parameters: { 'Bucket.$': '$.bucket', 'Prefix.$': "States.Format('{}map-results', $.workPrefix)" },
        // The children's outputs alone (a failed child's whole record): not every key of every batch.
        WriterConfig: { Transformation: 'COMPACT', OutputType: 'JSON' },
      },
      ResultSelector: { 'MapRunArn.$': '$.MapRunArn', 'ResultWriterDetails.$': '$.ResultWriterDetails' },
      ResultPath: '$.mapResult',
      Next: 'PlanAggregate',
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'WriteFailureReport' }],
    });
  });

  test('batch size and concurrency follow the config', () => {
    const other = stateMachineDefinition(variant);
    expect(other.States.FeaturizeImages.ItemBatcher.MaxItemsPerBatch).toBe(25);
    expect(other.States.FeaturizeImages.MaxConcurrency).toBe(7);
    expect(other.States.FeaturizeImages.ToleratedFailurePercentage ?? 0).toBe(0);
  });

  test('Lambda tasks pass the whole state, return the payload and retry transient errors with jittered backoff', () => {
    const featurizeId = pipeline.stack.getLogicalId(pipeline.stack.featurizeFunction.node.defaultChild as any);
    const aggregateId = pipeline.stack.getLogicalId(pipeline.stack.aggregateFunction.node.defaultChild as any);
    const retry = [
      {
        ErrorEquals: [
          'Lambda.ServiceException',
          'Lambda.AWSLambdaException',
          'Lambda.SdkClientException',
          'Lambda.TooManyRequestsException',
          'TransientStorageError',
        ],
        BackoffRate: 2,
        JitterStrategy: 'FULL',
      },
    ];
    const childTasks = [
      [definition.States.FeaturizeImages.ItemProcessor.States.FeaturizeBatch, featurizeId],
      ...Object.entries(AGGREGATE_MAPS).map(([map, task]) => [definition.States[map].ItemProcessor.States[task], aggregateId]),
      [definition.States.MergeMoments.ItemProcessor.States.MergeMomentsNode, aggregateId],
    ];
    for (const [task, id] of childTasks) {
      expect(task).toMatchObject({
        Type: 'Task',
        Resource: 'arn:aws:states:::lambda:invoke',
        Parameters: { FunctionName: `arn:aws:lambda:us-east-1:123456789012:function:${id}`, 'Payload.$': '$' },
        OutputPath: '$.Payload',
        Retry: retry,
      });
      expect(task.Retry).toHaveLength(1);
    }
    // The aggregate's own Tasks name their stage and hand over the run's settings.
    expect(definition.States.PlanAggregate.Parameters.Payload).toEqual({ stage: 'plan', 'run.$': '$' });
    expect(definition.States.FitModel.Parameters.Payload).toMatchObject({ stage: 'fit', 'groups.$': '$.plan.groups', run: { 'runId.$': '$.runId' } });
    expect(definition.States.PublishRun).toMatchObject({ OutputPath: '$.Payload', Parameters: { Payload: { stage: 'publish', 'groups.$': '$.plan.groups' } } });
    // The classifier is fitted once, after every group's projection, before any group is classified;
    // features.csv, which needs no classifier, is joined beside it.
    expect(definition.States.ProjectGroups.Next).toBe(BESIDE.parallel);
    expect(definition.States[BESIDE.parallel]).toMatchObject({ Type: 'Parallel', Next: 'ChooseClassification', ResultPath: null });
    expect(
      definition.States[BESIDE.parallel].Branches.map((branch: { StartAt: string; States: object }) => [branch.StartAt, Object.keys(branch.States)]),
    ).toEqual(BESIDE.tasks.map((name) => [name, [name]]));
    expect(besideTask(definition.States, 'FitClassifier')).toMatchObject({
      End: true,
      ResultPath: null,
      Parameters: { Payload: { stage: 'fit-classifier', 'groups.$': '$.plan.groups', run: { 'workPrefix.$': '$.workPrefix' } } },
    });
    expect(besideTask(definition.States, 'PublishFeatures')).toMatchObject({
      End: true,
      ResultPath: null,
      Parameters: { Payload: { stage: 'publish-features', 'groups.$': '$.plan.groups', run: { 'outputPrefix.$': '$.outputPrefix' } } },
    });
    for (const name of [...AGGREGATE_TASKS, ...Object.keys(AGGREGATE_MAPS), 'MergeMoments', BESIDE.parallel]) {
      expect(definition.States[name].Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'WriteFailureReport' }]);
    }
    for (const name of AGGREGATE_TASKS) expect(definition.States[name].Retry).toMatchObject(retry);
    for (const name of BESIDE.tasks) expect(besideTask(definition.States, name).Retry).toMatchObject(retry);
  });

  test("each aggregate group map reads the plan's groups (ItemReader s3:getObject JSON), one child per group, none tolerated to fail", () => {
    for (const [map, task] of Object.entries(AGGREGATE_MAPS)) {
      const stage = { ComputeMoments: 'moments', ProjectGroups: 'project', ClassifyGroups: 'classify' }[map];
      expect(definition.States[map]).toMatchObject({
        Type: 'Map',
        Label: map,
        ItemReader: {
          Resource: 'arn:aws:states:::s3:getObject',
          ReaderConfig: { InputType: 'JSON' },
          Parameters: { 'Bucket.$': '$.bucket', 'Key.$': '$.plan.groupsKey' },
        },
        ItemSelector: { stage, 'group.$': '$$.Map.Item.Value.group', run: { 'bucket.$': '$.bucket', 'workPrefix.$': '$.workPrefix' } },
        MaxConcurrency: 100,
        ResultPath: null,
        ItemProcessor: { ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' }, StartAt: task },
      });
      expect(definition.States[map].ToleratedFailurePercentage ?? 0).toBe(0);
      expect(definition.States[map].ItemBatcher).toBeUndefined();
    }
    expect(definition.States.ChooseClassification.Choices).toEqual([{ Variable: '$.fit.classify', BooleanEquals: true, Next: 'ClassifyGroups' }]);
    expect(definition.States.ChooseClassification.Default).toBe('PublishRun');
  });

  test('more groups than the merge fan-in: their moments merged as a tree (a Distributed Map per level) before the fit; fewer, or a projecting run, skip it', () => {
    expect(definition.States.ComputeMoments.Next).toBe('ChooseMomentsMerge');
    expect(definition.States.ChooseMomentsMerge).toEqual({
      Type: 'Choice',
      Choices: [
        {
          And: [{ Not: { Variable: '$.pcaModel', IsPresent: true } }, { Variable: '$.plan.groups', NumericGreaterThan: 16 }],
          Next: 'StartMomentsMerge',
        },
      ],
      Default: 'FitModel',
    });
    expect(definition.States.StartMomentsMerge).toMatchObject({
      Parameters: { level: 0, 'partials.$': '$.plan.groups' },
      ResultPath: '$.merge',
      Next: 'NextMergeLevel',
    });
    expect(definition.States.NextMergeLevel).toMatchObject({
      Type: 'Pass',
      ResultPath: '$.merge',
      Parameters: {
        'level.$': 'States.MathAdd($.merge.level, 1)',
        'inputs.$': '$.merge.partials',
        'firsts.$': 'States.ArrayRange(0, States.MathAdd($.merge.partials, -1), 16)',
      },
      Next: 'MergeMoments',
    });
    expect(definition.States.MergeMoments).toMatchObject({
      Type: 'Map',
      Label: 'MergeMoments',
      ItemsPath: '$.merge.firsts',
      ItemSelector: {
        stage: 'merge-moments',
        run: { 'bucket.$': '$.bucket', 'workPrefix.$': '$.workPrefix' },
        'level.$': '$.merge.level',
        'first.$': '$$.Map.Item.Value',
        'inputs.$': '$.merge.inputs',
        fanIn: 16,
      },
      MaxConcurrency: 100,
      ResultPath: null,
      Next: 'ChooseMoreMerging',
      ItemProcessor: { ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' }, StartAt: 'MergeMomentsNode' },
    });
    expect(definition.States.MergeMoments.ItemReader).toBeUndefined();
    expect(definition.States.ChooseMoreMerging).toEqual({
      Type: 'Choice',
      Choices: [{ Variable: '$.merge.partials', NumericGreaterThan: 16, Next: 'NextMergeLevel' }],
      Default: 'FitModel',
    });
    expect(definition.States.FitModel.Parameters.Payload).toMatchObject({ fanIn: 16 });
    // One setting: the definition's fan-in and the function's variable (a run of every stage in one invocation).
    const other = stateMachineDefinition(variant);
    expect(other.States.MergeMoments.ItemSelector.fanIn).toBe(8);
    expect(other.States.ChooseMoreMerging.Choices[0].NumericGreaterThan).toBe(8);
    expect(other.States.FitModel.Parameters.Payload.fanIn).toBe(8);
    pipeline.template.hasResourceProperties('AWS::Lambda::Function', {
      ImageConfig: { Command: ['lambdas/aggregate/handler.handler'] },
      Environment: { Variables: { MOMENTS_MERGE_FAN_IN: '16' } },
    });
    variant.template.hasResourceProperties('AWS::Lambda::Function', {
      ImageConfig: { Command: ['lambdas/aggregate/handler.handler'] },
      Environment: { Variables: { MOMENTS_MERGE_FAN_IN: '8' } },
    });
  });

  test('both Lambda tasks time out INVOCATION_MARGIN after their function, which follows the config', () => {
    // The margin covers what the function timeout does not count (cold start, the invoke itself).
    expect(INVOCATION_MARGIN.toSeconds()).toBe(60);
    const withTimeouts = synthesizePipeline({ featurizeTimeoutSeconds: 120, aggregateTimeoutSeconds: 600 });
    for (const [synthesized, featurizeSeconds, aggregateSeconds] of [
      [pipeline, 300, 900],
      [withTimeouts, 120, 600],
    ] as const) {
      const { stack, template } = synthesized;
      const functionTimeout = (fn: typeof stack.featurizeFunction) =>
        template.toJSON().Resources[stack.getLogicalId(fn.node.defaultChild as any)].Properties.Timeout;
      expect(functionTimeout(stack.featurizeFunction)).toBe(featurizeSeconds);
      expect(functionTimeout(stack.aggregateFunction)).toBe(aggregateSeconds);
      const states = stateMachineDefinition(synthesized).States;
      expect(states.FeaturizeImages.ItemProcessor.States.FeaturizeBatch.TimeoutSeconds).toBe(featurizeSeconds + 60);
      for (const name of AGGREGATE_TASKS) expect(states[name].TimeoutSeconds).toBe(aggregateSeconds + 60);
      for (const name of BESIDE.tasks) expect(besideTask(states, name).TimeoutSeconds).toBe(aggregateSeconds + 60);
      for (const [map, task] of Object.entries(AGGREGATE_MAPS)) expect(states[map].ItemProcessor.States[task].TimeoutSeconds).toBe(aggregateSeconds + 60);
    }
  });

  test('a failed run writes <outputPrefix>failure.json, then fails with the original error', () => {
    expect(definition.States.WriteFailureReport).toMatchObject({
      Type: 'Task',
      Resource: 'arn:aws:states:::aws-sdk:s3:putObject',
      Parameters: { 'Bucket.$': '$.bucket', 'Key.$': "States.Format('{}failure.json', $.outputPrefix)", Body: { 'error.$': '$.error' } },
      ResultPath: null,
      Next: 'RunFailed',
    });
    expect(definition.States.RunFailed).toEqual({ Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' });
  });

  test('uses JSONPath only (the local interpreter has no JSONata)', () => {
    expect(JSON.stringify(definition)).not.toMatch(/JSONata|\{%/);
  });

  test('validates with asl-validator', () => {
    const { isValid, errorsText } = aslValidator(definition);
    if (!isValid) throw new Error(errorsText('\n'));
    expect(isValid).toBe(true);
  });

  test('logs everything to a vended-logs group named after the stack, with X-Ray tracing', () => {
    pipeline.template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: Match.stringLikeRegexp('^/aws/vendedlogs/states/FruitsPipeline-'),
      RetentionInDays: 30,
    });
    pipeline.template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: true },
    });
  });
});

describe('upload trigger', () => {
  test('starts a run only for input/<dataset>/_START of this bucket, with { trigger: { bucket, key } }', () => {
    pipeline.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created'],
        detail: {
          bucket: { name: [{ Ref: bucketId() }] },
          object: { key: [{ wildcard: 'input/*/_START' }] },
        },
      },
      Targets: [
        Match.objectLike({
          Arn: { Ref: Match.stringLikeRegexp('StateMachine') },
          InputTransformer: {
            InputPathsMap: { 'detail-bucket-name': '$.detail.bucket.name', 'detail-object-key': '$.detail.object.key' },
            InputTemplate: '{"trigger":{"bucket":<detail-bucket-name>,"key":<detail-object-key>}}',
          },
        }),
      ],
    });
    expect(Object.keys(pipeline.template.findResources('AWS::Events::Rule')).filter((id) => id.startsWith('UploadTrigger'))).toHaveLength(1);
  });
});

describe('data bucket', () => {
  test('is private, encrypted, versioned, logged and announces uploads to EventBridge', () => {
    pipeline.template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      VersioningConfiguration: { Status: 'Enabled' },
      LoggingConfiguration: { DestinationBucketName: Match.anyValue() },
      NotificationConfiguration: { EventBridgeConfiguration: { EventBridgeEnabled: true } },
    });
    pipeline.template.resourceCountIs('Custom::S3BucketNotifications', 0);
  });

  test('expires work/ after the configured days, keeps results/, cleans old versions and uploads', () => {
    const [bucket] = Object.values(pipeline.template.findResources('AWS::S3::Bucket', { Properties: { VersioningConfiguration: Match.anyValue() } }));
    const rules = bucket.Properties.LifecycleConfiguration.Rules;
    expect(rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Prefix: 'work/', ExpirationInDays: 7, Status: 'Enabled' }),
        expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
      ]),
    );
    expect(JSON.stringify(rules)).not.toMatch(/results\//);
    const other = variant.template;
    other.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ Prefix: 'work/', ExpirationInDays: 2 })]) },
    });
    other.hasResource('AWS::S3::Bucket', { DeletionPolicy: 'Delete' });
  });

  test('is retained by default', () => {
    const buckets = Object.values(pipeline.template.findResources('AWS::S3::Bucket'));
    expect(buckets.map((bucket) => bucket.DeletionPolicy)).toEqual(['Retain', 'Retain']);
  });

  test('bucket policies deny requests without TLS', () => {
    const policies = Object.values(pipeline.template.findResources('AWS::S3::BucketPolicy'));
    expect(policies).toHaveLength(2);
    for (const policy of policies) {
      expect(policy.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } }, Principal: { AWS: '*' } }),
        ]),
      );
    }
  });
});

describe('functions', () => {
  test('both run the one image, with their own CMD, architecture, tracing and log group', () => {
    const functions = Object.values(pipeline.template.findResources('AWS::Lambda::Function'));
    expect(functions).toHaveLength(2);
    const imageUris = new Set(functions.map((fn) => JSON.stringify(fn.Properties.Code.ImageUri)));
    expect(imageUris.size).toBe(1);
    expect(functions.map((fn) => fn.Properties.ImageConfig.Command[0]).sort()).toEqual([
      'lambdas/aggregate/handler.handler',
      'lambdas/featurize/handler.handler',
    ]);
    for (const fn of functions) {
      expect(fn.Properties).toMatchObject({
        PackageType: 'Image',
        Architectures: ['x86_64'],
        TracingConfig: { Mode: 'Active' },
        LoggingConfig: { LogGroup: { Ref: expect.any(String) } },
      });
    }
  });

  test('featurize: memory, timeout and handler env from config; unset tuning is left to the handler', () => {
    pipeline.template.hasResourceProperties('AWS::Lambda::Function', {
      ImageConfig: { Command: ['lambdas/featurize/handler.handler'] },
      MemorySize: 1769,
      Timeout: 300,
      Environment: { Variables: { FEATURIZER: 'cnn', MODEL_ID: 'mobilenet_v2_1.0_224_quant', MODEL_DIR: '/opt/model', FIELD_COPY_EVERY: '4' } },
    });
    variant.template.hasResourceProperties('AWS::Lambda::Function', {
      ImageConfig: { Command: ['lambdas/featurize/handler.handler'] },
      Environment: {
        Variables: {
          FEATURIZER: 'cnn',
          MODEL_ID: 'mobilenet_v1_0.75_224',
          MODEL_DIR: '/opt/model',
          IMAGE_SIZE: '160',
          FEATURE_LAYER: 'conv_pw_11_relu,conv_pw_13_relu',
          FEATURE_POWER: '0.5',
          MAX_INPUT_PIXELS: '1000000',
          READ_CONCURRENCY: '4',
        },
      },
    });
  });

  test('aggregate: sized for 100,000+ vectors, PCA and classifier env from config', () => {
    pipeline.template.hasResourceProperties('AWS::Lambda::Function', {
      ImageConfig: { Command: ['lambdas/aggregate/handler.handler'] },
      MemorySize: 3008,
      Timeout: 900,
      Environment: { Variables: { PCA_COMPONENTS: '100', CLASSIFIER: 'lda+logistic', CLASSIFIER_COMPONENTS: '300' } },
    });
  });

  test('arm64 sets the function architecture and the image platform together; model id is the build arg', () => {
    const arm = variant;
    for (const fn of [arm.stack.featurizeFunction, arm.stack.aggregateFunction]) {
      expect(arm.template.toJSON().Resources[arm.stack.getLogicalId(fn.node.defaultChild as any)].Properties.Architectures).toEqual(['arm64']);
    }
    arm.template.hasResourceProperties('AWS::Lambda::Function', { ReservedConcurrentExecutions: 60 });
    arm.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: { PCA_COMPONENTS: '100', PCA_VARIANCE_THRESHOLD: '0.9' } },
    });
    const images = Object.values(dockerImageAssets(arm));
    expect(images).toHaveLength(1);
    expect(images[0].source).toMatchObject({ platform: 'linux/arm64', dockerBuildArgs: { MODEL_ID: 'mobilenet_v1_0.75_224' } });
  });

  test('the image asset holds only the build inputs: no node_modules, cdk.out, .git, test, docs, out, bench, coverage', () => {
    const images = Object.values(dockerImageAssets(pipeline));
    expect(images).toHaveLength(1);
    const [image] = images;
    const staged = readdirSync(join(pipeline.app.synth().directory, image.source.directory));
    expect(staged).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'lambdas', 'layers', 'tools']));
    // cdk.json and bin/ too: a config edit changes the build args, not the build context.
    for (const excluded of ['node_modules', 'cdk.out', '.git', 'test', 'docs', 'out', 'bench', 'coverage', 'bin', 'cdk.json']) {
      expect(staged).not.toContain(excluded);
    }
    expect(image.source).toMatchObject({ dockerFile: 'layers/Dockerfile', platform: 'linux/amd64' });
  });
});

describe('IAM', () => {
  test('no statement has a wildcard action', () => {
    for (const statement of policyStatements()) {
      for (const action of asList(statement.Action)) expect(action).not.toMatch(/\*/);
    }
    const roles = Object.values(pipeline.template.findResources('AWS::IAM::Role'));
    for (const role of roles) expect(role.Properties.ManagedPolicyArns).toBeUndefined();
  });

  test('Resource "*" only for X-Ray and log delivery, which have no resource-level permissions', () => {
    for (const statement of policyStatements()) {
      if (!asList(statement.Resource).includes('*')) continue;
      for (const action of asList(statement.Action)) expect(action).toMatch(/^(xray|logs):/);
    }
  });

  test('S3 access is scoped to the bucket and its prefixes', () => {
    for (const statement of policyStatements()) {
      if (!asList(statement.Action).some((action) => action.startsWith('s3:'))) continue;
      for (const resource of asList(statement.Resource)) {
        expect([objectsUnder('input/'), objectsUnder('work/'), objectsUnder('results/'), { 'Fn::GetAtt': [bucketId(), 'Arn'] }]).toContainEqual(resource);
      }
    }
  });

  test("featurize reads input/ and writes work/; aggregate reads work/, input/ (report.html thumbnails) and results/ (a saved model) and writes work/ (its stages' hand-offs) and results/", () => {
    expect(policyOf('FeaturizeRole')).toEqual(
      expect.arrayContaining([
        { Action: 's3:GetObject', Effect: 'Allow', Resource: objectsUnder('input/') },
        { Action: ['s3:AbortMultipartUpload', 's3:PutObject'], Effect: 'Allow', Resource: objectsUnder('work/') },
      ]),
    );
    expect(policyOf('AggregateRole')).toEqual(
      expect.arrayContaining([
        { Action: ['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject'], Effect: 'Allow', Resource: objectsUnder('work/') },
        { Action: 's3:GetObject', Effect: 'Allow', Resource: [objectsUnder('input/'), objectsUnder('results/')] },
        { Action: ['s3:AbortMultipartUpload', 's3:PutObject'], Effect: 'Allow', Resource: objectsUnder('results/') },
      ]),
    );
    const s3Resources = (statements: Statement[]) =>
      statements.filter((statement) => asList(statement.Action).some((action) => action.startsWith('s3:'))).map((statement) => statement.Resource);
    expect(s3Resources(policyOf('FeaturizeRole'))).toHaveLength(2);
    expect(s3Resources(policyOf('AggregateRole'))).toHaveLength(3);
  });

  test('the state machine lists input/ only (s3:prefix condition), writes work/ and results/', () => {
    const statements = policyOf('PipelineStateMachineRole');
    expect(statements).toEqual(
      expect.arrayContaining([
        {
          Action: 's3:ListBucket',
          Effect: 'Allow',
          Resource: { 'Fn::GetAtt': [bucketId(), 'Arn'] },
          Condition: { StringLike: { 's3:prefix': ['input/*'] } },
        },
        expect.objectContaining({ Action: expect.arrayContaining(['s3:PutObject']), Resource: objectsUnder('work/') }),
        { Action: 's3:PutObject', Effect: 'Allow', Resource: objectsUnder('results/') },
      ]),
    );
  });
});

test('cdk-nag AwsSolutions reports no unacknowledged finding', () => {
  for (const checked of [pipeline, variant, operations()]) {
    const report = new AwsSolutionsChecks().validateScope(checked.stack);
    const findings = report.violations.flatMap((violation) =>
      violation.violatingResources.map((resource) => `${violation.ruleName} at ${resource.constructPath ?? resource.resourceLogicalId}`),
    );
    expect(findings).toEqual([]);
    expect(report.success).toBe(true);
  }
});

test('outputs: bucket, state machine and example commands', () => {
  const outputs = pipeline.template.findOutputs('*');
  expect(Object.keys(outputs).sort()).toEqual([
    'BucketName',
    'DashboardUrl',
    'NotificationTopicArn',
    'StartExecutionCommand',
    'StateMachineArn',
    'UploadAndStartCommand',
  ]);
  expect(JSON.stringify(outputs.UploadAndStartCommand.Value)).toMatch(/aws s3 sync .* && .*aws s3 cp _START s3:\/\//);
  expect(JSON.stringify(outputs.StartExecutionCommand.Value)).toMatch(/aws stepfunctions start-execution --state-machine-arn/);
});

/** Every optional operations setting on: customer-managed key, e-mail, budget, extra tags (synthesized once, on first use). */
const OPERATIONS: PipelineConfigInput = {
  customerManagedKey: true,
  notificationEmail: 'ops@example.com',
  monthlyBudgetUsd: 25,
  budgetEmail: 'billing@example.com',
  tags: { team: 'data-platform' },
};
let operationsPipeline: SynthesizedPipeline | undefined;
function operations(): SynthesizedPipeline {
  operationsPipeline ??= synthesizePipeline(OPERATIONS);
  return operationsPipeline;
}
const logicalIdOf = (synthesized: SynthesizedPipeline, construct: { node: { defaultChild?: unknown } }) =>
  synthesized.stack.getLogicalId(construct.node.defaultChild as any);

describe('cdk-nag acknowledgements are narrowed to the statements that need "*"', () => {
  const findingsOf = (synthesized: SynthesizedPipeline) =>
    new AwsSolutionsChecks()
      .validateScope(synthesized.stack)
      .violations.flatMap((violation) => violation.violatingResources.map((resource) => `${violation.ruleName} at ${resource.constructPath}`));

  test('X-Ray and log delivery sit in policies of their own, the only place Resource::* is acknowledged', () => {
    const policies = pipeline.template.findResources('AWS::IAM::Policy');
    const wildcardPolicies = Object.entries(policies)
      .filter(([, policy]) => (policy.Properties.PolicyDocument.Statement as Statement[]).some((statement) => asList(statement.Resource).includes('*')))
      .map(([id]) => id)
      .sort();
    expect(wildcardPolicies).toEqual([
      expect.stringMatching(/^AggregateTracingPolicy/),
      expect.stringMatching(/^FeaturizeTracingPolicy/),
      expect.stringMatching(/^PipelineTracingAndLogDelivery/),
    ]);
    // The roles' DefaultPolicies, where grants go, hold no "*".
    for (const id of ['FeaturizeRole', 'AggregateRole', 'PipelineStateMachineRole']) {
      for (const statement of policyOf(id)) expect(asList(statement.Resource)).not.toContain('*');
    }
  });

  test('a wildcard grant added to the featurize role is a finding (s3:GetObject and kms:Decrypt on "*")', () => {
    const changed = synthesizePipeline();
    changed.stack.featurizeFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:GetObject', 'kms:Decrypt'], resources: ['*'] }));
    expect(findingsOf(changed)).toEqual(['AwsSolutions-IAM5[Resource::*] at FruitsPipeline/Featurize/Role/DefaultPolicy/Resource']);
  });

  test('ServiceWidePolicy refuses actions that have resource-level permissions', () => {
    const changed = synthesizePipeline();
    expect(() => new ServiceWidePolicy(changed.stack, 'Bad', { role: changed.stack.featurizeFunction.role!, actions: ['s3:GetObject'], reason: 'no' })).toThrow(
      /only holds X-Ray and log-delivery actions, not s3:GetObject/,
    );
  });
});

describe('operations: metrics, dashboard, alarms, notifications', () => {
  test("both functions get the Powertools namespace and service name; the Map has a label for its children's metrics", () => {
    for (const fn of [pipeline.stack.featurizeFunction, pipeline.stack.aggregateFunction]) {
      const variables = pipeline.template.toJSON().Resources[logicalIdOf(pipeline, fn)].Properties.Environment.Variables;
      expect(variables).toMatchObject({ POWERTOOLS_METRICS_NAMESPACE: 'FruitsPipeline', POWERTOOLS_SERVICE_NAME: 'FruitsPipeline' });
      expect(variables.POWERTOOLS_METRICS_DISABLED).toBeUndefined();
    }
    expect(definition.States.FeaturizeImages.Label).toBe('FeaturizeImages');
  });

  test('one dashboard with runs, Map children, both functions and the custom metrics', () => {
    pipeline.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const [dashboard] = Object.values(pipeline.template.findResources('AWS::CloudWatch::Dashboard'));
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const metric of ['ExecutionsStarted', 'ExecutionsSucceeded', 'ExecutionsFailed', 'Duration', 'Throttles', 'Errors']) expect(body).toContain(metric);
    const custom = (metric: string, fn: string) => `\\"FruitsPipeline\\",\\"${metric}\\",\\"function\\",\\"${fn}\\",\\"service\\",\\"FruitsPipeline\\"`;
    for (const metric of [
      'ImagesProcessed',
      'ImagesFailed',
      'ImagesSkipped',
      'ReadMsPerImage',
      'DecodeMsPerImage',
      'InferenceMsPerImage',
      'BatchDurationMs',
      'InferenceRuntimeFallback',
    ]) {
      expect(body).toContain(custom(metric, 'featurize'));
    }
    for (const metric of ['RunRows', 'RunComponents', 'RunExplainedVariance', 'RunAccuracy', 'MaxMemoryUsedMb'])
      expect(body).toContain(custom(metric, 'aggregate'));
    // Map children report under <state machine ARN>/<label>.
    expect(body).toContain('/FeaturizeImages');
  });

  test('an encrypted, TLS-only topic; alarms on failed, timed-out and aborted runs, featurize error rate and throttles, runs not started', () => {
    pipeline.template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    pipeline.template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
    pipeline.template.resourceCountIs('AWS::SNS::Subscription', 0);
    const topicId = logicalIdOf(pipeline, pipeline.stack.notifications!.topic);
    const alarms = Object.values(pipeline.template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(6);
    for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toEqual([{ Ref: topicId }]);
    const stateMachineId = logicalIdOf(pipeline, pipeline.stack.stateMachine);
    for (const metricName of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted']) {
      pipeline.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/States',
        MetricName: metricName,
        Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: stateMachineId } }],
        Threshold: 1,
        TreatMissingData: 'notBreaching',
      });
    }
    pipeline.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Threshold: 5,
      Metrics: Match.arrayWith([Match.objectLike({ Expression: 'IF(invocations > 0, 100 * errors / invocations, 0)' })]),
    });
    pipeline.template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'AWS/Lambda', MetricName: 'Throttles', Threshold: 1 });
    pipeline.template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible' });
  });

  test("the run-end rule publishes status, run id and results/<runId>/ of this state machine's finished executions", () => {
    const stateMachineId = logicalIdOf(pipeline, pipeline.stack.stateMachine);
    pipeline.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { stateMachineArn: [{ Ref: stateMachineId }], status: ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] },
      },
      Targets: [
        Match.objectLike({
          Arn: { Ref: logicalIdOf(pipeline, pipeline.stack.notifications!.topic) },
          InputTransformer: Match.objectLike({
            InputPathsMap: Match.objectLike({ 'detail-status': '$.detail.status', 'detail-name': '$.detail.name', 'detail-output': '$.detail.output' }),
          }),
        }),
      ],
    });
    const rule = Object.values(pipeline.template.findResources('AWS::Events::Rule')).find((r) => r.Properties.EventPattern.source[0] === 'aws.states')!;
    const template = JSON.stringify(rule.Properties.Targets[0].InputTransformer.InputTemplate);
    expect(template).toContain('\\"status\\":<detail-status>,\\"runId\\":<detail-name>');
    expect(template).toContain('/results/<detail-name>/');
  });

  test("the start rule's target has a retry policy and an encrypted, TLS-only dead-letter queue", () => {
    const queue = pipeline.stack.node.findChild('UploadTrigger').node.findChild('DeadLetters');
    const queueId = pipeline.stack.getLogicalId(queue.node.defaultChild as any);
    pipeline.template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 });
    pipeline.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
    pipeline.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({ source: ['aws.s3'] }),
      Targets: [
        Match.objectLike({
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [queueId, 'Arn'] } },
          RetryPolicy: { MaximumEventAgeInSeconds: 7200, MaximumRetryAttempts: 10 },
        }),
      ],
    });
  });
});

describe('operations: cost guard-rails and encryption', () => {
  test('every taggable resource carries the cost-allocation tag; config tags are added', () => {
    for (const [synthesized, extra] of [
      [pipeline, []],
      [operations(), [{ Key: 'team', Value: 'data-platform' }]],
    ] as const) {
      const resources = Object.values(synthesized.template.toJSON().Resources as Record<string, { Type: string; Properties?: { Tags?: unknown } }>);
      const tagged = resources.filter((resource) => resource.Properties?.Tags !== undefined);
      expect(tagged.length).toBeGreaterThan(10);
      for (const resource of tagged) {
        expect(resource.Properties!.Tags).toEqual(expect.arrayContaining([{ Key: 'fruits-pipeline:stack', Value: 'FruitsPipeline' }, ...extra]));
      }
      for (const type of [
        'AWS::Lambda::Function',
        'AWS::S3::Bucket',
        'AWS::StepFunctions::StateMachine',
        'AWS::SNS::Topic',
        'AWS::SQS::Queue',
        'AWS::KMS::Key',
      ]) {
        for (const resource of Object.values(synthesized.template.findResources(type))) expect(resource.Properties.Tags).toBeDefined();
      }
    }
  });

  test('no budget by default; with monthlyBudgetUsd, a monthly cost budget on the tag that e-mails at 100% forecast and 80% actual', () => {
    pipeline.template.resourceCountIs('AWS::Budgets::Budget', 0);
    const subscribers = [{ SubscriptionType: 'EMAIL', Address: 'billing@example.com' }];
    operations().template.hasResourceProperties('AWS::Budgets::Budget', {
      Budget: {
        BudgetType: 'COST',
        TimeUnit: 'MONTHLY',
        BudgetLimit: { Amount: 25, Unit: 'USD' },
        CostFilters: { TagKeyValue: ['user:fruits-pipeline:stack$FruitsPipeline'] },
      },
      NotificationsWithSubscribers: [
        { Notification: Match.objectLike({ NotificationType: 'FORECASTED', Threshold: 100 }), Subscribers: subscribers },
        { Notification: Match.objectLike({ NotificationType: 'ACTUAL', Threshold: 80 }), Subscribers: subscribers },
      ],
    });
    operations().template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
  });

  test("by default: SSE-S3 bucket, plain log groups, no key but the topic's own", () => {
    pipeline.template.resourceCountIs('AWS::KMS::Key', 1);
    pipeline.template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    for (const group of Object.values(pipeline.template.findResources('AWS::Logs::LogGroup'))) expect(group.Properties.KmsKeyId).toBeUndefined();
  });

  test('customerManagedKey: one rotated key for bucket, log groups, topic and queue; the roles get Decrypt and GenerateDataKey on it only', () => {
    const synthesized = operations();
    const { template } = synthesized;
    template.resourceCountIs('AWS::KMS::Key', 1);
    const keyArn = { 'Fn::GetAtt': [logicalIdOf(synthesized, synthesized.stack.encryptionKey!), 'Arn'] };
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: keyArn }, BucketKeyEnabled: true }],
      },
    });
    const groups = Object.values(template.findResources('AWS::Logs::LogGroup'));
    expect(groups).toHaveLength(3);
    for (const group of groups) expect(group.Properties.KmsKeyId).toEqual(keyArn);
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: keyArn });
    template.hasResourceProperties('AWS::SQS::Queue', { KmsMasterKeyId: keyArn });
    // The key policy names the services that use it for the stack.
    const [key] = Object.values(template.findResources('AWS::KMS::Key'));
    const services = (key.Properties.KeyPolicy.Statement as { Principal: { Service?: unknown } }[]).flatMap((statement) =>
      asList(statement.Principal.Service ?? []),
    );
    expect(JSON.stringify(services)).toMatch(/logs\./);
    expect(services).toEqual(expect.arrayContaining(['events.amazonaws.com', 'cloudwatch.amazonaws.com']));
    // Exactly Decrypt + GenerateDataKey on this key, for the three roles that read or write objects.
    const policies = template.findResources('AWS::IAM::Policy');
    const kmsStatements = Object.entries(policies).flatMap(([id, policy]) =>
      (policy.Properties.PolicyDocument.Statement as Statement[])
        .filter((statement) => asList(statement.Action).some((action) => action.startsWith('kms:')))
        .map((statement) => ({ id, statement })),
    );
    expect(kmsStatements.map(({ id }) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual([
      'AggregateRoleDefaultPolicy',
      'FeaturizeRoleDefaultPolicy',
      'PipelineStateMachineRoleDefaultPolicy',
    ]);
    for (const { statement } of kmsStatements) expect(statement).toEqual({ Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Effect: 'Allow', Resource: keyArn });
  });
});
