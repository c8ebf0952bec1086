/**
 * One group's predictions (a child of the `ClassifyGroups` map), with the run's classifier
 * (`classifier.json`, classifier-stage.ts):
 * - the LDA predicts every row the project stage set aside from the model alone: its work and
 *   memory are the group's rows, whatever the number of references;
 * - k-NN votes against the run's references read part by part (a fitting run's Training rows,
 *   group by group in key order, or the saved model's parts, each checked against the SHA-256 the
 *   model states). Each part's distances are one matrix product and a TopK on onnxruntime,
 *   re-ranked exactly in float64, and the lists merged: exactly the neighbours, and so the vote, of
 *   one pass over them all (knn.ts's rule). Memory is the group's queries, one part of references,
 *   and the references' keys and labels.
 *
 * It writes the group's rows of predictions.csv with each prediction's confidence (publish joins
 * them), its confusion counts, and a few misclassified rows with the Training image that decided
 * them for report.html's gallery.
 */
import { ClassificationTally } from '../analysis/classification';
import { splitOfKey } from '../analysis/knn';
import type { ReferenceRows } from '../analysis/pca-model';
import { LdaClassifier, LdaClassifierJson } from '../analysis/lda-classifier';
import { LogisticClassifier, LogisticClassifierJson } from '../analysis/logistic-classifier';
import { CombinedClassifier, CombinedClassifierJson } from '../analysis/combined-classifier';
import { mergeNeighbourLists, NativeNeighbourSearch, NeighbourLists, voteNeighbours } from '../analysis/native-kernels';
import { decodeFeatureShard } from '../bookkeeping/feature-shard';
import { leadingColumns } from '../common/float-arrays';
import { predictionsCsvRow } from '../outputs/features-csv';
import type { RunSettings } from '../contracts/events';
import { putObject, readBytes } from '../aws/s3-client';
import {
  AggregateRunDeps,
  GALLERY_CANDIDATE_LIMIT,
  GALLERY_CANDIDATES_PER_PAIR,
  groupPartsInOrder,
  readSavedModel,
  savedReferenceParts,
  stopwatch,
} from './aggregate-shared';
import { aggregateWorkKeys, ClassifyTally, GalleryCandidate, referencesPartKey } from './aggregate-work';
import { readFitRecordOnly } from './fit-stage';
import { describeClassifier, readClassifierRecord } from './classifier-stage';

/**
 * References as the classify stage reads them, one part at a time, each with its keys and labels:
 * the saved model's parts (each checked against the model as it is read), or this run's own, the
 * parts the project stage wrote beside the model it is about to publish.
 */
async function* referenceParts(deps: AggregateRunDeps, run: RunSettings, record: { pcaModelKey?: string; groups: number }): AsyncGenerator<ReferenceRows> {
  if (record.pcaModelKey) {
    const model = await readSavedModel(deps.s3, run.bucket, record.pcaModelKey, run.outputPrefix);
    yield* savedReferenceParts(deps.s3, run.bucket, record.pcaModelKey, model);
    return;
  }
  for await (const bytes of groupPartsInOrder(deps.s3, run.bucket, record.groups, (g) => referencesPartKey(run.outputPrefix, g))) {
    // A group without Training rows wrote no references part.
    if (!bytes) continue;
    const part = decodeFeatureShard(bytes);
    yield { keys: part.header.keys, labels: part.header.labels, vectors: part.vectors };
  }
}

/** One row's prediction, whichever classifier made it. */
interface RowPrediction {
  label: string;
  confidence: number;
  /** Undefined for logistic regression: no prototype or reference decided it. */
  distance: number | undefined;
  nearestKey: string;
  nearestLabel: string;
}

export async function classifyGroup(run: RunSettings, group: number, deps: AggregateRunDeps): Promise<{ group: number; predicted: number }> {
  const { s3, log } = deps;
  const clock = stopwatch();
  const work = aggregateWorkKeys(run.workPrefix);
  // The queries part's width is the model's k: the projection itself is not needed here.
  const record = await readFitRecordOnly(deps, run);
  const classifier = await readClassifierRecord(s3, run);
  if (!classifier) throw new Error(`the run has no classifier (${work.classifier}) to classify group ${group} with`);
  const { header, vectors } = decodeFeatureShard(await readBytes(s3, run.bucket, work.queries(group)));
  const k = header.dim;
  const queries = { data: vectors, rows: header.keys.length, dims: k };
  const { predictions, referenceClasses, references } =
    classifier.classifier === 'lda'
      ? await ldaPredictions(classifier.model, queries)
      : classifier.classifier === 'logistic'
        ? await logisticPredictions(classifier.model, queries)
        : classifier.classifier === 'lda+logistic'
          ? await combinedPredictions(classifier.model, queries)
          : await knnPredictions(deps, run, record, queries, classifier.neighbours, group);
  const description = describeClassifier(classifier);

  const tally = new ClassificationTally(description, k, record.references, record.pcaModelKey ? referenceClasses : undefined);
  const gallery: GalleryCandidate[] = [];
  const perPair = new Map<string, number>();
  const lines: string[] = [];
  header.keys.forEach((key, q) => {
    const label = header.labels[q];
    const split = splitOfKey(key);
    const prediction = predictions[q];
    lines.push(predictionsCsvRow(key, label, split, prediction.label, prediction.confidence, prediction.distance));
    tally.add(label, split, prediction.label, prediction.confidence);
    if (tally.scores(label, split) && prediction.label !== label && gallery.length < GALLERY_CANDIDATE_LIMIT) {
      const pair = `${label}\u0000${prediction.label}`;
      const count = perPair.get(pair) ?? 0;
      if (count < GALLERY_CANDIDATES_PER_PAIR) {
        perPair.set(pair, count + 1);
        gallery.push({
          key,
          label,
          predicted: prediction.label,
          confidence: prediction.confidence,
          distance: prediction.distance,
          nearestKey: prediction.nearestKey,
          nearestLabel: prediction.nearestLabel,
        });
      }
    }
  });
  await putObject(s3, run.bucket, work.predictionsCsv(group), lines.join(''), 'text/csv; charset=utf-8');
  const classifyTally: ClassifyTally = { group, tally: tally.part(), gallery, timingsMs: { classify: clock.total() } };
  await putObject(s3, run.bucket, work.classifyTally(group), JSON.stringify(classifyTally), 'application/json');
  log?.info('group classified', {
    group,
    classifier: classifier.classifier,
    predicted: header.keys.length,
    references,
    ms: classifyTally.timingsMs.classify,
  });
  return { group, predicted: header.keys.length };
}

