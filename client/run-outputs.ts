/** A run's outputs on this machine: `results/<runId>/` copied to `<outDir>/<runId>/`. */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { runLayout } from '../lambdas/contracts/bucket-layout';
import { listAllObjects, readBytes } from '../lambdas/aws/s3-client';

/** Download `results/<runId>/` to `<outDir>/<runId>/` (replacing it); returns the folder and the file names. */
export async function downloadRunOutputs(s3: S3Client, bucket: string, runId: string, outDir: string): Promise<{ dir: string; files: string[] }> {
  const dir = join(resolve(outDir), runId);
  return { dir, files: await copyPrefix(s3, bucket, runLayout(runId).outputPrefix, dir) };
}

/** Copy every object under `prefix` to `dir` (replacing it): returns the relative names. */
async function copyPrefix(s3: S3Client, bucket: string, prefix: string, dir: string): Promise<string[]> {
  const objects = await listAllObjects(s3, bucket, prefix);
  if (objects.length === 0) return [];
  rmSync(dir, { recursive: true, force: true });
  const names: string[] = [];
  for (const object of objects) {
    const name = object.Key!.slice(prefix.length);
    const target = join(dir, ...name.split('/'));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, await readBytes(s3, bucket, object.Key!));
    names.push(name);
  }
  return names;
}
