/**
 * The aggregate phase of a kept local run again, on its own shards: the synthesized state machine
 * from the state after `FeaturizeImages`, with the aggregate function's worker pool as the local
 * run starts it (same environment, timeout, memory and size), against the run's own store. What a
 * change to the aggregate costs or saves on real shards, without featurizing again:
 *
 *   npx tsx bench/end-to-end.ts --whole-dataset --keep /tmp/whole          # once: input, store, outputs kept
 *   npx tsx bench/aggregate-phase.ts --keep /tmp/whole                     # the aggregate phase, 1 round
 *   npx tsx bench/aggregate-phase.ts --keep /tmp/whole --rounds 2 --config '{"aggregateGroupShards":80}'
 *   npx tsx bench/aggregate-phase.ts --keep /tmp/whole --out /tmp/outputs  # also copy results/<runId>/ there
 *
 * `FeaturizeImages` is replaced by a Task on a stand-in function that hands on the map run's
 * recorded result (its manifest in the store), so every state after it runs as in the local run.
 * The clock starts when that Task runs, where the local run's aggregate phase starts (its featurize
 * map finished): the emulator's checks of the definition at the execution's start are not the
 * phase's. Each round starts a fresh worker pool and, as the local run does while featurize runs,
 * lets its workers load their modules before the clock starts. Printed: the process's CPU seconds in the phase (every thread),
 * the phase's wall time, report.json's stage times, and each invocation's window in the phase
 * (posted to the pool, answered), from which the gaps between stages follow.
 */
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { listAllObjects, readJsonIfPresent } from '../lambdas/aws/s3-client';
import { countExternalMemoryInHeapLimit, mapWithConcurrency } from '../lambdas/common';
import { LOCAL_OBSERVABILITY_ENV } from '../lambdas/contracts/handler-env';
import { MAP_RUN_LABEL } from '../lambdas/contracts/state-machine';
import { runLayout } from '../lambdas/contracts/bucket-layout';
import { datasetInputPrefix } from '../lambdas/contracts/bucket-layout';
import { datasetName, readDatasetFolder } from '../client/dataset-folder';
import { downloadRunOutputs } from '../client/run-outputs';
import type { PipelineConfigInput } from '../lib/config';
import { lockDataDir } from '../local/data-dir-lock';
import { serveInputFolder } from '../local/input-folder';
import { LOCAL_BUCKET } from '../local/local-run';
import type { AslDefinition, Json } from '../local/emulator/asl';
import { FunctionWorkerPool } from '../local/emulator/function-worker-pool';
import { runLocalExecution } from '../local/emulator/local-execution';
import { startLocalS3Server } from '../local/emulator/s3/s3-server';
import { synthesizePipeline } from '../local/emulator/synthesized-definition';
import { argValue, fixed, load } from './bench-support';

/** One invocation of the aggregate function: its stage and group, when it was posted and answered (ms into the phase). */
interface InvocationWindow {
  stage: string;
  group?: number;
  postedMs: number;
  answeredMs: number;
}

/**
 * CPU seconds so far of each of this process's threads, by thread id: its name (`comm`: the main
 * thread, the function workers' `WorkerThread`s with onnxruntime's pools, `V8Worker`s collecting
 * garbage and compiling for every isolate, `libuv-worker`s) and its seconds, from /proc (Linux).
 */
function threadCpuSeconds(): Map<string, { name: string; seconds: number }> {
  const ticks = 100; // USER_HZ
  const threads = new Map<string, { name: string; seconds: number }>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = Number(tid) === process.pid ? 'main' : readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      threads.set(tid, { name, seconds: (Number(fields[11]) + Number(fields[12])) / ticks });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return threads;
}

/** The CPU seconds each kind of thread used since `before` (a thread that ended in between is not counted). */
function cpuSecondsByThreadName(before: ReturnType<typeof threadCpuSeconds>): Record<string, number> {
  const byName: Record<string, number> = {};
  for (const [tid, { name, seconds }] of threadCpuSeconds()) byName[name] = (byName[name] ?? 0) + seconds - (before.get(tid)?.seconds ?? 0);
  return Object.fromEntries(Object.entries(byName).map(([name, seconds]) => [name, fixed(seconds)]));
}

/** The stand-in function `FeaturizeImages` becomes a Task on: it returns the recorded map run's result. */
const RECORDED_MAP_RUN_FUNCTION = 'arn:aws:lambda:us-east-1:000000000000:function:recorded-featurize-map-run';

/** The definition with `FeaturizeImages` as a Task on `RECORDED_MAP_RUN_FUNCTION`. */
function fromRecordedMapRun(definition: AslDefinition): AslDefinition {
  const map = definition.States[MAP_RUN_LABEL];
  if (!map) throw new Error(`the definition has no ${MAP_RUN_LABEL} state`);
  const task = { Type: 'Task', Resource: RECORDED_MAP_RUN_FUNCTION, ResultPath: map.ResultPath, Next: map.Next };
  return { ...definition, States: { ...definition.States, [MAP_RUN_LABEL]: task } };
}

/** The kept run's id and its featurize map run's result (the one run in the store). */
async function recordedRun(s3: Parameters<typeof listAllObjects>[0]): Promise<{ runId: string; mapResult: Json }> {
  const manifests = (await listAllObjects(s3, LOCAL_BUCKET, 'work/')).map((o) => o.Key!).filter((key) => key.endsWith('/manifest.json'));
  const featurize = manifests.filter((key) => key.includes('/map-results/'));
  if (featurize.length !== 1) throw new Error(`expected one featurize map run in the store, found ${featurize.length}`);
  const key = featurize[0];
  const runId = key.split('/')[1];
  const manifest = await readJsonIfPresent<{ MapRunArn: string }>(s3, LOCAL_BUCKET, key);
  return { runId, mapResult: { MapRunArn: manifest!.MapRunArn, ResultWriterDetails: { Bucket: LOCAL_BUCKET, Key: key } } };
}

