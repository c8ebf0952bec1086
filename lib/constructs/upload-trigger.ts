import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { BUCKET_LAYOUT } from '../../lambdas/contracts/bucket-layout';

export interface UploadTriggerProps {
  /** Bucket whose "Object Created" events are watched (EventBridge delivery must be on). */
  readonly bucket: s3.IBucket;
  /** Started once per start marker. */
  readonly stateMachine: sfn.IStateMachine;
}

/**
 * Starts a run when a start marker `input/<dataset>/_START` is uploaded, with the execution input
 * `{ "trigger": { "bucket", "key" } }`. Images never start runs: the marker is uploaded last, so
 * the run lists a complete folder. The wildcard also matches deeper markers; the state machine
 * rejects those with a clear cause instead of silently ignoring them.
 */
export class UploadTrigger extends Construct {
  public readonly rule: events.Rule;

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
    this.rule.addTarget(
      new targets.SfnStateMachine(props.stateMachine, {
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
