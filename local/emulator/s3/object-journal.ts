/**
 * A bucket's object index on disk: an append-only file of JSON lines, one per change, replayed at
 * start. Appending one line per PUT is far cheaper than a metadata file per object, and reading
 * one file back is what makes a restart with 100,000 objects take a fraction of a second.
 *
 * A line is written (to the OS, not fsync'ed: this guards against the process being killed, not
 * against power loss) before the request that caused it is answered. A process killed in the
 * middle of a write leaves at most a torn last line, which replay drops.
 */
import { open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import type { ObjectMetadata } from './s3rver-models';

/** What the index keeps about an object; its bytes are in `file`, immutable once written. */
export interface StoredObject {
  /** Name of the data file, unique per version of the object. */
  readonly file: string;
  readonly size: number;
  /** The ETag without quotes: the MD5 in hex, or `<md5 of part MD5s>-<parts>` after a multipart upload. */
  readonly etag: string;
  /** Milliseconds since the epoch. */
  readonly lastModified: number;
  readonly metadata: ObjectMetadata;
  /** Object subresources (the tag set) as XML, by type. */
  readonly subresources?: Readonly<Record<string, string>>;
}

export type JournalRecord = ({ readonly op: 'put'; readonly key: string } & StoredObject) | { readonly op: 'delete'; readonly key: string };

export interface ReplayedJournal {
  readonly records: JournalRecord[];
  /** Bytes up to the end of the last whole line; anything after it is a torn write. */
  readonly intactLength: number;
}

/** The journal's records in order; a missing file is an empty journal. */
export async function replayJournal(path: string): Promise<ReplayedJournal> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], intactLength: 0 };
    throw error;
  }
  return parseJournal(text);
}

/** The records of a journal's text (see replayJournal). */
export function parseJournal(text: string): ReplayedJournal {
  const end = text.lastIndexOf('\n') + 1;
  const records: JournalRecord[] = [];
  for (const line of text.slice(0, end).split('\n')) {
    if (line === '') continue;
    try {
      records.push(JSON.parse(line) as JournalRecord);
    } catch {
      // Only a damaged file has a bad whole line; the rest of the journal is still worth keeping.
    }
  }
  return { records, intactLength: Buffer.byteLength(text.slice(0, end)) };
}

/**
 * Appends records, one write for all the records that arrive while the previous write is in
 * flight: concurrent PUTs share a system call instead of queueing for one each.
 */
export class JournalWriter {
  private queued: string[] = [];
  private waiting: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  private flushing: Promise<void> | undefined;

  private constructor(
    private readonly handle: FileHandle,
    /** Bytes of whole lines written: where a write that failed part way is cut back to. */
    private length: number,
  ) {}

  /** Opens `path` for appending, first cutting off a torn last line so new lines start clean. */
  static async open(path: string, intactLength: number): Promise<JournalWriter> {
    const handle = await open(path, 'a');
    if ((await handle.stat()).size > intactLength) await handle.truncate(intactLength);
    return new JournalWriter(handle, intactLength);
  }

  /** Resolves once the record is written; records are written in the order they were appended. */
  append(record: JournalRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queued.push(`${JSON.stringify(record)}\n`);
      this.waiting.push({ resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  async close(): Promise<void> {
    await this.flushing;
    await this.handle.close();
  }

  private async flush(): Promise<void> {
    while (this.queued.length > 0) {
      const text = this.queued.join('');
      const waiting = this.waiting;
      this.queued = [];
      this.waiting = [];
      try {
        await this.handle.appendFile(text, 'utf8');
        this.length += Buffer.byteLength(text);
        for (const waiter of waiting) waiter.resolve();
      } catch (error) {
        // A write cut short (a full disk) leaves part of a line, which the next line would be
        // glued to: cut it off, so the journal holds whole lines only.
        await this.handle.truncate(this.length).catch(() => undefined);
        for (const waiter of waiting) waiter.reject(error);
      }
    }
    this.flushing = undefined;
  }
}

/** Replaces the journal with one `put` line per live object, atomically (write aside, rename); returns its length. */
export async function rewriteJournal(path: string, objects: Iterable<[string, StoredObject]>): Promise<number> {
  const lines: string[] = [];
  for (const [key, object] of objects) lines.push(`${JSON.stringify({ op: 'put', key, ...object } satisfies JournalRecord)}\n`);
  const aside = `${path}.compacting`;
  const text = lines.join('');
  await writeFile(aside, text, { flush: true });
  await rename(aside, path);
  return Buffer.byteLength(text);
}
