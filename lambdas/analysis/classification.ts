/**
 * The aggregate step's classification report: every prediction of the classifier (the LDA of
 * lda-classifier.ts or the k-NN of knn.ts) is tallied here as the predictions stream out, so memory is bounded by the number of distinct
 * (label, predicted) pairs, never by the number of rows.
 *
 * Accuracy counts the Test rows only (a label to check against); rows with no split, or in a split
 * that is neither Training nor Test, are predicted and counted but not scored. A run that projects
 * with a saved model has no Training rows of its own: there every row whose label (its folder) is
 * a class of the references is scored, whatever its split, and rows of other labels are not.
 */
import type { Split } from './knn';

/** Pairs listed in `mostConfused`. */
const MOST_CONFUSED_LIMIT = 20;

export interface ClassCount {
  label: string;
  /** Test rows of this label. */
  support: number;
  correct: number;
  /** correct / support. */
  accuracy: number;
}

export interface ConfusionCell {
  actual: string;
  predicted: string;
  count: number;
}

export interface ConfusedPair extends ConfusionCell {
  /** count / Test rows of `actual`. */
  shareOfActual: number;
}

/** Which classifier predicted, with what makes it up. */
export type ClassifierDescription =
  | { classifier: 'lda'; shrinkage: number; prototypes: number }
  | {
      classifier: 'logistic';
      l2: number;
      /** Evaluations of the loss its fit was allowed (logistic-classifier.ts). */
      rounds: number;
    }
  | {
      classifier: 'lda+logistic';
      ldaWeight: number;
      shrinkage: number;
      prototypes: number;
      l2: number;
      /** Evaluations of the loss logistic regression's fit was allowed. */
      rounds: number;
      /** The leading components logistic regression sees (the LDA sees `components`). */
      logisticComponents: number;
    }
  | { classifier: 'knn'; neighbours: number };

/** Mean softmax probability (LDA) or vote share (k-NN) of the scored predictions: all, right, wrong. */
export interface ConfidenceSummary {
  mean: number | null;
  meanCorrect: number | null;
  meanWrong: number | null;
}

export type ClassificationReport =
  | ({
      status: 'classified';
      method: string;
      /** Components the classifier sees: the PCA's k for k-NN, the model's classifierK for a fitted head when it holds more. */
      components: number;
      /** Training rows: the references. */
      references: number;
      /** Rows predicted: every row that is not a reference. */
      predicted: number;
      /** Which rows are scored: the Test rows, or (a saved model's references) the rows labelled with one of their classes. */
      scope: string;
      /** Rows scored against their label. */
      scored: number;
      correct: number;
      /** correct / scored; null when no Test row was scored. */
      accuracy: number | null;
      /** Rows predicted that are not scored (no split, or another split). */
      unscored: number;
      /** Per true label of the Test rows, by label. */
      perClass: ClassCount[];
      /** Sparse: one cell per (actual, predicted) pair of the Test rows with a non-zero count. */
      confusion: { format: 'sparse'; cells: ConfusionCell[] };
      /** Off-diagonal cells, largest first. */
      mostConfused: ConfusedPair[];
      confidence: ConfidenceSummary;
    } & ClassifierDescription)
  | { status: 'skipped'; reason: string };

export const CLASSIFIER_METHODS = {
  knn: 'k-NN: Euclidean distance over the PCA components, majority vote of the k nearest Training rows, a tie going to the label whose voting neighbours are nearest in total; confidence = the vote share of the label',
  lda: "shrinkage LDA over the PCA components, then the nearest of the k-means prototypes of each class's Training rows in the discriminant space; confidence = the softmax probability of the class scores",
  logistic:
    'multinomial logistic regression over the standardised PCA components, fitted on a per-class sample of the Training rows and their field copies; confidence = the softmax probability of the predicted class',
  'lda+logistic':
    "the LDA's log-probabilities (softmax of its nearest-prototype scores) times ldaWeight plus multinomial logistic regression's, over the PCA components (logistic regression over the leading logisticComponents); confidence = the softmax of that sum at the predicted class; distance = to the class's nearest LDA prototype",
} as const;

/** The classifier's short name: `LDA`, `logistic regression` or `5-NN`. */
export function classifierName(description: ClassifierDescription): string {
  if (description.classifier === 'lda') return 'LDA';
  if (description.classifier === 'lda+logistic') return 'LDA + logistic regression';
  return description.classifier === 'logistic' ? 'logistic regression' : `${description.neighbours}-NN`;
}

