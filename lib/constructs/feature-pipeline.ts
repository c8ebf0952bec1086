import { CfnElement, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { RunSettingsSchema } from '../../lambdas/contracts/events';
import { BUCKET_LAYOUT, NAME_RULE, PCA_MODEL_KEY_RULE, RESULT_FILES, runLayout, WORK_FOLDERS } from '../../lambdas/contracts/bucket-layout';
import { AGGREGATE_MAP_LABELS, MAP_RUN_LABEL } from '../../lambdas/contracts/state-machine';
import { DataBucket } from './data-bucket';
import { scopedResultWriterV2, scopedS3JsonItemReader, scopedS3ObjectsItemReader } from './map-io';
import { MomentsMergeTree } from './moments-merge-tree';
import { LOG_DELIVERY_ACTIONS, ServiceWidePolicy, XRAY_SAMPLING_ACTIONS, XRAY_WRITE_ACTIONS } from './service-wide-policy';

export interface FeaturePipelineProps {
  /** The bucket runs default to and the only one the state machine may read and write. */
  readonly data: DataBucket;
  /** Featurizes one ItemBatcher batch into a feature shard (`lambdas/featurize/handler`). */
  readonly featurizeFunction: lambda.IFunction;
  /** Runs each stage of the aggregate: shards into features, model, plots and report (`lambdas/aggregate/handler`). */
  readonly aggregateFunction: lambda.IFunction;
  /** The featurize function's own timeout: `FeaturizeBatch` times out INVOCATION_MARGIN after it. */
  readonly featurizeTimeout: Duration;
  /** The aggregate function's own timeout: each of its Tasks times out INVOCATION_MARGIN after it. */
  readonly aggregateTimeout: Duration;
  /** Images per featurize child (ItemBatcher MaxItemsPerBatch). */
  readonly batchSize: number;
  /** Concurrent featurize children. */
  readonly maxConcurrency: number;
  /** Concurrent children of each aggregate group map. */
  readonly aggregateConcurrency: number;
  /** Moments partials per merge of the moments merge tree, and the most the fit merges (AGGREGATE_SETTINGS.momentsMergeFanIn). */
  readonly momentsMergeFanIn: number;
  /** Share of items (images of failed children) the Map state tolerates failing. */
  readonly toleratedFailurePercentage: number;
  readonly logRetention: logs.RetentionDays;
  /** Fate of the log group when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
  /** Customer-managed key of the log group. @default - CloudWatch Logs' own encryption */
  readonly logEncryptionKey?: kms.IKey;
}

export { AGGREGATE_MAP_LABELS, MAP_RUN_LABEL } from '../../lambdas/contracts/state-machine';

/**
 * A batch's bytes at most (ItemBatcher MaxInputBytesPerBatch): Step Functions then cuts a batch of
 * long keys into smaller ones instead of handing a child more than its 256 KiB input limit
 * (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itembatcher.html). 250 listed
 * objects with 1 KiB keys are about 300 KB; with the usual keys (~200 bytes each) this never binds.
 * The margin below 256 KiB leaves room for BatchInput.
 */
export const MAX_BATCH_INPUT_BYTES = 240 * 1024;

/** `results/{}/` and `work/{}/`: the run layout as `States.Format` templates of the run id. */
const RUN_LAYOUT_TEMPLATE = runLayout('{}');

/** Errors worth another attempt: Lambda's own hiccups and throttling, and our named transient error. */
const TRANSIENT_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'TransientStorageError',
];
const TRANSIENT_RETRY: sfn.RetryProps = {
  errors: TRANSIENT_ERRORS,
  interval: Duration.seconds(2),
  maxAttempts: 6,
  backoffRate: 2,
  maxDelay: Duration.seconds(60),
  // Throttled children of one Map run fail together; jitter spreads their retries apart.
  jitterStrategy: sfn.JitterType.FULL,
};

