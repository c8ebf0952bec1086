/**
 * The local S3 server in a process of its own at the lowest CPU priority, for benchmarks that time
 * a handler against it.
 *
 * On AWS, S3 does its work on S3's machines: none of it runs on the function's vCPUs. Here the
 * stand-in shares the machine's two cores with the handler, and at the same priority it takes
 * turns with the model's thread (about 0.4 ms of CPU per GET served). At nice 19 it runs on the
 * cycles the handler leaves, which is what a benchmark of the handler alone should see. The bench
 * that uses it also times the handler against a server at normal priority, side by side.
 */
import { fork } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { pathToFileURL } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../lambdas/aws/s3-client';

/** The lowest priority a process can give itself (the Unix nice value 19). */
const LOWEST_PRIORITY = 19;
const SERVE_FLAG = '--serve-s3-in-background';

export interface BackgroundS3Server {
  /** The server's process (its threads run at the lowest priority). */
  readonly pid: number;
  /** Environment that points `createS3Client` (and so every handler) at this server. */
  readonly env: Record<string, string>;
  readonly client: S3Client;
  close(): Promise<void>;
}

export async function startBackgroundS3Server(buckets: readonly string[]): Promise<BackgroundS3Server> {
  // tsx's hooks load this TypeScript file in the child, whatever ran the parent (tsx, jest).
  const execArgv = ['--require', require.resolve('tsx/cjs'), '--import', pathToFileURL(require.resolve('tsx/esm')).href];
  const child = fork(__filename, [SERVE_FLAG, JSON.stringify(buckets)], { execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const env = await new Promise<Record<string, string>>((resolve, reject) => {
    child.once('message', (message) => resolve(message as Record<string, string>));
    child.once('exit', (code) => reject(new Error(`the background S3 server exited (code ${code}) before it was ready`)));
  });
  child.removeAllListeners('exit');
  const client = createS3Client(env);
  return {
    pid: child.pid!,
    env,
    client,
    async close() {
      client.destroy();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.disconnect();
      await exited;
    },
  };
}

/**
 * Every thread of this process at the lowest priority. Linux keeps a nice value per thread and a
 * new thread inherits its creator's, so the threads Node started before this call are lowered one
 * by one and the ones started later (libuv's pool) follow the main thread.
 */
function lowerOwnPriority(): void {
  setPriority(0, LOWEST_PRIORITY);
  if (process.platform !== 'linux') return;
  for (const thread of readdirSync('/proc/self/task')) {
    try {
      setPriority(Number(thread), LOWEST_PRIORITY);
    } catch {
      // A thread that ended meanwhile.
    }
  }
}

async function serve(buckets: string[]): Promise<void> {
  lowerOwnPriority();
  const { startLocalS3Server } = await import('../local/emulator/s3/s3-server');
  const server = await startLocalS3Server({ buckets });
  process.once('disconnect', () => void server.close().then(() => process.exit(0)));
  process.send!(server.env);
}

if (require.main === module && process.argv[2] === SERVE_FLAG) {
  serve(JSON.parse(process.argv[3]) as string[]).catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
