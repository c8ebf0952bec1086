/**
 * A folder on disk served read-only under a key prefix of a bucket, in place of a copy: the local
 * run lists and reads its input folder this way instead of uploading it first.
 *
 * The index holds, per file, what a listing answers (size, ETag, modification time) and nothing
 * else: no bytes, no path (it is the mount's root joined with the key after the prefix). The ETags
 * are the ones an upload would have given (the caller computed them already for its run id), so a
 * mounted object lists exactly as its uploaded copy would, and batch shard names stay the same.
 *
 * A file changed on disk after it was indexed is what S3 calls an overwritten object: a GET or
 * HEAD serves the new bytes with the new ETag (computed then) and the listing shows the new
 * version from then on. A file deleted is a missing key. Both are noticed when the file is read,
 * from its size and mtime: a listing answers from the index as it stands.
 */
import { fstatSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { S3_KEY_MAX_BYTES } from '../../../lambdas/contracts/bucket-layout';
import { S3Error, type S3ErrorInstance } from './s3rver-models';

/** One file of a folder to serve, as the caller's walk found it. */
export interface FolderMountFile {
  /** Path under the folder, `/`-separated: the key is the prefix followed by it. */
  readonly path: string;
  readonly size: number;
  /** `mtimeMs` of the stat that gave `size`. */
  readonly mtimeMs: number;
  /** The ETag without quotes, as the upload this mount stands in for would give the object. */
  readonly etag: string;
}

export interface FolderMount {
  /** Key prefix the folder appears under, ending in `/` (`input/<dataset>/`). */
  readonly prefix: string;
  /** The folder on disk. */
  readonly root: string;
  readonly files: readonly FolderMountFile[];
  /** The ETag of a file found changed at a read, computed as `etag` was (the caller's rule: single or multipart). */
  readonly etagOf: (content: AsyncIterable<Buffer>, size: number) => Promise<string>;
}

/** A mount as the index entries share it. */
export interface Mount {
  readonly prefix: string;
  readonly root: string;
  readonly etagOf: FolderMount['etagOf'];
}

/** An index entry for a mounted file: what is listed, and the mtime to tell a changed file by. */
export interface MountedObject {
  readonly mount: Mount;
  readonly size: number;
  readonly etag: string;
  readonly mtimeMs: number;
}

/**
 * The metadata a mounted file is served with: what its upload would carry. The AWS SDK sends a
 * PutObject body without a type as application/octet-stream, which S3 keeps; a multipart upload
 * (an ETag with a part count) is created without one, which S3 then serves as binary/octet-stream.
 */
export function mountedMetadata(object: MountedObject): Record<string, string> {
  return object.etag.includes('-') ? {} : { 'content-type': 'application/octet-stream' };
}

export function isMountedObject(value: object): value is MountedObject {
  return 'mount' in value;
}

/**
 * The index entries of a mount, checked: every key a key S3 takes (KeyTooLongError otherwise, as
 * for a PUT: the caller leaves out what the upload would refuse), every path a plain relative
 * path (no `.`, `..` or empty segment, which would name another file or none).
 */
export function mountEntries(mount: FolderMount): { mount: Mount; entries: [string, MountedObject][] } {
  if (!mount.prefix.endsWith('/')) throw new Error(`mount prefix ${JSON.stringify(mount.prefix)} must end with "/"`);
  const shared: Mount = { prefix: mount.prefix, root: mount.root, etagOf: mount.etagOf };
  const entries = mount.files.map((file): [string, MountedObject] => {
    if (file.path.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) {
      throw new Error(`cannot mount ${JSON.stringify(file.path)}: not a plain relative path`);
    }
    const key = `${mount.prefix}${file.path}`;
    const bytes = Buffer.byteLength(key);
    if (bytes > S3_KEY_MAX_BYTES) throw new S3Error('KeyTooLongError', 'Your key is too long', { Size: bytes, MaxSizeAllowed: S3_KEY_MAX_BYTES });
    return [key, { mount: shared, size: file.size, etag: file.etag, mtimeMs: file.mtimeMs }];
  });
  return { mount: shared, entries };
}

/** Whether two mount prefixes would claim a key in common. */
export const prefixesOverlap = (a: string, b: string) => a.startsWith(b) || b.startsWith(a);

/** What a write to a mounted key gets: a mount is read-only, as a prefix a bucket policy denies writes to. */
export function mountedKeyIsReadOnly(key: string): S3ErrorInstance {
  return new S3Error('AccessDenied', `Access Denied: ${key} is in a folder served read-only`);
}

/**
 * The file behind a mounted key, opened, with the entry that describes it now: `indexed` when
 * the file has the size and mtime it was indexed with, else a new entry with its new ETag
 * (computed from the open file, so the ETag and the bytes served are of the same file). Undefined
 * when the file is gone (or is no longer a file). The caller owns the handle.
 */
export async function openMountedFile(key: string, indexed: MountedObject): Promise<{ handle: FileHandle; current: MountedObject } | undefined> {
  const path = join(indexed.mount.root, ...key.slice(indexed.mount.prefix.length).split('/'));
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw error;
  }
  try {
    // Synchronous: the open just loaded the inode, and a thread-pool hop per GET costs more than the call.
    const stats = fstatSync(handle.fd);
    if (!stats.isFile()) {
      await handle.close();
      return undefined;
    }
    if (stats.size === indexed.size && stats.mtimeMs === indexed.mtimeMs) return { handle, current: indexed };
    const etag = await indexed.mount.etagOf(handle.createReadStream({ start: 0, autoClose: false }), stats.size);
    return { handle, current: { mount: indexed.mount, size: stats.size, etag, mtimeMs: stats.mtimeMs } };
  } catch (error) {
    await handle.close();
    throw error;
  }
}
