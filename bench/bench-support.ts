/**
 * What every benchmark script shares: the machine description, load, peak RSS, running one case
 * in a fresh child process (so its peak RSS is its own and TF.js can pick another backend), and
 * tables for the terminal and for docs/BENCHMARKS.md.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { datasetFiles } from '../client/dataset-folder';

export interface Machine {
  readonly cores: number;
  readonly cpuModel: string;
  readonly memoryGb: number;
  readonly node: string;
  readonly platform: string;
}

export function machine(): Machine {
  const list = cpus();
  return {
    cores: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryGb: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
  };
}

/** `uptime`'s load averages (1, 5, 15 min): how busy the machine was around a measurement. */
export function load(): string {
  return `load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')} (1/5/15 min)`;
}

export function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

export type ChildResult = Record<string, unknown> & { error?: string };

/**
 * Run `file` (a bench script) with `args` in a fresh Node process with the same loader (tsx);
 * the case prints its result as JSON on its last stdout line. Asynchronous, so a server in this
 * process (s3rver) keeps answering the child.
 */
export function runChild(file: string, args: readonly string[], options: { timeoutMinutes: number; env?: NodeJS.ProcessEnv }): Promise<ChildResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [...process.execArgv, file, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-8192)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMinutes * 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (timedOut) return resolvePromise({ error: `did not finish within ${options.timeoutMinutes} min (stopped)` });
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0 || !last.startsWith('{')) {
        return resolvePromise({ error: (stderr || `exit ${code}`).trim().split('\n').slice(-3).join(' ') });
      }
      resolvePromise(JSON.parse(last) as ChildResult);
    });
  });
}

/** `--name value` from a command line, or undefined. */
export function argValue(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Whether tfjs-node (the `tensorflow` backend) can be loaded here: it is only in the Lambda image. */
export function tfjsNodeInstalled(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

export type Cell = string | number | undefined;

export interface Table {
  readonly title: string;
  readonly headers: readonly string[];
  readonly rows: readonly Cell[][];
  /** Lines printed under the table (how it was measured, caveats). */
  readonly notes?: readonly string[];
}

const cellText = (cell: Cell) => (cell === undefined ? '' : String(cell));

export function markdownTable(table: Table): string {
  const lines = [
    `| ${table.headers.join(' | ')} |`,
    `| ${table.headers.map(() => '---').join(' | ')} |`,
    ...table.rows.map((row) => `| ${row.map((cell) => cellText(cell).replace(/\|/g, '\\|')).join(' | ')} |`),
  ];
  return lines.join('\n');
}

export function printTable(table: Table): void {
  const widths = table.headers.map((header, c) => Math.max(header.length, ...table.rows.map((row) => cellText(row[c]).length)));
  const line = (cells: readonly Cell[]) => cells.map((cell, c) => cellText(cell).padEnd(widths[c])).join('  ');
  console.log(`\n${table.title}`);
  console.log(line(table.headers));
  for (const row of table.rows) console.log(line(row));
  for (const note of table.notes ?? []) console.log(`  ${note}`);
}

/** Fixed decimals, as a number (tables stay numeric until printed). */
export const fixed = (value: number, digits = 1): number => +value.toFixed(digits);

/**
 * `count` files of `source` (its `<split>/<label>/<file>` paths, cycled) under `copy<i>/` in `dir`:
 * the same bytes as real photos under new keys, hard-linked where the filesystem allows.
 */
export function replicateFolder(source: string, dir: string, count: number, paths = [...datasetFiles(source)].map((file) => relative(source, file))): void {
  for (let i = 0; i < count; i++) {
    const path = paths[i % paths.length];
    const target = join(dir, `copy${Math.floor(i / paths.length)}`, path);
    mkdirSync(dirname(target), { recursive: true });
    try {
      linkSync(join(source, path), target);
    } catch {
      copyFileSync(join(source, path), target);
    }
  }
}

/** `doc` with the section under `heading` (up to the next `## ` heading) replaced by `text`, or `text` appended. */
export function withDocSection(doc: string, heading: string, text: string): string {
  const start = doc.indexOf(`\n${heading}\n`);
  if (start < 0) return `${doc.trimEnd()}\n\n${text.trimEnd()}\n`;
  const next = doc.indexOf('\n## ', start + heading.length + 1);
  return `${doc.slice(0, start + 1)}${text.trimEnd()}\n${next < 0 ? '' : doc.slice(next)}`;
}

/** The section under `heading` in `doc`, or undefined. */
export function docSection(doc: string, heading: string): string | undefined {
  const start = doc.indexOf(`\n${heading}\n`);
  if (start < 0) return undefined;
  const next = doc.indexOf('\n## ', start + heading.length + 1);
  return doc.slice(start + 1, next < 0 ? undefined : next + 1);
}
