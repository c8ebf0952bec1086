/**
 * ListObjectsV2 answered from our object store, ahead of s3rver's own handler, which pages
 * unlike S3: its continuation token is the page's last key DES-encrypted (a cipher OpenSSL 3 no
 * longer has) and parsed back with a regex that fails on keys with CR or LF; it counts only keys
 * towards MaxKeys (S3 counts common prefixes too) and fails on a page ending in a common prefix.
 * Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
 */
import type { JournaledObjectStore } from './object-store';
import { DUMMY_ACCOUNT, S3Error, type KoaContext, type KoaMiddleware } from './s3rver-models';
import { positionAfterKey } from './utf8-key-index';

/** S3 returns at most 1,000 keys per page, whatever MaxKeys asks for. */
const PAGE_LIMIT = 1000;

/** The middleware; put it after s3rver's XML encoder (it answers with a plain object) and before its router. */
export function listObjectsV2(store: JournaledObjectStore): KoaMiddleware {
  return async (ctx, next) => {
    const bucket = ctx.method === 'GET' && ctx.query['list-type'] === '2' ? /^\/([^/]+)\/?$/.exec(ctx.path)?.[1] : undefined;
    if (bucket === undefined) return next();
    if (!(await store.getBucket(bucket))) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket });
    const param = (name: string) => queryParam(ctx, name);
    const prefix = param('prefix') ?? '';
    const delimiter = param('delimiter') || undefined;
    const token = param('continuation-token') || undefined;
    const startAfter = param('start-after') || undefined;
    // A continuation token supersedes start-after.
    const startAt = token !== undefined ? decodeContinuationToken(token, bucket) : startAfter !== undefined ? positionAfterKey(startAfter) : undefined;
    const page = store.listPage(bucket, { prefix, delimiter, startAt, maxKeys: parseMaxKeys(param('max-keys')) });
    const fetchOwner = param('fetch-owner') === 'true';
    ctx.body = {
      ListBucketResult: {
        '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' },
        Name: bucket,
        Prefix: prefix,
        StartAfter: token === undefined ? startAfter : undefined,
        ContinuationToken: token,
        NextContinuationToken: page.isTruncated ? encodeContinuationToken(bucket, page.nextStartAt!) : undefined,
        KeyCount: page.objects.length + page.commonPrefixes.length,
        MaxKeys: param('max-keys') ?? PAGE_LIMIT,
        Delimiter: delimiter,
        IsTruncated: page.isTruncated,
        Contents: page.objects.map((object) => ({
          Key: object.key,
          LastModified: object.lastModifiedDate.toISOString(),
          ETag: object.metadata.etag,
          Size: object.size,
          Owner: fetchOwner ? { ID: DUMMY_ACCOUNT.id, DisplayName: DUMMY_ACCOUNT.displayName } : undefined,
          StorageClass: 'STANDARD',
        })),
        CommonPrefixes: page.commonPrefixes.map((commonPrefix) => ({ Prefix: commonPrefix })),
      },
    };
  };
}

/** An opaque token naming the bucket and the byte position the next page starts at: any key round-trips. */
function encodeContinuationToken(bucket: string, startAt: Buffer): string {
  return Buffer.from(JSON.stringify({ bucket, startAt: startAt.toString('base64') })).toString('base64');
}

function decodeContinuationToken(token: string, bucket: string): Buffer {
  try {
    const decoded = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { bucket?: unknown; startAt?: unknown };
    if (decoded.bucket === bucket && typeof decoded.startAt === 'string') return Buffer.from(decoded.startAt, 'base64');
  } catch {
    // Not one of ours: answered below as S3 does.
  }
  throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect', { ArgumentName: 'continuation-token' });
}

/** MaxKeys as S3 validates it, capped at 1,000; 0 lists nothing. */
function parseMaxKeys(value: string | undefined): number {
  if (value === undefined) return PAGE_LIMIT;
  const maxKeys = Number(value);
  if (!/^-?\d+$/.test(value) || maxKeys < 0 || maxKeys > 2147483647) {
    throw new S3Error('InvalidArgument', 'Argument maxKeys must be an integer between 0 and 2147483647', { ArgumentName: 'maxKeys', ArgumentValue: value });
  }
  return Math.min(PAGE_LIMIT, maxKeys);
}

function queryParam(ctx: KoaContext, name: string): string | undefined {
  const value = ctx.query[name];
  return typeof value === 'string' ? value : undefined;
}
