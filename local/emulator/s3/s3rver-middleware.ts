/**
 * Koa middleware that bring s3rver's request handling in line with S3 where the pipeline would
 * notice the difference (installed by s3-server.ts just before s3rver's router). ListObjectsV2,
 * the largest of these, has its own module.
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { JournaledObjectStore } from './object-store';
import { S3Error, type KoaMiddleware } from './s3rver-models';

/** `/<bucket>/<key>`, the key still percent-encoded. */
const OBJECT_PATH = /^\/([^/]+)\/(.+)$/;

/**
 * s3rver's router matches a key as `/`-separated non-empty segments, so keys such as `a//b` or
 * `/x` never reach it. With its slashes percent-encoded the key is one segment, which the router
 * decodes back to the literal key.
 */
export const keyAsOnePathSegment: KoaMiddleware = async (ctx, next) => {
  const match = OBJECT_PATH.exec(ctx.path);
  if (match && match[2].includes('/')) ctx.path = `/${match[1]}/${match[2].replaceAll('/', '%2F')}`;
  await next();
};

/** What AWS answers a caller without s3:ListBucket that reads a missing key. */
export const missingObjectsAsAccessDenied: KoaMiddleware = async (ctx, next) => {
  try {
    await next();
  } catch (error) {
    if ((ctx.method === 'GET' || ctx.method === 'HEAD') && (error as { code?: string }).code === 'NoSuchKey')
      throw new S3Error('AccessDenied', 'Access Denied');
    throw error;
  }
};

/**
 * AbortMultipartUpload, which s3rver does not route (it answers 405): lib-storage sends it when
 * an upload fails, and S3 then drops the parts. https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html
 */
export function abortMultipartUpload(store: JournaledObjectStore): KoaMiddleware {
  return async (ctx, next) => {
    const uploadId = ctx.query.uploadId;
    const bucket = ctx.method === 'DELETE' && typeof uploadId === 'string' ? OBJECT_PATH.exec(ctx.path)?.[1] : undefined;
    if (bucket === undefined) return next();
    await store.abortUpload(bucket, uploadId as string);
    ctx.status = 204;
  };
}

/** `bytes=<first>-<last>` of x-amz-copy-source-range. */
const COPY_RANGE = /^bytes=(\d+)-(\d+)$/;

/**
 * UploadPartCopy, which s3rver refuses (NotImplemented): a part of a multipart upload copied from
 * a stored object, or a byte range of it, without the bytes passing through the caller (the
 * publish stage joins the groups' CSV parts this way).
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
 */
export function uploadPartCopy(store: JournaledObjectStore): KoaMiddleware {
  return async (ctx, next) => {
    const { uploadId, partNumber } = ctx.query;
    const source = ctx.req.headers['x-amz-copy-source'];
    const bucket = ctx.method === 'PUT' && typeof uploadId === 'string' && typeof source === 'string' ? OBJECT_PATH.exec(ctx.path)?.[1] : undefined;
    if (bucket === undefined) return next();
    const path = decodeURIComponent((source as string).replace(/^\//, '').split('?')[0]);
    const slash = path.indexOf('/');
    const [sourceBucket, sourceKey] = [path.slice(0, slash), path.slice(slash + 1)];
    const rangeHeader = ctx.req.headers['x-amz-copy-source-range'];
    const range = typeof rangeHeader === 'string' ? COPY_RANGE.exec(rangeHeader) : undefined;
    if (range === null) throw new S3Error('InvalidArgument', 'The x-amz-copy-source-range value must be of the form bytes=first-last');
    const object = slash > 0 ? await store.getObject(sourceBucket, sourceKey, range ? { start: Number(range[1]), end: Number(range[2]) } : undefined) : null;
    if (!object) throw new S3Error('NoSuchKey', 'The specified key does not exist.', { Key: sourceKey });
    if (!object.content) throw new S3Error('InvalidRange', 'The requested range is not satisfiable');
    const content = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
    const { md5 } = await store.putPart(bucket, uploadId as string, partNumber as string, content);
    ctx.body = { CopyPartResult: { LastModified: new Date().toISOString(), ETag: `"${md5}"` } };
  };
}

// s3rver's own XML libraries, resolved from where s3rver is installed.
const requireFromS3rver = createRequire(require.resolve('s3rver'));
const { j2xParser } = requireFromS3rver('fast-xml-parser') as { j2xParser: new (options: object) => { parse(body: object): string } };
const he = requireFromS3rver('he') as { escape(text: string): string };

/**
 * s3rver's XML rendering of response bodies, plus what S3 does for keys with line breaks: CR and
 * LF written as character references, since XML parsers turn a literal CR (or CR LF) into LF.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html ("XML related object key constraints")
 * s3rver's own encoder, further out, leaves the rendered string alone.
 */
const xml = new j2xParser({
  ignoreAttributes: false,
  attrNodeName: '@',
  tagValueProcessor: (value: unknown) => he.escape(String(value)).replace(/\r/g, '&#13;').replace(/\n/g, '&#10;'),
});

export const xmlWithLineBreaksEscaped: KoaMiddleware = async (ctx, next) => {
  await next();
  if (ctx.body !== null && typeof ctx.body === 'object' && Object.getPrototypeOf(ctx.body) === Object.prototype) {
    ctx.type = 'application/xml';
    ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n${xml.parse(ctx.body)}`;
  }
};
