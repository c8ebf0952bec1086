/**
 * The aggregate step: from the Distributed Map's ResultWriter manifest to the run's outputs.
 *
 *   1. read the manifest and result files (`map-results.ts`): one outcome per batch;
 *   2. pass 1: read the feature shards one at a time (a couple prefetched) into the
 *      `ScatterAccumulator`: memory is bounded by a shard or two plus the dim x dim scatter;
 *   3. fit the PCA (standardise, eigen-decompose, choose k);
 *   4. pass 2: read the shards again, project, and stream `features.csv` to S3;
 *   5. write `pca-model.json`, `explained-variance.csv`, `scree.svg`, `pca-scatter.svg` and
 *      `report.json` (which accounts for every listed object).
 *
 * Between passes 1 and 2 the run proves it accounted for every key the map run handed out
 * (`input-accounting.ts`): if it cannot, report.json says so and the step fails with
 * `IncompleteRunError` instead of writing outputs that silently lack images.
 *
 * Shards are visited in key order, so the same map run always gives the same bytes whatever
 * order the ResultWriter listed its children in. An image key met twice (a batch redriven into a
 * second shard) is kept once.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { AggregateEvent, AggregateEventSchema, FeaturizeBatchSummary, parseEvent, TransientStorageError } from '../contracts/events';
import { decodeFeatureShard, FeatureShard } from '../core/feature-shard';
import { explainedVarianceCsv, featuresCsvHeader, featuresCsvRow } from '../core/features-csv';
import { IncompleteRunError, InputAccounting, describeIncompleteAccounting } from '../core/input-accounting';
import { resultKey, type ResultFile } from '../contracts/bucket-layout';
import { FailedBatch, readMapRunResults } from '../core/map-results';
import { scatterPlotSvg, ScatterSample, screePlotSvg } from '../core/plots';
import { RunReportBuilder } from '../core/run-report';
import { ComponentSelection, DEFAULT_BLOCK_ROWS, fitPca, InsufficientDataError, PcaFit, PcaProjector, ScatterAccumulator } from '../core/streaming-pca';
import { describeError, MissingObjectError, putObject, readBytes, readText } from '../aws/s3-client';
import { StreamedTextUpload } from '../aws/streamed-upload';

/** The outputs the aggregate step writes under the run's outputPrefix (failure.json is the state machine's). */
const OUTPUT_FILES = ['features', 'model', 'explainedVariance', 'scree', 'scatter', 'report'] as const satisfies readonly ResultFile[];
export type OutputName = (typeof OUTPUT_FILES)[number];

/** What the aggregate step returns to the state machine: small, pointers only. */
export interface AggregateResult {
  runId: string;
  bucket: string;
  /** Rows of features.csv (images processed). */
  rows: number;
  /** Principal components kept (k). */
  components: number;
  /** Cumulative explained variance ratio of the k components. */
  explainedVariance: number;
  counts: { processed: number; failed: number; skipped: number; failedBatches: number };
  /** Object keys (in `bucket`) of every output. */
  outputs: Record<OutputName, string>;
}

export interface AggregateSettings extends ComponentSelection {
  /** Rows per block of the scatter update. @default DEFAULT_BLOCK_ROWS */
  readonly blockRows?: number;
  /** Shards downloaded ahead of the one being processed. @default 2 */
  readonly readAhead?: number;
  /** Points drawn in pca-scatter.svg. @default SCATTER_POINT_LIMIT */
  readonly scatterPoints?: number;
}

export interface AggregateRunDeps {
  readonly s3: S3Client;
  readonly settings: AggregateSettings;
  readonly log?: { info(message: string, ...extra: Record<string, unknown>[]): void; warn(message: string, ...extra: Record<string, unknown>[]): void };
  readonly now?: () => Date;
}

/** A shard that pass 1 accepted, with the rows pass 2 must skip (duplicates, non-finite values). */
interface UsableShard {
  key: string;
  rows: number;
  excluded: Set<number>;
}

export function parseAggregateEvent(rawEvent: unknown): AggregateEvent {
  return parseEvent(AggregateEventSchema, rawEvent, 'aggregate event (AggregateEventSchema)');
}

function outputKeys(outputPrefix: string): Record<OutputName, string> {
  return Object.fromEntries(OUTPUT_FILES.map((name) => [name, resultKey(outputPrefix, name)])) as Record<OutputName, string>;
}

