/**
 * The aggregate step: from the Distributed Map's ResultWriter manifest to the run's outputs.
 *
 *   1. read the manifest and result files (`lambdas/bookkeeping/map-results.ts`): one outcome per batch;
 *   2. pass 1: read the feature shards one at a time (a couple prefetched) into the
 *      `ScatterAccumulator`: memory is bounded by a shard or two plus the dim x dim scatter;
 *   3. fit the PCA (standardise, eigen-decompose, choose k);
 *   4. classify (when keys carry a split, `splitOfKey`): the reference pass reads only the shards
 *      holding Training rows and keeps their k scores (float32: 100,000 x 50 is 20 MB);
 *   5. pass 2: read the shards again, project, and stream `features.csv`, `features.parquet` (and
 *      `embeddings.parquet` when kept) and `predictions.csv` to S3: every non-Training row is
 *      predicted as it is written, its prediction tallied (lambdas/analysis/classification.ts), never held;
 *   6. write `pca-model.json` (and `knn-references.fsh`, the Training rows' scores, when there
 *      were any), `explained-variance.csv`, `scree.svg`, `pca-scatter.svg`, `README.txt`,
 *      `report.json` (which accounts for every listed object) and `report.html` (with a gallery of
 *      misclassified images read back from the input).
 *
 * A run whose event names a `pcaModel` (a saved `pca-model.json`, lambdas/analysis/pca-model.ts) projects instead of
 * fitting: the model and its references are read and checked before any shard, pass 1 only checks
 * and accounts (no scatter), a shard of another featurizer than the model's fails the run with
 * `FeaturizerMismatchError` before any output is written, the fit is the model's own (the same
 * scores for the same image as in the model's run), every row is classified against the model's
 * references, and no pca-model.json is written: report.json names the model the run used.
 *
 * Between passes 1 and 2 the run proves it accounted for every key the map run handed out
 * (`lambdas/bookkeeping/input-accounting.ts`): if it cannot, report.json says so and the step fails with
 * `IncompleteRunError` instead of writing outputs that silently lack images.
 *
 * Shards are visited in key order, so the same map run always gives the same bytes whatever
 * order the ResultWriter listed its children in. An image key met twice (a batch redriven into a
 * second shard) is kept once.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { AggregateEvent, AggregateEventSchema, FeaturizeBatchSummary, parseEvent, TransientStorageError } from '../contracts/events';
import { decodeFeatureShard, FeatureShard } from '../bookkeeping/feature-shard';
import { ClassificationReport, ClassificationTally } from '../analysis/classification';
import { explainedVarianceCsv, featuresCsvHeader, featuresCsvRow, predictionsCsvHeader, predictionsCsvRow } from '../outputs/features-csv';
import { FeatureTableParquetWriter } from '../outputs/features-parquet';
import { DEFAULT_KNN_NEIGHBOURS, KnnReferences, Split, splitOfKey } from '../analysis/knn';
import {
  besideModel,
  decodeKnnReferences,
  encodeKnnReferences,
  FeaturizerMismatchError,
  parsePcaModel,
  PcaModelError,
  pcaFitOf,
  pcaModelJson,
  SavedPcaModel,
} from '../analysis/pca-model';
import { outputReadme, outputSchema } from '../outputs/output-schema';
import { GalleryEntry, GalleryImage, reportHtml } from '../outputs/report-html';
import { thumbnailDataUri } from '../images/thumbnail';
import { IncompleteRunError, InputAccounting, InputAccountingReport, describeIncompleteAccounting } from '../bookkeeping/input-accounting';
import { RESULT_FILES, resultKey, type ResultFile } from '../contracts/bucket-layout';
import { FailedBatch, readMapRunResults } from '../bookkeeping/map-results';
import { scatterPlotSvg, ScatterSample, screePlotSvg } from '../outputs/plots';
import { RunReportBuilder } from '../outputs/run-report';
import { ComponentSelection, DEFAULT_BLOCK_ROWS, fitPca, InsufficientDataError, PcaFit, PcaProjector, ScatterAccumulator } from '../analysis/streaming-pca';
import { describeError, MissingObjectError, putObject, readBytes, readText } from '../aws/s3-client';
import { StreamedUpload } from '../aws/streamed-upload';

/** The outputs the aggregate step writes under the run's outputPrefix (failure.json is the state machine's). */
const OUTPUT_FILES = [
  'features',
  'featuresParquet',
  'predictions',
  'embeddings',
  'model',
  'knnReferences',
  'explainedVariance',
  'scree',
  'scatter',
  'readme',
  'report',
  'html',
] as const satisfies readonly ResultFile[];
export type OutputName = (typeof OUTPUT_FILES)[number];
/**
 * Written only by some runs: predictions when there is something to classify, embeddings when
 * kept, the model and its references by a run that fits (the references when it had Training rows).
 */
