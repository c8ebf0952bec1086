/**
 * Spatially weighted pooling against the product's global average, through the product's default
 * head. Each variant pools the same two MobileNetV2 maps (the default layers, 8x8 and 4x4 cells
 * at 128 px) with its own weights over the cells; its features are cached as
 * bench/classifier-features.ts caches the product's (in `<cache>-pooling-<variant>`), then scored by
 * `bench/classifier-tuning.ts --heads --only "the default"` on them, in a child process.
 *
 *   npx tsx bench/pooling-choice.ts                 # every variant (~10 min each on 2 cores)
 *   npx tsx bench/pooling-choice.ts --only centre   # the variants whose name matches
 *
 * The idea measured: a harvesting robot centres the fruit, so weighting the centre (or the cells
 * the last layer finds most active) could pool less of a new background. `average` is the
 * product's pooling, computed this way; it reproduces the product's features exactly.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DEFAULT_MODEL_ID } from '../lambdas/contracts/handler-env';
import { DEFAULT_IMAGE_SIZE, featureLayersOf } from '../lambdas/model/featurizer';
import { defaultModelDir } from '../lambdas/model/model-loader';
import { powerNormalise } from '../lambdas/model/power-normalisation';
import { tfliteModelFile } from '../lambdas/model/tflite/tflite-featurizer';
import { parseTfliteModel } from '../lambdas/model/tflite/tflite-model';
import { ONNX_INPUT, ONNX_OUTPUT, tfliteToOnnx, toNchwPixels } from '../lambdas/model/tflite/tflite-onnx';
import { argValue } from './bench-support';
import { CACHED_FEATURE_POWER, datasetFeatures, FEATURE_CACHE, FeatureSource } from './classifier-features';

/** One feature map of a batch, NHWC. */
interface FeatureMap {
  readonly data: Float32Array;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
}

/** A pooling: the weights of one image's cells in each map (each map's weights sum to 1). */
type CellWeights = (maps: readonly FeatureMap[], image: number) => Float32Array[];

const uniformCells = (map: FeatureMap) => new Float32Array(map.height * map.width).fill(1 / (map.height * map.width));

/** Normal weights around the map's centre, sigma in units of the half side (cell centres span -1..1). */
function centreCells(map: FeatureMap, sigma: number): Float32Array {
  const weights = new Float32Array(map.height * map.width);
  for (let y = 0; y < map.height; y++) {
    for (let x = 0; x < map.width; x++) {
      const cy = ((y + 0.5) / map.height) * 2 - 1;
      const cx = ((x + 0.5) / map.width) * 2 - 1;
      weights[y * map.width + x] = Math.exp(-(cx * cx + cy * cy) / (2 * sigma * sigma));
    }
  }
  return normalised(weights);
}

function normalised(weights: Float32Array): Float32Array {
  const sum = weights.reduce((a, b) => a + b, 0);
  return sum > 0 ? weights.map((w) => w / sum) : weights.fill(1 / weights.length);
}

/** Each cell weighted by the last map's summed activation over the cell it lies in. */
const attentionCells: CellWeights = (maps, image) => {
  const last = maps[maps.length - 1];
  const cells = last.height * last.width;
  const activity = new Float32Array(cells);
  for (let p = 0; p < cells; p++) {
    const base = (image * cells + p) * last.channels;
    for (let c = 0; c < last.channels; c++) activity[p] += last.data[base + c];
  }
  return maps.map((map) => {
    const weights = new Float32Array(map.height * map.width);
    for (let y = 0; y < map.height; y++) {
      for (let x = 0; x < map.width; x++) {
        const ly = Math.floor((y * last.height) / map.height);
        const lx = Math.floor((x * last.width) / map.width);
        weights[y * map.width + x] = activity[ly * last.width + lx];
      }
    }
    return normalised(weights);
  });
};

