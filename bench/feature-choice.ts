/**
 * How the default features were chosen: on all 103 Fruits-360 classes (`fruits-360-103`: 60
 * Training references and 30 Test queries per class), never on the 12-class sample.
 *
 *   npx tsx bench/feature-choice.ts              # the whole table (~30 min on 2 cores)
 *   npx tsx bench/feature-choice.ts --quick      # 10 classes: a smoke run (~4 min)
 *   npx tsx bench/feature-choice.ts --sizes 128,160,224
 *   npx tsx bench/feature-choice.ts --baselines  # only raw pixels and the previous default
 *   npx tsx bench/feature-choice.ts --dataset ../shared/datasets/fruits-360-sample   # its Test is the real Test split
 *   npx tsx bench/feature-choice.ts --preprocessing   # the default features from each way of resizing
 *
 * For every candidate (weights x layer(s) x input size x pooling x normalisation x PCA k) it
 * prints the 5-NN accuracy after StandardScaler + PCA, the way a run computes it:
 * - clean: Training and Test as photographed (white background, studio light);
 * - field: Training clean, each Test image altered by one field condition in turn (other
 *   background, lighting, white balance, blur, rotation, crop, all at once: see
 *   evaluate/field-conditions.ts), and the accuracy per condition;
 * - the inference cost per image up to the deepest layer used (onnxruntime-node, 1 thread,
 *   batch 32, this machine), and the feature dimension.
 * Each (model, size) is preprocessed once with the product's preprocessing and run once, all
 * layers of a candidate list tapped in one pass.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { defaultConfig } from '../lib/config';
import { DEFAULT_MODEL_ID } from '../lambdas/contracts/handler-env';
import { createFeaturizer, FeaturizerConfig } from '../lambdas/model/featurizer';
import { concatFloat32 } from '../lambdas/common/float-arrays';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS, preprocessImage, sharpRgb } from '../lambdas/images/preprocess';
import { fitPca, PcaProjector, ScatterAccumulator } from '../lambdas/analysis/streaming-pca';
import { pooledWidths } from '../lambdas/model/tflite/tflite-graph';
import { parseTfliteModel, TfliteModel } from '../lambdas/model/tflite/tflite-model';
import { alterImage, FIELD_CONDITIONS, FieldCondition } from '../evaluate/field-conditions';
import { knnAccuracy, LabelledVector } from '../evaluate/knn';
import { fixed, load, machine, markdownTable, printTable, Table } from './bench-support';
import { ONNX_INPUT, ONNX_OUTPUT, OnnxTap, tfliteToOnnx, toNchwPixels } from '../lambdas/model/tflite/tflite-onnx';

const SHARED = join(__dirname, '..', '..', 'shared');
const FRUITS_103 = join(SHARED, 'datasets', 'fruits-360-103');
/** `--dataset <dir>`: another `<split>/<label>/<file>` folder, e.g. the sample, whose Test is the real Test split. */
const datasetArg = process.argv.indexOf('--dataset');
const DATASET = datasetArg > 0 ? process.argv[datasetArg + 1] : FRUITS_103;

interface ModelSpec {
  readonly id: string;
  readonly file: string;
  /** Layers worth tapping, shallow to deep. */
  readonly layers: readonly string[];
}

const MODELS: readonly ModelSpec[] = [
  {
    id: 'mobilenet_edgetpu_224_1.0_uint8',
    file: join(SHARED, 'models', 'mobilenet_edgetpu_224_1.0_uint8', 'mobilenet_edgetpu_224_1.0_uint8.tflite'),
    layers: ['expanded_conv_8/add', 'expanded_conv_10/add', 'expanded_conv_12/add', 'expanded_conv_16/add', 'expanded_conv_20/add', 'Conv_1/Relu'],
  },
  {
    id: 'mobilenet_v2_1.0_224_quant',
    file: join(SHARED, 'models', 'mobilenet_v2_1.0_224_quant', 'mobilenet_v2_1.0_224_quant.tflite'),
    layers: ['expanded_conv_9/add', 'expanded_conv_12/add', 'expanded_conv_15/add', 'Conv_1/Relu6'],
  },
];

