import { join } from 'node:path';
import { FunctionWorkerPool } from '../../../local/emulator/function-worker-pool';

const SLOW_ECHO = join(__dirname, 'fixtures', 'slow-echo-handler.ts');
type Echo = { threadId: number; env?: string };

describe('FunctionWorkerPool', () => {
  const pool = new FunctionWorkerPool({
    modulePath: SLOW_ECHO,
    size: 2,
    environment: { POOL_TEST_VALUE: 'from-env' },
  });
  afterAll(() => pool.close());

  it('runs a TypeScript handler module in worker threads with the function environment', async () => {
    const results = (await Promise.all([0, 1, 2, 3].map(() => pool.invoke({ ms: 200 })))) as Echo[];
    expect(new Set(results.map((r) => r.threadId)).size).toBe(2);
    expect(results.every((r) => r.threadId !== 0 && r.env === 'from-env')).toBe(true);
  });

  it('warms every worker ahead of the first invocation, and no more than its size', async () => {
    const warmed = new FunctionWorkerPool({ modulePath: SLOW_ECHO, size: 2 });
    try {
      await warmed.warm();
      await warmed.warm();
      const results = (await Promise.all([0, 1, 2, 3].map(() => warmed.invoke({ ms: 100 })))) as Echo[];
      expect(new Set(results.map((r) => r.threadId)).size).toBe(2);
    } finally {
      await warmed.close();
    }
  });

  it('surfaces a handler error under its own name', async () => {
    await expect(pool.invoke({ fail: 'TransientStorageError' })).rejects.toMatchObject({
      name: 'TransientStorageError',
      message: 'asked to fail: TransientStorageError',
    });
  });
});

/*
 * Semantics, not speed: every run here is far shorter, or far longer, than the limit it meets, so
 * a loaded machine (a slow worker start, a late message) cannot change the outcome. Speed is the
 * benchmarks' business (docs/BENCHMARKS.md).
 */
describe('FunctionWorkerPool time limits: from when a worker takes the invocation', () => {
  const pools: FunctionWorkerPool[] = [];
  const onePool = (timeoutSeconds?: number) => {
    const pool = new FunctionWorkerPool({ modulePath: SLOW_ECHO, size: 1, timeoutSeconds });
    pools.push(pool);
    return pool;
  };
  afterAll(() => Promise.all(pools.map((pool) => pool.close())));
  /** Longer than any test may take: a run that must be stopped, not waited for. */
  const FOREVER_MS = 10 * 60_000;

  it('does not count the wait in the queue against the Task timeout', async () => {
    const pool = onePool();
    // The worker started first: the Task timeout counts a fresh worker's start-up, which is not what this test is about.
    await pool.invoke({ ms: 0 });
    // Six 500 ms runs on one worker, each with a 2 s Task timeout: each runs a quarter of it, the
    // last waits 2.5 s in the queue, more than its whole timeout.
    const results = (await Promise.all(Array.from({ length: 6 }, () => pool.invoke({ ms: 500 }, { timeoutMs: 2000 })))) as Echo[];
    expect(results).toHaveLength(6);
    expect(new Set(results.map((result) => result.threadId)).size).toBe(1);
  });

  it('fails an invocation that runs past its Task timeout with States.Timeout and replaces the worker', async () => {
    const pool = onePool();
    const before = ((await pool.invoke({ ms: 0 })) as Echo).threadId;
    // 500 ms of timeout against a run that would spin for ten minutes.
    const overrun = pool.invoke({ ms: FOREVER_MS }, { timeoutMs: 500 });
    // No Task timeout on the one queued behind it: the replacement worker's start-up is not the subject here.
    const queued = pool.invoke({ ms: 0 });
    await expect(overrun).rejects.toMatchObject({
      name: 'States.Timeout',
      message: expect.stringMatching(/timed out after 0\.5 s of running.*not counted/),
    });
    // The busy worker was stopped, not waited for (its run would outlast the test's timeout), and a new one serves the queue.
    const after = ((await queued) as Echo).threadId;
    expect(after).not.toBe(before);
    expect(((await pool.invoke({ ms: 0 })) as Echo).threadId).toBe(after);
  });

  it("enforces the function's own timeout like Lambda (Sandbox.Timedout), also not counting queue time", async () => {
    const pool = onePool(2);
    // Five 500 ms runs on one worker: 2.5 s in all, each a quarter of the 2 s function timeout,
    // which starts when the handler is called (a fresh worker's start-up is not counted either).
    const results = (await Promise.all(Array.from({ length: 5 }, () => pool.invoke({ ms: 500 })))) as Echo[];
    const before = results[4].threadId;
    await expect(pool.invoke({ ms: FOREVER_MS })).rejects.toMatchObject({ name: 'Sandbox.Timedout', message: 'Task timed out after 2.00 seconds' });
    expect(((await pool.invoke({ ms: 0 })) as Echo).threadId).not.toBe(before);
  });
});

describe("FunctionWorkerPool memory: the function's MemorySize bounds each worker's heap", () => {
  it('fails a handler that needs more with Runtime.OutOfMemory, as Lambda does, and keeps serving', async () => {
    const pool = new FunctionWorkerPool({ modulePath: SLOW_ECHO, size: 1, memorySizeMb: 64 });
    try {
      await expect(pool.invoke({ allocateMb: 256 })).rejects.toMatchObject({ name: 'Runtime.OutOfMemory' });
      // Its environment states the memory, as Lambda's does.
      await expect(pool.invoke({ ms: 0 })).resolves.toMatchObject({ threadId: expect.any(Number), memorySize: '64' });
    } finally {
      await pool.close();
    }
  });
});
