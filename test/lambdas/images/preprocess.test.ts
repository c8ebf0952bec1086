import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { preprocessImage, PreprocessOptions, PreprocessResult, scalePixels, sniffImageFormat } from '../../../lambdas/images/preprocess';
import { itRequiring, SHARED_SAMPLE } from '../../support/required-files';

const SIZE = 20;
const options: PreprocessOptions = { size: SIZE, maxInputPixels: 10_000_000, maxInputBytes: 5 * 1024 * 1024 };
const RED = { r: 220, g: 20, b: 30 };
const BLUE = { r: 20, g: 30, b: 220 };
const SAMPLE_KIWI = join(SHARED_SAMPLE, 'Test', 'Kiwi');

function solid(width: number, height: number, colour: { r: number; g: number; b: number; alpha?: number }, channels: 3 | 4 = 3) {
  return sharp({ create: { width, height, channels, background: colour } });
}

/** RGB of pixel (x, y) of an accepted image. */
function pixel(result: PreprocessResult, x: number, y: number): number[] {
  if (!result.ok) throw new Error(`rejected: ${result.reason}`);
  const i = (y * result.size + x) * 3;
  return Array.from(result.rgb.slice(i, i + 3));
}

function expectClose(actual: number[], expected: number[], tolerance = 12) {
  actual.forEach((value, i) => expect(Math.abs(value - expected[i])).toBeLessThanOrEqual(tolerance));
}

