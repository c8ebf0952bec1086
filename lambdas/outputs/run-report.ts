/**
 * `report.json`: what happened to every listed object of a run. Each one is processed (a row of
 * features.csv), failed (with the reason) or skipped (not an image of a label folder), and
 * whole batches that failed after the state machine's retries are listed with their error and
 * the keys they held, so no image goes unaccounted for.
 *
 * The builder is fed batch by batch while the aggregator reads shards; it never throws on odd
 * input, it records it.
 */
import type { FeaturizeBatchSummary, ItemProblem } from '../contracts/events';
import type { ShardHeader } from '../bookkeeping/feature-shard';
import type { InputAccountingReport } from '../bookkeeping/input-accounting';
import type { FailedBatch } from '../bookkeeping/map-results';

export interface ReasonCount {
  reason: string;
  count: number;
}

export interface ProblemReport {
  count: number;
  /** Reasons, most frequent first. */
  byReason: ReasonCount[];
  /** Every problem the aggregator saw listed (all of them unless `complete` is false). */
  items: ItemProblem[];
  /**
   * False when some batches only reported capped lists (a summary without a readable shard), or
   * failed without their input: `count` is still exact where a count was known.
   */
  complete: boolean;
}

export interface FailedBatchReport {
  status: string;
  executionArn?: string;
  error: string;
  cause: string;
  /** Keys the batch held; absent when the result record did not include the input. */
  keys?: string[];
}

export interface FeaturizerReport {
  /** Featurizer ids with the number of images each produced (one id in a healthy run). */
  ids: Record<string, number>;
  dim: number | null;
  backends: string[];
  modelIds: string[];
  imageSizes: number[];
  /** Per-step times summed over batches (batches run in parallel: this is work, not wall time). */
  timingsMsSummed: Record<string, number>;
}

export interface RunReport {
  runId: string;
  bucket: string;
  inputPrefix: string;
  outputPrefix: string;
  mapRunArn?: string;
  status: 'SUCCEEDED' | 'FAILED';
  error?: { name: string; message: string };
  counts: {
    /** processed + failed + skipped. */
    images: number;
    processed: number;
    failed: number;
    skipped: number;
    batches: number;
    failedBatches: number;
    /** Failed batches whose keys are unknown (input not included in the result record). */
    batchesWithUnknownKeys: number;
  };
  failed: ProblemReport;
  skipped: ProblemReport;
  failedBatches: FailedBatchReport[];
  /** Whether every listed key came out exactly once (lambdas/bookkeeping/input-accounting.ts); a run is SUCCEEDED only then. */
  accounting?: InputAccountingReport;
  featurizer: FeaturizerReport;
  pca?: Record<string, unknown>;
  timingsMs: Record<string, number>;
  warnings: string[];
  outputs: Record<string, string>;
  generatedAt: string;
}

const CAPPED_LIST = '(not listed: the batch summary capped its list)';

/** A ProblemList as plain JSON, to carry a part of a run's report between invocations. */
export interface ProblemListPart {
  items: ItemProblem[];
  unlisted: [string, number][];
  count: number;
  complete: boolean;
}

class ProblemList {
  readonly items: ItemProblem[] = [];
  private readonly unlisted = new Map<string, number>();
  count = 0;
  complete = true;

  part(): ProblemListPart {
    return { items: this.items, unlisted: [...this.unlisted], count: this.count, complete: this.complete };
  }

  absorb(part: ProblemListPart): void {
    this.items.push(...part.items);
    for (const [reason, count] of part.unlisted) this.unlisted.set(reason, (this.unlisted.get(reason) ?? 0) + count);
    this.count += part.count;
    this.complete &&= part.complete;
  }

  /** `count` above `problems.length` means that many more problems, known only as a number. */
  add(problems: readonly ItemProblem[], count = problems.length, unlistedReason = CAPPED_LIST): void {
    for (const problem of problems) this.items.push({ key: problem.key, reason: problem.reason });
    this.count += Math.max(count, problems.length);
    if (count > problems.length) {
      this.unlisted.set(unlistedReason, (this.unlisted.get(unlistedReason) ?? 0) + count - problems.length);
      this.complete = false;
    }
  }

  report(): ProblemReport {
    const counts = new Map<string, number>(this.unlisted);
    for (const { reason } of this.items) counts.set(reason, (counts.get(reason) ?? 0) + 1);
    const byReason = [...counts].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
    return { count: this.count, byReason, items: this.items, complete: this.complete };
  }
}

