import { Aws, CfnOutput, Duration, RemovalPolicy, Stack, StackProps, Tags } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { BUCKET_LAYOUT } from '../lambdas/contracts/bucket-layout';
import { aggregateEnvironment, classifyEnvironment, featurizeEnvironment } from '../lambdas/contracts/handler-env';
import { observabilityEnvironment } from '../lambdas/contracts/handler-env';
import { METRICS_NAMESPACE } from '../lambdas/contracts/metrics';
import type { PipelineConfig } from './config';
import { CostBudget } from './constructs/cost-budget';
import { DataBucket } from './constructs/data-bucket';
import { FeaturePipeline, MAP_RUN_LABEL } from './constructs/feature-pipeline';
import { ImageFunction, pipelineImageBuild } from './constructs/image-function';
import { PipelineDashboard } from './constructs/pipeline-dashboard';
import { PipelineKey } from './constructs/pipeline-key';
import { PipelineNotifications } from './constructs/pipeline-notifications';
import { UploadTrigger } from './constructs/upload-trigger';

/**
 * The cost-allocation tag on every resource (value: the stack name), which the optional budget
 * counts. AWS Billing only reports a tag once it is activated as a cost-allocation tag.
 */
export const COST_ALLOCATION_TAG_KEY = 'fruits-pipeline:stack';

export interface FruitsPipelineStackProps extends StackProps {
  readonly config: PipelineConfig;
}

/**
 * Fruit photos in S3 -> Distributed Map of featurize Lambdas -> aggregate Lambda -> feature table.
 * Contracts (bucket layout, state names, handler env) are in docs/DESIGN.md.
 */
export class FruitsPipelineStack extends Stack {
  public readonly bucket: s3.Bucket;
  public readonly stateMachine: sfn.StateMachine;
  public readonly featurizeFunction: lambda.DockerImageFunction;
  public readonly aggregateFunction: lambda.DockerImageFunction;
  /** The customer-managed key, when `customerManagedKey` is set. */
  public readonly encryptionKey?: kms.Key;
  /** Topic, alarms and run-end rule, unless `notifications` is off. */
  public readonly notifications?: PipelineNotifications;
  /** Unless `dashboard` is off. */
  public readonly dashboard?: PipelineDashboard;

