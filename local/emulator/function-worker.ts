/**
 * Worker-thread side of `FunctionWorkerPool`: loads one handler module (its init code, model
 * included, runs once per worker, like a Lambda container's) and answers invocations.
 */
import { parentPort, workerData } from 'node:worker_threads';

interface FunctionWorkerData {
  readonly modulePath: string;
  readonly exportName: string;
}

export interface InvokeRequest {
  readonly id: number;
  readonly payload: unknown;
}

export type InvokeReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: { name: string; message: string; stack?: string } };

/**
 * What a worker posts back: `ready` once its handler module is loaded (its init done), then per
 * invocation `started` when the handler is called (after the module's init, which Lambda does not
 * count in the function timeout either), then the reply.
 */
export type WorkerMessage = { readonly ready: true } | { readonly id: number; readonly started: true } | InvokeReply;

const { modulePath, exportName } = workerData as FunctionWorkerData;
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the handler module is named at run time
const handler = require(modulePath)[exportName] as (event: unknown) => Promise<unknown>;
if (typeof handler !== 'function') throw new Error(`${modulePath} does not export a function "${exportName}"`);
parentPort!.postMessage({ ready: true } satisfies WorkerMessage);

parentPort!.on('message', async ({ id, payload }: InvokeRequest) => {
  parentPort!.postMessage({ id, started: true } satisfies WorkerMessage);
  let reply: InvokeReply;
  try {
    reply = { id, ok: true, result: await handler(payload) };
  } catch (caught) {
    const error = caught as Error;
    reply = { id, ok: false, error: { name: error?.name ?? 'Error', message: error?.message ?? String(caught), stack: error?.stack } };
  }
  parentPort!.postMessage(reply satisfies WorkerMessage);
});