/**
 * What one invocation saw of a run (the plan's batches, or one group's shards), as plain JSON:
 * the stages of the aggregate each build a part, and the fit and publish stages absorb them all.
 */
export interface RunReportPart {
  processed: number;
  batches: number;
  failed: ProblemListPart;
  skipped: ProblemListPart;
  failedBatches: FailedBatchReport[];
  warnings: string[];
  featurizerIds: Record<string, number>;
  dim: number | null;
  backends: string[];
  modelIds: string[];
  imageSizes: number[];
  featurizeTimings: Record<string, number>;
}

export class RunReportBuilder {
  private processed = 0;
  private batches = 0;
  private readonly failed = new ProblemList();
  private readonly skipped = new ProblemList();
  private readonly failedBatches: FailedBatchReport[] = [];
  private readonly warnings = new Set<string>();
  private readonly featurizerIds = new Map<string, number>();
  private dim: number | null = null;
  private readonly backends = new Set<string>();
  private readonly modelIds = new Set<string>();
  private readonly imageSizes = new Set<number>();
  private readonly featurizeTimings: Record<string, number> = {};

  /** Everything recorded so far, to be absorbed by another builder (in another invocation). */
  part(): RunReportPart {
    return {
      processed: this.processed,
      batches: this.batches,
      failed: this.failed.part(),
      skipped: this.skipped.part(),
      failedBatches: this.failedBatches,
      warnings: [...this.warnings],
      featurizerIds: Object.fromEntries(this.featurizerIds),
      dim: this.dim,
      backends: [...this.backends],
      modelIds: [...this.modelIds],
      imageSizes: [...this.imageSizes],
      featurizeTimings: { ...this.featurizeTimings },
    };
  }

  /** Adds what another builder recorded; parts absorbed in the order the run met them. */
  absorb(part: RunReportPart): void {
    this.processed += part.processed;
    this.batches += part.batches;
    this.failed.absorb(part.failed);
    this.skipped.absorb(part.skipped);
    this.failedBatches.push(...part.failedBatches);
    part.warnings.forEach((warning) => this.warn(warning));
    for (const [id, rows] of Object.entries(part.featurizerIds)) this.featurizerIds.set(id, (this.featurizerIds.get(id) ?? 0) + rows);
    this.dim ??= part.dim;
    part.backends.forEach((b) => this.backends.add(b));
    part.modelIds.forEach((m) => this.modelIds.add(m));
    part.imageSizes.forEach((size) => this.imageSizes.add(size));
    for (const [name, ms] of Object.entries(part.featurizeTimings)) this.featurizeTimings[name] = (this.featurizeTimings[name] ?? 0) + ms;
  }

  /** A batch whose shard was read: its complete failed/skipped lists and how it was made. */
  addShard(header: ShardHeader): void {
    this.batches++;
    this.failed.add(header.failed ?? []);
    this.skipped.add(header.skipped ?? []);
    this.dim ??= header.dim;
    const meta = header.meta ?? {};
    const strings = (value: unknown) => (typeof value === 'string' && value !== '' ? [value] : []);
    strings(meta.backend).forEach((b) => this.backends.add(b));
    strings(meta.modelId).forEach((m) => this.modelIds.add(m));
    if (typeof meta.imageSize === 'number') this.imageSizes.add(meta.imageSize);
    if (Array.isArray(meta.warnings)) meta.warnings.filter((w): w is string => typeof w === 'string').forEach((w) => this.warn(w));
    if (meta.featurizerKind === 'pixels' || header.featurizer.startsWith('pixels')) {
      this.warn(`features come from the raw-pixels fallback (${header.featurizer}), not from the CNN`);
    }
    const timings = meta.timingsMs;
    if (timings && typeof timings === 'object') {
      for (const [name, ms] of Object.entries(timings as Record<string, unknown>)) {
        if (typeof ms === 'number' && Number.isFinite(ms)) this.featurizeTimings[name] = (this.featurizeTimings[name] ?? 0) + ms;
      }
    }
  }

  /** A batch known only by its summary (no shard, or none readable): capped lists, exact counts. */
  addSummary(summary: FeaturizeBatchSummary): void {
    this.batches++;
    this.addSummaryLists(summary);
  }

