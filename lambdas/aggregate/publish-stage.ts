/**
 * The aggregate's last stage: the groups' parts and tallies into the run's published outputs.
 *
 * - features.csv and predictions.csv: the header, then each group's rows in group order, copied
 *   part by part (bytes, not parsed; by S3 itself where the parts are large enough), so the single
 *   files are exactly those one pass would write;
 * - the Parquet dataset `features/` was written by the groups; a run of one group also gets
 *   features.parquet (and embeddings.parquet), a copy of its one part, as small runs always had;
 * - pca-model.json (a fitting run) with the LDA it fitted, and its references file, the groups'
 *   Training rows in order;
 * - explained-variance.csv, the scree and scatter plots (a sample merged from the groups'), the
 *   README, report.json (the fit's proof of completeness and counts, the classification merged
 *   from the groups' counts) and report.html (with the gallery of misclassified images).
 */
import { ClassificationReport, ClassificationTally, ClassifierDescription } from '../analysis/classification';
import { DEFAULT_KNN_NEIGHBOURS, KnnReferences } from '../analysis/knn';
import { encodeKnnReferences, pcaFitOf } from '../analysis/pca-model';
import { decodeFeatureShard } from '../bookkeeping/feature-shard';
import { explainedVarianceCsv, featuresCsvHeader, predictionsCsvHeader } from '../outputs/features-csv';
import { outputReadme, outputSchema } from '../outputs/output-schema';
import { scatterPlotSvg, ScatterSample, screePlotSvg } from '../outputs/plots';
import { reportHtml } from '../outputs/report-html';
import { RunReportBuilder } from '../outputs/run-report';
import type { RunSettings } from '../contracts/events';
import { MissingObjectError, putObject, readBytes, readText } from '../aws/s3-client';
import { joinByPartCopy } from '../aws/part-copy';
import { StreamedUpload } from '../aws/streamed-upload';
import { AggregateResult, AggregateRunDeps, GALLERY_IMAGES, galleryOf, outputKeys, runFields, stopwatch } from './aggregate-shared';
import { aggregateWorkKeys, ClassifyTally, ClassifyTallySchema, partKey, ProjectTally, ProjectTallySchema } from './aggregate-work';
import { readFitRecord } from './fit-stage';
import { readClassifierRecord } from './classifier-stage';
import { DEFAULT_CLASSIFIER } from '../contracts/handler-env';

const CSV_TYPE = 'text/csv; charset=utf-8';

/**
 * `header` then the parts in order: copied by S3 where every part but the last is large enough to
 * be a part of a multipart upload (the groups' features.csv rows), else streamed through memory
 * (the predictions, a few hundred KB a group). Memory is one part either way, whatever the run's size.
 */
async function joinParts(deps: AggregateRunDeps, bucket: string, key: string, header: string, parts: string[]): Promise<void> {
  if (await joinByPartCopy(deps.s3, bucket, key, header, parts, CSV_TYPE)) return;
  const upload = new StreamedUpload(deps.s3, bucket, key, CSV_TYPE);
  try {
    await upload.write(header);
    for (const part of parts) await upload.write(await readBytes(deps.s3, bucket, part));
    await upload.close();
  } catch (error) {
    upload.abort();
    throw error;
  }
}

