import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, IConstruct } from 'constructs';
import { BUCKET_LAYOUT } from '../../lambdas/contracts/bucket-layout';

export interface DataBucketProps {
  /** Days before objects under `work/` (shards, map results) expire. */
  readonly intermediateRetention: Duration;
  /** Days before server access logs expire. @default - never */
  readonly accessLogRetention?: Duration;
  /** Fate of both buckets when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * How long replaced or deleted object versions are kept (versioning is on to undo mistakes,
   * not to archive). @default Duration.days(30)
   */
  readonly noncurrentVersionRetention?: Duration;
  /**
   * Customer-managed key of the data bucket (SSE-KMS with an S3 Bucket Key, which cuts the KMS
   * requests to about one per object prefix and hour). The access-log bucket stays SSE-S3: log
   * delivery supports nothing else. @default - SSE-S3
   */
  readonly encryptionKey?: kms.IKey;
}

/**
 * The pipeline's bucket (layout in docs/DESIGN.md) with secure defaults, plus its access-log
 * bucket. Grants are per prefix and per exact action: `bucket.grantRead()` would hand out
 * `s3:GetObject*`, `s3:GetBucket*` and `s3:List*` on the whole bucket.
 */
export class DataBucket extends Construct {
  public readonly bucket: s3.Bucket;
  public readonly accessLogBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: DataBucketProps) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    // A non-empty (versioned) bucket cannot be deleted by CloudFormation: "destroy" only works
    // if its objects go first.
    const autoDeleteObjects = removalPolicy === RemovalPolicy.DESTROY;

    this.accessLogBucket = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      // Server access log delivery only supports SSE-S3 on the target bucket.
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: props.accessLogRetention && [{ id: 'expire-access-logs', expiration: props.accessLogRetention }],
      removalPolicy,
      autoDeleteObjects,
    });
    Validations.of(this.accessLogBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the access-log target of the data bucket; logging it too would log the log writes.',
    });

    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      ...(props.encryptionKey
        ? { encryption: s3.BucketEncryption.KMS, encryptionKey: props.encryptionKey, bucketKeyEnabled: true }
        : { encryption: s3.BucketEncryption.S3_MANAGED }),
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      serverAccessLogsBucket: this.accessLogBucket,
      serverAccessLogsPrefix: 'data/',
      lifecycleRules: [
        {
          id: 'expire-intermediate-artifacts',
          prefix: BUCKET_LAYOUT.workRoot,
          expiration: props.intermediateRetention,
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          id: 'expire-replaced-versions',
          noncurrentVersionExpiration: props.noncurrentVersionRetention ?? Duration.days(30),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
          expiredObjectDeleteMarker: true,
        },
      ],
      removalPolicy,
      autoDeleteObjects,
    });
    // EventBridge delivery set on the bucket resource itself: `eventBridgeEnabled: true` would add
    // the BucketNotifications custom resource (a Lambda with s3:PutBucketNotification on `*`).
    (this.bucket.node.defaultChild as s3.CfnBucket).notificationConfiguration = {
      eventBridgeConfiguration: { eventBridgeEnabled: true },
    };
  }

  /** Read objects under `prefix` (`s3:GetObject`; HEAD requests use the same permission). */
  public grantReadObjects(grantee: iam.IGrantable, prefix: string): iam.Grant {
    this.acknowledgePrefixScope(grantee.grantPrincipal, prefix);
    return this.grantStatement(grantee, this.objectsStatement(['s3:GetObject'], prefix));
  }

  /** Write objects under `prefix`, including multipart uploads and their clean-up on failure. */
  public grantWriteObjects(grantee: iam.IGrantable, prefix: string): iam.Grant {
    this.acknowledgePrefixScope(grantee.grantPrincipal, prefix);
    return this.grantStatement(grantee, this.objectsStatement(['s3:PutObject', 's3:AbortMultipartUpload'], prefix));
  }

  /** Exact object actions on the keys under `prefix`. */
  public objectsStatement(actions: string[], prefix: string): iam.PolicyStatement {
    return new iam.PolicyStatement({ actions, resources: [this.bucket.arnForObjects(`${prefix}*`)] });
  }

  /** `s3:ListBucket` is a bucket action: the `s3:prefix` condition keeps it to `prefix`. */
  public listStatement(prefix: string): iam.PolicyStatement {
    return new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [this.bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
    });
  }

  /**
   * cdk-nag's AwsSolutions-IAM5 flags every `<bucket>/<prefix>*` resource, yet being scoped to one
   * prefix of the layout is the point of these grants: `scope` (the policy's holder or an
   * ancestor) acknowledges the finding for `prefix`.
   */
  public acknowledgePrefixScope(scope: iam.IPrincipal | IConstruct, prefix: string): void {
    if (!Construct.isConstruct(scope)) return; // not a construct: no policy of this app to check
    const bucketLogicalId = Stack.of(this).resolve((this.bucket.node.defaultChild as s3.CfnBucket).logicalId);
    Validations.of(scope).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${bucketLogicalId}.Arn>/${prefix}*]`,
      reason: `Objects under ${prefix} of the pipeline bucket: each role gets exact actions on the prefixes of the bucket layout (docs/DESIGN.md) it works on, nothing more.`,
    });
  }

  private grantStatement(grantee: iam.IGrantable, statement: iam.PolicyStatement): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: statement.actions,
      resourceArns: statement.resources,
      conditions: statement.conditions,
    });
  }
}
