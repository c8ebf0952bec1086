/**
 * A full disk under the local store and under --out: what the S3 client is told, what is left on
 * disk, the run's final message, and the same run succeeding once space is free again. The disk
 * fills by a fault injected at the store's one body write (fs.createWriteStream into its tmp/).
 */
import fs, { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { downloadRunOutputs } from '../../../../client/run-outputs';
import { formatRunSummary } from '../../../../cli/run-command';
import { writeDemoDataset } from '../../../../local/demo-dataset';
import { STORE_FOLDER } from '../../../../local/emulator/s3/object-store';
import { startLocalS3Server } from '../../../../local/emulator/s3/s3-server';
import { runLocally } from '../../../../local/local-run';

const noSpace = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });

describe('no space left on the device', () => {
  let work: string;
  /** Paths under it get a stream that fails as a full disk does, while `full` is true. */
  let fullUnder: string | undefined;
  const originalCreateWriteStream = fs.createWriteStream;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'fruits-no-space-'));
    jest.spyOn(fs, 'createWriteStream').mockImplementation(((path: fs.PathLike, options?: unknown) => {
      if (fullUnder !== undefined && String(path).startsWith(fullUnder)) {
        return new Writable({ write: (_chunk, _encoding, callback) => callback(noSpace()) });
      }
      return originalCreateWriteStream(path, options as never);
    }) as typeof fs.createWriteStream);
  });
  afterEach(() => {
    fullUnder = undefined;
  });
  afterAll(() => {
    jest.restoreAllMocks();
    rmSync(work, { recursive: true, force: true });
  });

  it('a PUT is refused with an InternalError that says what and where, leaves nothing half-written, and succeeds once space is free', async () => {
    const dataDir = join(work, 'store');
    const server = await startLocalS3Server({ directory: dataDir, buckets: ['bucket'] });
    try {
      const put = (key: string, body: string) => server.client.send(new PutObjectCommand({ Bucket: 'bucket', Key: key, Body: body }));
      await put('kept.txt', 'the first version');
      fullUnder = join(dataDir, STORE_FOLDER);
      const refusal = await put('kept.txt', 'a second version').catch((error: Error) => error);
      expect(refusal).toMatchObject({
        name: 'InternalError',
        message: expect.stringMatching(new RegExp(`^no space left in ${dataDir} \\(a write of 0\\.000 MB, [0-9.]+ MB free\\): free space, then try again$`)),
        $metadata: { httpStatusCode: 500 },
      });
      expect(server.noSpaceLeft()).toMatchObject({ directory: dataDir, bytes: 16 });
      // The object is still its whole first version; nothing was left aside.
      const read = async (key: string) => (await server.client.send(new GetObjectCommand({ Bucket: 'bucket', Key: key }))).Body!.transformToString();
      expect(await read('kept.txt')).toBe('the first version');
      expect(readdirSync(join(dataDir, STORE_FOLDER, 'bucket', 'tmp'))).toEqual([]);
      fullUnder = undefined;
      await put('kept.txt', 'a second version');
      expect(await read('kept.txt')).toBe('a second version');
    } finally {
      await server.close();
    }
  });

  it('a full --out: one line with where, how much the outputs need and what is free; the previous copy stays whole', async () => {
    const server = await startLocalS3Server({ buckets: ['bucket'] });
    const outDir = join(work, 'out');
    try {
      for (const [key, body] of [
        ['results/run-1/report.json', '{"a":1}'],
        ['results/run-1/features.csv', 'key,label\n'],
      ]) {
        await server.client.send(new PutObjectCommand({ Bucket: 'bucket', Key: key, Body: body }));
      }
      mkdirSync(join(outDir, 'run-1'), { recursive: true });
      writeFileSync(join(outDir, 'run-1', 'report.json'), 'the previous copy');
      const original = fs.writeFileSync;
      let writes = 0;
      const spy = jest.spyOn(fs, 'writeFileSync').mockImplementation((...args: Parameters<typeof fs.writeFileSync>) => {
        if (String(args[0]).startsWith(outDir) && ++writes === 2) throw noSpace();
        return original(...args);
      });
      try {
        await expect(downloadRunOutputs(server.client, 'bucket', 'run-1', outDir)).rejects.toThrow(
          new RegExp(
            `^no space left in ${outDir} \\(--out\\): the outputs of run run-1 need 0\\.0 MB, [0-9.]+ MB free; nothing was left half-copied, and they stay in s3://bucket/results/run-1/: free space and copy them again$`,
          ),
        );
      } finally {
        spy.mockRestore();
      }
      expect(readdirSync(outDir)).toEqual(['run-1']);
      expect(readFileSync(join(outDir, 'run-1', 'report.json'), 'utf8')).toBe('the previous copy');
      expect(await downloadRunOutputs(server.client, 'bucket', 'run-1', outDir)).toEqual({
        dir: join(outDir, 'run-1'),
        files: ['features.csv', 'report.json'],
      });
      expect(readFileSync(join(outDir, 'run-1', 'report.json'), 'utf8')).toBe('{"a":1}');
    } finally {
      await server.close();
    }
  });

  it('a run on a full data directory ends FAILED with "no space left in <data-dir>"; the same run succeeds once space is free', async () => {
    const dataset = join(work, 'photos');
    await writeDemoDataset(dataset, { trainingPerClass: 2, testPerClass: 1 });
    const dataDir = join(work, 'run-store');
    const run = () =>
      runLocally({
        inputDir: dataset,
        dataDir,
        outDir: join(work, 'run-out'),
        config: { featurizer: 'pixels', pcaComponents: 2, batchSize: 8 },
        workers: 1,
        retryIntervalOverrides: { FeaturizeBatch: 0, AggregateFeatures: 0 },
      });
    fullUnder = join(dataDir, STORE_FOLDER);
    const { summary: failed } = await run();
    expect(failed).toMatchObject({
      status: 'FAILED',
      error: {
        error: 'NoSpaceLeft',
        cause: expect.stringMatching(new RegExp(`^no space left in ${dataDir} \\(a write of .* MB free\\); the run ended with `)),
      },
    });
    expect(failed.notices).toContainEqual(expect.stringMatching(new RegExp(`^Run ${failed.runId}: no space left in ${dataDir} .*: free space and run again$`)));
    expect(formatRunSummary(failed)).toMatch(new RegExp(`\\n  error {7}NoSpaceLeft: no space left in ${dataDir} `));

    fullUnder = undefined;
    const { summary: again } = await run();
    expect(again).toMatchObject({ runId: failed.runId, status: 'SUCCEEDED', processed: 15, failed: 0 });
    expect(existsSync(join(work, 'run-out', again.runId, 'features.csv'))).toBe(true);
  });
});
