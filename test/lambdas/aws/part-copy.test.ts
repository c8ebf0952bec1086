import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, GetObjectCommand, PutObjectCommand, UploadPartCopyCommand } from '@aws-sdk/client-s3';
import { joinByPartCopy, MIN_PART_BYTES } from '../../../lambdas/aws/part-copy';
import { MissingObjectError, readBytes } from '../../../lambdas/aws/s3-client';
import { startLocalS3Server, type LocalS3Server } from '../../../local/emulator/s3/s3-server';

const BUCKET = 'part-copy';

describe('joining objects by part copies (UploadPartCopy), against the local S3 server', () => {
  let s3: LocalS3Server;
  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: [BUCKET] });
  });
  afterAll(() => s3.close());

  const put = (key: string, body: Uint8Array) => s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  const filled = (bytes: number, seed: number) => Buffer.from(Uint8Array.from({ length: bytes }, (_, i) => (i * 31 + seed) % 251));

  it('writes the head then every source, in order, byte for byte', async () => {
    const sources = [filled(MIN_PART_BYTES + 3, 1), filled(MIN_PART_BYTES, 2), filled(1000, 3)];
    const keys = ['work/part 0.csv', 'work/part+1.csv', 'work/part-2.csv'];
    for (const [i, key] of keys.entries()) await put(key, sources[i]);
    const head = 'key,label,pc_1\r\n';
    expect(await joinByPartCopy(s3.client, BUCKET, 'results/features.csv', head, keys, 'text/csv')).toBe(true);
    const joined = Buffer.from(await readBytes(s3.client, BUCKET, 'results/features.csv'));
    expect(joined.equals(Buffer.concat([Buffer.from(head), ...sources]))).toBe(true);
    const got = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'results/features.csv' }));
    expect(got.ContentType).toBe('text/csv');
    expect(got.ETag).toMatch(/-3"$/);
  });

  it('writes nothing and says so when a source before the last is smaller than a part may be, or there is one source', async () => {
    await put('small/a', filled(MIN_PART_BYTES + 1, 4));
    await put('small/b', filled(10, 5));
    await put('small/c', filled(MIN_PART_BYTES + 1, 6));
    expect(await joinByPartCopy(s3.client, BUCKET, 'small/joined', 'h', ['small/a', 'small/b', 'small/c'], 'text/csv')).toBe(false);
    expect(await joinByPartCopy(s3.client, BUCKET, 'small/joined', 'h', ['small/a'], 'text/csv')).toBe(false);
    await expect(readBytes(s3.client, BUCKET, 'small/joined')).rejects.toThrow(MissingObjectError);
  });

  it('fails, leaving no object, when a source vanished after it was sized', async () => {
    await put('gone/a', filled(MIN_PART_BYTES, 7));
    await expect(joinByPartCopy(s3.client, BUCKET, 'gone/joined', 'h', ['gone/a', 'gone/missing'], 'text/csv')).rejects.toThrow();
    await expect(readBytes(s3.client, BUCKET, 'gone/joined')).rejects.toThrow(MissingObjectError);
  });

  it('copies a byte range of an object as a part (x-amz-copy-source-range)', async () => {
    const source = filled(MIN_PART_BYTES + 100, 8);
    await put('range/source', source);
    const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'range/joined' }));
    const first = await s3.client.send(
      new UploadPartCopyCommand({ Bucket: BUCKET, Key: 'range/joined', UploadId, PartNumber: 1, CopySource: `${BUCKET}/range/source` }),
    );
    const second = await s3.client.send(
      new UploadPartCopyCommand({
        Bucket: BUCKET,
        Key: 'range/joined',
        UploadId,
        PartNumber: 2,
        CopySource: `${BUCKET}/range/source`,
        CopySourceRange: 'bytes=10-19',
      }),
    );
    await s3.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: 'range/joined',
        UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: first.CopyPartResult!.ETag },
            { PartNumber: 2, ETag: second.CopyPartResult!.ETag },
          ],
        },
      }),
    );
    const joined = Buffer.from(await readBytes(s3.client, BUCKET, 'range/joined'));
    expect(joined.equals(Buffer.concat([source, source.subarray(10, 20)]))).toBe(true);
  });
});
