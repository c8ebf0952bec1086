/**
 * An onnxruntime-node session on its own thread.
 *
 * onnxruntime-node's `session.run` is asynchronous only in name: it calls the native run inside a
 * `setImmediate` on the JavaScript thread, which it then holds for the whole inference (about 70 ms
 * for 32 images). While it does, the featurize handler can neither send the next GETs nor hand
 * decoded images on, so reading and inference take turns instead of overlapping. Here the session
 * lives in a worker thread: the handler's thread keeps reading and decoding while the model runs
 * (bench/featurize.ts measures both paths side by side).
 *
 * A native failure can end the process rather than throw, and a worker thread would go down with
 * it: `probeInputDims` has the session built and run once in a child process first
 * (`probeOnnxRuntime`), and onnxruntime-node loads here only once that child survived.
 *
 * The worker is a short script evaluated from a string, so it needs neither its own bundle entry
 * in the Lambda image nor a TypeScript loader under tsx and jest; it loads onnxruntime-node from
 * the path the calling module resolved.
 */
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { IDLE_THREADS_BLOCK } from '../../common';

export interface OnnxWorkerSessionOptions {
  readonly intraOpNumThreads: number;
  readonly inputName: string;
  readonly outputName: string;
  /**
   * When set, the session is first built in a child process and run once on zeros of these dims;
   * onnxruntime-node is loaded into this process only if that child survives (`probeOnnxRuntime`).
   */
  readonly probeInputDims?: readonly number[];
}

interface Reply {
  readonly id: number;
  readonly output?: Float32Array;
  readonly error?: string;
}

/** The session's options, the same in the probe and the worker; idle pool threads block (`IDLE_THREADS_BLOCK`). */
function sessionOptions(options: OnnxWorkerSessionOptions) {
  return { intraOpNumThreads: options.intraOpNumThreads, interOpNumThreads: 1, graphOptimizationLevel: 'all', extra: IDLE_THREADS_BLOCK };
}

/** Runs in the worker: create the session, then answer `{ id, data, dims }` with the output. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const { model, options } = workerData;
ort.InferenceSession.create(model, workerData.sessionOptions).then(
  (session) => {
    parentPort.postMessage({ id: 0 });
    parentPort.on('message', async ({ id, data, dims }) => {
      try {
        const result = await session.run({ [options.inputName]: new ort.Tensor('float32', data, dims) });
        const output = Float32Array.from(result[options.outputName].data);
        parentPort.postMessage({ id, output }, [output.buffer]);
      } catch (error) {
        parentPort.postMessage({ id, error: String(error && error.message || error) });
      }
    });
  },
  (error) => parentPort.postMessage({ id: 0, error: String(error && error.message || error) }),
);
`;

/**
 * Runs in the probe process: the model arrives on stdin, the settings in argv; the session is
 * built and run once, and the process exits 0 only if both worked.
 */
const PROBE_SOURCE = `
const { ortPath, options, dims, sessionOptions } = JSON.parse(process.argv[1]);
const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', async () => {
  try {
    const ort = require(ortPath);
    const session = await ort.InferenceSession.create(Buffer.concat(chunks), sessionOptions);
    const size = dims.reduce((a, b) => a * b, 1);
    await session.run({ [options.inputName]: new ort.Tensor('float32', new Float32Array(size), dims) });
    process.exit(0);
  } catch (error) {
    process.stderr.write(String((error && error.message) || error) + '\\n');
    process.exit(1);
  }
});
`;

/** How long a probe may take before it counts as failed (a model build takes about 1 s on one core). */
const PROBE_TIMEOUT_MS = 120_000;
/** The end of the probe's stderr kept for the error: onnxruntime's and cpuinfo's last words. */
const PROBE_STDERR_CHARS = 8_192;
/** Node's own report of an abort (numbered native and JavaScript frames) says nothing of the cause. */
const NODE_ABORT_TRACE = /^\s*(\d+: |-----)/;

