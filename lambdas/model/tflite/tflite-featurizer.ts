/**
 * A TFLite CNN (the uint8 MobileNet-EdgeTPU or MobileNetV2 files, read by tflite-model.ts) as a
 * featurizer: the activations of one or more tensors, each pooled over space, side by side, then
 * power-normalised (../power-normalisation.ts).
 *
 * Runtime: onnxruntime-node when it loads (native CPU kernels, 3-6x faster than TF.js wasm here:
 * bench/tflite-runtimes.ts), else the TF.js executor on the active TF.js backend (tfjs-node, wasm,
 * cpu). Both run the same dequantised float32 plan (tflite-graph.ts): pooled activations agree
 * within 1e-4, features after the default fourth root within 1e-2, after a square root within 2e-3
 * (test/lambdas/model/tflite/tflite-onnx.test.ts), so the runtime is not part of the feature id;
 * the weights' hash is.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { concatFloat32 } from '../../common';
import { FEATURIZE_SETTINGS } from '../../contracts/handler-env';
import { pooledWidths } from './tflite-graph';
import { parseTfliteModel, TfliteModel } from './tflite-model';
import { createTfliteFeatureExtractor, GlobalPooling } from './tflite-executor';
import { OnnxWorkerSession, OnnxWorkerSessionOptions } from './onnx-worker-session';
import { ONNX_INPUT, ONNX_OUTPUT, tfliteToOnnx, toNchwPixels } from './tflite-onnx';
import { powerNormalise, powerSuffix } from '../power-normalisation';

export type TfliteRuntime = 'onnxruntime' | 'tfjs';

/** Starts an onnxruntime session on the converted model (tests inject one that fails). */
export type OnnxSessionFactory = (model: Uint8Array, options: OnnxWorkerSessionOptions) => Promise<Pick<OnnxWorkerSession, 'run'>>;

export interface TfliteFeaturizerOptions {
  readonly modelId: string;
  readonly modelFile: string;
  readonly imageSize: number;
  readonly layers: readonly string[];
  readonly pooling: GlobalPooling;
  /** Exponent of the power normalisation of the pooled features (power-normalisation.ts). */
  readonly power: number;
  readonly inferBatchSize: number;
  /** @default onnxruntime when it loads, else tfjs */
  readonly runtime?: TfliteRuntime;
  /** onnxruntime's intra-op threads. @default 1 (the local run has one worker per core) */
  readonly threads?: number;
  /** @default OnnxWorkerSession.create, after the session survived a probe in a child process */
  readonly startOnnxSession?: OnnxSessionFactory;
  /** Starts the TF.js backend when the TF.js executor runs; returns its name. */
  readonly startTfjs: () => Promise<{ name: string; skipped: readonly string[] }>;
}

export interface TfliteFeaturizer {
  readonly id: string;
  readonly dim: number;
  readonly runtime: string;
  readonly runtimesSkipped: readonly string[];
  /** Set when onnxruntime-node was wanted (runtime unset) but could not start, so TF.js runs: why. */
  readonly fallback?: string;
  featurize(images: readonly Uint8Array[]): Promise<Float32Array>;
}

/** The one `.tflite` file of a model directory, or undefined. */
export function tfliteModelFile(dir: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.tflite'));
  } catch {
    return undefined;
  }
  if (names.length > 1) throw new Error(`${dir} holds ${names.length} .tflite files (${names.join(', ')}): expected one`);
  return names.length === 1 ? join(dir, names[0]) : undefined;
}

/**
 * `<modelId>@<first 8 hex of the file's SHA-256>/<layer>+<layer>/<pooling>[-sqrt|-pow<p>]@<size>`:
 * everything that shapes the vectors, so shards of different features are never mixed in one PCA.
 */
export function tfliteFeatureId(
  options: Pick<TfliteFeaturizerOptions, 'modelId' | 'layers' | 'pooling' | 'power' | 'imageSize'>,
  weightsSha256: string,
): string {
  return `${options.modelId}@${weightsSha256.slice(0, 8)}/${options.layers.join('+')}/${options.pooling}${powerSuffix(options.power)}@${options.imageSize}`;
}

export async function createTfliteFeaturizer(options: TfliteFeaturizerOptions): Promise<TfliteFeaturizer> {
  const bytes = readFileSync(options.modelFile);
  const model = parseTfliteModel(bytes);
  const id = tfliteFeatureId(options, createHash('sha256').update(bytes).digest('hex'));
  const taps = options.layers.map((tensor) => ({ tensor, pooling: options.pooling }));
  const skipped: string[] = [];
  let run: ((images: readonly Uint8Array[]) => Promise<Float32Array>) | undefined;
  let runtime = '';
  let dim = 0;
  let fallback: string | undefined;

  if (options.runtime !== 'tfjs') {
    try {
      ({ run, dim } = await onnxRuntime(model, taps, options));
      const threads = options.threads ?? FEATURIZE_SETTINGS.inferThreads.default;
      runtime = `onnxruntime-node (cpu, ${threads} thread${threads > 1 ? 's' : ''})`;
    } catch (error) {
      if (options.runtime === 'onnxruntime') throw error;
      fallback = `onnxruntime-node: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
      skipped.push(fallback);
    }
  }
  if (!run) {
    const backend = await options.startTfjs();
    skipped.push(...backend.skipped);
    const extractor = createTfliteFeatureExtractor(model, { taps, imageSize: options.imageSize, batchSize: options.inferBatchSize });
    run = (images) => extractor.extract(images);
    dim = extractor.dim;
    runtime = `tfjs-${backend.name}`;
  }
  const extract = run;
  return {
    id,
    dim,
    runtime,
    runtimesSkipped: skipped,
    fallback,
    async featurize(images) {
      return powerNormalise(await extract(images), options.power);
    },
  };
}

async function onnxRuntime(
  model: TfliteModel,
  taps: readonly { tensor: string; pooling: GlobalPooling }[],
  options: TfliteFeaturizerOptions,
): Promise<{ run: (images: readonly Uint8Array[]) => Promise<Float32Array>; dim: number }> {
  const size = options.imageSize;
  // On its own thread: onnxruntime-node's run holds the calling thread (onnx-worker-session.ts);
  // probed in a child process first, where a native abort cannot end this one.
  const startSession = options.startOnnxSession ?? ((onnx, sessionOptions) => OnnxWorkerSession.create(onnx, sessionOptions));
  const session = await startSession(tfliteToOnnx(model, { taps }), {
    intraOpNumThreads: options.threads ?? FEATURIZE_SETTINGS.inferThreads.default,
    inputName: ONNX_INPUT,
    outputName: ONNX_OUTPUT,
    probeInputDims: [1, 3, size, size],
  });
  const run = async (images: readonly Uint8Array[]) => {
    const parts: Float32Array[] = [];
    for (let start = 0; start < images.length; start += options.inferBatchSize) {
      const chunk = images.slice(start, start + options.inferBatchSize);
      parts.push(await session.run(toNchwPixels(chunk, size), [chunk.length, 3, size, size]));
    }
    return concatFloat32(parts);
  };
  return {
    run,
    dim: pooledWidths(
      model,
      taps.map((tap) => tap.tensor),
      size,
    ).reduce((a, b) => a + b, 0),
  };
}
