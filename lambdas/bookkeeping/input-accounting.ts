/**
 * The proof that a run accounted for every input. Each key the Distributed Map handed to a child
 * execution (a failed child's input in its ResultWriter record, a succeeded child's in its batch
 * record) must come out exactly once: as a row of
 * features.csv, a failed image with its reason, or a skipped object. A key listed twice, listed
 * and never accounted for, or accounted for more often than listed makes the run incomplete, and
 * an incomplete run does not succeed.
 *
 * The same check serves the local run, which compares the input folder itself (not the store's
 * listing) with the run's outputs.
 */

/** Keys named per kind of discrepancy in a report; the counts are always exact. */
const ACCOUNTING_KEY_LIMIT = 100;

export interface KeySample {
  count: number;
  /** The first ACCOUNTING_KEY_LIMIT keys, in byte order. */
  keys: string[];
}

export interface InputAccountingReport {
  /** True only when every listed key was accounted for exactly once and nothing stood in the way. */
  complete: boolean;
  /** Keys handed out (with repeats, if the listing repeated any). */
  listed: number;
  /** processed + failed + skipped. */
  accounted: number;
  /** Listed, never processed, failed or skipped. */
  unaccounted: KeySample;
  /** Accounted for more often than listed (including keys never listed). */
  overcounted: KeySample;
  /** Handed out more than once: the listing itself is at fault. */
  listedTwice: KeySample;
  /** What prevented a proof, one sentence each (e.g. a batch record without its input). */
  problems: string[];
}

export class IncompleteRunError extends Error {
  override readonly name = 'IncompleteRunError';
}

export class InputAccounting {
  private readonly listedTimes = new Map<string, number>();
  private readonly accountedTimes = new Map<string, number>();
  private readonly problems: string[] = [];
  private listedTotal = 0;
  private accountedTotal = 0;

  /** Keys that were handed out to be processed. */
  list(keys: Iterable<string>): void {
    for (const key of keys) {
      this.listedTimes.set(key, (this.listedTimes.get(key) ?? 0) + 1);
      this.listedTotal++;
    }
  }

  /** One outcome (processed, failed or skipped) for each of these keys. */
  account(keys: Iterable<string>): void {
    for (const key of keys) {
      this.accountedTimes.set(key, (this.accountedTimes.get(key) ?? 0) + 1);
      this.accountedTotal++;
    }
  }

  /** Something that makes a proof impossible whatever the key counts say. */
  cannotProve(problem: string): void {
    if (!this.problems.includes(problem)) this.problems.push(problem);
  }

  report(): InputAccountingReport {
    const unaccounted: string[] = [];
    const overcounted: string[] = [];
    const listedTwice: string[] = [];
    for (const [key, listed] of this.listedTimes) {
      const accounted = this.accountedTimes.get(key) ?? 0;
      if (listed > 1) listedTwice.push(key);
      if (accounted < listed) unaccounted.push(key);
      else if (accounted > listed) overcounted.push(key);
    }
    for (const key of this.accountedTimes.keys()) if (!this.listedTimes.has(key)) overcounted.push(key);
    const complete = this.problems.length === 0 && unaccounted.length === 0 && overcounted.length === 0 && listedTwice.length === 0;
    return {
      complete,
      listed: this.listedTotal,
      accounted: this.accountedTotal,
      unaccounted: sample(unaccounted),
      overcounted: sample(overcounted),
      listedTwice: sample(listedTwice),
      problems: [...this.problems],
    };
  }
}

/**
 * The accounting of a whole run from the reports of its parts (the plan's batches without a
 * shard, and each group's batches), each of which listed and accounted for its own batches'
 * keys. The parts' keys are disjoint, so their counts add up: each key was listed once by the
 * S3 listing and handed to one batch (docs/DESIGN.md, Accounting); a key handed out twice within
 * a part is that part's `listedTwice`.
 */
export function mergeAccountingReports(parts: readonly InputAccountingReport[]): InputAccountingReport {
  const merged = (pick: (report: InputAccountingReport) => KeySample): KeySample => {
    const keys = parts.flatMap((report) => pick(report).keys);
    return { count: parts.reduce((sum, report) => sum + pick(report).count, 0), keys: sample(keys).keys };
  };
  const unaccounted = merged((report) => report.unaccounted);
  const overcounted = merged((report) => report.overcounted);
  const listedTwice = merged((report) => report.listedTwice);
  const problems = [...new Set(parts.flatMap((report) => report.problems))];
  return {
    complete: problems.length === 0 && unaccounted.count === 0 && overcounted.count === 0 && listedTwice.count === 0,
    listed: parts.reduce((sum, report) => sum + report.listed, 0),
    accounted: parts.reduce((sum, report) => sum + report.accounted, 0),
    unaccounted,
    overcounted,
    listedTwice,
    problems,
  };
}

/** One sentence for an error or a terminal line; the keys themselves are in the report. */
export function describeIncompleteAccounting(report: InputAccountingReport, what = 'listed objects'): string {
  const parts: string[] = [];
  const keys = (s: KeySample) =>
    s.keys
      .slice(0, 5)
      .map((k) => JSON.stringify(k))
      .join(', ') + (s.count > 5 ? ', ...' : '');
  if (report.unaccounted.count > 0) parts.push(`${report.unaccounted.count} never processed, failed or skipped (${keys(report.unaccounted)})`);
  if (report.listedTwice.count > 0) parts.push(`${report.listedTwice.count} listed more than once (${keys(report.listedTwice)})`);
  if (report.overcounted.count > 0) parts.push(`${report.overcounted.count} counted more often than listed (${keys(report.overcounted)})`);
  parts.push(...report.problems);
  return `the run cannot account for all ${report.listed} ${what}: ${parts.join('; ')}`;
}

function sample(keys: string[]): KeySample {
  const sorted = keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return { count: keys.length, keys: sorted.slice(0, ACCOUNTING_KEY_LIMIT) };
}