/**
 * What a Lambda Task's TimeoutSeconds adds to the function's own timeout. A Task without
 * TimeoutSeconds waits without limit, so AWS advises one on every Task
 * (https://docs.aws.amazon.com/step-functions/latest/dg/sfn-best-practices.html#use-timeouts-to-avoid-stuck-executions);
 * it is a backstop for an invocation whose answer never arrives. The Task's clock also runs
 * through what the function timeout does not count: the Init phase of a cold start (up to 10 s,
 * https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html), before it the
 * creation of the execution environment for a container image (seconds, more on the first
 * invocations after a deploy, while the image is not cached yet), and the Invoke round trip.
 * 60 s covers these with room to spare, so a function that runs out of time still fails with its
 * own error (`Sandbox.Timedout`) rather than the Task's `States.Timeout`, and a stuck child is
 * still given up one minute after its function would have been stopped.
 */
export const INVOCATION_MARGIN = Duration.seconds(60);

/** TimeoutSeconds of a Task that invokes a function with this timeout. */
function invocationTimeout(functionTimeout: Duration): sfn.Timeout {
  return sfn.Timeout.duration(functionTimeout.plus(INVOCATION_MARGIN));
}

/**
 * `{ "bucket.$": "<root>.bucket", ... }` for every required RunSettings field (lambdas/contracts/events.ts). An
 * optional field (`pcaModel`) is left out: a path to a field that is absent fails the state.
 */
function runSettingsAt(root: string): Record<string, string> {
  const required = Object.entries(RunSettingsSchema.shape).filter(([, schema]) => !schema.isOptional());
  return Object.fromEntries(required.map(([field]) => [`${field}.$`, `${root}.${field}`]));
}

/**
 * The run's state machine, as docs/DESIGN.md specifies (JSONPath only: the local runner's
 * interpreter has no JSONata). State names are a contract with the local runner and the CLI.
 *
 * How the synthesized definition refers to other resources (all through `Fn::Join`, no
 * DefinitionSubstitutions): the featurize and aggregate functions by `Fn::GetAtt [<id>, Arn]` in
 * `FunctionName` of `FeaturizeBatch` and `AggregateFeatures`; the default bucket by `Ref <bucket>`
 * in `DefaultBucketAndRunId`; service ARNs by `Ref AWS::Partition`.
 */
