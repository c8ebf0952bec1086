import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import {
  BATCH_METRICS,
  MEMORY_METRIC,
  METRICS_FUNCTION_DIMENSION,
  METRICS_NAMESPACE,
  METRICS_SERVICE_DIMENSION,
  RUN_METRICS,
} from '../../lambdas/contracts/metrics';

export interface PipelineDashboardProps {
  readonly stateMachine: sfn.IStateMachine;
  /** The Distributed Map's label: its child executions report under `<state machine ARN>/<label>`. */
  readonly mapRunLabel: string;
  readonly featurizeFunction: lambda.IFunction;
  readonly aggregateFunction: lambda.IFunction;
  /** Memory of the aggregate function, drawn as the limit on its memory graph. */
  readonly aggregateMemoryMb: number;
  /** The `service` dimension of the handlers' metrics (POWERTOOLS_SERVICE_NAME). */
  readonly serviceName: string;
  /** The alarms, shown at the top. @default - none */
  readonly alarms?: cloudwatch.IAlarm[];
}

const PERIOD = Duration.minutes(5);

/**
 * One CloudWatch dashboard: runs (executions by status), the Map's children and images, the two
 * functions (duration, errors, throttles, memory) and the handlers' own metrics
 * (lambdas/contracts/metrics.ts). The aggregate's memory is the handler's `MaxMemoryUsedMb`
 * metric, not the REPORT line's "Max Memory Used" through a log metric filter: the same figure
 * (the process's peak RSS), in the EMF record the handler writes anyway, whatever the log format.
 */
export class PipelineDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: PipelineDashboardProps) {
    super(scope, id);
    const metrics = dashboardMetrics(props);
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { defaultInterval: Duration.days(1) });
    if (props.alarms?.length) {
      this.dashboard.addWidgets(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: props.alarms, width: 24, height: 3 }));
    }
    this.dashboard.addWidgets(...runWidgets(props.stateMachine, metrics));
    this.dashboard.addWidgets(...featurizeWidgets(props.featurizeFunction, metrics));
    this.dashboard.addWidgets(...aggregateWidgets(props, metrics));
    this.dashboard.addWidgets(lastRunWidget(metrics));
  }
}

const SUM = { period: PERIOD, statistic: 'Sum' };

/** A graph a third of the dashboard wide. */
const graph = (title: string, left: cloudwatch.IMetric[], extra: Partial<cloudwatch.GraphWidgetProps> = {}) =>
  new cloudwatch.GraphWidget({ title, left, width: 8, height: 6, ...extra });

type DashboardMetrics = ReturnType<typeof dashboardMetrics>;

/** The handlers' own metrics (lambdas/contracts/metrics.ts), and the Map children's. */
function dashboardMetrics(props: PipelineDashboardProps) {
  return {
    custom: (fn: 'featurize' | 'aggregate', metricName: string, statistic: string, label?: string) =>
      new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { [METRICS_SERVICE_DIMENSION]: props.serviceName, [METRICS_FUNCTION_DIMENSION]: fn },
        statistic,
        period: PERIOD,
        label,
      }),
    // Distributed Map children report as executions of `<state machine ARN>/<label>`.
    children: (metricName: string, label: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/States',
        metricName,
        dimensionsMap: { StateMachineArn: `${props.stateMachine.stateMachineArn}/${props.mapRunLabel}` },
        statistic: 'Sum',
        period: PERIOD,
        label,
      }),
  };
}

/** Runs by how they ended, the Map's batches, and its images. */
function runWidgets(sm: sfn.IStateMachine, { custom, children }: DashboardMetrics): cloudwatch.IWidget[] {
  return [
    graph('Runs (executions)', [
      sm.metricStarted({ ...SUM, label: 'started' }),
      sm.metricSucceeded({ ...SUM, label: 'succeeded' }),
      sm.metricFailed({ ...SUM, label: 'failed' }),
      sm.metricTimedOut({ ...SUM, label: 'timed out' }),
      sm.metricAborted({ ...SUM, label: 'aborted' }),
    ]),
    graph('Map: batches (child executions)', [
      children('ExecutionsSucceeded', 'batches succeeded'),
      children('ExecutionsFailed', 'batches failed'),
      children('ExecutionsTimedOut', 'batches timed out'),
    ]),
    graph('Map: images', [
      custom('featurize', BATCH_METRICS.imagesProcessed, 'Sum', 'processed'),
      custom('featurize', BATCH_METRICS.imagesFailed, 'Sum', 'failed'),
      custom('featurize', BATCH_METRICS.imagesSkipped, 'Sum', 'skipped'),
    ]),
  ];
}