const VARIANTS: Record<string, CellWeights> = {
  average: (maps) => maps.map(uniformCells),
  'centre, sigma 0.5': (maps) => maps.map((map) => centreCells(map, 0.5)),
  'centre, sigma 0.35': (maps) => maps.map((map) => centreCells(map, 0.35)),
  'centre 0.5 on the middle layer, the last averaged': (maps) => [centreCells(maps[0], 0.5), uniformCells(maps[1])],
  'attention, the last layer activity': attentionCells,
};

function pooledRows(maps: readonly FeatureMap[], images: number, weigh: CellWeights): Float32Array {
  const dim = maps.reduce((sum, map) => sum + map.channels, 0);
  const rows = new Float32Array(images * dim);
  for (let image = 0; image < images; image++) {
    const weights = weigh(maps, image);
    let offset = image * dim;
    maps.forEach((map, m) => {
      const cells = map.height * map.width;
      for (let p = 0; p < cells; p++) {
        const base = (image * cells + p) * map.channels;
        for (let c = 0; c < map.channels; c++) rows[offset + c] += weights[m][p] * map.data[base + c];
      }
      offset += map.channels;
    });
  }
  return powerNormalise(rows, CACHED_FEATURE_POWER);
}

/** The default layers' maps, unpooled, one onnxruntime session each, pooled by `weigh`. */
async function pooledFeatures(weigh: CellWeights): Promise<FeatureSource> {
  const modelFile = tfliteModelFile(defaultModelDir(DEFAULT_MODEL_ID));
  if (!modelFile) throw new Error(`no .tflite file for ${DEFAULT_MODEL_ID}`);
  const model = parseTfliteModel(readFileSync(modelFile));
  const layers = featureLayersOf({ modelId: DEFAULT_MODEL_ID });
  const sessions = await Promise.all(
    layers.map((output) => ort.InferenceSession.create(tfliteToOnnx(model, { output, pooling: 'none' }), { intraOpNumThreads: 2 })),
  );
  const size = DEFAULT_IMAGE_SIZE;
  let dim = 0;
  const featurize = async (images: readonly Uint8Array[]) => {
    const input = new ort.Tensor('float32', toNchwPixels(images, size), [images.length, 3, size, size]);
    const maps: FeatureMap[] = [];
    for (const session of sessions) {
      const out = (await session.run({ [ONNX_INPUT]: input }))[ONNX_OUTPUT];
      const [, height, width, channels] = out.dims as number[];
      maps.push({ data: out.data as Float32Array, height, width, channels });
    }
    dim = maps.reduce((sum, map) => sum + map.channels, 0);
    return pooledRows(maps, images.length, weigh);
  };
  await featurize([new Uint8Array(size * size * 3)]);
  return { dim, imageSize: size, featurize };
}

async function main(): Promise<void> {
  const only = argValue(process.argv, 'only');
  const shared = join(__dirname, '..', '..', 'shared', 'datasets');
  for (const [name, weigh] of Object.entries(VARIANTS)) {
    if (only && !name.includes(only)) continue;
    const cache = `${FEATURE_CACHE}-pooling-${name.replace(/[^a-z0-9.]+/gi, '-')}`;
    console.log(`\n## ${name} (${cache})`);
    let source: Promise<FeatureSource> | undefined;
    const options = { cache, source: () => (source ??= pooledFeatures(weigh)) };
    await datasetFeatures(join(shared, 'fruits-360-sample'), 'sample', { alterTraining: true, ...options });
    await datasetFeatures(join(shared, 'fruits-360-103'), 'f103', options);
    const scored = spawnSync(process.execPath, [...process.execArgv, join(__dirname, 'classifier-tuning.ts'), '--heads', '--only', 'the default'], {
      env: { ...process.env, CLASSIFIER_FEATURES: cache },
      stdio: 'inherit',
    });
    if (scored.status !== 0) throw new Error(`classifier-tuning on ${name} exited ${scored.status}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
