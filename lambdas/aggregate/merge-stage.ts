/**
 * The moments merge tree: a run of more groups than the fit merges (`fanIn`) has its groups'
 * moments merged in levels, each node one invocation (a child of the `MergeMoments` map) that
 * merges `fanIn` consecutive partials of the level below into one, until at most `fanIn` remain
 * (`momentsMergeLevels`). The fit merges those with the same reader (`mergedPartials`).
 *
 * Every merge takes its inputs in index order (Chan et al.'s pairwise formula, float64), so the
 * result is fixed by the tree's shape, a function of the group count and `fanIn`, and not by the
 * order in which the map's children finish. An invocation reads at most `fanIn` partials (7.6 MB
 * each at 1,376 features) and holds the total and the partials read ahead.
 */
import { MalformedEventError, RunSettings } from '../contracts/events';
import { MissingObjectError, putObject, readBytes, readText } from '../aws/s3-client';
import { OrderedReadAhead } from '../common/concurrency';
import type { AggregateRunDeps } from './aggregate-shared';
import { aggregateWorkKeys, momentsMergeLevels, MomentsTallySchema } from './aggregate-work';
import { mergePackedMomentsInto, packedBytes, packedCount, packedMomentsOf, PackedMoments } from '../analysis/packed-moments';

/**
 * Partials downloaded at once, ahead of the one being merged: one GET streams far below what a
 * function's network takes, so several in flight read faster
 * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance-design-patterns.html);
 * the window holds at most five partials (7.6 MB each at 1,376 features).
 */
const PARTIALS_READ_AHEAD = 4;

/** One node of the tree: partials `first` to `first + fanIn` (fewer at the end) of the `inputs` of level `level - 1`. */
export interface MomentsMergeNode {
  readonly level: number;
  readonly first: number;
  readonly inputs: number;
  readonly fanIn: number;
}

/** One node merged and written as partial `first / fanIn` of its level. */
export async function mergeMomentsNode(
  run: RunSettings,
  node: MomentsMergeNode,
  deps: AggregateRunDeps,
): Promise<{ level: number; node: number; rows: number }> {
  const { level, first, inputs, fanIn } = node;
  if (first % fanIn !== 0 || first >= inputs) {
    throw new MalformedEventError(`merge node of level ${level}: first ${first} is not a multiple of ${fanIn} below ${inputs}`);
  }
  const indices = Array.from({ length: Math.min(fanIn, inputs - first) }, (_, i) => first + i);
  const merged = await mergedPartials(run, level - 1, indices, deps);
  const index = first / fanIn;
  await putObject(deps.s3, run.bucket, aggregateWorkKeys(run.workPrefix).momentsPartial(level, index), packedBytes(merged), 'application/octet-stream');
  const rows = packedCount(merged);
  deps.log?.info('moments merged', { level, node: index, partials: indices.length, rows });
  return { level, node: index, rows };
}

/** Every node of every level, one after another: what the state machine's loop does, in this process. */
export async function mergeMomentsTree(run: RunSettings, groups: number, fanIn: number, deps: AggregateRunDeps): Promise<void> {
  const levels = momentsMergeLevels(groups, fanIn);
  for (let level = 1; level < levels.length; level++) {
    const inputs = levels[level - 1];
    for (let first = 0; first < inputs; first += fanIn) await mergeMomentsNode(run, { level, first, inputs, fanIn }, deps);
  }
}

/**
 * Partials `indices` of `level`, merged in that order; a partial of no rows (of any dimension) is
 * left out, and none at all gives the moments of no rows. A group (level 0) that kept no rows
 * wrote no partial: its tally says so, and a partial missing without that fails the merge, never
 * counts as empty.
 */
export async function mergedPartials(run: RunSettings, level: number, indices: readonly number[], deps: AggregateRunDeps): Promise<PackedMoments> {
  const work = aggregateWorkKeys(run.workPrefix);
  const read = async (index: number): Promise<PackedMoments | undefined> => {
    const key = work.momentsPartial(level, index);
    try {
      return packedMomentsOf(await readBytes(deps.s3, run.bucket, key), key);
    } catch (error) {
      if (!(error instanceof MissingObjectError) || level > 0) throw error;
      const tally = MomentsTallySchema.parse(JSON.parse(await readText(deps.s3, run.bucket, work.momentsTally(index))));
      if (tally.rows > 0) throw new Error(`moments of group ${index} (${key}) are missing, though its tally counts ${tally.rows} rows`);
      return undefined;
    }
  };
  let merged: PackedMoments | undefined;
  for await (const partial of new OrderedReadAhead(indices, PARTIALS_READ_AHEAD, PARTIALS_READ_AHEAD + 1, read)) {
    if (!partial || packedCount(partial) === 0) continue;
    // The first partial becomes the total (no copy); the others are added into it.
    merged = merged ? mergePackedMomentsInto(merged, partial) : partial;
  }
  // The moments of no rows and no features.
  return merged ?? Float64Array.of(0, 0);
}