/** The featurize function: its duration, invocations and errors, and where its time per image goes. */
function featurizeWidgets(featurize: lambda.IFunction, { custom }: DashboardMetrics): cloudwatch.IWidget[] {
  return [
    graph('Featurize duration (ms)', [
      featurize.metricDuration({ period: PERIOD, statistic: 'Average', label: 'average' }),
      featurize.metricDuration({ period: PERIOD, statistic: 'p90', label: 'p90' }),
      featurize.metricDuration({ period: PERIOD, statistic: 'Maximum', label: 'maximum' }),
    ]),
    graph('Featurize invocations, errors, throttles', [
      featurize.metricInvocations({ ...SUM, label: 'invocations' }),
      featurize.metricErrors({ ...SUM, label: 'errors' }),
      featurize.metricThrottles({ ...SUM, label: 'throttles' }),
    ]),
    // Batches whose CNN ran on TF.js (onnxruntime-node could not start) beside the inference time they slow.
    graph(
      'Featurize ms per image',
      [
        custom('featurize', BATCH_METRICS.readMsPerImage, 'Average', 'read (S3 GET)'),
        custom('featurize', BATCH_METRICS.decodeMsPerImage, 'Average', 'decode + resize'),
        custom('featurize', BATCH_METRICS.inferenceMsPerImage, 'Average', 'inference'),
      ],
      { right: [custom('featurize', BATCH_METRICS.runtimeFallback, 'Sum', 'batches on the TF.js fallback')] },
    ),
  ];
}

/** The aggregate function's duration and errors, both functions' memory, and the featurize batches' duration. */
function aggregateWidgets(props: PipelineDashboardProps, { custom }: DashboardMetrics): cloudwatch.IWidget[] {
  const aggregate = props.aggregateFunction;
  return [
    graph('Aggregate duration (ms), errors', [aggregate.metricDuration({ period: PERIOD, statistic: 'Maximum', label: 'duration' })], {
      right: [aggregate.metricErrors({ ...SUM, label: 'errors' })],
    }),
    graph(
      'Memory used (MB, peak RSS)',
      [custom('aggregate', MEMORY_METRIC, 'Maximum', 'aggregate'), custom('featurize', MEMORY_METRIC, 'Maximum', 'featurize')],
      {
        leftAnnotations: [{ value: props.aggregateMemoryMb, label: 'aggregate memory', color: cloudwatch.Color.RED }],
      },
    ),
    graph('Featurize batch duration (ms)', [
      custom('featurize', BATCH_METRICS.batchDuration, 'Average', 'average'),
      custom('featurize', BATCH_METRICS.batchDuration, 'Maximum', 'maximum'),
    ]),
  ];
}

/** The last run's figures, as the aggregate reported them. */
function lastRunWidget({ custom }: DashboardMetrics): cloudwatch.IWidget {
  return new cloudwatch.SingleValueWidget({
    title: 'Last run',
    width: 24,
    height: 4,
    metrics: [
      custom('aggregate', RUN_METRICS.rows, 'Maximum', 'rows'),
      custom('aggregate', RUN_METRICS.components, 'Maximum', 'k'),
      custom('aggregate', RUN_METRICS.explainedVariance, 'Maximum', 'explained variance'),
      custom('aggregate', RUN_METRICS.imagesFailed, 'Maximum', 'images failed'),
      custom('aggregate', RUN_METRICS.imagesSkipped, 'Maximum', 'skipped'),
      custom('aggregate', RUN_METRICS.failedBatches, 'Maximum', 'failed batches'),
      custom('aggregate', RUN_METRICS.accuracy, 'Maximum', 'accuracy'),
    ],
  });
}
