/** One run per data directory (local/data-dir-lock.ts): the refusal, the stale lock, and both through the CLI. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DATA_DIR_LOCK_FILE, DataDirInUseError, lockDataDir } from '../../local/data-dir-lock';
import { writeDemoDataset } from '../../local/demo-dataset';
import { suiteWorkFolder } from '../support/work-folder';

/** The pid of a process that has ended: a child that ran and exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '0']);
  return child.pid!;
}

describe('data directory lock', () => {
  const work = suiteWorkFolder('fruits-lock-');

  it('refuses a second holder while the first runs, naming the directory, pid and start time; free again once released', () => {
    const dir = join(work, 'held');
    mkdirSync(dir);
    const first = lockDataDir(dir);
    expect(JSON.parse(readFileSync(join(dir, DATA_DIR_LOCK_FILE), 'utf8'))).toEqual(first.owner);
    expect(first.owner).toMatchObject({ pid: process.pid, host: hostname() });
    let refusal: unknown;
    try {
      lockDataDir(dir);
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(DataDirInUseError);
    expect((refusal as Error).message).toBe(
      `--data-dir ${dir} is in use by another run (pid ${process.pid}, started ${first.owner.startedAt}: ${first.owner.command}): wait for it to end, or pass another --data-dir`,
    );
    first.release();
    first.release();
    expect(existsSync(join(dir, DATA_DIR_LOCK_FILE))).toBe(false);
    const second = lockDataDir(dir);
    second.release();
  });

  it('takes over a stale lock (its process is gone) and says so; a lock it cannot read is named, not removed', () => {
    const dir = join(work, 'stale');
    mkdirSync(dir);
    const pid = deadPid();
    const stale = { pid, host: hostname(), startedAt: '2026-01-02T03:04:05.000Z', command: 'bin/cli.ts run photos' };
    writeFileSync(join(dir, DATA_DIR_LOCK_FILE), JSON.stringify(stale));
    const notices: string[] = [];
    const lock = lockDataDir(dir, { onNotice: (line) => notices.push(line) });
    expect(notices).toEqual([
      `--data-dir ${dir}: took over the lock of a run that is no longer running (pid ${pid}, started 2026-01-02T03:04:05.000Z); what it was writing when it stopped is dropped as the store opens`,
    ]);
    expect(JSON.parse(readFileSync(join(dir, DATA_DIR_LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    lock.release();

    // Another host's lock cannot be probed from here: it holds.
    writeFileSync(join(dir, DATA_DIR_LOCK_FILE), JSON.stringify({ ...stale, host: 'other-host' }));
    expect(() => lockDataDir(dir)).toThrow(`(pid ${pid} on other-host, started 2026-01-02T03:04:05.000Z: bin/cli.ts run photos)`);
    writeFileSync(join(dir, DATA_DIR_LOCK_FILE), 'not ours');
    expect(() => lockDataDir(dir)).toThrow(/has a lock file .*run.lock that is not a run's: remove it if no run uses this folder$/);
    expect(readFileSync(join(dir, DATA_DIR_LOCK_FILE), 'utf8')).toBe('not ours');
  });

  describe('fruits run (process)', () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [require.resolve('tsx/cli'), join(__dirname, '..', '..', 'bin', 'cli.ts'), ...args], {
        cwd: work,
        encoding: 'utf8',
        timeout: 120_000,
      });
    let dataset: string;
    beforeAll(async () => {
      dataset = join(work, 'photos');
      await writeDemoDataset(dataset, { trainingPerClass: 2, testPerClass: 1 });
    });
    const settings = (dataDir: string) => ['--featurizer', 'pixels', '--components', '2', '--workers', '1', '--data-dir', dataDir, '--out', join(work, 'out')];

    it('a second run on a data directory in use stops at once: one line naming the directory and the run holding it, exit 1', () => {
      const dataDir = join(work, 'busy-s3');
      mkdirSync(dataDir);
      // This test's process is the run holding it: alive for as long as the child runs.
      const holder = lockDataDir(dataDir);
      try {
        const run = cli('run', dataset, '--json', ...settings(dataDir));
        expect({ status: run.status, stdout: run.stdout, stderr: run.stderr.trim().split('\n') }).toEqual({
          status: 1,
          stdout: '',
          stderr: [
            `fruits: --data-dir ${dataDir} is in use by another run (pid ${process.pid}, started ${holder.owner.startedAt}: ${holder.owner.command}): wait for it to end, or pass another --data-dir`,
          ],
        });
        // It never opened the store.
        expect(existsSync(join(dataDir, 'objects-v1'))).toBe(false);
      } finally {
        holder.release();
      }
    });

    it('a run after one that was killed takes the stale lock over, says so, succeeds and leaves no lock', () => {
      const dataDir = join(work, 'stale-s3');
      mkdirSync(dataDir);
      const pid = deadPid();
      writeFileSync(join(dataDir, DATA_DIR_LOCK_FILE), JSON.stringify({ pid, host: hostname(), startedAt: '2026-01-02T03:04:05.000Z', command: 'killed' }));
      const run = cli('run', dataset, '--json', ...settings(dataDir));
      expect({ status: run.status, stderr: run.stderr.slice(-2000) }).toEqual({ status: 0, stderr: expect.any(String) });
      const summary = JSON.parse(run.stdout);
      expect(summary.status).toBe('SUCCEEDED');
      expect(summary.notices).toContainEqual(expect.stringMatching(new RegExp(`took over the lock of a run that is no longer running \\(pid ${pid}, `)));
      expect(existsSync(join(dataDir, DATA_DIR_LOCK_FILE))).toBe(false);
    });
  });
});
