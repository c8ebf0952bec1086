/**
 * Load a TF.js layers model (model.json + weight shards) from a directory, optionally at another
 * square input size than it was saved with.
 *
 * tfjs-node's `file://` loader is not available on the wasm/cpu backends, so this is a small IO
 * handler that reads the files itself. Changing the input size only rewrites the input layer's
 * shape in the topology: convolution weights do not depend on it, and a global pool after the
 * feature layer makes the output length independent of it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';
import type * as tfjs from '@tensorflow/tfjs-core';

const MODEL_JSON = 'model.json';

/** Where fetched models live: shared by the featurizer and `fetch-model`. */
export function defaultModelCacheDir(modelId: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'fruits-pipeline', 'models', modelId);
}

/** The repository's own copy of a model that ships with the project (`layers/model-weights/<id>/`). */
export function shippedModelDir(modelId: string): string {
  return resolve(__dirname, '..', '..', 'layers', 'model-weights', modelId);
}

/**
 * Where a model is looked for when MODEL_DIR is not set: the repository's copy when the model ships
 * with the project (the default does, so a clone runs the CNN offline), else the fetch cache.
 */
export function defaultModelDir(modelId: string, env: NodeJS.ProcessEnv = process.env): string {
  const shipped = shippedModelDir(modelId);
  return existsSync(shipped) ? shipped : defaultModelCacheDir(modelId, env);
}

export function hasLayersModel(dir: string): boolean {
  return existsSync(join(dir, MODEL_JSON));
}

/** A model the featurizer can load: a TF.js layers model or a `.tflite` file. */
export function hasModel(dir: string): boolean {
  if (hasLayersModel(dir)) return true;
  try {
    return readdirSync(dir).some((name) => name.endsWith('.tflite'));
  } catch {
    return false;
  }
}

interface WeightsGroup {
  paths: string[];
  weights: tfjs.io.WeightsManifestEntry[];
}
interface ModelJson {
  modelTopology: Record<string, unknown>;
  weightsManifest: WeightsGroup[];
  format?: string;
}

/**
 * Read model.json and its weight shards into ModelArtifacts, with the input size replaced when
 * `inputSize` is given.
 */
export function readLayersModelArtifacts(dir: string, inputSize?: number): tfjs.io.ModelArtifacts {
  const modelJson = JSON.parse(readFileSync(join(dir, MODEL_JSON), 'utf8')) as ModelJson;
  if (!modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) {
    throw new Error(`${join(dir, MODEL_JSON)} is not a TF.js layers model (no modelTopology/weightsManifest)`);
  }
  const topology = inputSize === undefined ? modelJson.modelTopology : withInputSize(modelJson.modelTopology, inputSize);
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const shards = modelJson.weightsManifest.flatMap((group) => group.paths).map((path) => readFileSync(shardPath(dir, path)));
  const weightData = new Uint8Array(shards.reduce((total, shard) => total + shard.length, 0));
  let offset = 0;
  for (const shard of shards) {
    weightData.set(shard, offset);
    offset += shard.length;
  }
  return { modelTopology: topology, weightSpecs, weightData: weightData.buffer, format: modelJson.format };
}

/** A weight path from model.json must stay inside the model directory. */
function shardPath(dir: string, path: string): string {
  const relative = normalize(path);
  if (isAbsolute(relative) || relative.startsWith('..' + sep) || relative === '..') {
    throw new Error(`weight shard path escapes the model directory: ${path}`);
  }
  return join(dir, relative);
}

/**
 * Copy of a Keras topology with the batch input shape of its input layer set to
 * [null, size, size, channels]. Handles converted Keras models (`model_config`) and models saved
 * by tfjs-layers itself (Sequential or functional).
 */
/** The part of a Keras topology that holds the input shape: a model's layers, or a Sequential's list. */
interface KerasLayer {
  config?: { batch_input_shape?: unknown[] };
}
interface KerasModelConfig {
  config?: { layers?: KerasLayer[] } | KerasLayer[];
}

function withInputSize(topology: Record<string, unknown>, size: number): Record<string, unknown> {
  // A JSON round trip, not structuredClone: under jest the latter yields objects of another realm.
  const copy = JSON.parse(JSON.stringify(topology)) as KerasModelConfig & { model_config?: KerasModelConfig };
  const config = (copy.model_config ?? copy).config;
  const layers = Array.isArray(config) ? config : config?.layers;
  const inputLayer = layers?.find((layer) => Array.isArray(layer?.config?.batch_input_shape));
  const shape = inputLayer?.config?.batch_input_shape;
  if (!inputLayer?.config || !shape || shape.length !== 4) throw new Error('cannot change the input size: no 4-D batch_input_shape in the model topology');
  inputLayer.config.batch_input_shape = [null, size, size, shape[3]];
  return copy as Record<string, unknown>;
}
