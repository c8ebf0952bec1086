/**
 * A dataset as the local run and `submit` see it: the files of a folder (or of the generated demo
 * set), each with its path under `input/<dataset>/` and the digests an upload is checked against.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readlinkSync, realpathSync, statSync, type Stats } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';

/** lib-storage's part size; also what a multipart ETag is computed over. */
export const UPLOAD_PART_SIZE = 8 * 1024 * 1024;

export interface DatasetFile {
  /** Path relative to the dataset root, `/`-separated. */
  readonly path: string;
  readonly size: number;
  body(): Buffer | Readable;
  /** The content's MD5, and the ETags S3 may give the object once uploaded (see `uploadETags`). */
  digests(): Promise<{ md5: string; etags: string[] }>;
}

/**
 * Every file of a dataset folder, depth first in name order (stable keys, stable run ids).
 * Hidden entries (.DS_Store, .git, editor droppings) are not part of a dataset a user would
 * upload, so they and everything below them are left out. Symbolic links are followed, to files
 * and to folders, as `aws s3 sync` follows them: a file is listed under the path of the link (see
 * `walkDatasetFolder` for what is not followed).
 */
export function* datasetFiles(dir: string): Generator<string> {
  yield* walkDatasetFolder(dir).files;
}

/** A path under the dataset folder that is not a file of the dataset, and why. */
export interface FolderProblem {
  /** Path relative to the dataset root, `/`-separated. */
  readonly path: string;
  readonly reason: string;
}

export interface FolderWalk {
  /** Files, as paths under the walked folder (through links, not their targets). */
  readonly files: string[];
  /** Links that lead nowhere (dangling) or back into a folder being walked (a loop): not followed. */
  readonly problems: FolderProblem[];
  /** Symbolic links followed, to files and to folders. */
  readonly linksFollowed: number;
}

/**
 * The files of `root`, following symbolic links. A link to a folder that holds it (a loop) is
 * named and not followed, so every file is listed once per path and the walk ends; a link whose
 * target does not exist is named with its target.
 */
export function walkDatasetFolder(root: string): FolderWalk {
  const walk: { files: string[]; problems: FolderProblem[]; linksFollowed: number } = { files: [], problems: [], linksFollowed: 0 };
  const relativePath = (path: string) => relative(root, path).split(sep).join('/');
  /** The real paths of the folders from the root down to the one being read, by their walked paths. */
  const ancestors = new Map<string, string>();
  const visit = (dir: string) => {
    ancestors.set(realpathSync(dir), dir);
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.isFile()) walk.files.push(path);
      else if (entry.isSymbolicLink()) followLink(path);
    }
    ancestors.delete(realpathSync(dir));
  };
  const followLink = (path: string) => {
    let target: Stats;
    try {
      target = statSync(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason =
        code === 'ENOENT' || code === 'ENOTDIR'
          ? `a symbolic link to ${readlinkSync(path)}, which does not exist`
          : code === 'ELOOP'
            ? `a symbolic link loop (${readlinkSync(path)} leads back to itself)`
            : `a symbolic link that cannot be followed (${code ?? (error as Error).message})`;
      walk.problems.push({ path: relativePath(path), reason });
      return;
    }
    if (target.isDirectory()) {
      const loopsTo = ancestors.get(realpathSync(path));
      if (loopsTo !== undefined) {
        walk.problems.push({
          path: relativePath(path),
          reason: `a symbolic link loop: it leads back to ${relativePath(loopsTo) || 'the dataset folder'}, which holds it`,
        });
        return;
      }
      walk.linksFollowed++;
      visit(path);
    } else if (target.isFile()) {
      walk.linksFollowed++;
      walk.files.push(path);
    }
  };
  visit(root);
  return walk;
}

/** A file of a folder on disk: where it is, and its modification time when the folder was walked. */
export interface FolderFile extends DatasetFile {
  /** Absolute path on disk (through links, as walked). */
  readonly file: string;
  /** `mtimeMs` of the same stat as `size`: with it, a later stat tells whether the file changed since. */
  readonly mtimeMs: number;
}

/** The files of a folder, read from disk when uploaded. */
export function folderFiles(root: string): FolderFile[] {
  return readDatasetFolder(root).files;
}

/** The files of a folder (read from disk when uploaded), what could not be followed, and how many links were. */
export function readDatasetFolder(root: string): { files: FolderFile[]; problems: FolderProblem[]; linksFollowed: number } {
  const walk = walkDatasetFolder(root);
  const files = walk.files.map((file) => {
    // Through the link: the target's size and mtime, which a read of the path meets.
    const { size, mtimeMs } = statSync(file);
    return {
      path: relative(root, file).split(sep).join('/'),
      file,
      size,
      mtimeMs,
      body: () => createReadStream(file),
      digests: once(() => uploadETags(createReadStream(file) as AsyncIterable<Buffer>, size)),
    };
  });
  return { files, problems: walk.problems, linksFollowed: walk.linksFollowed };
}

/** A folder name as a dataset name: one path segment the state machine's prefix checks accept. */
export function datasetName(folder: string): string {
  const trim = (text: string) => text.replace(/^[-._]+|[-.]+$/g, '');
  const name = trim(trim(folder.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/\.{2,}/g, '.')).slice(0, 60));
  return name || 'dataset';
}

/** The ETags of a file on disk (see `uploadETags`). */
export async function localETags(file: string, size: number): Promise<string[]> {
  return (await uploadETags(createReadStream(file) as AsyncIterable<Buffer>, size)).etags;
}

/** The ETag S3 gives `content` uploaded as `uploadFiles` uploads it (lib-storage, UPLOAD_PART_SIZE parts). */
export async function uploadETag(content: AsyncIterable<Buffer>, size: number): Promise<string> {
  return (await uploadETags(content, size)).etags[0];
}

/**
 * The ETags an object uploaded as we upload it may carry: S3 gives a multipart object
 * MD5-of-part-MD5s + `-<parts>`, a single-part one its MD5; some S3-compatible servers (s3rver)
 * give every object its MD5. Either one matching means the object is already there.
 */
async function uploadETags(chunks: AsyncIterable<Buffer> | Iterable<Buffer>, size: number): Promise<{ md5: string; etags: string[] }> {
  const whole = createHash('md5');
  const digests: Buffer[] = [];
  let part = createHash('md5');
  let inPart = 0;
  for await (const chunk of chunks) {
    whole.update(chunk);
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(chunk.length - offset, UPLOAD_PART_SIZE - inPart);
      part.update(chunk.subarray(offset, offset + take));
      inPart += take;
      offset += take;
      if (inPart === UPLOAD_PART_SIZE) {
        digests.push(part.digest());
        part = createHash('md5');
        inPart = 0;
      }
    }
  }
  const md5 = whole.digest('hex');
  if (size <= UPLOAD_PART_SIZE) return { md5, etags: [md5] };
  if (inPart > 0) digests.push(part.digest());
  return { md5, etags: [`${createHash('md5').update(Buffer.concat(digests)).digest('hex')}-${digests.length}`, md5] };
}

function once<T>(compute: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => (value ??= compute());
}
