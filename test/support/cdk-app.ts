/**
 * CDK Apps for tests. An App without an outdir makes a `cdk.out*` folder in the system's temporary
 * directory and leaves it there (about 56 a run of the suite); these write theirs in a folder of
 * the importing test file's, removed after its tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, AppProps } from 'aws-cdk-lib';

const folder = mkdtempSync(join(tmpdir(), 'fruits-test-cdk-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

/** An App whose cloud assembly goes to a folder of its own, under the test file's. */
export function testApp(props: Omit<AppProps, 'outdir'> = {}): App {
  return new App({ ...props, outdir: mkdtempSync(join(folder, 'cdk.out-')) });
}
