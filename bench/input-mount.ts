/**
 * The local run's input phase, both ways on the same folder: uploading a copy into the embedded
 * store (what the local run does with --copy-input) against
 * serving the folder in place (the default). Each way runs in a fresh child process with a fresh
 * store, the ways alternating (copy mount mount copy ...), and prints:
 * - walk + digests: listing the folder and the MD5s of every file, which the run needs for its
 *   run id either way (so it is counted apart, not in the phase);
 * - place: the phase itself (`phaseSeconds.upload` of the run): the upload, or indexing the folder;
 * - list: listing the whole prefix over HTTP, as the map run's ItemReader does;
 * - GET: reading a spread sample of the objects over HTTP, 16 at a time, as the featurize batches do
 *   (after an untimed warm-up);
 * - index MB: the heap the store's index of the input keeps (after GC), and the process's peak RSS.
 *
 *   npx tsx bench/input-mount.ts                  # fruits-360-103 replicated to 71,022 files (hard links)
 *   npx tsx bench/input-mount.ts --images 10000 --rounds 2
 *   npx tsx bench/input-mount.ts --dir <folder>   # a folder as it is
 *   ... --write                                   # also record the figures in docs/BENCHMARKS.md
 *   npx tsx bench/input-mount.ts --render out/bench/input-mount-<date>.json --write   # from saved figures
 *
 * The figures go into the "Upload vs mounted folder" section of docs/BENCHMARKS.md, which
 * bench/run-all.ts keeps when it rewrites the rest of the file.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { folderFiles } from '../client/dataset-folder';
import { datasetInputPrefix } from '../lambdas/contracts/bucket-layout';
import { listAllObjects } from '../lambdas/aws/s3-client';
import { mapWithConcurrency } from '../lambdas/common/concurrency';
import { startLocalS3Server } from '../local/emulator/s3/s3-server';
import { copyInputFolder, serveInputFolder, UPLOAD_CONCURRENCY } from '../local/input-folder';
import {
  argValue,
  ChildResult,
  withDocSection,
  fixed,
  load,
  machine,
  markdownTable,
  median,
  peakRssMb,
  printTable,
  replicateFolder,
  runChild,
  Table,
} from './bench-support';

/** Same as the whole-dataset bench (bench/end-to-end.ts): the count of the whole Fruits-360. */
const WHOLE_FRUITS_360_IMAGES = 71_022;
const FRUITS_360_103 = join(__dirname, '..', '..', 'shared', 'datasets', 'fruits-360-103');
const DOC = join(__dirname, '..', 'docs', 'BENCHMARKS.md');
const RESULTS_DIR = join(__dirname, '..', 'out', 'bench');
export const INPUT_MOUNT_HEADING = '## Upload vs mounted folder';
/** Objects read back in the GET part: a spread sample (all of them would take minutes per way). */
const GET_SAMPLE = 5000;
const GET_WARM_UP = 500;
/** As many reads at once as the featurize handler's READ_CONCURRENCY default. */
const GET_CONCURRENCY = 16;
const DIGEST_CONCURRENCY = 16;
/** A bucket of the bench's own (local/local-run.ts is not imported: its CDK synth would weigh on the peak RSS). */
const BUCKET = 'bench-input';

type Way = 'copy' | 'mount';

interface InputCaseResult {
  way: Way;
  files: number;
  walkSeconds: number;
  digestSeconds: number;
  placeSeconds: number;
  listSeconds: number;
  getSeconds: number;
  gets: number;
  indexMb: number;
  peakRssMb: number;
  load: string;
}

