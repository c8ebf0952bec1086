import { join } from 'node:path';
import { FunctionWorkerPool } from '../../lib/local/function-worker-pool';

describe('FunctionWorkerPool', () => {
  const pool = new FunctionWorkerPool({
    modulePath: join(__dirname, 'fixtures', 'slow-echo-handler.ts'),
    size: 2,
    environment: { POOL_TEST_VALUE: 'from-env' },
  });
  afterAll(() => pool.close());

  it('runs a TypeScript handler module in worker threads with the function environment', async () => {
    const results = (await Promise.all([0, 1, 2, 3].map(() => pool.invoke({ ms: 200 })))) as { threadId: number; env: string }[];
    expect(new Set(results.map((r) => r.threadId)).size).toBe(2);
    expect(results.every((r) => r.threadId !== 0 && r.env === 'from-env')).toBe(true);
  });

  it('surfaces a handler error under its own name', async () => {
    await expect(pool.invoke({ fail: 'TransientStorageError' })).rejects.toMatchObject({ name: 'TransientStorageError', message: 'asked to fail: TransientStorageError' });
  });
});
