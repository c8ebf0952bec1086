import * as path from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ecrAssets from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ServiceWidePolicy, XRAY_WRITE_ACTIONS } from './service-wide-policy';

/** CPU architecture of a function; its image is built for the matching platform. */
export type FunctionArchitecture = 'x86_64' | 'arm64';

/** How the handlers' image is built. Functions given equal builds share one image asset. */
export interface ImageBuild {
  /** Docker build context. */
  readonly directory: string;
  /** Dockerfile, relative to `directory`. */
  readonly file: string;
  readonly buildArgs: Record<string, string>;
  readonly architecture: FunctionArchitecture;
}

/**
 * The pipeline's one image: built from the project root (so it can bundle `lambdas/` and run the
 * model fetch tool) with `layers/Dockerfile`, which stacks the image layers of `layers/`. What goes
 * into the build context is said once, in the root `.dockerignore`, which both `docker build` and
 * the CDK asset staging read: only the build's inputs, so `cdk synth` copies no node_modules or
 * cdk.out and the image hash changes only with them.
 */
export function pipelineImageBuild(options: { modelId: string; architecture: FunctionArchitecture }): ImageBuild {
  return {
    directory: path.join(__dirname, '..', '..'),
    file: path.join('layers', 'Dockerfile'),
    buildArgs: { MODEL_ID: options.modelId },
    architecture: options.architecture,
  };
}

const ARCHITECTURES: Record<FunctionArchitecture, { lambda: lambda.Architecture; platform: ecrAssets.Platform }> = {
  x86_64: { lambda: lambda.Architecture.X86_64, platform: ecrAssets.Platform.LINUX_AMD64 },
  arm64: { lambda: lambda.Architecture.ARM_64, platform: ecrAssets.Platform.LINUX_ARM64 },
};

export interface ImageFunctionProps {
  readonly image: ImageBuild;
  /** Handler of the image to run, `<module path>.<export>` (the image's CMD). */
  readonly handler: string;
  readonly description: string;
  /** Memory in MB (CPU share grows with it). */
  readonly memorySize: number;
  readonly timeout: Duration;
  /** @default - no reserved concurrency (shares the account's pool) */
  readonly reservedConcurrentExecutions?: number;
  /** @default - none */
  readonly environment?: Record<string, string>;
  readonly logRetention: logs.RetentionDays;
  /** Fate of the log group when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
  /** Customer-managed key of the log group. @default - CloudWatch Logs' own encryption */
  readonly logEncryptionKey?: kms.IKey;
}

/**
 * A container-image Lambda function with the house defaults: architecture matching the image
 * platform, X-Ray tracing, its own log group with retention, and a role that can write to that
 * log group only (no AWSLambdaBasicExecutionRole managed policy, which grants every log group).
 * The X-Ray actions, which only exist on `*`, are in a `ServiceWidePolicy` of their own.
 */
export class ImageFunction extends Construct {
  public readonly function: lambda.DockerImageFunction;
  public readonly role: iam.Role;
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ImageFunctionProps) {
    super(scope, id);
    const architecture = ARCHITECTURES[props.image.architecture];

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
      encryptionKey: props.logEncryptionKey,
    });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Runs ${props.handler}`,
    });
    this.logGroup.grantWrite(this.role);
    // X-Ray in a policy of its own, so `Resource: *` is acknowledged for these two actions only.
    const tracing = new ServiceWidePolicy(this, 'TracingPolicy', {
      role: this.role,
      actions: XRAY_WRITE_ACTIONS,
      reason: 'X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not support resource-level permissions.',
    });

    this.function = new lambda.DockerImageFunction(this, 'Function', {
      description: props.description,
      code: lambda.DockerImageCode.fromImageAsset(props.image.directory, {
        file: props.image.file,
        buildArgs: props.image.buildArgs,
        platform: architecture.platform,
        cmd: [props.handler],
      }),
      architecture: architecture.lambda,
      memorySize: props.memorySize,
      timeout: props.timeout,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      environment: props.environment,
      logGroup: this.logGroup,
      role: this.role,
    });
    // Active tracing set on the resource: the L2 `tracing` prop would put the X-Ray statement in
    // the role's DefaultPolicy, next to the grants cdk-nag must keep checking.
    (this.function.node.defaultChild as lambda.CfnFunction).tracingConfig = { mode: lambda.Tracing.ACTIVE };
    this.function.node.defaultChild!.node.addDependency(tracing);
  }
}
