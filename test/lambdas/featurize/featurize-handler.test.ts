import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { FeaturizeBatchEvent, MalformedEventError, RunSettings, SUMMARY_LIST_LIMIT, TransientStorageError } from '../../../lambdas/contracts/events';
import { decodeFeatureShard } from '../../../lambdas/bookkeeping/feature-shard';
import { batchRecordKeyOfShard } from '../../../lambdas/contracts/bucket-layout';
import { createFeaturizer, Featurizer } from '../../../lambdas/model/featurizer';
import { createS3Client } from '../../../lambdas/aws/s3-client';
import { batchHash, featurizeBatch, FeaturizeBatchSettings, readFeaturizeEnv } from '../../../lambdas/featurize/handler';
import { fieldCopyOf } from '../../../lambdas/featurize/field-copies';
import { alterImage } from '../../../lambdas/featurize/field-conditions';
import { preprocessImage } from '../../../lambdas/images/preprocess';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';
import { SLOW_DOWN, startFailingS3Server } from '../../support/failing-s3-server';

const BUCKET = 'fruits-test';
const settings: FeaturizeBatchSettings = { maxInputPixels: 10_000_000, maxInputBytes: 1024 * 1024, readConcurrency: 4, chunkSize: 3 };
const run: RunSettings = { bucket: BUCKET, inputPrefix: 'input/d/', runId: 'run-1', outputPrefix: 'results/run-1/', workPrefix: 'work/run-1/' };

const jpeg = (r: number, g: number, b: number) =>
  sharp({ create: { width: 30, height: 30, channels: 3, background: { r, g, b } } })
    .jpeg()
    .toBuffer();