type OptionalOutput = 'predictions' | 'embeddings' | 'model' | 'knnReferences';

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
  /** The saved model the run projected with (no fit), when its event named one. */
  pcaModel?: { key: string; runId: string };
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

/** A saved model as a projecting run uses it: the fit it restores and, when the model run had them, its references. */
interface ProjectionModel {
  key: string;
  model: SavedPcaModel;
  fit: PcaFit;
  references?: { references: KnnReferences; keys: string[] };
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

  /** The saved model the run projects with, when its event names one. */
  let saved: ProjectionModel | undefined;
  /** A run that publishes nothing else still writes report.json, saying why. */
  const writeFailureReport = async (error: Error, accountingReport?: InputAccountingReport, runFeaturizer?: string) => {
    const failure = report.build({
      ...runFields(event, mapRunArn),
      error,
      accounting: accountingReport,
      ...(event.pcaModel
        ? {
            pca: {
              source: 'model',
              model: event.pcaModel,
              ...(saved ? { modelRunId: saved.model.runId, modelFeaturizer: saved.model.featurizer } : {}),
              ...(runFeaturizer ? { runFeaturizer } : {}),
            },
          }
        : {}),
      timingsMs: timings,
      outputs: { report: outputs.report },
      now: now(),
    });
    await putObject(s3, bucket, outputs.report, JSON.stringify(failure, null, 2), 'application/json');
    return failure;
  };

  // The saved model to project with, read and checked before any shard: a wrong key fails at once.
  if (event.pcaModel) {
    try {
      saved = await readProjectionModel(s3, bucket, event.pcaModel, event.outputPrefix);
    } catch (error) {
      if (error instanceof PcaModelError) {
        await writeFailureReport(error);
        log?.warn('pca model not usable', { pcaModel: event.pcaModel, reason: error.message });
      }
      throw error;
    }
    timings.readModel = clock.lap();
    log?.info('pca model read', { pcaModel: saved.key, modelRunId: saved.model.runId, k: saved.model.k, references: saved.references?.keys.length ?? 0 });
  }

