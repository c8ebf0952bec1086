/**
 * One run at a time per data directory. The store of a data directory belongs to the process that
 * opened it: opening clears the store's `tmp/` (bodies being received), replays and may compact
 * the journals, and drops data files no record names, so a second run on the same directory would
 * pull objects from under the first (its reads then fail with InternalError). The run takes
 * `<dataDir>/run.lock` before it opens the store and removes it when the store closes; a second
 * run finds it and stops at once, naming the run that holds it.
 *
 * The lock file holds its owner (pid, host, start time, command line). It is created whole or not
 * at all (written aside, then hard-linked to its name, which fails when the name exists). A lock
 * whose process is gone (killed, or Ctrl-C before it could clean up) is stale: the next run on
 * this host takes it over and says so.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const DATA_DIR_LOCK_FILE = 'run.lock';

/** Who holds a data directory. */
export interface DataDirOwner {
  readonly pid: number;
  readonly host: string;
  /** ISO 8601, when the lock was taken. */
  readonly startedAt: string;
  readonly command: string;
}

export interface DataDirLock {
  readonly path: string;
  readonly owner: DataDirOwner;
  /** Removes the lock if it is still this one's; idempotent. */
  release(): void;
}

export interface LockOptions {
  /** The line said when a stale lock is taken over. */
  readonly onNotice?: (line: string) => void;
  /** Whether a process of this host runs. @default a signal-0 probe */
  readonly isRunning?: (pid: number) => boolean;
  /** Whom to record. @default this process */
  readonly owner?: DataDirOwner;
}

/** The error of a data directory another run holds. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holder: DataDirOwner,
  ) {
    const where = holder.host === hostname() ? `pid ${holder.pid}` : `pid ${holder.pid} on ${holder.host}`;
    super(
      `--data-dir ${dataDir} is in use by another run (${where}, started ${holder.startedAt}: ${holder.command}): ` +
        'wait for it to end, or pass another --data-dir',
    );
    this.name = 'DataDirInUseError';
  }
}

/** Takes `dataDir` for this process, or throws DataDirInUseError naming the run that holds it. */
export function lockDataDir(dataDir: string, options: LockOptions = {}): DataDirLock {
  const path = join(dataDir, DATA_DIR_LOCK_FILE);
  const owner = options.owner ?? { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), command: process.argv.slice(1).join(' ') };
  const isRunning = options.isRunning ?? processRuns;
  const text = `${JSON.stringify(owner)}\n`;
  // A few rounds: another run may take over the same stale lock at the same moment.
  for (let round = 0; round < 5; round++) {
    if (createWhole(path, text)) {
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        process.off('exit', release);
        if (readOrUndefined(path) === text) unlinkSync(path);
      };
      // A run that ends its process without closing (an uncaught error) leaves no lock behind.
      process.on('exit', release);
      return { path, owner, release };
    }
    const found = readOrUndefined(path);
    if (found === undefined) continue;
    const holder = parseOwner(found);
    // A lock of another host, or of a process still running here, is held. One that cannot be read
    // is not of this program's making: it is named, never removed.
    if (!holder) throw new Error(`--data-dir ${dataDir} has a lock file ${path} that is not a run's: remove it if no run uses this folder`);
    if (holder.host !== hostname() || isRunning(holder.pid)) throw new DataDirInUseError(dataDir, holder);
    if (readOrUndefined(path) !== found) continue;
    unlinkSync(path);
    options.onNotice?.(
      `--data-dir ${dataDir}: took over the lock of a run that is no longer running (pid ${holder.pid}, started ${holder.startedAt}); ` +
        'what it was writing when it stopped is dropped as the store opens',
    );
  }
  throw new Error(`--data-dir ${dataDir}: could not take ${path}: other runs keep taking it`);
}

/** Creates `path` holding `text`, whole, unless it exists. */
function createWhole(path: string, text: string): boolean {
  const aside = `${path}.${randomBytes(6).toString('hex')}`;
  writeFileSync(aside, text);
  try {
    linkSync(aside, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    unlinkSync(aside);
  }
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function parseOwner(text: string): DataDirOwner | undefined {
  try {
    const owner = JSON.parse(text) as Partial<DataDirOwner>;
    if (!Number.isInteger(owner.pid) || typeof owner.host !== 'string' || typeof owner.startedAt !== 'string') return undefined;
    return { pid: owner.pid!, host: owner.host, startedAt: owner.startedAt, command: typeof owner.command === 'string' ? owner.command : '' };
  } catch {
    return undefined;
  }
}

/** Signal 0 checks that the process exists without touching it; EPERM means it exists as another user's. */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