export async function publishRun(run: RunSettings, groups: number, deps: AggregateRunDeps): Promise<AggregateResult> {
  const { s3, settings, log } = deps;
  const now = deps.now ?? (() => new Date());
  const clock = stopwatch();
  const { bucket } = run;
  const work = aggregateWorkKeys(run.workPrefix);
  const outputs = outputKeys(run.outputPrefix);
  const { record, model } = await readFitRecord(deps, run);
  const fit = pcaFitOf(model);
  const { k } = fit;
  const projecting = record.pcaModelKey !== undefined;
  const classifying = record.classificationSkipped === undefined;
  const classifier = await readClassifierRecord(s3, run);
  const groupIndices = Array.from({ length: groups }, (_, g) => g);
  const projected: ProjectTally[] = [];
  for (const g of groupIndices) projected.push(ProjectTallySchema.parse(JSON.parse(await readText(s3, bucket, work.projectTally(g)))));
  const classified: ClassifyTally[] = [];
  if (classifying) for (const g of groupIndices) classified.push(ClassifyTallySchema.parse(JSON.parse(await readText(s3, bucket, work.classifyTally(g)))));
  const timings: Record<string, number> = {
    ...record.timingsMs,
    projectSlowest: Math.max(0, ...projected.map((t) => t.timingsMs.project)),
    projectSummed: projected.reduce((sum, t) => sum + t.timingsMs.project, 0),
    ...(classifying
      ? {
          classifySlowest: Math.max(0, ...classified.map((t) => t.timingsMs.classify)),
          classifySummed: classified.reduce((sum, t) => sum + t.timingsMs.classify, 0),
        }
      : {}),
  };

  // The tables.
  await joinParts(deps, bucket, outputs.features, featuresCsvHeader(k), groupIndices.map(work.featuresCsv));
  if (classifying) await joinParts(deps, bucket, outputs.predictions, predictionsCsvHeader(), groupIndices.map(work.predictionsCsv));
  const singleParquet = groups === 1;
  const parquetType = 'application/vnd.apache.parquet';
  if (singleParquet) {
    await putObject(s3, bucket, outputs.featuresParquet, await readBytes(s3, bucket, partKey(run.outputPrefix, 'features', 0)), parquetType);
    if (settings.keepEmbeddings)
      await putObject(s3, bucket, outputs.embeddings, await readBytes(s3, bucket, partKey(run.outputPrefix, 'embeddings', 0)), parquetType);
  }
  const rows = projected.reduce((sum, t) => sum + t.rows, 0);

  // The model, with the Training rows' scores beside it (a fitting run).
  const report = new RunReportBuilder();
  report.absorb(record.report);
  let savedReferences = false;
  if (!projecting) {
    let pointer: ReturnType<typeof encodeKnnReferences>['pointer'] | undefined;
    if (record.references > 0) {
      const references = new KnnReferences(k, record.references, 'float32');
      const keys: string[] = [];
      for (const g of groupIndices) {
        let part;
        try {
          part = decodeFeatureShard(await readBytes(s3, bucket, work.references(g)));
        } catch (error) {
          if (error instanceof MissingObjectError) continue;
          throw error;
        }
        part.header.labels.forEach((label, row) => references.add(label, part.vectors, row * k));
        keys.push(...part.header.keys);
      }
      const encoded = encodeKnnReferences({ runId: run.runId, featurizer: record.featurizer, k }, keys, references);
      await putObject(s3, bucket, outputs.knnReferences, encoded.bytes, 'application/octet-stream');
      pointer = encoded.pointer;
      savedReferences = true;
    }
    const lda = classifier?.classifier === 'lda' && classifier.fitted ? { classifier: classifier.model } : {};
    await putObject(s3, bucket, outputs.model, JSON.stringify({ ...model, ...(pointer ? { knnReferences: pointer } : {}), ...lda }), 'application/json');
  }

  // The classification, merged from the groups' counts.
  const knnNeighbours = settings.knnNeighbours ?? DEFAULT_KNN_NEIGHBOURS;
  let classification: ClassificationReport;
  if (classifying && classifier) {
    const description: ClassifierDescription =
      classifier.classifier === 'lda'
        ? { classifier: 'lda', shrinkage: classifier.model.shrinkage, prototypes: classifier.prototypes }
        : { classifier: 'knn', neighbours: classifier.neighbours };
    if (classifier.classifier === 'knn' && classifier.note) report.warn(classifier.note);
    // A projecting run's groups scored the rows of the references' classes; the set only marks that scope here.
    const tally = new ClassificationTally(description, k, record.references, projecting ? new Set<string>() : undefined);
    classified.forEach((part) => tally.absorb(part.tally));
    classification = tally.report();
    log?.info('classified', { references: record.references, predicted: classification.status === 'classified' ? classification.predicted : 0 });
  } else {
    classification = { status: 'skipped', reason: record.classificationSkipped ?? 'no classifier: the run has no Training rows to fit one on' };
  }

  // Tables of the fit, plots, README.
  await putObject(s3, bucket, outputs.explainedVariance, explainedVarianceCsv(fit.eigenvalues, fit.explainedVarianceRatio, fit.k), CSV_TYPE);
  const svgType = 'image/svg+xml';
  const plotSubtitle = `run ${run.runId} · ${record.featurizer}${projecting ? ` · components of run ${model.runId}` : ''}`;
  const screeSvg = await screePlotSvg({ ratios: fit.explainedVarianceRatio, kept: fit.k, subtitle: plotSubtitle });
  await putObject(s3, bucket, outputs.scree, screeSvg, svgType);
  const sample = ScatterSample.merged(
    projected.map((t) => t.sample),
    settings.scatterPoints,
  );
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
    runId: run.runId,
    k,
    dim: record.dim,
    classified: classification.status === 'classified',
    classifier: classification.status === 'classified' ? classification.classifier : undefined,
    savedClassifier: !projecting && classifier?.classifier === 'lda' && classifier.fitted,
    embeddings: settings.keepEmbeddings ?? false,
    references: savedReferences,
    singleParquet,
    ...(projecting ? { projectedWith: { model: record.pcaModelKey!, runId: model.runId } } : {}),
  });
  await putObject(s3, bucket, outputs.readme, outputReadme(schema), 'text/plain; charset=utf-8');
  const written: AggregateResult['outputs'] = {
    features: outputs.features,
    featuresParts: outputs.featuresParts,
    ...(singleParquet ? { featuresParquet: outputs.featuresParquet } : {}),
    ...(classifying ? { predictions: outputs.predictions } : {}),
    ...(settings.keepEmbeddings ? { embeddingsParts: outputs.embeddingsParts, ...(singleParquet ? { embeddings: outputs.embeddings } : {}) } : {}),
    ...(projecting ? {} : { model: outputs.model }),
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
    classifier: classifier?.classifier ?? settings.classifier ?? DEFAULT_CLASSIFIER,
    knnNeighbours,
    keepEmbeddings: settings.keepEmbeddings ?? false,
    ...(projecting ? { pcaModel: record.pcaModelKey } : {}),
  };
  const gallery =
    classification.status === 'classified'
      ? await galleryOf(
          s3,
          bucket,
          classification,
          classified.flatMap((part) => part.gallery),
          settings.galleryImages ?? GALLERY_IMAGES,
        )
      : [];
  timings.publish = clock.total();

  const pca = projecting
    ? {
        source: 'model',
        model: record.pcaModelKey,
        modelRunId: model.runId,
        refit: false,
        rows: record.rows,
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
        groups,
      };
  const runReport = report.build({
    ...runFields(run, record.mapRunArn),
    accounting: record.accounting,
    pca,
    timingsMs: timings,
    outputs: written,
    now: now(),
  });
  const fullReport = { ...runReport, settings: runSettings, classification, schema };
  await putObject(s3, bucket, outputs.report, JSON.stringify(fullReport, null, 2), 'application/json');
  const html = reportHtml({
    report: fullReport,
    settings: { featurizer: record.featurizer, ...runSettings, explainedVariance: Number(fit.explainedVariance.toFixed(4)) },
    screeSvg,
    scatterSvg,
    gallery,
  });
  await putObject(s3, bucket, outputs.html, html, 'text/html; charset=utf-8');
  log?.info('aggregate done', { rows, k: fit.k, groups, counts: runReport.counts, timingsMs: timings });

  return {
    runId: run.runId,
    bucket,
    rows,
    components: fit.k,
    explainedVariance: fit.explainedVariance,
    ...(projecting ? { pcaModel: { key: record.pcaModelKey!, runId: model.runId } } : {}),
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
