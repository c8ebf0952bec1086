/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 *
 * tools/tflite-to-onnx.ts on the two real ImageNet models in ../shared/models: ONNX Runtime's
 * pooled features and probabilities match the TF.js executor's within 1e-4 on real Fruits-360
 * images (both run the same dequantised float32 graph; the difference is float summation order).
 *
 * Needs ../shared (models and the Fruits-360 sample); skipped, saying so, where it is absent.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { initBackend } from '../../../../lambdas/model/featurizer';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS, preprocessImage } from '../../../../lambdas/images/preprocess';
import { parseTfliteModel } from '../../../../lambdas/model/tflite/tflite-model';
import { createTfliteFeatureExtractor } from '../../../../lambdas/model/tflite/tflite-executor';
import { ONNX_INPUT, ONNX_OUTPUT, OnnxPooling, tfliteToOnnx, toNchwPixels } from '../../../../lambdas/model/tflite/tflite-onnx';

const SHARED = resolve(__dirname, '..', '..', '..', '..', '..', 'shared');
const SAMPLE_TEST = join(SHARED, 'datasets', 'fruits-360-sample', 'Test');
const MODEL_FILES = {
  edgetpu: join(SHARED, 'models', 'mobilenet_edgetpu_224_1.0_uint8', 'mobilenet_edgetpu_224_1.0_uint8.tflite'),
  v2: join(SHARED, 'models', 'mobilenet_v2_1.0_224_quant', 'mobilenet_v2_1.0_224_quant.tflite'),
};
const present = [...Object.values(MODEL_FILES), SAMPLE_TEST].every(existsSync);

/** The first two Test images of every fruit in the sample (24 images). */
async function sampleImages(size: number): Promise<Uint8Array[]> {
  const images: Uint8Array[] = [];
  for (const fruit of readdirSync(SAMPLE_TEST).sort()) {
    for (const file of readdirSync(join(SAMPLE_TEST, fruit)).sort().slice(0, 2)) {
      const result = await preprocessImage(readFileSync(join(SAMPLE_TEST, fruit, file)), {
        size,
        maxInputPixels: DEFAULT_MAX_INPUT_PIXELS,
        maxInputBytes: DEFAULT_MAX_INPUT_BYTES,
      });
      if (!result.ok) throw new Error(`${fruit}/${file}: ${result.reason}`);
      images.push(result.rgb);
    }
  }
  return images;
}

if (!present) {
  describe('TFLite -> ONNX (real weights)', () => {
    it.skip(`needs ${MODEL_FILES.edgetpu}, ${MODEL_FILES.v2} and ${SAMPLE_TEST}: absent here, so the ONNX parity checks did not run`, () => {});
  });
} else {
  describe('TFLite -> ONNX (real weights): ONNX Runtime vs the TF.js executor (wasm)', () => {
    beforeAll(async () => {
      await initBackend('wasm');
    });

    const cases: [keyof typeof MODEL_FILES, string, OnnxPooling, number][] = [];
    for (const key of Object.keys(MODEL_FILES) as (keyof typeof MODEL_FILES)[]) {
      cases.push([key, 'expanded_conv_12/add', 'avg', 128], [key, 'expanded_conv_12/add', 'gem', 128], [key, 'model output', 'none', 224]);
    }

    it.each(cases)('%s %s (pooling %s) at %i px: max |difference| < 1e-4 on 24 images', async (key, tensor, pooling, size) => {
      const model = parseTfliteModel(readFileSync(MODEL_FILES[key]));
      const output = tensor === 'model output' ? undefined : tensor;
      const images = await sampleImages(size);
      const session = await ort.InferenceSession.create(tfliteToOnnx(model, { output, pooling }), { intraOpNumThreads: 1 });
      const result = await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', toNchwPixels(images, size), [images.length, 3, size, size]) });
      await session.release();
      const fromOnnx = result[ONNX_OUTPUT].data as Float32Array;

      const extractor = createTfliteFeatureExtractor(model, { output, imageSize: size, pooling: pooling === 'none' ? 'avg' : pooling });
      const fromTfjs = await extractor.extract(images);
      extractor.dispose();

      expect(result[ONNX_OUTPUT].dims).toEqual([images.length, extractor.dim]);
      const worst = fromTfjs.reduce((max, v, i) => Math.max(max, Math.abs(v - fromOnnx[i])), 0);
      console.log(`${key} ${tensor} ${pooling}@${size}: max |onnx - tfjs| = ${worst.toExponential(2)} over ${fromTfjs.length} floats`);
      expect(worst).toBeLessThan(1e-4);
    });

    it('taps: two layers of one pass, pooled and side by side, match the TF.js executor within 1e-4', async () => {
      const model = parseTfliteModel(readFileSync(MODEL_FILES.edgetpu));
      const taps = [
        { tensor: 'expanded_conv_12/add', pooling: 'avg' as const },
        { tensor: 'expanded_conv_16/add', pooling: 'gem' as const },
      ];
      const images = await sampleImages(128);
      const session = await ort.InferenceSession.create(tfliteToOnnx(model, { taps }), { intraOpNumThreads: 1 });
      const result = await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', toNchwPixels(images, 128), [images.length, 3, 128, 128]) });
      await session.release();
      const extractor = createTfliteFeatureExtractor(model, { taps, imageSize: 128 });
      const fromTfjs = await extractor.extract(images);
      extractor.dispose();
      expect(extractor.dim).toBe(96 + 96);
      expect(result[ONNX_OUTPUT].dims).toEqual([images.length, 192]);
      const fromOnnx = result[ONNX_OUTPUT].data as Float32Array;
      expect(fromTfjs.reduce((max, v, i) => Math.max(max, Math.abs(v - fromOnnx[i])), 0)).toBeLessThan(1e-4);
    });
  });
}
