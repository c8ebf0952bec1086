/**
 * The aggregate step's S3 I/O: whole-object reads, small puts, and one streamed multipart upload
 * for features.csv. Transient failures that outlived the SDK's retries become
 * `TransientStorageError` for the state machine to retry; a missing object is reported as such.
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { TransientStorageError } from '../core/contracts';
import { isMissingObjectError, isTransientS3Error } from '../core/s3-client';

export class MissingObjectError extends Error {
  override readonly name = 'MissingObjectError';
}

export function describeError(error: unknown): string {
  const e = error as { name?: string; message?: string };
  return e?.name && e.message ? `${e.name}: ${e.message}` : String(error);
}

function storageError(action: string, error: unknown): Error {
  if (isMissingObjectError(error)) return new MissingObjectError(`${action}: object not found`);
  if (isTransientS3Error(error)) return new TransientStorageError(`${action}: ${describeError(error)}`);
  return error instanceof Error ? error : new Error(`${action}: ${describeError(error)}`);
}

export async function readBytes(s3: S3Client, bucket: string, key: string): Promise<Uint8Array> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!response.Body) return new Uint8Array(0);
    return await response.Body.transformToByteArray();
  } catch (error) {
    throw storageError(`reading s3://${bucket}/${key}`, error);
  }
}

export async function readText(s3: S3Client, bucket: string, key: string): Promise<string> {
  return Buffer.from(await readBytes(s3, bucket, key)).toString('utf8');
}

export async function putObject(s3: S3Client, bucket: string, key: string, body: string | Uint8Array, contentType: string): Promise<void> {
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
  } catch (error) {
    throw storageError(`writing s3://${bucket}/${key}`, error);
  }
}

/** Bytes gathered before a write to the upload stream: fewer, larger writes keep the CPU on PCA. */
const WRITE_CHUNK_BYTES = 1024 * 1024;

/**
 * A text object written as it is produced: a PassThrough stream feeding lib-storage's `Upload`,
 * which sends 8 MiB parts as they fill (a plain PutObject when the whole text is smaller), so the
 * CSV is never held in memory whole. `write` respects back-pressure; `close` waits for S3.
 */
export class StreamedTextUpload {
  private readonly stream = new PassThrough();
  private readonly done: Promise<unknown>;
  private failure: unknown;
  private pending = '';
  readonly location: string;

  constructor(s3: S3Client, bucket: string, key: string, contentType: string) {
    this.location = `s3://${bucket}/${key}`;
    const upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: key, Body: this.stream, ContentType: contentType },
      queueSize: 2,
      partSize: 8 * 1024 * 1024,
      leavePartsOnError: false,
    });
    // Remember a failure at once: a rejected upload would otherwise leave `drain` never firing.
    this.done = upload.done().catch((error: unknown) => {
      this.failure = error;
      this.stream.destroy();
      throw error;
    });
    this.done.catch(() => undefined);
  }

  async write(text: string): Promise<void> {
    this.pending += text;
    if (this.pending.length >= WRITE_CHUNK_BYTES) await this.flush();
  }

  async close(): Promise<void> {
    await this.flush();
    this.stream.end();
    try {
      await this.done;
    } catch (error) {
      throw storageError(`uploading ${this.location}`, error);
    }
  }

  /** Gives up: the multipart upload is aborted and nothing is left behind. */
  abort(): void {
    this.stream.destroy(new Error('upload abandoned'));
  }

  private async flush(): Promise<void> {
    if (this.failure) throw storageError(`uploading ${this.location}`, this.failure);
    if (this.pending === '') return;
    const chunk = this.pending;
    this.pending = '';
    if (!this.stream.write(chunk, 'utf8')) {
      await Promise.race([once(this.stream, 'drain'), this.done]);
      if (this.failure) throw storageError(`uploading ${this.location}`, this.failure);
    }
  }
}
