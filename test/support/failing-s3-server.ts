/**
 * An S3 endpoint on loopback that answers as the test says: throttling (503 SlowDown), 5xx, or
 * plain bytes, per method and key. The real SDK client talks to it over real HTTP, so its retries,
 * error parsing and the code's error classes are what run, not a hand-made `{ send }`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { createS3Client } from '../../lambdas/aws/s3-client';

/** An error answer carries S3's XML error body with `code`; otherwise `body` (empty by default) with an ETag. */
export interface S3Answer {
  readonly status: number;
  readonly code?: string;
  readonly message?: string;
  readonly body?: Buffer | string;
}

export interface FailingS3Server {
  readonly endpoint: string;
  /** Requests seen, per HTTP method. */
  readonly calls: Record<string, number>;
  /** Every request, in order: method and object key (path-style, bucket left out). */
  readonly requests: { method: string; key: string }[];
  /** The project's S3 client (lambdas/aws/s3-client.ts) pointed at this server. */
  client(overrides?: S3ClientConfig): S3Client;
  close(): Promise<void>;
}

export const SLOW_DOWN: S3Answer = { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' };

export async function startFailingS3Server(answer: (method: string, key: string) => S3Answer): Promise<FailingS3Server> {
  const calls: Record<string, number> = {};
  const requests: { method: string; key: string }[] = [];
  const server = http.createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      const method = request.method ?? 'GET';
      const key = decodeURIComponent((request.url ?? '').split('?')[0].split('/').slice(2).join('/'));
      calls[method] = (calls[method] ?? 0) + 1;
      requests.push({ method, key });
      const { status, code, message, body } = answer(method, key);
      if (code) {
        response.writeHead(status, { 'content-type': 'application/xml' }).end(`<Error><Code>${code}</Code><Message>${message ?? code}</Message></Error>`);
      } else {
        const bytes = typeof body === 'string' ? Buffer.from(body) : (body ?? Buffer.alloc(0));
        response.writeHead(status, { 'content-length': bytes.length, etag: '"e"' }).end(bytes);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    calls,
    requests,
    client: (overrides = {}) => createS3Client({ S3_ENDPOINT: endpoint }, overrides),
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}
