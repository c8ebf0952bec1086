import { mapWithConcurrency, OrderedReadAhead } from '../../../lambdas/common/concurrency';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('mapWithConcurrency', () => {
  it('keeps the order of the items and never runs more than the limit', async () => {
    let running = 0;
    let most = 0;
    const results = await mapWithConcurrency([5, 1, 4, 2, 3], 2, async (n) => {
      most = Math.max(most, ++running);
      await delay(n);
      running--;
      return n * 10;
    });
    expect(results).toEqual([50, 10, 40, 20, 30]);
    expect(most).toBe(2);
  });
});

describe('OrderedReadAhead', () => {
  it('hands every result over once, in order, whatever order the calls finish in', async () => {
    const items = Array.from({ length: 40 }, (_, i) => i);
    const reads = new OrderedReadAhead(items, 4, 8, async (n) => {
      await delay((n * 7) % 5);
      return n;
    });
    const seen: number[] = [];
    while (reads.remaining > 0) seen.push(...(await reads.take(3, 5)));
    expect(seen).toEqual(items);
  });

  it('runs at most `limit` calls and starts at most `window` items beyond what was taken', async () => {
    let running = 0;
    let most = 0;
    let started = 0;
    const reads = new OrderedReadAhead(
      Array.from({ length: 30 }, (_, i) => i),
      3,
      6,
      async (n) => {
        started++;
        most = Math.max(most, ++running);
        await delay(1);
        running--;
        return n;
      },
    );
    await delay(20);
    expect(started).toBe(6);
    expect(await reads.take(6, 6)).toEqual([0, 1, 2, 3, 4, 5]);
    await delay(20);
    expect(started).toBe(12);
    expect(most).toBe(3);
  });

  it('waits for `min` ready results, but takes fewer at the end, and none when nothing remains', async () => {
    const reads = new OrderedReadAhead([1, 2, 3], 1, 10, async (n) => n);
    expect(await reads.take(2, 2)).toEqual([1, 2]);
    expect(await reads.take(2, 2)).toEqual([3]);
    expect(reads.remaining).toBe(0);
    expect(await reads.take(2, 2)).toEqual([]);
  });

  it('iterates over the results one at a time, in order, raising a failed call as take does', async () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    const seen: number[] = [];
    for await (const n of new OrderedReadAhead(items, 3, 6, async (n: number) => (await delay((n * 3) % 4), n))) seen.push(n);
    expect(seen).toEqual(items);
    const failing = new OrderedReadAhead([1, 2, 3], 2, 3, async (n) => {
      if (n === 2) throw new Error('storage trouble');
      return n;
    });
    await expect(
      (async () => {
        for await (const n of failing) expect(n).toBe(1);
      })(),
    ).rejects.toThrow('storage trouble');
  });

  it('raises a failed call on the next take, with no unhandled rejection', async () => {
    const reads = new OrderedReadAhead([1, 2, 3], 2, 3, async (n) => {
      if (n === 2) throw new Error('storage trouble');
      return n;
    });
    await expect(reads.take(3, 3)).rejects.toThrow('storage trouble');
  });
});
