/**
 * The local S3 server (s3rver in front of JournaledObjectStore) against S3's documented behaviour,
 * over real HTTP on loopback. Where AWS is the reference, the test says which page.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandInput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { MissingObjectError, readBytes } from '../../../../lambdas/aws/s3-client';
import { STORE_FOLDER } from '../../../../local/emulator/s3/object-store';
import { startLocalS3Server, type LocalS3Server } from '../../../../local/emulator/s3/s3-server';
import { Utf8KeyIndex } from '../../../../local/emulator/s3/utf8-key-index';

const BUCKET = 'store-conformance';

/** UTF-8 binary order, S3's listing order: https://docs.aws.amazon.com/AmazonS3/latest/userguide/ListingKeysUsingAPIs.html */
const utf8Order = (keys: Iterable<string>) => [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

async function putAll(client: S3Client, bucket: string, keys: readonly string[], body: (key: string) => string = (key) => `body of ${key}`): Promise<void> {
  for (let i = 0; i < keys.length; i += 32) {
    await Promise.all(keys.slice(i, i + 32).map((Key) => client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: body(Key) }))));
  }
}

/** Every page of a listing, following continuation tokens. */
async function listEverything(client: S3Client, input: ListObjectsV2CommandInput) {
  const keys: string[] = [];
  const prefixes: string[] = [];
  let pages = 0;
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ ...input, ContinuationToken: token }));
    pages += 1;
    keys.push(...(page.Contents ?? []).map((object) => object.Key!));
    prefixes.push(...(page.CommonPrefixes ?? []).map((prefix) => prefix.Prefix!));
    expect(page.KeyCount).toBe((page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0));
    if (input.MaxKeys !== undefined) expect(page.KeyCount).toBeLessThanOrEqual(input.MaxKeys);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { keys, prefixes, pages };
}

async function bodyOf(client: S3Client, bucket: string, key: string): Promise<string> {
  const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return object.Body!.transformToString();
}

/** Folder names where one is a prefix of another: a space sorts before `/`. */
const FRUIT_FOLDERS = ['Peach', 'Peach 2', 'Peach Flat', 'Grape White', 'Grape White 2', 'Grape White 3'];
/** Astral characters (UTF-16 surrogates, 0xD800..) against U+E000..U+FFFD: UTF-16 and UTF-8 order disagree. */
const UNICODE_NAMES = ['\u{1F34E} apple', '\u{1F353}', '\uFFFD', '\uE000 private', 'é', 'z', 'Z', '~'];

