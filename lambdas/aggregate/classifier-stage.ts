/**
 * The run's classifier, between the project and classify stages (the `FitClassifier` state).
 *
 * - The project stage hands each group's Training rows to `ClassifierInputs`, which writes per
 *   group its share of a bounded per-class sample of the clean rows (prototype-sample.ts) and,
 *   for the LDA, their class counts, means and within-class scatter in the PCA space
 *   (class-statistics.ts, k x k: tiny) with the field copies the featurize children made of some
 *   of them as extra rows of their class, and, for logistic regression, its share of a per-class
 *   sample of those copies (`lda+logistic`: both).
 * - `fitClassifier` merges them one group at a time (Chan et al., per class), reads the clean rows'
 *   sample once for both heads, and fits the shrinkage LDA in closed form and clusters each
 *   class's sampled rows into its prototypes (lda-classifier.ts), and/or fits logistic regression
 *   on the sample's lowest-hash half and the copies' sample (logistic-classifier.ts; both as one
 *   head: combined-classifier.ts), and writes `classifier.json`, which the classify stage predicts
 *   with and the publish stage saves into pca-model.json. Its memory is one k x k scatter and the
 *   clean rows' sample (classes x PROTOTYPE_SAMPLE_PER_CLASS rows) and, for logistic regression,
 *   the copies' sample (classes x COPY_SAMPLE_PER_CLASS rows), whatever the number of images.
 * - A run that projects with a saved model fits nothing: it takes the model's classifier, or
 *   classifies with k-NN against the model's references when the setting says `knn` or the model
 *   has no classifier.
 */
import { z } from 'zod';
import { ClassStatistics, ClassStatisticsAccumulator, decodeClassStatistics, encodeClassStatistics, mergeClassStatistics } from '../analysis/class-statistics';
import {
  DEFAULT_LDA_SHRINKAGE,
  DEFAULT_PROTOTYPES,
  LdaClassifier,
  LdaClassifierJson,
  LdaClassifierSchema,
  ldaClassifierFromStatistics,
} from '../analysis/lda-classifier';
import { COMBINED_CLASSIFIER_FORMAT, combinedClassifier, CombinedClassifierSchema } from '../analysis/combined-classifier';
import { DEFAULT_KNN_NEIGHBOURS } from '../analysis/knn';
import { fitLogisticClassifier, LOGISTIC_CLASSIFIER_FORMAT, LogisticClassifier, LogisticClassifierSchema } from '../analysis/logistic-classifier';
import { referencesFeaturizerId, SavedPcaModel } from '../analysis/pca-model';
import { classifierComponentsFor, logisticWarning } from '../analysis/classifier-components';
import { NO_RANK_LIMIT, PROTOTYPE_SAMPLE_PER_CLASS, PrototypeSample, SampledRow, sampleRankLimit } from '../analysis/prototype-sample';
import { decodeFeatureShard, encodeFeatureShard, FeatureShard } from '../bookkeeping/feature-shard';
import type { NativeProjector, RowBlock } from '../analysis/native-kernels';
import { splitOfKey } from '../analysis/knn';
import type { ClassifierDescription } from '../analysis/classification';
import { ClassifierKind, DEFAULT_CLASSIFIER } from '../contracts/handler-env';
import type { RunSettings } from '../contracts/events';
import { MissingObjectError, putObject, readText } from '../aws/s3-client';
import type { S3Client } from '@aws-sdk/client-s3';
import { AggregateRunDeps, groupPartsInOrder, singleStageThreads, stopwatch } from './aggregate-shared';
import { aggregateWorkKeys, TrainingClasses } from './aggregate-work';
import { readFitModel, readFitRecordOnly } from './fit-stage';

/** What a record of a fitted head holds beside its model. */
const fittedHeadFields = {
  /** This run fitted it (false: the saved model's, not refitted). */
  fitted: z.boolean(),
  timingsMs: z.record(z.string(), z.number()),
};
/** Prototypes per class the LDA was fitted with. */
const prototypesField = z.number().int().min(1);
/** A warning for report.json (logistic regression on too few Training rows per component). */
const noteField = z.string().optional();

