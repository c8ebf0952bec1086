/** The Node.js check the CLI makes before anything loads (cli/node-version.ts). */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeVersionProblem, requiredNodeRange, satisfiesRange } from '../../cli/node-version';

describe('Node.js version check', () => {
  it('reads the engines range of package.json', () => {
    expect(requiredNodeRange()).toBe(JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')).engines.node);
  });

  it('holds a found version against the range forms an engines field uses', () => {
    const cases: [string, string, boolean][] = [
      ['22.23.0', '>=22', true],
      ['20.20.2', '>=22', false],
      ['24.1.0', '>=22', true],
      ['22.23.0', '>=24', false],
      ['22.5.0', '>=22.11.0', false],
      ['22.11.0', '>=22.11.0', true],
      ['22.1.0', '^22', true],
      ['23.0.0', '^22', false],
      ['22.1.0', '22.x', true],
      ['20.1.0', '^20.10 || >=22', false],
      ['20.11.0', '^20.10 || >=22', true],
      ['21.0.0', '>=20 <21', false],
    ];
    for (const [found, range, ok] of cases) expect({ found, range, ok: satisfiesRange(found, range) }).toEqual({ found, range, ok });
    expect(satisfiesRange('22.0.0', 'lts/*')).toBeUndefined();
  });

  it('one line: what is needed, what was found, how to get it; nothing when the version fits', () => {
    expect(nodeVersionProblem('20.20.2', '>=22')).toBe(
      'Node.js >=22 needed (package.json engines), found v20.20.2: e.g. `nvm install 22`, or `npm install --prefix ~/node22 node@22` and put ~/node22/node_modules/node/bin first on PATH',
    );
    expect(nodeVersionProblem('22.12.0', '>=24')).toMatch(/^Node.js >=24 needed .*found v22.12.0: e.g. `nvm install 24`/);
    expect(nodeVersionProblem('24.0.0', '>=22')).toBeUndefined();
    // A range this check cannot read lets the run go ahead rather than refuse a good Node.
    expect(nodeVersionProblem('22.0.0', 'lts/*')).toBeUndefined();
  });

  const oldNode = '/usr/bin/node';
  const oldMajor = existsSync(oldNode) ? Number(spawnSync(oldNode, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).stdout) : NaN;
  const required = Number(/\d+/.exec(requiredNodeRange())![0]);
  (oldMajor < required ? it : it.skip)(`the CLI on an older Node (${oldNode}) says so in one line, exit code 1`, () => {
    const run = spawnSync(oldNode, [require.resolve('tsx/cli'), join(__dirname, '..', '..', 'bin', 'cli.ts'), 'run', '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect({ status: run.status, stdout: run.stdout, stderr: run.stderr.trim().split('\n') }).toEqual({
      status: 1,
      stdout: '',
      stderr: [expect.stringMatching(/^fruits: Node.js >=\d+(\.\d+)* needed \(package.json engines\), found v\d+\.\d+\.\d+: /)],
    });
  });
});