  private addSummaryLists(summary: FeaturizeBatchSummary): void {
    this.failed.add(summary.failed, summary.failedCount);
    this.skipped.add(summary.skipped, summary.skippedCount);
  }

  /** Rows of a shard that made it into the features. */
  addProcessed(featurizer: string, rows: number): void {
    this.processed += rows;
    if (rows > 0) this.featurizerIds.set(featurizer, (this.featurizerIds.get(featurizer) ?? 0) + rows);
  }

  addFailedItem(key: string, reason: string): void {
    this.failed.add([{ key, reason }]);
  }

  addSkippedItem(key: string, reason: string): void {
    this.skipped.add([{ key, reason }]);
  }

  /**
   * A batch that produced nothing usable. Its keys count as failed images with the batch's
   * error as reason; without keys, `imageCount` (if known) keeps the totals right. `summary` is
   * the batch's own summary when it ran but its shard proved unusable: its failed and skipped
   * lists still hold, and `inputKeys`/`imageCount` then cover only its featurized images.
   */
  addFailedBatch(
    batch: Pick<FailedBatch, 'status' | 'executionArn' | 'error' | 'cause' | 'inputKeys'>,
    imageCount?: number,
    summary?: FeaturizeBatchSummary,
  ): void {
    this.batches++;
    if (summary) this.addSummaryLists(summary);
    this.failedBatches.push({
      status: batch.status,
      ...(batch.executionArn ? { executionArn: batch.executionArn } : {}),
      error: batch.error,
      cause: batch.cause,
      ...(batch.inputKeys ? { keys: batch.inputKeys } : {}),
    });
    const reason = `batch failed (${batch.error}): ${batch.cause}`;
    if (batch.inputKeys) {
      this.failed.add(batch.inputKeys.map((key) => ({ key, reason })));
    } else {
      this.failed.add([], imageCount ?? 0, `${reason} (keys unknown: the result record has no input)`);
      this.failed.complete = false;
    }
  }

  warn(message: string): void {
    this.warnings.add(message);
  }

  get processedCount(): number {
    return this.processed;
  }

  /** Keys of every failed and skipped image seen so far, and whether those lists are whole. */
  problemKeys(): { keys: string[]; complete: boolean } {
    const keys = [...this.failed.items, ...this.skipped.items].map((problem) => problem.key);
    return { keys, complete: this.failed.complete && this.skipped.complete };
  }

  /** How the features were made, as far as the shards read so far tell. */
  featurizerReport(): FeaturizerReport {
    return {
      ids: Object.fromEntries(this.featurizerIds),
      dim: this.dim,
      backends: [...this.backends].sort(),
      modelIds: [...this.modelIds].sort(),
      imageSizes: [...this.imageSizes].sort((a, b) => a - b),
      timingsMsSummed: { ...this.featurizeTimings },
    };
  }

  build(run: {
    runId: string;
    bucket: string;
    inputPrefix: string;
    outputPrefix: string;
    mapRunArn?: string;
    error?: Error;
    accounting?: InputAccountingReport;
    pca?: Record<string, unknown>;
    timingsMs?: Record<string, number>;
    outputs?: Record<string, string>;
    now?: Date;
  }): RunReport {
    const failed = this.failed.report();
    const skipped = this.skipped.report();
    return {
      runId: run.runId,
      bucket: run.bucket,
      inputPrefix: run.inputPrefix,
      outputPrefix: run.outputPrefix,
      ...(run.mapRunArn ? { mapRunArn: run.mapRunArn } : {}),
      status: run.error ? 'FAILED' : 'SUCCEEDED',
      ...(run.error ? { error: { name: run.error.name, message: run.error.message } } : {}),
      counts: {
        images: this.processed + failed.count + skipped.count,
        processed: this.processed,
        failed: failed.count,
        skipped: skipped.count,
        batches: this.batches,
        failedBatches: this.failedBatches.length,
        batchesWithUnknownKeys: this.failedBatches.filter((b) => !b.keys).length,
      },
      failed,
      skipped,
      failedBatches: this.failedBatches,
      ...(run.accounting ? { accounting: run.accounting } : {}),
      featurizer: this.featurizerReport(),
      ...(run.pca ? { pca: run.pca } : {}),
      timingsMs: run.timingsMs ?? {},
      warnings: [...this.warnings],
      outputs: run.outputs ?? {},
      generatedAt: (run.now ?? new Date()).toISOString(),
    };
  }
}