/** What the classify and publish stages predict with: `classifier.json`. */
export const ClassifierRecordSchema = z.discriminatedUnion('classifier', [
  z.object({ classifier: z.literal('lda'), model: LdaClassifierSchema, ...fittedHeadFields, prototypes: prototypesField }),
  z.object({ classifier: z.literal('logistic'), model: LogisticClassifierSchema, ...fittedHeadFields, note: noteField }),
  z.object({ classifier: z.literal('lda+logistic'), model: CombinedClassifierSchema, ...fittedHeadFields, prototypes: prototypesField, note: noteField }),
  z.object({
    classifier: z.literal('knn'),
    neighbours: z.number().int().min(1),
    /** Why k-NN, when the setting asked for the LDA. */
    note: z.string().optional(),
  }),
]);
export type ClassifierRecord = z.infer<typeof ClassifierRecordSchema>;

/** The head this run fitted, which pca-model.json saves as `classifier`; undefined for k-NN or a saved model's head. */
export function fittedHead(record: ClassifierRecord | undefined): NonNullable<SavedPcaModel['classifier']> | undefined {
  return record && record.classifier !== 'knn' && record.fitted ? record.model : undefined;
}

/** What report.json says of the classifier a record holds. */
export function describeClassifier(record: ClassifierRecord): ClassifierDescription {
  switch (record.classifier) {
    case 'lda':
      return { classifier: 'lda', shrinkage: record.model.shrinkage, prototypes: record.prototypes };
    case 'logistic':
      return { classifier: 'logistic', l2: record.model.l2, rounds: record.model.rounds };
    case 'lda+logistic': {
      const { ldaWeight, lda, logistic } = record.model;
      return {
        classifier: 'lda+logistic',
        ldaWeight,
        shrinkage: lda.shrinkage,
        prototypes: record.prototypes,
        l2: logistic.l2,
        rounds: logistic.rounds,
        logisticComponents: logistic.dim,
      };
    }
    case 'knn':
      return { classifier: 'knn', neighbours: record.neighbours };
  }
}

/** The run's classifier, or undefined when the fit stage found nothing to fit it on. */
export async function readClassifierRecord(s3: S3Client, run: RunSettings): Promise<ClassifierRecord | undefined> {
  try {
    return ClassifierRecordSchema.parse(JSON.parse(await readText(s3, run.bucket, aggregateWorkKeys(run.workPrefix).classifier)));
  } catch (error) {
    if (error instanceof MissingObjectError) return undefined;
    throw error;
  }
}

/**
 * Clean Training rows per class logistic regression is fitted on: the lowest-hash half of the
 * prototypes' sample. Its fit costs its rows: each evaluation of its loss is two products of every
 * sampled row, and with 128 rows and 128 copies a class at 103 classes and 300 components the fit
 * is about half of FitClassifier's 4 s on the whole dataset (docs/BENCHMARKS.md). Every accuracy
 * measured of it came from at most 60 Training images per class (docs/FEATURE-CHOICE.md).
 */
export const LOGISTIC_SAMPLE_PER_CLASS = PROTOTYPE_SAMPLE_PER_CLASS / 2;

/**
 * Field copies kept per class for logistic regression: as many as its clean rows, where the run has
 * them. What the fit gains in the field is the number of distinct altered images it sees: with a
 * copy of each of 60 references per class it scored 2.5 points more in the field on fruits-360-103
 * than with the copies of one in four, while the same few copies repeated to as many rows gained
 * nothing (docs/FEATURE-CHOICE.md, "How many copies logistic regression sees"). At the default of
 * one copy per 4 Training images a class of the whole dataset (about 516 images) has about 129.
 */
export const COPY_SAMPLE_PER_CLASS = LOGISTIC_SAMPLE_PER_CLASS;

/**
 * One group's Training rows as its head's fit needs them, accumulated in the project stage: both
 * heads a sample of the clean rows; the LDA the class statistics (the copies as rows of their
 * class), logistic regression a sample of the copies. With the run's counts by class
 * (`trainingClasses`), a group keeps of a class's rows only those below its `sampleRankLimit`:
 * at 1,000,000 images the groups' samples then hold about 2 x 256 + 64 clean rows and 2 x 128 + 64
 * copies per class in all, where they held every Training row, and FitClassifier reads that much.
 */
export class ClassifierInputs {
  private readonly sample: PrototypeSample;
  private readonly statistics?: ClassStatisticsAccumulator;
  private readonly copies?: PrototypeSample;

