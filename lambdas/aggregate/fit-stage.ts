/**
 * The aggregate's merge: the plan and every group's moments in, the run's proof of completeness
 * and its model out (`pca-fit.json` and `pca-fit-model.json`), before anything is published.
 *
 * 1. absorb the report and accounting parts (the plan's, then each group's in order): a run that
 *    cannot prove every key handed out came out exactly once fails here with
 *    `IncompleteRunError`, its report.json saying why, and no output is written;
 * 2. merge the count, mean and scatter of the moments merge tree's top level (Chan et al.'s
 *    pairwise formula, float64): the groups' own when the run has at most `fanIn` groups, else
 *    the at most `fanIn` partials the `MergeMoments` stages left (`merge-stage.ts`); check that
 *    they count every row the groups kept, and fit the PCA, or take the saved model's fit in a
 *    projecting run;
 * 3. decide whether the run classifies (Training references and rows to predict) and say why not.
 *
 * Its input is at most `fanIn` scatters and one small tally per group, not one scatter per group.
 */
import { parsePcaModel, pcaModelJson, SavedPcaModel } from '../analysis/pca-model';
import { ComponentSelection, fitPcaTop, InsufficientDataError, PcaFit } from '../analysis/streaming-pca';
import { describeIncompleteAccounting, IncompleteRunError, InputAccountingReport, mergeAccountingReports } from '../bookkeeping/input-accounting';
import { RunReport, RunReportBuilder, RunReportPart } from '../outputs/run-report';
import type { RunSettings } from '../contracts/events';
import { putObject, readText } from '../aws/s3-client';
import { DEFAULT_CLASSIFIER, DEFAULT_CLASSIFIER_COMPONENTS } from '../contracts/handler-env';
import { classifierComponentsFor } from '../analysis/classifier-components';
import {
  AggregateRunDeps,
  AggregateSettings,
  outputKeys,
  ProjectionModel,
  readGroupRecords,
  readProjectionModel,
  runFields,
  singleStageThreads,
  stopwatch,
} from './aggregate-shared';
import {
  addTrainingClasses,
  aggregateWorkKeys,
  MomentsTally,
  MomentsTallySchema,
  momentsMergeLevels,
  Plan,
  TrainingClasses,
  TrainingClassesSchema,
} from './aggregate-work';
import { unpackMoments } from '../analysis/packed-moments';
import { mergedPartials } from './merge-stage';
import { readPlan } from './moments-stage';
import { z } from 'zod';

/**
 * What the project, classify and publish stages apply: written once by the fit, beside the model
 * itself (`pca-fit-model.json`, as pca-model.json holds it: a fitting run's, or the saved one it
 * projects with), which only the stages that project, fit the classifier or publish read.
 */
export const FitRecordSchema = z.object({
  /** The saved model's key in a projecting run. */
  pcaModelKey: z.string().optional(),
  featurizer: z.string(),
  dim: z.number().int(),
  groups: z.number().int(),
  /** Rows kept over the whole run, and the Training ones among them. */
  rows: z.number().int(),
  references: z.number().int(),
  /**
   * The components the project stage scores every row on: the model's `classifierK` (the fitted
   * head's width), else its k. FitClassifier reads this instead of the model.
   */
  projectedComponents: z.number().int().min(1),
  /** The components features.csv and the Parquet dataset hold: the model's k. */
  keptComponents: z.number().int().min(1),
  /** The run's kept Training rows and their copies by class (a fitting run's): what bounds the classifier's samples. */
  trainingClasses: TrainingClassesSchema.default({}),
  /** Why nothing is classified, when nothing is. */
  classificationSkipped: z.string().optional(),
  report: z.custom<RunReportPart>(),
  accounting: z.custom<InputAccountingReport>(),
  mapRunArn: z.string().optional(),
  timingsMs: z.record(z.string(), z.number()),
});
export type FitRecord = z.infer<typeof FitRecordSchema>;

export async function readFitRecord(deps: AggregateRunDeps, run: RunSettings): Promise<{ record: FitRecord; model: SavedPcaModel }> {
  const [record, model] = await Promise.all([readFitRecordOnly(deps, run), readFitModel(deps, run)]);
  return { record, model };
}

