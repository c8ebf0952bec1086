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
