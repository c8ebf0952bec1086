/**
 * libjpeg-turbo compiled to WebAssembly (@cornerstonejs/codec-libjpeg-turbo-8bit) for the small
 * JPEGs that are most of the product's input (Fruits-360: 100x100 px, about 5 KB).
 *
 * At that size sharp's fixed cost per call dominates: about 0.8 ms of CPU to decode and 1.9 ms for
 * the whole decode + resize pipeline, while the same libjpeg-turbo decode in wasm takes about 0.12 ms
 * and gives the same pixels, bit for bit (test/lambdas/core/preprocess.test.ts checks it). Anything
 * this decoder refuses (progressive quirks, truncation, corruption, CMYK) goes back to sharp, whose
 * message then explains the problem.
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
