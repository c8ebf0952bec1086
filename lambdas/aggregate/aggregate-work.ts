/**
 * What the stages of the aggregate hand each other through S3, under `work/<runId>/aggregate/`:
 * the keys and the shapes (zod-checked when read, as every boundary is).
 *
 *   plan.json              the plan: featurizer, group count, the report and accounting of the
 *                          batches that left no shard
 *   groups.json            `[{ "group": 0 }, ...]`: the ItemReader input of the group maps
 *   groups/<g>.json        the batches of group g: shard key and summary (the keys each batch
 *                          was handed are in its batch record, `work/<runId>/batches/`)
 *   moments/<g>.bin        group g's count, mean and scatter (float64, the upper triangle)
 *   merged-moments/<l>/<n>.bin  node n of level l of the moments merge tree: the count, mean and
 *                          scatter of `fanIn` consecutive partials of level l - 1 (a run of more
 *                          groups than the fit merges; `momentsMergeLevels`)
 *   moments/<g>.json       group g's report part, accounting part, excluded rows, class counts
 *   pca-fit.json           the run's facts the later stages apply (fit-stage.ts, `FitRecord`)
 *   pca-fit-model.json     the fitted (or saved) model the project and publish stages apply (and
 *                          fit-classifier, for a saved model's head), as pca-model.json holds it
 *   queries/<g>.fsh        group g's rows to predict, as PCA scores
 *   class-statistics/<g>.bin   group g's Training rows' class counts, means and within-class
 *                          scatter in the PCA space (the LDA's statistics; `encodeClassStatistics`)
 *   prototype-sample/<g>.fsh   group g's share of the per-class sample the LDA's prototypes are
 *                          clustered from, as PCA scores
 *   classifier.json        the run's classifier: the LDA fitted (or the saved model's), or k-NN
 *   features/<g>.csv       group g's rows of features.csv (no header)
 *   predictions/<g>.csv    group g's rows of predictions.csv (no header)
 *   project/<g>.json       group g's scatter-plot sample
 *   classify/<g>.json      group g's classification counts and gallery candidates
 */
import { z } from 'zod';
import { FeaturizeBatchSummarySchema } from '../contracts/events';
import { RESULT_FILES, WORK_FOLDERS, withSlash } from '../contracts/bucket-layout';
import type { RunReportPart } from '../outputs/run-report';
import type { InputAccountingReport } from '../bookkeeping';
import type { ClassificationTallyPart } from '../analysis';
import type { ScatterPoint } from '../outputs/plots';

const group = (g: number) => String(g).padStart(5, '0');

export function aggregateWorkKeys(workPrefix: string) {
  const base = `${withSlash(workPrefix)}${WORK_FOLDERS.aggregate}/`;
  const moments = (g: number) => `${base}moments/${group(g)}.bin`;
  return {
    plan: `${base}plan.json`,
    groups: `${base}groups.json`,
    group: (g: number) => `${base}groups/${group(g)}.json`,
    moments,
    momentsTally: (g: number) => `${base}moments/${group(g)}.json`,
    /** Partial `index` of level `level` of the moments merge tree: level 0 is group `index`'s moments. */
    momentsPartial: (level: number, index: number) => (level === 0 ? moments(index) : `${base}merged-moments/${level}/${group(index)}.bin`),
    fit: `${base}pca-fit.json`,
    fitModel: `${base}pca-fit-model.json`,
    queries: (g: number) => `${base}queries/${group(g)}.fsh`,
    classStatistics: (g: number) => `${base}class-statistics/${group(g)}.bin`,
    prototypeSample: (g: number) => `${base}prototype-sample/${group(g)}.fsh`,
    copySample: (g: number) => `${base}copy-sample/${group(g)}.fsh`,
    classifier: `${base}classifier.json`,
    featuresCsv: (g: number) => `${base}features/${group(g)}.csv`,
    predictionsCsv: (g: number) => `${base}predictions/${group(g)}.csv`,
    projectTally: (g: number) => `${base}project/${group(g)}.json`,
    classifyTally: (g: number) => `${base}classify/${group(g)}.json`,
  };
}

/** `<outputPrefix>features/part-00000.parquet`: the features as one Parquet dataset, a part per group. */
export function partKey(outputPrefix: string, table: 'features' | 'embeddings', g: number): string {
  return `${withSlash(outputPrefix)}${table}/part-${group(g)}.parquet`;
}

/**
 * `knn-references/part-00000.fsh`: group g's Training rows as PCA scores (the k-NN's references),
 * relative to the run's outputs, as pca-model.json names it.
 */
export function referencesPartFile(g: number): string {
  return `${RESULT_FILES.knnReferences}part-${group(g)}.fsh`;
}

/** `<outputPrefix>knn-references/part-00000.fsh`: group g's references part, written by the project stage. */
export function referencesPartKey(outputPrefix: string, g: number): string {
  return `${withSlash(outputPrefix)}${referencesPartFile(g)}`;
}

/** One batch of a group: its shard and its summary (its batch record is named by the shard's hash). */
export const GroupBatchSchema = z.object({
  shard: z.string().min(1),
  summary: FeaturizeBatchSummarySchema,
});
export type GroupBatch = z.infer<typeof GroupBatchSchema>;

export const GroupFileSchema = z.object({ group: z.number().int().nonnegative(), batches: z.array(GroupBatchSchema) });
export type GroupFile = z.infer<typeof GroupFileSchema>;

