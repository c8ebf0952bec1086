/** How the plan cuts a run's shards into the groups its map stages fan out over. */
import { groupsOfShards } from '../../../lambdas/aggregate/plan-stage';

const shards = (count: number) => Array.from({ length: count }, (_, i) => `shard-${String(i).padStart(4, '0')}`);

describe('groupsOfShards', () => {
  it('makes the fewest groups of at most groupShards shards, their sizes within one of each other', () => {
    const sizes = (count: number, groupShards: number) => groupsOfShards(shards(count), groupShards).map((group) => group.length);
    // The whole dataset's 285 shards: 8 groups either way, the largest of 36 instead of 40.
    expect(sizes(285, 40)).toEqual([36, 36, 36, 36, 36, 35, 35, 35]);
    expect(sizes(80, 40)).toEqual([40, 40]);
    expect(sizes(81, 40)).toEqual([27, 27, 27]);
    expect(sizes(5, 2)).toEqual([2, 2, 1]);
    expect(sizes(3, 40)).toEqual([3]);
    expect(sizes(4, 1)).toEqual([1, 1, 1, 1]);
    expect(sizes(0, 40)).toEqual([]);
  });

  it('keeps every shard once, in order', () => {
    const all = shards(1001);
    expect(groupsOfShards(all, 40).flat()).toEqual(all);
  });
});
