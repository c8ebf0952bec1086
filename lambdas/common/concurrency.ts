/**
 * Like `Promise.all(items.map(fn))`, with at most `limit` calls of `fn` running at once; results
 * keep the order of `items`. Bounds S3 reads in a batch and uploads from the CLI alike.
 */
export async function mapWithConcurrency<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, lane));
  return results;
}

/**
 * `fn` over `items` ahead of a consumer that takes the results in order, in runs: at most `limit`
 * calls at once, and at most `window` items started beyond what the consumer has taken (which
 * bounds the memory results hold). The featurize batch reads and decodes images this way while
 * the model runs on the ones before them.
 *
 * `fn` should not throw; if it does, the error is raised by the next `take`.
 */
export class OrderedReadAhead<T, R> {
  private readonly results: (R | undefined)[];
  private readonly done: boolean[];
  private started = 0;
  private taken = 0;
  private running = 0;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly items: readonly T[],
    private readonly limit: number,
    private readonly window: number,
    private readonly fn: (item: T) => Promise<R>,
  ) {
    this.results = new Array<R | undefined>(items.length);
    this.done = new Array<boolean>(items.length).fill(false);
    this.pump();
  }

  /** Items not yet taken. */
  get remaining(): number {
    return this.items.length - this.taken;
  }

  /**
   * The next results in order, as soon as at least `min` of them are ready (fewer only at the end),
   * and at most `max`: the consumer never waits for more than it needs to start.
   */
  async take(min: number, max: number): Promise<R[]> {
    for (;;) {
      if (this.failure) throw this.failure.error;
      let ready = 0;
      while (ready < max && this.taken + ready < this.items.length && this.done[this.taken + ready]) ready++;
      if (ready >= Math.min(min, this.remaining) && (ready > 0 || this.remaining === 0)) {
        const run = this.results.slice(this.taken, this.taken + ready) as R[];
        this.results.fill(undefined, this.taken, this.taken + ready);
        this.taken += ready;
        this.pump();
        return run;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** The results one at a time, in order: `take(1, 1)` until none remain. */
  async *[Symbol.asyncIterator](): AsyncGenerator<R> {
    while (this.remaining > 0) yield (await this.take(1, 1))[0];
  }

  private pump(): void {
    while (this.running < this.limit && this.started < this.items.length && this.started < this.taken + this.window) {
      const index = this.started++;
      this.running++;
      this.fn(this.items[index]).then(
        (result) => {
          this.results[index] = result;
          this.done[index] = true;
          this.settled();
        },
        (error: unknown) => {
          this.failure ??= { error };
          this.settled();
        },
      );
    }
  }

  private settled(): void {
    this.running--;
    this.pump();
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
