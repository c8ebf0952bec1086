/**
 * The aggregate's publishing stages: the groups' parts and tallies into the run's published outputs.
 *
 * `publishFeatures` (`PublishFeatures`, which runs beside `FitClassifier`: it needs no classifier):
 * - features.csv: the header, then each group's rows in group order, copied part by part (bytes,
 *   not parsed; by S3 itself where the parts are large enough), so the single file is exactly the
 *   one a single pass would write;
 * - the Parquet dataset `features/` was written by the groups; a run of one group also gets
 *   features.parquet (and embeddings.parquet), a copy of its one part, as small runs always had.
 *
 * `publishRun` (`PublishRun`, the last stage):
 * - predictions.csv, joined as features.csv is;
 * - pca-model.json (a fitting run) with the LDA it fitted, naming the references parts the
 *   groups wrote beside it (`knn-references/part-<g>.fsh`, from their tallies: no part is read);
 * - explained-variance.csv, the scree and scatter plots (a sample merged from the groups'), the
 *   README, report.json (the fit's proof of completeness and counts, the classification merged
 *   from the groups' counts) and report.html (with the gallery of misclassified images).
 */
import { ClassificationReport, ClassificationTally } from '../analysis/classification';
import { DEFAULT_KNN_NEIGHBOURS } from '../analysis/knn';
import { KnnReferencesPointer, pcaFitOf, SavedPcaModel } from '../analysis/pca-model';
import type { PcaFit } from '../analysis/streaming-pca';
import { explainedVarianceCsv, featuresCsvHeader, predictionsCsvHeader } from '../outputs/features-csv';
import { outputReadme, outputSchema } from '../outputs/output-schema';
import { scatterPlotSvg, ScatterSample, screePlotSvg } from '../outputs/plots';
import { reportHtml } from '../outputs/report-html';
import { RunReport, RunReportBuilder } from '../outputs/run-report';
import type { RunSettings } from '../contracts/events';
import { putObject, readBytes } from '../aws/s3-client';
import { joinByPartCopy } from '../aws/part-copy';
import { StreamedUpload } from '../aws/streamed-upload';
import {
  AggregateResult,
  AggregateRunDeps,
  AggregateSettings,
  GALLERY_IMAGES,
  galleryOf,
  outputKeys,
  readGroupRecords,
  runFields,
  stopwatch,
} from './aggregate-shared';
import { aggregateWorkKeys, ClassifyTally, ClassifyTallySchema, partKey, ProjectTally, ProjectTallySchema, referencesPartFile } from './aggregate-work';
import { FitRecord, readFitRecord, readFitRecordOnly } from './fit-stage';
import { ClassifierRecord, describeClassifier, fittedHead, readClassifierRecord } from './classifier-stage';
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

/** What the earlier stages left for the publish: the fit's record and model, the classifier's record, each group's tallies. */
interface PublishInputs {
  readonly record: FitRecord;
  readonly model: SavedPcaModel;
  readonly fit: PcaFit;
  /** The run projected with a saved model (its components, not a fit of its own). */
  readonly projecting: boolean;
  readonly classifying: boolean;
  readonly classifier: ClassifierRecord | undefined;
  readonly groupIndices: readonly number[];
  readonly projected: readonly ProjectTally[];
  /** Empty when the run classifies nothing. */
  readonly classified: readonly ClassifyTally[];
}

/** Which of the optional outputs the run wrote. */
interface OptionalOutputsWritten {
  /** A run of one group: features.parquet (and embeddings.parquet), a copy of its one part. */
  readonly singleParquet: boolean;
  /** The references parts beside the model (`knn-references/`). */
  readonly savedReferences: boolean;
}

/** The figures drawn, for the outputs and for report.html. */
interface Plots {
  readonly screeSvg: string;
  readonly scatterSvg: string;
}

/**
 * The run's published outputs, in the order the module's header lists them: the tables, the
 * model and its references, the classification merged from the groups', the fit's tables, plots
 * and README, then report.json and report.html.
 */
