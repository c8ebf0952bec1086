/** A run's outputs on this machine: `results/<runId>/` copied to `<outDir>/<runId>/`. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { runLayout } from '../lambdas/contracts/bucket-layout';
import { listAllObjects, readBytes } from '../lambdas/aws/s3-client';

/** Where a run's outputs are copied, as `<dir>/<runId>/`, when nothing else is asked for. */
export const DEFAULT_OUT_DIR = 'out';

/**
 * Download `results/<runId>/` to `<outDir>/<runId>/` (replacing it); returns the folder and the
 * file names. The copy is made aside and put in place whole: a copy cut short (a full disk) leaves
 * the previous one as it was, and nothing half-copied.
 */
export async function downloadRunOutputs(s3: S3Client, bucket: string, runId: string, outDir: string): Promise<{ dir: string; files: string[] }> {
  const dir = join(resolve(outDir), runId);
  const prefix = runLayout(runId).outputPrefix;
  const objects = await listAllObjects(s3, bucket, prefix);
  if (objects.length === 0) return { dir, files: [] };
  const aside = join(dirname(dir), `.${basename(dir)}.partial-${randomBytes(4).toString('hex')}`);
  const names: string[] = [];
  try {
    for (const object of objects) {
      const name = object.Key!.slice(prefix.length);
      const target = join(aside, ...name.split('/'));
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, await readBytes(s3, bucket, object.Key!));
      names.push(name);
    }
  } catch (error) {
    rmSync(aside, { recursive: true, force: true });
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw error;
    const needed = objects.reduce((total, object) => total + (object.Size ?? 0), 0);
    throw new Error(
      `no space left in ${resolve(outDir)} (--out): the outputs of run ${runId} need ${megabytes(needed)}, ${freeSpace(resolve(outDir))}; ` +
        `nothing was left half-copied, and they stay in s3://${bucket}/${prefix}: free space and copy them again`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(aside, dir);
  return { dir, files: names };
}

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

function freeSpace(dir: string): string {
  try {
    const stats = statfsSync(dir);
    return `${megabytes(stats.bavail * stats.bsize)} free`;
  } catch {
    return 'free space unknown';
  }
}
