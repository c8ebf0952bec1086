/**
 * One object joined from a head and stored objects, in order, by S3 itself (features.csv from its
 * header and the groups' rows): a multipart upload whose first part is uploaded (the head and the
 * first object's bytes) and whose every other part S3 copies from its object (UploadPartCopy), so
 * the caller reads one object whatever the number of parts.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { mapWithConcurrency } from '../common/concurrency';
import { objectSize, readBytes, storageError } from './s3-client';

/**
 * S3's multipart limits: every part but the last at least 5 MiB, at most 10,000 parts.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
 */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
export const MAX_PARTS = 10_000;

/** Part copies in flight: each is one request that S3 serves on its side. */
const COPIES_IN_FLIGHT = 4;

/**
 * `head` then `sources` joined into `key` by part copies, when S3 allows it: at least two sources,
 * each but the last at least `MIN_PART_BYTES`. Returns false, having written nothing, when it does
 * not (the caller joins them through memory); a failure aborts the upload, leaving no parts.
 */
export async function joinByPartCopy(
  s3: S3Client,
  bucket: string,
  key: string,
  head: string,
  sources: readonly string[],
  contentType: string,
): Promise<boolean> {
  if (sources.length < 2 || sources.length > MAX_PARTS) return false;
  const sizes = await mapWithConcurrency(sources.slice(0, -1), COPIES_IN_FLIGHT, (source) => objectSize(s3, bucket, source));
  if (sizes.some((size) => size < MIN_PART_BYTES)) return false;

  const where = `s3://${bucket}/${key}`;
  let uploadId: string | undefined;
  try {
    uploadId = (await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: contentType }))).UploadId!;
    const first = Buffer.concat([Buffer.from(head, 'utf8'), await readBytes(s3, bucket, sources[0])]);
    const firstPart = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: 1, Body: first }));
    const rest = sources.slice(1).map((source, i) => ({ source, PartNumber: i + 2 }));
    const copied = await mapWithConcurrency(rest, COPIES_IN_FLIGHT, async ({ source, PartNumber }) => {
      const copy = await s3.send(
        new UploadPartCopyCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber, CopySource: copySource(bucket, source) }),
      );
      return { PartNumber, ETag: copy.CopyPartResult!.ETag! };
    });
    const Parts = [{ PartNumber: 1, ETag: firstPart.ETag! }, ...copied];
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts } }));
    return true;
  } catch (error) {
    if (uploadId) await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
    throw storageError(`joining ${where} by part copies`, error);
  }
}

/** `bucket/key`, URL-encoded as the x-amz-copy-source header wants it (slashes kept). */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${encodeURIComponent(key).replaceAll('%2F', '/')}`;
}
