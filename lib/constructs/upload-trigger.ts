import { Duration, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { BUCKET_LAYOUT } from '../../lambdas/contracts/bucket-layout';

export interface UploadTriggerProps {
  /** Bucket whose "Object Created" events are watched (EventBridge delivery must be on). */
  readonly bucket: s3.IBucket;
  /** Started once per start marker. */
  readonly stateMachine: sfn.IStateMachine;
  /**
   * Key of the dead-letter queue; its policy must let events.amazonaws.com use it.
   * @default - SQS-managed encryption (SSE-SQS)
   */
  readonly encryptionKey?: kms.IKey;
}

/**
 * How long EventBridge keeps trying to start a run (StartExecution throttled or refused) before
 * the event goes to the dead-letter queue; the queue keeps it for the maximum, 14 days.
 * https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html
 */
export const START_RETRY = { maxEventAge: Duration.hours(2), retryAttempts: 10 } as const;

/**
 * Starts a run when a start marker `input/<dataset>/_START` is uploaded, with the execution input
 * `{ "trigger": { "bucket", "key" } }`. Images never start runs: the marker is uploaded last, so
 * the run lists a complete folder. The wildcard also matches deeper markers; the state machine
 * rejects those with a clear cause instead of silently ignoring them.
 */
export class UploadTrigger extends Construct {
  public readonly rule: events.Rule;
  /** Start events EventBridge could not deliver after its retries (a run that never started). */
  public readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: UploadTriggerProps) {
    super(scope, id);
    this.rule = new events.Rule(this, 'Rule', {
      description: `Start a feature run when ${BUCKET_LAYOUT.inputRoot}<dataset>/${BUCKET_LAYOUT.startMarker} is uploaded`,
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: {
          bucket: { name: [props.bucket.bucketName] },
          object: { key: events.Match.wildcard(`${BUCKET_LAYOUT.inputRoot}*/${BUCKET_LAYOUT.startMarker}`) },
        },
      },
    });
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      ...(props.encryptionKey
        ? { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: props.encryptionKey }
        : { encryption: sqs.QueueEncryption.SQS_MANAGED }),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: "This queue is the dead-letter queue of the start rule's target (EventBridge DeadLetterConfig); nothing reads from it to need one of its own.",
    });
    this.rule.addTarget(
      new targets.SfnStateMachine(props.stateMachine, {
        deadLetterQueue: this.deadLetterQueue,
        maxEventAge: START_RETRY.maxEventAge,
        retryAttempts: START_RETRY.retryAttempts,
        input: events.RuleTargetInput.fromObject({
          trigger: {
            bucket: events.EventField.fromPath('$.detail.bucket.name'),
            key: events.EventField.fromPath('$.detail.object.key'),
          },
        }),
      }),
    );
  }
}