describe('featurizeBatch against a local S3 server', () => {
  let s3: LocalS3Server;
  let featurizer: Featurizer;
  const objects: Record<string, Buffer> = {};

  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET] });
    featurizer = await createFeaturizer({ kind: 'pixels', modelId: 'pixels' });
    const noisy = await sharp({ create: { width: 200, height: 200, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 120, sigma: 40 } } })
      .jpeg()
      .toBuffer();
    Object.assign(objects, {
      // Odd but valid keys: spaces, unicode, '+', '%' (they must come back exactly).
      'input/d/Training/Apple Red 1/r_1 100.jpg': await jpeg(200, 20, 20),
      'input/d/Training/Pomme rôtie/été+1%20.png': await sharp(await jpeg(20, 200, 20))
        .png()
        .toBuffer(),
      'input/d/Training/C++ 100%/a+b%2Fc.webp': await sharp(await jpeg(20, 20, 200))
        .webp()
        .toBuffer(),
      'input/d/Test/Kiwi/深い 1.jpg': await jpeg(90, 120, 40),
      // Bad images.
      'input/d/Test/Kiwi/empty.jpg': Buffer.alloc(0),
      'input/d/Test/Kiwi/page.jpg': Buffer.from('<!doctype html><html><body>Not found</body></html>'),
      'input/d/Test/Kiwi/truncated.jpg': noisy.subarray(0, noisy.length >> 1),
      'input/d/Test/Kiwi/vector.png': Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
      'input/d/Test/Kiwi/huge.jpg': Buffer.concat([noisy, Buffer.alloc(settings.maxInputBytes)]),
      // Not images of a label folder.
      'input/d/_START': Buffer.alloc(0),
      'input/d/Test/Kiwi/notes.txt': Buffer.from('hello'),
      'input/d/loose.jpg': await jpeg(1, 2, 3),
      'input/other/Kiwi/1.jpg': await jpeg(1, 2, 3),
    });
    for (const [key, body] of Object.entries(objects)) await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  });
  afterAll(async () => s3?.close());

  /** Items exactly as the ItemReader lists them, plus one object deleted after listing. */
  async function listedItems(): Promise<FeaturizeBatchEvent['Items']> {
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'input/' }));
    const items = (listed.Contents ?? []).map((o) => ({ Key: o.Key!, Size: o.Size, ETag: o.ETag, LastModified: o.LastModified?.toISOString() }));
    return [...items, { Key: 'input/d/Test/Kiwi/deleted.jpg', Size: 900, ETag: '"gone"' }];
  }

  async function readShard(key: string) {
    const object = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return decodeFeatureShard(await object.Body!.transformToByteArray());
  }

  it('featurizes the good images, reports every bad one with its reason, writes one shard', async () => {
    const Items = await listedItems();
    expect(Items).toHaveLength(Object.keys(objects).length + 1);
    const summary = await featurizeBatch({ Items, BatchInput: run }, { s3: s3.client, featurizer, settings });

    expect(summary.shard).toMatch(/^work\/run-1\/shards\/[0-9a-f]{32}\.fsh$/);
    expect(summary.count).toBe(4);
    const reasons = Object.fromEntries(summary.failed.map((f) => [f.key.split('/').pop(), f.reason]));
    expect(reasons).toEqual({
      'empty.jpg': 'empty object (0 bytes)',
      'page.jpg': expect.stringMatching(/not an image: .*HTML/),
      'truncated.jpg': expect.stringMatching(/cannot decode jpeg/),
      'vector.png': expect.stringMatching(/SVG images are not allowed/),
      'huge.jpg': expect.stringMatching(/above the limit of 1048576 bytes/),
      'deleted.jpg': expect.stringMatching(/NoSuchKey/),
    });
    const skipped = Object.fromEntries(summary.skipped.map((s) => [s.key, s.reason]));
    expect(skipped).toEqual({
      'input/d/_START': 'run start marker',
      'input/d/Test/Kiwi/notes.txt': 'not an image extension (.txt)',
      'input/d/loose.jpg': 'image is not inside a label folder',
      'input/other/Kiwi/1.jpg': 'key is outside the input prefix input/d/',
    });
    expect(summary).toMatchObject({ failedCount: 6, skippedCount: 4, truncated: false });

    const shard = await readShard(summary.shard!);
    expect(shard.header.keys.sort()).toEqual([
      'input/d/Test/Kiwi/深い 1.jpg',
      'input/d/Training/Apple Red 1/r_1 100.jpg',
      'input/d/Training/C++ 100%/a+b%2Fc.webp',
      'input/d/Training/Pomme rôtie/été+1%20.png',
    ]);
    const labelOf = Object.fromEntries(shard.header.keys.map((k, i) => [k, shard.header.labels[i]]));
    expect(labelOf['input/d/Training/C++ 100%/a+b%2Fc.webp']).toBe('C++ 100%');
    expect(labelOf['input/d/Training/Pomme rôtie/été+1%20.png']).toBe('Pomme rôtie');
    expect(shard.header).toMatchObject({ featurizer: 'pixels-16x16', dim: 768 });
    expect(shard.header.failed).toHaveLength(6);
    expect(shard.header.meta).toMatchObject({ featurizerKind: 'pixels', backend: 'none', imageSize: 16, modelId: null, warnings: [], items: Items.length });
    expect(shard.header.meta?.timingsMs).toEqual({
      readWait: expect.any(Number),
      decode: expect.any(Number),
      infer: expect.any(Number),
      total: expect.any(Number),
    });
    // The red apple is red: the vector is the image's pixels, in key order.
    const apple = shard.header.keys.indexOf('input/d/Training/Apple Red 1/r_1 100.jpg');
    const centre = (8 * 16 + 8) * 3;
    const rgb = Array.from(shard.vectors.subarray(apple * 768 + centre, apple * 768 + centre + 3));
    expect(rgb[0]).toBeGreaterThan(0.7);
    expect(rgb[1]).toBeLessThan(0.2);

    // The batch record beside the shard: every key the batch was handed, in the order handed.
    const recordKey = batchRecordKeyOfShard(run.workPrefix, summary.shard!);
    expect(recordKey).toBe(summary.shard!.replace('/shards/', '/batches/').replace(/\.fsh$/, '.json'));
    const record = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: recordKey }));
    expect(JSON.parse(await record.Body!.transformToString())).toEqual({ items: Items.map((item) => item.Key) });
  });

  it('featurizes an altered copy of the chosen Training images after the images: in the shard, never counted', async () => {
    const Items = await listedItems();
    const plain = await featurizeBatch({ Items, BatchInput: run }, { s3: s3.client, featurizer, settings });
    const summary = await featurizeBatch({ Items, BatchInput: run }, { s3: s3.client, featurizer, settings: { ...settings, fieldCopyEvery: 1 } });
    // The same images, the same accounting: a copy is no input. (The reasons' wording is sharp's,
    // whose error text can differ between concurrent calls.)
    const accounted = (s: typeof plain) => ({ ...s, failed: s.failed.map((f) => f.key).sort() });
    expect(accounted(summary)).toEqual(accounted(plain));
    const shard = await readShard(summary.shard!);
    const training = shard.header.keys.filter((key) => key.includes('/Training/'));
    expect(training).toHaveLength(3);
    const copies = shard.header.fieldCopies!;
    expect([...copies.keys].sort()).toEqual([...training].sort());
    copies.keys.forEach((key, c) => {
      expect(copies.labels[c]).toBe(shard.header.labels[shard.header.keys.indexOf(key)]);
      expect(copies.conditions[c]).toBe(fieldCopyOf(key, 1)!.condition);
    });
    expect(shard.vectors).toHaveLength((4 + 3) * 768);
    // The images' rows are those of a batch without copies; each copy differs from its image.
    const without = await readShard(plain.shard!);
    const rowOf = (vectors: Float32Array, row: number) => Array.from(vectors.subarray(row * 768, (row + 1) * 768));
    for (const [row, key] of shard.header.keys.entries()) expect(rowOf(shard.vectors, row)).toEqual(rowOf(without.vectors, without.header.keys.indexOf(key)));
    // Each copy's row is the featurizer's vector of its image altered under its condition.
    for (const [c, key] of copies.keys.entries()) {
      const { condition, seed } = fieldCopyOf(key, 1)!;
      const altered = await preprocessImage(await alterImage(objects[key], condition, seed), { size: featurizer.imageSize, ...settings });
      if (!altered.ok) throw new Error(altered.reason);
      expect(rowOf(shard.vectors, 4 + c)).toEqual(Array.from(await featurizer.featurize([altered.rgb])));
    }
  });

  it('a retried batch (any item order) overwrites the same shard', async () => {
    const Items = await listedItems();
    const first = await featurizeBatch({ Items, BatchInput: run }, { s3: s3.client, featurizer, settings });
    const retry = await featurizeBatch({ Items: [...Items].reverse(), BatchInput: run }, { s3: s3.client, featurizer, settings });
    expect(retry.shard).toBe(first.shard);
    const shards = await s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'work/run-1/shards/' }));
    expect(shards.KeyCount).toBe(1);
    // A changed object (new ETag) is new content: another shard.
    expect(batchHash([{ Key: 'a', ETag: '"1"' }])).not.toBe(batchHash([{ Key: 'a', ETag: '"2"' }]));
  });

  it('keeps the summary far under 256 KiB for 1,000 failures with long keys; the shard has them all', async () => {
    const long = 'x'.repeat(900);
    const Items = Array.from({ length: 1000 }, (_, i) => {
      if (i % 3 === 0) return { Key: `input/d/Kiwi/${long}-${i}.txt`, Size: 10 };
      if (i % 3 === 1) return { Key: `input/d/Kiwi/${long}-${i}.jpg`, Size: 0 };
      return { Key: `input/d/Kiwi/${long}-${i}.jpg`, Size: 2000, ETag: '"missing"' };
    });
    const summary = await featurizeBatch(
      { Items, BatchInput: { ...run, workPrefix: 'work/run-2/' } },
      { s3: s3.client, featurizer, settings: { ...settings, readConcurrency: 16 } },
    );
    const bytes = Buffer.byteLength(JSON.stringify(summary));
    expect(bytes).toBeLessThan(128 * 1024);
    expect(summary).toMatchObject({ count: 0, failedCount: 666, skippedCount: 334, truncated: true });
    expect(summary.failed.length).toBeLessThanOrEqual(SUMMARY_LIST_LIMIT);
    const shard = await readShard(summary.shard!);
    expect([shard.header.failed.length, shard.header.skipped.length, shard.header.keys.length]).toEqual([666, 334, 0]);
  });

  it('rejects a malformed event as MalformedEventError', async () => {
    const deps = { s3: s3.client, featurizer, settings };
    await expect(featurizeBatch({ Items: [], BatchInput: run }, deps)).rejects.toThrow(MalformedEventError);
    await expect(featurizeBatch({ Items: [{ Key: 'input/d/a/b.jpg' }] }, deps)).rejects.toThrow(/BatchInput/);
  });

  it('throws TransientStorageError when storage is unreachable, not a per-image failure', async () => {
    const down = createS3Client({ S3_ENDPOINT: 'http://127.0.0.1:9' }, { maxAttempts: 1 });
    try {
      await expect(featurizeBatch({ Items: [{ Key: 'input/d/Kiwi/1.jpg', Size: 100 }], BatchInput: run }, { s3: down, featurizer, settings })).rejects.toThrow(
        TransientStorageError,
      );
    } finally {
      down.destroy();
    }
  });
});

