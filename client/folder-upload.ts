/**
 * The one dataset upload, for the local run and `submit`: upload what is missing or different
 * under `input/<dataset>/`, with bounded parallelism and multipart above UPLOAD_PART_SIZE, so an
 * interrupted upload resumes where it stopped.
 */
import { resolve } from 'node:path';
import { DeleteObjectsCommand, PutObjectCommand, S3Client, type _Object } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { BUCKET_LAYOUT, S3_KEY_MAX_BYTES } from '../lambdas/contracts/bucket-layout';
import type { ItemProblem } from '../lambdas/contracts/events';
import { describeError, isTransientS3Error, listAllObjects } from '../lambdas/aws/s3-client';
import { mapWithConcurrency } from '../lambdas/common';
import { DatasetFile, readDatasetFolder, UPLOAD_PART_SIZE } from './dataset-folder';

/** Files in flight when nothing else is asked for. */
export const DEFAULT_UPLOAD_CONCURRENCY = 8;

export interface UploadFilesOptions {
  readonly bucket: string;
  /** `input/<dataset>/` */
  readonly prefix: string;
  readonly files: readonly DatasetFile[];
  /** Files in flight. @default DEFAULT_UPLOAD_CONCURRENCY */
  readonly concurrency?: number;
  /**
   * Delete the objects under `prefix` that are not among `files`, so the prefix holds exactly the
   * dataset (the local run, whose store is its own). @default false
   */
  readonly deleteStale?: boolean;
  /** Called as each file is done: uploaded, already there or refused. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface UploadResult {
  readonly uploaded: number;
  /** Files already there with the same size and ETag. */
  readonly skipped: number;
  /** Bytes uploaded. */
  readonly bytes: number;
  /**
   * Files S3 refuses (a key longer than S3 allows, or a non-transient error on the upload), each
   * with the reason. Trouble that outlived the SDK's retries is thrown instead.
   */
  readonly refused: ItemProblem[];
}

/**
 * Upload `files` under `prefix`, skipping objects already there with the same size and ETag
 * (single-part ETag = MD5; multipart = MD5 of the part MD5s).
 */
export async function uploadFiles(s3: S3Client, options: UploadFilesOptions): Promise<UploadResult> {
  const { bucket, prefix, files } = options;
  const existing = new Map<string, _Object>((await listAllObjects(s3, bucket, prefix)).map((object) => [object.Key!, object]));
  if (options.deleteStale) {
    const wanted = new Set(files.map((file) => `${prefix}${file.path}`));
    const stale = [...existing.keys()].filter((key) => !wanted.has(key));
    for (let i = 0; i < stale.length; i += 1000) {
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: stale.slice(i, i + 1000).map((Key) => ({ Key })) } }));
    }
  }
  let uploaded = 0;
  let done = 0;
  let bytes = 0;
  const refused: ItemProblem[] = [];
  await mapWithConcurrency(files, options.concurrency ?? DEFAULT_UPLOAD_CONCURRENCY, async (file) => {
    const key = `${prefix}${file.path}`;
    const tooLong = keyTooLong(key);
    if (tooLong) {
      refused.push(tooLong);
    } else if (!(await alreadyThere(existing.get(key), file))) {
      try {
        await new Upload({ client: s3, params: { Bucket: bucket, Key: key, Body: file.body() }, partSize: UPLOAD_PART_SIZE, queueSize: 4 }).done();
        uploaded++;
        bytes += file.size;
      } catch (error) {
        if (isTransientS3Error(error)) throw error;
        refused.push({ key, reason: `not uploaded: ${describeError(error)}` });
      }
    }
    options.onProgress?.(++done, files.length);
  });
  return { uploaded, skipped: files.length - uploaded - refused.length, bytes, refused };
}

/** The problem S3 has with `key` before any request: a key longer than it allows. */
export function keyTooLong(key: string): ItemProblem | undefined {
  if (Buffer.byteLength(key) <= S3_KEY_MAX_BYTES) return undefined;
  return { key, reason: `not uploaded: the object key is longer than the ${S3_KEY_MAX_BYTES} bytes S3 allows (shorten the file or folder name)` };
}

async function alreadyThere(present: _Object | undefined, file: DatasetFile): Promise<boolean> {
  if (present === undefined || present.Size !== file.size) return false;
  return (await file.digests()).etags.includes(present.ETag?.replace(/"/g, '') ?? '');
}

/**
 * `submit`'s upload of a folder, symbolic links followed as `aws s3 sync` follows them; one that
 * cannot be followed is refused with its reason (so `submit` starts no run). A `_START` file inside the folder is left out (and named in the
 * result): uploaded with the images it would start a run on a half-uploaded dataset, or a failed
 * run for a marker at the wrong depth. `submit` uploads the marker itself, last.
 */
export async function uploadFolder(
  s3: S3Client,
  options: Omit<UploadFilesOptions, 'files' | 'deleteStale'> & { readonly dir: string },
): Promise<UploadResult & { markersLeftOut: string[]; linksFollowed: number }> {
  const isMarker = (file: DatasetFile) => file.path.split('/').pop() === BUCKET_LAYOUT.startMarker;
  const { files: all, problems, linksFollowed } = readDatasetFolder(resolve(options.dir));
  const result = await uploadFiles(s3, { ...options, files: all.filter((file) => !isMarker(file)) });
  // A link the walk could not follow (dangling, a loop) is a file of the folder not uploaded.
  const unfollowed = problems.map(({ path, reason }) => ({ key: `${options.prefix}${path}`, reason: `not uploaded: ${reason}` }));
  return { ...result, refused: [...unfollowed, ...result.refused], markersLeftOut: all.filter(isMarker).map((file) => file.path), linksFollowed };
}

/** Upload `<prefix>_START`, which makes the upload trigger start a run for the prefix; returns its key. */
export async function uploadStartMarker(s3: S3Client, bucket: string, prefix: string): Promise<string> {
  const key = `${prefix}${BUCKET_LAYOUT.startMarker}`;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '', ContentLength: 0 }));
  return key;
}
