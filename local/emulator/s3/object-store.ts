/**
 * The local S3 server's storage, in place of s3rver's FilesystemStore (which maps keys to file
 * paths: listings come out in directory-walk order rather than S3's, long keys overflow file name
 * limits, `..` segments escape the data directory, and a PUT streams straight over the object's
 * file, so an interrupted one leaves a broken object). It implements the store interface
 * s3rver's controllers call.
 *
 * Layout, per bucket under `<directory>/objects-v1/<bucket>/`:
 * - `journal.jsonl`: every object's metadata (see object-journal.ts), replayed at start;
 * - `data/<sha256 of key>.<version>`: each object's bytes under a name any key can have, written
 *   aside in `tmp/` and renamed into place only once the whole body arrived, so a reader sees
 *   the previous version or the new one, never a part;
 * - `uploads/<upload id>/`: multipart uploads in progress, one file per part and ETag;
 * - `<type>.xml`: the bucket's CORS or website configuration.
 *
 * A write that finds the disk full (ENOSPC, or EDQUOT past a quota) leaves nothing half-written
 * (the body aside is removed, a journal line that did not fit is cut off) and is answered with an
 * InternalError whose message says so and names the data directory; the store remembers the last
 * one (`noSpaceLeft`) for the run's final message. Once space is freed the same requests succeed.
 *
 * A folder on disk can also be mounted under a prefix (mounted-folder.ts): its files are listed
 * and read as objects, read-only, and never recorded in the journal. Objects stored under that
 * prefix before stay in the journal, hidden while the mount lasts (the process's lifetime).
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createWriteStream, mkdirSync, openSync, readFileSync, readSync, rmSync, statfsSync } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { S3_KEY_MAX_BYTES } from '../../../lambdas/contracts/bucket-layout';
import {
  isMountedObject,
  mountedKeyIsReadOnly,
  mountedMetadata,
  mountEntries,
  openMountedFile,
  prefixesOverlap,
  type FolderMount,
  type Mount,
  type MountedObject,
} from './mounted-folder';
import { JournalWriter, parseJournal, replayJournal, rewriteJournal, type JournalRecord, type StoredObject } from './object-journal';
import {
  ALLOWED_METADATA,
  getConfigModel,
  S3Bucket,
  S3Error,
  S3Object,
  type ObjectMetadata,
  type S3BucketInstance,
  type S3ObjectInstance,
  type SubresourceConfig,
} from './s3rver-models';
import { positionAfterKey, Utf8KeyIndex, type ListPage, type ListQuery } from './utf8-key-index';

/**
 * The store's own folder under the server's directory. s3rver's FilesystemStore kept each bucket
 * as a top-level folder of `*._S3rver_object` files: data directories of earlier versions hold
 * those, and keeping apart means they are never mistaken for this layout (nor read at all).
 */
export const STORE_FOLDER = 'objects-v1';

/** Every part but the last must be at least 5 MiB: https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html */
const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PART_NUMBER = 10_000;
/** Compact a journal at start once superseded lines outnumber live objects (and are this many). */
const MIN_SUPERSEDED_TO_COMPACT = 1000;
const JOURNAL_FILE = 'journal.jsonl';
const UPLOAD_FILE = 'upload.json';
const BUCKET_SUBRESOURCES = ['cors', 'website'];

/** An object of the index: stored by the store, or a file of a mounted folder. */
type IndexedObject = StoredObject | MountedObject;

interface BucketState {
  readonly name: string;
  readonly dir: string;
  readonly creationDate: Date;
  readonly objects: Utf8KeyIndex<IndexedObject>;
  /** Folders served under a prefix, read-only; at most one per key. */
  readonly mounts: Mount[];
  readonly journal: JournalWriter;
  /** CORS/website XML, by type: s3rver's middleware asks for both on every object request. */
  readonly subresources: Map<string, string>;
  /** The last write that found the disk full. */
  noSpaceLeft?: NoSpaceLeft;
}

/** A write the store could not make for want of disk space. */
export interface NoSpaceLeft {
  /** The data directory (the store's folder is under it). */
  readonly directory: string;
  /** Bytes the write was to store, when known (a body with a Content-Length). */
  readonly bytes?: number;
  /** Bytes free for this process on that filesystem just after. */
  readonly freeBytes?: number;
  readonly at: Date;
}