/** A ClassificationTally's counts as plain JSON. */
export interface ClassificationTallyPart {
  cells: [string, [string, number][]][];
  predicted: number;
  unscored: number;
  /** Summed confidence of the scored predictions that were right, and of those that were wrong. */
  confidence: { correct: number; wrong: number };
}

export class ClassificationTally {
  private readonly cells = new Map<string, Map<string, number>>();
  private predicted = 0;
  private unscored = 0;
  private readonly confidence = { correct: 0, wrong: 0 };

  /**
   * `referenceClasses`: score every row labelled with one of these (a run classifying against a
   * saved model's references or classifier) instead of the Test rows.
   */
  constructor(
    readonly classifier: ClassifierDescription,
    readonly components: number,
    readonly references: number,
    private readonly referenceClasses?: ReadonlySet<string>,
  ) {}

  /** The counts so far as plain JSON: one group's predictions, to be absorbed where the run is reported. */
  part(): ClassificationTallyPart {
    return {
      cells: [...this.cells].map(([actual, row]) => [actual, [...row]]),
      predicted: this.predicted,
      unscored: this.unscored,
      confidence: { ...this.confidence },
    };
  }

  absorb(part: ClassificationTallyPart): void {
    this.predicted += part.predicted;
    this.unscored += part.unscored;
    this.confidence.correct += part.confidence.correct;
    this.confidence.wrong += part.confidence.wrong;
    for (const [actual, row] of part.cells) {
      let cells = this.cells.get(actual);
      if (!cells) this.cells.set(actual, (cells = new Map()));
      for (const [predicted, count] of row) cells.set(predicted, (cells.get(predicted) ?? 0) + count);
    }
  }

  /** Whether a row of this label and split counts towards the accuracy. */
  scores(label: string, split: Split | undefined): boolean {
    return this.referenceClasses ? this.referenceClasses.has(label) : split === 'test';
  }

  /** One prediction and its confidence; scored only when `scores` says so. */
  add(label: string, split: Split | undefined, predicted: string, confidence: number): void {
    this.predicted++;
    if (!this.scores(label, split)) {
      this.unscored++;
      return;
    }
    this.confidence[predicted === label ? 'correct' : 'wrong'] += confidence;
    let row = this.cells.get(label);
    if (!row) this.cells.set(label, (row = new Map()));
    row.set(predicted, (row.get(predicted) ?? 0) + 1);
  }

  report(): ClassificationReport {
    const perClass: ClassCount[] = [];
    const cells: ConfusionCell[] = [];
    let scored = 0;
    let correct = 0;
    for (const actual of [...this.cells.keys()].sort(byText)) {
      const row = this.cells.get(actual)!;
      let support = 0;
      for (const predicted of [...row.keys()].sort(byText)) {
        const count = row.get(predicted)!;
        support += count;
        cells.push({ actual, predicted, count });
      }
      const right = row.get(actual) ?? 0;
      perClass.push({ label: actual, support, correct: right, accuracy: right / support });
      scored += support;
      correct += right;
    }
    const supportOf = new Map(perClass.map((c) => [c.label, c.support]));
    const mostConfused = cells
      .filter((cell) => cell.actual !== cell.predicted)
      .sort((a, b) => b.count - a.count || byText(a.actual, b.actual) || byText(a.predicted, b.predicted))
      .slice(0, MOST_CONFUSED_LIMIT)
      .map((cell) => ({ ...cell, shareOfActual: cell.count / supportOf.get(cell.actual)! }));
    const mean = (sum: number, count: number) => (count > 0 ? sum / count : null);
    return {
      status: 'classified',
      method: CLASSIFIER_METHODS[this.classifier.classifier],
      ...this.classifier,
      components: this.components,
      references: this.references,
      predicted: this.predicted,
      scope: this.referenceClasses ? "rows labelled with a class of the model's references" : 'Test rows',
      scored,
      correct,
      accuracy: scored > 0 ? correct / scored : null,
      unscored: this.unscored,
      perClass,
      confusion: { format: 'sparse', cells },
      mostConfused,
      confidence: {
        mean: mean(this.confidence.correct + this.confidence.wrong, scored),
        meanCorrect: mean(this.confidence.correct, correct),
        meanWrong: mean(this.confidence.wrong, scored - correct),
      },
    };
  }
}

/** Code-point order: the same on every machine (localeCompare is not). */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
