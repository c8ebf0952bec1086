/**
 * The small-image path of preprocessImage: JPEGs no larger than the model's square are
 * decoded by libjpeg-turbo in wasm and enlarged in JavaScript the way libvips enlarges, instead of by sharp.
 * Checked on the real photos shipped in datasets/fruits-360-demo.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeJpegRgb, plainJpegHeader } from '../../../lambdas/images/jpeg-wasm-decoder';
import { containBicubic } from '../../../lambdas/images/pixel-resize';
import { preprocessImage } from '../../../lambdas/images/preprocess';

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

/** `jpeg` with an EXIF block (IFD0 holding only the orientation tag) after its SOI marker. */
function withOrientation(jpeg: Buffer, orientation: number, littleEndian = true): Buffer {
  const tiff = Buffer.alloc(26);
  const u16 = (value: number, at: number) => (littleEndian ? tiff.writeUInt16LE(value, at) : tiff.writeUInt16BE(value, at));
  const u32 = (value: number, at: number) => (littleEndian ? tiff.writeUInt32LE(value, at) : tiff.writeUInt32BE(value, at));
  tiff.write(littleEndian ? 'II' : 'MM', 0, 'latin1');
  u16(42, 2);
  u32(8, 4);
  u16(1, 8); // one entry
  u16(0x0112, 10); // Orientation, SHORT, count 1
  u16(3, 12);
  u32(1, 14);
  u16(orientation, 18);
  u32(0, 22); // no next IFD
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const header = Buffer.from([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 0xff]);
  return Buffer.concat([jpeg.subarray(0, 2), header, body, jpeg.subarray(2)]);
}

describe('plainJpegHeader', () => {
  const photo = () => readFileSync(photos[0]);
  it('reads the size of a plain baseline or progressive JPEG', async () => {
    expect(plainJpegHeader(photo())).toEqual({ width: 100, height: 100 });
    const progressive = await sharp(photo()).resize(60, 40, { fit: 'fill' }).jpeg({ progressive: true }).toBuffer();
    expect(plainJpegHeader(progressive)).toEqual({ width: 60, height: 40 });
    expect(plainJpegHeader(withOrientation(photo(), 1))).toEqual({ width: 100, height: 100 });
    expect(plainJpegHeader(withOrientation(photo(), 1, false))).toEqual({ width: 100, height: 100 });
  });

  it('leaves to sharp what needs turning, colour management, or is not 3-channel 8-bit or not whole', async () => {
    expect((await sharp(withOrientation(photo(), 6)).metadata()).orientation).toBe(6);
    const profiled = await sharp(photo()).withIccProfile('p3').jpeg().toBuffer();
    const grey = await sharp(photo()).toColourspace('b-w').jpeg().toBuffer();
    const cmyk = await sharp(photo()).toColourspace('cmyk').jpeg().toBuffer();
    const cases = [
      withOrientation(photo(), 6),
      withOrientation(photo(), 3, false),
      profiled,
      grey,
      cmyk,
      photo().subarray(0, 2000),
      Buffer.from([0xff, 0xd8, 0xff, 0xd9]),
    ];
    for (const bytes of cases) expect(plainJpegHeader(bytes)).toBeUndefined();
  });

  it('the images it leaves to sharp come out as sharp makes them (turned, profiled)', async () => {
    const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
    const wide = await sharp(photo()).resize(100, 60, { fit: 'fill' }).jpeg().toBuffer();
    const upright = await preprocessImage(wide, { size: 128, ...limits });
    expect(upright).toMatchObject({ ok: true, sourceWidth: 100, sourceHeight: 60 });

    // Turned: sharp's own rotation by the EXIF tag, then the enlargement (which matches sharp's, above).
    const turnedBytes = withOrientation(wide, 6);
    const turned = await preprocessImage(turnedBytes, { size: 128, ...limits });
    if (!turned.ok) throw new Error(turned.reason);
    expect(turned).toMatchObject({ sourceWidth: 60, sourceHeight: 100 });
    const rotated = await sharp(turnedBytes).rotate().raw().toBuffer({ resolveWithObject: true });
    expect([rotated.info.width, rotated.info.height]).toEqual([60, 100]);
    expect(same(turned.rgb, containBicubic(rotated.data, 60, 100, 128))).toBe(true);
    if (!upright.ok) throw new Error(upright.reason);
    expect(same(turned.rgb, upright.rgb)).toBe(false);

    // Profiled (Display P3): the pixels converted to sRGB as sharp converts them, not taken as stored.
    const profiledBytes = await sharp(photo()).withIccProfile('p3').jpeg().toBuffer();
    const profiled = await preprocessImage(profiledBytes, { size: 128, ...limits });
    if (!profiled.ok) throw new Error(profiled.reason);
    const inSrgb = await sharp(profiledBytes).raw().toBuffer();
    const asStored = await sharp(profiledBytes).keepIccProfile().raw().toBuffer();
    expect(same(inSrgb, asStored)).toBe(false);
    expect(same(profiled.rgb, containBicubic(inSrgb, 100, 100, 128))).toBe(true);
    expect(same(profiled.rgb, containBicubic(asStored, 100, 100, 128))).toBe(false);
  });
});

describe('containBicubic', () => {
  it('keeps a flat image flat', () => {
    expect(containBicubic(new Uint8Array(10 * 10 * 3).fill(77), 10, 10, 16).every((v) => v === 77)).toBe(true);
  });

  it('at scale 1 still shifts by half a pixel (so preprocessImage copies an image already at the size instead)', () => {
    // A ramp across: 10 x. Catmull-Rom reproduces a straight line, and libvips' mapping reads
    // output x at input x - 0.5, so inside the image (away from the repeated edges) it gives 10 x - 5.
    const ramp = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => 10 * Math.floor(i / 3) - 80 * Math.floor(i / 24));
    const out = containBicubic(ramp, 8, 8, 8);
    for (let y = 0; y < 8; y++) expect([2, 3, 4, 5, 6].map((x) => out[(y * 8 + x) * 3 + 1])).toEqual([15, 25, 35, 45, 55]);
  });

  it('preprocessImage passes a plain JPEG already at the size through as decoded, unblended', async () => {
    const atSize = await sharp(readFileSync(photos[0])).resize(128, 128).jpeg().toBuffer();
    const result = await preprocessImage(atSize, { size: 128, ...limits });
    if (!result.ok) throw new Error(result.reason);
    expect(Buffer.from(result.rgb).equals(await sharp(atSize).raw().toBuffer())).toBe(true);
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
