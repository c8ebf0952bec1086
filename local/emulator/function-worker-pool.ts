/**
 * A pool of worker threads, each holding one instance of a handler module: the local stand-in for
 * a Lambda function's concurrent execution environments. Featurization is CPU-bound (decode,
 * resize, CNN forward pass), so local throughput scales with cores only across threads.
 *
 * Like a Lambda environment, a worker serves one invocation at a time and keeps its module state
 * (the loaded model) between invocations. Invocations beyond the pool size wait in a queue, so the
 * pool size is a second bound next to the Distributed Map's MaxConcurrency.
 *
 * Time limits run from when a worker takes the invocation, never while it waits in the queue: on
 * AWS each child would have had its own execution environment at once. A Task state's
 * TimeoutSeconds (given per invocation) runs from when the invocation is posted to the worker, so
 * it includes a fresh worker's module init, as a Task's clock includes a cold start; the function's
 * own timeout runs from when the handler is called, as Lambda does not count the Init phase in it.
 * Either expiry ends the invocation and replaces its worker (a thread cannot be interrupted
 * otherwise), so the pool keeps its size.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { WorkerMessage } from './function-worker';
import { Json, namedError } from './asl';
import type { LocalFunctionOptions } from './service-integrations';

export interface FunctionWorkerPoolProps {
  /** Absolute path of the handler module (`.ts` is loaded through tsx). */
  readonly modulePath: string;
  /** @default 'handler' */
  readonly exportName?: string;
  /** Threads. @default the machine's available parallelism */
  readonly size?: number;
  /** The function's environment; each worker gets its own copy of process.env with these set. */
  readonly environment?: Record<string, string>;
  /**
   * The function's own timeout (the template's `Timeout`): a handler that runs longer fails with
   * `Sandbox.Timedout`, as in Lambda. @default no limit
   */
  readonly timeoutSeconds?: number;
  /**
   * The function's memory (the template's `MemorySize`): each worker's JavaScript heap may not
   * grow past it, and a handler that needs more fails with `Runtime.OutOfMemory`, as in Lambda
   * (where the limit is the whole process's; native memory is not counted here). Each worker's
   * environment states it as `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, as Lambda's does. @default no limit
   */
  readonly memorySizeMb?: number;
}

interface Pending {
  readonly payload: unknown;
  readonly timeoutMs?: number;
  readonly resolve: (value: Json) => void;
  readonly reject: (error: Error) => void;
}

interface Busy {
  readonly id: number;
  readonly pending: Pending;
  readonly timers: NodeJS.Timeout[];
}

interface Slot {
  worker: Worker;
  busy?: Busy;
}

