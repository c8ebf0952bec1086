/**
 * One group's predictions (a child of the `ClassifyGroups` map): the k-NN vote of every row the
 * project stage set aside to predict, against the run's references read part by part (a fitting
 * run's Training rows, group by group in key order) or the saved model's references. Parts read
 * one after another give exactly the neighbours, and so the vote, of one set holding them all
 * (`NearestReferences`): memory is the group's queries plus one part of references.
 *
 * It writes the group's rows of predictions.csv (publish joins them), its confusion counts, and a
 * few misclassified rows with their nearest reference for report.html's gallery.
 */
import { ClassificationTally } from '../analysis/classification';
import { DEFAULT_KNN_NEIGHBOURS, KnnReferences, NearestReferences, splitOfKey } from '../analysis/knn';
import { decodeFeatureShard, FeatureShard } from '../bookkeeping/feature-shard';
import { predictionsCsvRow } from '../outputs/features-csv';
import type { RunSettings } from '../contracts/events';
import { MissingObjectError, putObject, readBytes } from '../aws/s3-client';
import { AggregateRunDeps, GALLERY_CANDIDATE_LIMIT, GALLERY_CANDIDATES_PER_PAIR, readProjectionModel, stopwatch } from './aggregate-shared';
import { aggregateWorkKeys, ClassifyTally, GalleryCandidate } from './aggregate-work';
import { readFitRecord } from './fit-stage';

/** References as the classify stage reads them: one part at a time, each with its keys. */
async function* referenceParts(deps: AggregateRunDeps, run: RunSettings, record: { pcaModelKey?: string; groups: number }) {
  if (record.pcaModelKey) {
    const saved = await readProjectionModel(deps.s3, run.bucket, record.pcaModelKey, run.outputPrefix);
    if (saved.references) yield saved.references;
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
    const { header, vectors } = part;
    const references = new KnnReferences(header.dim, header.keys.length, 'float32');
    header.labels.forEach((label, row) => references.add(label, vectors, row * header.dim));
    yield { references, keys: header.keys };
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
  const nearest = header.keys.map(() => new NearestReferences(neighbours));
  const nearestKeys = header.keys.map(() => '');
  let referenceClasses: Set<string> | undefined;
  let offered = 0;
  for await (const part of referenceParts(deps, run, record)) {
    if (record.pcaModelKey) referenceClasses = new Set(part.references.labelTable);
    for (let q = 0; q < header.keys.length; q++) {
      const before = nearest[q].size > 0 ? nearest[q].indices[0] : -1;
      part.references.offerNearest(vectors, nearest[q], { offset: q * k, firstIndex: offered });
      const now = nearest[q].indices[0];
      if (now !== before && now >= offered) nearestKeys[q] = part.keys[now - offered];
    }
    offered += part.references.size;
  }

  const tally = new ClassificationTally(neighbours, model.k, record.references, referenceClasses);
  const gallery: GalleryCandidate[] = [];
  const perPair = new Map<string, number>();
  const lines: string[] = [];
  header.keys.forEach((key, q) => {
    const label = header.labels[q];
    const split = splitOfKey(key);
    const prediction = nearest[q].vote()!;
    lines.push(predictionsCsvRow(key, label, split, prediction.label, prediction.distance));
    tally.add(label, split, prediction.label);
    if (tally.scores(label, split) && prediction.label !== label && gallery.length < GALLERY_CANDIDATE_LIMIT) {
      const pair = `${label}\u0000${prediction.label}`;
      const count = perPair.get(pair) ?? 0;
      if (count < GALLERY_CANDIDATES_PER_PAIR) {
        perPair.set(pair, count + 1);
        gallery.push({
          key,
          label,
          predicted: prediction.label,
          distance: prediction.distance,
          nearestKey: nearestKeys[q],
          nearestLabel: nearest[q].labels[0],
        });
      }
    }
  });
  await putObject(s3, run.bucket, work.predictionsCsv(group), lines.join(''), 'text/csv; charset=utf-8');
  const classifyTally: ClassifyTally = { group, tally: tally.part(), gallery, timingsMs: { classify: clock.total() } };
  await putObject(s3, run.bucket, work.classifyTally(group), JSON.stringify(classifyTally), 'application/json');
  log?.info('group classified', { group, predicted: header.keys.length, references: offered, ms: classifyTally.timingsMs.classify });
  return { group, predicted: header.keys.length };
}
