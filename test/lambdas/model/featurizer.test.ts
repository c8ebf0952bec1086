import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { createFeaturizer, Featurizer, featurizerConfigFromEnv, featurizerIdOf, getFeaturizer, initBackend } from '../../../lambdas/model/featurizer';
import { FeaturizeEnvSchema } from '../../../lambdas/contracts/handler-env';
import { preprocessImage } from '../../../lambdas/images/preprocess';
import { describeRequiring, SHARED_MODELS, SHARED_SAMPLE } from '../../support/required-files';

const SAMPLE = join(SHARED_SAMPLE, 'Test');
const MOBILENET = join(SHARED_MODELS, 'mobilenet_v1_0.25_224');

/** Save a layers model the way a converted model is stored: model.json + one weight file. */
async function saveLayersModel(model: tfl.LayersModel, dir: string): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      const parts = Array.isArray(data) ? data : [data as ArrayBuffer];
      writeFileSync(join(dir, 'weights.bin'), Buffer.concat(parts.map((part) => Buffer.from(part))));
      const modelJson = {
        format: 'layers-model',
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
      };
      writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJson));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}

async function rgbOf(bytes: Buffer, size: number): Promise<Uint8Array> {
  const result = await preprocessImage(bytes, { size, maxInputPixels: 1e7, maxInputBytes: 1e7 });
  if (!result.ok) throw new Error(result.reason);
  return result.rgb;
}

const distance = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((sum, v, i) => sum + (v - b[i]) ** 2, 0));
const row = (vectors: Float32Array, dim: number, i: number) => vectors.subarray(i * dim, (i + 1) * dim);

describe('cnn featurizer on a small model saved by the test (no shared files needed)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tiny-model-'));
    await initBackend(); // building the model needs a backend; loading it picks the same one
    const input = tfl.input({ shape: [32, 32, 3] });
    const conv = tfl.layers
      .conv2d({ filters: 6, kernelSize: 3, strides: 2, activation: 'relu', name: 'features', kernelInitializer: tfl.initializers.glorotUniform({ seed: 7 }) })
      .apply(input);
    const pooled = tfl.layers.globalAveragePooling2d({}).apply(conv);
    const output = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'classes' }).apply(pooled) as tfl.SymbolicTensor;
    await saveLayersModel(tfl.model({ inputs: input, outputs: output }), dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads through the disk IO handler, pools the feature layer, is deterministic', async () => {
    const featurizer = await createFeaturizer({ kind: 'cnn', modelId: 'tiny', modelDir: dir, featureLayers: ['features'], imageSize: 32, inferBatchSize: 2 });
    expect(featurizer).toMatchObject({ kind: 'cnn', dim: 6, imageSize: 32, modelId: 'tiny', warnings: [] });
    expect(['wasm', 'cpu']).toContain(featurizer.backend);
    // tfjs-node exists only in the Lambda image: here it is tried first and reported as skipped.
    expect(featurizer.backendsSkipped[0]).toMatch(/^tensorflow: /);
    const images = [0, 80, 160, 240, 80].map((v) => new Uint8Array(32 * 32 * 3).map((_, i) => (v + i) % 256));
    const vectors = await featurizer.featurize(images);
    expect(vectors).toHaveLength(5 * 6);
    // Same image, different batches of the same call and a second call: identical vectors.
    expect(Array.from(row(vectors, 6, 4))).toEqual(Array.from(row(vectors, 6, 1)));
    expect(Array.from(await featurizer.featurize([images[1]]))).toEqual(Array.from(row(vectors, 6, 1)));
    expect(distance(row(vectors, 6, 0), row(vectors, 6, 2))).toBeGreaterThan(0);
  });

  it('runs at another input size (weights unchanged)', async () => {
    const featurizer = await createFeaturizer({ kind: 'cnn', modelId: 'tiny', modelDir: dir, featureLayers: ['features'], imageSize: 48 });
    expect([featurizer.imageSize, featurizer.dim]).toEqual([48, 6]);
    expect(await featurizer.featurize([new Uint8Array(48 * 48 * 3).fill(200)])).toHaveLength(6);
  });

  it('names a missing feature layer', async () => {
    await expect(createFeaturizer({ kind: 'cnn', modelId: 'tiny', modelDir: dir, featureLayers: ['nope'] })).rejects.toThrow(/no layer "nope"/);
  });

  it('knows its id before loading the model (featurizerIdOf)', async () => {
    const config = { kind: 'cnn' as const, modelId: 'tiny', modelDir: dir, featureLayers: ['features'], imageSize: 32 };
    expect(featurizerIdOf(config)).toBe((await createFeaturizer(config)).id);
  });

  it('refuses images of the wrong size', async () => {
    const featurizer = await getFeaturizer({ kind: 'cnn', modelId: 'tiny', modelDir: dir, featureLayers: ['features'], imageSize: 32 });
    await expect(featurizer.featurize([new Uint8Array(10)])).rejects.toThrow(/expected 32x32x3/);
  });
});

