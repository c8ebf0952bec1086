/**
 * Image bytes -> the featurizer's input: a square 3-channel sRGB uint8 raster, then the model's
 * own scaling. Every problem with an image becomes a `reason` string, never an exception, so one
 * bad file cannot fail the batch it arrived in.
 */
import sharp, { type Metadata, type OutputInfo, type SharpOptions } from 'sharp';
import { FEATURIZE_SETTINGS } from '../contracts/handler-env';
import { DecodedRgb, decodeJpegRgb, plainJpegHeader } from './jpeg-wasm-decoder';
import { containBicubic } from './pixel-resize';

/** Formats we decode. SVG is never rendered (it can fetch, script and bomb); others are refused. */
export type AllowedFormat = 'jpeg' | 'png' | 'webp' | 'tiff' | 'gif' | 'heif';

export interface PreprocessOptions {
  /** Side of the square output, in pixels (the model's input size). */
  readonly size: number;
  /** Largest width x height accepted before decoding (FEATURIZE_SETTINGS.maxInputPixels says why). */
  readonly maxInputPixels: number;
  /** Largest object accepted, in bytes. */
  readonly maxInputBytes: number;
}

/** The featurize handler's limits when nothing else is set (FEATURIZE_SETTINGS); the report's thumbnails keep them too. */
export const DEFAULT_MAX_INPUT_PIXELS = FEATURIZE_SETTINGS.maxInputPixels.default;
export const DEFAULT_MAX_INPUT_BYTES = FEATURIZE_SETTINGS.maxInputBytes.default;

export interface PreprocessedImage {
  readonly ok: true;
  /** size x size x 3, row-major RGB. */
  readonly rgb: Uint8Array;
  readonly size: number;
  readonly format: AllowedFormat;
  /** Dimensions of the source after EXIF orientation. */
  readonly sourceWidth: number;
  readonly sourceHeight: number;
}
export interface RejectedImage {
  readonly ok: false;
  readonly reason: string;
}
export type PreprocessResult = PreprocessedImage | RejectedImage;

const reject = (reason: string): RejectedImage => ({ ok: false, reason });

/** The dataset's background: padding and flattened transparency must look like it. */
const WHITE = { r: 255, g: 255, b: 255 };

/**
 * What the bytes are, judged by content only (the key's extension can lie). Returns the format or
 * a reason the bytes are not an image we accept.
 */
export function sniffImageFormat(bytes: Uint8Array): { format: AllowedFormat } | { reason: string } {
  if (bytes.length === 0) return { reason: 'empty object (0 bytes)' };
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ascii = (start: number, end: number) => b.toString('latin1', start, Math.min(end, b.length));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return { format: 'jpeg' };
  if (ascii(0, 8) === '\x89PNG\r\n\x1a\n') return { format: 'png' };
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return { format: 'webp' };
  if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return { format: 'gif' };
  if (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*') return { format: 'tiff' };
  if (ascii(4, 8) === 'ftyp') {
    const brand = ascii(8, 12);
    if (['avif', 'avis', 'heic', 'heix', 'heim', 'heis', 'mif1', 'msf1'].includes(brand)) return { format: 'heif' };
    return { reason: `unsupported ISO media file (brand "${brand.replace(/[^\x20-\x7e]/g, '?')}")` };
  }
  // Text: strip a UTF-8 BOM and leading whitespace, then look at the markup.
  const head = b
    .toString('utf8', 0, Math.min(b.length, 4096))
    .replace(/^\uFEFF/, '')
    .trimStart()
    .toLowerCase();
  if (/<svg[\s>]/.test(head) || (head.startsWith('<?xml') && head.includes('<svg'))) {
    return { reason: 'SVG images are not allowed (vector images are never rendered)' };
  }
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || head.startsWith('<?xml') || head.startsWith('<')) {
    return { reason: 'not an image: the object holds HTML/XML text' };
  }
  if (isMostlyText(b.subarray(0, 512))) return { reason: 'not an image: the object holds text' };
  return { reason: 'not an image: unknown or unsupported format' };
}

function isMostlyText(sample: Buffer): boolean {
  if (sample.length === 0) return false;
  let printable = 0;
  for (const byte of sample) if (byte === 9 || byte === 10 || byte === 13 || (byte >= 32 && byte !== 127)) printable++;
  return printable / sample.length > 0.95 && !sample.includes(0);
}

/**
 * Decode, orient, force 3-channel 8-bit sRGB on white, and fit into a `size` square.
 *
 * Non-square images are letterboxed on white rather than stretched or cropped: Fruits-360 fruit
 * sits on white, so padding keeps the whole fruit and its shape.
 */
