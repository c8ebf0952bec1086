/**
 * The aggregate step's streamed multipart uploads (features.csv and .parquet, predictions.csv,
 * embeddings.parquet). Whole-object reads and small puts are shared with the other handlers in
 * `./s3-client.ts`.
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { storageError } from './s3-client';

/** Bytes gathered before a write to the upload stream: fewer, larger writes keep the CPU on PCA. */
const WRITE_CHUNK_BYTES = 1024 * 1024;

/**
 * An object written as it is produced: a PassThrough stream feeding lib-storage's `Upload`,
 * which sends 8 MiB parts as they fill (a plain PutObject when the whole object is smaller), so a
 * table is never held in memory whole. `write` respects back-pressure; `close` waits for S3.
 */
export class StreamedUpload {
  private readonly stream = new PassThrough();
  private readonly done: Promise<unknown>;
  private failure: unknown;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
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

  async write(chunk: string | Uint8Array): Promise<void> {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= WRITE_CHUNK_BYTES) await this.flush();
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
    if (this.pendingBytes === 0) return;
    const chunk = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.stream.write(chunk)) {
      await Promise.race([once(this.stream, 'drain'), this.done]);
      if (this.failure) throw storageError(`uploading ${this.location}`, this.failure);
    }
  }
}
