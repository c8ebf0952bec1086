/**
 * Preprocessed RGB images -> one float32 feature vector each.
 *
 * Two featurizers share one interface:
 * - `cnn`: an ImageNet-pretrained CNN, activations of feature layer(s) averaged over space, side
 *   by side, power-normalised (power-normalisation.ts). The model directory says which kind of
 *   CNN: a `.tflite` file (the default, MobileNetV2 uint8, run by tflite/tflite-featurizer.ts on
 *   onnxruntime-node or TF.js) or a TF.js layers model (`model.json`, e.g. MobileNet v1 0.25);
 * - `pixels`: the original notebook's 16x16x3 raw pixels in [0, 1]. It is also the fallback when
 *   no CNN weights are present, with a warning the shard carries to the run report.
 *
 * Loading a model costs seconds, so featurizers are cached per configuration for the life of the
 * process (one Lambda container serves many batches).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { FEATURIZE_SETTINGS, type FeaturizeEnv } from '../contracts/handler-env';
import { defaultModelDir, hasLayersModel, readLayersModelArtifacts } from './model-loader';
import { PixelScaling, scalePixels } from '../images';
import { powerNormalise, powerSuffix } from './power-normalisation';
import { createTfliteFeaturizer, OnnxSessionFactory, TfliteRuntime, tfliteFeatureId, tfliteModelFile } from './tflite/tflite-featurizer';

export type FeaturizerKind = 'cnn' | 'pixels';
/**
 * `avg`: global average pool. `avg-max`: average and max pools side by side (2 x channels; layers
 * models only). `gem`: generalised mean, p = 3 (TFLite models only).
 */
export type Pooling = 'avg' | 'avg-max' | 'gem';

export interface FeaturizerConfig {
  readonly kind: FeaturizerKind;
  /** Model id (manifest key), e.g. `mobilenet_v1_0.25_224`. Only for `cnn`. */
  readonly modelId: string;
  /** Directory with model.json + shards. @default the cache directory of `modelId` */
  readonly modelDir?: string;
  /** Square input side the CNN runs at (weights do not depend on it). @default DEFAULT_IMAGE_SIZE */
  readonly imageSize?: number;
  /**
   * Layers whose spatially pooled activations, side by side, are the features.
   * @default DEFAULT_FEATURE_LAYERS
   */
  readonly featureLayers?: readonly string[];
  /** Exponent p of the power normalisation sign(a) |a|^p of the pooled features. @default DEFAULT_FEATURE_POWER */
  readonly power?: number;
  /** @default 'avg' */
  readonly pooling?: Pooling;
  /** @default 'minus-one-to-one' (MobileNet v1's training scaling) */
  readonly scaling?: PixelScaling;
  /** Images per inference call: bounds tensor memory. @default FEATURIZE_SETTINGS.inferBatchSize */
  readonly inferBatchSize?: number;
  /** Force a backend (`tensorflow`, `wasm`, `cpu`). @default the first that works */
  readonly backend?: string;
  /** TFLite models: `onnxruntime` or `tfjs`. @default onnxruntime when it loads, else tfjs */
  readonly runtime?: TfliteRuntime;
  /** TFLite models on onnxruntime: intra-op threads. @default FEATURIZE_SETTINGS.inferThreads */
  readonly inferThreads?: number;
}

export interface Featurizer {
  /** Names the features, e.g. `mobilenet_v1_0.25_224/conv_pw_13_relu/avg@224` or `pixels-16x16`. */
  readonly id: string;
  readonly kind: FeaturizerKind;
  readonly modelId: string | null;
  readonly dim: number;
  /** The side preprocessing must produce. */
  readonly imageSize: number;
  readonly backend: string;
  /** Faster backends that could not start here, with why (e.g. tfjs-node absent outside the image). */
  readonly backendsSkipped: readonly string[];
  /** Loud problems (a fallback) that belong in the shard meta and the run report. */
  readonly warnings: readonly string[];
  /** Set when the native runtime (onnxruntime-node) could not start and TF.js runs instead: why. */
  readonly runtimeFallback?: string;
  /** `images`: imageSize x imageSize x 3 uint8 RGB each. Returns count x dim, row-major. */
  featurize(images: readonly Uint8Array[]): Promise<Float32Array>;
}