export async function preprocessImage(bytes: Uint8Array, options: PreprocessOptions): Promise<PreprocessResult> {
  if (bytes.length > options.maxInputBytes) {
    return reject(`object is ${bytes.length} bytes, above the limit of ${options.maxInputBytes} bytes`);
  }
  const sniffed = sniffImageFormat(bytes);
  if ('reason' in sniffed) return reject(sniffed.reason);

  // The product's usual input: a small plain JPEG, decoded in wasm and enlarged here (no sharp call).
  const plain = sniffed.format === 'jpeg' ? plainJpegHeader(bytes) : undefined;
  if (plain && plain.width <= options.size && plain.height <= options.size) {
    const decoded = await decodeJpegRgb(bytes);
    if (decoded && decoded.width === plain.width && decoded.height === plain.height) {
      const rgb = enlarged(decoded, options.size);
      return { ok: true, rgb, size: options.size, format: 'jpeg', sourceWidth: plain.width, sourceHeight: plain.height };
    }
  }

  // `failOn: 'warning'` is sharp's advice for untrusted input: truncated and corrupt data abort.
  const inputOptions: SharpOptions = { failOn: 'warning', limitInputPixels: options.maxInputPixels, pages: 1 };
  let metadata: Metadata;
  try {
    metadata = await sharp(bytes, { ...inputOptions, limitInputPixels: false }).metadata();
  } catch (error) {
    return reject(`cannot read ${sniffed.format} header: ${describe(error)}`);
  }
  if (metadata.format === 'svg') return reject('SVG images are not allowed (vector images are never rendered)');
  const width = metadata.width ?? 0;
  const height = metadata.pageHeight ?? metadata.height ?? 0;
  if (width <= 0 || height <= 0) return reject(`${sniffed.format} header holds no dimensions`);
  if (width * height > options.maxInputPixels) {
    return reject(`image is ${width}x${height} (${width * height} pixels), above MAX_INPUT_PIXELS=${options.maxInputPixels} (possible decompression bomb)`);
  }

  const oriented = (metadata.orientation ?? 1) >= 5;
  const sourceWidth = oriented ? height : width;
  const sourceHeight = oriented ? width : height;
  const accepted = (rgb: Uint8Array): PreprocessedImage => ({ ok: true, rgb, size: options.size, format: sniffed.format, sourceWidth, sourceHeight });
  try {
    // Images no larger than the model's square are decoded at their own size and enlarged here
    // (pixel-resize.ts): for the product's 100 px photos that is several times cheaper than a
    // resize in sharp. Larger images are reduced by sharp, which shrinks JPEGs while decoding.
    if (sourceWidth <= options.size && sourceHeight <= options.size) {
      const native = await decodeWithSharp(bytes, inputOptions);
      return 'reason' in native ? reject(native.reason) : accepted(enlarged(native, options.size));
    }
    const { data, info } = await sharpRgb(bytes, inputOptions, options.size);
    if (info.channels !== 3 || info.width !== options.size || info.height !== options.size) {
      return reject(`decoder produced ${info.width}x${info.height}x${info.channels}, expected ${options.size}x${options.size}x3`);
    }
    return accepted(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  } catch (error) {
    return reject(`cannot decode ${sniffed.format}: ${describe(error)}`);
  }
}

/** An image no larger than the square, enlarged into it (or as it is when it fills it already). */
function enlarged(image: DecodedRgb, size: number): Uint8Array {
  return image.width === size && image.height === size ? image.rgb : containBicubic(image.rgb, image.width, image.height, size);
}

/**
 * sharp's one pipeline: decode, orient, flatten on white, 8-bit sRGB without alpha; letterboxed
 * into a `size` square on white when given, else at the image's own size.
 */
export function sharpRgb(bytes: Uint8Array, inputOptions: SharpOptions, size?: number): Promise<{ data: Buffer; info: OutputInfo }> {
  const oriented = sharp(bytes, inputOptions).autoOrient().flatten({ background: WHITE });
  const fitted = size === undefined ? oriented : oriented.resize(size, size, { fit: 'contain', background: WHITE });
  return fitted.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
}

/** Decode, orient, flatten on white and convert to 8-bit sRGB, at the image's own size. */
async function decodeWithSharp(bytes: Uint8Array, inputOptions: SharpOptions): Promise<DecodedRgb | RejectedImage> {
  const { data, info } = await sharpRgb(bytes, inputOptions);
  if (info.channels !== 3) return reject(`decoder produced ${info.channels} channels, expected 3`);
  return { width: info.width, height: info.height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // libvips messages can span lines and repeat; one short line is enough for a report.
  return message
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .slice(0, 2)
    .join('; ')
    .slice(0, 300);
}

/** How a model expects its RGB input scaled. */
export type PixelScaling = 'minus-one-to-one' | 'zero-to-one';

/**
 * uint8 RGB -> float32 in the model's range. MobileNet v1 was trained on x / 127.5 - 1; the raw
 * pixel featurizer (the original notebook's) uses x / 255.
 */
export function scalePixels(rgb: Uint8Array, scaling: PixelScaling, out = new Float32Array(rgb.length)): Float32Array {
  if (scaling === 'minus-one-to-one') for (let i = 0; i < rgb.length; i++) out[i] = rgb[i] / 127.5 - 1;
  else for (let i = 0; i < rgb.length; i++) out[i] = rgb[i] / 255;
  return out;
}