/**
 * Builds `model` and runs it once in a child process, and resolves only if that process exits 0.
 * A native failure in onnxruntime-node can end the whole process instead of throwing: on arm64
 * Lambda, CPU detection (pytorch/cpuinfo) finds no `/sys/devices/system/cpu/possible`, and builds
 * that logged it before their logger existed called std::terminate (SIGABRT; microsoft/onnxruntime
 * issues 10038 and 15650). 1.30 warns instead, but cpuinfo still aborts the process when any of
 * its getters runs after a failed start (pytorch/cpuinfo src/api.c). A worker thread shares the
 * process, so only another process can take that blow; here it becomes an error the caller can
 * fall back on. `ortPath` is the module the probe loads (tests pass one that aborts).
 */
export function probeOnnxRuntime(
  model: Uint8Array,
  options: OnnxWorkerSessionOptions & { readonly probeInputDims: readonly number[] },
  ortPath: string = require.resolve('onnxruntime-node'),
): Promise<void> {
  const settings = { ortPath, options, dims: options.probeInputDims, sessionOptions: sessionOptions(options) };
  return new Promise((resolve, reject) => {
    // NODE_OPTIONS left out: the probe is plain JavaScript and needs no loader or source maps.
    const child = spawn(process.execPath, ['-e', PROBE_SOURCE, JSON.stringify(settings)], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => (stderr = (stderr + text).slice(-PROBE_STDERR_CHARS)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, PROBE_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`onnxruntime-node probe process could not start: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const how = signal ? `was killed by ${signal}${timedOut ? ` (no answer in ${PROBE_TIMEOUT_MS / 1000} s)` : ''}` : `exited with code ${code}`;
      const said = stderr
        .split('\n')
        .filter((line) => line.trim() && !NODE_ABORT_TRACE.test(line))
        .slice(-4)
        .join(' | ');
      reject(new Error(`onnxruntime-node probe process ${how}${said ? `: ${said}` : ''}`));
    });
    // A child that dies before reading all of stdin breaks the pipe: its exit status says why.
    child.stdin.on('error', () => undefined);
    child.stdin.end(model);
  });
}

export class OnnxWorkerSession {
  /**
   * Starts the worker and waits until its session is built (or throws why it could not be); with
   * `probeInputDims`, only after the same session survived in a child process.
   */
  static async create(model: Uint8Array, options: OnnxWorkerSessionOptions): Promise<OnnxWorkerSession> {
    if (options.probeInputDims) await probeOnnxRuntime(model, { ...options, probeInputDims: options.probeInputDims });
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ortPath: require.resolve('onnxruntime-node'), model, options, sessionOptions: sessionOptions(options) },
    });
    const session = new OnnxWorkerSession(worker);
    await session.reply(0);
    return session;
  }

  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (output: Float32Array) => void; reject: (error: Error) => void }>();
  private failure: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', ({ id, output, error }: Reply) => {
      const waiter = this.pending.get(id);
      this.pending.delete(id);
      this.holdProcess();
      if (error !== undefined) waiter?.reject(new Error(`onnxruntime: ${error}`));
      // id 0 is the session being ready: no output.
      else waiter?.resolve(output ?? new Float32Array(0));
    });
    const fail = (error: Error) => {
      this.failure = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`onnxruntime worker thread exited (code ${code})`)));
  }

  /** One inference. `data` is transferred to the worker: the caller must not use it afterwards. */
  run(data: Float32Array, dims: readonly number[]): Promise<Float32Array> {
    const id = this.nextId++;
    const output = this.reply(id);
    this.worker.postMessage({ id, data, dims }, [data.buffer as ArrayBuffer]);
    return output;
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }

  private reply(id: number): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    const reply = new Promise<Float32Array>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.holdProcess();
    return reply;
  }

  /** An idle worker never keeps a process (a Lambda runtime, a test, a local run) alive; a busy one does. */
  private holdProcess(): void {
    if (this.pending.size > 0) this.worker.ref();
    else this.worker.unref();
  }
}
