/**
 * What a test needs from outside the repository: the shared data beside the project (`../shared`,
 * real Fruits-360 photos and reference models) and Debian's chromium for the browser test.
 *
 * Under CI (`CI=true`) a missing requirement is an error: the test file fails at load, so CI can
 * never go green with its real-data checks skipped. Elsewhere the checks that need it skip, and
 * say so on one line of stderr, naming what is skipped and why.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** `../shared` from the project root (its README: /work/shared/README.md on the build machines). */
export const SHARED = resolve(__dirname, '..', '..', '..', 'shared');
export const SHARED_SAMPLE = join(SHARED, 'datasets', 'fruits-360-sample');
export const SHARED_103 = join(SHARED, 'datasets', 'fruits-360-103');
export const SHARED_MODELS = join(SHARED, 'models');
export const CHROMIUM = '/usr/bin/chromium';

export const inCi = (): boolean => process.env.CI === 'true';

/**
 * True when every path exists. Otherwise: under CI, throws; elsewhere writes
 * `SKIPPED <what>: <missing paths> absent (<hint>)` to stderr once and returns false.
 */
export function requireFiles(what: string, paths: readonly string[], hint = 'see ../shared/README.md'): boolean {
  const missing = paths.filter((path) => !existsSync(path));
  if (missing.length === 0) return true;
  const reason = `${missing.join(', ')} absent (${hint})`;
  if (inCi()) throw new Error(`CI=true and ${what} cannot run: ${reason}`);
  process.stderr.write(`SKIPPED ${what}: ${reason}\n`);
  return false;
}

/** `describe` when the files are there, else `describe.skip` (after requireFiles has said why, or thrown under CI). */
export function describeRequiring(what: string, paths: readonly string[], hint?: string): jest.Describe {
  return requireFiles(what, paths, hint) ? describe : describe.skip;
}

/** `it` when the files are there, else `it.skip` (after requireFiles has said why, or thrown under CI). */
export function itRequiring(what: string, paths: readonly string[], hint?: string): jest.It {
  return requireFiles(what, paths, hint) ? it : it.skip;
}
