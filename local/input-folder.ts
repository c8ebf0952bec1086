/**
 * How the local run puts its input folder under `input/<dataset>/` of its store. By default the
 * store serves the folder itself (mounted-folder.ts): nothing is copied, the files are listed and
 * read in place, read-only, with the ETags an upload would give them. `copyInput` uploads a copy
 * instead, with the upload `submit` uses against AWS (client/folder-upload.ts).
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { uploadETag, type FolderFile } from '../client/dataset-folder';
import { keyTooLong, uploadFiles } from '../client/folder-upload';
import type { ItemProblem } from '../lambdas/contracts/events';
import type { LocalS3Server } from './emulator/s3/s3-server';

/** Files uploaded at once with `copyInput`. */
export const UPLOAD_CONCURRENCY = 16;

export interface InputFolder {
  readonly bucket: string;
  /** `input/<dataset>/` */
  readonly prefix: string;
  /** The folder `files` were walked from. */
  readonly root: string;
  readonly files: readonly FolderFile[];
}

/** Where the input's files went; every file is in exactly one of the counts or in `refused`. */
export interface InputPlacement {
  /** Copied into the store. */
  readonly uploaded: number;
  /** Copies already in the store with the same size and ETag. */
  readonly alreadyPresent: number;
  /** Served from the folder in place. */
  readonly served: number;
  /** Files S3 would refuse (a key longer than it allows), each with the reason, as the upload reports them. */
  readonly refused: ItemProblem[];
}

/**
 * Serve the folder in place. The ETags are the digests the run already computed for its run id
 * (`digests()` is computed once per file), so no file is read again here.
 */
export async function serveInputFolder(server: LocalS3Server, input: InputFolder): Promise<InputPlacement> {
  const refused: ItemProblem[] = [];
  const served: FolderFile[] = [];
  for (const file of input.files) {
    const problem = keyTooLong(`${input.prefix}${file.path}`);
    if (problem) refused.push(problem);
    else served.push(file);
  }
  const files = await Promise.all(
    served.map(async (file) => ({ path: file.path, size: file.size, mtimeMs: file.mtimeMs, etag: (await file.digests()).etags[0] })),
  );
  const count = server.mountFolder(input.bucket, { prefix: input.prefix, root: input.root, files, etagOf: uploadETag });
  return { uploaded: 0, alreadyPresent: 0, served: count, refused };
}

/**
 * Upload a copy of the folder, skipping objects already there with the same size and ETag; the
 * prefix then holds exactly the folder (the local store is the run's own, so stale objects go).
 */
export async function copyInputFolder(
  s3: S3Client,
  input: Omit<InputFolder, 'root'>,
  options: { concurrency: number; onProgress?: (done: number, total: number) => void },
): Promise<InputPlacement> {
  const upload = await uploadFiles(s3, { bucket: input.bucket, prefix: input.prefix, files: input.files, deleteStale: true, ...options });
  return { uploaded: upload.uploaded, alreadyPresent: upload.skipped, served: 0, refused: upload.refused };
}
