/**
 * The aggregate step: from the Distributed Map's ResultWriter manifest to the run's outputs.
 *
 *   1. read the manifest and result files (`map-results.ts`): one outcome per batch;
 *   2. pass 1: read the feature shards one at a time (a couple prefetched) into the
 *      `ScatterAccumulator`: memory is bounded by a shard or two plus the dim x dim scatter;
 *   3. fit the PCA (standardise, eigen-decompose, choose k);
 *   4. classify (when keys carry a split, `splitOfKey`): the reference pass reads only the shards
 *      holding Training rows and keeps their k scores (float32: 100,000 x 50 is 20 MB);
 *   5. pass 2: read the shards again, project, and stream `features.csv`, `features.parquet` (and
 *      `embeddings.parquet` when kept) and `predictions.csv` to S3: every non-Training row is
 *      predicted as it is written, its prediction tallied (classification.ts), never held;
 *   6. write `pca-model.json`, `explained-variance.csv`, `scree.svg`, `pca-scatter.svg`,
 *      `README.txt`, `report.json` (which accounts for every listed object) and `report.html`
 *      (with a gallery of misclassified images read back from the input).
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
import { ClassificationReport, ClassificationTally } from '../core/classification';
import { explainedVarianceCsv, featuresCsvHeader, featuresCsvRow, predictionsCsvHeader, predictionsCsvRow } from '../core/features-csv';
import { FeatureTableParquetWriter } from '../core/features-parquet';
import { DEFAULT_KNN_NEIGHBOURS, KnnReferences, Split, splitOfKey } from '../core/knn';
import { outputReadme, outputSchema } from '../core/output-schema';
import { GalleryEntry, GalleryImage, reportHtml } from '../core/report-html';
import { thumbnailDataUri } from '../core/thumbnail';
import { IncompleteRunError, InputAccounting, describeIncompleteAccounting } from '../core/input-accounting';
import { resultKey, type ResultFile } from '../contracts/bucket-layout';
import { FailedBatch, readMapRunResults } from '../core/map-results';
import { scatterPlotSvg, ScatterSample, screePlotSvg } from '../core/plots';
import { RunReportBuilder } from '../core/run-report';
import { ComponentSelection, DEFAULT_BLOCK_ROWS, fitPca, InsufficientDataError, PcaFit, PcaProjector, ScatterAccumulator } from '../core/streaming-pca';
import { describeError, MissingObjectError, putObject, readBytes, readText } from '../aws/s3-client';
import { StreamedUpload } from '../aws/streamed-upload';

/** The outputs the aggregate step writes under the run's outputPrefix (failure.json is the state machine's). */
const OUTPUT_FILES = [
  'features',
  'featuresParquet',
  'predictions',
  'embeddings',
  'model',
  'explainedVariance',
  'scree',
  'scatter',
  'readme',
  'report',
  'html',
] as const satisfies readonly ResultFile[];
export type OutputName = (typeof OUTPUT_FILES)[number];
/** Written only by some runs: predictions when the keys hold a Training split, embeddings when kept. */
type OptionalOutput = 'predictions' | 'embeddings';

/** Misclassified images shown in report.html, and candidates kept while predicting. */
const GALLERY_IMAGES = 8;
const GALLERY_CANDIDATES_PER_PAIR = 2;
const GALLERY_CANDIDATE_LIMIT = 400;

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
  /** k-NN accuracy on the Test rows; absent when nothing was scored. */
  accuracy?: number;
  /** Object keys (in `bucket`) of every output written. */
  outputs: Omit<Record<OutputName, string>, OptionalOutput> & Partial<Record<OptionalOutput, string>>;
}

export interface AggregateSettings extends ComponentSelection {
  /** Rows per block of the scatter update. @default DEFAULT_BLOCK_ROWS */
  readonly blockRows?: number;
  /** Shards downloaded ahead of the one being processed. @default 2 */
  readonly readAhead?: number;
  /** Points drawn in pca-scatter.svg. @default SCATTER_POINT_LIMIT */
  readonly scatterPoints?: number;
  /** Neighbours that vote in the classification. @default DEFAULT_KNN_NEIGHBOURS */
  readonly knnNeighbours?: number;
  /** Also write embeddings.parquet (the raw feature vectors). @default false */
  readonly keepEmbeddings?: boolean;
  /** Misclassified images in report.html's gallery. @default GALLERY_IMAGES */
  readonly galleryImages?: number;
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
  /** Rows of the Training split (kept rows only): the classifier's references. */
  references: number;
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
    const references = header.keys.filter((key, row) => !excluded.has(row) && splitOfKey(key) === 'train').length;
    usable.push({ key: read.key, rows: header.keys.length, excluded, references });
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