/** What s3rver's bucket controller passes to `listObjects`; `startAfter` is V1's marker. */
export interface S3rverListOptions {
  readonly prefix?: string;
  readonly delimiter?: string;
  readonly startAfter?: string;
  readonly maxKeys?: number;
}

export interface ObjectListing {
  readonly objects: S3ObjectInstance[];
  readonly commonPrefixes: string[];
  readonly isTruncated: boolean;
  readonly nextStartAt?: Buffer;
}

interface ReceivedBody {
  readonly path: string;
  readonly size: number;
  readonly md5: string;
}

/**
 * Objects up to this size are read in one synchronous call and served from memory. The images of a
 * run are a few kilobytes: a file stream (an open, reads and a close, each a thread-pool hop) cost
 * more than the rest of the GET on the server side; a synchronous read of a cached small file is
 * a few microseconds.
 */
const SMALL_OBJECT_BYTES = 256 * 1024;

/**
 * Bytes per read of a larger object's stream. A feature shard is 1-2 MB: in the default 64 KiB
 * chunks that is 25 reads, socket writes and buffers for the reader to gather per GET.
 */
const STREAM_CHUNK_BYTES = 1024 * 1024;

/** Bytes [start, end] of a file (a path, or an open descriptor the caller closes), as a stream. */
function smallObjectContent(file: string | number, range: { start: number; end: number }): Readable {
  const fd = typeof file === 'number' ? file : openSync(file, 'r');
  try {
    const bytes = Buffer.allocUnsafe(range.end - range.start + 1);
    let read = 0;
    while (read < bytes.length) {
      const n = readSync(fd, bytes, read, bytes.length - read, range.start + read);
      if (n === 0) break;
      read += n;
    }
    return Readable.from([read === bytes.length ? bytes : bytes.subarray(0, read)]);
  } finally {
    if (typeof file !== 'number') closeSync(fd);
  }
}

export class JournaledObjectStore {
  private constructor(
    private readonly root: string,
    private readonly buckets: Map<string, BucketState>,
  ) {}

  /** Opens (or creates) the store under `directory`, replaying each bucket's journal. */
  static async open(directory: string): Promise<JournaledObjectStore> {
    const root = join(directory, STORE_FOLDER);
    await mkdir(root, { recursive: true });
    const buckets = new Map<string, BucketState>();
    for (const entry of await readdir(root, { withFileTypes: true })) {
      if (entry.isDirectory()) buckets.set(entry.name, await openBucket(join(root, entry.name), entry.name));
    }
    return new JournaledObjectStore(root, buckets);
  }

  /** The last write that found the disk full, of any bucket. */
  noSpaceLeft(): NoSpaceLeft | undefined {
    let last: NoSpaceLeft | undefined;
    for (const bucket of this.buckets.values()) if (bucket.noSpaceLeft && (!last || bucket.noSpaceLeft.at > last.at)) last = bucket.noSpaceLeft;
    return last;
  }

  /** Waits for pending journal writes and closes the journals. */
  async close(): Promise<void> {
    await Promise.all([...this.buckets.values()].map((bucket) => bucket.journal.close()));
  }

  // Buckets

