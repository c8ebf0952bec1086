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
 * The worker is a short script evaluated from a string, so it needs neither its own bundle entry
 * in the Lambda image nor a TypeScript loader under tsx and jest; it loads onnxruntime-node from
 * the path the calling module resolved.
 */
import { Worker } from 'node:worker_threads';

export interface OnnxWorkerSessionOptions {
  readonly intraOpNumThreads: number;
  readonly inputName: string;
  readonly outputName: string;
}

interface Reply {
  readonly id: number;
  readonly output?: Float32Array;
  readonly error?: string;
}

/** Runs in the worker: create the session, then answer `{ id, data, dims }` with the output. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const { model, options } = workerData;
ort.InferenceSession.create(model, { intraOpNumThreads: options.intraOpNumThreads, interOpNumThreads: 1, graphOptimizationLevel: 'all' }).then(
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

export class OnnxWorkerSession {
  /** Starts the worker and waits until its session is built (or throws why it could not be). */
  static async create(model: Uint8Array, options: OnnxWorkerSessionOptions): Promise<OnnxWorkerSession> {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ortPath: require.resolve('onnxruntime-node'), model, options },
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