  // 4. The classifier's references: the Training rows' scores (a pass over their shards only).
  const k = fit.k;
  const projector = new PcaProjector(fit);
  const knnNeighbours = settings.knnNeighbours ?? DEFAULT_KNN_NEIGHBOURS;
  const totalReferences = usable.reduce((sum, shard) => sum + shard.references, 0);
  const toPredict = fit.count - totalReferences;
  const byKey = new Map(usable.map((shard) => [shard.key, shard]));
  const changed = (key: string) => new TransientStorageError(`shard s3://${bucket}/${key} changed between the passes`);
  let references: KnnReferences | undefined;
  /** Where each reference came from (index into `usable`, row), to name the gallery's nearest images. */
  let referenceShard: Int32Array | undefined;
  let referenceRow: Int32Array | undefined;
  let classificationSkipped: string | undefined;
  if (totalReferences === 0) classificationSkipped = 'no image lies under a Training/ (or Train/) folder: nothing to fit the classifier on';
  else if (toPredict === 0) classificationSkipped = 'every image is a Training image: nothing to predict';
  else {
    references = new KnnReferences(k, totalReferences, 'float32');
    referenceShard = new Int32Array(totalReferences);
    referenceRow = new Int32Array(totalReferences);
    const shardIndex = new Map(usable.map((shard, index) => [shard.key, index]));
    const withReferences = usable.filter((shard) => shard.references > 0).map((shard) => shard.key);
    for await (const read of readShards(s3, bucket, withReferences, settings.readAhead ?? 2)) {
      const expected = byKey.get(read.key)!;
      if ('problem' in read || read.shard.header.keys.length !== expected.rows) throw changed(read.key);
      const { header, vectors } = read.shard;
      for (let row = 0; row < header.keys.length; row++) {
        if (expected.excluded.has(row) || splitOfKey(header.keys[row]) !== 'train') continue;
        referenceShard[references.size] = shardIndex.get(read.key)!;
        referenceRow[references.size] = row;
        references.add(header.labels[row], projector.project(vectors, row * dim));
      }
    }
    if (references.size !== totalReferences) throw changed('of a Training row');
  }
  timings.references = clock.lap();

