import {
  csvField,
  csvTextField,
  restoreTextField,
  explainedVarianceCsv,
  featuresCsvHeader,
  featuresCsvRow,
  predictionsCsvHeader,
  predictionsCsvRow,
  formatNumber,
  FeaturesCsvRows,
  writeScore,
} from '../../../lambdas/outputs/features-csv';
import { parseCsv } from '../../../evaluate/csv';
import { seededRandom } from '../../../lambdas/common/seeded-random';

describe('features CSV', () => {
  const oddKeys = [
    'input/fruits/Apple Red 1/r_12_100.jpg',
    'input/fruits/Kiwi/with,comma.jpg',
    'input/fruits/Lemon/say "cheese".jpg',
    'input/fruits/Banana/line\nbreak.jpg',
    'input/fruits/Banana/cr\rlf\r\n.jpg',
    'input/fruits/Orange/ leading and trailing space .jpg',
    'input/fruits/Fraise/été 🍓 ü.jpg',
    'input/fruits/Tomato 1/=SUM(A1).jpg',
  ];

  it('quotes only what RFC 4180 needs, doubling inner quotes', () => {
    expect(csvField('plain/key.jpg')).toBe('plain/key.jpg');
    expect(csvField('Apple Red 1')).toBe('Apple Red 1');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('a\nb')).toBe('"a\nb"');
    expect(csvField(' padded')).toBe('" padded"');
    expect(csvField('')).toBe('');
  });

  it('round-trips odd keys and labels through a CSV parser', () => {
    let text = featuresCsvHeader(2);
    oddKeys.forEach((key, i) => {
      text += featuresCsvRow(key, key.split('/')[2], i % 2 ? 'test' : undefined, [i + 0.5, -i * 1e-9]);
    });
    const rows = parseCsv(text);
    expect(rows[0]).toEqual(['key', 'label', 'split', 'pc_1', 'pc_2']);
    expect(rows).toHaveLength(oddKeys.length + 1);
    oddKeys.forEach((key, i) => {
      expect(rows[i + 1][0]).toBe(key);
      expect(rows[i + 1][1]).toBe(key.split('/')[2]);
      expect(rows[i + 1][2]).toBe(i % 2 ? 'test' : '');
      expect(Number(rows[i + 1][3])).toBe(i + 0.5);
      expect(Number(rows[i + 1][4])).toBeCloseTo(-i * 1e-9, 15);
    });
    expect(text.endsWith('\r\n')).toBe(true);
  });

  it('never writes a key or label a spreadsheet would run as a formula, and reads them back exactly', () => {
    const labels = ['=2+5', '+1', '-1', '@SUM(A1)', '\tTab', '\rCR', "'quoted", 'Apple Red 1'];
    let text = featuresCsvHeader(1);
    labels.forEach((label, i) => {
      text += featuresCsvRow(`input/fruits/${label}/${i}.jpg`, label, 'train', [-(i + 1)]);
    });
    const rows = parseCsv(text).slice(1);
    rows.forEach((row, i) => {
      // OWASP: a leading ' makes the cell text; numbers (negative ones too) stay numbers.
      expect(row[1]).toBe(labels[i] === 'Apple Red 1' ? 'Apple Red 1' : `'${labels[i]}`);
      expect(restoreTextField(row[1])).toBe(labels[i]);
      expect(restoreTextField(row[0])).toBe(`input/fruits/${labels[i]}/${i}.jpg`);
      expect(row[3]).toBe(String(-(i + 1)));
    });
    expect(csvTextField('=cmd|calc')).toBe("'=cmd|calc");
  });

  it('writes predictions with the same text guard on key, label and predicted label', () => {
    const text =
      predictionsCsvHeader() +
      predictionsCsvRow('input/d/Test/=HYPERLINK(1)/a,b.jpg', '=HYPERLINK(1)', 'test', '@Kiwi', 0.912345678, 1.25) +
      predictionsCsvRow('input/d/x/1.jpg', 'x', undefined, 'Kiwi', 1, 0);
    const rows = parseCsv(text);
    expect(rows).toEqual([
      ['key', 'label', 'split', 'predicted', 'confidence', 'nearest_distance'],
      ['input/d/Test/=HYPERLINK(1)/a,b.jpg', "'=HYPERLINK(1)", 'test', "'@Kiwi", '0.9123', '1.25'],
      ['input/d/x/1.jpg', 'x', '', 'Kiwi', '1', '0'],
    ]);
  });

  it('writes scores with 8 significant digits and no trailing zeros', () => {
    expect(formatNumber(0)).toBe('0');
    expect(formatNumber(1.5)).toBe('1.5');
    expect(formatNumber(-0.123456789123)).toBe('-0.12345679');
    expect(formatNumber(1.23456789e-7)).toBe('1.2345679e-7');
    expect(formatNumber(123456789.4)).toBe('123456790');
    expect(() => formatNumber(Number.NaN)).toThrow(RangeError);
  });

  it('writes every score as the text of the number rounded to its digits, from 1e-25 to 1e25', () => {
    const random = seededRandom(19);
    const roundTrip = (value: number, digits: number) => String(Number(value.toPrecision(digits)));
    const mismatches: unknown[] = [];
    for (let i = 0; i < 200_000; i++) {
      const magnitude = 10 ** (Math.floor(random() * 50) - 25);
      let value = (random() - 0.5) * 2 * magnitude;
      if (i % 3 === 0) value = Math.fround(value);
      if (i % 7 === 0) value = Math.round(value * 1000) / 1000;
      if (value === 0) continue;
      for (const digits of [8, 12]) {
        if (formatNumber(value, digits) !== roundTrip(value, digits)) mismatches.push({ value, digits, written: formatNumber(value, digits) });
      }
    }
    expect(mismatches).toEqual([]);
    for (const value of [1e-6, 9.9999999999e-7, 99999999.5, 12345678, 1e8, 9.99999999e20, 1e21, 5e-324, Number.MAX_VALUE, 100, -0.1]) {
      expect(formatNumber(value)).toBe(roundTrip(value, 8));
    }
  });

  it("writes a score's bytes exactly as formatNumber's text, for float32 scores next to every power of ten and at random", () => {
    const bytes = Buffer.alloc(32);
    const written = (value: number) => bytes.toString('latin1', 0, writeScore(value, bytes, 0));
    const float = new Float32Array(1);
    const bits = new Uint32Array(float.buffer);
    const mismatches: unknown[] = [];
    const check = (value: number) => {
      if (written(value) !== formatNumber(value)) mismatches.push({ value, written: written(value), expected: formatNumber(value) });
    };
    // Either side of each power of ten, where the decimal exponent and the rounding change.
    for (let power = -8; power <= 9; power++) {
      float[0] = 10 ** power;
      const at = bits[0];
      for (let step = -2000; step <= 2000; step++) {
        bits[0] = at + step;
        check(float[0]);
        check(-float[0]);
      }
    }
    const random = seededRandom(23);
    for (let i = 0; i < 200_000; i++) {
      bits[0] = Math.floor(random() * 2 ** 32);
      if (Number.isFinite(float[0])) check(float[0]);
      check(Math.fround((random() - 0.5) * 200));
      check((random() - 0.5) * 10 ** Math.floor(random() * 24 - 12));
    }
    // Ties of the ninth digit, round-ups to the next power of ten, exponent forms and zeros.
    for (const value of [1234567.5, -1234567.5, 0.5, 99999999.5, 99999999.4, 9.99999995, 1e-6, 9.9999999e-7, 1e8, 12345678, 5e-324, -0, 0]) {
      check(value);
    }
    expect(mismatches).toEqual([]);
    expect(() => writeScore(Number.NaN, bytes, 0)).toThrow(RangeError);
    expect(() => writeScore(Number.POSITIVE_INFINITY, bytes, 0)).toThrow(RangeError);
  });

  it('builds rows as UTF-8 bytes, each take holding the rows since the last, growing past its first buffer', () => {
    const rows = new FeaturesCsvRows();
    const scores = Float32Array.from({ length: 300 }, (_, i) => (i - 150) / 7);
    let expected = '';
    for (const key of oddKeys) {
      rows.add(key, key.split('/')[2], 'train', scores);
      expected += `${csvTextField(key)},${csvTextField(key.split('/')[2])},train,${Array.from(scores, (v) => formatNumber(v)).join(',')}\r\n`;
    }
    const first = rows.take();
    expect(first.toString('utf8')).toBe(expected);
    rows.add(oddKeys[0], 'Apple Red 1', undefined, [1.5, -2], 1);
    expect(rows.take().toString('utf8')).toBe(`${oddKeys[0]},Apple Red 1,,1.5\r\n`);
    // The first take's bytes are its own: later rows do not write over them.
    expect(first.toString('utf8')).toBe(expected);
  });

  it('writes the explained variance table with a cumulative column and the kept flag', () => {
    const rows = parseCsv(explainedVarianceCsv([2, 1, 1], [0.5, 0.25, 0.25], 2));
    expect(rows[0]).toEqual(['component', 'eigenvalue', 'explained_variance_ratio', 'cumulative_explained_variance_ratio', 'kept']);
    expect(rows.slice(1)).toEqual([
      ['pc_1', '2', '0.5', '0.5', 'true'],
      ['pc_2', '1', '0.25', '0.75', 'true'],
      ['pc_3', '1', '0.25', '1', 'false'],
    ]);
  });
});
