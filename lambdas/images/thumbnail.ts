/**
 * Small JPEG thumbnails as `data:` URIs, for report.html's gallery: the page must open with no
 * network and no files beside it, so every image travels inside it (a 112 px JPEG is ~3-5 KB).
 */
import sharp from 'sharp';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS } from './preprocess';

/** Side of the square thumbnail, in pixels. */
export const THUMBNAIL_PX = 112;

/** The image fitted into a white square of `size` pixels, as a JPEG data URI; throws on bad input. */
export async function thumbnailDataUri(bytes: Uint8Array, size: number = THUMBNAIL_PX): Promise<string> {
  if (bytes.byteLength > DEFAULT_MAX_INPUT_BYTES) throw new RangeError(`image of ${bytes.byteLength} bytes is above the thumbnail limit`);
  const jpeg = await sharp(bytes, { failOn: 'error', limitInputPixels: DEFAULT_MAX_INPUT_PIXELS, pages: 1 })
    .rotate()
    .resize(size, size, { fit: 'contain', background: { r: 255, g: 255, b: 255 } })
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .jpeg({ quality: 80 })
    .toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}