/** The model the fit stage wrote beside its record (the saved model's, in a projecting run). */
export async function readFitModel(deps: AggregateRunDeps, run: RunSettings): Promise<SavedPcaModel> {
  return parsePcaModel(await readText(deps.s3, run.bucket, aggregateWorkKeys(run.workPrefix).fitModel), 'pca-fit-model.json');
}

/** The fit record without the model: for a stage that needs the run's facts, not the projection (12 MB at 300 components). */
export async function readFitRecordOnly(deps: AggregateRunDeps, run: RunSettings): Promise<FitRecord> {
  return FitRecordSchema.parse(JSON.parse(await readText(deps.s3, run.bucket, aggregateWorkKeys(run.workPrefix).fit)));
}

/**
 * The run's fit: the plan's and the groups' reports and accounting absorbed (an incomplete run
 * fails here), the moments merge tree's top level merged and fitted or the saved model's fit
 * taken, and whether the run classifies; all of it written as the fit record. `fanIn` is the
 * tree's (`momentsMergeLevels`).
 */
export async function fitRun(run: RunSettings, groups: number, fanIn: number, deps: AggregateRunDeps): Promise<{ classify: boolean }> {
  const { s3, settings, log } = deps;
  const clock = stopwatch();
  const work = aggregateWorkKeys(run.workPrefix);
  const plan = await readPlan(deps, run);
  if (plan.groups !== groups) throw new Error(`the plan holds ${plan.groups} groups, the fit was handed ${groups}`);
  const groupIndices = Array.from({ length: groups }, (_, g) => g);
  const tallies = await readGroupRecords(s3, run.bucket, groupIndices, work.momentsTally, MomentsTallySchema);
  const timings: Record<string, number> = {
    ...plan.timingsMs,
    momentsSlowest: Math.max(0, ...tallies.map((t) => t.timingsMs.moments)),
    momentsSummed: tallies.reduce((sum, t) => sum + t.timingsMs.moments, 0),
  };

  const report = new RunReportBuilder();
  report.absorb(plan.report);
  tallies.forEach((tally) => report.absorb(tally.report));
  const accounting = mergeAccountingReports([plan.accounting, ...tallies.map((tally) => tally.accounting)]);
  const saved = plan.pcaModel ? await readProjectionModel(s3, run.bucket, plan.pcaModel, run.outputPrefix) : undefined;
  const failWith = (error: Error) => writeFailureReport(run, plan, { error, report, accounting, saved, timings }, deps);
  if (!accounting.complete) {
    const error = new IncompleteRunError(describeIncompleteAccounting(accounting));
    await failWith(error);
    log?.warn('run incomplete', { reason: error.message, accounting });
    throw error;
  }

  const rows = tallies.reduce((sum, tally) => sum + tally.rows, 0);
  const references = tallies.reduce((sum, tally) => sum + tally.references, 0);
  let fit: PcaFit;
  try {
    if (saved) {
      if (rows === 0) throw new InsufficientDataError('no feature vectors to project: every image failed or was skipped');
      fit = saved.fit;
    } else {
      fit = await fitOfMoments(run, { tallies, rows, fanIn, selection: fitSelection(deps.settings, references) }, deps);
    }
  } catch (error) {
    if (error instanceof InsufficientDataError) {
      const failure = await failWith(error);
      log?.warn('no PCA possible', { reason: error.message, counts: failure.counts });
    }
    throw error;
  }
  fit.warnings.forEach((warning) => report.warn(warning));
  timings.fit = clock.total();

  const classificationSkipped = whyNotClassified(saved, references, fit);

  const model = saved ? saved.model : pcaModelJson(fit, run.runId, plan.featurizer, report.featurizerReport(), fitSelection(settings, references));
  const record: FitRecord = {
    ...(saved ? { pcaModelKey: saved.key } : {}),
    featurizer: plan.featurizer,
    dim: plan.dim,
    groups,
    rows,
    references: saved ? (saved.model.knnReferences?.count ?? 0) : references,
    projectedComponents: model.classifierK ?? model.k,
    keptComponents: model.k,
    trainingClasses: tallies.reduce((sum: TrainingClasses, tally) => addTrainingClasses(sum, tally.trainingClasses), {}),
    ...(classificationSkipped ? { classificationSkipped } : {}),
    report: report.part(),
    accounting,
    ...(plan.mapRunArn ? { mapRunArn: plan.mapRunArn } : {}),
    timingsMs: timings,
  };
  // The model first: a stage that finds the record finds its model.
  await putObject(s3, run.bucket, work.fitModel, JSON.stringify(model), 'application/json');
  await putObject(s3, run.bucket, work.fit, JSON.stringify(record), 'application/json');
  if (saved) log?.info('projecting with the saved model', { rows, dim: fit.dim, k: fit.k, pcaModel: saved.key });
  else log?.info('pca fitted', { rows: fit.count, dim: fit.dim, k: fit.k, explainedVariance: fit.explainedVariance, groups });
  // A run of Training images only still saves its references (the project stage writes them).
  return { classify: classificationSkipped === undefined };
}

