/**
 * Powertools set up once per function: Logger (with the Lambda context injected), Metrics (one EMF
 * record per invocation, names in lambdas/contracts/metrics.ts) and Tracer (a subsegment around the
 * handler, the S3 client captured). The Tracer exists only where it would trace: in Lambda
 * (AWS_EXECUTION_ENV) unless POWERTOOLS_TRACE_ENABLED=false, which the local run sets. Elsewhere
 * it is not even loaded: the X-Ray SDK it brings enables async hooks at import (cls-hooked), a cost
 * on every promise of the featurize path (about 3% of its CPU in bench/featurize.ts's profile). The
 * local run sets POWERTOOLS_METRICS_DISABLED=true so no EMF line reaches its progress display.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { OBSERVABILITY_ENV } from '../contracts/handler-env';
import {
  BATCH_METRICS,
  BatchMeasurements,
  DEFAULT_SERVICE_NAME,
  MEMORY_METRIC,
  METRICS_FUNCTION_DIMENSION,
  METRICS_NAMESPACE,
  RUN_METRICS,
  RunMeasurements,
} from '../contracts/metrics';

/** The Lambda context as Powertools' Logger takes it (the local run passes none). */
export type LambdaContext = Parameters<Logger['addContext']>[0];

export interface Observability {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Absent where nothing would be traced (see above). */
  readonly tracer?: Tracer;
}

/** Powertools' own rule: tracing in Lambda unless turned off. */
function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.AWS_EXECUTION_ENV) && env[OBSERVABILITY_ENV.traceEnabled]?.toLowerCase() !== 'false';
}

/** `fn`: the `function` key of every log line. Reads Powertools' variables from `env` (at init). */
export function createObservability(fn: 'featurize' | 'aggregate', env: NodeJS.ProcessEnv = process.env): Observability {
  const serviceName = env[OBSERVABILITY_ENV.serviceName] || DEFAULT_SERVICE_NAME;
  return {
    logger: new Logger({ serviceName, persistentKeys: { function: fn } }),
    metrics: new Metrics({
      serviceName,
      namespace: env[OBSERVABILITY_ENV.metricsNamespace] || METRICS_NAMESPACE,
      defaultDimensions: { [METRICS_FUNCTION_DIMENSION]: fn },
    }),
    tracer: tracingWanted(env) ? new (loadTracer())({ serviceName }) : undefined,
  };
}

function loadTracer(): typeof Tracer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only where it traces (see above)
  return (require('@aws-lambda-powertools/tracer') as typeof import('@aws-lambda-powertools/tracer')).Tracer;
}

/**
 * The handler wrapped: context into the logger, a `## <name>` subsegment with the cold-start and
 * service annotations, the peak memory added to the invocation's metrics, and the metrics flushed
 * (one EMF line) whether the work succeeded or threw. What Powertools' `captureLambdaHandler` and
 * `logMetrics` middlewares do, without middy.
 */
export function observedHandler<R>(
  observability: Observability,
  name: string,
  work: (event: unknown, metrics: Metrics) => Promise<R>,
): (event: unknown, context?: LambdaContext) => Promise<R> {
  const { logger, metrics, tracer } = observability;
  return async (event, context) => {
    if (context) logger.addContext(context);
    const segment = tracer?.isTracingEnabled() ? tracer.getSegment() : undefined;
    const subsegment = segment?.addNewSubsegment(`## ${name}`);
    if (tracer && subsegment) {
      tracer.setSegment(subsegment);
      tracer.annotateColdStart();
      tracer.addServiceNameAnnotation();
    }
    try {
      return await work(event, metrics);
    } catch (error) {
      if (subsegment) tracer?.addErrorAsMetadata(error as Error);
      throw error;
    } finally {
      metrics.addMetric(MEMORY_METRIC, MetricUnit.Megabytes, maxMemoryUsedMb());
      metrics.publishStoredMetrics();
      if (subsegment && segment) {
        subsegment.close();
        tracer?.setSegment(segment);
      }
    }
  };
}

/** Peak resident set of this process in MB: what Lambda reports as `Max Memory Used`. */
export function maxMemoryUsedMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024); // maxRSS is in kilobytes
}

const perItem = (totalMs: number, count: number) => (count > 0 ? round2(totalMs / count) : undefined);
const round2 = (value: number) => Math.round(value * 100) / 100;

/** One featurize batch's metrics (BATCH_METRICS); a mean with nothing to average is left out. */
export function recordBatchMetrics(metrics: Metrics, measured: BatchMeasurements): void {
  metrics.addMetric(BATCH_METRICS.imagesProcessed, MetricUnit.Count, measured.processed);
  metrics.addMetric(BATCH_METRICS.imagesFailed, MetricUnit.Count, measured.failed);
  metrics.addMetric(BATCH_METRICS.imagesSkipped, MetricUnit.Count, measured.skipped);
  const means: [string, number | undefined][] = [
    [BATCH_METRICS.readMsPerImage, perItem(measured.readMs, measured.reads)],
    [BATCH_METRICS.decodeMsPerImage, perItem(measured.decodeMs, measured.decodes)],
    [BATCH_METRICS.inferenceMsPerImage, perItem(measured.inferenceMs, measured.processed)],
  ];
  for (const [name, value] of means) if (value !== undefined) metrics.addMetric(name, MetricUnit.Milliseconds, value);
  metrics.addMetric(BATCH_METRICS.batchDuration, MetricUnit.Milliseconds, Math.round(measured.totalMs));
  metrics.addMetric(BATCH_METRICS.runtimeFallback, MetricUnit.Count, measured.runtimeFallback ? 1 : 0);
}

/** One run's metrics (RUN_METRICS); accuracy only when the result has one. */
export function recordRunMetrics(metrics: Metrics, run: RunMeasurements): void {
  metrics.addMetric(RUN_METRICS.rows, MetricUnit.Count, run.rows);
  metrics.addMetric(RUN_METRICS.components, MetricUnit.Count, run.components);
  metrics.addMetric(RUN_METRICS.explainedVariance, MetricUnit.NoUnit, run.explainedVariance);
  metrics.addMetric(RUN_METRICS.imagesFailed, MetricUnit.Count, run.counts.failed);
  metrics.addMetric(RUN_METRICS.imagesSkipped, MetricUnit.Count, run.counts.skipped);
  metrics.addMetric(RUN_METRICS.failedBatches, MetricUnit.Count, run.counts.failedBatches);
  if (typeof run.accuracy === 'number' && Number.isFinite(run.accuracy)) metrics.addMetric(RUN_METRICS.accuracy, MetricUnit.NoUnit, run.accuracy);
}
