/**
 * `features.parquet` (and `embeddings.parquet`): the same rows as features.csv as typed Parquet
 * columns, for pandas/pyarrow, Spark or DuckDB to open without parsing text.
 *
 * Written with @dsnp/parquetjs (the maintained fork of parquetjs, pure JavaScript, so it bundles
 * into the CommonJS Lambda image). Rows are appended one at a time and buffered only up to one row
 * group (`ROW_GROUP_ROWS`), which is then encoded and written to the stream: memory is bounded by a
 * row group whatever the number of rows. Data pages are V1 (the most widely read form), text
 * columns SNAPPY-compressed, float columns left plain (noise-like floats do not compress).
 *
 * Columns: `key`, `label` (UTF8, required), `split` (UTF8, null when the key names no split),
 * then `pc_1..pc_k` (FLOAT: the scores of float32 features) or, for embeddings, `f_1..f_dim`.
 */
import type { Writable } from 'node:stream';
import { ParquetSchema, ParquetWriter } from '@dsnp/parquetjs';
import type { SchemaDefinition } from '@dsnp/parquetjs';

/** Rows per row group: 32,768 rows x 100 floats is ~13 MB of values in the writer's buffers. */
export const ROW_GROUP_ROWS = 32_768;

/** `pc_1..pc_k` or `f_1..f_dim`. */
export function numberedColumns(prefix: 'pc' | 'f', count: number): string[] {
  return Array.from({ length: count }, (_, c) => `${prefix}_${c + 1}`);
}

function tableSchema(valueColumns: readonly string[]): ParquetSchema {
  const fields: SchemaDefinition = {
    key: { type: 'UTF8', compression: 'SNAPPY' },
    label: { type: 'UTF8', compression: 'SNAPPY' },
    split: { type: 'UTF8', compression: 'SNAPPY', optional: true },
  };
  for (const name of valueColumns) fields[name] = { type: 'FLOAT' };
  return new ParquetSchema(fields);
}

/** A Parquet table of `key, label, split, <values>` streamed to `output`. */
export class FeatureTableParquetWriter {
  private writer?: ParquetWriter;
  private readonly columns: string[];
  rows = 0;

  constructor(
    private readonly output: Writable,
    prefix: 'pc' | 'f',
    readonly width: number,
    private readonly rowGroupRows = ROW_GROUP_ROWS,
  ) {
    this.columns = numberedColumns(prefix, width);
  }

  /** One row: `values[offset .. offset + width)`. */
  async append(key: string, label: string, split: string | undefined, values: ArrayLike<number>, offset = 0): Promise<void> {
    this.writer ??= await this.open();
    const row: Record<string, unknown> = { key, label };
    if (split !== undefined) row.split = split;
    for (let c = 0; c < this.width; c++) row[this.columns[c]] = values[offset + c];
    await this.writer.appendRow(row);
    this.rows++;
  }

  /** Writes the last row group and the footer (a table of no rows still gets its schema). */
  async close(): Promise<void> {
    this.writer ??= await this.open();
    await this.writer.close();
  }

  private open(): Promise<ParquetWriter> {
    // The library types its stream as an fs.WriteStream; it only calls write(chunk, callback) and end(callback).
    const stream = this.output as unknown as Parameters<typeof ParquetWriter.openStream>[1];
    return ParquetWriter.openStream(tableSchema(this.columns), stream, { rowGroupSize: this.rowGroupRows, useDataPageV2: false });
  }
}