describe('featurizer id before loading (featurizerIdOf)', () => {
  it('is the id the featurizer gets: the shipped TFLite default (its file hashed), pixels, the pixels fallback', async () => {
    const env = (values: Record<string, string>) => featurizerConfigFromEnv(FeaturizeEnvSchema.parse(values));
    const shipped = env({ MODEL_DIR: join(__dirname, '..', '..', '..', 'layers', 'model-weights', 'mobilenet_v2_1.0_224_quant') });
    expect(featurizerIdOf(shipped)).toBe('mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg-pow0.25@128');
    expect(featurizerIdOf(shipped)).toBe((await createFeaturizer(shipped)).id);
    expect(featurizerIdOf({ ...shipped, imageSize: 96 })).toBe('mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg-pow0.25@96');
    // The square root keeps the name its features have always had: models saved with them still match.
    expect(featurizerIdOf({ ...shipped, power: 0.5 })).toBe('mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg-sqrt@128');
    expect(featurizerIdOf(env({ MODEL_DIR: shipped.modelDir!, FEATURE_POWER: '1' }))).toBe(
      'mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg@128',
    );
    expect(featurizerIdOf(env({ FEATURIZER: 'pixels' }))).toBe('pixels-16x16');
    const missing = env({ MODEL_DIR: join(tmpdir(), 'no-such-model-dir') });
    expect(featurizerIdOf(missing)).toBe((await createFeaturizer(missing)).id);
  });
});

describe('pixels featurizer', () => {
  it('is 16x16x3 raw pixels in [0, 1]', async () => {
    const featurizer = await createFeaturizer({ kind: 'pixels', modelId: 'unused' });
    expect(featurizer).toMatchObject({ id: 'pixels-16x16', dim: 768, imageSize: 16, warnings: [] });
    const vectors = await featurizer.featurize([new Uint8Array(768).fill(255), new Uint8Array(768)]);
    expect([vectors[0], vectors[767], vectors[768]]).toEqual([1, 1, 0]);
  });

  it('is the loud fallback when the CNN weights are missing', async () => {
    const featurizer = await createFeaturizer({ kind: 'cnn', modelId: 'mobilenet_v1_0.25_224', modelDir: join(tmpdir(), 'no-such-model-dir') });
    expect(featurizer.id).toBe('pixels-16x16');
    expect(featurizer.warnings.join()).toMatch(/no model at .*no-such-model-dir.*fell back to raw 16x16 pixels/);
  });
});

const withMobileNet = describeRequiring('the pretrained MobileNet v1 0.25 checks on real Fruits-360 photos', [SAMPLE, join(MOBILENET, 'model.json')]);

withMobileNet('pretrained MobileNet v1 0.25 on real Fruits-360 photos (needs ../shared)', () => {
  let featurizer: Featurizer;
  const photo = (label: string, index: number) => {
    const dir = join(SAMPLE, label);
    return readFileSync(join(dir, readdirSync(dir).sort()[index]));
  };

  beforeAll(async () => {
    featurizer = await getFeaturizer({ kind: 'cnn', modelId: 'mobilenet_v1_0.25_224', modelDir: MOBILENET });
  });

  it('gives vectors of the documented length', async () => {
    expect(featurizer.id).toBe('mobilenet_v1_0.25_224/conv_pw_11_relu/avg-pow0.25@128');
    expect([featurizer.dim, featurizer.imageSize]).toEqual([128, 128]);
    const lastBlock = await createFeaturizer({
      kind: 'cnn',
      modelId: 'mobilenet_v1_0.25_224',
      modelDir: MOBILENET,
      featureLayers: ['conv_pw_13_relu'],
      imageSize: 224,
      power: 1,
    });
    expect([lastBlock.id, lastBlock.dim]).toEqual(['mobilenet_v1_0.25_224/conv_pw_13_relu/avg@224', 256]);
    const both = await createFeaturizer({
      kind: 'cnn',
      modelId: 'mobilenet_v1_0.25_224',
      modelDir: MOBILENET,
      featureLayers: ['conv_pw_11_relu', 'conv_pw_13_relu'],
    });
    expect(both.dim).toBe(128 + 256);
  });

  it('is deterministic and puts same-fruit photos closer than different fruit', async () => {
    const images = await Promise.all([photo('Kiwi', 0), photo('Kiwi', 5), photo('Banana', 0), photo('Kiwi', 0)].map((b) => rgbOf(b, featurizer.imageSize)));
    const v = await featurizer.featurize(images);
    const [kiwiA, kiwiB, banana, kiwiAAgain] = [0, 1, 2, 3].map((i) => row(v, featurizer.dim, i));
    expect(Array.from(kiwiAAgain)).toEqual(Array.from(kiwiA));
    expect(v.every(Number.isFinite)).toBe(true);
    expect(distance(kiwiA, kiwiB)).toBeLessThan(distance(kiwiA, banana));
  });
});