export async function aggregateRun(rawEvent: unknown, deps: AggregateRunDeps): Promise<AggregateResult> {
  const event = parseAggregateEvent(rawEvent);
  const { s3, settings, log } = deps;
  const now = deps.now ?? (() => new Date());
  const { bucket } = event;
  const outputs = outputKeys(event.outputPrefix);
  const report = new RunReportBuilder();
  const timings: Record<string, number> = {};
  const clock = stopwatch();

  // 1. What the map run produced.
  const details = event.mapResult.ResultWriterDetails;
  let manifestText: string;
  try {
    manifestText = await readText(s3, details.Bucket, details.Key);
  } catch (error) {
    if (error instanceof MissingObjectError) throw new Error(`ResultWriter manifest s3://${details.Bucket}/${details.Key} does not exist`);
    throw error;
  }
  const { manifest, outcomes } = await readMapRunResults(manifestText, (b, k) => readText(s3, b, k));
  const mapRunArn = event.mapResult.MapRunArn ?? manifest.MapRunArn;

  const shardBatches = new Map<string, { summary: FeaturizeBatchSummary; inputKeys?: string[] }>();
  const accounting = new InputAccounting();
  for (const outcome of outcomes) {
    const sameShardAgain = outcome.kind === 'succeeded' && outcome.summary.shard !== null && shardBatches.has(outcome.summary.shard);
    if (!sameShardAgain) {
      if (outcome.inputKeys) accounting.list(outcome.inputKeys);
      else accounting.cannotProve(`a ${outcome.kind} batch's result record does not include its input (${outcome.executionArn ?? 'execution unknown'})`);
    }
    if (outcome.kind === 'failed') {
      report.addFailedBatch(outcome);
    } else if (outcome.summary.shard === null) {
      report.addSummary(outcome.summary);
    } else if (sameShardAgain) {
      // The same batch twice (a redrive re-wrote the same content-named shard): count it once.
      report.warn(`shard ${outcome.summary.shard} is listed by more than one child execution; counted once`);
    } else {
      shardBatches.set(outcome.summary.shard, { summary: outcome.summary, inputKeys: outcome.inputKeys });
    }
  }
  const shardKeys = [...shardBatches.keys()].sort();
  timings.readMapResults = clock.lap();
  log?.info('map results read', { mapRunArn, batches: outcomes.length, shards: shardKeys.length });

  // 2. Pass 1: moments.
  let accumulator: ScatterAccumulator | undefined;
  let featurizer = '';
  let dim = 0;
  const usable: UsableShard[] = [];
  const seenKeys = new Set<string>();
  for await (const read of readShards(s3, bucket, shardKeys, settings.readAhead ?? 2)) {
    const batch = shardBatches.get(read.key)!;
    if ('problem' in read) {
      reportUnreadableShard(report, read.key, batch, read.problem);
      continue;
    }
    const { header, vectors } = read.shard;
    if (!accumulator) {
      featurizer = header.featurizer;
      dim = header.dim;
      accumulator = new ScatterAccumulator(dim, settings.blockRows ?? DEFAULT_BLOCK_ROWS);
    }
    report.addShard(header);
    if (header.featurizer !== featurizer || header.dim !== dim) {
      const reason = `features from ${header.featurizer} (${header.dim} values) cannot be mixed with the run's ${featurizer} (${dim} values)`;
      header.keys.forEach((key) => report.addFailedItem(key, reason));
      report.warn(`shard ${read.key}: ${reason}`);
      continue;
    }
    if (header.keys.length !== batch.summary.count) {
      report.warn(`shard ${read.key} holds ${header.keys.length} images but its batch summary says ${batch.summary.count}`);
    }
    const excluded = new Set<number>();
    header.keys.forEach((key, row) => {
      if (seenKeys.has(key)) {
        excluded.add(row);
        report.addSkippedItem(key, 'duplicate: the same key was featurized in another batch, kept once');
      } else if (!allFinite(vectors, row * dim, dim)) {
        excluded.add(row);
        report.addFailedItem(key, 'feature vector holds NaN or infinite values');
      } else {
        seenKeys.add(key);
        accumulator!.addRow(vectors, row * dim);
      }
    });
    accounting.account(header.keys.filter((_, row) => !excluded.has(row)));
    report.addProcessed(header.featurizer, header.keys.length - excluded.size);
    usable.push({ key: read.key, rows: header.keys.length, excluded });
  }
  seenKeys.clear();
  timings.pass1 = clock.lap();

  // Every key handed out must have come out exactly once before anything is published.
  const problems = report.problemKeys();
  accounting.account(problems.keys);
  if (!problems.complete) accounting.cannotProve('some failed or skipped images are known only by count (capped batch summaries without a readable shard)');
  if (manifest.ResultFiles.PENDING?.length) accounting.cannotProve('the map run ended with child executions still pending');
  const accountingReport = accounting.report();
  /** A run that publishes nothing else still writes report.json, saying why. */
  const writeFailureReport = async (error: Error) => {
    const failure = report.build({
      ...runFields(event, mapRunArn),
      error,
      accounting: accountingReport,
      timingsMs: timings,
      outputs: { report: outputs.report },
      now: now(),
    });
    await putObject(s3, bucket, outputs.report, JSON.stringify(failure, null, 2), 'application/json');
    return failure;
  };
  if (!accountingReport.complete) {
    const error = new IncompleteRunError(describeIncompleteAccounting(accountingReport));
    await writeFailureReport(error);
    log?.warn('run incomplete', { reason: error.message, accounting: accountingReport });
    throw error;
  }

  // 3. Fit, or explain why not.
  let fit: PcaFit;
  try {
    if (!accumulator) throw new InsufficientDataError('no feature vectors to analyse: every image failed or was skipped');
    fit = fitPca(accumulator.moments(), settings);
  } catch (error) {
    if (error instanceof InsufficientDataError) {
      const failure = await writeFailureReport(error);
      log?.warn('no PCA possible', { reason: error.message, counts: failure.counts });
    }
    throw error;
  }
  accumulator = undefined;
  fit.warnings.forEach((warning) => report.warn(warning));
  timings.fit = clock.lap();
  log?.info('pca fitted', { rows: fit.count, dim: fit.dim, k: fit.k, explainedVariance: fit.explainedVariance });

  // 4. Pass 2: project and stream the CSV.
  const projector = new PcaProjector(fit);
  const sample = new ScatterSample(settings.scatterPoints);
  const csv = new StreamedTextUpload(s3, bucket, outputs.features, 'text/csv; charset=utf-8');
  let rows = 0;
  try {
    await csv.write(featuresCsvHeader(fit.k));
    const byKey = new Map(usable.map((shard) => [shard.key, shard]));
    for await (const read of readShards(
      s3,
      bucket,
      usable.map((shard) => shard.key),
      settings.readAhead ?? 2,
    )) {
      const expected = byKey.get(read.key)!;
      if ('problem' in read || read.shard.header.keys.length !== expected.rows) {
        // Pass 1 read it fine: a shard that changes or vanishes mid-run is worth a retry of the step.
        throw new TransientStorageError(`shard s3://${bucket}/${read.key} changed between the two passes`);
      }
      const { header, vectors } = read.shard;
      const k = fit.k;
      const scores = projector.projectRows(vectors, header.keys.length);
      for (let row = 0; row < header.keys.length; row++) {
        if (expected.excluded.has(row)) continue;
        const rowScores = scores.subarray(row * k, (row + 1) * k);
        await csv.write(featuresCsvRow(header.keys[row], header.labels[row], rowScores, k));
        sample.offer({ x: rowScores[0], y: k > 1 ? rowScores[1] : 0, label: header.labels[row] });
        rows++;
      }
    }
    await csv.close();
  } catch (error) {
    csv.abort();
    throw error;
  }
  timings.pass2 = clock.lap();

  // 5. The model, the tables, the plots, the report.
  const featurizerMeta = report.featurizerReport();
  const model = pcaModelJson(fit, event.runId, featurizer, featurizerMeta, settings);
  await putObject(s3, bucket, outputs.model, JSON.stringify(model), 'application/json');
  await putObject(s3, bucket, outputs.explainedVariance, explainedVarianceCsv(fit.eigenvalues, fit.explainedVarianceRatio, fit.k), 'text/csv; charset=utf-8');
  const svgType = 'image/svg+xml';
  await putObject(s3, bucket, outputs.scree, await screePlotSvg({ ratios: fit.explainedVarianceRatio, kept: fit.k }), svgType);
  const scatter = await scatterPlotSvg({
    points: sample.points,
    total: sample.total,
    xRatio: fit.explainedVarianceRatio[0],
    yRatio: fit.k > 1 ? fit.explainedVarianceRatio[1] : undefined,
  });
  await putObject(s3, bucket, outputs.scatter, scatter, svgType);
  timings.writeOutputs = clock.lap();
  timings.total = clock.total();

  const runReport = report.build({
    ...runFields(event, mapRunArn),
    accounting: accountingReport,
    pca: {
      rows: fit.count,
      dim: fit.dim,
      k: fit.k,
      requestedComponents: settings.components,
      ...(settings.varianceThreshold !== undefined ? { varianceThreshold: settings.varianceThreshold } : {}),
      explainedVariance: fit.explainedVariance,
      constantFeatures: fit.constantFeatures.length,
    },
    timingsMs: timings,
    outputs,
    now: now(),
  });
  await putObject(s3, bucket, outputs.report, JSON.stringify(runReport, null, 2), 'application/json');
  log?.info('aggregate done', { rows, k: fit.k, counts: runReport.counts, timingsMs: timings });

  return {
    runId: event.runId,
    bucket,
    rows,
    components: fit.k,
    explainedVariance: fit.explainedVariance,
    counts: {
      processed: runReport.counts.processed,
      failed: runReport.counts.failed,
      skipped: runReport.counts.skipped,
      failedBatches: runReport.counts.failedBatches,
    },
    outputs,
  };
}