type Pooling = 'avg' | 'gem';
type Normalisation = 'none' | 'sqrt' | 'l2' | 'sqrt-l2';

interface Descriptor {
  /** (layer, pooling) pairs side by side. */
  readonly parts: readonly { layer: string; pooling: Pooling }[];
  readonly normalisation: Normalisation;
  readonly components: number;
}

interface Image {
  readonly key: string;
  readonly label: string;
  readonly bytes: Buffer;
  /** Test images: the field condition its altered copy gets. */
  readonly condition?: FieldCondition;
}

interface Row {
  model: string;
  size: number;
  descriptor: string;
  dim: number;
  k: number;
  clean: number;
  field: number;
  perCondition: Record<string, number>;
  msPerImage: number;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  if (!existsSync(DATASET) || MODELS.some((m) => !existsSync(m.file))) {
    console.error(`skipped: needs ${DATASET} and the models under ${join(SHARED, 'models')}`);
    return;
  }
  const sizesArg = argv[argv.indexOf('--sizes') + 1];
  const sizes = argv.includes('--sizes') ? sizesArg.split(',').map(Number) : [128, 160];
  const started = new Date().toISOString();
  console.log(`feature choice on ${DATASET}${quick ? ' (quick: 10 classes)' : ''}: ${machine().cores} cores, ${machine().cpuModel}, ${started}, ${load()}`);

  const { training, test } = loadDataset(quick ? 10 : Infinity);
  const altered = await Promise.all(test.map(async (image, i) => ({ ...image, bytes: await alterImage(image.bytes, image.condition!, i) })));
  console.log(`${training.length} references, ${test.length} queries (clean and altered)`);

  if (argv.includes('--preprocessing')) {
    printTable(resultTable(await preprocessingRows(training, test, altered), 'preprocessing ms/img'));
    return;
  }
  const rows: Row[] = await baselineRows(training, test, altered);
  if (argv.includes('--baselines')) sizes.length = 0;
  for (const size of sizes) {
    const pixels = {
      training: await preprocessAll(training, size),
      test: await preprocessAll(test, size),
      altered: await preprocessAll(altered, size),
    };
    for (const spec of MODELS) {
      const model = parseTfliteModel(readFileSync(spec.file));
      const taps: OnnxTap[] = spec.layers.flatMap((layer) => (['avg', 'gem'] as const).map((pooling) => ({ tensor: layer, pooling })));
      const features = {
        training: await extract(model, taps, pixels.training, size),
        test: await extract(model, taps, pixels.test, size),
        altered: await extract(model, taps, pixels.altered, size),
      };
      const cost = await costPerLayer(model, spec.layers, pixels.test.slice(0, 128), size);
      for (const descriptor of descriptorsFor(spec)) {
        const slice = (all: Float32Array[]) => all.map((row) => describe(row, features.training.layout, descriptor));
        const trainingRows = slice(features.training.rows);
        const clean = score(training, trainingRows, test, slice(features.test.rows), descriptor.components);
        const field = score(training, trainingRows, altered, slice(features.altered.rows), descriptor.components);
        const deepest = Math.max(...descriptor.parts.map((part) => spec.layers.indexOf(part.layer)));
        const row: Row = {
          model: spec.id,
          size,
          descriptor: descriptorName(descriptor),
          dim: trainingRows[0].length,
          k: descriptor.components,
          clean: clean.accuracy,
          field: field.accuracy,
          perCondition: field.perCondition,
          msPerImage: cost[deepest],
        };
        rows.push(row);
        console.log(
          `  ${row.model} @${size} ${row.descriptor}: clean ${row.clean.toFixed(3)}, field ${row.field.toFixed(3)} (${row.dim} dims, ${row.msPerImage} ms/img)`,
        );
      }
    }
  }
  const table = resultTable(rows);
  printTable(table);
  console.log(`\n${markdownTable(table)}\n`);
  console.log(`finished ${new Date().toISOString()}, ${load()}`);
}

/**
 * What the candidates must beat, through the product's own featurizer: the notebook's raw 16x16
 * pixels and the previous default (MobileNet v1 0.25, conv_pw_11_relu, 128 px, signed sqrt),
 * both at that default's PCA k = 50.
 */
