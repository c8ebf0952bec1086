/**
 * `run [dir]`: the whole pipeline on this machine (local/local-run.ts), with progress and a
 * summary for people, or one JSON document with `--json`.
 */
import { readableCause } from '../lambdas/bookkeeping';
import type { PipelineConfigInput } from '../lib/config';
import { LocalRunSummary, runLocally } from '../local/local-run';
import { createProgressDisplay } from './progress';
import type { ClassifierKind } from '../lambdas/contracts/handler-env';

export interface RunCommandOptions {
  readonly batchSize?: number;
  readonly concurrency?: number;
  readonly components?: number;
  readonly variance?: number;
  readonly imageSize?: number;
  readonly knn?: number;
  readonly classifier?: ClassifierKind;
  readonly classifierComponents?: number;
  readonly keepEmbeddings?: boolean;
  readonly featurizer?: 'cnn' | 'pixels';
  readonly modelDir?: string;
  readonly keepServer?: boolean;
  readonly json?: boolean;
  readonly dataDir: string;
  readonly copyInput?: boolean;
  readonly out: string;
  readonly workers?: number;
  readonly runId?: string;
  /** Project with the model of an earlier run (its id) or a pca-model.json (a path), no refit. */
  readonly modelFrom?: string;
}

/** Returns the process exit code: 0 when the run succeeded. */
export async function runCommand(dir: string | undefined, options: RunCommandOptions): Promise<number> {
  const display = createProgressDisplay({ silent: options.json });
  const config: PipelineConfigInput = {
    ...(options.batchSize !== undefined && { batchSize: options.batchSize }),
    ...(options.concurrency !== undefined && { maxConcurrency: options.concurrency }),
    ...(options.components !== undefined && { pcaComponents: options.components }),
    ...(options.variance !== undefined && { pcaVarianceThreshold: options.variance }),
    ...(options.imageSize !== undefined && { imageSize: options.imageSize }),
    ...(options.featurizer !== undefined && { featurizer: options.featurizer }),
    ...(options.knn !== undefined && { knnNeighbours: options.knn }),
    ...(options.classifier !== undefined && { classifier: options.classifier }),
    ...(options.classifierComponents !== undefined && { classifierComponents: options.classifierComponents }),
    ...(options.keepEmbeddings && { keepEmbeddings: true }),
  };
  let result;
  try {
    result = await runLocally({
      inputDir: dir,
      dataDir: options.dataDir,
      copyInput: options.copyInput,
      outDir: options.out,
      config,
      modelDir: options.modelDir,
      runId: options.runId,
      modelFrom: options.modelFrom,
      workers: options.workers,
      keepServer: options.keepServer,
      onProgress: (progress) => display.update(progress),
      onNotice: (line) => display.log(line),
    });
  } finally {
    display.stop();
  }
  const { summary } = result;
  if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else process.stdout.write(formatRunSummary(summary));

  if (options.keepServer) {
    process.stderr.write(
      `\nS3 server left running at ${summary.endpoint} (bucket ${summary.bucket}, data in ${options.dataDir}).\n` +
        `  e.g. AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER aws --endpoint-url ${summary.endpoint} s3 ls s3://${summary.bucket}/results/${summary.runId}/\n` +
        'Press Ctrl-C to stop it.\n',
    );
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    await result.close();
  }
  return summary.status === 'SUCCEEDED' ? 0 : 1;
}

export function formatRunSummary(summary: LocalRunSummary): string {
  const lines: string[] = [];
  const percent = (value: number) => `${(100 * value).toFixed(1)}%`;
  const t = summary.phaseSeconds;
  const rate = t.featurize > 0 ? ` (${((summary.processed + summary.failed) / t.featurize).toFixed(1)} images/s)` : '';
  lines.push(`Run ${summary.runId}: ${summary.status} in ${summary.seconds.toFixed(1)} s`);
  lines.push(
    `  time        upload ${t.upload.toFixed(1)} s, synth ${t.synth.toFixed(1)} s, featurize ${t.featurize.toFixed(1)} s${rate} on ${summary.workers} worker thread(s), aggregate ${t.aggregate.toFixed(1)} s`,
  );
  const placed =
    summary.served > 0 || summary.uploaded + summary.alreadyPresent === 0
      ? `${summary.served} files served from the folder in place, read-only, none copied`
      : `${summary.uploaded} uploaded, ${summary.alreadyPresent} already there`;
  const links = summary.linksFollowed > 0 ? `; ${summary.linksFollowed} symbolic link(s) followed` : '';
  lines.push(`  input       s3://${summary.bucket}/${summary.inputPrefix} (${placed}${links})`);
  lines.push(`  images      ${summary.processed} featurized, ${summary.failed} failed, ${summary.skipped} skipped (${summary.listed} objects listed)`);
  for (const { reason, count } of summary.failuresByReason.slice(0, 10)) lines.push(`    ${String(count).padStart(5)} x ${reason}`);
  if (summary.failuresByReason.length > 10) lines.push(`    ... ${summary.failuresByReason.length - 10} more reasons in report.json`);
  if (summary.featurizer) lines.push(`  featurizer  ${summary.featurizer} (backend ${summary.backends.join(', ') || 'unknown'})`);
  if (summary.components !== undefined && summary.explainedVariance !== undefined) {
    const source = summary.model ? ` (the model of run ${summary.model.runId}, not refitted: ${summary.model.path})` : '';
    lines.push(`  PCA         k = ${summary.components}, explained variance ${percent(summary.explainedVariance)}${source}`);
  }
  if (summary.knn) {
    lines.push(
      `  ${(summary.knn.classifier ?? `${summary.knn.k}-NN`).padEnd(11)} ${percent(summary.knn.accuracy)} accuracy (${summary.knn.correct}/${summary.knn.scored} ${summary.model ? 'images of known labels' : 'Test images'}, ${summary.knn.references} Training references${summary.model ? ` of run ${summary.model.runId}` : ''}; predictions.csv, report.html)`,
    );
  }
  if (summary.error) lines.push(`  error       ${summary.error.error}: ${readableCause(summary.error.cause, summary.error.error)}`);
  const settings = Object.entries(summary.settings.values).map(([name, value]) => `${name}=${value}`);
  lines.push(`  settings    ${summary.settings.digest} (the run id's last part): ${settings.join(' ')}`);
  if (summary.outDir) lines.push(`  outputs     ${summary.outDir} (run ${summary.runId})`);
  return `${lines.join('\n')}\n`;
}