function runFields(event: AggregateEvent, mapRunArn: string | undefined) {
  return { runId: event.runId, bucket: event.bucket, inputPrefix: event.inputPrefix, outputPrefix: event.outputPrefix, mapRunArn };
}

/**
 * A shard that cannot be read (gone, corrupt) turns its batch into a failed batch: the summary's
 * failed/skipped lists still count, and its featurized images, when the record's input names
 * them, are failed with the reason.
 */
function reportUnreadableShard(report: RunReportBuilder, key: string, batch: { summary: FeaturizeBatchSummary; inputKeys?: string[] }, problem: string): void {
  const { summary, inputKeys } = batch;
  const accounted = new Set([...summary.failed, ...summary.skipped].map((p) => p.key));
  const featurized = inputKeys && !summary.truncated ? inputKeys.filter((k) => !accounted.has(k)) : undefined;
  const failedBatch: Pick<FailedBatch, 'status' | 'error' | 'cause' | 'inputKeys'> = {
    status: 'SUCCEEDED',
    error: 'UnreadableShard',
    cause: `feature shard ${key}: ${problem}`,
    ...(featurized && featurized.length === summary.count ? { inputKeys: featurized } : {}),
  };
  report.addFailedBatch(failedBatch, summary.count, summary);
}

function allFinite(vectors: Float32Array, offset: number, dim: number): boolean {
  for (let f = 0; f < dim; f++) if (!Number.isFinite(vectors[offset + f])) return false;
  return true;
}