/*
 * Product defaults, chosen with bench/feature-choice.ts (docs/BENCHMARKS.md has the tables), on
 * all 103 classes (fruits-360-103: Test drawn from the Training split) and on the 12-class sample
 * whose Test is the dataset's real Test split, clean and under field conditions (other
 * backgrounds, light, white balance, blur, rotation, crop): MobileNetV2 uint8, the middle block
 * `expanded_conv_12/add` (colour and texture) next to the last layer `Conv_1/Relu6` (object
 * shape, what holds when the background changes), average-pooled, power-normalised
 * (power-normalisation.ts), 128 px. Measured with the signed square root: 0.994 clean / 0.858
 * altered on 103 classes, 0.979 / 0.921 on the real Test split, about 2 ms of inference per image
 * on one core. MobileNet-EdgeTPU's best pair scored higher on
 * 103 classes (0.997) but lower on the real Test split (0.946) and costs 1.8x; middle layers alone
 * reach 0.998 clean and collapse to 0.75 altered.
 */
const DEFAULT_FEATURE_LAYERS: Readonly<Record<string, readonly string[]>> = {
  'mobilenet_v2_1.0_224_quant': ['expanded_conv_12/add', 'Conv_1/Relu6'],
  'mobilenet_edgetpu_224_1.0_uint8': ['expanded_conv_12/add', 'expanded_conv_20/add'],
  'mobilenet_v1_0.25_224': ['conv_pw_11_relu'],
  'mobilenet_v1_0.75_224': ['conv_pw_7_relu'],
};
/** The table's defaults (FEATURIZE_SETTINGS), for a configuration built without the environment. */
export const DEFAULT_IMAGE_SIZE = FEATURIZE_SETTINGS.imageSize.default;
const DEFAULT_FEATURE_POWER = FEATURIZE_SETTINGS.featurePower.default;
const DEFAULT_INFER_BATCH_SIZE = FEATURIZE_SETTINGS.inferBatchSize.default;
const PIXELS_SIZE = 16;
const PIXELS_ID = `pixels-${PIXELS_SIZE}x${PIXELS_SIZE}`;

/** The featurize handler's configuration from its parsed environment (lambdas/contracts/handler-env.ts). */
export function featurizerConfigFromEnv(env: FeaturizeEnv): FeaturizerConfig {
  return {
    kind: env.FEATURIZER,
    modelId: env.MODEL_ID,
    modelDir: env.MODEL_DIR,
    imageSize: env.IMAGE_SIZE,
    featureLayers: env.FEATURE_LAYER?.split(',')
      .map((name) => name.trim())
      .filter(Boolean),
    power: env.FEATURE_POWER,
    inferBatchSize: env.INFER_BATCH_SIZE,
    backend: env.TF_BACKEND,
    runtime: env.INFER_RUNTIME,
    inferThreads: env.INFER_THREADS,
  };
}

/**
 * The id the featurizer of `config` will have (`Featurizer.id`), found without loading the model:
 * the model directory says which kind (a TFLite file is hashed for its id, as the featurizer does),
 * and the same defaults apply. A run that projects with a saved model checks it against the
 * model's featurizer before it uploads anything.
 */
export function featurizerIdOf(config: FeaturizerConfig): string {
  if (config.kind === 'pixels') return PIXELS_ID;
  const modelDir = config.modelDir ?? defaultModelDir(config.modelId);
  const tflite = tfliteModelFile(modelDir);
  const options = { modelId: config.modelId, layers: featureLayersOf(config), pooling: config.pooling ?? 'avg', power: config.power ?? DEFAULT_FEATURE_POWER };
  if (tflite) {
    const { pooling } = options;
    if (pooling === 'avg-max') throw new Error('pooling avg-max is for TF.js layers models; TFLite models take avg or gem');
    const weights = createHash('sha256').update(readFileSync(tflite)).digest('hex');
    return tfliteFeatureId({ ...options, pooling, imageSize: config.imageSize ?? DEFAULT_IMAGE_SIZE }, weights);
  }
  // Without a model the featurizer falls back to raw pixels (createFeaturizer).
  if (!hasLayersModel(modelDir)) return PIXELS_ID;
  return layersFeatureId({ ...options, imageSize: config.imageSize ?? DEFAULT_IMAGE_SIZE });
}

/** `<modelId>/<layer>+<layer>/<pooling>[-sqrt|-pow<p>]@<size>`: a TF.js layers model's features. */
function layersFeatureId(options: { modelId: string; layers: readonly string[]; pooling: Pooling; power: number; imageSize: number }): string {
  return `${options.modelId}/${options.layers.join('+')}/${options.pooling}${powerSuffix(options.power)}@${options.imageSize}`;
}

/** Backends in order of speed; `tensorflow` (tfjs-node) only exists in the Lambda image. */
const BACKEND_ORDER = ['tensorflow', 'wasm', 'cpu'] as const;
export interface BackendChoice {
  readonly name: string;
  readonly skipped: readonly string[];
}
let backendReady: Promise<BackendChoice> | undefined;

/**
 * Pick and initialise the fastest available backend once per process (TF.js has one active
 * backend, so the first call's preference wins).
 */
