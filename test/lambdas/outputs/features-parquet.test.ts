import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { FeatureTableParquetWriter, ParquetByteSink, rowGroupRowsFor } from '../../../lambdas/outputs/features-parquet';

/** The chunks a writer hands over, and the file they make. */
function collectingSink(): ParquetByteSink & { chunks: Uint8Array[]; file(): ArrayBuffer } {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write: async (chunk) => void chunks.push(chunk),
    file: () => Uint8Array.from(Buffer.concat(chunks)).buffer,
  };
}

describe('features Parquet', () => {
  const rows = 700;
  const width = 5;
  const keyOf = (r: number) => `input/d/${r % 3 ? 'Training' : 'Test'}/Class ${r % 7}/${r}.jpg`;
  const splitOf = (r: number) => (r % 10 === 0 ? undefined : r % 3 ? 'train' : 'test');
  const values = Float64Array.from({ length: rows * width }, (_, i) => Math.sin(i) * 100);

  it('writes the rows as typed columns, in row groups handed over one at a time, that an independent reader reads back', async () => {
    const sink = collectingSink();
    const writer = new FeatureTableParquetWriter(sink, 'pc', width, 256);
    for (let r = 0; r < rows; r++) await writer.append(keyOf(r), `Class ${r % 7}`, splitOf(r), values, r * width);
    // Two full row groups went out as they filled; the third goes with the footer.
    expect(sink.chunks).toHaveLength(2);
    await writer.close();
    expect(writer.rows).toBe(rows);

    const file = sink.file();
    const metadata = parquetMetadata(file);
    expect(metadata.row_groups.map((group) => Number(group.num_rows))).toEqual([256, 256, 188]);
    expect(metadata.schema.slice(1).map((c) => [c.name, c.type, c.converted_type, c.repetition_type])).toEqual([
      ['key', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
      ['label', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
      ['split', 'BYTE_ARRAY', 'UTF8', 'OPTIONAL'],
      ...Array.from({ length: width }, (_, c) => [`pc_${c + 1}`, 'FLOAT', undefined, 'REQUIRED']),
    ]);
    const columns = metadata.row_groups[0].columns.map((column) => column.meta_data!);
    expect(columns.slice(0, 3).map((column) => column.codec)).toEqual(['SNAPPY', 'SNAPPY', 'SNAPPY']);
    expect(columns.slice(3).every((column) => column.codec === 'UNCOMPRESSED' && column.encodings.includes('PLAIN'))).toBe(true);

    const read = (await parquetReadObjects({ file })) as Record<string, string | number | null>[];
    expect(read).toHaveLength(rows);
    read.forEach((row, r) => {
      expect(row.key).toBe(keyOf(r));
      expect(row.label).toBe(`Class ${r % 7}`);
      expect(row.split).toBe(splitOf(r) ?? null);
      for (let c = 0; c < width; c++) expect(row[`pc_${c + 1}`]).toBe(Math.fround(values[r * width + c]));
    });
  });

  it('writes a table of no rows with its schema', async () => {
    const sink = collectingSink();
    const writer = new FeatureTableParquetWriter(sink, 'f', 3);
    await writer.close();
    const metadata = parquetMetadata(sink.file());
    expect(Number(metadata.num_rows)).toBe(0);
    expect(metadata.schema.slice(1).map((c) => c.name)).toEqual(['key', 'label', 'split', 'f_1', 'f_2', 'f_3']);
  });

  it('bounds a wide table by the bytes of its row group', () => {
    expect(rowGroupRowsFor(100)).toBe(32_768);
    expect(rowGroupRowsFor(1376)).toBe(6_096);
    expect(rowGroupRowsFor(1376, 1000)).toBe(1000);
  });
});
