/**
 * Object keys in S3's listing order, and S3's listing algorithm over them.
 *
 * S3 lists keys in UTF-8 binary order
 * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ListingKeysUsingAPIs.html). JavaScript's
 * string `<` compares UTF-16 code units instead, which puts U+E000..U+FFFF after astral characters
 * (S3 does the opposite), so keys are compared as UTF-8 bytes with `Buffer.compare`.
 */

export interface ListQuery {
  readonly prefix: string;
  /** Keys with this after the prefix roll up into one common prefix. "" or undefined: none. */
  readonly delimiter?: string;
  /** The first position to consider (inclusive), as UTF-8 bytes; see `positionAfterKey`. */
  readonly startAt?: Buffer;
  /** Keys plus common prefixes returned at most; S3 counts both. At least 1. */
  readonly maxKeys: number;
}

export interface ListPage<V> {
  readonly objects: { readonly key: string; readonly value: V }[];
  readonly commonPrefixes: string[];
  readonly isTruncated: boolean;
  /** Where the next page starts, when truncated: just past the page's last key or common prefix. */
  readonly nextStartAt?: Buffer;
}

/** The smallest position after `key`: the key followed by a 0 byte. */
export function positionAfterKey(key: string): Buffer {
  return Buffer.concat([Buffer.from(key), Buffer.alloc(1)]);
}

/**
 * The smallest position after every key that starts with `prefix`: its last byte plus one. UTF-8
 * never contains 0xFF, so the increment cannot overflow.
 */
function positionAfterPrefix(prefix: string): Buffer {
  const bytes = Buffer.from(prefix);
  bytes[bytes.length - 1] += 1;
  return bytes;
}

interface SortedKey {
  readonly key: string;
  readonly bytes: Buffer;
}

const byBytes = (a: SortedKey, b: SortedKey) => Buffer.compare(a.bytes, b.bytes);

/**
 * A map from key to value that lists like S3. Sorting is deferred to the next listing: an upload
 * of 70,000 objects then costs one sort, not an insertion into a sorted array per object.
 */
export class Utf8KeyIndex<V> {
  private readonly values = new Map<string, V>();
  /** Ascending; may still hold keys deleted (or deleted and re-added) since the last listing. */
  private sorted: SortedKey[] = [];
  private added: SortedKey[] = [];
  private changed = false;

  constructor(entries: Iterable<readonly [string, V]> = []) {
    for (const [key, value] of entries) this.set(key, value);
  }

  get size(): number {
    return this.values.size;
  }

  get(key: string): V | undefined {
    return this.values.get(key);
  }

  has(key: string): boolean {
    return this.values.has(key);
  }

  set(key: string, value: V): void {
    if (!this.values.has(key)) {
      this.added.push({ key, bytes: Buffer.from(key) });
      this.changed = true;
    }
    this.values.set(key, value);
  }

  delete(key: string): boolean {
    const deleted = this.values.delete(key);
    this.changed ||= deleted;
    return deleted;
  }

  clear(): void {
    this.values.clear();
    this.sorted = [];
    this.added = [];
    this.changed = false;
  }

  entries(): IterableIterator<[string, V]> {
    return this.values.entries();
  }

  /** One page of an S3 listing: every key exactly once across pages that follow `nextStartAt`. */
  list(query: ListQuery): ListPage<V> {
    if (!(query.maxKeys >= 1)) throw new RangeError(`maxKeys must be at least 1, got ${query.maxKeys}`);
    const sorted = this.ordered();
    const { prefix, delimiter } = query;
    const prefixBytes = Buffer.from(prefix);
    const from = query.startAt && Buffer.compare(query.startAt, prefixBytes) > 0 ? query.startAt : prefixBytes;
    const objects: { key: string; value: V }[] = [];
    const commonPrefixes: string[] = [];
    let nextStartAt: Buffer | undefined;
    // Keys with the prefix are contiguous from the prefix itself on.
    for (let i = lowerBound(sorted, from, 0); i < sorted.length && sorted[i].key.startsWith(prefix);) {
      if (objects.length + commonPrefixes.length === query.maxKeys) return { objects, commonPrefixes, isTruncated: true, nextStartAt };
      const { key } = sorted[i];
      const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
      if (cut === -1) {
        objects.push({ key, value: this.values.get(key)! });
        nextStartAt = positionAfterKey(key);
        i += 1;
      } else {
        const commonPrefix = key.slice(0, cut + delimiter!.length);
        commonPrefixes.push(commonPrefix);
        nextStartAt = positionAfterPrefix(commonPrefix);
        i = lowerBound(sorted, nextStartAt, i + 1);
      }
    }
    return { objects, commonPrefixes, isTruncated: false };
  }

  /** The live keys ascending, merging in what was added and dropping what was deleted. */
  private ordered(): SortedKey[] {
    if (!this.changed) return this.sorted;
    const added = this.added.sort(byBytes);
    const merged: SortedKey[] = [];
    let a = 0;
    let b = 0;
    while (a < this.sorted.length || b < added.length) {
      const next = b >= added.length || (a < this.sorted.length && byBytes(this.sorted[a], added[b]) <= 0) ? this.sorted[a++] : added[b++];
      // A key deleted and added again sits in both lists: keep it once.
      if (this.values.has(next.key) && merged.at(-1)?.key !== next.key) merged.push(next);
    }
    this.sorted = merged;
    this.added = [];
    this.changed = false;
    return merged;
  }
}

/** The first index at or after `from` whose key is not below `position`. */
function lowerBound(sorted: readonly SortedKey[], position: Buffer, from: number): number {
  let low = from;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (Buffer.compare(sorted[middle].bytes, position) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}