describe('local S3 server storage (JournaledObjectStore behind s3rver)', () => {
  let s3: LocalS3Server;
  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET] });
  });
  afterAll(() => s3.close());

  it('lists in UTF-8 binary order when folder names prefix one another and with astral vs U+FFFD characters', async () => {
    const keys = [...FRUIT_FOLDERS.map((folder) => `order/${folder}/r_1.jpg`), ...UNICODE_NAMES.map((name) => `order/u/${name}`)];
    // The test means something only where JavaScript's UTF-16 order differs.
    expect([...keys].sort()).not.toEqual(utf8Order(keys));
    await putAll(s3.client, BUCKET, keys);
    const { keys: listed } = await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'order/' });
    expect(listed).toEqual(utf8Order(keys));
    expect(listed.slice(0, 6)).toEqual([
      'order/Grape White 2/r_1.jpg',
      'order/Grape White 3/r_1.jpg',
      'order/Grape White/r_1.jpg',
      'order/Peach 2/r_1.jpg',
      'order/Peach Flat/r_1.jpg',
      'order/Peach/r_1.jpg',
    ]);
  });

  describe('over 1,000 keys', () => {
    const keys = FRUIT_FOLDERS.flatMap((folder, f) => Array.from({ length: 400 + f }, (_, i) => `many/${folder}/r_${i}_100.jpg`));
    beforeAll(() => putAll(s3.client, BUCKET, keys));

    it.each([7, 1000, undefined])('pages with MaxKeys %s list every key exactly once, in order', async (MaxKeys) => {
      const { keys: listed, pages } = await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'many/', MaxKeys });
      expect(listed).toHaveLength(keys.length);
      expect(new Set(listed).size).toBe(keys.length);
      expect(listed).toEqual(utf8Order(keys));
      expect(pages).toBe(Math.ceil(keys.length / Math.min(MaxKeys ?? 1000, 1000)));
    });

    it('rolls keys up into common prefixes at the delimiter, counted towards MaxKeys, each once across pages', async () => {
      // KeyCount and MaxKeys count common prefixes: https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
      const { keys: listed, prefixes, pages } = await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'many/', Delimiter: '/', MaxKeys: 1 });
      expect(listed).toEqual([]);
      expect(prefixes).toEqual(utf8Order(FRUIT_FOLDERS.map((folder) => `many/${folder}/`)));
      expect(pages).toBe(FRUIT_FOLDERS.length);
      const inFolder = await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'many/Grape White/', Delimiter: '/', MaxKeys: 150 });
      expect(inFolder.keys).toEqual(utf8Order(keys.filter((key) => key.startsWith('many/Grape White/'))));
      expect(inFolder.prefixes).toEqual([]);
    });

    it('starts after StartAfter, in byte order, whether or not StartAfter is a key', async () => {
      for (const StartAfter of ['many/Grape White/r_7_100.jpg', 'many/Grape White', 'many/Peach 2/']) {
        const { keys: listed } = await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'many/', StartAfter, MaxKeys: 500 });
        expect(listed).toEqual(utf8Order(keys).filter((key) => Buffer.compare(Buffer.from(key), Buffer.from(StartAfter)) > 0));
      }
    });

    it('refuses a continuation token that is not one of its own', async () => {
      await expect(s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken: 'bm90IGEgdG9rZW4=' }))).rejects.toMatchObject({
        name: 'InvalidArgument',
        $metadata: { httpStatusCode: 400 },
      });
    });
  });

  it('stores and lists a key of 1,024 UTF-8 bytes and refuses 1,025 with KeyTooLongError, then goes on serving', async () => {
    // https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html: "up to 1,024 bytes long"
    const longest = `long/${'é'.repeat(509)}x`;
    expect(Buffer.byteLength(longest)).toBe(1024);
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: longest, Body: 'fits' }));
    expect(await bodyOf(s3.client, BUCKET, longest)).toBe('fits');
    expect((await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'long/' })).keys).toEqual([longest]);
    await expect(s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${longest}y`, Body: 'too long' }))).rejects.toMatchObject({
      name: 'KeyTooLongError',
      $metadata: { httpStatusCode: 400 },
    });
    expect((await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'long/' })).keys).toEqual([longest]);
  });

  it('keeps the previous version when a PUT is cut off mid-body, and leaves nothing that breaks later requests', async () => {
    const key = 'interrupted/image.jpg';
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'version 1' }));
    await putHalfThenHangUp(s3.endpoint, `/${BUCKET}/${key}`, 10_000);
    await putHalfThenHangUp(s3.endpoint, `/${BUCKET}/interrupted/never-finished.jpg`, 10_000);
    await eventually(() => expect(readdirSync(join(s3.directory, STORE_FOLDER, BUCKET, 'tmp'))).toEqual([]));
    expect(await bodyOf(s3.client, BUCKET, key)).toBe('version 1');
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'interrupted/never-finished.jpg' }))).rejects.toMatchObject({ name: 'NotFound' });
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'version 2' }));
    expect(await bodyOf(s3.client, BUCKET, key)).toBe('version 2');
    expect((await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'interrupted/' })).keys).toEqual([key]);
  });

  it('assembles a lib-storage multipart upload, with the ETag S3 gives multipart objects', async () => {
    const partSize = 5 * 1024 * 1024;
    const body = Buffer.alloc(2 * partSize + 12345);
    for (let i = 0; i < body.length; i += 4096) body[i] = (i / 4096) % 251;
    const key = 'multipart/features.csv';
    await new Upload({ client: s3.client, params: { Bucket: BUCKET, Key: key, Body: body, ContentType: 'text/csv' }, partSize, queueSize: 2 }).done();
    const parts = [0, 1, 2].map((n) =>
      createHash('md5')
        .update(body.subarray(n * partSize, (n + 1) * partSize))
        .digest(),
    );
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(head).toMatchObject({
      ContentLength: body.length,
      ContentType: 'text/csv',
      ETag: `"${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-3"`,
    });
    const got = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
  });

  it('drops the parts of a lib-storage upload that fails (AbortMultipartUpload)', async () => {
    const partSize = 5 * 1024 * 1024;
    async function* failingBody() {
      yield Buffer.alloc(partSize + 1);
      throw new Error('the producer gave up');
    }
    const upload = new Upload({
      client: s3.client,
      params: { Bucket: BUCKET, Key: 'multipart/abandoned.csv', Body: Readable.from(failingBody()) },
      partSize,
      leavePartsOnError: false,
    });
    await expect(upload.done()).rejects.toThrow('the producer gave up');
    await eventually(() => expect(readdirSync(join(s3.directory, STORE_FOLDER, BUCKET, 'uploads'))).toEqual([]));
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'multipart/abandoned.csv' }))).rejects.toMatchObject({ name: 'NotFound' });
  });

  it('deletes several objects with DeleteObjects', async () => {
    const keys = ['delete/a', 'delete/b\rc', 'delete/d e'];
    await putAll(s3.client, BUCKET, keys);
    const result = await s3.client.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys.map((Key) => ({ Key })) } }));
    expect(result.Deleted?.map((deleted) => deleted.Key).sort()).toEqual([...keys].sort());
    expect((await listEverything(s3.client, { Bucket: BUCKET, Prefix: 'delete/' })).keys).toEqual([]);
  });

  it('answers a GET of a missing key with 404 NoSuchKey by default, which readBytes reports as a missing object', async () => {
    await expect(readBytes(s3.client, BUCKET, 'absent.jpg')).rejects.toThrow(MissingObjectError);
    await expect(s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'absent.jpg' }))).rejects.toMatchObject({
      name: 'NoSuchKey',
      $metadata: { httpStatusCode: 404 },
    });
  });
});

describe('local S3 server on a directory of its own', () => {
  let root: string;
  let directory: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'fruits-s3-store-'));
    directory = join(root, 'server');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('stores odd keys literally, writes nothing outside its directory, and lists everything again after a restart', async () => {
    // All legal key names: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
    const keys = [
      'a//b',
      './x',
      '../x',
      '../../escape',
      'x/',
      '/leading',
      'cr\rkey',
      'lf\nkey',
      'crlf\r\nkey',
      '100%',
      '%2F',
      'a+b',
      'Grape White 2/é 🍓.jpg',
      `name/${'n'.repeat(240)}.jpg`,
    ];
    let s3 = await startLocalS3Server({ directory, buckets: [BUCKET] });
    try {
      await putAll(s3.client, BUCKET, keys);
      for (const key of keys) expect(await bodyOf(s3.client, BUCKET, key)).toBe(`body of ${key}`);
      expect((await listEverything(s3.client, { Bucket: BUCKET })).keys).toEqual(utf8Order(keys));
    } finally {
      await s3.close();
    }
    expect(readdirSync(root)).toEqual(['server']);
    expect(readdirSync(directory)).toEqual([STORE_FOLDER]);

    s3 = await startLocalS3Server({ directory, buckets: [BUCKET] });
    try {
      expect((await listEverything(s3.client, { Bucket: BUCKET })).keys).toEqual(utf8Order(keys));
      for (const key of keys) expect(await bodyOf(s3.client, BUCKET, key)).toBe(`body of ${key}`);
    } finally {
      await s3.close();
    }
  });

  it('ignores a torn last journal line after a crash, and compacts a journal that is mostly superseded', async () => {
    let s3 = await startLocalS3Server({ directory, buckets: [BUCKET] });
    await putAll(s3.client, BUCKET, ['kept/1', 'kept/2']);
    // 1,200 overwrites: the journal then holds far more superseded lines than live objects.
    for (let version = 0; version < 40; version++)
      await putAll(
        s3.client,
        BUCKET,
        Array.from({ length: 30 }, (_, i) => `rewritten/${i}`),
        () => `v${version}`,
      );
    await s3.close();
    const journal = join(directory, STORE_FOLDER, BUCKET, 'journal.jsonl');
    appendFileSync(journal, '{"op":"put","key":"torn/', 'utf8');

    s3 = await startLocalS3Server({ directory, buckets: [BUCKET] });
    try {
      expect(readFileSync(journal, 'utf8').trimEnd().split('\n')).toHaveLength(32);
      await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'after/restart', Body: 'new' }));
      expect(await bodyOf(s3.client, BUCKET, 'rewritten/29')).toBe('v39');
    } finally {
      await s3.close();
    }
    expect(readdirSync(join(directory, STORE_FOLDER, BUCKET, 'data'))).toHaveLength(33);

    s3 = await startLocalS3Server({ directory, buckets: [BUCKET] });
    try {
      const { keys } = await listEverything(s3.client, { Bucket: BUCKET });
      expect(keys).toHaveLength(33);
      expect(keys).toContain('after/restart');
      expect(keys.some((key) => key.startsWith('torn/'))).toBe(false);
    } finally {
      await s3.close();
    }
  });

  it("starts on a data directory written by s3rver's old FilesystemStore, leaving its files alone", async () => {
    const old = join(directory, BUCKET, 'input', 'fruits', 'Kiwi');
    mkdirSync(old, { recursive: true });
    writeFileSync(join(old, 'r_1.jpg._S3rver_object'), 'old bytes');
    writeFileSync(join(old, 'r_1.jpg._S3rver_object.md5'), 'not even an md5');
    const s3 = await startLocalS3Server({ directory, buckets: [BUCKET] });
    try {
      expect((await listEverything(s3.client, { Bucket: BUCKET })).keys).toEqual([]);
      await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'input/fruits/Kiwi/r_1.jpg', Body: 'new bytes' }));
      expect(await bodyOf(s3.client, BUCKET, 'input/fruits/Kiwi/r_1.jpg')).toBe('new bytes');
    } finally {
      await s3.close();
    }
    expect(readFileSync(join(old, 'r_1.jpg._S3rver_object'), 'utf8')).toBe('old bytes');
  });
});

describe("local S3 server answering as AWS does a caller without s3:ListBucket (missingObjectAnswer: 'AccessDenied')", () => {
  let s3: LocalS3Server;
  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET], missingObjectAnswer: 'AccessDenied' });
  });
  afterAll(() => s3.close());

  it('answers a GET or HEAD of a missing key with 403 AccessDenied, and readBytes reports a missing object', async () => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html: without s3:ListBucket, "HTTP status code 403 Access Denied"
    await expect(s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'absent.jpg' }))).rejects.toMatchObject({
      name: 'AccessDenied',
      $metadata: { httpStatusCode: 403 },
    });
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'absent.jpg' }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
    const read = readBytes(s3.client, BUCKET, 'absent.jpg');
    await expect(read).rejects.toThrow(MissingObjectError);
    await expect(read).rejects.toThrow('missing or not readable (403 AccessDenied)');
  });

  it('still reads objects that exist', async () => {
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'present.jpg', Body: 'here' }));
    expect(Buffer.from(await readBytes(s3.client, BUCKET, 'present.jpg')).toString()).toBe('here');
  });
});

describe("Utf8KeyIndex (the store's listing, without HTTP)", () => {
  const index = new Utf8KeyIndex<number>(['x/', 'x/a', 'x/b/1', 'x/b/2', 'x/c', 'y'].map((key, i) => [key, i] as const));

  /** Every item of a listing, one page at a time. */
  function pageThrough(query: { prefix: string; delimiter?: string }, maxKeys: number): string[] {
    const items: string[] = [];
    let startAt: Buffer | undefined;
    for (;;) {
      const page = index.list({ ...query, startAt, maxKeys });
      items.push(...utf8Order([...page.objects.map((object) => object.key), ...page.commonPrefixes]));
      if (!page.isTruncated) return items;
      startAt = page.nextStartAt;
    }
  }

  it('pages a key that ends with the delimiter apart from the common prefixes after it', () => {
    expect(pageThrough({ prefix: 'x/', delimiter: '/' }, 1)).toEqual(['x/', 'x/a', 'x/b/', 'x/c']);
    expect(pageThrough({ prefix: '', delimiter: '/' }, 1)).toEqual(['x/', 'y']);
    expect(pageThrough({ prefix: '' }, 2)).toEqual(['x/', 'x/a', 'x/b/1', 'x/b/2', 'x/c', 'y']);
  });

  it('lists a key deleted and added again once', () => {
    const changing = new Utf8KeyIndex<number>([
      ['a', 1],
      ['b', 2],
    ]);
    expect(changing.list({ prefix: '', maxKeys: 10 }).objects.map((object) => object.key)).toEqual(['a', 'b']);
    changing.delete('a');
    changing.set('a', 3);
    changing.set('c', 4);
    changing.delete('b');
    expect(changing.list({ prefix: '', maxKeys: 10 }).objects).toEqual([
      { key: 'a', value: 3 },
      { key: 'c', value: 4 },
    ]);
  });
});

/** A raw PUT that declares `length` bytes, sends half of them and destroys the socket. */
function putHalfThenHangUp(endpoint: string, path: string, length: number): Promise<void> {
  const { hostname, port } = new URL(endpoint);
  return new Promise((resolve) => {
    const put = request({ hostname, port, method: 'PUT', path, headers: { 'content-length': length, 'content-type': 'image/jpeg' } });
    put.on('error', () => resolve());
    put.write(Buffer.alloc(length / 2, 7), () =>
      setTimeout(() => {
        put.destroy();
        resolve();
      }, 50),
    );
  });
}

/** Retries `check` until it passes: the property is that it comes true, not how soon (30 s only ends a test that would never pass). */
async function eventually(check: () => void, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}
