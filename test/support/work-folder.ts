/**
 * Folders for the tests that write files: one per describe block, under the system's temporary
 * directory, gone when the block's tests are.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The path of a new folder for the tests of the describe block that calls it, `prefix` and a
 * random name: made (private to the user, as mkdtemp makes it) before the block's first test,
 * removed with all it holds after its last. The path is known at once, so tests and helpers of
 * the block can close over it.
 */
export function suiteWorkFolder(prefix: string): string {
  const folder = join(tmpdir(), `${prefix}${randomUUID()}`);
  beforeAll(() => mkdirSync(folder, { mode: 0o700 }));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));
  return folder;
}