/** One way in this process: walk + digests, place the input, list it, read a sample back. */
async function runCase(way: Way, dir: string, storeDir: string): Promise<InputCaseResult> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const heap = () => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const root = resolve(dir);
  const prefix = datasetInputPrefix('bench');
  let started = performance.now();
  const files = folderFiles(root);
  const walkSeconds = (performance.now() - started) / 1000;
  started = performance.now();
  await mapWithConcurrency(files, DIGEST_CONCURRENCY, (file) => file.digests());
  const digestSeconds = (performance.now() - started) / 1000;

  const s3 = await startLocalS3Server({ directory: storeDir, buckets: [BUCKET] });
  try {
    const before = heap();
    started = performance.now();
    const input = { bucket: BUCKET, prefix, root, files };
    const placed = way === 'copy' ? await copyInputFolder(s3.client, input, { concurrency: UPLOAD_CONCURRENCY }) : await serveInputFolder(s3, input);
    const placeSeconds = (performance.now() - started) / 1000;
    const indexMb = (heap() - before) / 2 ** 20;
    if (placed.uploaded + placed.served + placed.alreadyPresent !== files.length) throw new Error(`placed ${JSON.stringify(placed)} of ${files.length} files`);

    started = performance.now();
    const listed = await listAllObjects(s3.client, BUCKET, prefix);
    const listSeconds = (performance.now() - started) / 1000;
    if (listed.length !== files.length) throw new Error(`listed ${listed.length} of ${files.length} files`);

    const step = Math.max(1, Math.floor(listed.length / GET_SAMPLE));
    const sample = listed.filter((_, i) => i % step === 0).slice(0, GET_SAMPLE);
    const read = (objects: typeof listed) =>
      mapWithConcurrency(objects, GET_CONCURRENCY, async (object) => {
        const response = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: object.Key }));
        await response.Body!.transformToByteArray();
      });
    // Untimed first: the upload has warmed the server's code paths up, the mount has not.
    await read(sample.slice(0, GET_WARM_UP));
    started = performance.now();
    await read(sample);
    const getSeconds = (performance.now() - started) / 1000;
    return {
      way,
      files: files.length,
      walkSeconds: fixed(walkSeconds, 2),
      digestSeconds: fixed(digestSeconds, 2),
      placeSeconds: fixed(placeSeconds, 2),
      listSeconds: fixed(listSeconds, 2),
      getSeconds: fixed(getSeconds, 2),
      gets: sample.length,
      indexMb: fixed(indexMb, 1),
      peakRssMb: peakRssMb(),
      load: load(),
    };
  } finally {
    await s3.close();
  }
}

export interface InputMountBench {
  readonly dataset: string;
  readonly command: string;
  readonly date: string;
  readonly machine: string;
  readonly rows: (InputCaseResult | { way: Way; error: string })[];
}