async function baselineRows(training: Image[], test: Image[], altered: Image[]): Promise<Row[]> {
  const configs: FeaturizerConfig[] = [
    { kind: 'pixels', modelId: 'pixels' },
    {
      kind: 'cnn',
      modelId: 'mobilenet_v1_0.25_224',
      modelDir: join(SHARED, 'models', 'mobilenet_v1_0.25_224'),
      imageSize: 128,
      featureLayers: ['conv_pw_11_relu'],
      power: 0.5,
    },
  ];
  const rows: Row[] = [];
  for (const config of configs) {
    const featurizer = await createFeaturizer(config);
    const featurize = async (images: Image[]) => {
      const rgb = await preprocessAll(images, featurizer.imageSize);
      const started = performance.now();
      const flat = await featurizer.featurize(rgb);
      const ms = (performance.now() - started) / images.length;
      return { rows: rgb.map((_, i) => flat.slice(i * featurizer.dim, (i + 1) * featurizer.dim)), ms };
    };
    const references = await featurize(training);
    const clean = score(training, references.rows, test, (await featurize(test)).rows, 50);
    const field = score(training, references.rows, altered, (await featurize(altered)).rows, 50);
    const row: Row = {
      model: `${featurizer.id} (${featurizer.backend})`,
      size: featurizer.imageSize,
      descriptor: 'baseline, k=50',
      dim: featurizer.dim,
      k: 50,
      clean: clean.accuracy,
      field: field.accuracy,
      perCondition: field.perCondition,
      msPerImage: fixed(references.ms, 2),
    };
    rows.push(row);
    console.log(`  baseline ${row.model}: clean ${row.clean.toFixed(3)}, field ${row.field.toFixed(3)} (${row.dim} dims, ${row.msPerImage} ms/img)`);
  }
  return rows;
}

/**
 * The product's default features (model, layers, size, PCA k) from each way of bringing a photo to
 * the model's square, and the CPU each way costs per image (one thread, in order):
 * - sharp: decode + lanczos3 resize in one sharp pipeline (what sharp costs on its own);
 * - product: `preprocessImage`, which decodes small JPEGs with libjpeg-turbo in wasm and enlarges
 *   them in JavaScript the way libvips does (lambdas/images/pixel-resize.ts); larger images are reduced by sharp.
 */
async function preprocessingRows(training: Image[], test: Image[], altered: Image[]): Promise<Row[]> {
  const featurizer = await createFeaturizer({ kind: 'cnn', modelId: DEFAULT_MODEL_ID });
  const components = defaultConfig().pcaComponents;
  const ways: { name: string; preprocess: (bytes: Buffer, size: number) => Promise<Uint8Array> }[] = [
    {
      name: 'sharp decode + lanczos3 resize',
      preprocess: async (bytes, size) => (await sharpRgb(bytes, { failOn: 'warning', pages: 1 }, size)).data,
    },
    {
      name: 'product (wasm decode + JS bicubic enlarge)',
      preprocess: async (bytes, size) => {
        const result = await preprocessImage(bytes, { size, maxInputPixels: DEFAULT_MAX_INPUT_PIXELS, maxInputBytes: DEFAULT_MAX_INPUT_BYTES });
        if (!result.ok) throw new Error(result.reason);
        return result.rgb;
      },
    },
  ];
  const rows: Row[] = [];
  for (const way of ways) {
    let cpuMs = 0;
    let count = 0;
    const featurize = async (images: Image[]) => {
      const cpu = process.cpuUsage();
      const rgb: Uint8Array[] = [];
      for (const image of images) rgb.push(await way.preprocess(image.bytes, featurizer.imageSize));
      const used = process.cpuUsage(cpu);
      cpuMs += (used.user + used.system) / 1000;
      count += images.length;
      const flat = await featurizer.featurize(rgb);
      return rgb.map((_, i) => flat.slice(i * featurizer.dim, (i + 1) * featurizer.dim));
    };
    const references = await featurize(training);
    const clean = score(training, references, test, await featurize(test), components);
    const field = score(training, references, altered, await featurize(altered), components);
    const row: Row = {
      model: featurizer.id,
      size: featurizer.imageSize,
      descriptor: way.name,
      dim: featurizer.dim,
      k: components,
      clean: clean.accuracy,
      field: field.accuracy,
      perCondition: field.perCondition,
      msPerImage: fixed(cpuMs / count, 3),
    };
    rows.push(row);
    console.log(`  ${way.name}: clean ${row.clean.toFixed(4)}, field ${row.field.toFixed(4)}, preprocessing ${row.msPerImage} ms/img CPU`);
  }
  return rows;
}