/** Why the run fails, and what the fit knows of it by then. */
interface FitFailure {
  readonly error: Error;
  readonly report: RunReportBuilder;
  readonly accounting: InputAccountingReport;
  readonly saved: ProjectionModel | undefined;
  readonly timings: Record<string, number>;
}

/** A failed run's report.json, written for the run's outputs to say why; the report, for the log. */
async function writeFailureReport(
  run: RunSettings,
  plan: Plan,
  { error, report, accounting, saved, timings }: FitFailure,
  { s3, now = () => new Date() }: AggregateRunDeps,
): Promise<RunReport> {
  const failure = report.build({
    ...runFields(run, plan.mapRunArn),
    error,
    accounting,
    ...(saved ? { pca: { source: 'model', model: saved.key, modelRunId: saved.model.runId } } : {}),
    timingsMs: timings,
    outputs: { report: outputKeys(run.outputPrefix).report },
    now: now(),
  });
  await putObject(s3, run.bucket, outputKeys(run.outputPrefix).report, JSON.stringify(failure, null, 2), 'application/json');
  return failure;
}

/**
 * The PCA fitted on the top level of the moments merge tree: the groups' own partials (those
 * that kept rows) in a run of at most `fanIn` groups, else the partials of the tree's last level.
 * Their count must be every row the groups' tallies kept: a partial lost or merged twice fails
 * the fit instead of skewing the model.
 */
async function fitOfMoments(
  run: RunSettings,
  { tallies, rows, fanIn, selection }: { tallies: readonly MomentsTally[]; rows: number; fanIn: number; selection: ComponentSelection },
  deps: AggregateRunDeps,
): Promise<PcaFit> {
  if (rows === 0) throw new InsufficientDataError('no feature vectors to analyse: every image failed or was skipped');
  const levels = momentsMergeLevels(tallies.length, fanIn);
  const top = levels.length - 1;
  const indices = top === 0 ? tallies.filter((tally) => tally.rows > 0).map((tally) => tally.group) : Array.from({ length: levels[top] }, (_, i) => i);
  const merged = unpackMoments(await mergedPartials(run, top, indices, deps));
  if (merged.count !== rows) {
    throw new Error(`the moments merged from level ${top} of the merge tree count ${merged.count} rows, the groups' tallies ${rows}`);
  }
  return fitPcaTop(merged, selection, { intraOpNumThreads: singleStageThreads() });
}

/**
 * The components the fit keeps and the classifier sees: the settings' own, with the classifier's
 * further components (a fitted head only: k-NN votes over the kept k) held to
 * CLASSIFIER_ROWS_PER_COMPONENT Training rows each.
 */
export function fitSelection(settings: AggregateSettings, references: number): ComponentSelection {
  const { components, varianceThreshold } = settings;
  const selection = { components, ...(varianceThreshold !== undefined ? { varianceThreshold } : {}) };
  if ((settings.classifier ?? DEFAULT_CLASSIFIER) === 'knn') return selection;
  return { ...selection, classifierComponents: classifierComponentsFor(settings.classifierComponents ?? DEFAULT_CLASSIFIER_COMPONENTS, references) };
}

/** Why the run classifies nothing (no classifier to classify with, or nothing to fit or predict), or undefined when it classifies. */
function whyNotClassified(saved: ProjectionModel | undefined, references: number, fit: PcaFit): string | undefined {
  if (saved) {
    if (!saved.model.knnReferences && !saved.model.classifier)
      return `the model's run ${saved.model.runId} saved no classifier and no Training references (no knnReferences): nothing to classify with`;
    return undefined;
  }
  if (references === 0) return 'no image lies under a Training/ (or Train/) folder: nothing to fit the classifier on';
  if (references === fit.count) return 'every image is a Training image: nothing to predict';
  return undefined;
}