async function measure(argv: readonly string[]): Promise<InputMountBench> {
  const scratch = mkdtempSync(join(tmpdir(), 'bench-input-'));
  try {
    let dir = argValue(argv, 'dir');
    let dataset = dir ?? '';
    if (!dir) {
      if (!existsSync(FRUITS_360_103)) throw new Error(`the shared fruits-360-103 set is not at ${FRUITS_360_103}; pass --dir <folder>`);
      const images = Number(argValue(argv, 'images') ?? WHOLE_FRUITS_360_IMAGES);
      dir = join(scratch, 'fruits-360');
      replicateFolder(FRUITS_360_103, dir, images);
      dataset = `fruits-360-103 replicated to ${images.toLocaleString('en-US')} files (hard links)`;
    }
    const rounds = Number(argValue(argv, 'rounds') ?? 1);
    const rows: InputMountBench['rows'] = [];
    for (let round = 0; round < rounds; round++) {
      for (const way of round % 2 === 0 ? (['copy', 'mount'] as const) : (['mount', 'copy'] as const)) {
        const storeDir = join(scratch, `store-${round}-${way}`);
        const result: ChildResult = await runChild(__filename, ['--case', way, '--dir', dir, '--store', storeDir], { timeoutMinutes: 30 });
        rmSync(storeDir, { recursive: true, force: true });
        const row = result.error ? { way, error: result.error } : (result as unknown as InputCaseResult);
        console.log(`  ${way}: ${'error' in row ? row.error : `place ${row.placeSeconds} s, list ${row.listSeconds} s, ${row.gets} GETs ${row.getSeconds} s`}`);
        rows.push(row);
      }
    }
    const m = machine();
    return {
      dataset,
      command: `npx tsx bench/input-mount.ts ${argv.filter((arg) => arg !== '--write').join(' ')}`.trim(),
      date: new Date().toISOString(),
      machine: `${m.cores} cores, ${m.cpuModel}, ${m.memoryGb} GB, ${m.platform}, Node ${m.node}`,
      rows,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const isCase = (row: InputMountBench['rows'][number]): row is InputCaseResult => !('error' in row);

function table(bench: InputMountBench): Table {
  return {
    title: `Input phase: upload a copy vs serve the folder in place (${bench.dataset})`,
    headers: ['way', 'files', 'walk + digests s', 'place s (the run\'s "upload")', 'place files/s', 'list s', 'GET files/s', 'index MB', 'peak RSS MB', 'load'],
    rows: bench.rows.map((row) =>
      isCase(row)
        ? [
            row.way === 'copy' ? 'upload a copy (--copy-input)' : 'served in place (default)',
            row.files.toLocaleString('en-US'),
            fixed(row.walkSeconds + row.digestSeconds, 1),
            row.placeSeconds,
            fixed(row.files / row.placeSeconds, 0),
            row.listSeconds,
            fixed(row.gets / row.getSeconds, 0),
            row.indexMb,
            row.peakRssMb,
            row.load,
          ]
        : [row.way, row.error],
    ),
  };
}

/** The median place time of each way and their ratio, in one sentence. */
function verdict(bench: InputMountBench): string {
  const cases = bench.rows.filter(isCase);
  const place = (way: Way) => median(cases.filter((row) => row.way === way).map((row) => row.placeSeconds));
  const index = (way: Way) => median(cases.filter((row) => row.way === way).map((row) => row.indexMb));
  const files = cases[0]?.files ?? 0;
  if (!cases.some((row) => row.way === 'copy') || !cases.some((row) => row.way === 'mount')) return 'Not both ways measured: no ratio.';
  const ratio = place('copy') / place('mount');
  return (
    `Input phase on ${files.toLocaleString('en-US')} files: upload ${place('copy')} s, served in place ${place('mount')} s: ${fixed(ratio, 0)}x faster, and no copy ` +
    `(the walk and the digests, which the run id needs either way, are counted apart). The index of the served keys holds ${index('mount')} MB of heap ` +
    `(${fixed((index('mount') * 2 ** 20) / Math.max(1, files), 0)} bytes per key: key, size, ETag, mtime; no file contents), the uploaded copy's ${index('copy')} MB.`
  );
}

function section(bench: InputMountBench): string {
  return [
    INPUT_MOUNT_HEADING,
    '',
    `Measured by \`${bench.command}\` on ${bench.date} (${bench.machine}); kept as is by bench/run-all.ts, rewritten by \`npx tsx bench/input-mount.ts --write\`.`,
    '',
    `- ${verdict(bench)}`,
    '',
    markdownTable(table(bench)),
    '',
    "- walk + digests: listing the folder and every file's MD5 (the run id), the same work either way; not part of the phase.",
    '- place: what the run reports as its `upload` seconds: uploadFiles with lib-storage, 16 files at once, into a fresh store; or indexing the folder to serve it.',
    '- list: the whole prefix over HTTP (ListObjectsV2, 1,000 a page), as the map run lists it. GET: a spread sample read back over HTTP, 16 at a time, after 500 untimed.',
    bench.rows.length > 2
      ? '- Several rounds: each way is one row per round, in alternating order.'
      : "- One round per way: GET rates move with the load by more than the two paths differ (the mounted GET opens, stats and streams the file as a stored object's GET does); `--rounds 2` shows the spread.",
    "- index MB: heap kept by the store for the input after GC (the walk's own file list, which both ways hold, excluded). Each way in its own process: peak RSS is its own.",
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const way = argValue(argv, 'case');
  if (way === 'copy' || way === 'mount') {
    console.log(JSON.stringify(await runCase(way, argValue(argv, 'dir')!, argValue(argv, 'store')!)));
    return;
  }
  const renderFrom = argValue(argv, 'render');
  const bench = renderFrom ? (JSON.parse(readFileSync(renderFrom, 'utf8')) as InputMountBench) : await measure(argv);
  if (!renderFrom) {
    const saved = join(RESULTS_DIR, `input-mount-${bench.date.replace(/[:.]/g, '-')}.json`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(saved, JSON.stringify(bench, null, 1));
    console.log(`raw results: ${saved} (re-render with --render <file>)`);
  }
  printTable(table(bench));
  console.log(`\n${verdict(bench)}`);
  if (argv.includes('--write')) {
    writeFileSync(DOC, withDocSection(readFileSync(DOC, 'utf8'), INPUT_MOUNT_HEADING, section(bench)));
    console.log(`\nwrote the "${INPUT_MOUNT_HEADING.slice(3)}" section of ${DOC}`);
  }
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