export async function publishRun(run: RunSettings, groups: number, deps: AggregateRunDeps): Promise<AggregateResult> {
  const { s3, settings, log } = deps;
  const now = deps.now ?? (() => new Date());
  const clock = stopwatch();
  const inputs = await readPublishInputs(run, groups, deps);
  const { record, fit, classified } = inputs;
  const timings = stageTimings(inputs);

  const rows = inputs.projected.reduce((sum, t) => sum + t.rows, 0);
  const report = new RunReportBuilder();
  report.absorb(record.report);
  const classification = mergedClassification(inputs, report, deps);
  // Outputs that need none of one another, written side by side so that their requests overlap;
  // the README names what they wrote, and report.json, the run's last word, comes after all of them.
  const [, savedReferences, plots, gallery] = await Promise.all([
    inputs.classifying ? publishPredictions(run, inputs, deps) : undefined,
    inputs.projecting ? false : publishModel(run, inputs, deps),
    publishPlots(run, inputs, classification, deps),
    classification.status === 'classified'
      ? galleryOf(
          s3,
          run.bucket,
          classification,
          classified.flatMap((part) => part.gallery),
          settings.galleryImages ?? GALLERY_IMAGES,
        )
      : [],
  ]);
  const written = { singleParquet: singleParquetCopies(groups), savedReferences };
  const schema = await publishReadme(run, inputs, classification, written, deps);
  const outputs = writtenOutputs(run, inputs, written, settings);
  const runSettings = runSettingsOf(inputs, settings);
  timings.publish = clock.total();

  const runReport = report.build({
    ...runFields(run, record.mapRunArn),
    accounting: record.accounting,
    pca: pcaSummary(inputs, groups, settings),
    timingsMs: timings,
    outputs,
    now: now(),
  });
  const fullReport = { ...runReport, settings: runSettings, classification, schema };
  await putObject(s3, run.bucket, outputKeys(run.outputPrefix).report, JSON.stringify(fullReport, null, 2), 'application/json');
  const html = reportHtml({
    report: fullReport,
    settings: { featurizer: record.featurizer, ...runSettings, explainedVariance: Number(fit.explainedVariance.toFixed(4)) },
    ...plots,
    gallery,
  });
  await putObject(s3, run.bucket, outputKeys(run.outputPrefix).html, html, 'text/html; charset=utf-8');
  log?.info('aggregate done', { rows, k: fit.k, groups, counts: runReport.counts, timingsMs: timings });
  return aggregateResult(run, inputs, { rows, counts: runReport.counts, classification, outputs });
}

/** The fit's record and model, the classifier's record, and every group's project and classify tallies. */
async function readPublishInputs(run: RunSettings, groups: number, deps: AggregateRunDeps): Promise<PublishInputs> {
  const { s3 } = deps;
  const work = aggregateWorkKeys(run.workPrefix);
  const groupIndices = Array.from({ length: groups }, (_, g) => g);
  const [{ record, model }, classifier, projected] = await Promise.all([
    readFitRecord(deps, run),
    readClassifierRecord(s3, run),
    readGroupRecords(s3, run.bucket, groupIndices, work.projectTally, ProjectTallySchema),
  ]);
  const classifying = record.classificationSkipped === undefined;
  const classified: ClassifyTally[] = classifying ? await readGroupRecords(s3, run.bucket, groupIndices, work.classifyTally, ClassifyTallySchema) : [];
  return {
    record,
    model,
    fit: pcaFitOf(model),
    projecting: record.pcaModelKey !== undefined,
    classifying,
    classifier,
    groupIndices,
    projected,
    classified,
  };
}

