import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { BUCKET_LAYOUT } from '../lambdas/contracts/bucket-layout';
import { aggregateEnvironment, classifyEnvironment, featurizeEnvironment } from '../lambdas/contracts/handler-env';
import type { PipelineConfig } from './config';
import { DataBucket } from './constructs/data-bucket';
import { FeaturePipeline } from './constructs/feature-pipeline';
import { ImageFunction, pipelineImageBuild } from './constructs/image-function';
import { UploadTrigger } from './constructs/upload-trigger';

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

  constructor(scope: Construct, id: string, props: FruitsPipelineStackProps) {
    super(scope, id, props);
    const { config } = props;
    const removalPolicy = config.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;
    const logRetention = config.logRetentionDays as logs.RetentionDays;

    const data = new DataBucket(this, 'Data', {
      intermediateRetention: Duration.days(config.intermediateRetentionDays),
      accessLogRetention: logRetention === logs.RetentionDays.INFINITE ? undefined : Duration.days(config.logRetentionDays),
      removalPolicy,
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
      }),
      logRetention,
      logRemovalPolicy: removalPolicy,
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
        ...aggregateEnvironment({ pcaComponents: config.pcaComponents, pcaVarianceThreshold: config.pcaVarianceThreshold }),
        ...classifyEnvironment({ knnNeighbours: config.knnNeighbours, keepEmbeddings: config.keepEmbeddings }),
      },
      logRetention,
      logRemovalPolicy: removalPolicy,
    });
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.workRoot);
    // report.html's gallery shows misclassified images beside their nearest reference: read from input/.
    data.grantReadObjects(aggregate.role, BUCKET_LAYOUT.inputRoot);
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
      toleratedFailurePercentage: config.toleratedFailurePercentage,
      logRetention,
      logRemovalPolicy: removalPolicy,
    });
    this.stateMachine = pipeline.stateMachine;

    new UploadTrigger(this, 'UploadTrigger', { bucket: this.bucket, stateMachine: this.stateMachine });

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
