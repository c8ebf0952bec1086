/**
 * Reading the run's CSV files back (features.csv, explained-variance.csv), with csv-parse: RFC 4180
 * (https://www.rfc-editor.org/rfc/rfc4180), quoted fields may hold commas, quotes and line breaks,
 * nothing is trimmed. Text cells come back as written: `restoreTextField`
 * (lambdas/outputs/features-csv.ts) drops the leading `'` of a guarded key or label.
 */
import { parse } from 'csv-parse/sync';

/** Every row as its fields; rows may differ in length, and an empty line is one empty field. */
export function parseCsv(text: string): string[][] {
  return parse(text, { relax_column_count: true, record_delimiter: ['\r\n', '\n', '\r'], skip_empty_lines: false }) as string[][];
}
