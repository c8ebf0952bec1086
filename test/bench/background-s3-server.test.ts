import { readdirSync } from 'node:fs';
import { getPriority } from 'node:os';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BackgroundS3Server, startBackgroundS3Server } from '../../bench/background-s3-server';

describe('the benchmarks’ background S3 server', () => {
  let server: BackgroundS3Server;
  beforeAll(async () => {
    server = await startBackgroundS3Server(['bench-bucket']);
  }, 60_000);
  afterAll(() => server?.close());

  test('serves S3 from its own process', async () => {
    await server.client.send(new PutObjectCommand({ Bucket: 'bench-bucket', Key: 'a/b.jpg', Body: 'bytes' }));
    const read = await server.client.send(new GetObjectCommand({ Bucket: 'bench-bucket', Key: 'a/b.jpg' }));
    expect(await read.Body!.transformToString()).toBe('bytes');
    expect(server.pid).not.toBe(process.pid);
  });

  (process.platform === 'linux' ? test : test.skip)('every thread of it runs at the lowest priority (nice 19)', () => {
    const threads = readdirSync(`/proc/${server.pid}/task`).map(Number);
    expect(threads.length).toBeGreaterThan(1);
    for (const thread of threads) expect(getPriority(thread)).toBe(19);
  });

  test('close ends the process', async () => {
    const { pid } = server;
    await server.close();
    expect(() => process.kill(pid, 0)).toThrow();
    server = undefined as unknown as BackgroundS3Server;
  });
});
