/**
 * A folder served in place (mounted) against the same files uploaded by the upload path the local
 * run used before (client/folder-upload.ts, lib-storage), over real HTTP on loopback: the same
 * listing page by page (keys, order, sizes, ETags, paging, common prefixes), the same bytes, and
 * S3's answers for a file changed or deleted after the listing and for writes under the mount.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandInput,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { folderFiles, UPLOAD_PART_SIZE, type FolderFile } from '../../../../client/dataset-folder';
import { mapWithConcurrency } from '../../../../lambdas/common/concurrency';
import { startLocalS3Server, type LocalS3Server } from '../../../../local/emulator/s3/s3-server';
import { copyInputFolder, serveInputFolder, type InputPlacement } from '../../../../local/input-folder';

const MOUNTED = 'mounted';
const COPIED = 'copied';
const PREFIX = 'input/odd/';

/** Folder names where one is a prefix of another: a space sorts before `/`. */
const FRUIT_FOLDERS = ['Peach', 'Peach 2', 'Peach Flat', 'Grape White', 'Grape White 2'];
/** Astral characters against U+E000..U+FFFD (UTF-16 and UTF-8 order disagree), accents, spaces, + and %. */
const ODD_NAMES = [
  '\u{1F34E} apple.jpg',
  '\u{1F353}.jpg',
  '\uFFFD.jpg',
  '\uE000 private.jpg',
  'é.jpg',
  'Z.jpg',
  'z.jpg',
  '~.jpg',
  'a+b %20.jpg',
  'two  spaces .jpg',
];
const TOO_LONG = `${Array.from({ length: 5 }, (_, i) => `${i}${'d'.repeat(219)}`).join('/')}/x.jpg`;

function writeFolder(root: string, files: Record<string, string | Buffer>): void {
  for (const [path, body] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), body);
  }
}

/** Every page of a listing, following continuation tokens. */
async function pagesOf(client: S3Client, input: ListObjectsV2CommandInput): Promise<ListObjectsV2CommandOutput[]> {
  const pages: ListObjectsV2CommandOutput[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ ...input, ContinuationToken: token }));
    pages.push(page);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return pages;
}

/** What a page says, apart from LastModified (an upload's time, a file's mtime) and the bucket name. */
const pageContent = (page: ListObjectsV2CommandOutput) => ({
  keys: (page.Contents ?? []).map(({ Key, Size, ETag, StorageClass }) => ({ Key, Size, ETag, StorageClass })),
  prefixes: (page.CommonPrefixes ?? []).map((prefix) => prefix.Prefix),
  KeyCount: page.KeyCount,
  IsTruncated: page.IsTruncated,
});

const md5 = (body: Buffer | string) => createHash('md5').update(body).digest('hex');
const bodyOf = async (client: S3Client, Bucket: string, Key: string, Range?: string) =>
  Buffer.from(await (await client.send(new GetObjectCommand({ Bucket, Key, Range }))).Body!.transformToByteArray());

/** The folder as the local run sees it: walked, each file's digests computed once. */
async function walked(root: string): Promise<FolderFile[]> {
  const files = folderFiles(root);
  await mapWithConcurrency(files, 16, (file) => file.digests());
  return files;
}

