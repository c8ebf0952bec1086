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
  const rows = new FeaturesCsvRows();
  rows.add(key, label, split, scores, k);
  return rows.take().toString('utf8');
}

/** Bytes a score's text can take: a sign, `0.` and 6 zeros, and 8 digits; an exponent form is shorter. */
const SCORE_TEXT_BYTES = 17;
/** Bytes a character of a key or label can take in UTF-8 (a surrogate pair's two take 4). */
const UTF8_BYTES_PER_CHAR = 3;
const [COMMA, MINUS, POINT, ZERO] = [',', '-', '.', '0'].map((c) => c.charCodeAt(0));

/**
 * features.csv rows as UTF-8 bytes, each exactly `featuresCsvRow`'s text: the project stage writes
 * about a hundred scores a row for every image, and writing their digits straight into bytes takes
 * a third of the time that building strings and encoding them does.
 */
export class FeaturesCsvRows {
  private bytes = Buffer.allocUnsafe(4096);
  private length = 0;

  add(key: string, label: string, split: string | undefined, scores: ArrayLike<number>, k: number = scores.length): void {
    const head = `${csvTextField(key)},${csvTextField(label)},${split ?? ''}`;
    this.reserve(head.length * UTF8_BYTES_PER_CHAR + k * (SCORE_TEXT_BYTES + 1) + CSV_LINE_BREAK.length);
    let at = this.length + this.bytes.write(head, this.length, 'utf8');
    for (let c = 0; c < k; c++) {
      this.bytes[at++] = COMMA;
      at = writeScore(scores[c], this.bytes, at);
    }
    at += this.bytes.write(CSV_LINE_BREAK, at, 'latin1');
    this.length = at;
  }

  /** The rows added since the last take; the next rows go to a buffer of their own. */
  take(): Buffer {
    const rows = this.bytes.subarray(0, this.length);
    this.bytes = Buffer.allocUnsafe(this.bytes.length);
    this.length = 0;
    return rows;
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.bytes.length) return;
    const larger = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.length + bytes));
    this.bytes.copy(larger, 0, 0, this.length);
    this.bytes = larger;
  }
}

const POWERS_OF_TEN = Array.from({ length: SCORE_DIGITS + 7 }, (_, p) => 10 ** p);
/** A scaled score's fraction this near one half may be a tie that double arithmetic cannot settle. */
const TIE_MARGIN = 1e-6;

/**
 * Writes `formatNumber(value)` (8 significant digits) as ASCII at `at`; returns where it ends.
 * Without an exponent (1e-6 <= |value| < 1e8) the digits are round(|value| x 10^(7 - e)) for the
 * value's decimal exponent e: 10^(7 - e) is exact in a double, so the product is within half an
 * ulp (under 1e-8) of the exact one and rounds the same way unless its fraction is within
 * TIE_MARGIN of one half. Those, and the exponent forms, take formatNumber's own text.
 */
export function writeScore(value: number, out: Buffer, at: number): number {
  if (value === 0) {
    out[at] = ZERO;
    return at + 1;
  }
  const digits = scoreDigits(Math.abs(value));
  if (digits === undefined) return at + out.write(formatNumber(value), at, 'latin1');
  if (value < 0) out[at++] = MINUS;
  const { exponent } = digits;
  let { mantissa } = digits;
  let significant = SCORE_DIGITS;
  while (mantissa % 10 === 0) {
    mantissa = (mantissa / 10) | 0;
    significant--;
  }
  if (exponent < 0) {
    out[at++] = ZERO;
    out[at++] = POINT;
    for (let zero = 1; zero < -exponent; zero++) out[at++] = ZERO;
    return writeDigits(mantissa, significant, out, at);
  }
  const integerDigits = exponent + 1;
  if (significant <= integerDigits) {
    at = writeDigits(mantissa, significant, out, at);
    for (let zero = significant; zero < integerDigits; zero++) out[at++] = ZERO;
    return at;
  }
  const fraction = significant - integerDigits;
  const scale = POWERS_OF_TEN[fraction];
  at = writeDigits((mantissa / scale) | 0, integerDigits, out, at);
  out[at++] = POINT;
  return writeDigits(mantissa % scale, fraction, out, at);
}

/**
 * A positive |value| as `mantissa` x 10^(exponent - 7) with an 8-digit mantissa rounded as
 * toPrecision rounds, or undefined where formatNumber's own text is needed (an exponent form, a
 * near tie, a value that is not finite).
 */
function scoreDigits(magnitude: number): { mantissa: number; exponent: number } | undefined {
  if (!Number.isFinite(magnitude)) return undefined;
  const top = POWERS_OF_TEN[SCORE_DIGITS];
  let exponent = Math.floor(Math.log10(magnitude));
  // log10 can miss by one next to a power of ten; the scaled value says which it is.
  for (let guess = 0; guess < 2; guess++) {
    if (exponent < -6 || exponent >= SCORE_DIGITS) return undefined;
    const scaled = magnitude * POWERS_OF_TEN[SCORE_DIGITS - 1 - exponent];
    if (scaled < top / 10) exponent--;
    else if (scaled >= top) exponent++;
    else {
      const whole = Math.floor(scaled);
      const fraction = scaled - whole;
      if (Math.abs(fraction - 0.5) < TIE_MARGIN) return undefined;
      const mantissa = (fraction > 0.5 ? whole + 1 : whole) | 0;
      // 99999999.7 rounds up to the next power of ten.
      if (mantissa === top) return exponent + 1 >= SCORE_DIGITS ? undefined : { mantissa: top / 10, exponent: exponent + 1 };
      return { mantissa, exponent };
    }
  }
  return undefined;
}

/** Writes `value`'s decimal digits, exactly `count` of them (leading zeros kept); returns the end. */
function writeDigits(value: number, count: number, out: Buffer, at: number): number {
  let rest = value | 0;
  for (let place = at + count - 1; place >= at; place--) {
    out[place] = ZERO + (rest % 10);
    rest = (rest / 10) | 0;
  }
  return at + count;
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
