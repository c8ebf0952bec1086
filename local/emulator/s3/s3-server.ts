import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../../lambdas/aws/s3-client';
import { listObjectsV2 } from './list-objects-v2';
import type { FolderMount } from './mounted-folder';
import { JournaledObjectStore, type NoSpaceLeft } from './object-store';
import type { KoaMiddleware } from './s3rver-models';
import { abortMultipartUpload, keyAsOnePathSegment, missingObjectsAsAccessDenied, uploadPartCopy, xmlWithLineBreaksEscaped } from './s3rver-middleware';
// s3rver ships no types; its API is small and stable (run/close, `store`, `middleware`).
// eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver is CommonJS without types
const S3rver = require('s3rver');

export interface LocalS3ServerOptions {
  /** Where objects are stored on disk. @default a fresh temporary directory, removed on close */
  readonly directory?: string;
  /** TCP port on 127.0.0.1. @default 0 (any free port) */
  readonly port?: number;
  /** Buckets to create once the server is up. @default none */
  readonly buckets?: readonly string[];
  /**
   * How a GET or HEAD of a missing key is answered. AWS answers 404 NoSuchKey only to a caller
   * allowed s3:ListBucket, and 403 AccessDenied otherwise, which is what the pipeline's Lambda
   * roles get (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html).
   * @default 'NoSuchKey'
   */
  readonly missingObjectAnswer?: 'NoSuchKey' | 'AccessDenied';
}

export interface LocalS3Server {
  readonly endpoint: string;
  readonly directory: string;
  /** Environment that points `createS3Client` (and so every handler) at this server. */
  readonly env: Record<string, string>;
  readonly client: S3Client;
  /**
   * Serve a folder's files read-only under `mount.prefix` of `bucket`, without copying them
   * (mounted-folder.ts); returns the number of keys served. Lasts until the server closes.
   */
  mountFolder(bucket: string, mount: FolderMount): number;
  /** The last write the store could not make for want of disk space (object-store.ts). */
  noSpaceLeft(): NoSpaceLeft | undefined;
  close(): Promise<void>;
}

/**
 * An S3-compatible server on loopback: the embedded default's storage and the tests'. s3rver
 * parses requests and writes S3's XML; objects live in our JournaledObjectStore, which lists in
 * S3's order and takes any key S3 takes.
 */
export async function startLocalS3Server(options: LocalS3ServerOptions = {}): Promise<LocalS3Server> {
  const ownsDirectory = options.directory === undefined;
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'fruits-s3-'));
  const store = await JournaledObjectStore.open(directory);
  const server = new S3rver({ address: '127.0.0.1', port: options.port ?? 0, directory, silent: true });
  // s3rver's controllers reach the store as `ctx.store` and `ctx.app.store`.
  server.store = server.context.store = store;
  const ours: KoaMiddleware[] = [
    xmlWithLineBreaksEscaped,
    keyAsOnePathSegment,
    ...(options.missingObjectAnswer === 'AccessDenied' ? [missingObjectsAsAccessDenied] : []),
    abortMultipartUpload(store),
    uploadPartCopy(store),
    listObjectsV2(store),
  ];
  // Just before s3rver's router: after its host-style bucket rewrite, around its controllers.
  const middleware = server.middleware as unknown[];
  const routerAt = middleware.findIndex((layer) => (layer as { router?: unknown }).router !== undefined);
  if (routerAt < 0) throw new Error('s3rver has no router middleware to put ours before: its internals changed');
  middleware.splice(routerAt, 0, ...ours);
  // s3rver formats a log line for every request (koa-logger, colours included) even when silent,
  // and winston then drops it: about 6% of a GET's CPU, on the cores the handlers need.
  const requestLogger = middleware.findIndex((layer) => (layer as { name?: string }).name === 'logger');
  if (requestLogger >= 0) middleware.splice(requestLogger, 1);
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
    mountFolder: (bucket, mount) => store.mountFolder(bucket, mount),
    noSpaceLeft: () => store.noSpaceLeft(),
    async close() {
      client.destroy();
      await server.close();
      await store.close();
      if (ownsDirectory) rmSync(directory, { recursive: true, force: true });
    },
  };
}