/**
 * The LDA's predictions: a product with the discriminant and one with the prototypes per row, no
 * references read. A misclassified row is shown beside the Training image nearest the prototype
 * that won.
 */
async function ldaPredictions(json: LdaClassifierJson, queries: { data: Float32Array; rows: number; dims: number }) {
  const predictions = prototypePredictions(await LdaClassifier.of(json).predictBlock(queries), json.prototypeKeys);
  return { predictions, referenceClasses: new Set(json.labels), references: json.count };
}

/** Predictions decided by an LDA prototype, each shown beside the Training image nearest that prototype (`prototypeKeys`). */
function prototypePredictions(
  predictions: readonly { label: string; confidence: number; distance: number; prototype: number }[],
  prototypeKeys: readonly string[] | undefined,
): RowPrediction[] {
  return predictions.map((p) => ({
    label: p.label,
    confidence: p.confidence,
    distance: p.distance,
    nearestKey: prototypeKeys?.[p.prototype] ?? '',
    nearestLabel: p.label,
  }));
}

/**
 * Logistic regression's predictions: one product and a softmax per row, no references read. It
 * has no prototype: no distance (an empty cell) and no Training image to show beside a miss.
 */
async function logisticPredictions(json: LogisticClassifierJson, queries: { data: Float32Array; rows: number; dims: number }) {
  const predictions: RowPrediction[] = (await new LogisticClassifier(json).predictBlock(queries)).map((p) => ({
    label: p.label,
    confidence: p.confidence,
    distance: undefined,
    nearestKey: '',
    nearestLabel: p.label,
  }));
  return { predictions, referenceClasses: new Set(json.labels), references: json.count };
}

/** The LDA and logistic regression together: a miss is shown beside the Training image nearest the LDA prototype of the class that won. */
async function combinedPredictions(json: CombinedClassifierJson, queries: { data: Float32Array; rows: number; dims: number }) {
  const predictions = prototypePredictions(await CombinedClassifier.of(json).predictBlock(queries), json.lda.prototypeKeys);
  return { predictions, referenceClasses: new Set(json.lda.labels), references: json.lda.count };
}

/**
 * The k-NN vote against every references part. Each part's neighbours come from one product and
 * TopK on the native kernel, then merged: the same neighbours, in the same order, as one pass over
 * every reference (NearestReferences' rule).
 */
async function knnPredictions(
  deps: AggregateRunDeps,
  run: RunSettings,
  record: { pcaModelKey?: string; groups: number },
  queries: { data: Float32Array; rows: number; dims: number },
  neighbours: number,
  group: number,
) {
  let nearest: NeighbourLists | undefined;
  const referenceKeys: string[] = [];
  const labelIds = new Map<string, number>();
  const labelTable: string[] = [];
  const referenceLabels: number[] = [];
  let searched: { data: Float32Array; rows: number; dims: number } | undefined;
  for await (const part of referenceParts(deps, run, record)) {
    const rows = part.keys.length;
    if (rows === 0) continue;
    const dims = part.vectors.length / rows;
    // The references hold the kept k scores; the queries may carry a fitted head's further ones too.
    if (searched?.dims !== dims) searched = { data: leadingColumns(queries.data, queries.rows, queries.dims, dims), rows: queries.rows, dims };
    const search = new NativeNeighbourSearch({ data: part.vectors, rows, dims }, { offset: referenceKeys.length });
    const found = await search.search(searched, neighbours);
    nearest = nearest ? mergeNeighbourLists([nearest, found]) : found;
    referenceKeys.push(...part.keys);
    for (const label of part.labels) {
      let id = labelIds.get(label);
      if (id === undefined) labelIds.set(label, (id = labelTable.push(label) - 1));
      referenceLabels.push(id);
    }
  }
  if (!nearest) throw new Error(`the run has no references to classify group ${group} against`);
  const predictions: RowPrediction[] = voteNeighbours(nearest, Int32Array.from(referenceLabels), labelTable).map((p) => ({
    label: p.label,
    confidence: p.share,
    distance: p.distance,
    nearestKey: referenceKeys[p.nearest],
    nearestLabel: labelTable[referenceLabels[p.nearest]],
  }));
  return { predictions, referenceClasses: new Set(labelTable), references: referenceKeys.length };
}
