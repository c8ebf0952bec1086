import { Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';

export interface PipelineKeyProps {
  /** Fate of the key when the stack is deleted (data encrypted with it is unreadable without it). @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** Services that publish to a topic or send to a queue encrypted with this key. @default - none */
  readonly publishingServices?: string[];
  /** Whether CloudWatch Logs may use the key for this account's and region's log groups. @default false */
  readonly logGroups?: boolean;
}

/**
 * A customer-managed KMS key with rotation. The key policy names only the AWS services that use it
 * on the stack's behalf (CloudWatch Logs for the log groups, EventBridge and CloudWatch alarms
 * for the encrypted topic and queue); the roles get their share through `grant*` on their own
 * policies.
 */
export class PipelineKey extends Construct {
  public readonly key: kms.Key;

  constructor(scope: Construct, id: string, props: PipelineKeyProps = {}) {
    super(scope, id);
    this.key = new kms.Key(this, 'Key', {
      description: `Encrypts ${id} data of the fruits pipeline`,
      enableKeyRotation: true,
      pendingWindow: Duration.days(30),
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    if (props.logGroups) {
      // https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
      this.key.addToResourcePolicy(
        new iam.PolicyStatement({
          principals: [new iam.ServicePrincipal(`logs.${Aws.REGION}.amazonaws.com`)],
          actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
          resources: ['*'],
          conditions: { ArnLike: { 'kms:EncryptionContext:aws:logs:arn': `arn:${Aws.PARTITION}:logs:${Aws.REGION}:${Aws.ACCOUNT_ID}:log-group:*` } },
        }),
      );
    }
    // https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
    for (const service of props.publishingServices ?? []) this.key.grant(new iam.ServicePrincipal(service), 'kms:Decrypt', 'kms:GenerateDataKey');
  }
}