  // 5. Pass 2: project, stream the tables, predict every non-Training row as it is written.
  const sample = new ScatterSample(settings.scatterPoints);
  const tally = references ? new ClassificationTally(knnNeighbours, k, references.size) : undefined;
  const galleryCandidates = new Map<string, { key: string; label: string; predicted: string; distance: number; nearest: number }[]>();
  let galleryCandidateCount = 0;
  const csvType = 'text/csv; charset=utf-8';
  const parquetType = 'application/vnd.apache.parquet';
  const csv = new StreamedUpload(s3, bucket, outputs.features, csvType);
  const parquetUpload = new StreamedUpload(s3, bucket, outputs.featuresParquet, parquetType);
  const parquet = new FeatureTableParquetWriter(parquetUpload.writable(), 'pc', k);
  const predictionsUpload = references ? new StreamedUpload(s3, bucket, outputs.predictions, csvType) : undefined;
  const embeddingsUpload = settings.keepEmbeddings ? new StreamedUpload(s3, bucket, outputs.embeddings, parquetType) : undefined;
  const embeddings = embeddingsUpload ? new FeatureTableParquetWriter(embeddingsUpload.writable(), 'f', dim) : undefined;
  const uploads = [csv, parquetUpload, predictionsUpload, embeddingsUpload].filter((u): u is StreamedUpload => u !== undefined);
  let rows = 0;
  try {
    await csv.write(featuresCsvHeader(k));
    await predictionsUpload?.write(predictionsCsvHeader());
    for await (const read of readShards(
      s3,
      bucket,
      usable.map((shard) => shard.key),
      settings.readAhead ?? 2,
    )) {
      const expected = byKey.get(read.key)!;
      // Pass 1 read it fine: a shard that changes or vanishes mid-run is worth a retry of the step.
      if ('problem' in read || read.shard.header.keys.length !== expected.rows) throw changed(read.key);
      const { header, vectors } = read.shard;
      const scores = projector.projectRows(vectors, header.keys.length);
      for (let row = 0; row < header.keys.length; row++) {
        if (expected.excluded.has(row)) continue;
        const key = header.keys[row];
        const label = header.labels[row];
        const split: Split | undefined = splitOfKey(key);
        const rowScores = scores.subarray(row * k, (row + 1) * k);
        await csv.write(featuresCsvRow(key, label, split, rowScores, k));
        await parquet.append(key, label, split, rowScores);
        await embeddings?.append(key, label, split, vectors, row * dim);
        sample.offer({ x: rowScores[0], y: k > 1 ? rowScores[1] : 0, label, split });
        if (references && split !== 'train') {
          const prediction = references.predict(rowScores, knnNeighbours)!;
          await predictionsUpload!.write(predictionsCsvRow(key, label, split, prediction.label, prediction.distance));
          tally!.add(label, split, prediction.label);
          if (split === 'test' && prediction.label !== label && galleryCandidateCount < GALLERY_CANDIDATE_LIMIT) {
            const pair = `${label}\u0000${prediction.label}`;
            const list = galleryCandidates.get(pair) ?? [];
            if (list.length < GALLERY_CANDIDATES_PER_PAIR) {
              list.push({ key, label, predicted: prediction.label, distance: prediction.distance, nearest: prediction.nearest });
              galleryCandidates.set(pair, list);
              galleryCandidateCount++;
            }
          }
        }
        rows++;
      }
    }
    await parquet.close();
    await embeddings?.close();
    for (const upload of uploads) await upload.close();
  } catch (error) {
    uploads.forEach((upload) => upload.abort());
    throw error;
  }
  timings.pass2 = clock.lap();
  const classification: ClassificationReport = tally ? tally.report() : { status: 'skipped', reason: classificationSkipped! };
  if (classification.status === 'classified') {
    log?.info('classified', { references: classification.references, predicted: classification.predicted, accuracy: classification.accuracy });
  }

  // 6. The model, the tables, the plots, the report.
  const featurizerMeta = report.featurizerReport();
  const model = pcaModelJson(fit, event.runId, featurizer, featurizerMeta, settings);
  await putObject(s3, bucket, outputs.model, JSON.stringify(model), 'application/json');
  await putObject(s3, bucket, outputs.explainedVariance, explainedVarianceCsv(fit.eigenvalues, fit.explainedVarianceRatio, fit.k), csvType);
  const svgType = 'image/svg+xml';
  const plotSubtitle = `run ${event.runId} · ${featurizer}`;
  const screeSvg = await screePlotSvg({ ratios: fit.explainedVarianceRatio, kept: fit.k, subtitle: plotSubtitle });
  await putObject(s3, bucket, outputs.scree, screeSvg, svgType);
  const confusedLabels =
    classification.status === 'classified' ? [...new Set(classification.mostConfused.flatMap((pair) => [pair.actual, pair.predicted]))] : undefined;
  const scatterSvg = await scatterPlotSvg({
    points: sample.points,
    total: sample.total,
    xRatio: fit.explainedVarianceRatio[0],
    yRatio: fit.k > 1 ? fit.explainedVarianceRatio[1] : undefined,
    subtitle: plotSubtitle,
    highlight: confusedLabels?.length ? confusedLabels : undefined,
  });
  await putObject(s3, bucket, outputs.scatter, scatterSvg, svgType);
  const schema = outputSchema({ runId: event.runId, k, dim, classified: classification.status === 'classified', embeddings: embeddings !== undefined });
  await putObject(s3, bucket, outputs.readme, outputReadme(schema), 'text/plain; charset=utf-8');
  const written: AggregateResult['outputs'] = {
    features: outputs.features,
    featuresParquet: outputs.featuresParquet,
    ...(predictionsUpload ? { predictions: outputs.predictions } : {}),
    ...(embeddingsUpload ? { embeddings: outputs.embeddings } : {}),
    model: outputs.model,
    explainedVariance: outputs.explainedVariance,
    scree: outputs.scree,
    scatter: outputs.scatter,
    readme: outputs.readme,
    report: outputs.report,
    html: outputs.html,
  };
  const runSettings = {
    pcaComponents: settings.components,
    pcaVarianceThreshold: settings.varianceThreshold ?? null,
    knnNeighbours,
    keepEmbeddings: settings.keepEmbeddings ?? false,
  };
  const gallery =
    references && referenceShard && referenceRow && classification.status === 'classified'
      ? await galleryOf(s3, bucket, classification, galleryCandidates, settings.galleryImages ?? GALLERY_IMAGES, (index) => ({
          shard: usable[referenceShard![index]].key,
          row: referenceRow![index],
          label: references!.reference(index).label,
        }))
      : [];
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
    outputs: written,
    now: now(),
  });
  const fullReport = { ...runReport, settings: runSettings, classification, schema };
  await putObject(s3, bucket, outputs.report, JSON.stringify(fullReport, null, 2), 'application/json');
  const html = reportHtml({
    report: fullReport,
    settings: { featurizer, ...runSettings, explainedVariance: Number(fit.explainedVariance.toFixed(4)) },
    screeSvg,
    scatterSvg,
    gallery,
  });
  await putObject(s3, bucket, outputs.html, html, 'text/html; charset=utf-8');
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
    ...(classification.status === 'classified' && classification.accuracy !== null ? { accuracy: classification.accuracy } : {}),
    outputs: written,
  };
}