/**
 * An HTTP server answering as S3 does when it fails: `answer` decides each request's status and
 * XML error (the SDK's PUT and our GETs both reach it). Counts the requests by method.
 */
describe('featurizeBatch storage error classes (S3 failures answered by a local server)', () => {
  const event = { Items: [{ Key: 'input/d/Kiwi/1.jpg', Size: 100 }], BatchInput: run };
  const pixels = () => createFeaturizer({ kind: 'pixels', modelId: 'p' });

  it('throttling and 5xx after the retries: TransientStorageError', async () => {
    for (const [status, code] of [
      [503, 'SlowDown'],
      [500, 'InternalError'],
    ] as const) {
      const storage = await startFailingS3Server((method) => (method === 'GET' ? { status, code } : { status: 200 }));
      try {
        await expect(featurizeBatch(event, { s3: storage.client({ maxAttempts: 2 }), featurizer: await pixels(), settings })).rejects.toThrow(
          TransientStorageError,
        );
        expect(storage.calls.GET).toBe(2); // maxAttempts
      } finally {
        await storage.close();
      }
    }
  });

  it('a transient error in a prefetched chunk surfaces as TransientStorageError, and no shard is written', async () => {
    const body = await jpeg(10, 200, 10);
    const storage = await startFailingS3Server((method, key) =>
      method !== 'GET' ? { status: 200 } : key.endsWith('5.jpg') ? SLOW_DOWN : { status: 200, body },
    );
    try {
      const Items = [1, 2, 3, 4, 5].map((i) => ({ Key: `input/d/Kiwi/${i}.jpg`, Size: body.length }));
      await expect(
        featurizeBatch({ Items, BatchInput: run }, { s3: storage.client({ maxAttempts: 2 }), featurizer: await pixels(), settings }),
      ).rejects.toThrow(/SlowDown/);
      expect(storage.calls.PUT ?? 0).toBe(0);
    } finally {
      await storage.close();
    }
  });

  it('a permanent problem with one object: a per-image failure', async () => {
    // A 403 on a read is also how S3 answers a missing key to a role without s3:ListBucket.
    const denying = await startLocalS3Server({ buckets: [BUCKET], missingObjectAnswer: 'AccessDenied' });
    try {
      const summary = await featurizeBatch(event, { s3: denying.client, featurizer: await pixels(), settings });
      expect(summary.failed).toEqual([
        { key: 'input/d/Kiwi/1.jpg', reason: 'object missing or not readable (403 AccessDenied: deleted after listing, or no read permission)' },
      ]);
    } finally {
      await denying.close();
    }
  });
});

