/**
 * One group's predictions (a child of the `ClassifyGroups` map): the k-NN vote of every row the
 * project stage set aside to predict, against the run's references read part by part (a fitting
 * run's Training rows, group by group in key order) or the saved model's references. Each part's
 * distances are one matrix product and a TopK on onnxruntime, re-ranked exactly in float64, and the
 * lists merged: exactly the neighbours, and so the vote, of one pass over them all (knn.ts's rule).
 * Memory is the group's queries, one part of references, and the references' keys and labels.
 *
 * It writes the group's rows of predictions.csv (publish joins them), its confusion counts, and a
 * few misclassified rows with their nearest reference for report.html's gallery.
 */
import { ClassificationTally } from '../analysis/classification';
import { DEFAULT_KNN_NEIGHBOURS, splitOfKey } from '../analysis/knn';
import { mergeNeighbourLists, NativeNeighbourSearch, NeighbourLists, voteNeighbours } from '../analysis/native-kernels';
import { decodeFeatureShard, FeatureShard } from '../bookkeeping/feature-shard';
import { predictionsCsvRow } from '../outputs/features-csv';
import type { RunSettings } from '../contracts/events';
import { MissingObjectError, putObject, readBytes } from '../aws/s3-client';
import { AggregateRunDeps, GALLERY_CANDIDATE_LIMIT, GALLERY_CANDIDATES_PER_PAIR, readProjectionModel, stopwatch } from './aggregate-shared';
import { aggregateWorkKeys, ClassifyTally, GalleryCandidate } from './aggregate-work';
import { readFitRecord } from './fit-stage';

/** References as the classify stage reads them: one part at a time, each with its keys and labels. */
async function* referenceParts(deps: AggregateRunDeps, run: RunSettings, record: { pcaModelKey?: string; groups: number }) {
  if (record.pcaModelKey) {
    const saved = await readProjectionModel(deps.s3, run.bucket, record.pcaModelKey, run.outputPrefix);
    if (!saved.references) return;
    const { references, keys } = saved.references;
    const labels: string[] = [];
    const vectors = new Float32Array(references.size * references.dims);
    for (let r = 0; r < references.size; r++) {
      const reference = references.reference(r);
      labels.push(reference.label);
      vectors.set(reference.vector, r * references.dims);
    }
    yield { keys, labels, vectors, dims: references.dims };
    return;
  }
  const work = aggregateWorkKeys(run.workPrefix);
  for (let g = 0; g < record.groups; g++) {
    let part: FeatureShard;
    try {
      part = decodeFeatureShard(await readBytes(deps.s3, run.bucket, work.references(g)));
    } catch (error) {
      // A group without Training rows wrote no references part.
      if (error instanceof MissingObjectError) continue;
      throw error;
    }
    yield { keys: part.header.keys, labels: part.header.labels, vectors: part.vectors, dims: part.header.dim };
  }
}

export async function classifyGroup(run: RunSettings, group: number, deps: AggregateRunDeps): Promise<{ group: number; predicted: number }> {
  const { s3, settings, log } = deps;
  const clock = stopwatch();
  const work = aggregateWorkKeys(run.workPrefix);
  const { record, model } = await readFitRecord(deps, run);
  const { header, vectors } = decodeFeatureShard(await readBytes(s3, run.bucket, work.queries(group)));
  const k = header.dim;
  const neighbours = settings.knnNeighbours ?? DEFAULT_KNN_NEIGHBOURS;
  const queries = { data: vectors, rows: header.keys.length, dims: k };
  // Each part's neighbours by one product and TopK on the native kernel, then merged: the same
  // neighbours, in the same order, as one pass over every reference (NearestReferences' rule).
  let nearest: NeighbourLists | undefined;
  const referenceKeys: string[] = [];
  const labelIds = new Map<string, number>();
  const labelTable: string[] = [];
  const referenceLabels: number[] = [];
  for await (const part of referenceParts(deps, run, record)) {
    const rows = part.keys.length;
    if (rows === 0) continue;
    const search = new NativeNeighbourSearch({ data: part.vectors, rows, dims: part.dims }, { offset: referenceKeys.length });
    const found = await search.search(queries, neighbours);
    nearest = nearest ? mergeNeighbourLists([nearest, found]) : found;
    referenceKeys.push(...part.keys);
    for (const label of part.labels) {
      let id = labelIds.get(label);
      if (id === undefined) labelIds.set(label, (id = labelTable.push(label) - 1));
      referenceLabels.push(id);
    }
  }
  if (!nearest) throw new Error(`the run has no references to classify group ${group} against`);
  const predictions = voteNeighbours(nearest, Int32Array.from(referenceLabels), labelTable);
  const referenceClasses = record.pcaModelKey ? new Set(labelTable) : undefined;

  const tally = new ClassificationTally(neighbours, model.k, record.references, referenceClasses);
  const gallery: GalleryCandidate[] = [];
  const perPair = new Map<string, number>();
  const lines: string[] = [];
  header.keys.forEach((key, q) => {
    const label = header.labels[q];
    const split = splitOfKey(key);
    const prediction = predictions[q];
    lines.push(predictionsCsvRow(key, label, split, prediction.label, prediction.distance));
    tally.add(label, split, prediction.label);
    if (tally.scores(label, split) && prediction.label !== label && gallery.length < GALLERY_CANDIDATE_LIMIT) {
      const pair = `${label}\u0000${prediction.label}`;
      const count = perPair.get(pair) ?? 0;
      if (count < GALLERY_CANDIDATES_PER_PAIR) {
        perPair.set(pair, count + 1);
        const nearestReference = prediction.nearest;
        gallery.push({
          key,
          label,
          predicted: prediction.label,
          distance: prediction.distance,
          nearestKey: referenceKeys[nearestReference],
          nearestLabel: labelTable[referenceLabels[nearestReference]],
        });
      }
    }
  });
  await putObject(s3, run.bucket, work.predictionsCsv(group), lines.join(''), 'text/csv; charset=utf-8');
  const classifyTally: ClassifyTally = { group, tally: tally.part(), gallery, timingsMs: { classify: clock.total() } };
  await putObject(s3, run.bucket, work.classifyTally(group), JSON.stringify(classifyTally), 'application/json');
  log?.info('group classified', { group, predicted: header.keys.length, references: referenceKeys.length, ms: classifyTally.timingsMs.classify });
  return { group, predicted: header.keys.length };
}
