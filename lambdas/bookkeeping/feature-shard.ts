/**
 * Feature shard: one binary object per Distributed Map batch, holding the batch's feature
 * vectors and everything needed to account for each of its images.
 *
 * Layout (little-endian):
 *   bytes 0..3   magic "FSH1"
 *   bytes 4..7   uint32 header length H (bytes of UTF-8 JSON)
 *   bytes 8..    header JSON (ShardHeader), space-padded so the vectors start 4-byte aligned
 *   then         count x dim float32, row-major, in the order of header.keys, then (when the
 *                header has `fieldCopies`) one row per copy, in the order of fieldCopies.keys
 *
 * The header is JSON so a person can `head -c` a shard; the vectors are raw float32 so the
 * aggregator reads them with one Float32Array view, no parsing.
 */
import type { ItemProblem } from '../contracts/events';

const SHARD_MAGIC = 'FSH1';

export interface ShardHeader {
  /** Featurizer id, e.g. `mobilenet_v1_0.25_224@224` or `pixels-16x16`. */
  featurizer: string;
  /** Length of each feature vector. */
  dim: number;
  /** Object keys of the featurized images, exactly as listed (no decoding). */
  keys: string[];
  /** Label of each image (its parent folder name), parallel to `keys`. */
  labels: string[];
  /** Images of the batch that failed, with the reason. */
  failed: ItemProblem[];
  /** Keys of the batch that are not images to featurize, with the reason. */
  skipped: ItemProblem[];
  /** Free-form facts about how the shard was made (backend, image size, timings). */
  meta?: Record<string, unknown>;
  /**
   * Altered copies of some Training images of the batch (lambdas/featurize/field-copies.ts), for
   * the classifier's statistics only: not images of the input, never rows of the features table,
   * never counted. Their vectors follow the images'.
   */
  fieldCopies?: FieldCopyRows;
}

/** Which image each copy row was made from, its label and the field condition applied. */
export interface FieldCopyRows {
  keys: string[];
  labels: string[];
  conditions: string[];
}

/** Rows of vectors the shard holds: its images, then its field copies. */
export function shardRows(header: ShardHeader): number {
  return header.keys.length + (header.fieldCopies?.keys.length ?? 0);
}

export interface FeatureShard {
  header: ShardHeader;
  /** count x dim, row-major. */
  vectors: Float32Array;
}

export function encodeFeatureShard(shard: FeatureShard): Buffer {
  const { header, vectors } = shard;
  if (header.keys.length !== header.labels.length) throw new Error('shard keys and labels differ in length');
  const copies = header.fieldCopies;
  if (copies && (copies.labels.length !== copies.keys.length || copies.conditions.length !== copies.keys.length)) {
    throw new Error('shard field copies: keys, labels and conditions differ in length');
  }
  if (vectors.length !== shardRows(header) * header.dim) {
    throw new Error(`shard vectors hold ${vectors.length} floats, expected ${shardRows(header)} x ${header.dim}`);
  }
  let json = JSON.stringify(header);
  const unpadded = 8 + Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((4 - (unpadded % 4)) % 4);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + vectors.byteLength);
  out.write(SHARD_MAGIC, 0, 'ascii');
  out.writeUInt32LE(headerBytes.length, 4);
  headerBytes.copy(out, 8);
  Buffer.from(vectors.buffer, vectors.byteOffset, vectors.byteLength).copy(out, 8 + headerBytes.length);
  return out;
}

export function decodeFeatureShard(bytes: Uint8Array): FeatureShard {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 8 || buf.toString('ascii', 0, 4) !== SHARD_MAGIC) throw new Error('not a feature shard (bad magic)');
  const headerLength = buf.readUInt32LE(4);
  if (8 + headerLength > buf.length) throw new Error('truncated feature shard header');
  const header = JSON.parse(buf.toString('utf8', 8, 8 + headerLength)) as ShardHeader;
  const start = 8 + headerLength;
  const expected = shardRows(header) * header.dim * 4;
  if (buf.length - start !== expected) {
    throw new Error(`feature shard holds ${buf.length - start} vector bytes, expected ${expected}`);
  }
  // Copy into a fresh, aligned buffer: the input may be a slice at an odd offset.
  const vectors = new Float32Array(shardRows(header) * header.dim);
  Buffer.from(vectors.buffer).set(buf.subarray(start));
  return { header, vectors };
}
