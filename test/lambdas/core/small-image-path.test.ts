/**
 * The small-image path of preprocessImage (issue 10): JPEGs no larger than the model's square are
 * decoded by libjpeg-turbo in wasm and enlarged in JavaScript the way libvips enlarges, instead of by sharp.
 * Checked on the real photos shipped in datasets/fruits-360-demo.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeJpegRgb } from '../../../lambdas/core/jpeg-wasm-decoder';
import { containBicubic } from '../../../lambdas/core/pixel-resize';
import { preprocessImage } from '../../../lambdas/core/preprocess';

const DEMO = join(__dirname, '..', '..', '..', 'datasets', 'fruits-360-demo', 'images', 'Training');
const photos = readdirSync(DEMO)
  .sort()
  .map((label) => join(DEMO, label, readdirSync(join(DEMO, label)).sort()[0]));
const limits = { maxInputPixels: 10_000_000, maxInputBytes: 5 * 1024 * 1024 };

describe('decodeJpegRgb', () => {
  it('gives the pixels sharp decodes, bit for bit, for every demo photo', async () => {
    expect(photos.length).toBeGreaterThan(3);
    for (const photo of photos) {
      const bytes = readFileSync(photo);
      const decoded = await decodeJpegRgb(bytes);
      const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      expect(decoded).toMatchObject({ width: info.width, height: info.height });
      expect(Buffer.from(decoded!.rgb).equals(data)).toBe(true);
    }
  });

  it('declines what it cannot decode exactly, and keeps working afterwards', async () => {
    const bytes = readFileSync(photos[0]);
    expect(await decodeJpegRgb(bytes.subarray(0, bytes.length >> 1))).toBeUndefined();
    expect(await decodeJpegRgb(Buffer.from('not a jpeg at all'))).toBeUndefined();
    const grey = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } })
      .toColourspace('b-w')
      .jpeg()
      .toBuffer();
    expect(await decodeJpegRgb(grey)).toBeUndefined();
    expect((await decodeJpegRgb(bytes))?.width).toBe(100);
  });
});

describe('containBicubic', () => {
  it('keeps a flat image flat and copies an image already at the size', () => {
    expect(containBicubic(new Uint8Array(10 * 10 * 3).fill(77), 10, 10, 16).every((v) => v === 77)).toBe(true);
    const ramp = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => i % 251);
    // At scale 1 the -0.5 shift of libvips' mapping blends each pixel with its neighbours: not a copy.
    expect(containBicubic(ramp, 8, 8, 8)).toHaveLength(8 * 8 * 3);
  });

  it('gives the pixels sharp gives when it enlarges (libvips bicubic), within rounding', async () => {
    for (const photo of photos) {
      const bytes = readFileSync(photo);
      const decoded = await sharp(bytes).raw().toBuffer();
      for (const size of [128, 160, 224]) {
        const ours = containBicubic(decoded, 100, 100, size);
        const theirs = await sharp(bytes).resize(size, size, { fit: 'contain', background: '#ffffff' }).removeAlpha().raw().toBuffer();
        let most = 0;
        let total = 0;
        for (let i = 0; i < ours.length; i++) {
          const difference = Math.abs(ours[i] - theirs[i]);
          most = Math.max(most, difference);
          total += difference;
        }
        // libvips interpolates in fixed point: a few levels apart at most (1 value in millions reaches 3), a fraction on average.
        expect({ size, most: most <= 3, mean: total / ours.length < 0.25 }).toEqual({ size, most: true, mean: true });
      }
    }
  });

  it('letterboxes a wide image on white, centred, as sharp does', async () => {
    const bytes = readFileSync(photos[2]);
    const wide = await sharp(bytes).resize(100, 50, { fit: 'fill' }).raw().toBuffer();
    const ours = containBicubic(wide, 100, 50, 128);
    const theirs = await sharp(wide, { raw: { width: 100, height: 50, channels: 3 } })
      .resize(128, 128, { fit: 'contain', background: '#ffffff' })
      .raw()
      .toBuffer();
    let most = 0;
    for (let i = 0; i < ours.length; i++) most = Math.max(most, Math.abs(ours[i] - theirs[i]));
    expect(most).toBeLessThanOrEqual(2);
    const at = (x: number, y: number) => ours[(y * 128 + x) * 3];
    expect([at(0, 0), at(64, 31), at(64, 96), at(127, 127)]).toEqual([255, 255, 255, 255]);
  });

  it('refuses a raster of the wrong length', () => {
    expect(() => containBicubic(new Uint8Array(5), 2, 2, 4)).toThrow(/expected 2x2x3/);
  });
});

describe('preprocessImage on small photos', () => {
  it('is the wasm decode enlarged in JavaScript', async () => {
    for (const photo of photos) {
      const bytes = readFileSync(photo);
      const result = await preprocessImage(bytes, { size: 128, ...limits });
      if (!result.ok) throw new Error(result.reason);
      const decoded = await sharp(bytes).raw().toBuffer();
      expect(Buffer.from(result.rgb).equals(Buffer.from(containBicubic(decoded, 100, 100, 128)))).toBe(true);
      expect(result).toMatchObject({ sourceWidth: 100, sourceHeight: 100, format: 'jpeg' });
    }
  });

  it('enlarges a small PNG the same way as the same pixels in a JPEG decoded by sharp', async () => {
    const bytes = readFileSync(photos[1]);
    const decoded = await sharp(bytes).raw().toBuffer();
    const png = await sharp(decoded, { raw: { width: 100, height: 100, channels: 3 } })
      .png()
      .toBuffer();
    const fromPng = await preprocessImage(png, { size: 128, ...limits });
    const fromJpeg = await preprocessImage(bytes, { size: 128, ...limits });
    if (!fromPng.ok || !fromJpeg.ok) throw new Error('rejected');
    expect(Buffer.from(fromPng.rgb).equals(Buffer.from(fromJpeg.rgb))).toBe(true);
  });

  it('reduces an image larger than the square with sharp', async () => {
    const big = await sharp(readFileSync(photos[0])).resize(300, 300).jpeg().toBuffer();
    const result = await preprocessImage(big, { size: 128, ...limits });
    expect(result).toMatchObject({ ok: true, sourceWidth: 300, sourceHeight: 300 });
  });
});