export function initBackend(preferred?: string): Promise<BackendChoice> {
  backendReady ??= selectBackend(preferred).catch((error: unknown) => {
    backendReady = undefined;
    throw error;
  });
  return backendReady;
}

async function selectBackend(preferred?: string): Promise<BackendChoice> {
  const candidates = preferred ? [preferred] : [...BACKEND_ORDER];
  const failures: string[] = [];
  for (const name of candidates) {
    try {
      registerBackend(name);
      if (await tf.setBackend(name)) {
        await tf.ready();
        return { name: tf.getBackend(), skipped: failures };
      }
      failures.push(`${name}: setBackend returned false`);
    } catch (error) {
      failures.push(`${name}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    }
  }
  throw new Error(`no TensorFlow.js backend could start (${failures.join('; ')})`);
}

/* eslint-disable @typescript-eslint/no-require-imports -- backends load on demand: each import registers one */
function registerBackend(name: string): void {
  // Required lazily: tfjs-node is absent outside the image, and each import registers a backend.
  if (name === 'tensorflow') require('@tensorflow/tfjs-node');
  else if (name === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  else if (name === 'cpu') require('@tensorflow/tfjs-backend-cpu');
  else throw new Error(`unknown backend ${name}`);
}
/* eslint-enable @typescript-eslint/no-require-imports */

const cache = new Map<string, Promise<Featurizer>>();

/** The featurizer for `config`, created once per process. */
export function getFeaturizer(config: FeaturizerConfig): Promise<Featurizer> {
  const key = JSON.stringify(config);
  let featurizer = cache.get(key);
  if (!featurizer) {
    featurizer = createFeaturizer(config);
    // A failed load must not poison the cache: the next batch retries it.
    featurizer.catch(() => cache.delete(key));
    cache.set(key, featurizer);
  }
  return featurizer;
}

/** What starts the runtimes, replaceable in tests (a session factory that throws). */
export interface FeaturizerRuntimes {
  /** @default an onnxruntime-node session on its own thread, probed in a child process first */
  readonly startOnnxSession?: OnnxSessionFactory;
}

export async function createFeaturizer(config: FeaturizerConfig, runtimes: FeaturizerRuntimes = {}): Promise<Featurizer> {
  if (config.kind === 'pixels') return createPixelsFeaturizer([]);
  const modelDir = config.modelDir ?? defaultModelDir(config.modelId);
  const tflite = tfliteModelFile(modelDir);
  if (tflite) return createTfliteCnnFeaturizer(config, tflite, runtimes);
  if (!hasLayersModel(modelDir)) {
    return createPixelsFeaturizer([
      `FEATURIZER=cnn but no model at ${modelDir} (model ${config.modelId}): fell back to raw 16x16 pixels, ` +
        'expect much lower accuracy. Fetch it with `npx tsx tools/model/fetch-model.ts --model ' +
        config.modelId +
        '`.',
    ]);
  }
  return createCnnFeaturizer(config, modelDir);
}

function createPixelsFeaturizer(warnings: string[]): Featurizer {
  const dim = PIXELS_SIZE * PIXELS_SIZE * 3;
  return {
    id: PIXELS_ID,
    kind: 'pixels',
    modelId: null,
    dim,
    imageSize: PIXELS_SIZE,
    backend: 'none',
    backendsSkipped: [],
    warnings,
    async featurize(images) {
      const out = new Float32Array(images.length * dim);
      images.forEach((rgb, i) => {
        assertImage(rgb, PIXELS_SIZE);
        scalePixels(rgb, 'zero-to-one', out.subarray(i * dim, (i + 1) * dim));
      });
      return out;
    },
  };
}

/** The feature layers asked for, else the measured default of the model. */
export function featureLayersOf(config: Pick<FeaturizerConfig, 'modelId' | 'featureLayers'>): readonly string[] {
  if (config.featureLayers?.length) return config.featureLayers;
  const layers = DEFAULT_FEATURE_LAYERS[config.modelId];
  if (!layers) throw new Error(`model ${config.modelId} has no default feature layers: set FEATURE_LAYER (featureLayers in cdk.json)`);
  return layers;
}

