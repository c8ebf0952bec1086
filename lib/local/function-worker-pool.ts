/**
 * A pool of worker threads, each holding one instance of a handler module: the local stand-in for
 * a Lambda function's concurrent execution environments. Featurization is CPU-bound (decode,
 * resize, CNN forward pass), so local throughput scales with cores only across threads.
 *
 * Like a Lambda environment, a worker serves one invocation at a time and keeps its module state
 * (the loaded model) between invocations. Invocations beyond the pool size wait in a queue, so the
 * pool size is a second bound next to the Distributed Map's MaxConcurrency.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { InvokeReply } from './function-worker';
import type { Json } from './asl';

export interface FunctionWorkerPoolProps {
  /** Absolute path of the handler module (`.ts` is loaded through tsx). */
  readonly modulePath: string;
  /** @default 'handler' */
  readonly exportName?: string;
  /** Threads. @default the machine's available parallelism */
  readonly size?: number;
  /** The function's environment; each worker gets its own copy of process.env with these set. */
  readonly environment?: Record<string, string>;
}

interface Pending {
  readonly payload: unknown;
  readonly resolve: (value: Json) => void;
  readonly reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  busy?: { id: number; pending: Pending };
}

export class FunctionWorkerPool {
  readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private closed = false;

  constructor(private readonly props: FunctionWorkerPoolProps) {
    this.size = Math.max(1, props.size ?? availableParallelism());
  }

  /** Invoke the handler in a free worker (starting one if the pool is not full yet). */
  invoke = (payload: Json): Promise<Json> => {
    if (this.closed) return Promise.reject(new Error('function worker pool is closed'));
    return new Promise<Json>((resolve, reject) => {
      this.queue.push({ payload, resolve, reject });
      this.dispatch();
    });
  };

  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.queue.splice(0)) pending.reject(new Error('function worker pool closed'));
    await Promise.all(this.slots.splice(0).map((slot) => slot.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.busy);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const pending = this.queue.shift()!;
      const id = this.nextId++;
      slot.busy = { id, pending };
      slot.worker.ref();
      slot.worker.postMessage({ id, payload: pending.payload });
    }
  }

  private spawn(): Slot {
    const workerFile = join(__dirname, `function-worker${__filename.endsWith('.ts') ? '.ts' : '.js'}`);
    const needsTsx = workerFile.endsWith('.ts') || this.props.modulePath.endsWith('.ts');
    // Under tsx or jest the sources are TypeScript: the worker registers tsx's require hook itself,
    // so it works whichever way the parent was started.
    // Resolved here: an eval'd worker resolves bare specifiers from the current directory, not from this project.
    const tsx = needsTsx ? `require(${JSON.stringify(require.resolve('tsx/cjs/api'))}).register();` : '';
    const bootstrap = `${tsx}require(${JSON.stringify(workerFile)});`;
    const worker = new Worker(bootstrap, {
      eval: true,
      workerData: { modulePath: this.props.modulePath, exportName: this.props.exportName ?? 'handler' },
      env: { ...process.env, ...this.props.environment },
    });
    const slot: Slot = { worker };
    worker.on('message', (reply: InvokeReply) => {
      const busy = slot.busy;
      if (!busy || busy.id !== reply.id) return;
      slot.busy = undefined;
      // An idle worker must not keep the process alive (the CLI exits when its work is done).
      worker.unref();
      if (reply.ok) busy.pending.resolve(reply.result as Json);
      else busy.pending.reject(Object.assign(new Error(reply.error.message), { name: reply.error.name, stack: reply.error.stack }));
      this.dispatch();
    });
    const lost = (error: Error) => {
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots.splice(index, 1);
      if (slot.busy) {
        // What Lambda reports when the runtime process dies under an invocation.
        const name = 'Runtime.ExitError';
        slot.busy.pending.reject(Object.assign(new Error(`worker for ${this.props.modulePath} exited: ${error.message}`), { name }));
        slot.busy = undefined;
      }
      if (!this.closed) this.dispatch();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`exit code ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}