/** The plan's parts of the report and the accounting are plain JSON written by this code: checked loosely. */
const ReportPartSchema = z.custom<RunReportPart>((value) => typeof value === 'object' && value !== null && 'processed' in value);
const AccountingPartSchema = z.custom<InputAccountingReport>((value) => typeof value === 'object' && value !== null && 'listed' in value);

export const PlanSchema = z.object({
  mapRunArn: z.string().optional(),
  /** The saved model a projecting run applies (no fit). */
  pcaModel: z.string().optional(),
  /** The run that fitted that model. */
  modelRunId: z.string().optional(),
  groups: z.number().int().nonnegative(),
  /** The run's featurizer: the first readable shard's (in key order), or the saved model's. */
  featurizer: z.string(),
  dim: z.number().int().nonnegative(),
  report: ReportPartSchema,
  accounting: AccountingPartSchema,
  timingsMs: z.record(z.string(), z.number()),
});
export type Plan = z.infer<typeof PlanSchema>;

/** A shard's rows that the later stages leave out (duplicates, non-finite values, another featurizer). */
export const ExcludedRowsSchema = z.object({ shard: z.string(), rows: z.array(z.number().int().nonnegative()) });

/** Kept Training rows and their field copies, per label. */
export const TrainingClassesSchema = z.record(z.string(), z.object({ rows: z.number().int().nonnegative(), copies: z.number().int().nonnegative() }));
export type TrainingClasses = z.infer<typeof TrainingClassesSchema>;

/** The counts of `label` in `classes`, added at zero when it has none yet. */
export function countsOfClass(classes: TrainingClasses, label: string): TrainingClasses[string] {
  return (classes[label] ??= { rows: 0, copies: 0 });
}

/** `part`'s counts added into `into`. */
export function addTrainingClasses(into: TrainingClasses, part: TrainingClasses): TrainingClasses {
  for (const [label, { rows, copies }] of Object.entries(part)) {
    const counts = countsOfClass(into, label);
    counts.rows += rows;
    counts.copies += copies;
  }
  return into;
}

export const MomentsTallySchema = z.object({
  group: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative(),
  /** Training rows kept: the k-NN's references. */
  references: z.number().int().nonnegative(),
  /** The kept Training rows and their field copies, by class: what bounds the classifier's samples (prototype-sample.ts). */
  trainingClasses: TrainingClassesSchema.default({}),
  report: ReportPartSchema,
  accounting: AccountingPartSchema,
  /** Shards the group could use, with the rows to leave out of each. */
  usable: z.array(z.object({ shard: z.string(), rows: z.number().int(), excluded: z.array(z.number().int()) })),
  /** A saved-model run's fatal mismatch, found in this group. */
  featurizerMismatch: z.object({ shard: z.string(), featurizer: z.string(), dim: z.number().int() }).optional(),
  timingsMs: z.record(z.string(), z.number()),
});
export type MomentsTally = z.infer<typeof MomentsTallySchema>;

export interface GalleryCandidate {
  key: string;
  label: string;
  predicted: string;
  confidence: number;
  /** Distance to what decided it; absent for a head that decides by no reference or prototype (logistic regression). */
  distance?: number;
  /** The Training image behind it, '' when there is none. */
  nearestKey: string;
  nearestLabel: string;
}

export const ProjectTallySchema = z.object({
  group: z.number().int(),
  rows: z.number().int(),
  queries: z.number().int(),
  /** The group's references part, as pca-model.json states it; absent when the group wrote none (no Training rows, or a projecting run). */
  references: z.object({ count: z.number().int().min(1), bytes: z.number().int().min(1), sha256: z.string() }).optional(),
  sample: z.object({ points: z.array(z.custom<ScatterPoint>()), total: z.number().int() }),
  timingsMs: z.record(z.string(), z.number()),
});
export type ProjectTally = z.infer<typeof ProjectTallySchema>;

export const ClassifyTallySchema = z.object({
  group: z.number().int(),
  tally: z.custom<ClassificationTallyPart>((value) => typeof value === 'object' && value !== null && 'cells' in value),
  gallery: z.array(z.custom<GalleryCandidate>()),
  timingsMs: z.record(z.string(), z.number()),
});
export type ClassifyTally = z.infer<typeof ClassifyTallySchema>;

/**
 * The moments merge tree: how many partials each level holds. Level 0 is the groups' own; each
 * level above has one partial per `fanIn` consecutive ones of the level below (the last may take
 * fewer), until at most `fanIn` remain: those the fit merges. A run of at most `fanIn` groups has
 * level 0 only, and no merge stage runs. The state machine's `MergeMoments` loop builds the same
 * levels (`lib/constructs/moments-merge-tree.ts`).
 *
 * @example
 * momentsMergeLevels(100, 16); // [100, 7]: seven merges of 16 groups (the last of 4), then the fit merges 7
 */
export function momentsMergeLevels(groups: number, fanIn: number): number[] {
  if (!Number.isInteger(fanIn) || fanIn < 2) throw new RangeError(`the merge fan-in must be an integer of at least 2, got ${fanIn}`);
  const levels = [groups];
  while (levels[levels.length - 1] > fanIn) levels.push(Math.ceil(levels[levels.length - 1] / fanIn));
  return levels;
}
