/**
 * `features.parquet` (and `embeddings.parquet`): the same rows as features.csv as typed Parquet
 * columns, for pandas/pyarrow, Spark or DuckDB to open without parsing text.
 *
 * Written with hyparquet-writer (pure JavaScript, so it bundles into the CommonJS Lambda image),
 * which encodes whole columns at once: rows are gathered column by column (a Float32Array per
 * value column) up to one row group, which is then encoded and handed to `output`, so memory is
 * bounded by a row group whatever the number of rows. Text columns are SNAPPY-compressed (with a
 * dictionary where it at least halves them, as for `label` and `split`); float columns are PLAIN
 * and left uncompressed (noise-like floats do not compress). Data pages are V2, which pyarrow,
 * DuckDB and Spark read.
 *
 * Columns: `key`, `label` (UTF8, required), `split` (UTF8, null when the key names no split),
 * then `pc_1..pc_k` (FLOAT: the scores of float32 features) or, for embeddings, `f_1..f_dim`.
 */
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import type { ColumnSource, SchemaElement } from 'hyparquet-writer';

/** Rows per row group: 32,768 rows x 100 floats is ~13 MB of values in the writer's buffers. */
export const ROW_GROUP_ROWS = 32_768;

/** Float bytes one row group may gather: a wide table (embeddings, 1,376 values a row) gets fewer rows per group. */
const ROW_GROUP_VALUE_BYTES = 32 * 1024 * 1024;

/** Where the encoded bytes go, a row group at a time (a `StreamedUpload`). */
export interface ParquetByteSink {
  write(chunk: Uint8Array): Promise<void>;
}

/** Rows per row group of a table `width` floats wide: at most `rows`, and `ROW_GROUP_VALUE_BYTES` of floats. */
export function rowGroupRowsFor(width: number, rows = ROW_GROUP_ROWS): number {
  return Math.max(1, Math.min(rows, Math.floor(ROW_GROUP_VALUE_BYTES / (4 * Math.max(1, width)))));
}

/** `pc_1..pc_k` or `f_1..f_dim`. */
export function numberedColumns(prefix: 'pc' | 'f', count: number): string[] {
  return Array.from({ length: count }, (_, c) => `${prefix}_${c + 1}`);
}

function tableSchema(valueColumns: readonly string[]): SchemaElement[] {
  const text = (name: string, repetition_type: 'REQUIRED' | 'OPTIONAL'): SchemaElement => ({
    name,
    type: 'BYTE_ARRAY',
    converted_type: 'UTF8',
    logical_type: { type: 'STRING' },
    repetition_type,
  });
  return [
    { name: 'root', num_children: 3 + valueColumns.length },
    text('key', 'REQUIRED'),
    text('label', 'REQUIRED'),
    text('split', 'OPTIONAL'),
    ...valueColumns.map((name): SchemaElement => ({ name, type: 'FLOAT', repetition_type: 'REQUIRED' })),
  ];
}

/** A Parquet table of `key, label, split, <values>` streamed to `output`. */
export class FeatureTableParquetWriter {
  private readonly columns: string[];
  private readonly bytes = new ByteWriter();
  private readonly parquet: ParquetWriter;
  private readonly rowGroupRows: number;
  private keys: string[] = [];
  private labels: string[] = [];
  private splits: (string | null)[] = [];
  private values: Float32Array[];
  rows = 0;

  constructor(
    private readonly output: ParquetByteSink,
    prefix: 'pc' | 'f',
    readonly width: number,
    rowGroupRows = ROW_GROUP_ROWS,
  ) {
    this.columns = numberedColumns(prefix, width);
    this.rowGroupRows = rowGroupRowsFor(width, rowGroupRows);
    this.values = this.columns.map(() => new Float32Array(this.rowGroupRows));
    this.parquet = new ParquetWriter({ writer: this.bytes, schema: tableSchema(this.columns), codec: 'SNAPPY' });
  }

  /** One row: `values[offset .. offset + width)`. */
  async append(key: string, label: string, split: string | undefined, values: ArrayLike<number>, offset = 0): Promise<void> {
    const row = this.keys.length;
    this.keys.push(key);
    this.labels.push(label);
    this.splits.push(split ?? null);
    for (let c = 0; c < this.width; c++) this.values[c][row] = values[offset + c];
    this.rows++;
    if (row + 1 === this.rowGroupRows) await this.writeRowGroup();
  }

  /** Writes the last row group and the footer (a table of no rows still gets its schema). */
  async close(): Promise<void> {
    await this.writeRowGroup();
    this.parquet.finish();
    await this.drain();
  }

  private async writeRowGroup(): Promise<void> {
    const rows = this.keys.length;
    if (rows === 0) return;
    const columnData: ColumnSource[] = [
      { name: 'key', data: this.keys },
      { name: 'label', data: this.labels },
      { name: 'split', data: this.splits },
      ...this.columns.map((name, c): ColumnSource => ({ name, data: this.values[c].subarray(0, rows), encoding: 'PLAIN', codec: 'UNCOMPRESSED' })),
    ];
    this.parquet.write({ columnData, rowGroupSize: rows });
    this.keys = [];
    this.labels = [];
    this.splits = [];
    await this.drain();
  }

  /** Hands the bytes encoded so far to `output` and starts the buffer over. */
  private async drain(): Promise<void> {
    if (this.bytes.index === 0) return;
    const chunk = this.bytes.getBytes().slice();
    this.bytes.index = 0;
    await this.output.write(chunk);
  }
}