  // 2. Pass 1: moments (or, projecting with a saved model, only the checks and the accounting).
  let accumulator: ScatterAccumulator | undefined;
  let featurizer = saved?.model.featurizer ?? '';
  let dim = saved?.model.dim ?? 0;
  let keptRows = 0;
  const usable: UsableShard[] = [];
  const seenKeys = new Set<string>();
  for await (const read of readShards(s3, bucket, shardKeys, settings.readAhead ?? 2)) {
    const batch = shardBatches.get(read.key)!;
    if ('problem' in read) {
      reportUnreadableShard(report, read.key, batch, read.problem);
      continue;
    }
    const { header, vectors } = read.shard;
    if (!featurizer) {
      featurizer = header.featurizer;
      dim = header.dim;
    }
    if (!saved && !accumulator) accumulator = new ScatterAccumulator(dim, settings.blockRows ?? DEFAULT_BLOCK_ROWS);
    report.addShard(header);
    if (header.featurizer !== featurizer || header.dim !== dim) {
      if (saved) {
        // The model's components mean nothing for other features: no output, and both ids named.
        const error = new FeaturizerMismatchError(
          `the model ${saved.key} (run ${saved.model.runId}) was fitted on features of ${featurizer} (${dim} values), ` +
            `but this run's images were featurized with ${header.featurizer} (${header.dim} values, shard ${read.key}): ` +
            'featurize with the settings of the model run, or fit a new model',
        );
        await writeFailureReport(error, undefined, header.featurizer);
        log?.warn('featurizer differs from the model', { reason: error.message });
        throw error;
      }
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
        accumulator?.addRow(vectors, row * dim);
        keptRows++;
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
  if (!accountingReport.complete) {
    const error = new IncompleteRunError(describeIncompleteAccounting(accountingReport));
    await writeFailureReport(error, accountingReport);
    log?.warn('run incomplete', { reason: error.message, accounting: accountingReport });
    throw error;
  }

  // 3. Fit (or take the saved model's fit), or explain why not.
  let fit: PcaFit;
  try {
    if (saved) {
      if (keptRows === 0) throw new InsufficientDataError('no feature vectors to project: every image failed or was skipped');
      fit = saved.fit;
    } else {
      if (!accumulator) throw new InsufficientDataError('no feature vectors to analyse: every image failed or was skipped');
      fit = fitPca(accumulator.moments(), settings);
    }
  } catch (error) {
    if (error instanceof InsufficientDataError) {
      const failure = await writeFailureReport(error, accountingReport);
      log?.warn('no PCA possible', { reason: error.message, counts: failure.counts });
    }
    throw error;
  }
  accumulator = undefined;
  fit.warnings.forEach((warning) => report.warn(warning));
  timings.fit = clock.lap();
  if (saved) log?.info('projecting with the saved model', { rows: keptRows, dim: fit.dim, k: fit.k, pcaModel: saved.key });
  else log?.info('pca fitted', { rows: fit.count, dim: fit.dim, k: fit.k, explainedVariance: fit.explainedVariance });

  // 4. The classifier's references: the saved model's, or the Training rows' scores (a pass over
  // their shards only), kept with their keys for knn-references.fsh and the gallery.
  const k = fit.k;
  const projector = new PcaProjector(fit);
  const knnNeighbours = settings.knnNeighbours ?? DEFAULT_KNN_NEIGHBOURS;
  const byKey = new Map(usable.map((shard) => [shard.key, shard]));
  const changed = (key: string) => new TransientStorageError(`shard s3://${bucket}/${key} changed between the passes`);
  let references: KnnReferences | undefined;
  let referenceKeys: string[] = [];
  let classificationSkipped: string | undefined;
  if (saved) {
    // None of this run's rows is a reference: every one is predicted.
    references = saved.references?.references;
    referenceKeys = saved.references?.keys ?? [];
    if (!references)
      classificationSkipped = `the model's run ${saved.model.runId} saved no Training references (no ${RESULT_FILES.knnReferences}): nothing to classify against`;
  } else {
    const totalReferences = usable.reduce((sum, shard) => sum + shard.references, 0);
    if (totalReferences === 0) classificationSkipped = 'no image lies under a Training/ (or Train/) folder: nothing to fit the classifier on';
    else {
      // Also when every image is a Training image: a later run can classify against them.
      if (totalReferences === fit.count) classificationSkipped = 'every image is a Training image: nothing to predict';
      references = new KnnReferences(k, totalReferences, 'float32');
      const withReferences = usable.filter((shard) => shard.references > 0).map((shard) => shard.key);
      for await (const read of readShards(s3, bucket, withReferences, settings.readAhead ?? 2)) {
        const expected = byKey.get(read.key)!;
        if ('problem' in read || read.shard.header.keys.length !== expected.rows) throw changed(read.key);
        const { header, vectors } = read.shard;
        for (let row = 0; row < header.keys.length; row++) {
          if (expected.excluded.has(row) || splitOfKey(header.keys[row]) !== 'train') continue;
          referenceKeys.push(header.keys[row]);
          references.add(header.labels[row], projector.project(vectors, row * dim));
        }
      }
      if (references.size !== totalReferences) throw changed('of a Training row');
    }
  }
  const classifying = references !== undefined && classificationSkipped === undefined;
  timings.references = clock.lap();

  // 5. Pass 2: project, stream the tables, predict every row that is not a reference as it is written.
  const sample = new ScatterSample(settings.scatterPoints);
  const tally = classifying ? new ClassificationTally(knnNeighbours, k, references!.size, saved ? new Set(references!.labelTable) : undefined) : undefined;
  const galleryCandidates = new Map<string, { key: string; label: string; predicted: string; distance: number; nearest: number }[]>();
  let galleryCandidateCount = 0;
  const csvType = 'text/csv; charset=utf-8';
  const parquetType = 'application/vnd.apache.parquet';
  const csv = new StreamedUpload(s3, bucket, outputs.features, csvType);
  const parquetUpload = new StreamedUpload(s3, bucket, outputs.featuresParquet, parquetType);
  const parquet = new FeatureTableParquetWriter(parquetUpload.writable(), 'pc', k);
  const predictionsUpload = tally ? new StreamedUpload(s3, bucket, outputs.predictions, csvType) : undefined;
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
        if (tally && (saved || split !== 'train')) {
          const prediction = references!.predict(rowScores, knnNeighbours)!;
          await predictionsUpload!.write(predictionsCsvRow(key, label, split, prediction.label, prediction.distance));
          tally.add(label, split, prediction.label);
          if (tally.scores(label, split) && prediction.label !== label && galleryCandidateCount < GALLERY_CANDIDATE_LIMIT) {
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

  // 6. The model (a fitting run only: a projecting run names the one it used), the tables, the plots, the report.
  let savedReferences = false;
  if (!saved) {
    let pointer: Parameters<typeof pcaModelJson>[5];
    if (references) {
      const encoded = encodeKnnReferences({ runId: event.runId, featurizer, k }, referenceKeys, references);
      await putObject(s3, bucket, outputs.knnReferences, encoded.bytes, 'application/octet-stream');
      pointer = encoded.pointer;
      savedReferences = true;
    }
    const model = pcaModelJson(fit, event.runId, featurizer, report.featurizerReport(), settings, pointer);
    await putObject(s3, bucket, outputs.model, JSON.stringify(model), 'application/json');
  }
  await putObject(s3, bucket, outputs.explainedVariance, explainedVarianceCsv(fit.eigenvalues, fit.explainedVarianceRatio, fit.k), csvType);
  const svgType = 'image/svg+xml';
  const plotSubtitle = `run ${event.runId} · ${featurizer}${saved ? ` · components of run ${saved.model.runId}` : ''}`;
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
  const schema = outputSchema({
    runId: event.runId,
    k,
    dim,
    classified: classification.status === 'classified',
    embeddings: embeddings !== undefined,
    references: savedReferences,
    ...(saved ? { projectedWith: { model: saved.key, runId: saved.model.runId } } : {}),
  });
  await putObject(s3, bucket, outputs.readme, outputReadme(schema), 'text/plain; charset=utf-8');
  const written: AggregateResult['outputs'] = {
    features: outputs.features,
    featuresParquet: outputs.featuresParquet,
    ...(predictionsUpload ? { predictions: outputs.predictions } : {}),
    ...(embeddingsUpload ? { embeddings: outputs.embeddings } : {}),
    ...(saved ? {} : { model: outputs.model }),
    ...(savedReferences ? { knnReferences: outputs.knnReferences } : {}),
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
    ...(saved ? { pcaModel: saved.key } : {}),
  };
  const gallery =
    references && classification.status === 'classified'
      ? await galleryOf(s3, bucket, classification, galleryCandidates, settings.galleryImages ?? GALLERY_IMAGES, (index) => ({
          key: referenceKeys[index],
          label: references!.reference(index).label,
        }))
      : [];
  timings.writeOutputs = clock.lap();
  timings.total = clock.total();

  const pca = saved
    ? {
        source: 'model',
        model: saved.key,
        modelRunId: saved.model.runId,
        refit: false,
        rows: keptRows,
        fittedRows: fit.count,
        dim: fit.dim,
        k: fit.k,
        explainedVariance: fit.explainedVariance,
        constantFeatures: fit.constantFeatures.length,
      }
    : {
        source: 'fit',
        rows: fit.count,
        dim: fit.dim,
        k: fit.k,
        requestedComponents: settings.components,
        ...(settings.varianceThreshold !== undefined ? { varianceThreshold: settings.varianceThreshold } : {}),
        explainedVariance: fit.explainedVariance,
        constantFeatures: fit.constantFeatures.length,
      };
  const runReport = report.build({
    ...runFields(event, mapRunArn),
    accounting: accountingReport,
    pca,
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
    ...(saved ? { pcaModel: { key: saved.key, runId: saved.model.runId } } : {}),
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
 * The saved model at `key` and the references beside it, checked: a model that is missing, not
 * JSON, not the format, inconsistent, or whose references are missing or not its own is a
 * `PcaModelError`. Transient storage errors pass through (the step is retried).
 */
async function readProjectionModel(s3: S3Client, bucket: string, key: string, outputPrefix: string): Promise<ProjectionModel> {
  const where = `s3://${bucket}/${key}`;
  if (key.startsWith(outputPrefix)) {
    throw new PcaModelError(`pcaModel ${key} lies in this run's own ${outputPrefix}: a run cannot project with a model it would write itself`);
  }
  const read = async (objectKey: string, what: string) => {
    try {
      return await readBytes(s3, bucket, objectKey);
    } catch (error) {
      if (error instanceof MissingObjectError) {
        throw new PcaModelError(`${what} s3://${bucket}/${objectKey} does not exist${error.accessDenied ? ' (or is not readable)' : ''}`);
      }
      throw error;
    }
  };
  const model = parsePcaModel(Buffer.from(await read(key, 'pca model')).toString('utf8'), where);
  const pointer = model.knnReferences;
  if (!pointer) return { key, model, fit: pcaFitOf(model) };
  const referencesKey = besideModel(key, pointer.file);
  const references = decodeKnnReferences(await read(referencesKey, `the model's references`), model, `s3://${bucket}/${referencesKey}`);
  return { key, model, fit: pcaFitOf(model), references };
}

/**
 * A few misclassified images beside their nearest reference: one per confused pair, most
 * confused first (a second per pair if pairs run out). The images are read from the input,
 * thumbnailed. An image that cannot be read (deleted since, or not readable) shows why instead of
 * failing the run.
 */
async function galleryOf(
  s3: S3Client,
  bucket: string,
  classification: Extract<ClassificationReport, { status: 'classified' }>,
  candidates: Map<string, { key: string; label: string; predicted: string; distance: number; nearest: number }[]>,
  limit: number,
  referenceOf: (index: number) => { key: string; label: string },
): Promise<GalleryEntry[]> {
  const pairs = classification.mostConfused.map((pair) => candidates.get(`${pair.actual}\u0000${pair.predicted}`) ?? []);
  const chosen: { key: string; label: string; predicted: string; distance: number; nearest: number }[] = [];
  for (let round = 0; round < GALLERY_CANDIDATES_PER_PAIR && chosen.length < limit; round++) {
    for (const list of pairs) if (list[round] && chosen.length < limit) chosen.push(list[round]);
  }
  const imageOf = async (key: string, label: string): Promise<GalleryImage> => {
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
      nearest: await imageOf(reference.key, reference.label),
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
