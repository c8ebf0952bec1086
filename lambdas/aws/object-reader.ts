/**
 * Whole-object GETs for the featurize path: signed by the SDK's own SigV4 signer with the S3
 * client's own region and credentials, sent with Node's http(s) on a keep-alive agent.
 *
 * Why not `s3.send(new GetObjectCommand(...))`: for a 5 KB photo the SDK's middleware stack,
 * endpoint rules and response handling cost about 0.9 ms of CPU per object, more than decoding it
 * (1.1 ms per GET client + server against 0.3 ms this way, side by side on the local S3 server);
 * at one GET per image the SDK's path would be the largest cost around the model (docs/BENCHMARKS.md).
 * Failures keep the SDK's shape (`name` = S3's error code, `$metadata.httpStatusCode`), so the
 * same `isMissingObjectError` / `isAccessDeniedError` / `isTransientS3Error` classify them, and
 * transient ones are retried here as the client would (its `maxAttempts`, backoff).
 *
 * Not traced per object by X-Ray (the tracer captures the SDK client only): the batch's own
 * subsegment and metrics still time the reads.
 */
import http from 'node:http';
import https from 'node:https';
import type { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';

export type ObjectRead = { readonly bytes: Uint8Array } | { readonly tooLarge: number };

/** RFC 3986 unreserved characters stay; everything else is percent-encoded, `/` between segments kept. */
function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** An error shaped like the SDK's: `name` is S3's code, `$metadata.httpStatusCode` the status. */
function s3Error(status: number, body: string): Error {
  const code = /<Code>([^<]+)<\/Code>/.exec(body)?.[1] ?? (status === 404 ? 'NotFound' : status === 403 ? 'AccessDenied' : `Http${status}`);
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1] ?? `HTTP ${status}`;
  return Object.assign(new Error(message), { name: code, $metadata: { httpStatusCode: status } });
}

const RETRYABLE_STATUS = (status: number) => status >= 500 || status === 429;
const RETRYABLE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND']);

const readers = new WeakMap<S3Client, ObjectReader>();

/** One reader (and keep-alive agents) per S3 client. */
export function objectReaderFor(s3: S3Client): ObjectReader {
  let reader = readers.get(s3);
  if (!reader) readers.set(s3, (reader = new ObjectReader(s3)));
  return reader;
}

export class ObjectReader {
  private readonly signer: SignatureV4;
  private readonly agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };

  /** Reads through `s3`'s endpoint, addressing style, region, credentials and attempt count. */
  constructor(private readonly s3: S3Client) {
    const config = s3.config;
    this.signer = new SignatureV4({
      service: 's3',
      region: config.region,
      credentials: config.credentials,
      // The client's own SHA-256 (node:crypto in Node), as its requests are signed with.
      sha256: config.sha256,
      // S3 signs the path as sent (no second encoding), and keys are encoded once above.
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  /** The object's bytes, or its size when it is above `maxBytes` (the body is then not read). */
  async read(bucket: string, key: string, maxBytes: number): Promise<ObjectRead> {
    const attempts = Math.max(1, Number(await this.s3.config.maxAttempts()) || 1);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.readOnce(bucket, key, maxBytes);
      } catch (error) {
        const e = error as { code?: string; $metadata?: { httpStatusCode?: number } };
        const status = e.$metadata?.httpStatusCode;
        const retryable = (status !== undefined && RETRYABLE_STATUS(status)) || (e.code !== undefined && RETRYABLE_CODES.has(e.code));
        if (!retryable || attempt >= attempts) throw error;
        // Full jitter, as the SDK's standard retry strategy: up to 100 ms x 2^attempt.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 100 * 2 ** attempt));
      }
    }
  }

  private async readOnce(bucket: string, key: string, maxBytes: number): Promise<ObjectRead> {
    const config = this.s3.config;
    const custom = config.isCustomEndpoint && config.endpoint ? await config.endpoint() : undefined;
    const region = await config.region();
    const protocol = (custom?.protocol ?? 'https:') as 'http:' | 'https:';
    const pathStyle = custom !== undefined || config.forcePathStyle === true;
    const hostname = custom?.hostname ?? (pathStyle ? `s3.${region}.amazonaws.com` : `${bucket}.s3.${region}.amazonaws.com`);
    const port = custom?.port;
    const prefix = custom?.path && custom.path !== '/' ? custom.path.replace(/\/$/, '') : '';
    const path = `${prefix}${pathStyle ? `/${encodeKey(bucket)}` : ''}/${encodeKey(key)}`;
    const host = port ? `${hostname}:${port}` : hostname;
    const signed = await this.signer.sign({
      method: 'GET',
      protocol,
      hostname,
      port,
      path,
      query: {},
      headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    });
    const transport = protocol === 'http:' ? http : https;
    return new Promise<ObjectRead>((resolve, reject) => {
      const request = transport.get({ protocol, hostname, port, path, headers: signed.headers, agent: this.agents[protocol] }, (response) => {
        const status = response.statusCode ?? 0;
        const length = Number(response.headers['content-length']);
        if (status === 200 && Number.isFinite(length) && length > maxBytes) {
          response.destroy();
          resolve({ tooLarge: length });
          return;
        }
        const chunks: Buffer[] = [];
        let received = 0;
        response.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (status === 200 && received > maxBytes) {
            response.destroy();
            resolve({ tooLarge: received });
          } else chunks.push(chunk);
        });
        response.on('error', reject);
        response.on('end', () => {
          const body = Buffer.concat(chunks);
          if (status === 200) resolve({ bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) });
          else reject(s3Error(status, body.toString('utf8')));
        });
      });
      request.on('error', reject);
    });
  }
}