/** The fit's timings, and the group stages' slowest and summed. */
function stageTimings({ record, projected, classified, classifying }: PublishInputs): Record<string, number> {
  return {
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
}

/** A run of one group also gets features.parquet (and embeddings.parquet), a copy of its one part. */
function singleParquetCopies(groups: number): boolean {
  return groups === 1;
}

/**
 * features.csv joined from the groups' parts and, for a run of one group, its Parquet copies: the
 * `publish-features` stage, beside FitClassifier (nothing here waits for the classifier).
 */
export async function publishFeatures(run: RunSettings, groups: number, deps: AggregateRunDeps): Promise<{ features: string }> {
  const { s3, settings } = deps;
  const { bucket } = run;
  const work = aggregateWorkKeys(run.workPrefix);
  const outputs = outputKeys(run.outputPrefix);
  const record = await readFitRecordOnly(deps, run);
  const groupIndices = Array.from({ length: groups }, (_, g) => g);
  await joinParts(deps, bucket, outputs.features, featuresCsvHeader(record.keptComponents), groupIndices.map(work.featuresCsv));
  if (singleParquetCopies(groups)) {
    const parquetType = 'application/vnd.apache.parquet';
    await putObject(s3, bucket, outputs.featuresParquet, await readBytes(s3, bucket, partKey(run.outputPrefix, 'features', 0)), parquetType);
    if (settings.keepEmbeddings)
      await putObject(s3, bucket, outputs.embeddings, await readBytes(s3, bucket, partKey(run.outputPrefix, 'embeddings', 0)), parquetType);
  }
  return { features: outputs.features };
}

/** predictions.csv joined from the groups' parts. */
async function publishPredictions(run: RunSettings, { groupIndices }: PublishInputs, deps: AggregateRunDeps): Promise<void> {
  const work = aggregateWorkKeys(run.workPrefix);
  await joinParts(deps, run.bucket, outputKeys(run.outputPrefix).predictions, predictionsCsvHeader(), groupIndices.map(work.predictionsCsv));
}

/**
 * A fitting run's model, with the classifier it fitted and the references parts the project stage wrote
 * beside it, as their tallies state them (no part is read). Whether it names references.
 */
async function publishModel(run: RunSettings, inputs: PublishInputs, deps: AggregateRunDeps): Promise<boolean> {
  const { model, classifier } = inputs;
  const pointer = referencesPointer(inputs.projected);
  const head = fittedHead(classifier);
  const json = JSON.stringify({ ...model, ...(pointer ? { knnReferences: pointer } : {}), ...(head ? { classifier: head } : {}) });
  await putObject(deps.s3, run.bucket, outputKeys(run.outputPrefix).model, json, 'application/json');
  return pointer !== undefined;
}

/** `knnReferences` of the model: the groups' references parts in group order, or undefined when no group wrote one. */
function referencesPointer(projected: readonly ProjectTally[]): KnnReferencesPointer | undefined {
  const parts = projected.flatMap((tally) => (tally.references ? [{ file: referencesPartFile(tally.group), ...tally.references }] : []));
  if (parts.length === 0) return undefined;
  return { count: parts.reduce((sum, part) => sum + part.count, 0), parts };
}

/** The classification, merged from the groups' counts, or why there is none. */
function mergedClassification(
  { record, fit, projecting, classifying, classifier, classified }: PublishInputs,
  report: RunReportBuilder,
  { log }: AggregateRunDeps,
): ClassificationReport {
  if (!classifying || !classifier)
    return { status: 'skipped', reason: record.classificationSkipped ?? 'no classifier: the run has no Training rows to fit one on' };
  const description = describeClassifier(classifier);
  if ('note' in classifier && classifier.note) report.warn(classifier.note);
  // A projecting run's groups scored the rows of the references' classes; the set only marks that scope here.
  // k-NN measures over the kept k; a fitted head sees every component the model holds.
  const components = classifier.classifier === 'knn' ? fit.k : classifier.model.dim;
  const tally = new ClassificationTally(description, components, record.references, projecting ? new Set<string>() : undefined);
  classified.forEach((part) => tally.absorb(part.tally));
  const classification = tally.report();
  log?.info('classified', { references: record.references, predicted: classification.status === 'classified' ? classification.predicted : 0 });
  return classification;
}

/** The fit's explained variance table, the scree plot and the scatter of a sample merged from the groups'. */
async function publishPlots(
  run: RunSettings,
  { record, model, fit, projecting, projected }: PublishInputs,
  classification: ClassificationReport,
  { s3, settings }: AggregateRunDeps,
): Promise<Plots> {
  const outputs = outputKeys(run.outputPrefix);
  await putObject(s3, run.bucket, outputs.explainedVariance, explainedVarianceCsv(fit.eigenvalues, fit.explainedVarianceRatio, fit.k), CSV_TYPE);
  const svgType = 'image/svg+xml';
  const plotSubtitle = `run ${run.runId} · ${record.featurizer}${projecting ? ` · components of run ${model.runId}` : ''}`;
  const screeSvg = await screePlotSvg({ ratios: fit.explainedVarianceRatio, kept: fit.k, subtitle: plotSubtitle });
  await putObject(s3, run.bucket, outputs.scree, screeSvg, svgType);
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
  await putObject(s3, run.bucket, outputs.scatter, scatterSvg, svgType);
  return { screeSvg, scatterSvg };
}

/** The README, from the schema of what the run wrote; the schema, for report.json. */
async function publishReadme(
  run: RunSettings,
  { record, model, fit, projecting, classifier }: PublishInputs,
  classification: ClassificationReport,
  { singleParquet, savedReferences }: OptionalOutputsWritten,
  { s3, settings }: AggregateRunDeps,
): Promise<ReturnType<typeof outputSchema>> {
  const schema = outputSchema({
    runId: run.runId,
    k: fit.k,
    dim: record.dim,
    classified: classification.status === 'classified',
    classifier: classification.status === 'classified' ? classification.classifier : undefined,
    savedClassifier: !projecting && fittedHead(classifier) !== undefined,
    embeddings: settings.keepEmbeddings ?? false,
    references: savedReferences,
    singleParquet,
    ...(projecting ? { projectedWith: { model: record.pcaModelKey!, runId: model.runId } } : {}),
  });
  await putObject(s3, run.bucket, outputKeys(run.outputPrefix).readme, outputReadme(schema), 'text/plain; charset=utf-8');
  return schema;
}

/** The keys of every output the run wrote. */
function writtenOutputs(
  run: RunSettings,
  { projecting, classifying }: PublishInputs,
  { singleParquet, savedReferences }: OptionalOutputsWritten,
  settings: AggregateSettings,
): AggregateResult['outputs'] {
  const outputs = outputKeys(run.outputPrefix);
  return {
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
}

/** The settings the run ran with, as report.json and report.html show them. */
function runSettingsOf({ record, projecting, classifier }: PublishInputs, settings: AggregateSettings) {
  return {
    pcaComponents: settings.components,
    pcaVarianceThreshold: settings.varianceThreshold ?? null,
    classifier: classifier?.classifier ?? settings.classifier ?? DEFAULT_CLASSIFIER,
    knnNeighbours: settings.knnNeighbours ?? DEFAULT_KNN_NEIGHBOURS,
    keepEmbeddings: settings.keepEmbeddings ?? false,
    ...(projecting ? { pcaModel: record.pcaModelKey } : {}),
  };
}

/** report.json's `pca`: the saved model the run projected with, or the fit it made. */
function pcaSummary({ record, model, fit, projecting }: PublishInputs, groups: number, settings: AggregateSettings): Record<string, unknown> {
  return projecting
    ? {
        source: 'model',
        model: record.pcaModelKey,
        modelRunId: model.runId,
        refit: false,
        rows: record.rows,
        fittedRows: fit.count,
        dim: fit.dim,
        k: fit.k,
        ...(fit.classifierK ? { classifierK: fit.classifierK } : {}),
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
        // The fitted head's components beyond the k kept, held to the Training rows (classifier-components.ts).
        ...(fit.classifierK ? { classifierK: fit.classifierK } : {}),
        explainedVariance: fit.explainedVariance,
        constantFeatures: fit.constantFeatures.length,
        groups,
      };
}

/** What the state machine gets back: the run's figures and the keys of its outputs. */
function aggregateResult(
  run: RunSettings,
  { record, model, fit, projecting }: PublishInputs,
  published: { rows: number; counts: RunReport['counts']; classification: ClassificationReport; outputs: AggregateResult['outputs'] },
): AggregateResult {
  const { counts, classification } = published;
  return {
    runId: run.runId,
    bucket: run.bucket,
    rows: published.rows,
    components: fit.k,
    explainedVariance: fit.explainedVariance,
    ...(projecting ? { pcaModel: { key: record.pcaModelKey!, runId: model.runId } } : {}),
    counts: {
      processed: counts.processed,
      failed: counts.failed,
      skipped: counts.skipped,
      failedBatches: counts.failedBatches,
    },
    ...(classification.status === 'classified' && classification.accuracy !== null ? { accuracy: classification.accuracy } : {}),
    outputs: published.outputs,
  };
}