/** `<split>/<label>/<file>`, label order fixed; Test images take the field conditions in turn. */
function loadDataset(maxClasses: number): { training: Image[]; test: Image[] } {
  const labels = readdirSync(join(DATASET, 'Training')).sort().slice(0, maxClasses);
  const read = (split: string) =>
    labels.flatMap((label) =>
      readdirSync(join(DATASET, split, label))
        .sort()
        .map((file) => ({ key: `${split}/${label}/${file}`, label, bytes: readFileSync(join(DATASET, split, label, file)) })),
    );
  const test = read('Test').map((image, i) => ({ ...image, condition: FIELD_CONDITIONS[i % FIELD_CONDITIONS.length] }));
  return { training: read('Training'), test };
}

async function preprocessAll(images: readonly Image[], size: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const image of images) {
    const result = await preprocessImage(image.bytes, { size, maxInputPixels: DEFAULT_MAX_INPUT_PIXELS, maxInputBytes: DEFAULT_MAX_INPUT_BYTES });
    if (!result.ok) throw new Error(`${image.key}: ${result.reason}`);
    out.push(result.rgb);
  }
  return out;
}

interface Extracted {
  rows: Float32Array[];
  /** Where each (layer, pooling) sits in a row. */
  layout: Map<string, { offset: number; length: number }>;
}

async function extract(model: TfliteModel, taps: readonly OnnxTap[], images: readonly Uint8Array[], size: number): Promise<Extracted> {
  const session = await ort.InferenceSession.create(tfliteToOnnx(model, { taps }), { intraOpNumThreads: 2 });
  const rows: Float32Array[] = [];
  try {
    for (let start = 0; start < images.length; start += 32) {
      const chunk = images.slice(start, start + 32);
      const result = await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', toNchwPixels(chunk, size), [chunk.length, 3, size, size]) });
      const data = result[ONNX_OUTPUT].data as Float32Array;
      const dim = data.length / chunk.length;
      for (let i = 0; i < chunk.length; i++) rows.push(data.slice(i * dim, (i + 1) * dim));
    }
  } finally {
    await session.release();
  }
  const layout = new Map<string, { offset: number; length: number }>();
  let offset = 0;
  pooledWidths(
    model,
    taps.map((tap) => tap.tensor),
    size,
  ).forEach((length, i) => {
    layout.set(`${taps[i].tensor}:${taps[i].pooling}`, { offset, length });
    offset += length;
  });
  return { rows, layout };
}

/** ms per image up to each layer: onnxruntime-node, 1 thread, batch 32, median of 3 passes. */
async function costPerLayer(model: TfliteModel, layers: readonly string[], images: readonly Uint8Array[], size: number): Promise<number[]> {
  const costs: number[] = [];
  for (const layer of layers) {
    const session = await ort.InferenceSession.create(tfliteToOnnx(model, { output: layer, pooling: 'avg' }), { intraOpNumThreads: 1 });
    const times: number[] = [];
    for (let pass = 0; pass < 3; pass++) {
      const started = performance.now();
      for (let start = 0; start < images.length; start += 32) {
        const chunk = images.slice(start, start + 32);
        await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', toNchwPixels(chunk, size), [chunk.length, 3, size, size]) });
      }
      times.push((performance.now() - started) / images.length);
    }
    await session.release();
    costs.push(fixed(times.sort((a, b) => a - b)[1], 2));
  }
  return costs;
}

