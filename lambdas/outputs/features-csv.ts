/**
 * The CSV files of a run, as RFC 4180 text (https://www.rfc-editor.org/rfc/rfc4180):
 * CRLF line breaks, and a field is quoted, with inner quotes doubled, whenever it holds a comma,
 * a quote, CR or LF, or leading/trailing white space (which some readers would otherwise trim).
 * Object keys can hold all of these, and any unicode, so keys and labels always go through
 * `csvTextField`.
 *
 * CSV injection (https://owasp.org/www-community/attacks/CSV_Injection): a spreadsheet runs a
 * cell that starts with `=`, `+`, `-`, `@`, TAB or CR as a formula, and label folders are named by
 * whoever uploads images. Such text cells are written with a leading `'`, as OWASP advises, and so
 * is a text cell that itself starts with `'`, so that `restoreTextField` (drop one leading `'`)
 * gives back every key and label exactly. Numbers are never prefixed. Reading the files back is
 * evaluate/csv.ts's job.
 */

const CSV_LINE_BREAK = '\r\n';

/** Significant digits of a score: the features are float32 (~7 digits), one more avoids drift. */
const SCORE_DIGITS = 8;

const FORMULA_START = /^[=+\-@\t\r']/;

/** A key or label as a CSV cell: quoted as needed, and never a live spreadsheet formula. */
export function csvTextField(value: string): string {
  return csvField(FORMULA_START.test(value) ? `'${value}` : value);
}

/** The key or label a `csvTextField` cell was written from. */
export function restoreTextField(cell: string): string {
  return cell.startsWith("'") ? cell.slice(1) : cell;
}

export function csvField(value: string): string {
  if (/[",\r\n]/.test(value) || /^\s|\s$/.test(value)) return `"${value.replace(/"/g, '""')}"`;
  return value;
}

function csvLine(fields: readonly string[]): string {
  return fields.map(csvField).join(',') + CSV_LINE_BREAK;
}

/**
 * Shortest text of `value` rounded to `digits` significant digits (no trailing zeros): the text
 * of `Number(value.toPrecision(digits))`. A score is written a hundred times a row, so the usual
 * case takes `toPrecision`'s own text and drops its trailing zeros (one conversion instead of
 * three); that is the same text whenever `toPrecision` writes no exponent, since a decimal of at
 * most 21 significant digits in [1e-6, 1e21) is printed by `String` as those digits. An exponent
 * (|value| < 1e-6 or at least 10^digits) takes the round trip.
 */
export function formatNumber(value: number, digits: number = SCORE_DIGITS): string {
  if (!Number.isFinite(value)) throw new RangeError(`cannot write a non-finite number (${value}) to CSV`);
  if (value === 0) return '0';
  const text = value.toPrecision(digits);
  if (digits > 21 || text.includes('e')) return String(Number(text));
  if (!text.includes('.')) return text;
  let end = text.length;
  while (text.charCodeAt(end - 1) === 48 /* 0 */) end--;
  if (text.charCodeAt(end - 1) === 46 /* . */) end--;
  return text.slice(0, end);
}

function componentNames(k: number): string[] {
  return Array.from({ length: k }, (_, c) => `pc_${c + 1}`);
}

/** `key,label,split,pc_1..pc_k`; split is `train`, `test` or empty (lambdas/analysis/knn.ts, `splitOfKey`). */
export function featuresCsvHeader(k: number): string {
  return csvLine(['key', 'label', 'split', ...componentNames(k)]);
}

export function featuresCsvRow(key: string, label: string, split: string | undefined, scores: ArrayLike<number>, k: number = scores.length): string {
  let line = `${csvTextField(key)},${csvTextField(label)},${split ?? ''}`;
  for (let c = 0; c < k; c++) line += `,${formatNumber(scores[c])}`;
  return line + CSV_LINE_BREAK;
}

/**
 * `key,label,split,predicted,confidence,nearest_distance`: one row per image the classifier
 * predicted; confidence is the LDA's softmax probability or the k-NN's vote share.
 */
export function predictionsCsvHeader(): string {
  return csvLine(['key', 'label', 'split', 'predicted', 'confidence', 'nearest_distance']);
}

export function predictionsCsvRow(
  key: string,
  label: string,
  split: string | undefined,
  predicted: string,
  confidence: number,
  nearestDistance: number | undefined,
): string {
  const distance = nearestDistance === undefined ? '' : formatNumber(nearestDistance);
  return `${csvTextField(key)},${csvTextField(label)},${split ?? ''},${csvTextField(predicted)},${formatNumber(confidence, CONFIDENCE_DIGITS)},${distance}${CSV_LINE_BREAK}`;
}

/** A confidence to 4 significant digits: finer says nothing, and round-off never shows. */
const CONFIDENCE_DIGITS = 4;

/** One row per component: eigenvalue, ratio and cumulative ratio, and whether it was kept. */
export function explainedVarianceCsv(eigenvalues: ArrayLike<number>, ratios: ArrayLike<number>, kept: number): string {
  let out = csvLine(['component', 'eigenvalue', 'explained_variance_ratio', 'cumulative_explained_variance_ratio', 'kept']);
  let cumulative = 0;
  for (let c = 0; c < ratios.length; c++) {
    cumulative += ratios[c];
    out += csvLine([
      `pc_${c + 1}`,
      formatNumber(eigenvalues[c], 12),
      formatNumber(ratios[c], 12),
      formatNumber(Math.min(1, cumulative), 12),
      c < kept ? 'true' : 'false',
    ]);
  }
  return out;
}