/**
 * The phase's wall time and the process's CPU in it (this thread, the store's server, and the
 * workers): what the phase costs whatever else shares the machine, where its wall time is not.
 */
class PhaseClock {
  private started = performance.now();
  private cpu = process.cpuUsage();
  private threads = threadCpuSeconds();

  start(): void {
    this.started = performance.now();
    this.cpu = process.cpuUsage();
    this.threads = threadCpuSeconds();
  }

  /** Milliseconds into the phase. */
  ms(): number {
    return Math.round(performance.now() - this.started);
  }

  reading() {
    const cpu = process.cpuUsage(this.cpu);
    const { main, ...others } = cpuSecondsByThreadName(this.threads);
    return {
      aggregateSeconds: fixed((performance.now() - this.started) / 1000),
      cpuSeconds: fixed((cpu.user + cpu.system) / 1e6),
      // Threads that ended in the phase are not counted in `others`: the pool's workers live through it.
      mainThreadCpuSeconds: main ?? 0,
      otherThreadsCpuSeconds: fixed(Object.values(others).reduce((sum, seconds) => sum + seconds, 0)),
      otherThreadsByName: others,
    };
  }
}

async function main(): Promise<void> {
  // This thread serves the emulated S3 and state machine, as the local run's does: the same V8 setting (local-run.ts).
  countExternalMemoryInHeapLimit();
  const argv = process.argv.slice(2);
  const keep = resolve(argValue(argv, 'keep') ?? '');
  const rounds = Number(argValue(argv, 'rounds') ?? 1);
  const configText = argValue(argv, 'config');
  const config = configText === undefined ? undefined : (JSON.parse(configText) as PipelineConfigInput);
  const outDir = argValue(argv, 'out');
  const dataDir = join(keep, 'run', 's3');
  const inputRoot = join(
    keep,
    readdirSync(keep).find((name) => name !== 'run')!,
  );
  const lock = lockDataDir(dataDir);
  const server = await startLocalS3Server({ directory: dataDir, buckets: [LOCAL_BUCKET] });
  try {
    const pipeline = synthesizePipeline({ bucketName: LOCAL_BUCKET, config });
    const folder = readDatasetFolder(inputRoot);
    const dataset = datasetName(inputRoot.split('/').pop()!);
    const inputPrefix = datasetInputPrefix(dataset);
    // Digested a few files at a time (each is computed once, then served): all at once runs out of file descriptors.
    await mapWithConcurrency(folder.files, 16, (file) => file.digests());
    await serveInputFolder(server, { bucket: LOCAL_BUCKET, prefix: inputPrefix, root: inputRoot, files: folder.files });
    const { runId, mapResult } = await recordedRun(server.client);
    const definition = fromRecordedMapRun(pipeline.definition);
    for (let round = 0; round < rounds; round++) {
      const pool = new FunctionWorkerPool({
        modulePath: join(__dirname, '..', 'lambdas', 'aggregate', 'handler.ts'),
        size: Math.min(availableParallelism(), pipeline.config.aggregateConcurrency),
        environment: { ...pipeline.aggregate.environment, ...server.env, POWERTOOLS_LOG_LEVEL: 'WARN', ...LOCAL_OBSERVABILITY_ENV },
        timeoutSeconds: pipeline.aggregate.timeoutSeconds,
        memorySizeMb: pipeline.aggregate.memorySizeMb,
      });
      // The local run loads the aggregate's workers while featurize runs (`warm`): so here, before the clock starts.
      await pool.warm();
      const windows: InvocationWindow[] = [];
      const loadBefore = load();
      const clock = new PhaseClock();
      const recordedMapRun = async () => {
        clock.start();
        return mapResult;
      };
      const invoke: typeof pool.invoke = async (payload, options) => {
        const event = payload as { stage?: string; group?: number };
        const window: InvocationWindow = { stage: event.stage ?? 'all', group: event.group, postedMs: clock.ms(), answeredMs: 0 };
        windows.push(window);
        try {
          return await pool.invoke(payload, options);
        } finally {
          window.answeredMs = clock.ms();
        }
      };
      try {
        const functions = new Map([
          [pipeline.aggregate.arn, invoke],
          [RECORDED_MAP_RUN_FUNCTION, recordedMapRun],
        ]);
        const execution = await runLocalExecution({ definition, functions, s3: server.client }, runId, {
          inputPrefix,
        });
        const reading = clock.reading();
        const report = await readJsonIfPresent<{ timingsMs?: Record<string, number> }>(server.client, LOCAL_BUCKET, runLayout(runId).resultKey('report'));
        const row = {
          round,
          status: execution.status,
          ...(execution.status === 'FAILED' ? { error: execution.error, cause: execution.cause.slice(0, 500) } : {}),
          ...reading,
          stagesMs: report?.timingsMs,
          invocations: windows,
          load: `${loadBefore} -> ${load()}`,
        };
        console.log(JSON.stringify(row));
      } finally {
        await pool.close();
      }
    }
    if (outDir) await downloadRunOutputs(server.client, LOCAL_BUCKET, runId, outDir);
  } finally {
    await server.close();
    lock.release();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