  constructor(
    readonly k: number,
    head: Exclude<ClassifierKind, 'knn'>,
    trainingClasses: TrainingClasses = {},
  ) {
    const limit = (perClass: number, count: 'rows' | 'copies') => (label: string) => {
      const total = trainingClasses[label]?.[count];
      return total === undefined ? NO_RANK_LIMIT : sampleRankLimit(perClass, total);
    };
    this.sample = new PrototypeSample(PROTOTYPE_SAMPLE_PER_CLASS, limit(PROTOTYPE_SAMPLE_PER_CLASS, 'rows'));
    if (head !== 'logistic') this.statistics = new ClassStatisticsAccumulator(k);
    if (head !== 'lda') this.copies = new PrototypeSample(COPY_SAMPLE_PER_CLASS, limit(COPY_SAMPLE_PER_CLASS, 'copies'));
  }

  async add(key: string, label: string, scores: ArrayLike<number>): Promise<void> {
    await this.statistics?.add(label, scores);
    this.sample.offer(key, label, scores);
  }

  /**
   * The shard's field copies (lambdas/featurize/field-copies.ts) of the Training rows this group
   * keeps (`excluded`: the rows the moments stage left out, whose copies stay out too), projected,
   * as rows of their class in the statistics or in the copies' sample: the prototypes stay the
   * clean rows' own.
   */
  async addFieldCopies(projector: NativeProjector, shard: FeatureShard, excluded: ReadonlySet<number>): Promise<number> {
    const { header, vectors } = shard;
    const copies = header.fieldCopies;
    if (!copies || copies.keys.length === 0) return 0;
    const kept = new Set(header.keys.filter((key, row) => !excluded.has(row) && splitOfKey(key) === 'train'));
    const { dim } = header;
    const scores = await projector.projectRows({ data: vectors.subarray(header.keys.length * dim), rows: copies.keys.length, dims: dim });
    let added = 0;
    for (const [c, key] of copies.keys.entries()) {
      const row = scores.subarray(c * this.k, (c + 1) * this.k);
      if (!kept.has(key) || !row.every(Number.isFinite)) continue;
      await this.statistics?.add(copies.labels[c], row);
      this.copies?.offer(key, copies.labels[c], row);
      added++;
    }
    return added;
  }

  async write(s3: S3Client, run: RunSettings, group: number, featurizer: string): Promise<void> {
    const work = aggregateWorkKeys(run.workPrefix);
    // A group without Training rows writes nothing.
    if (this.sample.rows().length === 0) return;
    if (this.statistics) {
      const stats = encodeClassStatistics(await this.statistics.statistics());
      await putObject(s3, run.bucket, work.classStatistics(group), stats, 'application/octet-stream');
    }
    const samples: [PrototypeSample, string][] = [[this.sample, work.prototypeSample(group)]];
    if (this.copies) samples.push([this.copies, work.copySample(group)]);
    for (const [sample, key] of samples) {
      const rows = sample.rows();
      if (rows.length === 0) continue;
      const vectors = new Float32Array(rows.length * this.k);
      rows.forEach((row, r) => vectors.set(row.scores, r * this.k));
      const header = {
        featurizer: referencesFeaturizerId(featurizer, this.k),
        dim: this.k,
        keys: rows.map((row) => row.key),
        labels: rows.map((row) => row.label),
        failed: [],
        skipped: [],
      };
      await putObject(s3, run.bucket, key, encodeFeatureShard({ header, vectors }), 'application/octet-stream');
    }
  }
}

/** Sampled rows as one row-major block of their first `dims` scores. */
function blockOf(rows: readonly SampledRow[], dims: number): RowBlock {
  const block = { data: new Float32Array(rows.length * dims), rows: rows.length, dims };
  rows.forEach((row, r) => block.data.set(row.scores.subarray(0, dims), r * dims));
  return block;
}

/** The groups' parts of one sample (`partKey`), merged: the rows of the whole run's sample. */
async function mergedSample(deps: AggregateRunDeps, run: RunSettings, groups: number, partKey: (group: number) => string, perClass: number) {
  const sample = new PrototypeSample(perClass);
  for await (const part of groupPartsInOrder(deps.s3, run.bucket, groups, partKey)) {
    if (!part) continue;
    const { header, vectors } = decodeFeatureShard(part);
    sample.absorb(header.keys.map((key, r) => ({ key, label: header.labels[r], scores: vectors.subarray(r * header.dim, (r + 1) * header.dim) })));
  }
  return sample;
}