  async listBuckets(): Promise<S3BucketInstance[]> {
    return [...this.buckets.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((bucket) => new S3Bucket(bucket.name, bucket.creationDate));
  }

  async getBucket(name: string): Promise<S3BucketInstance | null> {
    const bucket = this.buckets.get(name);
    return bucket ? new S3Bucket(bucket.name, bucket.creationDate) : null;
  }

  async putBucket(name: string): Promise<S3BucketInstance | null> {
    if (!this.buckets.has(name)) this.buckets.set(name, await openBucket(join(this.root, name), name));
    return this.getBucket(name);
  }

  async deleteBucket(name: string): Promise<void> {
    const bucket = this.buckets.get(name);
    if (!bucket) return;
    this.buckets.delete(name);
    await bucket.journal.close();
    await rm(bucket.dir, { recursive: true, force: true });
  }

  /** Removes every bucket; s3rver's `reset()` expects this to be synchronous. */
  reset(): void {
    for (const bucket of this.buckets.values()) void bucket.journal.close().catch(() => undefined);
    this.buckets.clear();
    rmSync(this.root, { recursive: true, force: true });
    mkdirSync(this.root, { recursive: true });
  }

  // Mounted folders

  /**
   * Serves `mount.files` under `mount.prefix`, read-only, in place of whatever the store holds
   * there (see mounted-folder.ts); returns how many keys it serves. Nothing is copied or recorded.
   */
  mountFolder(bucketName: string, mount: FolderMount): number {
    const bucket = this.requireBucket(bucketName);
    const clash = bucket.mounts.find((other) => prefixesOverlap(other.prefix, mount.prefix));
    if (clash) throw new Error(`cannot mount ${mount.root} at ${mount.prefix}: ${clash.root} is mounted at ${clash.prefix}`);
    const { mount: shared, entries } = mountEntries(mount);
    for (const [key] of bucket.objects.entries()) if (key.startsWith(mount.prefix)) bucket.objects.delete(key);
    for (const [key, entry] of entries) bucket.objects.set(key, entry);
    bucket.mounts.push(shared);
    return entries.length;
  }

  // Listing

  /** s3rver's ListObjects (V1) entry point: S3's order and paging, `startAfter` as the marker. */
  async listObjects(bucketName: string, options: S3rverListOptions): Promise<ObjectListing> {
    return this.listPage(bucketName, {
      prefix: options.prefix ?? '',
      delimiter: options.delimiter,
      startAt: options.startAfter ? positionAfterKey(options.startAfter) : undefined,
      maxKeys: options.maxKeys === undefined || !Number.isFinite(options.maxKeys) ? 1000 : options.maxKeys,
    });
  }

  /** One page of a listing, with the position the next page starts at (for continuation tokens). */
  listPage(bucketName: string, query: ListQuery): ObjectListing {
    const bucket = this.requireBucket(bucketName);
    if (query.maxKeys < 1) return { objects: [], commonPrefixes: [], isTruncated: false };
    const page: ListPage<IndexedObject> = bucket.objects.list(query);
    return {
      objects: page.objects.map(({ key, value }) => new S3Object(bucketName, key, null, s3rverMetadata(value))),
      commonPrefixes: page.commonPrefixes,
      isTruncated: page.isTruncated,
      nextStartAt: page.nextStartAt,
    };
  }

  // Objects

  async existsObject(bucketName: string, key: string): Promise<boolean> {
    return this.buckets.get(bucketName)?.objects.has(key) ?? false;
  }

  /**
   * The object with its bytes as a stream (a range of them when asked), or null when missing. An
   * unsatisfiable range comes back with `range` set and no content, which s3rver answers with
   * InvalidRange.
   */
  async getObject(bucketName: string, key: string, options?: { start?: number; end?: number }): Promise<S3ObjectInstance | null> {
    const bucket = this.buckets.get(bucketName);
    for (;;) {
      const stored = bucket?.objects.get(key);
      if (!bucket || !stored) return null;
      if (isMountedObject(stored)) return this.getMountedObject(bucket, key, stored, options);
      const object = new S3Object(bucketName, key, null, s3rverMetadata(stored));
      const range = { start: options?.start ?? 0, end: Math.min(options?.end ?? Infinity, Math.max(0, stored.size - 1)) };
      if (options?.start !== undefined || options?.end !== undefined) object.range = range;
      if (range.start < 0 || range.end < range.start) return object;
      try {
        if (range.end - range.start < SMALL_OBJECT_BYTES) {
          object.content = smallObjectContent(dataPath(bucket, stored.file), range);
          return object;
        }
        const handle = await open(dataPath(bucket, stored.file), 'r');
        object.content = handle.createReadStream({ start: range.start, end: range.end, highWaterMark: STREAM_CHUNK_BYTES });
        return object;
      } catch (error) {
        // Replaced between the lookup and the open: read the new version.
        if (isNotFound(error) && bucket.objects.get(key) !== stored) continue;
        throw error;
      }
    }
  }

  /** A mounted file as an object, from the file as it is now (a changed file is a new version). */
  private async getMountedObject(
    bucket: BucketState,
    key: string,
    indexed: MountedObject,
    options: { start?: number; end?: number } | undefined,
  ): Promise<S3ObjectInstance | null> {
    const opened = await openMountedFile(key, indexed);
    // Deleted or overwritten on disk: the index follows, so listings agree with what a GET found.
    if (bucket.objects.get(key) === indexed) {
      if (!opened) bucket.objects.delete(key);
      else if (opened.current !== indexed) bucket.objects.set(key, opened.current);
    }
    if (!opened) return null;
    const { handle, current } = opened;
    const object = new S3Object(bucket.name, key, null, s3rverMetadata(current));
    const range = { start: options?.start ?? 0, end: Math.min(options?.end ?? Infinity, Math.max(0, current.size - 1)) };
    if (options?.start !== undefined || options?.end !== undefined) object.range = range;
    if (range.start < 0 || range.end < range.start) {
      await handle.close();
      return object;
    }
    if (range.end - range.start < SMALL_OBJECT_BYTES) {
      try {
        object.content = smallObjectContent(handle.fd, range);
      } finally {
        await handle.close();
      }
      return object;
    }
    object.content = handle.createReadStream({ start: range.start, end: range.end });
    return object;
  }

  async putObject(object: S3ObjectInstance): Promise<{ size: number; md5: string }> {
    const bucket = this.requireBucket(object.bucket);
    refuseLongKey(object.key, object.content);
    this.refuseMountedKey(bucket, object.key, object.content);
    const body = await receiveBody(bucket, object.content!);
    await this.commit(bucket, object.key, body.path, { size: body.size, etag: body.md5, metadata: storedMetadata(object.metadata) });
    return { size: body.size, md5: body.md5 };
  }

  async copyObject(
    srcBucket: string,
    srcKey: string,
    destBucket: string,
    destKey: string,
    replacementMetadata: Record<string, unknown> | null,
  ): Promise<Record<string, unknown>> {
    const source = this.requireBucket(srcBucket);
    const target = this.requireBucket(destBucket);
    refuseLongKey(destKey);
    this.refuseMountedKey(target, destKey);
    const noSuchKey = () => new S3Error('NoSuchKey', 'The specified key does not exist.', { Key: srcKey });
    const stored = source.objects.get(srcKey);
    if (!stored) throw noSuchKey();
    if (isMountedObject(stored)) {
      const read = await this.getMountedObject(source, srcKey, stored, undefined);
      if (!read) throw noSuchKey();
      const body = await receiveBody(target, read.content as Readable);
      const copy = await this.commit(target, destKey, body.path, {
        size: body.size,
        etag: JSON.parse(read.metadata.etag) as string,
        metadata: replacementMetadata ? storedMetadata(replacementMetadata) : {},
      });
      return s3rverMetadata(copy);
    }
    const aside = tmpPath(target);
    await copyFile(dataPath(source, stored.file), aside);
    const copy = await this.commit(target, destKey, aside, {
      size: stored.size,
      etag: stored.etag,
      metadata: replacementMetadata ? storedMetadata(replacementMetadata) : stored.metadata,
      subresources: stored.subresources,
    });
    return s3rverMetadata(copy);
  }

  async deleteObject(bucketName: string, key: string): Promise<void> {
    const bucket = this.requireBucket(bucketName);
    this.refuseMountedKey(bucket, key);
    if (bucket.objects.has(key)) await this.record(bucket, key, undefined);
  }

  // Multipart uploads

  async initiateUpload(bucketName: string, key: string, uploadId: string, metadata: Record<string, unknown>): Promise<void> {
    const bucket = this.requireBucket(bucketName);
    refuseLongKey(key);
    this.refuseMountedKey(bucket, key);
    const dir = uploadDir(bucket, uploadId);
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, UPLOAD_FILE), JSON.stringify({ key, metadata: storedMetadata(metadata) }));
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw noSpaceAnswer(bucket, error);
    }
  }

  /** Stores a part as `<number>-<md5>`: a part sent again with other bytes cannot be mistaken for the first. */
  async putPart(bucketName: string, uploadId: string, partNumber: string | number, content: Readable): Promise<{ size: number; md5: string }> {
    const bucket = this.requireBucket(bucketName);
    const dir = await existingUploadDir(bucket, uploadId, content);
    const number = Number(partNumber);
    if (!Number.isInteger(number) || number < 1 || number > MAX_PART_NUMBER) {
      content.resume();
      throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`, {
        ArgumentName: 'partNumber',
        ArgumentValue: String(partNumber),
      });
    }
    const body = await receiveBody(bucket, content);
    await rename(body.path, join(dir, `${number}-${body.md5}`));
    return { size: body.size, md5: body.md5 };
  }

  /**
   * Assembles the listed parts into the object, checked as S3 does (ascending part numbers, known
   * ETags, all but the last at least 5 MiB). The ETag is S3's for multipart objects: the MD5 of
   * the parts' binary MD5s, then `-<part count>`.
   */
  async putObjectMultipart(bucketName: string, uploadId: string, parts: readonly { number: number; etag: string }[]): Promise<{ size: number; md5: string }> {
    const bucket = this.requireBucket(bucketName);
    const dir = await existingUploadDir(bucket, uploadId);
    const upload = JSON.parse(await readFile(join(dir, UPLOAD_FILE), 'utf8')) as { key: string; metadata: ObjectMetadata };
    // Initiated before the folder was mounted there.
    this.refuseMountedKey(bucket, upload.key);
    const files: { path: string; size: number }[] = [];
    for (const [index, part] of parts.entries()) {
      if (index > 0 && part.number <= parts[index - 1].number) {
        throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.');
      }
      const path = /^[0-9a-f]{32}$/.test(part.etag) ? join(dir, `${part.number}-${part.etag}`) : undefined;
      const size =
        path === undefined
          ? undefined
          : await stat(path).then(
              (s) => s.size,
              () => undefined,
            );
      if (path === undefined || size === undefined) {
        throw new S3Error(
          'InvalidPart',
          "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
          {
            PartNumber: part.number,
            ETag: part.etag,
          },
        );
      }
      files.push({ path, size });
    }
    if (files.slice(0, -1).some((file) => file.size < MIN_PART_BYTES)) {
      throw new S3Error('EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.');
    }
    const aside = tmpPath(bucket);
    const handle = await open(aside, 'a');
    try {
      for (const file of files) await handle.appendFile(await readFile(file.path));
    } catch (error) {
      await rm(aside, { force: true });
      throw noSpaceAnswer(
        bucket,
        error,
        files.reduce((total, file) => total + file.size, 0),
      );
    } finally {
      await handle.close();
    }
    const digests = Buffer.concat(parts.map((part) => Buffer.from(part.etag, 'hex')));
    const etag = `${createHash('md5').update(digests).digest('hex')}-${parts.length}`;
    const size = files.reduce((total, file) => total + file.size, 0);
    await this.commit(bucket, upload.key, aside, { size, etag, metadata: upload.metadata });
    await rm(dir, { recursive: true, force: true });
    return { size, md5: etag };
  }

  /** AbortMultipartUpload: the parts are dropped. */
  async abortUpload(bucketName: string, uploadId: string): Promise<void> {
    await rm(await existingUploadDir(this.requireBucket(bucketName), uploadId), { recursive: true, force: true });
  }

  // Subresources: the bucket's CORS and website configurations, an object's tag set

  async getSubresource(bucketName: string, key: string | undefined, type: string): Promise<SubresourceConfig | null> {
    const bucket = this.buckets.get(bucketName);
    const Model = getConfigModel(type);
    const object = key === undefined ? undefined : bucket?.objects.get(key);
    const xml = key === undefined ? bucket?.subresources.get(type) : object && !isMountedObject(object) ? object.subresources?.[type] : undefined;
    return Model && xml !== undefined ? new Model(xml) : null;
  }

  async putSubresource(bucketName: string, key: string | undefined, resource: SubresourceConfig): Promise<void> {
    await this.changeSubresource(bucketName, key, resource.type, resource.toXML());
  }

  async deleteSubresource(bucketName: string, key: string | undefined, type: string): Promise<void> {
    await this.changeSubresource(bucketName, key, type, undefined);
  }

  private async changeSubresource(bucketName: string, key: string | undefined, type: string, xml: string | undefined): Promise<void> {
    const bucket = this.requireBucket(bucketName);
    if (key === undefined) {
      const path = join(bucket.dir, `${type}.xml`);
      if (xml === undefined) {
        await rm(path, { force: true });
        bucket.subresources.delete(type);
      } else {
        await writeAtomically(bucket, path, xml);
        bucket.subresources.set(type, xml);
      }
      return;
    }
    this.refuseMountedKey(bucket, key);
    const stored = bucket.objects.get(key);
    if (!stored || isMountedObject(stored)) throw new S3Error('NoSuchKey', 'The specified key does not exist.', { Key: key });
    const subresources = { ...stored.subresources };
    if (xml === undefined) delete subresources[type];
    else subresources[type] = xml;
    await this.record(bucket, key, { ...stored, subresources });
  }

  // Writes

  /** Moves a fully received body into place, then records it: a crash in between leaves only an unreferenced file. */
  private async commit(bucket: BucketState, key: string, received: string, object: Omit<StoredObject, 'file' | 'lastModified'>): Promise<StoredObject> {
    const stored: StoredObject = { ...object, file: dataFileName(key), lastModified: Date.now() };
    await rename(received, dataPath(bucket, stored.file));
    try {
      await this.record(bucket, key, stored);
    } catch (error) {
      await rm(dataPath(bucket, stored.file), { force: true });
      throw error;
    }
    return stored;
  }

  /**
   * Records a change (`undefined`: a deletion). The index takes it at once, in the order of the
   * journal lines, so a change computed from the index (a tag set added) builds on every change
   * before it. The file of the version replaced goes only once the line is written: until then a
   * restart would still find the old line pointing to it.
   */
  private async record(bucket: BucketState, key: string, stored: StoredObject | undefined): Promise<void> {
    const previous = bucket.objects.get(key);
    setOrDelete(bucket.objects, key, stored);
    try {
      await bucket.journal.append(stored ? { op: 'put', key, ...stored } : { op: 'delete', key });
    } catch (error) {
      // Not recorded: take it back, unless a later change has already replaced it.
      if (bucket.objects.get(key) === stored) setOrDelete(bucket.objects, key, previous);
      throw noSpaceAnswer(bucket, error);
    }
    if (previous && !isMountedObject(previous) && previous.file !== stored?.file) await unlink(dataPath(bucket, previous.file)).catch(ignoreNotFound);
  }

  /** A write to a key of a mounted folder is refused, its body drained (see refuseLongKey). */
  private refuseMountedKey(bucket: BucketState, key: string, body?: Readable | Buffer | null): void {
    if (!bucket.mounts.some((mount) => key.startsWith(mount.prefix))) return;
    if (body && !Buffer.isBuffer(body)) body.resume();
    throw mountedKeyIsReadOnly(key);
  }

  private requireBucket(name: string): BucketState {
    const bucket = this.buckets.get(name);
    if (!bucket) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: name });
    return bucket;
  }
}

/** A store's objects read from disk as they stand, without opening the store (no server, nothing written). */
export interface StoreSnapshot {
  /** The object's bytes, or undefined when the bucket has no such key. */
  read(key: string): Buffer | undefined;
  /** Whether any key starts with `prefix`. */
  hasPrefix(prefix: string): boolean;
}

/**
 * The objects of `bucket` in the store under `directory`, from its journal: for a caller that holds
 * the directory (no server of it runs) and only reads, e.g. a saved model looked up before the run
 * starts its server. Undefined when the store has no such bucket.
 */
export function readStoreSnapshot(directory: string, bucketName: string): StoreSnapshot | undefined {
  const dir = join(directory, STORE_FOLDER, bucketName);
  let text: string;
  try {
    text = readFileSync(join(dir, JOURNAL_FILE), 'utf8');
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  const objects = new Map<string, StoredObject>();
  for (const record of parseJournal(text).records) applyRecord(objects, record);
  return {
    read: (key) => {
      const stored = objects.get(key);
      return stored ? readFileSync(join(dir, 'data', stored.file)) : undefined;
    },
    hasPrefix: (prefix) => [...objects.keys()].some((key) => key.startsWith(prefix)),
  };
}

/**
 * Replays a bucket's journal, drops what an interrupted run left behind (bodies still being
 * received, files no record points to) and compacts the journal when it is mostly superseded.
 */
async function openBucket(dir: string, name: string): Promise<BucketState> {
  const journalPath = join(dir, JOURNAL_FILE);
  await Promise.all(['data', 'uploads'].map((sub) => mkdir(join(dir, sub), { recursive: true })));
  await rm(join(dir, 'tmp'), { recursive: true, force: true });
  await mkdir(join(dir, 'tmp'));
  const { records, intactLength } = await replayJournal(journalPath);
  const objects = new Map<string, StoredObject>();
  for (const record of records) applyRecord(objects, record);
  const referenced = new Set([...objects.values()].map((object) => object.file));
  const unreferenced = (await readdir(join(dir, 'data'))).filter((file) => !referenced.has(file));
  await Promise.all(unreferenced.map((file) => unlink(join(dir, 'data', file)).catch(ignoreNotFound)));
  const superseded = records.length - objects.size;
  const journalLength = superseded >= Math.max(MIN_SUPERSEDED_TO_COMPACT, objects.size) ? await rewriteJournal(journalPath, objects) : intactLength;
  const subresources = new Map<string, string>();
  for (const type of BUCKET_SUBRESOURCES) {
    const xml = await readFile(join(dir, `${type}.xml`), 'utf8').catch(ignoreNotFound);
    if (xml !== undefined) subresources.set(type, xml);
  }
  return {
    name,
    dir,
    creationDate: (await stat(dir)).birthtime,
    objects: new Utf8KeyIndex<IndexedObject>(objects),
    mounts: [],
    journal: await JournalWriter.open(journalPath, journalLength),
    subresources,
  };
}

function setOrDelete(objects: Utf8KeyIndex<IndexedObject>, key: string, stored: IndexedObject | undefined): void {
  if (stored) objects.set(key, stored);
  else objects.delete(key);
}

function applyRecord(objects: Map<string, StoredObject>, record: JournalRecord): void {
  if (record.op === 'delete') {
    objects.delete(record.key);
    return;
  }
  const { op: _op, key, ...object } = record;
  objects.set(key, object);
}

/**
 * S3 refuses keys over 1,024 UTF-8 bytes with 400 KeyTooLongError. The body, if any, is drained
 * so the client reads that answer instead of a reset connection.
 */
function refuseLongKey(key: string, body?: Readable | Buffer | null): void {
  const bytes = Buffer.byteLength(key);
  if (bytes <= S3_KEY_MAX_BYTES) return;
  if (body && !Buffer.isBuffer(body)) body.resume();
  throw new S3Error('KeyTooLongError', 'Your key is too long', { Size: bytes, MaxSizeAllowed: S3_KEY_MAX_BYTES });
}

/**
 * Writes a request body to a fresh file in `tmp/`, hashing and counting it. A body that ends
 * early (the client went away) or falls short of its Content-Length leaves nothing behind.
 */
async function receiveBody(bucket: BucketState, content: Readable | Buffer): Promise<ReceivedBody> {
  const path = tmpPath(bucket);
  const md5 = createHash('md5');
  let size = 0;
  try {
    if (Buffer.isBuffer(content)) {
      await writeFile(path, content);
      md5.update(content);
      size = content.length;
    } else {
      await pipeline(
        content,
        async function* count(chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            md5.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        createWriteStream(path),
      );
    }
    const declared = declaredLength(content);
    if (declared !== undefined && declared !== size) {
      throw new S3Error('IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header.', {
        NumberBytesExpected: declared,
        NumberBytesProvided: size,
      });
    }
  } catch (error) {
    await rm(path, { force: true });
    throw noSpaceAnswer(bucket, error, Buffer.isBuffer(content) ? content.length : declaredLength(content));
  }
  return { path, size, md5: md5.digest('hex') };
}

/** The Content-Length the client announced, when the body is a request stream that has one. */
function declaredLength(content: Readable | Buffer): number | undefined {
  const header = (content as Partial<IncomingMessage>).headers?.['content-length'];
  return header === undefined ? undefined : Number(header);
}

async function existingUploadDir(bucket: BucketState, uploadId: string, body?: Readable): Promise<string> {
  // Upload ids are ours (hex); anything else is not an upload, and never a path.
  const dir = /^[0-9a-f]+$/.test(uploadId) ? uploadDir(bucket, uploadId) : undefined;
  if (
    dir !== undefined &&
    (await stat(join(dir, UPLOAD_FILE)).then(
      () => true,
      () => false,
    ))
  )
    return dir;
  body?.resume();
  throw new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', {
    UploadId: uploadId,
  });
}

async function writeAtomically(bucket: BucketState, path: string, text: string): Promise<void> {
  const aside = tmpPath(bucket);
  try {
    await writeFile(aside, text);
  } catch (error) {
    await rm(aside, { force: true });
    throw noSpaceAnswer(bucket, error, Buffer.byteLength(text));
  }
  await rename(aside, path);
}

/**
 * What the client gets for a write that found the disk full: S3's answer to a failure of its own
 * (500 InternalError, which the SDK retries), with a message that says what happened and where,
 * instead of s3rver's "We encountered an internal error. Please try again.". Any other error
 * passes as it is.
 */
function noSpaceAnswer(bucket: BucketState, error: unknown, bytes?: number): unknown {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return error;
  const directory = dirname(dirname(bucket.dir));
  let freeBytes: number | undefined;
  try {
    const stats = statfsSync(bucket.dir);
    freeBytes = stats.bavail * stats.bsize;
  } catch {
    freeBytes = undefined;
  }
  bucket.noSpaceLeft = { directory, bytes, freeBytes, at: new Date() };
  return new S3Error('InternalError', `${describeNoSpaceLeft(bucket.noSpaceLeft)}: free space, then try again`);
}

/** `no space left in <dir> (<code>): a write of <n> MB, <m> MB free` */
export function describeNoSpaceLeft(noSpace: NoSpaceLeft): string {
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(bytes < 1e5 ? 3 : 1)} MB`;
  const sizes = [
    noSpace.bytes !== undefined ? `a write of ${mb(noSpace.bytes)}` : undefined,
    noSpace.freeBytes !== undefined ? `${mb(noSpace.freeBytes)} free` : undefined,
  ];
  const detail = sizes.filter(Boolean).join(', ');
  return `no space left in ${noSpace.directory}${detail ? ` (${detail})` : ''}`;
}

/** The headers kept as object metadata: S3's system metadata that s3rver knows, and x-amz-meta-*. */
function storedMetadata(headers: Record<string, unknown>): ObjectMetadata {
  const kept: ObjectMetadata = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === 'string' && (ALLOWED_METADATA.includes(name) || name.startsWith('x-amz-meta-'))) kept[name] = value;
  }
  return kept;
}

/** The metadata s3rver's controllers expect, intrinsic values included; a mounted file's are its upload's. */
function s3rverMetadata(object: IndexedObject): Record<string, unknown> {
  const mounted = isMountedObject(object);
  return {
    ...(mounted ? mountedMetadata(object) : object.metadata),
    etag: JSON.stringify(object.etag),
    'last-modified': new Date(mounted ? object.mtimeMs : object.lastModified).toUTCString(),
    'content-length': object.size,
  };
}

/** A name any key can have, different for every version so a new one never overwrites the one being read. */
function dataFileName(key: string): string {
  return `${createHash('sha256').update(key).digest('hex')}.${randomBytes(8).toString('hex')}`;
}

const dataPath = (bucket: BucketState, file: string) => join(bucket.dir, 'data', file);
const tmpPath = (bucket: BucketState) => join(bucket.dir, 'tmp', randomBytes(12).toString('hex'));
const uploadDir = (bucket: BucketState, uploadId: string) => join(bucket.dir, 'uploads', uploadId);

const isNotFound = (error: unknown) => (error as NodeJS.ErrnoException)?.code === 'ENOENT';

function ignoreNotFound(error: unknown): undefined {
  if (isNotFound(error)) return undefined;
  throw error;
}