/** A PNG whose header claims width x height but which carries almost no data: a decompression bomb. */
function pngClaiming(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('preprocessImage accepts odd but valid encodings as 3-channel sRGB', () => {
  const accepted = async (bytes: Buffer, size = SIZE) => {
    const result = await preprocessImage(bytes, { ...options, size });
    if (!result.ok) throw new Error(`rejected: ${result.reason}`);
    expect(result.rgb).toHaveLength(size * size * 3);
    return result;
  };

  it('JPEG, letterboxed on white when not square', async () => {
    const result = await accepted(await solid(40, 20, RED).jpeg({ quality: 95 }).toBuffer());
    expect(result.format).toBe('jpeg');
    expect([result.sourceWidth, result.sourceHeight]).toEqual([40, 20]);
    expectClose(pixel(result, SIZE / 2, SIZE / 2), [RED.r, RED.g, RED.b]);
    expectClose(pixel(result, SIZE / 2, 0), [255, 255, 255], 3);
  });

  it('grayscale, expanded to three equal channels', async () => {
    const result = await accepted(await solid(10, 10, { r: 90, g: 90, b: 90 }).toColourspace('b-w').png().toBuffer());
    const [r, g, b] = pixel(result, 5, 5);
    expect(r).toBe(g);
    expect(g).toBe(b);
    expectClose([r], [90], 2);
  });

  it('CMYK JPEG, converted to sRGB', async () => {
    const bytes = await solid(16, 16, RED).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
    expect((await sharp(bytes).metadata()).space).toBe('cmyk');
    expectClose(pixel(await accepted(bytes), 10, 10), [RED.r, RED.g, RED.b], 30);
  });

  it('alpha, flattened onto white', async () => {
    const bytes = await solid(10, 10, { r: 0, g: 0, b: 0, alpha: 0 }, 4).png().toBuffer();
    expectClose(pixel(await accepted(bytes), 5, 5), [255, 255, 255], 0);
    const half = await solid(10, 10, { r: 0, g: 0, b: 0, alpha: 0.5 }, 4).png().toBuffer();
    expectClose(pixel(await accepted(half), 5, 5), [128, 128, 128], 3);
  });

  it('16-bit PNG, reduced to 8 bits', async () => {
    const bytes = await solid(10, 10, RED).toColourspace('rgb16').png().toBuffer();
    expect((await sharp(bytes).metadata()).depth).toBe('ushort');
    expectClose(pixel(await accepted(bytes), 10, 10), [RED.r, RED.g, RED.b], 3);
  });

  it.each([
    ['webp', (s: Sharp) => s.webp({ lossless: true })],
    ['tiff', (s: Sharp) => s.tiff()],
    ['gif', (s: Sharp) => s.gif()],
    ['heif', (s: Sharp) => s.avif({ quality: 90 })],
  ])('%s', async (format, encode) => {
    const result = await accepted(await encode(solid(12, 12, BLUE)).toBuffer());
    expect(result.format).toBe(format);
    expectClose(pixel(result, 10, 10), [BLUE.r, BLUE.g, BLUE.b], 20);
  });

  it('animated GIF: the first frame only', async () => {
    const frames = await Promise.all([RED, BLUE].map((c) => solid(10, 10, c).png().toBuffer()));
    const gif = await sharp(frames, { join: { animated: true } })
      .gif()
      .toBuffer();
    const result = await accepted(gif);
    expect([result.sourceWidth, result.sourceHeight]).toEqual([10, 10]);
    expectClose(pixel(result, 10, 10), [RED.r, RED.g, RED.b], 20);
  });

  it('EXIF orientation is applied (orientation 6: rotate 90 degrees clockwise)', async () => {
    // Stored 40x20: left half red, right half blue. Displayed: 20x40, red on top.
    const stored = await solid(40, 20, BLUE)
      .composite([{ input: await solid(20, 20, RED).png().toBuffer(), left: 0, top: 0 }])
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const result = await accepted(stored);
    expect([result.sourceWidth, result.sourceHeight]).toEqual([20, 40]);
    expectClose(pixel(result, SIZE / 2, 2), [RED.r, RED.g, RED.b], 30);
    expectClose(pixel(result, SIZE / 2, SIZE - 3), [BLUE.r, BLUE.g, BLUE.b], 30);
  });

  it('a large image within the limits', async () => {
    const result = await accepted(await solid(3000, 2000, RED).jpeg().toBuffer(), 224);
    expect([result.sourceWidth, result.sourceHeight]).toEqual([3000, 2000]);
    expectClose(pixel(result, 112, 112), [RED.r, RED.g, RED.b]);
  });

  const kiwi = itRequiring('preprocessImage on a real Fruits-360 photo', [SAMPLE_KIWI]);
  kiwi('a real Fruits-360 photo (needs ../shared)', async () => {
    const bytes = readFileSync(join(SAMPLE_KIWI, readdirSync(SAMPLE_KIWI)[0]));
    const result = await accepted(bytes, 224);
    expect([result.sourceWidth, result.sourceHeight]).toEqual([100, 100]);
    expectClose(pixel(result, 0, 0), [255, 255, 255], 10);
  });
});

describe('preprocessImage rejects bad input with a reason and never throws', () => {
  let jpeg: Buffer;
  beforeAll(async () => {
    jpeg = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg()
      .toBuffer();
  });

  const rejected = async (bytes: Buffer, overrides: Partial<PreprocessOptions> = {}) => {
    const result = await preprocessImage(bytes, { ...options, ...overrides });
    expect(result.ok).toBe(false);
    return result.ok ? '' : result.reason;
  };

  it('zero bytes', async () => expect(await rejected(Buffer.alloc(0))).toMatch(/empty object/));
  it('truncated JPEG', async () => expect(await rejected(jpeg.subarray(0, Math.floor(jpeg.length / 2)))).toMatch(/cannot decode jpeg/));
  it('truncated PNG', async () => {
    const png = await sharp(jpeg).png().toBuffer();
    expect(await rejected(png.subarray(0, Math.floor(png.length / 2)))).toMatch(/png/);
  });
  it('corrupt JPEG (valid magic, garbage after it)', async () => {
    const garbage = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(500, 0x5a)]);
    expect(await rejected(garbage)).toMatch(/jpeg/);
  });
  it('HTML saved with an image extension', async () => {
    expect(await rejected(Buffer.from('<!DOCTYPE html><html><body>404</body></html>'))).toMatch(/not an image: .*HTML/);
  });
  it('plain text', async () => expect(await rejected(Buffer.from('just some notes\n'))).toMatch(/not an image: .*text/));
  it('unknown binary', async () => expect(await rejected(Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))).toMatch(/not an image/));
  it.each([
    ['plain', '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'],
    ['with XML prolog and BOM', '\uFEFF<?xml version="1.0"?>\n<!-- x -->\n<svg xmlns="http://www.w3.org/2000/svg"/>'],
  ])('SVG by content (%s), whatever the extension', async (_, text) => {
    expect(await rejected(Buffer.from(text))).toMatch(/SVG images are not allowed/);
  });
  it('decompression bomb: header claims more pixels than MAX_INPUT_PIXELS', async () => {
    expect(await rejected(pngClaiming(50_000, 50_000))).toMatch(/50000x50000 .*MAX_INPUT_PIXELS=10000000/);
  });
  it('real image above a configured pixel limit', async () => {
    expect(await rejected(jpeg, { maxInputPixels: 300 * 300 - 1 })).toMatch(/above MAX_INPUT_PIXELS/);
  });
  it('object above the byte limit', async () => {
    expect(await rejected(jpeg, { maxInputBytes: 1000 })).toMatch(/above the limit of 1000 bytes/);
  });
});

describe('sniffImageFormat and scalePixels', () => {
  it('judges by content, not by name', () => {
    expect(sniffImageFormat(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toEqual({ format: 'png' });
    expect(sniffImageFormat(Buffer.from('RIFF\0\0\0\0WEBPVP8 '))).toEqual({ format: 'webp' });
  });

  it('scales to the model range', () => {
    const rgb = Uint8Array.from([0, 127.5, 255].map(Math.floor));
    expect(Array.from(scalePixels(Uint8Array.from([0, 255]), 'minus-one-to-one'))).toEqual([-1, 1]);
    expect(Array.from(scalePixels(Uint8Array.from([0, 255]), 'zero-to-one'))).toEqual([0, 1]);
    expect(scalePixels(rgb, 'minus-one-to-one')[1]).toBeCloseTo(-0.0039, 3);
  });
});