export async function fitClassifier(run: RunSettings, groups: number, deps: AggregateRunDeps): Promise<{ classifier: string }> {
  const { s3, settings, log } = deps;
  const clock = stopwatch();
  const work = aggregateWorkKeys(run.workPrefix);
  const record = await readFitRecordOnly(deps, run);
  const wanted = settings.classifier ?? DEFAULT_CLASSIFIER;
  const neighbours = settings.knnNeighbours ?? DEFAULT_KNN_NEIGHBOURS;
  const knn = (note?: string): ClassifierRecord => ({ classifier: 'knn', neighbours, ...(note ? { note } : {}) });
  let chosen: ClassifierRecord | undefined;
  if (record.pcaModelKey !== undefined) {
    const model = await readFitModel(deps, run);
    const saved = model.classifier;
    if (saved && (wanted !== 'knn' || record.references === 0)) {
      chosen = savedClassifierRecord(saved);
    } else if (record.references > 0) {
      chosen = knn(wanted !== 'knn' ? `the model of run ${model.runId} holds no classifier: k-NN against its references` : undefined);
    }
  } else if (record.references > 0) {
    if (wanted === 'knn') chosen = knn();
    else {
      // The groups' parts the head is fitted from, read side by side: the clean rows' sample (both
      // heads), the class statistics (the LDA) and the copies' sample (logistic regression).
      const [clean, statistics, copies] = await Promise.all([
        mergedSample(deps, run, groups, work.prototypeSample, PROTOTYPE_SAMPLE_PER_CLASS),
        wanted === 'logistic' ? undefined : mergedStatistics(deps, run, groups),
        wanted === 'lda' ? undefined : mergedSample(deps, run, groups, work.copySample, COPY_SAMPLE_PER_CLASS),
      ]);
      const readInputs = clock.lap();
      // Over every component the rows were projected on: the kept k and the head's further ones.
      const inputs: HeadInputs = { dims: record.projectedComponents, trainingRows: record.references, clean, statistics, copies };
      const fitted = wanted === 'lda' ? await fittedLda(inputs) : wanted === 'logistic' ? await fittedLogistic(inputs) : await fittedCombined(inputs);
      chosen =
        fitted.record === undefined
          ? knn(`the Training rows hold ${fitted.classes} class: the ${wanted} head needs two`)
          : { ...fitted.record, timingsMs: { readInputs, ...fitted.record.timingsMs } };
    }
  }
  if (!chosen) return { classifier: 'none' };
  await putObject(s3, run.bucket, work.classifier, JSON.stringify(chosen), 'application/json');
  log?.info('classifier ready', {
    classifier: chosen.classifier,
    ...(chosen.classifier === 'knn' ? { note: chosen.note } : { fitted: chosen.fitted, dim: chosen.model.dim, ms: clock.total() }),
  });
  return { classifier: chosen.classifier };
}

/**
 * What a head is fitted from, over `dims` components: how many Training rows the run kept, and the
 * groups' parts merged: the clean rows' sample (read once: both heads take theirs from it), the
 * class statistics (undefined when no group wrote any, or for logistic regression alone) and the
 * copies' sample (for logistic regression).
 */
interface HeadInputs {
  readonly dims: number;
  readonly trainingRows: number;
  readonly clean: PrototypeSample;
  readonly statistics?: ClassStatistics;
  readonly copies?: PrototypeSample;
}

/** A fitted head's record, or how many classes the Training rows hold when fewer than two. */
type FittedHead = { classes: number; record?: Exclude<ClassifierRecord, { classifier: 'knn' }> };

/** The LDA fitted on the groups' class statistics and clean rows' sample, or how many classes they hold when fewer than two. */
async function fittedLda({ dims, clean, statistics: stats }: HeadInputs): Promise<FittedHead> {
  const clock = stopwatch();
  if (!stats || stats.classes.length < 2) return { classes: stats?.classes.length ?? 0 };
  const rows = clean.rows();
  const fitted = await ldaClassifierFromStatistics(stats, { shrinkage: DEFAULT_LDA_SHRINKAGE }).withPrototypesBlock(
    blockOf(rows, dims),
    rows.map((row) => row.label),
    DEFAULT_PROTOTYPES,
    rows.map((row) => row.key),
  );
  const record: ClassifierRecord = {
    classifier: 'lda',
    model: fitted.toJSON(),
    fitted: true,
    prototypes: DEFAULT_PROTOTYPES,
    timingsMs: { fitClassifier: clock.lap() },
  };
  return { classes: stats.classes.length, record };
}

