/**
 * The parts of s3rver's internals our object store and middleware speak: its error type (which
 * its error handler renders as S3's XML error body with the right status), its object and bucket
 * models (what its controllers read), its tag/CORS/website config models, its dummy account and
 * the Koa context it hands middleware. s3rver ships no types; these are the shapes it uses.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';

/** The few members of a Koa context our middleware touch. */
export interface KoaContext {
  readonly method: string;
  /** The raw (still percent-encoded) path; assigning it rewrites the URL. */
  path: string;
  readonly query: Record<string, string | string[] | undefined>;
  readonly req: IncomingMessage;
  body: unknown;
  status: number;
  type: string;
}

export type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

/* eslint-disable @typescript-eslint/no-require-imports -- s3rver's internal models: CommonJS without types, typed here */

export interface S3ErrorInstance extends Error {
  readonly code: string;
  readonly status: number;
}

/** `new S3Error(code, message, detail)`: status comes from the code, as in S3's error table. */
export const S3Error: new (code: string, message?: string, detail?: Record<string, unknown>) => S3ErrorInstance = require('s3rver/lib/models/error');

/** Object headers s3rver keeps (content-type, cache-control, ...); x-amz-meta-* are kept too. */
export type ObjectMetadata = Record<string, string>;

export interface S3ObjectInstance {
  readonly bucket: string;
  readonly key: string;
  content: Readable | Buffer | null;
  readonly metadata: ObjectMetadata;
  range?: { start: number; end: number };
  readonly size: number;
  readonly lastModifiedDate: Date;
}

/** Picks the allowed metadata out of `metadata` (request headers or stored values). */
export const S3Object: new (
  bucket: string,
  key: string,
  content: Readable | Buffer | null,
  metadata: Record<string, unknown>,
) => S3ObjectInstance = require('s3rver/lib/models/object');

/** Headers that are object metadata, beside x-amz-meta-*. */
export const ALLOWED_METADATA: readonly string[] = require('s3rver/lib/models/object').ALLOWED_METADATA;

export interface S3BucketInstance {
  readonly name: string;
  readonly creationDate: Date;
}

export const S3Bucket: new (name: string, creationDate: Date) => S3BucketInstance = require('s3rver/lib/models/bucket');

/** A bucket's CORS/website config or an object's tag set, as s3rver's controllers hand it over. */
export interface SubresourceConfig {
  readonly type: string;
  toXML(space?: number): string;
}

export const getConfigModel: (type: string) => (new (xml: string) => SubresourceConfig) | undefined = require('s3rver/lib/models/config').getConfigModel;

export const DUMMY_ACCOUNT: { readonly id: number; readonly displayName: string } = require('s3rver/lib/models/account').DUMMY_ACCOUNT;