describe('handler (Lambda entry point)', () => {
  it('reads env at init and runs a batch against the configured S3 endpoint', async () => {
    const s3 = await startLocalS3Server({ buckets: [BUCKET] });
    const saved = { ...process.env };
    try {
      await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'input/d/Kiwi/a.jpg', Body: await jpeg(90, 120, 40) }));
      Object.assign(process.env, s3.env, { FEATURIZER: 'pixels', POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' });
      let entry: typeof import('../../../lambdas/featurize/handler') | undefined;
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- jest.isolateModules needs a synchronous load: the handler reads its env at import
        entry = require('../../../lambdas/featurize/handler');
      });
      const summary = await entry!.handler({ Items: [{ Key: 'input/d/Kiwi/a.jpg', Size: 1, ETag: '"x"' }], BatchInput: run });
      expect(summary).toMatchObject({ count: 1, failedCount: 0, skippedCount: 0, shard: expect.stringMatching(/^work\/run-1\/shards\//) });
    } finally {
      process.env = saved;
      await s3.close();
    }
  });
});

describe('readFeaturizeEnv', () => {
  it('fills defaults and fails fast on bad values', () => {
    expect(readFeaturizeEnv({})).toMatchObject({ FEATURIZER: 'cnn', MODEL_ID: 'mobilenet_v2_1.0_224_quant', READ_CONCURRENCY: 8, FIELD_COPY_EVERY: 4 });
    expect(readFeaturizeEnv({ FIELD_COPY_EVERY: '0' })).toMatchObject({ FIELD_COPY_EVERY: 0 });
    expect(() => readFeaturizeEnv({ FIELD_COPY_EVERY: '65' })).toThrow(/FIELD_COPY_EVERY/);
    expect(readFeaturizeEnv({ IMAGE_SIZE: '160', FEATURIZER: 'pixels' })).toMatchObject({ IMAGE_SIZE: 160, FEATURIZER: 'pixels' });
    expect(() => readFeaturizeEnv({ READ_CONCURRENCY: 'lots', FEATURIZER: 'resnet' })).toThrow(/READ_CONCURRENCY.*FEATURIZER|FEATURIZER.*READ_CONCURRENCY/);
  });
});