  constructor(scope: Construct, id: string, props: FruitsPipelineStackProps) {
    super(scope, id, props);
    const { config } = props;
    const removalPolicy = config.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;
    const logRetention = config.logRetentionDays as logs.RetentionDays;
    // One key for the bucket, the log groups, the topic and the queue when the organisation
    // requires its own; its policy names the services that use it for the stack.
    const key = config.customerManagedKey
      ? new PipelineKey(this, 'EncryptionKey', { logGroups: true, publishingServices: ['events.amazonaws.com', 'cloudwatch.amazonaws.com'], removalPolicy }).key
      : undefined;
    this.encryptionKey = key;

    const data = new DataBucket(this, 'Data', {
      intermediateRetention: Duration.days(config.intermediateRetentionDays),
      accessLogRetention: logRetention === logs.RetentionDays.INFINITE ? undefined : Duration.days(config.logRetentionDays),
      removalPolicy,
      encryptionKey: key,
    });
    this.bucket = data.bucket;

    // One image for both functions, run with a different CMD: one build, and the aggregator
    // shares the featurizer's shard-reading code. The aggregator's cold start on the larger
    // image does not matter: it runs once per run.
    const image = pipelineImageBuild({ modelId: config.modelId, architecture: config.architecture });

    const featurizeTimeout = Duration.seconds(config.featurizeTimeoutSeconds);
    const aggregateTimeout = Duration.seconds(config.aggregateTimeoutSeconds);
    const featurize = new ImageFunction(this, 'Featurize', {
      image,
      handler: 'lambdas/featurize/handler.handler',
      description: 'Featurizes one batch of images into a feature shard',
      memorySize: config.featurizeMemoryMb,
      timeout: featurizeTimeout,
      reservedConcurrentExecutions: config.featurizeReservedConcurrency,
      // Tuning left unset takes the handler's defaults.
      environment: featurizeEnvironment({
        featurizer: config.featurizer,
        modelId: config.modelId,
        modelDir: '/opt/model', // where the Dockerfile bakes the model
        imageSize: config.imageSize,
        featureLayers: config.featureLayers,
        featureSqrt: config.featureSqrt,
        maxInputPixels: config.maxInputPixels,
        readConcurrency: config.readConcurrency,
        fieldCopyEvery: config.fieldCopyEvery,
      }),
      logRetention,
      logRemovalPolicy: removalPolicy,
      logEncryptionKey: key,
    });
    data.grantReadObjects(featurize.role, BUCKET_LAYOUT.inputRoot);
    data.grantWriteObjects(featurize.role, BUCKET_LAYOUT.workRoot);
    this.featurizeFunction = featurize.function;

    const aggregate = new ImageFunction(this, 'Aggregate', {
      image,
      handler: 'lambdas/aggregate/handler.handler',
      description: 'Standardises all feature shards of a run, fits the PCA, writes the results',
      memorySize: config.aggregateMemoryMb,
      timeout: aggregateTimeout,
      environment: {
        ...aggregateEnvironment({
          pcaComponents: config.pcaComponents,
          pcaVarianceThreshold: config.pcaVarianceThreshold,
          groupShards: config.aggregateGroupShards,
        }),
        ...classifyEnvironment({ knnNeighbours: config.knnNeighbours, keepEmbeddings: config.keepEmbeddings, classifier: config.classifier }),
      },
      logRetention,
      logRemovalPolicy: removalPolicy,
      logEncryptionKey: key,
    });
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.workRoot);
    // The stages hand each other plans, moments and parts under work/<runId>/aggregate/.
    data.grantWriteObjects(aggregate.role, BUCKET_LAYOUT.workRoot);
    // report.html's gallery shows misclassified images beside their nearest reference: read from input/.
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.inputRoot);
    // A run started with `pcaModel` reads a saved model (and its references) from results/.
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.resultsRoot);
    data.grantWriteObjects(aggregate.role, BUCKET_LAYOUT.resultsRoot);
    this.aggregateFunction = aggregate.function;

    const pipeline = new FeaturePipeline(this, 'Pipeline', {
      data,
      featurizeFunction: this.featurizeFunction,
      aggregateFunction: this.aggregateFunction,
      featurizeTimeout,
      aggregateTimeout,
      batchSize: config.batchSize,
      maxConcurrency: config.maxConcurrency,
      aggregateConcurrency: config.aggregateConcurrency,
      toleratedFailurePercentage: config.toleratedFailurePercentage,
      logRetention,
      logRemovalPolicy: removalPolicy,
      logEncryptionKey: key,
    });
    this.stateMachine = pipeline.stateMachine;

    const trigger = new UploadTrigger(this, 'UploadTrigger', { bucket: this.bucket, stateMachine: this.stateMachine, encryptionKey: key });

    // ---- Operations: metrics env, KMS grants, notifications, dashboard, budget, tags ----
    // Powertools: the metrics' namespace and `service` dimension (lambdas/contracts/metrics.ts).
    const observability = observabilityEnvironment({ metricsNamespace: METRICS_NAMESPACE, serviceName: this.stackName });
    for (const fn of [this.featurizeFunction, this.aggregateFunction])
      for (const [name, value] of Object.entries(observability)) fn.addEnvironment(name, value);
    // SSE-KMS: reading an object takes kms:Decrypt, writing one kms:GenerateDataKey (a multipart
    // upload both). The ItemReader only lists, which needs neither.
    for (const role of [featurize.role, aggregate.role, this.stateMachine.role]) key?.grant(role, 'kms:Decrypt', 'kms:GenerateDataKey');

    if (config.notifications) {
      this.notifications = new PipelineNotifications(this, 'Notifications', {
        stateMachine: this.stateMachine,
        bucket: this.bucket,
        featurizeFunction: this.featurizeFunction,
        startDeadLetterQueue: trigger.deadLetterQueue,
        featurizeErrorRatePercent: config.featurizeErrorRateAlarmPercent,
        email: config.notificationEmail,
        encryptionKey: key,
        removalPolicy,
      });
      new CfnOutput(this, 'NotificationTopicArn', { description: 'Alarms and run ends are published here', value: this.notifications.topic.topicArn });
    }
    if (config.dashboard) {
      this.dashboard = new PipelineDashboard(this, 'Dashboard', {
        stateMachine: this.stateMachine,
        mapRunLabel: MAP_RUN_LABEL,
        featurizeFunction: this.featurizeFunction,
        aggregateFunction: this.aggregateFunction,
        aggregateMemoryMb: config.aggregateMemoryMb,
        serviceName: this.stackName,
        alarms: this.notifications?.alarms,
      });
      new CfnOutput(this, 'DashboardUrl', {
        value: `https://console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${this.dashboard.dashboard.dashboardName}`,
      });
    }
    if (config.monthlyBudgetUsd !== undefined && config.budgetEmail !== undefined) {
      new CostBudget(this, 'Budget', {
        monthlyUsd: config.monthlyBudgetUsd,
        email: config.budgetEmail,
        tagKey: COST_ALLOCATION_TAG_KEY,
        tagValue: this.stackName,
      });
    }
    Tags.of(this).add(COST_ALLOCATION_TAG_KEY, this.stackName);
    for (const [tagKey, value] of Object.entries(config.tags)) Tags.of(this).add(tagKey, value);
    // ---- end of operations ----

    const datasetUri = `s3://${this.bucket.bucketName}/${BUCKET_LAYOUT.inputRoot}fruits/`;
    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });
    new CfnOutput(this, 'StateMachineArn', { value: this.stateMachine.stateMachineArn });
    new CfnOutput(this, 'UploadAndStartCommand', {
      description: 'Upload a dataset (one folder per label), then the marker that starts its run',
      value: `aws s3 sync ./Training ${datasetUri} && touch ${BUCKET_LAYOUT.startMarker} && aws s3 cp ${BUCKET_LAYOUT.startMarker} ${datasetUri}${BUCKET_LAYOUT.startMarker}`,
    });
    new CfnOutput(this, 'StartExecutionCommand', {
      description: 'Start a run for a dataset already in the bucket',
      value: `aws stepfunctions start-execution --state-machine-arn ${this.stateMachine.stateMachineArn} --input '{"inputPrefix":"${BUCKET_LAYOUT.inputRoot}fruits/"}'`,
    });
  }
}
