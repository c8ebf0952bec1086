/**
 * libjpeg-turbo compiled to WebAssembly (@cornerstonejs/codec-libjpeg-turbo-8bit) for the small
 * JPEGs that are most of the product's input (Fruits-360: 100x100 px, about 5 KB).
 *
 * At that size sharp's fixed cost per call dominates: about 0.8 ms of CPU to decode and 1.9 ms for
 * the whole decode + resize pipeline, while the same libjpeg-turbo decode in wasm takes about 0.12 ms
 * and gives the same pixels, bit for bit (test/lambdas/images/preprocess.test.ts checks it). Anything
 * this decoder refuses (progressive quirks, truncation, corruption, CMYK) goes back to sharp, whose
 * message then explains the problem. `plainJpegHeader` reads just enough of the file to tell
 * which JPEGs qualify without asking sharp for its metadata (another 0.13 ms per image).
 */
import { readFileSync } from 'node:fs';

interface FrameInfo {
  readonly width: number;
  readonly height: number;
  readonly bitsPerSample: number;
  readonly componentCount: number;
}
interface JpegDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getFrameInfo(): FrameInfo;
  getDecodedBuffer(): Uint8Array;
}
type CodecModule = { JPEGDecoder: new () => JpegDecoder };

let decoder: Promise<JpegDecoder> | undefined;

/** One decoder per thread, built on first use (a few milliseconds: the wasm is 150 KB). */
function jpegDecoder(): Promise<JpegDecoder> {
  decoder ??= (async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- an emscripten module factory (CommonJS)
    const factory = require('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs') as (options: { wasmBinary: Uint8Array }) => Promise<CodecModule>;
    const wasmBinary = readFileSync(require.resolve('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm'));
    return new (await factory({ wasmBinary })).JPEGDecoder();
  })();
  return decoder;
}

export interface DecodedRgb {
  readonly width: number;
  readonly height: number;
  /** width x height x 3, row-major RGB. */
  readonly rgb: Uint8Array;
}

/**
 * The JPEG's pixels as 8-bit RGB, or undefined when this decoder cannot give exactly that (an error
 * in the data, or not 3-channel 8-bit): the caller then decodes with sharp.
 */
export async function decodeJpegRgb(bytes: Uint8Array): Promise<DecodedRgb | undefined> {
  let jpeg: JpegDecoder;
  try {
    jpeg = await jpegDecoder();
  } catch {
    return undefined;
  }
  try {
    jpeg.getEncodedBuffer(bytes.length).set(bytes);
    jpeg.decode();
  } catch {
    // libjpeg's error exits surface as a thrown pointer; the decoder stays usable.
    return undefined;
  }
  const { width, height, bitsPerSample, componentCount } = jpeg.getFrameInfo();
  if (bitsPerSample !== 8 || componentCount !== 3) return undefined;
  const decoded = jpeg.getDecodedBuffer();
  if (decoded.length !== width * height * 3) return undefined;
  // A copy: the view points into the wasm heap, which the next decode overwrites.
  return { width, height, rgb: Uint8Array.from(decoded) };
}

/** What the header of a JPEG this decoder can take says; undefined for anything else. */
export interface PlainJpegHeader {
  readonly width: number;
  readonly height: number;
}

const SOF_MARKERS = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
const ascii = (bytes: Uint8Array, start: number, text: string) => [...text].every((c, i) => bytes[start + i] === c.charCodeAt(0));

/**
 * The dimensions of a complete (SOI ... EOI), 8-bit, 3-component JPEG that carries no colour
 * profile and no EXIF orientation other than 1: one whose decoded pixels need no colour management
 * and no turning, so decodeJpegRgb gives exactly what sharp's pipeline would. Any other file, and
 * any header this does not follow, is undefined: sharp reads it.
 */
export function plainJpegHeader(bytes: Uint8Array): PlainJpegHeader | undefined {
  const n = bytes.length;
  if (n < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8 || bytes[n - 2] !== 0xff || bytes[n - 1] !== 0xd9) return undefined;
  let frame: PlainJpegHeader | undefined;
  let at = 2;
  while (at + 4 <= n) {
    if (bytes[at] !== 0xff) return undefined;
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    const body = at + 4;
    if (length < 2 || at + 2 + length > n) return undefined;
    if (marker === 0xda) return frame; // start of scan: every header segment has been seen
    if (SOF_MARKERS.has(marker)) {
      if (frame || length < 8 || bytes[body] !== 8 || bytes[body + 5] !== 3) return undefined;
      frame = { height: (bytes[body + 1] << 8) | bytes[body + 2], width: (bytes[body + 3] << 8) | bytes[body + 4] };
      if (frame.width === 0 || frame.height === 0) return undefined;
    } else if (marker === 0xe2 && ascii(bytes, body, 'ICC_PROFILE\0')) {
      return undefined;
    } else if (marker === 0xe1 && ascii(bytes, body, 'Exif\0\0') && exifOrientation(bytes, body + 6, at + 2 + length) !== 1) {
      return undefined;
    }
    at += 2 + length;
  }
  return undefined;
}

/** The orientation tag (0x0112) of IFD0 in the TIFF block at [start, end); 1 when absent; 0 when unreadable. */
function exifOrientation(bytes: Uint8Array, start: number, end: number): number {
  if (end - start < 8) return 0;
  const little = bytes[start] === 0x49 && bytes[start + 1] === 0x49;
  if (!little && !(bytes[start] === 0x4d && bytes[start + 1] === 0x4d)) return 0;
  const u16 = (at: number) => (little ? bytes[at] | (bytes[at + 1] << 8) : (bytes[at] << 8) | bytes[at + 1]);
  const u32 = (at: number) => (little ? u16(at) + u16(at + 2) * 65536 : u16(at) * 65536 + u16(at + 2));
  const ifd = start + u32(start + 4);
  if (ifd + 2 > end) return 0;
  const entries = u16(ifd);
  for (let i = 0; i < entries; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > end) return 0;
    if (u16(entry) === 0x0112) return u16(entry + 8);
  }
  return 1;
}
