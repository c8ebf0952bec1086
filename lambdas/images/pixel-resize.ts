/**
 * Enlarge a small RGB raster into the model's square, letterboxed on white: what sharp's
 * `resize(size, size, { fit: 'contain' })` does to images it only has to enlarge, in JavaScript.
 *
 * Why: at 100 -> 128 px any resize in sharp adds about 0.7 ms of fixed cost per call, several times
 * what the arithmetic costs here (docs/BENCHMARKS.md).
 *
 * What: for sharp's default kernel (lanczos3) libvips enlarges with its bicubic interpolator
 * (Catmull-Rom, a = -0.5: the same output as kernel 'cubic'), and maps output pixel X to input coordinate X / scale - 0.5, edges repeated.
 * This does the same, so its pixels are sharp's within rounding (mean difference 0.15 of a level
 * at 128 px, at most 3: test/lambdas/images/small-image-path.test.ts), and the features keep the
 * accuracy they were chosen at (bench/feature-choice.ts --preprocessing). A bilinear enlargement
 * with the half-pixel-centre convention of TensorFlow's and PyTorch's resize scored 0.958 instead of
 * 0.979 on the real Test split of the 12-class sample (docs/BENCHMARKS.md).
 */

/** The dataset's background: padding must look like it. */
const WHITE = 255;

/** Catmull-Rom: the cubic convolution kernel with a = -0.5, libvips' bicubic. */
function cubicWeight(distance: number): number {
  const t = Math.abs(distance);
  if (t < 1) return (1.5 * t - 2.5) * t * t + 1;
  if (t < 2) return ((-0.5 * t + 2.5) * t - 4) * t + 2;
  return 0;
}

/** Per output coordinate: the four source coordinates (edges repeated) and their weights. */
function taps(inLength: number, outLength: number): { index: Int32Array; weight: Float32Array } {
  const index = new Int32Array(outLength * 4);
  const weight = new Float32Array(outLength * 4);
  for (let o = 0; o < outLength; o++) {
    const source = o * (inLength / outLength) - 0.5;
    const first = Math.floor(source) - 1;
    for (let k = 0; k < 4; k++) {
      index[o * 4 + k] = Math.min(Math.max(first + k, 0), inLength - 1);
      weight[o * 4 + k] = cubicWeight(source - (first + k));
    }
  }
  return { index, weight };
}

/**
 * `rgb`: width x height x 3, neither side above `size`. Returns size x size x 3: the image scaled by
 * size / max(width, height), centred, the rest white.
 */
export function containBicubic(rgb: Uint8Array, width: number, height: number, size: number): Uint8Array {
  if (rgb.length !== width * height * 3) throw new Error(`raster holds ${rgb.length} bytes, expected ${width}x${height}x3`);
  const scale = size / Math.max(width, height);
  const outWidth = Math.max(1, Math.min(size, Math.round(width * scale)));
  const outHeight = Math.max(1, Math.min(size, Math.round(height * scale)));
  const left = Math.floor((size - outWidth) / 2);
  const top = Math.floor((size - outHeight) / 2);
  const columns = taps(width, outWidth);
  const rows = taps(height, outHeight);

  // Rows first, into floats (the cubic overshoots 0..255), then columns into bytes.
  const stride = outWidth * 3;
  const across = new Float32Array(height * stride);
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    let o = y * stride;
    for (let x = 0; x < outWidth; x++) {
      const t = x * 4;
      const p0 = row + columns.index[t] * 3;
      const p1 = row + columns.index[t + 1] * 3;
      const p2 = row + columns.index[t + 2] * 3;
      const p3 = row + columns.index[t + 3] * 3;
      const w0 = columns.weight[t];
      const w1 = columns.weight[t + 1];
      const w2 = columns.weight[t + 2];
      const w3 = columns.weight[t + 3];
      across[o++] = rgb[p0] * w0 + rgb[p1] * w1 + rgb[p2] * w2 + rgb[p3] * w3;
      across[o++] = rgb[p0 + 1] * w0 + rgb[p1 + 1] * w1 + rgb[p2 + 1] * w2 + rgb[p3 + 1] * w3;
      across[o++] = rgb[p0 + 2] * w0 + rgb[p1 + 2] * w1 + rgb[p2 + 2] * w2 + rgb[p3 + 2] * w3;
    }
  }
  // Clamped: rounds to nearest and keeps overshoot within 0..255.
  const out = new Uint8ClampedArray(size * size * 3).fill(WHITE);
  for (let y = 0; y < outHeight; y++) {
    const t = y * 4;
    const r0 = rows.index[t] * stride;
    const r1 = rows.index[t + 1] * stride;
    const r2 = rows.index[t + 2] * stride;
    const r3 = rows.index[t + 3] * stride;
    const w0 = rows.weight[t];
    const w1 = rows.weight[t + 1];
    const w2 = rows.weight[t + 2];
    const w3 = rows.weight[t + 3];
    const o = ((top + y) * size + left) * 3;
    for (let i = 0; i < stride; i++) out[o + i] = across[r0 + i] * w0 + across[r1 + i] * w1 + across[r2 + i] * w2 + across[r3 + i] * w3;
  }
  return new Uint8Array(out.buffer);
}