type ShardRead = { key: string; shard: FeatureShard } | { key: string; problem: string };

/**
 * The shards in order, `readAhead` downloads in flight beyond the one being processed: the next
 * shard arrives while this one is accumulated. Missing or undecodable shards come back as a
 * problem; transient storage errors are thrown when their turn comes.
 */
async function* readShards(s3: S3Client, bucket: string, keys: readonly string[], readAhead: number): AsyncGenerator<ShardRead> {
  const start = (key: string): Promise<ShardRead | { key: string; error: unknown }> =>
    readBytes(s3, bucket, key).then(
      (bytes): ShardRead | { key: string; error: unknown } => {
        try {
          return { key, shard: decodeFeatureShard(bytes) };
        } catch (error) {
          return { key, problem: `unreadable (${(error as Error).message})` };
        }
      },
      (error: unknown) =>
        error instanceof MissingObjectError
          ? { key, problem: error.accessDenied ? 'missing or not readable (403 AccessDenied)' : 'missing (no such key)' }
          : { key, error },
    );
  const inFlight: Promise<ShardRead | { key: string; error: unknown }>[] = [];
  let next = 0;
  while (next < keys.length || inFlight.length > 0) {
    while (next < keys.length && inFlight.length <= readAhead) inFlight.push(start(keys[next++]));
    const read = await inFlight.shift()!;
    if ('error' in read) {
      throw read.error instanceof TransientStorageError ? read.error : new Error(`reading shard s3://${bucket}/${read.key}: ${describeError(read.error)}`);
    }
    yield read;
  }
}

function pcaModelJson(
  fit: PcaFit,
  runId: string,
  featurizer: string,
  featurizerMeta: { modelIds: string[]; imageSizes: number[]; backends: string[] },
  selection: ComponentSelection,
) {
  const components: number[][] = [];
  for (let c = 0; c < fit.k; c++) components.push(Array.from(fit.components.subarray(c * fit.dim, (c + 1) * fit.dim)));
  return {
    format: 'fruits-pipeline/pca-model@1',
    runId,
    featurizer,
    modelId: featurizerMeta.modelIds.length === 1 ? featurizerMeta.modelIds[0] : featurizerMeta.modelIds,
    imageSize: featurizerMeta.imageSizes.length === 1 ? featurizerMeta.imageSizes[0] : featurizerMeta.imageSizes,
    backends: featurizerMeta.backends,
    count: fit.count,
    dim: fit.dim,
    k: fit.k,
    selection: { components: selection.components, varianceThreshold: selection.varianceThreshold ?? null },
    /** score = ((x - mean) / scale) . component, for each kept component. */
    standardization: 'StandardScaler: population standard deviation; constant features (see constantFeatures) have scale 1',
    mean: Array.from(fit.mean),
    scale: Array.from(fit.scale),
    constantFeatures: fit.constantFeatures,
    components,
    eigenvalues: Array.from(fit.eigenvalues),
    explainedVarianceRatio: Array.from(fit.explainedVarianceRatio),
    explainedVariance: fit.explainedVariance,
  };
}

function stopwatch() {
  const started = performance.now();
  let last = started;
  return {
    lap(): number {
      const t = performance.now();
      const ms = Math.round(t - last);
      last = t;
      return ms;
    },
    total: () => Math.round(performance.now() - started),
  };
}