export class FeaturePipeline extends Construct {
  public readonly stateMachine: sfn.StateMachine;
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: FeaturePipelineProps) {
    super(scope, id);
    // 1. Execution input: `{ bucket?, inputPrefix, runId?, pcaModel? }` or `{ trigger: { bucket, key } }`.
    const ends = this.invalidInputStates();
    const startMarker = this.startMarkerStates(ends.invalidStartMarker);
    // 2. Defaults for bucket and runId; the output and work prefixes derive from the runId.
    const settings = this.runSettingsStates(props.data);
    // 3. Featurize every listed object, one child per batch; only counts and shard keys come back.
    const featurizeImages = this.featurizeImagesMap(props);
    // 4. The aggregate as stages: plan the groups, their moments, fit, project, classify, publish.
    const aggregate = this.aggregateStages(props);
    // 5. A failed run leaves <outputPrefix>failure.json next to where its results would be.
    const writeFailureReport = this.failureReportStates(props.data);
    for (const state of [featurizeImages, ...aggregate.states]) state.addCatch(writeFailureReport, { resultPath: '$.error' });

    const checkRunSettings = this.checkRunSettingsChoice(featurizeImages.next(aggregate.chain), ends.invalidRunSettings);
    settings.runSettings.next(checkRunSettings);
    settings.runSettingsWithModel.next(checkRunSettings);
    startMarker.parseStartMarker.next(startMarker.checkStartMarker);
    startMarker.runRequestFromMarker.next(settings.fillDefaults);
    const readRunRequest = new sfn.Choice(this, 'ReadRunRequest')
      .when(sfn.Condition.isPresent('$.outputPrefix'), ends.invalidRunSettings)
      .when(sfn.Condition.isPresent('$.trigger'), startMarker.parseStartMarker)
      .when(sfn.Condition.isPresent('$.inputPrefix'), settings.fillDefaults)
      .otherwise(ends.missingInputPrefix);

    this.logGroup = this.createLogGroup(id, props);
    this.stateMachine = this.createStateMachine(readRunRequest);
    this.acknowledgeGrants(props);
  }

  /** The Fail states of a request the run cannot start from, each with a cause that says what is expected. */
  private invalidInputStates() {
    const missingInputPrefix = new sfn.Fail(this, 'MissingInputPrefix', {
      error: 'MissingInputPrefix',
      cause: 'The execution input needs "inputPrefix" (e.g. {"inputPrefix": "input/fruits/"}) or a "trigger" from the upload rule.',
    });
    const invalidStartMarker = new sfn.Fail(this, 'InvalidStartMarker', {
      error: 'InvalidStartMarker',
      causePath: '$.invalidMarkerCause',
    });
    const invalidRunSettings = new sfn.Fail(this, 'InvalidRunSettings', {
      error: 'InvalidRunSettings',
      cause:
        `"inputPrefix" must look like "${BUCKET_LAYOUT.inputRoot}<dataset>/" (the pipeline may only list there, and a prefix without its trailing slash ` +
        `would also match sibling folders) and "runId" must be ${NAME_RULE}. There is no "outputPrefix" input: a run writes to ` +
        `${BUCKET_LAYOUT.resultsRoot}<runId>/ only, so no run can overwrite another's results. "pcaModel", when given, must be ${PCA_MODEL_KEY_RULE}.`,
    });
    return { missingInputPrefix, invalidStartMarker, invalidRunSettings };
  }

  /** The marker key becomes the input prefix: `input/<dataset>/_START` -> `input/<dataset>/`. */
  private startMarkerStates(invalidStartMarker: sfn.Fail) {
    const parseStartMarker = new sfn.Pass(this, 'ParseStartMarker', {
      parameters: {
        bucket: sfn.JsonPath.stringAt('$.trigger.bucket'),
        key: sfn.JsonPath.stringAt('$.trigger.key'),
        keyParts: sfn.JsonPath.stringSplit(sfn.JsonPath.stringAt('$.trigger.key'), '/'),
        depth: sfn.JsonPath.arrayLength(sfn.JsonPath.stringSplit(sfn.JsonPath.stringAt('$.trigger.key'), '/')),
        // Made here, not in the Fail state's CausePath: the local runner's interpreter only takes a
        // plain path there.
        invalidMarkerCause: sfn.JsonPath.format(
          `A start marker must be ${BUCKET_LAYOUT.inputRoot}<dataset>/${BUCKET_LAYOUT.startMarker}, one folder below ${BUCKET_LAYOUT.inputRoot}; got {}`,
          sfn.JsonPath.stringAt('$.trigger.key'),
        ),
      },
    });
    const runRequestFromMarker = new sfn.Pass(this, 'RunRequestFromMarker', {
      parameters: {
        bucket: sfn.JsonPath.stringAt('$.bucket'),
        inputPrefix: sfn.JsonPath.format(`${BUCKET_LAYOUT.inputRoot}{}/`, sfn.JsonPath.arrayGetItem(sfn.JsonPath.listAt('$.keyParts'), 1)),
      },
    });
    const checkStartMarker = new sfn.Choice(this, 'CheckStartMarker')
      .when(
        sfn.Condition.and(
          sfn.Condition.numberEquals('$.depth', 3),
          sfn.Condition.stringMatches('$.key', `${BUCKET_LAYOUT.inputRoot}*/${BUCKET_LAYOUT.startMarker}`),
        ),
        runRequestFromMarker,
      )
      .otherwise(invalidStartMarker);

    return { parseStartMarker, runRequestFromMarker, checkStartMarker };
  }

  /**
   * `DefaultBucketAndRunId` to `RunSettings` (or `RunSettingsWithModel`): the stack's bucket and the
   * execution name when absent, and the prefixes derived from the run id.
   */
  private runSettingsStates(data: DataBucket) {
    const defaultBucketAndRunId = new sfn.Pass(this, 'DefaultBucketAndRunId', {
      parameters: {
        request: sfn.JsonPath.objectAt('$'),
        defaults: { bucket: data.bucket.bucketName, runId: sfn.JsonPath.executionName },
      },
    });
    const applyBucketAndRunId = new sfn.Pass(this, 'ApplyBucketAndRunId', {
      parameters: {
        request: sfn.JsonPath.jsonMerge(sfn.JsonPath.objectAt('$.defaults'), sfn.JsonPath.objectAt('$.request')),
      },
    });
    // Exactly the RunSettings fields (lambdas/contracts/events.ts), whatever else the input carried.
    const derivedPrefixes = {
      outputPrefix: sfn.JsonPath.format(RUN_LAYOUT_TEMPLATE.outputPrefix, sfn.JsonPath.stringAt('$.request.runId')),
      workPrefix: sfn.JsonPath.format(RUN_LAYOUT_TEMPLATE.workPrefix, sfn.JsonPath.stringAt('$.request.runId')),
    };
    const runSettings = new sfn.Pass(this, 'RunSettings', {
      parameters: { ...runSettingsAt('$.request'), ...derivedPrefixes },
    });
    // A run that projects with a saved model: the same settings plus `pcaModel`. A state of its
    // own, since a Parameters path to an absent field fails, and a run without a model gets exactly
    // the RunSettings fields, no `pcaModel`.
    const runSettingsWithModel = new sfn.Pass(this, 'RunSettingsWithModel', {
      parameters: { ...runSettingsAt('$.request'), ...derivedPrefixes, pcaModel: sfn.JsonPath.stringAt('$.request.pcaModel') },
    });
    const chooseRunSettings = new sfn.Choice(this, 'ChooseRunSettings')
      .when(sfn.Condition.isPresent('$.request.pcaModel'), runSettingsWithModel)
      .otherwise(runSettings);

    const fillDefaults = defaultBucketAndRunId.next(applyBucketAndRunId).next(chooseRunSettings);
    return { fillDefaults, runSettings, runSettingsWithModel };
  }

  /** `FeaturizeImages`: a Distributed Map over the listed input, one `FeaturizeBatch` child per batch. */
  private featurizeImagesMap(props: FeaturePipelineProps): sfn.DistributedMap {
    const { data } = props;
    const featurizeBatch = new tasks.LambdaInvoke(this, 'FeaturizeBatch', {
      lambdaFunction: props.featurizeFunction,
      payload: sfn.TaskInput.fromJsonPathAt('$'),
      outputPath: '$.Payload',
      taskTimeout: invocationTimeout(props.featurizeTimeout),
      retryOnServiceExceptions: false, // replaced by TRANSIENT_RETRY, which adds throttling and jitter
    }).addRetry(TRANSIENT_RETRY);
    const featurizeImages = new sfn.DistributedMap(this, 'FeaturizeImages', {
      label: MAP_RUN_LABEL,
      itemReader: scopedS3ObjectsItemReader({
        bucketNamePath: '$.bucket',
        prefixPath: '$.inputPrefix',
        policyStatements: [data.listStatement(BUCKET_LAYOUT.inputRoot)],
      }),
      itemBatcher: new sfn.ItemBatcher({ maxItemsPerBatch: props.batchSize, maxInputBytesPerBatch: MAX_BATCH_INPUT_BYTES, batchInput: runSettingsAt('$') }),
      maxConcurrency: props.maxConcurrency,
      toleratedFailurePercentage: props.toleratedFailurePercentage,
      mapExecutionType: sfn.StateMachineType.STANDARD,
      // The children's results can exceed the 256 KiB state payload limit
      // (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html), so they go to S3.
      // COMPACT: a succeeded child's output alone (its summary), not its input (every key of the
      // batch, which its batch record holds); a failed child's record stays whole, input included
      // (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html).
      resultWriterV2: scopedResultWriterV2({
        bucketNamePath: '$.bucket',
        prefix: sfn.JsonPath.format(`{}${WORK_FOLDERS.mapResults}`, sfn.JsonPath.stringAt('$.workPrefix')),
        writerConfig: new sfn.WriterConfig({ transformation: sfn.Transformation.COMPACT, outputType: sfn.OutputType.JSON }),
        policyStatements: [
          data.objectsStatement(['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'], BUCKET_LAYOUT.workRoot),
        ],
      }),
      resultSelector: {
        MapRunArn: sfn.JsonPath.stringAt('$.MapRunArn'),
        ResultWriterDetails: sfn.JsonPath.objectAt('$.ResultWriterDetails'),
      },
      resultPath: '$.mapResult',
    });
    featurizeImages.itemProcessor(featurizeBatch);
    return featurizeImages;
  }

  /**
   * The aggregate's stages, each an invocation of the aggregate function: `chain` runs them in order
   * (classify only when the fit says so), `states` are the ones a failure is caught from.
   */
  private aggregateStages(props: FeaturePipelineProps) {
    const { data } = props;
    const aggregateTask = (id: string, payload: sfn.TaskInput, options: Partial<tasks.LambdaInvokeProps> = {}) =>
      new tasks.LambdaInvoke(this, id, {
        lambdaFunction: props.aggregateFunction,
        payload,
        taskTimeout: invocationTimeout(props.aggregateTimeout),
        retryOnServiceExceptions: false,
        ...options,
      }).addRetry(TRANSIENT_RETRY);
    const settingsOfRun = runSettingsAt('$');
    const planAggregate = aggregateTask('PlanAggregate', sfn.TaskInput.fromObject({ stage: 'plan', run: sfn.JsonPath.objectAt('$') }), {
      resultSelector: { groups: sfn.JsonPath.numberAt('$.Payload.groups'), groupsKey: sfn.JsonPath.stringAt('$.Payload.groupsKey') },
      resultPath: '$.plan',
    });
    // One child per group; any failed child fails the run (a group's work cannot be tolerated away).
    const groupMap = (label: string, stage: 'moments' | 'project' | 'classify', taskId: string) => {
      const map = new sfn.DistributedMap(this, label, {
        label,
        itemReader: scopedS3JsonItemReader({
          bucketNamePath: '$.bucket',
          keyPath: '$.plan.groupsKey',
          policyStatements: [data.objectsStatement(['s3:GetObject'], BUCKET_LAYOUT.workRoot)],
        }),
        itemSelector: { stage, run: settingsOfRun, group: sfn.JsonPath.numberAt('$$.Map.Item.Value.group') },
        maxConcurrency: props.aggregateConcurrency,
        mapExecutionType: sfn.StateMachineType.STANDARD,
        resultPath: sfn.JsonPath.DISCARD,
      });
      map.itemProcessor(aggregateTask(taskId, sfn.TaskInput.fromJsonPathAt('$'), { outputPath: '$.Payload' }));
      return map;
    };
    const computeMoments = groupMap(AGGREGATE_MAP_LABELS.moments, 'moments', 'MomentsOfGroup');
    const fanIn = props.momentsMergeFanIn;
    const fitModel = aggregateTask(
      'FitModel',
      sfn.TaskInput.fromObject({ stage: 'fit', run: settingsOfRun, groups: sfn.JsonPath.numberAt('$.plan.groups'), fanIn }),
      { resultSelector: { 'classify.$': '$.Payload.classify' }, resultPath: '$.fit' },
    );
    // More groups than one merge takes: their moments merged as a tree first (skipped otherwise).
    const mergeTree = new MomentsMergeTree(this, 'MomentsMergeTree', {
      fanIn,
      mergeNode: aggregateTask('MergeMomentsNode', sfn.TaskInput.fromJsonPathAt('$'), { outputPath: '$.Payload' }),
      runSettings: settingsOfRun,
      maxConcurrency: props.aggregateConcurrency,
      next: fitModel,
    });
    const projectGroups = groupMap(AGGREGATE_MAP_LABELS.project, 'project', 'ProjectGroup');
    const fitClassifier = aggregateTask(
      'FitClassifier',
      sfn.TaskInput.fromObject({ stage: 'fit-classifier', run: settingsOfRun, groups: sfn.JsonPath.numberAt('$.plan.groups') }),
      { resultPath: sfn.JsonPath.DISCARD },
    );
    // features.csv needs no classifier: it is joined while the classifier is fitted.
    const publishFeatures = aggregateTask(
      'PublishFeatures',
      sfn.TaskInput.fromObject({ stage: 'publish-features', run: settingsOfRun, groups: sfn.JsonPath.numberAt('$.plan.groups') }),
      { resultPath: sfn.JsonPath.DISCARD },
    );
    const fitClassifierBesideFeatures = new sfn.Parallel(this, 'FitClassifierBesideFeatures', { resultPath: sfn.JsonPath.DISCARD })
      .branch(fitClassifier)
      .branch(publishFeatures);
    const classifyGroups = groupMap(AGGREGATE_MAP_LABELS.classify, 'classify', 'ClassifyGroup');
    const publishRun = aggregateTask(
      'PublishRun',
      sfn.TaskInput.fromObject({ stage: 'publish', run: settingsOfRun, groups: sfn.JsonPath.numberAt('$.plan.groups') }),
      { outputPath: '$.Payload' },
    );
    const chooseClassification = new sfn.Choice(this, 'ChooseClassification')
      .when(sfn.Condition.booleanEquals('$.fit.classify', true), classifyGroups.next(publishRun))
      .otherwise(publishRun);
    fitModel.next(projectGroups).next(fitClassifierBesideFeatures).next(chooseClassification);
    const chain = planAggregate.next(computeMoments).next(mergeTree.start);
    const states = [planAggregate, computeMoments, mergeTree.mergeMoments, fitModel, projectGroups, fitClassifierBesideFeatures, classifyGroups, publishRun];

    return { chain, states };
  }

  /** `WriteFailureReport`, then `RunFailed` with the run's own error. */
  private failureReportStates(data: DataBucket): tasks.CallAwsService {
    const runFailed = new sfn.Fail(this, 'RunFailed', { errorPath: '$.error.Error', causePath: '$.error.Cause' });
    const writeFailureReport = new tasks.CallAwsService(this, 'WriteFailureReport', {
      service: 's3',
      action: 'putObject',
      iamAction: 's3:PutObject',
      iamResources: [data.bucket.arnForObjects(`${BUCKET_LAYOUT.resultsRoot}*`)],
      parameters: {
        Bucket: sfn.JsonPath.stringAt('$.bucket'),
        Key: sfn.JsonPath.format(`{}${RESULT_FILES.failure}`, sfn.JsonPath.stringAt('$.outputPrefix')),
        ContentType: 'application/json',
        Body: {
          runId: sfn.JsonPath.stringAt('$.runId'),
          inputPrefix: sfn.JsonPath.stringAt('$.inputPrefix'),
          execution: sfn.JsonPath.executionId,
          error: sfn.JsonPath.objectAt('$.error'),
        },
      },
      resultPath: sfn.JsonPath.DISCARD,
    });
    // The run fails with its own error even when the report cannot be written.
    writeFailureReport.addCatch(runFailed, { resultPath: '$.failureReportError' }).next(runFailed);
    return writeFailureReport;
  }

  /** `CheckRunSettings`: the request as far as the state machine can check it, then `next`. */
  private checkRunSettingsChoice(next: sfn.IChainable, invalidRunSettings: sfn.Fail): sfn.Choice {
    return new sfn.Choice(this, 'CheckRunSettings')
      .when(
        sfn.Condition.and(
          sfn.Condition.isString('$.inputPrefix'),
          sfn.Condition.stringMatches('$.inputPrefix', `${BUCKET_LAYOUT.inputRoot}*/`),
          sfn.Condition.isString('$.runId'),
          // RUN_ID_PATTERN as far as wildcards can say it: nothing that leaves results/<runId>/ or
          // work/<runId>/. The handlers' RunSettingsSchema and the CLI check the whole pattern.
          sfn.Condition.not(sfn.Condition.or(...['', '*/*', '*..*', '* *', '.*'].map((pattern) => sfn.Condition.stringMatches('$.runId', pattern)))),
          // pcaModel absent, or a key under results/ without `..` (the handler's schema checks the
          // whole PCA_MODEL_KEY_RULE). `Not IsPresent` rather than `IsPresent: false`, which the
          // local runner's interpreter never matches.
          sfn.Condition.or(
            sfn.Condition.not(sfn.Condition.isPresent('$.pcaModel')),
            sfn.Condition.and(
              sfn.Condition.isString('$.pcaModel'),
              sfn.Condition.stringMatches('$.pcaModel', `${BUCKET_LAYOUT.resultsRoot}*`),
              sfn.Condition.not(sfn.Condition.or(...['*..*', '*/'].map((pattern) => sfn.Condition.stringMatches('$.pcaModel', pattern)))),
            ),
          ),
        ),
        next,
      )
      .otherwise(invalidRunSettings);
  }

  /** The state machine's log group, under `/aws/vendedlogs/states/`. */
  private createLogGroup(id: string, props: FeaturePipelineProps): logs.LogGroup {
    return new logs.LogGroup(this, 'Logs', {
      // Step Functions delivers logs through CloudWatch vended logs, whose resource policy size
      // limit is avoided for groups under this prefix (https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html).
      logGroupName: `/aws/vendedlogs/states/${Stack.of(this).stackName}-${id}`,
      retention: props.logRetention,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
      encryptionKey: props.logEncryptionKey,
    });
  }

  /** The state machine from `start`, with tracing and logging of everything to the log group. */
  private createStateMachine(start: sfn.IChainable): sfn.StateMachine {
    const stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(start),
      stateMachineType: sfn.StateMachineType.STANDARD,
    });
    // Tracing and logging set on the resource, their `*`-only actions in a policy of their own:
    // the L2 `tracingEnabled` and `logs` props would add them to the role's DefaultPolicy, where
    // the acknowledgement would also cover any later wildcard grant.
    const serviceWide = new ServiceWidePolicy(this, 'TracingAndLogDelivery', {
      role: stateMachine.role,
      actions: [...LOG_DELIVERY_ACTIONS, ...XRAY_WRITE_ACTIONS, ...XRAY_SAMPLING_ACTIONS],
      reason:
        'Log delivery (logs:CreateLogDelivery, PutResourcePolicy, ...) and X-Ray (xray:PutTraceSegments, GetSampling*) ' +
        'do not support resource-level permissions (https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html).',
    });
    const cfnStateMachine = stateMachine.node.defaultChild as sfn.CfnStateMachine;
    cfnStateMachine.tracingConfiguration = { enabled: true };
    cfnStateMachine.loggingConfiguration = {
      destinations: [{ cloudWatchLogsLogGroup: { logGroupArn: this.logGroup.logGroupArn } }],
      level: sfn.LogLevel.ALL,
      includeExecutionData: true,
    };
    cfnStateMachine.node.addDependency(serviceWide); // the resource only: the role is a child of the L2
    return stateMachine;
  }

  /** The state machine role's findings of cdk-nag AwsSolutions-IAM5 ("wildcard permissions"), each with its reason. */
  private acknowledgeGrants(props: FeaturePipelineProps): void {
    const stack = Stack.of(this);
    const logicalId = (construct: Construct) => stack.getLogicalId(construct.node.defaultChild as CfnElement);
    const acknowledge = (resource: string, reason: string) =>
      Validations.of(this.stateMachine).acknowledge({ id: `AwsSolutions-IAM5[Resource::${resource}]`, reason });

    // ResultWriter (work/) and WriteFailureReport (results/).
    props.data.acknowledgePrefixScope(this.stateMachine, BUCKET_LAYOUT.workRoot);
    props.data.acknowledgePrefixScope(this.stateMachine, BUCKET_LAYOUT.resultsRoot);
    for (const fn of [props.featurizeFunction, props.aggregateFunction]) {
      acknowledge(`<${logicalId(fn)}.Arn>:*`, 'LambdaInvoke grants the versions and aliases of this one function (<arn>:*) next to the function itself.');
    }
    // Distributed Map child executions and map runs get generated names under this state machine.
    const executions = `arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${logicalId(this.stateMachine)}"}]}]}`;
    const childReason = 'Distributed Map runs and child executions of this state machine only: their names are generated per run.';
    acknowledge(`${executions}:*`, childReason);
    for (const label of [MAP_RUN_LABEL, ...Object.values(AGGREGATE_MAP_LABELS)]) acknowledge(`${executions}/${label}:*`, childReason);
  }
}
