import crypto from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../lambdas/core/s3-client';
// s3rver ships no types; its API is small and stable (run/close).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver');

export interface LocalS3ServerOptions {
  /** Where objects are stored on disk. @default a fresh temporary directory, removed on close */
  readonly directory?: string;
  /** TCP port on 127.0.0.1. @default 0 (any free port) */
  readonly port?: number;
  /** Buckets to create once the server is up. @default none */
  readonly buckets?: readonly string[];
}

export interface LocalS3Server {
  readonly endpoint: string;
  readonly directory: string;
  /** Environment that points `createS3Client` (and so every handler) at this server. */
  readonly env: Record<string, string>;
  readonly client: S3Client;
  close(): Promise<void>;
}

/** An S3-compatible server (s3rver) on loopback: the embedded default's storage and the tests'. */
export async function startLocalS3Server(options: LocalS3ServerOptions = {}): Promise<LocalS3Server> {
  allowS3rverContinuationTokens();
  const ownsDirectory = options.directory === undefined;
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'fruits-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: options.port ?? 0, directory, silent: true });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const env = { S3_ENDPOINT: endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  const client = createS3Client(env);
  for (const bucket of options.buckets ?? []) {
    await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((error: Error) => {
      if (error.name !== 'BucketAlreadyOwnedByYou' && error.name !== 'BucketAlreadyExists') throw error;
    });
  }
  return {
    endpoint,
    directory,
    env,
    client,
    async close() {
      client.destroy();
      await server.close();
      if (ownsDirectory) rmSync(directory, { recursive: true, force: true });
    },
  };
}

/**
 * s3rver encrypts ListObjectsV2 continuation tokens with single DES, which OpenSSL 3 (Node >= 17)
 * no longer provides: every listing longer than one page (1,000 keys) fails with a 500. Route
 * s3rver's `des` calls to AES-128-CBC with the 8-byte key and IV doubled: the token stays opaque
 * and round-trips, which is all S3 promises. Nothing else in the process asks for single DES.
 */
function allowS3rverContinuationTokens(): void {
  const mutable = crypto as unknown as Record<string, unknown>;
  if (mutable.__s3rverDesPatched) return;
  const createCipheriv = crypto.createCipheriv;
  const createDecipheriv = crypto.createDecipheriv;
  const widen = (bytes: crypto.BinaryLike | crypto.CipherKey | null): Buffer => {
    const buffer = Buffer.from(bytes as Buffer);
    return Buffer.concat([buffer, buffer]);
  };
  mutable.createCipheriv = (algorithm: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, opts?: unknown) =>
    algorithm === 'des'
      ? createCipheriv('aes-128-cbc', widen(key), widen(iv))
      : (createCipheriv as (...args: unknown[]) => unknown)(algorithm, key, iv, opts);
  mutable.createDecipheriv = (algorithm: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, opts?: unknown) =>
    algorithm === 'des'
      ? createDecipheriv('aes-128-cbc', widen(key), widen(iv))
      : (createDecipheriv as (...args: unknown[]) => unknown)(algorithm, key, iv, opts);
  mutable.__s3rverDesPatched = true;
}
