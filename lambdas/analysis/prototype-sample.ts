/**
 * A bounded sample of each class's Training rows, the rows the LDA's prototypes are clustered from
 * (lda-classifier.ts, `withPrototypes`), gathered group by group and merged.
 *
 * Each class keeps the `perClass` rows whose keys hash lowest (FNV-1a, ties by key): a rule of the
 * key alone, so the merged sample is the same whichever groups the rows came in, and a class with
 * fewer rows keeps them all. `rows()` gives them in key order, the order the k-means starts from.
 * Memory is classes x perClass rows, whatever the run's size.
 */
import { keyHash } from '../common/key-hash';

/** Training rows per class the prototypes are clustered from: 8 prototypes get 32 rows each. */
export const PROTOTYPE_SAMPLE_PER_CLASS = 256;

/** Above every 32-bit key hash: no row is held back. */
export const NO_RANK_LIMIT = 2 ** 32;

/**
 * The hash below which a class's rows can enter a sample of `perClass` when the run holds `total`
 * of them, so that a group need not keep every row of a class that is large run-wide: 2 perClass
 * + 64 rows are expected below it, and the class's lowest-hash `perClass` lie below it but for a
 * chance under 1e-15 (Chernoff's bound), so the sample is the one the limit would not change. A
 * class that fell short would keep every row below it: a smaller sample, still the same whichever
 * the groups.
 */
export function sampleRankLimit(perClass: number, total: number): number {
  const expected = 2 * perClass + 64;
  return total <= expected ? NO_RANK_LIMIT : Math.ceil((expected / total) * NO_RANK_LIMIT);
}

export interface SampledRow {
  readonly key: string;
  readonly label: string;
  readonly scores: Float32Array;
}

interface Ranked extends SampledRow {
  readonly rank: number;
}

export class PrototypeSample {
  private readonly classes = new Map<string, Ranked[]>();

  /** `rankLimit`: a class's `sampleRankLimit`, when the run's count of its rows is known. */
  constructor(
    readonly perClass: number = PROTOTYPE_SAMPLE_PER_CLASS,
    private readonly rankLimit: (label: string) => number = () => NO_RANK_LIMIT,
  ) {
    if (!Number.isInteger(perClass) || perClass < 1) throw new RangeError(`rows per class must be a positive integer, got ${perClass}`);
  }

  /** Offers a row; its scores are copied (as float32) only when it is kept. */
  offer(key: string, label: string, scores: ArrayLike<number>): void {
    const rank = keyHash(key);
    if (rank >= this.rankLimit(label)) return;
    let kept = this.classes.get(label);
    if (!kept) this.classes.set(label, (kept = []));
    if (kept.length >= this.perClass && !before(rank, key, kept[kept.length - 1])) return;
    const row = { key, label, scores: Float32Array.from(scores), rank };
    let at = kept.length;
    while (at > 0 && before(rank, key, kept[at - 1])) at--;
    kept.splice(at, 0, row);
    if (kept.length > this.perClass) kept.pop();
  }

  /** Adds every row of another sample (another group's). */
  absorb(rows: Iterable<SampledRow>): void {
    for (const row of rows) this.offer(row.key, row.label, row.scores);
  }

  /**
   * The kept rows, classes in order of first appearance, each class's rows in key order; with
   * `perClass`, each class's lowest-hash `perClass` only: the sample a smaller one would have kept.
   */
  rows(perClass: number = this.perClass): SampledRow[] {
    return [...this.classes.values()].flatMap((kept) =>
      kept
        .slice(0, perClass)
        .map(({ key, label, scores }) => ({ key, label, scores }))
        .sort(byKey),
    );
  }
}

function before(rank: number, key: string, other: Ranked): boolean {
  return rank < other.rank || (rank === other.rank && key < other.key);
}

function byKey(a: SampledRow, b: SampledRow): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}