async function createTfliteCnnFeaturizer(config: FeaturizerConfig, modelFile: string, runtimes: FeaturizerRuntimes): Promise<Featurizer> {
  const pooling = config.pooling ?? 'avg';
  if (pooling === 'avg-max') throw new Error('pooling avg-max is for TF.js layers models; TFLite models take avg or gem');
  const imageSize = config.imageSize ?? DEFAULT_IMAGE_SIZE;
  const featurizer = await createTfliteFeaturizer({
    modelId: config.modelId,
    modelFile,
    imageSize,
    layers: featureLayersOf(config),
    pooling,
    power: config.power ?? DEFAULT_FEATURE_POWER,
    inferBatchSize: config.inferBatchSize ?? DEFAULT_INFER_BATCH_SIZE,
    runtime: config.runtime,
    threads: config.inferThreads,
    startOnnxSession: runtimes.startOnnxSession,
    startTfjs: () => initBackend(config.backend),
  });
  return {
    id: featurizer.id,
    kind: 'cnn',
    modelId: config.modelId,
    dim: featurizer.dim,
    imageSize,
    backend: featurizer.runtime,
    backendsSkipped: featurizer.runtimesSkipped,
    // The features are the same within 1.5e-5 on either runtime; TF.js is 3-6x slower.
    warnings: featurizer.fallback
      ? [`the CNN runs on ${featurizer.runtime} instead of onnxruntime-node (same features, slower), which could not start: ${featurizer.fallback}`]
      : [],
    runtimeFallback: featurizer.fallback,
    featurize: async (images) => {
      images.forEach((rgb) => assertImage(rgb, imageSize));
      return featurizer.featurize(images);
    },
  };
}

async function createCnnFeaturizer(config: FeaturizerConfig, modelDir: string): Promise<Featurizer> {
  const { name: backend, skipped: backendsSkipped } = await initBackend(config.backend);
  const featureLayers = featureLayersOf(config);
  const power = config.power ?? DEFAULT_FEATURE_POWER;
  const pooling = config.pooling ?? 'avg';
  if (pooling === 'gem') throw new Error('pooling gem is for TFLite models; TF.js layers models take avg or avg-max');
  const scaling = config.scaling ?? 'minus-one-to-one';
  const batchSize = config.inferBatchSize ?? DEFAULT_INFER_BATCH_SIZE;

  const artifacts = readLayersModelArtifacts(modelDir, config.imageSize ?? DEFAULT_IMAGE_SIZE);
  const full = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
  const inputShape = full.inputs[0].shape;
  const imageSize = inputShape[1];
  if (inputShape.length !== 4 || imageSize === null || imageSize !== inputShape[2] || inputShape[3] !== 3) {
    throw new Error(`model ${config.modelId} takes input ${JSON.stringify(inputShape)}, expected [null, n, n, 3]`);
  }
  const outputs = featureLayers.map((name) => {
    try {
      return full.getLayer(name).output as tfl.SymbolicTensor;
    } catch {
      throw new Error(`model ${config.modelId} has no layer "${name}"`);
    }
  });
  const extractor = tfl.model({ inputs: full.inputs, outputs });
  const widths = extractor.outputs.map(({ shape }) =>
    shape.length === 4 ? (shape[3] as number) * (pooling === 'avg-max' ? 2 : 1) : shape.slice(1).reduce<number>((a, b) => a * (b ?? 1), 1),
  );
  const dim = widths.reduce((a, b) => a + b, 0);

  const pool = (maps: tf.Tensor): tf.Tensor2D => {
    if (maps.rank !== 4) return tf.reshape(maps, [maps.shape[0], -1]);
    const avg = tf.mean(maps, [1, 2]) as tf.Tensor2D;
    return pooling === 'avg-max' ? tf.concat([avg, tf.max(maps, [1, 2]) as tf.Tensor2D], 1) : avg;
  };

  const pixelsPerImage = imageSize * imageSize * 3;
  return {
    id: layersFeatureId({ modelId: config.modelId, layers: featureLayers, pooling, power, imageSize }),
    kind: 'cnn',
    modelId: config.modelId,
    dim,
    imageSize,
    backend,
    backendsSkipped,
    warnings: [],
    async featurize(images) {
      const out = new Float32Array(images.length * dim);
      for (let start = 0; start < images.length; start += batchSize) {
        const chunk = images.slice(start, start + batchSize);
        const input = new Float32Array(chunk.length * pixelsPerImage);
        chunk.forEach((rgb, i) => {
          assertImage(rgb, imageSize);
          scalePixels(rgb, scaling, input.subarray(i * pixelsPerImage, (i + 1) * pixelsPerImage));
        });
        const features = tf.tidy(() => {
          const maps = [extractor.predict(tf.tensor4d(input, [chunk.length, imageSize, imageSize, 3]))].flat() as tf.Tensor[];
          return maps.length === 1 ? pool(maps[0]) : tf.concat(maps.map(pool), 1);
        });
        try {
          out.set(powerNormalise(await features.data<'float32'>(), power), start * dim);
        } finally {
          features.dispose();
        }
      }
      return out;
    },
  };
}

function assertImage(rgb: Uint8Array, size: number): void {
  if (rgb.length !== size * size * 3) throw new Error(`image holds ${rgb.length} bytes, expected ${size}x${size}x3`);
}
