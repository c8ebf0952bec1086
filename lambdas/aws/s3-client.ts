import { GetObjectCommand, HeadObjectCommand, paginateListObjectsV2, PutObjectCommand, S3Client, S3ClientConfig, type _Object } from '@aws-sdk/client-s3';
import { TransientStorageError } from '../contracts/events';
import { mapWithConcurrency } from '../common/concurrency';

/**
 * One S3 client factory for Lambda, the local runner and tests.
 *
 * `S3_ENDPOINT` points the client at an S3-compatible server (the local runner's, or a test's on
 * loopback); path-style addressing is then required because such servers have no per-bucket DNS.
 * Flexible checksums are only sent when an operation requires them: third-party servers do not
 * all understand the `aws-chunked` trailer encoding that the SDK otherwise uses for uploads.
 */
export function createS3Client(env: NodeJS.ProcessEnv = process.env, overrides: S3ClientConfig = {}): S3Client {
  const endpoint = env.S3_ENDPOINT;
  const config: S3ClientConfig = {
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 5,
  };
  if (endpoint) {
    Object.assign(config, {
      endpoint,
      forcePathStyle: true,
      region: env.AWS_REGION ?? 'us-east-1',
      credentials: {
        accessKeyId: env.AWS_ACCESS_KEY_ID ?? 'S3RVER',
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? 'S3RVER',
      },
    });
  }
  return new S3Client({ ...config, ...overrides });
}

/** Error names S3 and the SDK use for throttling and server-side trouble worth retrying later. */
const TRANSIENT_S3_ERRORS = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  'NetworkingError',
]);
const TRANSIENT_NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_SOCKET']);

/**
 * True for failures that a later attempt may not see (5xx, throttling, connection trouble): by
 * the time this is asked the SDK's own retries are spent, so the caller hands it to the state
 * machine's retry (`TransientStorageError`) instead of failing an item.
 */
export function isTransientS3Error(error: unknown): boolean {
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown; cause?: unknown };
  if (!e || typeof e !== 'object') return false;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  if (e.name && TRANSIENT_S3_ERRORS.has(e.name)) return true;
  if (e.code && TRANSIENT_NETWORK_CODES.has(e.code)) return true;
  if (e.$retryable) return true;
  // The SDK may wrap a socket error into a plain Error whose message alone keeps the code
  // (its \`instanceof Error\` check fails for errors from another realm, e.g. under jest).
  const message = (error as { message?: unknown }).message;
  if (typeof message === 'string' && [...TRANSIENT_NETWORK_CODES].some((code) => message.includes(code))) return true;
  return e.cause !== undefined && e.cause !== error && isTransientS3Error(e.cause);
}

/** True when the object is gone (deleted between listing and reading). */
export function isMissingObjectError(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/**
 * True for 403 AccessDenied. On a read, that is how S3 answers a missing key to a caller without
 * s3:ListBucket, which the pipeline's Lambda roles are not granted:
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
 */
export function isAccessDeniedError(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  // A HEAD answer has no body: the SDK names its 403 by the status, Forbidden.
  return name === 'AccessDenied' || name === 'Forbidden';
}

/** Every object under `prefix`, all pages (the SDK's paginator follows the continuation tokens). */
export async function listAllObjects(s3: S3Client, bucket: string, prefix: string): Promise<_Object[]> {
  const objects: _Object[] = [];
  for await (const page of paginateListObjectsV2({ client: s3 }, { Bucket: bucket, Prefix: prefix })) objects.push(...(page.Contents ?? []));
  return objects;
}

/*
 * Whole-object reads and small puts for the handlers and tools. Transient failures that outlived
 * the SDK's retries become `TransientStorageError` for the state machine to retry; a missing
 * object is reported as such.
 */

export class MissingObjectError extends Error {
  override readonly name = 'MissingObjectError';
  /** True when S3 answered 403 AccessDenied, which is how it answers a missing key to a reader without s3:ListBucket. */
  constructor(
    message: string,
    readonly accessDenied = false,
  ) {
    super(message);
  }
}

export function describeError(error: unknown): string {
  const e = error as { name?: string; message?: string };
  return e?.name && e.message ? `${e.name}: ${e.message}` : String(error);
}

/** `operation`: a refused read most likely means a missing key (see isAccessDeniedError); a refused write does not. */
export function storageError(action: string, error: unknown, operation: 'read' | 'write' = 'write'): Error {
  if (isMissingObjectError(error)) return new MissingObjectError(`${action}: object not found`);
  if (operation === 'read' && isAccessDeniedError(error)) return new MissingObjectError(`${action}: object missing or not readable (403 AccessDenied)`, true);
  if (isTransientS3Error(error)) return new TransientStorageError(`${action}: ${describeError(error)}`);
  return error instanceof Error ? error : new Error(`${action}: ${describeError(error)}`);
}

export async function readBytes(s3: S3Client, bucket: string, key: string): Promise<Uint8Array> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!response.Body) return new Uint8Array(0);
    return await response.Body.transformToByteArray();
  } catch (error) {
    throw storageError(`reading s3://${bucket}/${key}`, error, 'read');
  }
}

/** The size of the object at `key`, from a HEAD (no bytes read); a missing key is a `MissingObjectError`, as on a read. */
export async function objectSize(s3: S3Client, bucket: string, key: string): Promise<number> {
  try {
    return (await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ContentLength ?? 0;
  } catch (error) {
    throw storageError(`reading s3://${bucket}/${key}`, error, 'read');
  }
}

/** HEADs in flight in `objectSizes`. */
const HEADS_IN_FLIGHT = 16;

/** The size of each object of `keys`, in order, undefined for a missing one (a HEAD each, `HEADS_IN_FLIGHT` at once). */
export async function objectSizes(s3: S3Client, bucket: string, keys: readonly string[]): Promise<(number | undefined)[]> {
  return mapWithConcurrency(keys, HEADS_IN_FLIGHT, async (key) => {
    try {
      return await objectSize(s3, bucket, key);
    } catch (error) {
      if (error instanceof MissingObjectError) return undefined;
      throw error;
    }
  });
}

export async function readText(s3: S3Client, bucket: string, key: string): Promise<string> {
  return Buffer.from(await readBytes(s3, bucket, key)).toString('utf8');
}

export async function putObject(s3: S3Client, bucket: string, key: string, body: string | Uint8Array, contentType: string): Promise<void> {
  try {
    // The length stated up front: the SDK cannot measure an empty string body and would send it as a stream of unknown length.
    const contentLength = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType, ContentLength: contentLength }));
  } catch (error) {
    throw storageError(`writing s3://${bucket}/${key}`, error);
  }
}

/** A JSON object parsed, or undefined when it cannot be read or parsed (an optional output). */
export async function readJsonIfPresent<T>(s3: S3Client, bucket: string, key: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readText(s3, bucket, key)) as T;
  } catch {
    return undefined;
  }
}
