/** `fruits run <dir> --json` as a user starts it (`npm start -- run ...`): a real process, tsx, the CLI wiring. */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { generateDemoDataset } from '../../local/demo-dataset';

describe('fruits run (process)', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'fruits-cli-run-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('runs a folder and prints the summary as JSON; a bad flag is a usage error', async () => {
    const dataset = join(work, 'tiny fruits');
    for (const image of await generateDemoDataset({ trainingPerClass: 3, testPerClass: 1 })) {
      mkdirSync(dirname(join(dataset, image.path)), { recursive: true });
      writeFileSync(join(dataset, image.path), image.body);
    }
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [require.resolve('tsx/cli'), join(__dirname, '..', '..', 'bin', 'cli.ts'), ...args], {
        cwd: work,
        encoding: 'utf8',
        timeout: 120_000,
      });

    const run = cli(
      'run',
      dataset,
      '--json',
      '--featurizer',
      'pixels',
      '--components',
      '3',
      '--batch-size',
      '7',
      '--workers',
      '1',
      '--data-dir',
      join(work, 's3'),
      '--out',
      join(work, 'out'),
    );
    expect({ status: run.status, stderr: run.stderr.slice(-2000) }).toEqual({ status: 0, stderr: expect.any(String) });
    const summary = JSON.parse(run.stdout);
    expect(summary).toMatchObject({ status: 'SUCCEEDED', dataset: 'tiny-fruits', processed: 20, failed: 0, components: 3, workers: 1 });
    expect(readdirSync(join(work, 'out', summary.runId))).toContain('features.csv');

    const bad = cli('run', dataset, '--batch-size', 'zero');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('expected a positive integer');
  });
});