describe('a folder served in place lists and reads exactly as its uploaded copy', () => {
  let work: string;
  let root: string;
  let s3: LocalS3Server;
  let served: InputPlacement;
  let copied: InputPlacement;
  const contents: Record<string, string | Buffer> = {};

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'fruits-mount-'));
    root = join(work, 'odd');
    FRUIT_FOLDERS.forEach((folder, f) => {
      for (let i = 0; i < 230 + f; i++) contents[`${folder}/r_${i}_100.jpg`] = `${folder} photo ${i}`.repeat(1 + (i % 5));
    });
    for (const name of ODD_NAMES) contents[`odd names/${name}`] = `bytes of ${name}`;
    contents['empty.jpg'] = Buffer.alloc(0);
    // One part exactly (lib-storage PUTs it whole: the ETag is the MD5), and one byte more (multipart: MD5 of part MD5s, -2).
    const big = Buffer.alloc(UPLOAD_PART_SIZE + 1);
    for (let i = 0; i < big.length; i += 4093) big[i] = i % 251;
    contents['big/one-part.bin'] = big.subarray(0, UPLOAD_PART_SIZE);
    contents['big/two-parts.bin'] = big;
    contents[TOO_LONG] = 'refused either way';
    writeFolder(root, { ...contents, '.DS_Store': 'hidden: not part of the dataset' });
    s3 = await startLocalS3Server({ buckets: [MOUNTED, COPIED] });
    const files = await walked(root);
    served = await serveInputFolder(s3, { bucket: MOUNTED, prefix: PREFIX, root, files });
    copied = await copyInputFolder(s3.client, { bucket: COPIED, prefix: PREFIX, files }, { concurrency: 16 });
  }, 60_000);
  afterAll(async () => {
    await s3?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('serves every file but the key S3 would refuse, which both report the same way', () => {
    const count = Object.keys(contents).length - 1;
    expect(count).toBeGreaterThan(1000);
    expect(served).toMatchObject({ served: count, uploaded: 0, alreadyPresent: 0 });
    expect(copied).toMatchObject({ served: 0, uploaded: count, alreadyPresent: 0 });
    expect(served.refused).toEqual(copied.refused);
    expect(served.refused).toEqual([{ key: `${PREFIX}${TOO_LONG}`, reason: expect.stringMatching(/longer than the 1024 bytes S3 allows/) }]);
  });

  it.each<[string, Omit<ListObjectsV2CommandInput, 'Bucket'>]>([
    ['whole prefix, 1,000 a page', { Prefix: PREFIX }],
    ['MaxKeys 7', { Prefix: PREFIX, MaxKeys: 7 }],
    ['MaxKeys 1,000', { Prefix: PREFIX, MaxKeys: 1000 }],
    ['delimiter', { Prefix: PREFIX, Delimiter: '/' }],
    ['delimiter, MaxKeys 1 (common prefixes count)', { Prefix: PREFIX, Delimiter: '/', MaxKeys: 1 }],
    ['a folder that prefixes others', { Prefix: `${PREFIX}Peach`, MaxKeys: 333 }],
    ['StartAfter a key', { Prefix: PREFIX, StartAfter: `${PREFIX}Peach 2/r_7_100.jpg`, MaxKeys: 500 }],
    ['StartAfter a non-key', { Prefix: PREFIX, StartAfter: `${PREFIX}Grape White`, MaxKeys: 400 }],
    ['from the bucket root', { Delimiter: '/' }],
  ])('ListObjectsV2 (%s): the same pages, keys, sizes and ETags', async (_name, query) => {
    const mounted = await pagesOf(s3.client, { ...query, Bucket: MOUNTED });
    const copy = await pagesOf(s3.client, { ...query, Bucket: COPIED });
    expect(mounted.map(pageContent)).toEqual(copy.map(pageContent));
    expect(mounted.flatMap((page) => page.Contents ?? []).length + mounted.flatMap((page) => page.CommonPrefixes ?? []).length).toBeGreaterThan(0);
  });

  it("lists in S3's UTF-8 byte order, with S3's ETags (MD5; multipart above one part) and each file's mtime", async () => {
    const listed = (await pagesOf(s3.client, { Bucket: MOUNTED, Prefix: PREFIX })).flatMap((page) => page.Contents ?? []);
    const keys = listed.map((object) => object.Key!);
    expect(keys).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(keys.indexOf(`${PREFIX}Peach 2/r_0_100.jpg`)).toBeLessThan(keys.indexOf(`${PREFIX}Peach/r_0_100.jpg`));
    const byKey = new Map(listed.map((object) => [object.Key!.slice(PREFIX.length), object]));
    expect(byKey.get('empty.jpg')).toMatchObject({ Size: 0, ETag: `"${md5('')}"` });
    expect(byKey.get('big/one-part.bin')).toMatchObject({ Size: UPLOAD_PART_SIZE, ETag: `"${md5(contents['big/one-part.bin'])}"` });
    const big = contents['big/two-parts.bin'] as Buffer;
    const partMd5s = Buffer.concat([big.subarray(0, UPLOAD_PART_SIZE), big.subarray(UPLOAD_PART_SIZE)].map((part) => createHash('md5').update(part).digest()));
    expect(byKey.get('big/two-parts.bin')).toMatchObject({ Size: big.length, ETag: `"${md5(partMd5s)}-2"` });
    for (const [path, object] of byKey) {
      // S3 lists LastModified to the second.
      expect(object.LastModified!.getTime()).toBe(Math.floor(statSync(join(root, path)).mtimeMs / 1000) * 1000);
    }
  });

  it('GETs every file byte for byte, HEADs it as its copy, and answers ranges', async () => {
    await mapWithConcurrency(Object.keys(contents), 16, async (path) => {
      if (path === TOO_LONG) return;
      const body = await bodyOf(s3.client, MOUNTED, `${PREFIX}${path}`);
      expect(body.equals(readFileSync(join(root, path)))).toBe(true);
    });
    for (const path of ['Peach 2/r_3_100.jpg', 'odd names/\u{1F34E} apple.jpg', 'empty.jpg', 'big/two-parts.bin']) {
      const Key = `${PREFIX}${path}`;
      const [mounted, copy] = await Promise.all([MOUNTED, COPIED].map((Bucket) => s3.client.send(new HeadObjectCommand({ Bucket, Key }))));
      expect({ ContentLength: mounted.ContentLength, ETag: mounted.ETag, ContentType: mounted.ContentType }).toEqual({
        ContentLength: copy.ContentLength,
        ETag: copy.ETag,
        ContentType: copy.ContentType,
      });
    }
    const big = contents['big/two-parts.bin'] as Buffer;
    expect((await bodyOf(s3.client, MOUNTED, `${PREFIX}big/two-parts.bin`, `bytes=${UPLOAD_PART_SIZE - 3}-`)).equals(big.subarray(UPLOAD_PART_SIZE - 3))).toBe(
      true,
    );
    expect((await bodyOf(s3.client, MOUNTED, `${PREFIX}Peach/r_4_100.jpg`, 'bytes=2-9')).toString()).toBe(String(contents['Peach/r_4_100.jpg']).slice(2, 10));
    await expect(s3.client.send(new GetObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Peach/r_4_100.jpg`, Range: 'bytes=100000-' }))).rejects.toMatchObject({
      name: 'InvalidRange',
    });
  });
});

describe('a folder served in place, changed under it', () => {
  let work: string;
  let root: string;
  let directory: string;
  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'fruits-mount-change-'));
    root = join(work, 'photos');
    directory = join(work, 's3');
    writeFolder(root, { 'Kiwi/a.jpg': 'kiwi a', 'Kiwi/b.jpg': 'kiwi b', 'Kiwi/c.jpg': 'kiwi c', 'Lemon/d.jpg': 'lemon d' });
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  async function servedServer(options: { missingObjectAnswer?: 'AccessDenied' } = {}): Promise<LocalS3Server> {
    const s3 = await startLocalS3Server({ directory, buckets: [MOUNTED], ...options });
    await serveInputFolder(s3, { bucket: MOUNTED, prefix: PREFIX, root, files: await walked(root) });
    return s3;
  }
  const listed = async (client: S3Client) =>
    (await pagesOf(client, { Bucket: MOUNTED, Prefix: PREFIX })).flatMap((page) => page.Contents ?? []).map(({ Key, Size, ETag }) => ({ Key, Size, ETag }));

  it('serves a file overwritten after the listing as S3 serves an overwritten object: the new bytes with their new ETag', async () => {
    const s3 = await servedServer();
    try {
      expect(await listed(s3.client)).toContainEqual({ Key: `${PREFIX}Kiwi/a.jpg`, Size: 6, ETag: `"${md5('kiwi a')}"` });
      writeFileSync(join(root, 'Kiwi/a.jpg'), 'kiwi a, rewritten');
      // Same size, other bytes: the mtime tells (set apart explicitly: some filesystems keep whole seconds).
      writeFileSync(join(root, 'Kiwi/b.jpg'), 'KIWI B');
      const later = new Date(statSync(join(root, 'Kiwi/b.jpg')).mtimeMs + 5000);
      utimesSync(join(root, 'Kiwi/b.jpg'), later, later);

      const got = await s3.client.send(new GetObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Kiwi/a.jpg` }));
      expect(got).toMatchObject({ ETag: `"${md5('kiwi a, rewritten')}"`, ContentLength: 17 });
      expect(await got.Body!.transformToString()).toBe('kiwi a, rewritten');
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Kiwi/b.jpg` }));
      expect(head).toMatchObject({ ETag: `"${md5('KIWI B')}"`, ContentLength: 6 });
      expect(head.LastModified!.getTime()).toBe(Math.floor(later.getTime() / 1000) * 1000);
      // The listing shows the new versions from then on.
      expect(await listed(s3.client)).toEqual([
        { Key: `${PREFIX}Kiwi/a.jpg`, Size: 17, ETag: `"${md5('kiwi a, rewritten')}"` },
        { Key: `${PREFIX}Kiwi/b.jpg`, Size: 6, ETag: `"${md5('KIWI B')}"` },
        { Key: `${PREFIX}Kiwi/c.jpg`, Size: 6, ETag: `"${md5('kiwi c')}"` },
        { Key: `${PREFIX}Lemon/d.jpg`, Size: 7, ETag: `"${md5('lemon d')}"` },
      ]);
    } finally {
      await s3.close();
    }
  });

  it('answers a file deleted after the listing with NoSuchKey, and lists it no more', async () => {
    const s3 = await servedServer();
    try {
      unlinkSync(join(root, 'Kiwi/c.jpg'));
      await expect(s3.client.send(new GetObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Kiwi/c.jpg` }))).rejects.toMatchObject({
        name: 'NoSuchKey',
        $metadata: { httpStatusCode: 404 },
      });
      expect((await listed(s3.client)).map((object) => object.Key)).toEqual([`${PREFIX}Kiwi/a.jpg`, `${PREFIX}Kiwi/b.jpg`, `${PREFIX}Lemon/d.jpg`]);
    } finally {
      await s3.close();
    }
  });

  it("answers it with 403 AccessDenied in missingObjectAnswer: 'AccessDenied' mode, as for any missing key", async () => {
    const s3 = await servedServer({ missingObjectAnswer: 'AccessDenied' });
    try {
      rmSync(join(root, 'Lemon'), { recursive: true });
      await expect(s3.client.send(new GetObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Lemon/d.jpg` }))).rejects.toMatchObject({
        name: 'AccessDenied',
        $metadata: { httpStatusCode: 403 },
      });
    } finally {
      await s3.close();
    }
  });

  it('refuses writes under the mount with AccessDenied, and keeps serving and storing everything else', async () => {
    const s3 = await servedServer();
    try {
      const Key = `${PREFIX}Kiwi/a.jpg`;
      const denied = { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } };
      await expect(s3.client.send(new PutObjectCommand({ Bucket: MOUNTED, Key, Body: 'overwrite' }))).rejects.toMatchObject(denied);
      await expect(s3.client.send(new PutObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Kiwi/new.jpg`, Body: 'new' }))).rejects.toMatchObject(denied);
      await expect(s3.client.send(new DeleteObjectCommand({ Bucket: MOUNTED, Key }))).rejects.toMatchObject(denied);
      await expect(s3.client.send(new CreateMultipartUploadCommand({ Bucket: MOUNTED, Key: `${PREFIX}big.bin` }))).rejects.toMatchObject(denied);
      await expect(
        s3.client.send(new CopyObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Kiwi/copy.jpg`, CopySource: `${MOUNTED}/${PREFIX}Kiwi/b.jpg` })),
      ).rejects.toMatchObject(denied);
      expect(readFileSync(join(root, 'Kiwi/a.jpg'), 'utf8')).toBe('kiwi a');
      expect((await bodyOf(s3.client, MOUNTED, Key)).toString()).toBe('kiwi a');

      // Outside the mount: a bucket as before; a mounted file can be copied out of it.
      await s3.client.send(new CopyObjectCommand({ Bucket: MOUNTED, Key: 'results/copy.jpg', CopySource: `${MOUNTED}/${PREFIX}Kiwi/b.jpg` }));
      expect((await bodyOf(s3.client, MOUNTED, 'results/copy.jpg')).toString()).toBe('kiwi b');
      await s3.client.send(new PutObjectCommand({ Bucket: MOUNTED, Key: 'results/r.txt', Body: 'result' }));
      expect((await bodyOf(s3.client, MOUNTED, 'results/r.txt')).toString()).toBe('result');
      expect(() => s3.mountFolder(MOUNTED, { prefix: `${PREFIX}Kiwi/`, root, files: [], etagOf: async () => '' })).toThrow(/is mounted at input\/odd\//);
    } finally {
      await s3.close();
    }
  });

  it('hides what the store held under the prefix while mounted, and keeps it (and everything else) for later runs', async () => {
    let s3 = await startLocalS3Server({ directory, buckets: [MOUNTED] });
    try {
      await s3.client.send(new PutObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Kiwi/a.jpg`, Body: 'an earlier copy' }));
      await s3.client.send(new PutObjectCommand({ Bucket: MOUNTED, Key: `${PREFIX}Stale/gone.jpg`, Body: 'no longer in the folder' }));
      await s3.client.send(new PutObjectCommand({ Bucket: MOUNTED, Key: 'results/run-1/report.json', Body: '{}' }));
    } finally {
      await s3.close();
    }
    s3 = await servedServer();
    try {
      expect((await listed(s3.client)).map((object) => object.Key)).toEqual(
        ['Kiwi/a.jpg', 'Kiwi/b.jpg', 'Kiwi/c.jpg', 'Lemon/d.jpg'].map((path) => `${PREFIX}${path}`),
      );
      expect((await bodyOf(s3.client, MOUNTED, `${PREFIX}Kiwi/a.jpg`)).toString()).toBe('kiwi a');
      expect((await bodyOf(s3.client, MOUNTED, 'results/run-1/report.json')).toString()).toBe('{}');
    } finally {
      await s3.close();
    }
    s3 = await startLocalS3Server({ directory, buckets: [MOUNTED] });
    try {
      expect((await listed(s3.client)).map((object) => object.Key)).toEqual([`${PREFIX}Kiwi/a.jpg`, `${PREFIX}Stale/gone.jpg`]);
      expect((await bodyOf(s3.client, MOUNTED, `${PREFIX}Kiwi/a.jpg`)).toString()).toBe('an earlier copy');
    } finally {
      await s3.close();
    }
  });
});