/** setTimeout fires at once beyond this (2^31 - 1 ms): a longer limit is no limit here. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class FunctionWorkerPool {
  readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private closed = false;

  constructor(private readonly props: FunctionWorkerPoolProps) {
    this.size = Math.max(1, props.size ?? availableParallelism());
  }

  /**
   * Invoke the handler in a free worker (starting one if the pool is not full yet). `timeoutMs`
   * is the Task state's TimeoutSeconds: beyond it the invocation fails with `States.Timeout`.
   */
  invoke = (payload: Json, options: LocalFunctionOptions = {}): Promise<Json> => {
    if (this.closed) return Promise.reject(new Error('function worker pool is closed'));
    return new Promise<Json>((resolve, reject) => {
      this.queue.push({ payload, timeoutMs: options.timeoutMs, resolve, reject });
      this.dispatch();
    });
  };

  /**
   * Start every worker of the pool now, idle: their module init (a Lambda function's cold start:
   * loading the handler and what it imports) is then done before their first invocation. An idle
   * worker does not keep the process alive. Resolves when every worker started here has loaded
   * its module (or exited).
   */
  warm(): Promise<void> {
    const started: Promise<void>[] = [];
    while (!this.closed && this.slots.length < this.size) {
      const { worker } = this.spawn();
      worker.unref();
      started.push(
        new Promise((resolve) => {
          worker.on('message', (message: WorkerMessage) => 'ready' in message && resolve());
          worker.once('exit', () => resolve());
        }),
      );
    }
    return Promise.all(started).then(() => undefined);
  }

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
      const busy: Busy = { id, pending, timers: [] };
      slot.busy = busy;
      slot.worker.ref();
      slot.worker.postMessage({ id, payload: pending.payload });
      // The Task's clock starts here, when a worker takes the invocation: queue time never counts.
      const { timeoutMs } = pending;
      if (timeoutMs !== undefined && timeoutMs < MAX_TIMER_MS) {
        const seconds = timeoutMs / 1000;
        this.startTimer(slot, busy, timeoutMs, () =>
          namedError(
            'States.Timeout',
            `The task timed out after ${seconds} s of running in a worker of ${this.props.modulePath} ` +
              '(TimeoutSeconds; the time it waited for a free worker is not counted).',
          ),
        );
      }
    }
  }

  /** The function's own timeout, from when the worker calls the handler. */
  private handlerStarted(slot: Slot, busy: Busy): void {
    const { timeoutSeconds } = this.props;
    if (timeoutSeconds === undefined || timeoutSeconds * 1000 >= MAX_TIMER_MS) return;
    // Lambda's errorType for a function that runs out of time is Sandbox.Timedout
    // (https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-invocation.html); the message
    // is the line Lambda logs then. That the invoke response prefixes it with
    // `RequestId: <id> Error: ` is from memory, and left out here.
    this.startTimer(slot, busy, timeoutSeconds * 1000, () => namedError('Sandbox.Timedout', `Task timed out after ${timeoutSeconds.toFixed(2)} seconds`));
  }

  /**
   * When `ms` pass before the reply, fail the invocation with `error()` and replace the worker: a
   * thread cannot be interrupted otherwise, and its capacity must come back. (On AWS a Task that
   * times out leaves its Lambda invocation running until the function timeout; locally the
   * worker is needed for the queue.)
   */
  private startTimer(slot: Slot, busy: Busy, ms: number, error: () => Error): void {
    const timer = setTimeout(() => {
      if (slot.busy !== busy) return;
      this.release(slot);
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots.splice(index, 1);
      void slot.worker.terminate();
      busy.pending.reject(error());
      this.dispatch();
    }, ms);
    busy.timers.push(timer);
  }

  /** The slot's invocation is over (answered, timed out or lost): stop its timers. */
  private release(slot: Slot): Busy | undefined {
    const busy = slot.busy;
    if (!busy) return undefined;
    for (const timer of busy.timers) clearTimeout(timer);
    slot.busy = undefined;
    return busy;
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
      env: {
        ...process.env,
        ...this.props.environment,
        ...(this.props.memorySizeMb ? { AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(this.props.memorySizeMb) } : {}),
      },
      ...(this.props.memorySizeMb ? { resourceLimits: { maxOldGenerationSizeMb: this.props.memorySizeMb } } : {}),
    });
    const slot: Slot = { worker };
    worker.on('message', (message: WorkerMessage) => {
      const current = slot.busy;
      if ('ready' in message || !current || current.id !== message.id) return;
      if ('started' in message) {
        this.handlerStarted(slot, current);
        return;
      }
      const busy = this.release(slot)!;
      // An idle worker must not keep the process alive (the CLI exits when its work is done).
      worker.unref();
      if (message.ok) busy.pending.resolve(message.result as Json);
      else busy.pending.reject(Object.assign(new Error(message.error.message), { name: message.error.name, stack: message.error.stack }));
      this.dispatch();
    });
    const lost = (error: Error) => {
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots.splice(index, 1);
      const busy = this.release(slot);
      if (busy) {
        // What Lambda reports when the runtime process dies under an invocation, or runs out of memory.
        const outOfMemory = (error as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
        const name = outOfMemory ? 'Runtime.OutOfMemory' : 'Runtime.ExitError';
        busy.pending.reject(Object.assign(new Error(`worker for ${this.props.modulePath} exited: ${error.message}`), { name }));
      }
      if (!this.closed) this.dispatch();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`exit code ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}