/**
 * Logistic regression fitted on the groups' samples of the clean rows and of their copies, over the
 * leading components, at most one per CLASSIFIER_ROWS_PER_COMPONENT Training rows (with a warning
 * when even one is too many); or how many classes they hold when fewer than two.
 */
async function fittedLogistic({ dims, trainingRows, clean, copies }: HeadInputs): Promise<FittedHead> {
  const clock = stopwatch();
  const rows = clean.rows(LOGISTIC_SAMPLE_PER_CLASS);
  // The sample keeps rows of every class that has any.
  const classes = new Set(rows.map((row) => row.label)).size;
  if (classes < 2) return { classes };
  const all = [...rows, ...(copies?.rows() ?? [])];
  const held = classifierComponentsFor(dims, trainingRows);
  const fitted = await fitLogisticClassifier(
    blockOf(all, held),
    all.map((row) => row.label),
    { intraOpNumThreads: singleStageThreads() },
  );
  const note = logisticWarning(trainingRows, held);
  const record: ClassifierRecord = {
    classifier: 'logistic',
    model: fitted.toJSON(),
    fitted: true,
    timingsMs: { fitClassifier: clock.lap() },
    ...(note ? { note } : {}),
  };
  return { classes, record };
}

/** The groups' class statistics merged one at a time, in group order; undefined when no group wrote any. */
async function mergedStatistics(deps: AggregateRunDeps, run: RunSettings, groups: number): Promise<ClassStatistics | undefined> {
  const work = aggregateWorkKeys(run.workPrefix);
  let merged: ClassStatistics | undefined;
  let group = 0;
  for await (const bytes of groupPartsInOrder(deps.s3, run.bucket, groups, work.classStatistics)) {
    const key = work.classStatistics(group++);
    if (!bytes) continue;
    const part = decodeClassStatistics(bytes, `s3://${run.bucket}/${key}`);
    merged = merged ? mergeClassStatistics(merged, part) : part;
  }
  return merged;
}

/** The record of a saved model's classifier, taken as it is. */
function savedClassifierRecord(saved: NonNullable<SavedPcaModel['classifier']>): ClassifierRecord {
  switch (saved.format) {
    case LOGISTIC_CLASSIFIER_FORMAT:
      return { classifier: 'logistic', model: saved, fitted: false, timingsMs: {} };
    case COMBINED_CLASSIFIER_FORMAT:
      return { classifier: 'lda+logistic', model: saved, fitted: false, prototypes: prototypesPerClass(saved.lda), timingsMs: {} };
    default:
      return { classifier: 'lda', model: saved, fitted: false, prototypes: prototypesPerClass(saved), timingsMs: {} };
  }
}

/**
 * The LDA and logistic regression fitted as for each alone (their inputs are both gathered), as
 * one head; or how many classes the Training rows hold when fewer than two.
 */
async function fittedCombined(inputs: HeadInputs): Promise<FittedHead> {
  const lda = await fittedLda(inputs);
  if (lda.record?.classifier !== 'lda') return { classes: lda.classes };
  const logistic = await fittedLogistic(inputs);
  if (logistic.record?.classifier !== 'logistic') return { classes: logistic.classes };
  const model = combinedClassifier(LdaClassifier.of(lda.record.model), new LogisticClassifier(logistic.record.model)).toJSON();
  const record: ClassifierRecord = {
    classifier: 'lda+logistic',
    model,
    fitted: true,
    prototypes: lda.record.prototypes,
    timingsMs: { ...lda.record.timingsMs, ...Object.fromEntries(Object.entries(logistic.record.timingsMs).map(([name, ms]) => [`logistic.${name}`, ms])) },
    ...(logistic.record.note ? { note: logistic.record.note } : {}),
  };
  return { classes: lda.classes, record };
}

function prototypesPerClass(model: LdaClassifierJson): number {
  const counts = new Map<number, number>();
  for (const label of model.prototypeLabels) counts.set(label, (counts.get(label) ?? 0) + 1);
  return Math.max(...counts.values());
}
