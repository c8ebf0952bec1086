import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { BUCKET_LAYOUT } from '../../lambdas/contracts/bucket-layout';
import { PipelineKey } from './pipeline-key';

/** The execution statuses that end a run: each one is published to the topic. */
export const RUN_END_STATUSES = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const;

/** Services that publish to the topic: the run-end rule and the alarms. */
const TOPIC_PUBLISHERS = ['events.amazonaws.com', 'cloudwatch.amazonaws.com'];

export interface PipelineNotificationsProps {
  readonly stateMachine: sfn.IStateMachine;
  readonly bucket: s3.IBucket;
  readonly featurizeFunction: lambda.IFunction;
  /** Start events that could not start a run (the upload rule's dead-letter queue). */
  readonly startDeadLetterQueue: sqs.IQueue;
  /** Featurize errors per invocation, in percent over 5 minutes, that raise the error-rate alarm. */
  readonly featurizeErrorRatePercent: number;
  /** Subscribed to the topic. @default - no subscription */
  readonly email?: string;
  /**
   * Key of the topic; its policy must let EventBridge and CloudWatch use it.
   * @default - a key of the topic's own (the AWS-managed aws/sns key cannot be opened to them)
   */
  readonly encryptionKey?: kms.IKey;
  /** Fate of the topic's own key when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * What tells an operator something happened: an encrypted SNS topic (optionally with an e-mail
 * subscription), the alarms that publish to it, and a rule that publishes the end of every run
 * (status, run id, where the results are, the execution's output or error).
 */
/** How far back each alarm looks. */
const ALARM_PERIOD = Duration.minutes(5);

export class PipelineNotifications extends Construct {
  public readonly topic: sns.Topic;
  public readonly alarms: cloudwatch.Alarm[] = [];
  public readonly runEndRule: events.Rule;

  constructor(scope: Construct, id: string, props: PipelineNotificationsProps) {
    super(scope, id);
    this.topic = this.createTopic(props);
    const notify = new actions.SnsAction(this.topic);
    this.addRunAlarms(props.stateMachine, notify);
    this.addFeaturizeAlarms(props.featurizeFunction, props.featurizeErrorRatePercent, notify);
    this.addCountAlarm(
      'RunsNotStarted',
      "A start marker could not start its run after EventBridge retried (the event is in the start rule's dead-letter queue)",
      props.startDeadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: ALARM_PERIOD, statistic: 'Maximum' }),
      notify,
    );
    this.runEndRule = this.createRunEndRule(props);
  }

  /**
   * The topic, encrypted. Encrypted topics only take messages from EventBridge and CloudWatch
   * alarms with a key whose policy names them: https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html
   */
  private createTopic(props: PipelineNotificationsProps): sns.Topic {
    const masterKey =
      props.encryptionKey ?? new PipelineKey(this, 'TopicKey', { publishingServices: TOPIC_PUBLISHERS, removalPolicy: props.removalPolicy }).key;
    const topic = new sns.Topic(this, 'Topic', { masterKey, enforceSSL: true, displayName: 'Fruits pipeline runs and alarms' });
    if (props.email) topic.addSubscription(new subscriptions.EmailSubscription(props.email));
    return topic;
  }

  /** Runs that ended badly: one alarm per status, so the alarm's name says which. */
  private addRunAlarms(sm: sfn.IStateMachine, notify: cloudwatch.IAlarmAction): void {
    const period = ALARM_PERIOD;
    const description = (what: string) => `A feature run ${what} (see the state machine's executions and results/<runId>/failure.json)`;
    this.addCountAlarm('ExecutionsFailed', description('failed'), sm.metricFailed({ period, statistic: 'Sum' }), notify);
    this.addCountAlarm('ExecutionsTimedOut', description('timed out'), sm.metricTimedOut({ period, statistic: 'Sum' }), notify);
    this.addCountAlarm('ExecutionsAborted', description('was aborted'), sm.metricAborted({ period, statistic: 'Sum' }), notify);
  }

  /**
   * Featurize: errors as a share of invocations (a bad image is never an error: systemic
   * trouble is), and throttles (MaxConcurrency above the concurrency the account gives it).
   */
  private addFeaturizeAlarms(fn: lambda.IFunction, errorRatePercent: number, notify: cloudwatch.IAlarmAction): void {
    const period = ALARM_PERIOD;
    const errorRate = new cloudwatch.MathExpression({
      expression: 'IF(invocations > 0, 100 * errors / invocations, 0)',
      usingMetrics: { errors: fn.metricErrors({ period, statistic: 'Sum' }), invocations: fn.metricInvocations({ period, statistic: 'Sum' }) },
      period,
      label: 'featurize error rate (%)',
    });
    this.addAlarm(
      new cloudwatch.Alarm(this, 'FeaturizeErrorRate', {
        alarmDescription: `Featurize errors above ${errorRatePercent}% of its invocations over 5 minutes (failed batches are retried, then fail their images)`,
        metric: errorRate,
        threshold: errorRatePercent,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      notify,
    );
    this.addCountAlarm(
      'FeaturizeThrottles',
      'Featurize invocations were throttled: MaxConcurrency exceeds the concurrency available to the function (the Map retries them, slower)',
      fn.metricThrottles({ period, statistic: 'Sum' }),
      notify,
    );
  }

  /** An alarm as soon as `metric` counts one in a period. */
  private addCountAlarm(id: string, alarmDescription: string, metric: cloudwatch.IMetric, notify: cloudwatch.IAlarmAction): void {
    this.addAlarm(
      new cloudwatch.Alarm(this, id, {
        alarmDescription,
        metric,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      notify,
    );
  }

  /**
   * The end of every run, whatever its status. The execution name is the run id unless the
   * StartExecution input named one (the output's runId then says which).
   */
  private createRunEndRule(props: PipelineNotificationsProps): events.Rule {
    const runId = events.EventField.fromPath('$.detail.name');
    const rule = new events.Rule(this, 'RunEnded', {
      description: 'Publish the end of every feature run (status, run id, results) to the notification topic',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: { stateMachineArn: [props.stateMachine.stateMachineArn], status: [...RUN_END_STATUSES] },
      },
    });
    rule.addTarget(
      new targets.SnsTopic(this.topic, {
        message: events.RuleTargetInput.fromObject({
          status: events.EventField.fromPath('$.detail.status'),
          runId,
          execution: events.EventField.fromPath('$.detail.executionArn'),
          results: `s3://${props.bucket.bucketName}/${BUCKET_LAYOUT.resultsRoot}${runId}/`,
          // The aggregate step's result (rows, k, counts, outputs) on success; error and cause otherwise.
          output: events.EventField.fromPath('$.detail.output'),
          error: events.EventField.fromPath('$.detail.error'),
          cause: events.EventField.fromPath('$.detail.cause'),
        }),
      }),
    );
    return rule;
  }

  private addAlarm(alarm: cloudwatch.Alarm, action: cloudwatch.IAlarmAction): void {
    alarm.addAlarmAction(action);
    this.alarms.push(alarm);
  }
}