/**
 * A few misclassified Test images beside their nearest reference: one per confused pair, most
 * confused first (a second per pair if pairs run out). The nearest reference's key is read back
 * from its shard (a handful of shards); the images from the input, thumbnailed. An image that
 * cannot be read (deleted since, or not readable) shows why instead of failing the run.
 */
async function galleryOf(
  s3: S3Client,
  bucket: string,
  classification: Extract<ClassificationReport, { status: 'classified' }>,
  candidates: Map<string, { key: string; label: string; predicted: string; distance: number; nearest: number }[]>,
  limit: number,
  referenceOf: (index: number) => { shard: string; row: number; label: string },
): Promise<GalleryEntry[]> {
  const pairs = classification.mostConfused.map((pair) => candidates.get(`${pair.actual}\u0000${pair.predicted}`) ?? []);
  const chosen: { key: string; label: string; predicted: string; distance: number; nearest: number }[] = [];
  for (let round = 0; round < GALLERY_CANDIDATES_PER_PAIR && chosen.length < limit; round++) {
    for (const list of pairs) if (list[round] && chosen.length < limit) chosen.push(list[round]);
  }
  const shardKeys = new Map<string, string[]>();
  for (const candidate of chosen) shardKeys.set(referenceOf(candidate.nearest).shard, []);
  for (const shard of shardKeys.keys()) {
    try {
      shardKeys.set(shard, decodeFeatureShard(await readBytes(s3, bucket, shard)).header.keys);
    } catch {
      // The gallery only illustrates: a reference whose key cannot be read back shows no image.
    }
  }
  const imageOf = async (key: string | undefined, label: string): Promise<GalleryImage> => {
    if (key === undefined) return { key: '(unknown)', label, problem: 'reference key not readable' };
    try {
      return { key, label, image: await thumbnailDataUri(await readBytes(s3, bucket, key)) };
    } catch (error) {
      return { key, label, problem: error instanceof MissingObjectError ? 'image no longer readable' : `no thumbnail (${describeError(error)})` };
    }
  };
  const entries: GalleryEntry[] = [];
  for (const candidate of chosen) {
    const reference = referenceOf(candidate.nearest);
    entries.push({
      query: await imageOf(candidate.key, candidate.label),
      predicted: candidate.predicted,
      distance: candidate.distance,
      nearest: await imageOf(shardKeys.get(reference.shard)?.[reference.row], reference.label),
    });
  }
  return entries;
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
