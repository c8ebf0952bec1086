import { Aws, CfnOutput, Duration, RemovalPolicy, Stack, StackProps, Tags } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { BUCKET_LAYOUT } from '../lambdas/contracts/bucket-layout';
import { aggregateEnvironment, featurizeEnvironment, observabilityEnvironment } from '../lambdas/contracts/handler-env';
import { METRICS_NAMESPACE } from '../lambdas/contracts/metrics';
import type { PipelineConfig } from './config';
import { CostBudget } from './constructs/cost-budget';
import { DataBucket } from './constructs/data-bucket';
import { FeaturePipeline, MAP_RUN_LABEL } from './constructs/feature-pipeline';
import { ImageFunction, ImageFunctionProps, pipelineImageBuild } from './constructs/image-function';
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

/** What every resource of the stack that keeps data or logs is given alike. */
interface SharedSettings {
  readonly removalPolicy: RemovalPolicy;
  readonly logRetention: logs.RetentionDays;
  /** The customer-managed key, when `customerManagedKey` is set. */
  readonly key?: kms.Key;
}

/** What both functions share: the one image, and how their log groups are kept. */
type FunctionDefaults = Pick<ImageFunctionProps, 'image' | 'logRetention' | 'logRemovalPolicy' | 'logEncryptionKey'>;

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
    const shared: SharedSettings = { removalPolicy, logRetention, key: this.createEncryptionKey(config, removalPolicy) };
    this.encryptionKey = shared.key;

    const data = new DataBucket(this, 'Data', {
      intermediateRetention: Duration.days(config.intermediateRetentionDays),
      accessLogRetention: logRetention === logs.RetentionDays.INFINITE ? undefined : Duration.days(config.logRetentionDays),
      removalPolicy,
      encryptionKey: shared.key,
    });
    this.bucket = data.bucket;

    // One image for both functions, run with a different CMD: one build, and the aggregator
    // shares the featurizer's shard-reading code. The aggregator's cold start on the larger
    // image does not matter: it runs once per run.
    const image = pipelineImageBuild({ modelId: config.modelId, architecture: config.architecture });
    const functionDefaults = { image, logRetention, logRemovalPolicy: removalPolicy, logEncryptionKey: shared.key };
    const featurize = this.createFeaturizeFunction(config, data, functionDefaults);
    this.featurizeFunction = featurize.function;
    const aggregate = this.createAggregateFunction(config, data, functionDefaults);
    this.aggregateFunction = aggregate.function;

    this.stateMachine = this.createPipeline(config, data, shared).stateMachine;
    const trigger = new UploadTrigger(this, 'UploadTrigger', { bucket: this.bucket, stateMachine: this.stateMachine, encryptionKey: shared.key });

    // Operations: metrics env, KMS grants, notifications, dashboard, budget, tags.
    this.addObservabilityAndKeyGrants([featurize.role, aggregate.role, this.stateMachine.role], shared.key);
    this.notifications = config.notifications ? this.createNotifications(config, trigger, shared) : undefined;
    this.dashboard = config.dashboard ? this.createDashboard(config) : undefined;
    this.addBudgetAndTags(config);
    this.addOutputs();
  }

  /**
   * One key for the bucket, the log groups, the topic and the queue when the organisation
   * requires its own; its policy names the services that use it for the stack.
   */
  private createEncryptionKey(config: PipelineConfig, removalPolicy: RemovalPolicy): kms.Key | undefined {
    if (!config.customerManagedKey) return undefined;
    return new PipelineKey(this, 'EncryptionKey', { logGroups: true, publishingServices: ['events.amazonaws.com', 'cloudwatch.amazonaws.com'], removalPolicy })
      .key;
  }

  /** The featurize function: reads input/, writes its shards under work/. */
  private createFeaturizeFunction(config: PipelineConfig, data: DataBucket, defaults: FunctionDefaults): ImageFunction {
    const { featurizer, modelId, imageSize, featureLayers, featurePower, maxInputPixels, readConcurrency, fieldCopyEvery } = config;
    const featurize = new ImageFunction(this, 'Featurize', {
      ...defaults,
      handler: 'lambdas/featurize/handler.handler',
      description: 'Featurizes one batch of images into a feature shard',
      memorySize: config.featurizeMemoryMb,
      timeout: Duration.seconds(config.featurizeTimeoutSeconds),
      reservedConcurrentExecutions: config.featurizeReservedConcurrency,
      // Tuning left unset takes the handler's defaults; /opt/model is where the Dockerfile bakes the model.
      environment: featurizeEnvironment({
        featurizer,
        modelId,
        modelDir: '/opt/model',
        imageSize,
        featureLayers,
        featurePower,
        maxInputPixels,
        readConcurrency,
        fieldCopyEvery,
      }),
    });
    data.grantReadObjects(featurize.role, BUCKET_LAYOUT.inputRoot);
    data.grantWriteObjects(featurize.role, BUCKET_LAYOUT.workRoot);
    return featurize;
  }

  /** The aggregate function: reads work/ and input/ (thumbnails) and results/ (a saved model), writes work/ and results/. */
  private createAggregateFunction(config: PipelineConfig, data: DataBucket, defaults: FunctionDefaults): ImageFunction {
    const { pcaComponents, pcaVarianceThreshold, knnNeighbours, classifier, classifierComponents, keepEmbeddings } = config;
    const aggregate = new ImageFunction(this, 'Aggregate', {
      ...defaults,
      handler: 'lambdas/aggregate/handler.handler',
      description: 'Standardises all feature shards of a run, fits the PCA, writes the results',
      memorySize: config.aggregateMemoryMb,
      timeout: Duration.seconds(config.aggregateTimeoutSeconds),
      environment: aggregateEnvironment({
        pcaComponents,
        pcaVarianceThreshold,
        groupShards: config.aggregateGroupShards,
        momentsMergeFanIn: config.momentsMergeFanIn,
        knnNeighbours,
        classifier,
        classifierComponents,
        keepEmbeddings,
      }),
    });
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.workRoot);
    // The stages hand each other plans, moments and parts under work/<runId>/aggregate/.
    data.grantWriteObjects(aggregate.role, BUCKET_LAYOUT.workRoot);
    // report.html's gallery shows misclassified images beside their nearest reference: read from input/.
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.inputRoot);
    // A run started with `pcaModel` reads a saved model (and its references) from results/.
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.resultsRoot);
    data.grantWriteObjects(aggregate.role, BUCKET_LAYOUT.resultsRoot);
    return aggregate;
  }

  /** The run's state machine over both functions. */
  private createPipeline(config: PipelineConfig, data: DataBucket, shared: SharedSettings): FeaturePipeline {
    return new FeaturePipeline(this, 'Pipeline', {
      data,
      featurizeFunction: this.featurizeFunction,
      aggregateFunction: this.aggregateFunction,
      featurizeTimeout: Duration.seconds(config.featurizeTimeoutSeconds),
      aggregateTimeout: Duration.seconds(config.aggregateTimeoutSeconds),
      batchSize: config.batchSize,
      maxConcurrency: config.maxConcurrency,
      aggregateConcurrency: config.aggregateConcurrency,
      momentsMergeFanIn: config.momentsMergeFanIn,
      toleratedFailurePercentage: config.toleratedFailurePercentage,
      logRetention: shared.logRetention,
      logRemovalPolicy: shared.removalPolicy,
      logEncryptionKey: shared.key,
    });
  }

  /** Powertools' metrics environment on both functions, and the key's use by every role that reads or writes objects. */
  private addObservabilityAndKeyGrants(roles: readonly iam.IRole[], key: kms.Key | undefined): void {
    // Powertools: the metrics' namespace and `service` dimension (lambdas/contracts/metrics.ts).
    const observability = observabilityEnvironment({ metricsNamespace: METRICS_NAMESPACE, serviceName: this.stackName });
    for (const fn of [this.featurizeFunction, this.aggregateFunction])
      for (const [name, value] of Object.entries(observability)) fn.addEnvironment(name, value);
    // SSE-KMS: reading an object takes kms:Decrypt, writing one kms:GenerateDataKey (a multipart
    // upload both). The ItemReader only lists, which needs neither.
    for (const role of roles) key?.grant(role, 'kms:Decrypt', 'kms:GenerateDataKey');
  }

  /** The topic, its alarms and the run-end rule, and the topic's ARN as an output. */
  private createNotifications(config: PipelineConfig, trigger: UploadTrigger, shared: SharedSettings): PipelineNotifications {
    const notifications = new PipelineNotifications(this, 'Notifications', {
      stateMachine: this.stateMachine,
      bucket: this.bucket,
      featurizeFunction: this.featurizeFunction,
      startDeadLetterQueue: trigger.deadLetterQueue,
      featurizeErrorRatePercent: config.featurizeErrorRateAlarmPercent,
      email: config.notificationEmail,
      encryptionKey: shared.key,
      removalPolicy: shared.removalPolicy,
    });
    new CfnOutput(this, 'NotificationTopicArn', { description: 'Alarms and run ends are published here', value: notifications.topic.topicArn });
    return notifications;
  }

  /** The CloudWatch dashboard, and its console URL as an output. */
  private createDashboard(config: PipelineConfig): PipelineDashboard {
    const dashboard = new PipelineDashboard(this, 'Dashboard', {
      stateMachine: this.stateMachine,
      mapRunLabel: MAP_RUN_LABEL,
      featurizeFunction: this.featurizeFunction,
      aggregateFunction: this.aggregateFunction,
      aggregateMemoryMb: config.aggregateMemoryMb,
      serviceName: this.stackName,
      alarms: this.notifications?.alarms,
    });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${dashboard.dashboard.dashboardName}`,
    });
    return dashboard;
  }

  /** The optional budget on the cost-allocation tag, that tag and the configured ones on every resource. */
  private addBudgetAndTags(config: PipelineConfig): void {
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
  }

  /** The bucket, the state machine, and the commands that start a run. */
  private addOutputs(): void {
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