function descriptorsFor(spec: ModelSpec): Descriptor[] {
  const middle = spec.layers.find((layer) => layer.includes('_12/')) ?? spec.layers[1];
  const later = spec.layers[spec.layers.length - 2];
  const last = spec.layers[spec.layers.length - 1];
  /** The layers' features side by side, each pooled the same way. */
  const descriptor = (layers: string[], pooling: Pooling = 'avg', components = 100, normalisation: Normalisation = 'sqrt'): Descriptor => ({
    parts: layers.map((layer) => ({ layer, pooling })),
    normalisation,
    components,
  });
  const single = [...spec.layers.map((layer) => descriptor([layer])), ...[middle, last].map((layer) => descriptor([layer], 'gem'))];
  const variants = [
    ...(['none', 'l2', 'sqrt-l2'] as const).map((normalisation) => descriptor([middle], 'avg', 100, normalisation)),
    ...[50, 200].map((components) => descriptor([middle], 'avg', components)),
    descriptor([middle, later]),
    descriptor([middle, last]),
    descriptor([middle, last], 'gem'),
    descriptor([middle, last], 'avg', 200),
  ];
  return [...single, ...variants];
}

function descriptorName(d: Descriptor): string {
  return `${d.parts.map((p) => `${p.layer}:${p.pooling}`).join(' + ')} ${d.normalisation} k=${d.components}`;
}

/** The descriptor's part of one extracted row, normalised per part. */
function describe(row: Float32Array, layout: Extracted['layout'], descriptor: Descriptor): Float32Array {
  const parts = descriptor.parts.map(({ layer, pooling }) => {
    const place = layout.get(`${layer}:${pooling}`)!;
    const part = row.slice(place.offset, place.offset + place.length);
    if (descriptor.normalisation === 'sqrt' || descriptor.normalisation === 'sqrt-l2') {
      for (let i = 0; i < part.length; i++) part[i] = Math.sign(part[i]) * Math.sqrt(Math.abs(part[i]));
    }
    if (descriptor.normalisation === 'l2' || descriptor.normalisation === 'sqrt-l2') {
      const norm = Math.hypot(...part) || 1;
      for (let i = 0; i < part.length; i++) part[i] /= norm;
    }
    return part;
  });
  return concatFloat32(parts);
}

/** StandardScaler + PCA fitted on references and queries together (as one run would), then 5-NN. */
function score(references: readonly Image[], referenceRows: Float32Array[], queries: readonly Image[], queryRows: Float32Array[], components: number) {
  const dim = referenceRows[0].length;
  const accumulator = new ScatterAccumulator(dim);
  for (const row of [...referenceRows, ...queryRows]) accumulator.addRow(row, 0);
  const fit = fitPca(accumulator.moments(), { components });
  const projector = new PcaProjector(fit);
  const labelled = (images: readonly Image[], rows: Float32Array[]): LabelledVector[] =>
    images.map((image, i) => ({ key: image.key, label: image.label, vector: projector.project(rows[i], 0) }));
  const refs = labelled(references, referenceRows);
  const qs = labelled(queries, queryRows);
  // Queries are scored independently: per-condition passes add up to one pass over all of them.
  const perCondition: Record<string, number> = {};
  let correct = 0;
  for (const condition of FIELD_CONDITIONS) {
    const subset = qs.filter((_, i) => queries[i].condition === condition);
    if (subset.length === 0) continue;
    const result = knnAccuracy([...refs, ...subset]);
    perCondition[condition] = fixed(result.accuracy, 3);
    correct += result.correct;
  }
  return { accuracy: fixed(correct / qs.length, 4), perCondition };
}

function resultTable(rows: Row[], costHeader = 'infer ms/img'): Table {
  const sorted = [...rows].sort((a, b) => b.clean + b.field - (a.clean + a.field));
  return {
    title: 'Feature candidates on fruits-360-103 (5-NN on the PCs; clean = as photographed, field = Test altered, Training clean)',
    headers: ['weights', 'px', 'layer(s):pooling, normalisation, PCA k', 'dim', 'clean', 'field', ...FIELD_CONDITIONS, costHeader],
    rows: sorted.map((r) => [r.model, r.size, r.descriptor, r.dim, r.clean, r.field, ...FIELD_CONDITIONS.map((c) => r.perCondition[c] ?? ''), r.msPerImage]),
  };
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
