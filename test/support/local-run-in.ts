/** A local run that keeps everything it writes in one test folder. */
import { join } from 'node:path';
import { LocalRunOptions, LocalRunResult, runLocally } from '../../local/local-run';

/** `runLocally` with its data directory in `<work>/s3` and its outputs in `<work>/out`. */
export function runLocallyIn(work: string, options: Omit<LocalRunOptions, 'dataDir' | 'outDir'>): Promise<LocalRunResult> {
  return runLocally({ ...options, dataDir: join(work, 's3'), outDir: join(work, 'out') });
}
