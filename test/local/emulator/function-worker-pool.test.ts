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

  it('surfaces a handler error under its own name', async () => {
    await expect(pool.invoke({ fail: 'TransientStorageError' })).rejects.toMatchObject({
      name: 'TransientStorageError',
      message: 'asked to fail: TransientStorageError',
    });
  });
});

describe('FunctionWorkerPool time limits: from when a worker takes the invocation', () => {
  const pools: FunctionWorkerPool[] = [];
  const onePool = (timeoutSeconds?: number) => {
    const pool = new FunctionWorkerPool({ modulePath: SLOW_ECHO, size: 1, timeoutSeconds });
    pools.push(pool);
    return pool;
  };
  afterAll(() => Promise.all(pools.map((pool) => pool.close())));

  it('does not count the wait in the queue against the Task timeout', async () => {
    const pool = onePool();
    await pool.invoke({ ms: 0 }); // worker started: its init is not what this test is about
    const started = performance.now();
    // Five 300 ms runs on one worker: the last waits ~1.2 s, longer than its 1 s timeout.
    const results = await Promise.all(Array.from({ length: 5 }, () => pool.invoke({ ms: 300 }, { timeoutMs: 1000 })));
    expect(results).toHaveLength(5);
    expect(performance.now() - started).toBeGreaterThan(1400);
  });

  it('fails an invocation that runs past its Task timeout with States.Timeout and replaces the worker', async () => {
    const pool = onePool();
    const before = ((await pool.invoke({ ms: 0 })) as Echo).threadId;
    const started = performance.now();
    const overrun = pool.invoke({ ms: 5000 }, { timeoutMs: 500 });
    const queued = pool.invoke({ ms: 0 }, { timeoutMs: 500 });
    await expect(overrun).rejects.toMatchObject({
      name: 'States.Timeout',
      message: expect.stringMatching(/timed out after 0\.5 s of running.*not counted/),
    });
    // The busy worker was stopped, not waited for, and a new one serves the queue.
    const after = ((await queued) as Echo).threadId;
    expect(performance.now() - started).toBeLessThan(4000);
    expect(after).not.toBe(before);
    expect(((await pool.invoke({ ms: 0 })) as Echo).threadId).toBe(after);
  });

  it("enforces the function's own timeout like Lambda (Sandbox.Timedout), also not counting queue time", async () => {
    const pool = onePool(1);
    // Three 400 ms runs on one worker: 1.2 s in all, each under the 1 s function timeout.
    const results = (await Promise.all([0, 1, 2].map(() => pool.invoke({ ms: 400 })))) as Echo[];
    const before = results[2].threadId;
    await expect(pool.invoke({ ms: 5000 })).rejects.toMatchObject({ name: 'Sandbox.Timedout', message: 'Task timed out after 1.00 seconds' });
    expect(((await pool.invoke({ ms: 0 })) as Echo).threadId).not.toBe(before);
  });
});

describe("FunctionWorkerPool memory: the function's MemorySize bounds each worker's heap", () => {
  it('fails a handler that needs more with Runtime.OutOfMemory, as Lambda does, and keeps serving', async () => {
    const pool = new FunctionWorkerPool({ modulePath: SLOW_ECHO, size: 1, memorySizeMb: 64 });
    try {
      await expect(pool.invoke({ allocateMb: 256 })).rejects.toMatchObject({ name: 'Runtime.OutOfMemory' });
      await expect(pool.invoke({ ms: 0 })).resolves.toMatchObject({ threadId: expect.any(Number) });
    } finally {
      await pool.close();
    }
  });
});
