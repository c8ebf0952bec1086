/**
 * What a run that did not finish leaves to explain it, for the local run's summary and for
 * `status`/`results` of a deployed run: the failed items with their reasons (from report.json
 * when the aggregate step wrote it, else from the Distributed Map's own results) and counts.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { runLayout } from '../lambdas/contracts/bucket-layout';
import type { ItemProblem } from '../lambdas/contracts/events';
import { listAllObjects, readBytes, readJsonIfPresent, readText } from '../lambdas/aws/s3-client';
import { decodeFeatureShard, readableCause, readMapRunResults } from '../lambdas/bookkeeping';
import type { RunReport } from '../lambdas/outputs';

/** Counts and reasons of a run, read from its map run results. */
export interface MapRunFacts {
  processed: number;
  failed: number;
  skipped: number;
  /** Reasons by count, most frequent first. */
  byReason: { reason: string; count: number }[];
  /** Failed images with their reason; a failed batch's keys carry the batch's reason. */
  failedItems: ItemProblem[];
  /** Read from the first shard when asked for (`withFeaturizer`). */
  featurizer?: string;
  backends: string[];
}

/** A ResultWriter manifest: where the Map state's output points. */
export interface ManifestLocation {
  readonly bucket: string;
  readonly key: string;
}

/**
 * Counts and reasons from the map runs' own results, for a run whose aggregate step did not get to
 * write its report. `withFeaturizer` also reads the first shard's header for the featurizer id and
 * backend.
 */
export async function readMapRunFacts(s3: S3Client, manifests: readonly ManifestLocation[], options: { withFeaturizer?: boolean } = {}): Promise<MapRunFacts> {
  const facts: MapRunFacts = { processed: 0, failed: 0, skipped: 0, byReason: [], failedItems: [], backends: [] };
  const readMapFile = (bucket: string, key: string) => readText(s3, bucket, key);
  for (const manifest of manifests) {
    const { outcomes } = await readMapRunResults(await readMapFile(manifest.bucket, manifest.key), readMapFile);
    for (const outcome of outcomes) {
      if (outcome.kind === 'succeeded') {
        facts.processed += outcome.summary.count;
        facts.failed += outcome.summary.failedCount;
        facts.skipped += outcome.summary.skippedCount;
        facts.failedItems.push(...outcome.summary.failed);
        if (options.withFeaturizer && !facts.featurizer && outcome.summary.shard) {
          const shard = decodeFeatureShard(await readBytes(s3, manifest.bucket, outcome.summary.shard));
          facts.featurizer = shard.header.featurizer;
          if (typeof shard.header.meta?.backend === 'string') facts.backends.push(shard.header.meta.backend);
        }
      } else {
        facts.failed += outcome.inputKeys?.length ?? 0;
        const reason = batchFailureReason(outcome);
        if (outcome.inputKeys?.length) facts.failedItems.push(...outcome.inputKeys.map((key) => ({ key, reason })));
        else facts.failedItems.push({ key: outcome.executionArn ?? '(batch)', reason });
      }
    }
  }
  facts.byReason = countReasons(facts.failedItems).sort((a, b) => b.count - a.count);
  return facts;
}

/** The ResultWriter manifests of a run: one per map run under `work/<runId>/map-results/`. */
async function mapRunManifests(s3: S3Client, bucket: string, runId: string): Promise<ManifestLocation[]> {
  const objects = await listAllObjects(s3, bucket, runLayout(runId).mapResultsPrefix);
  return objects.filter((object) => object.Key!.endsWith('/manifest.json')).map((object) => ({ bucket, key: object.Key! }));
}

/** Why the items of a failed run failed: report.json's list when it was written, else the map runs'. */
export async function failedItemsOfRun(s3: S3Client, bucket: string, runId: string): Promise<ItemProblem[]> {
  const report = await readJsonIfPresent<RunReport>(s3, bucket, runLayout(runId).resultKey('report'));
  if (report) return report.failed.items;
  return (await readMapRunFacts(s3, await mapRunManifests(s3, bucket, runId))).failedItems;
}

/** One line for a failed batch; a Lambda error's readable cause already starts with its name. */
export function batchFailureReason(outcome: { error: string; cause: string }): string {
  const cause = readableCause(outcome.cause);
  return cause.startsWith(`${outcome.error}:`) ? `batch failed: ${cause}` : `batch failed: ${outcome.error}: ${cause}`;
}

/** Problems counted by reason, in the order each reason first appears. */
export function countReasons(problems: readonly ItemProblem[]): { reason: string; count: number }[] {
  const counts = new Map<string, number>();
  for (const { reason } of problems) counts.set(reason, (counts.get(reason) ?? 0) + 1);
  return [...counts].map(([reason, count]) => ({ reason, count }));
}
