/**
 * The Node.js the CLI needs, from package.json's `engines.node` (its one home), held against the
 * running one before anything else loads: on an older Node the local Step Functions runner and the
 * AWS SDK fail deep inside a run (a missing `Promise.withResolvers` makes every Task fail), with
 * nothing that names the cause.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** `engines.node` of the project's package.json. */
export function requiredNodeRange(packageJson = join(__dirname, '..', 'package.json')): string {
  const engines = (JSON.parse(readFileSync(packageJson, 'utf8')) as { engines?: { node?: string } }).engines;
  if (!engines?.node) throw new Error(`${packageJson} names no engines.node`);
  return engines.node;
}

type Version = [number, number, number];

function parseVersion(text: string): Version | undefined {
  const match = /^v?(\d+)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$/.exec(text.trim());
  if (!match) return undefined;
  const part = (value: string | undefined) => (value === undefined || value === 'x' || value === '*' ? 0 : Number(value));
  return [Number(match[1]), part(match[2]), part(match[3])];
}

function compare(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * Whether `version` satisfies `range`, for the range forms an engines field uses: alternatives
 * joined by `||`, each a space-separated list of `>=`, `>`, `<=`, `<`, `=` comparators, a caret
 * (`^22`) or a bare major (`22`, `22.x`). Undefined when the range is of another form.
 */
export function satisfiesRange(version: string, range: string): boolean | undefined {
  const found = parseVersion(version);
  if (!found) return undefined;
  let verdict = false;
  for (const alternative of range.split('||')) {
    const comparators = alternative.trim().split(/\s+/).filter(Boolean);
    if (comparators.length === 0) return undefined;
    let all = true;
    for (const comparator of comparators) {
      const match = /^(>=|<=|>|<|=|\^|~)?(.+)$/.exec(comparator)!;
      const bound = parseVersion(match[2]);
      if (!bound) return undefined;
      const order = compare(found, bound);
      const ok =
        match[1] === '>='
          ? order >= 0
          : match[1] === '>'
            ? order > 0
            : match[1] === '<='
              ? order <= 0
              : match[1] === '<'
                ? order < 0
                : match[1] === '~'
                  ? order >= 0 && found[0] === bound[0] && found[1] === bound[1]
                  : // `^N`, `=N`, `N` and `N.x`: the same major, at least the bound.
                    order >= 0 && found[0] === bound[0];
      all &&= ok;
    }
    verdict ||= all;
  }
  return verdict;
}

/** The lowest major the range admits, for the advice line (`>=22` gives 22). */
function neededMajor(range: string): number | undefined {
  const majors = [...range.matchAll(/(?:^|[\s|>=^~])(\d+)/g)].map((match) => Number(match[1]));
  return majors.length > 0 ? Math.min(...majors) : undefined;
}

/**
 * One line when `found` (a `process.versions.node`) does not satisfy `required` (an engines
 * range): what is needed, what was found, how to get it. Undefined when it does, or when the range
 * is of a form this check does not read (the run then goes ahead).
 */
export function nodeVersionProblem(found: string, required: string): string | undefined {
  if (satisfiesRange(found, required) !== false) return undefined;
  const major = neededMajor(required);
  const get =
    major === undefined
      ? 'install a Node.js in that range'
      : `e.g. \`nvm install ${major}\`, or \`npm install --prefix ~/node${major} node@${major}\` and put ~/node${major}/node_modules/node/bin first on PATH`;
  return `Node.js ${required} needed (package.json engines), found ${found.startsWith('v') ? found : `v${found}`}: ${get}`;
}
