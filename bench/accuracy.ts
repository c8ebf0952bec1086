/**
 * Accuracy bench for featurizer settings on the shared Fruits-360 sample.
 *
 * For each (model, input size, feature layer, pooling) it featurizes the 720 sample images with the
 * product's own preprocess + featurizer modules, then evaluates the way the end-to-end test does:
 * StandardScaler and PCA fitted on all images (as the aggregate step does over a run), 5-nearest-
 * neighbours trained on the Training split, scored on the Test split, with the one scorer the run
 * summary uses (`scoreKnn` in evaluate/knn.ts: Euclidean, majority vote, ties to the nearest label).
 *
 * Settings were chosen on these same 240 Test images, so a second column scores a split that
 * never touches Test: Training images `<n>_100.jpg` against Training images `r_<n>_100.jpg`, which
 * come from another recording of each fruit (another rotation). It is much harder than
 * Training -> Test (whose frames are neighbours of the same recordings) and shows how far a
 * setting generalises beyond near-duplicate frames.
 *
 *   npx tsx bench/accuracy.ts                      # raw pixels, product default, MobileNet's last block
 *   npx tsx bench/accuracy.ts --models mobilenet_v1_0.25_224,mobilenet_v1_0.75_224 --sizes 224,160,128,96 \
 *     --layers conv_pw_13_relu,conv_pw_11_relu,conv_pw_11_relu+conv_pw_13_relu --poolings avg,avg-max --transforms none,l2,sqrt
 *
 * `default` in --models is the product's featurizer exactly as the handler builds it with no env.
 *
 * Needs ../shared (sample images, reference models); exits with a message when it is absent.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { Matrix } from 'ml-matrix';
import { PCA } from 'ml-pca';
import { createFeaturizer, Featurizer, FeaturizerConfig, Pooling } from '../lambdas/model/featurizer';
import { DEFAULT_MODEL_ID } from '../lambdas/contracts/handler-env';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS, preprocessImage } from '../lambdas/images/preprocess';
import { scoreKnn } from '../evaluate/knn';

const SHARED = resolve(__dirname, '..', '..', 'shared');
export const SAMPLE = join(SHARED, 'datasets', 'fruits-360-sample');
export const MODELS = join(SHARED, 'models');

export interface SampleImage {
  /** `<split>/<label>/<file>` under SAMPLE. */
  path: string;
  split: 'Training' | 'Test';
  /** Fruits-360 `r_` files come from a second recording of the fruit. */
  secondAxis: boolean;
  label: string;
  bytes: Buffer;
}

export function loadSample(): SampleImage[] {
  const images: SampleImage[] = [];
  for (const split of ['Training', 'Test'] as const) {
    for (const label of readdirSync(join(SAMPLE, split)).sort()) {
      for (const file of readdirSync(join(SAMPLE, split, label)).sort()) {
        images.push({
          path: `${split}/${label}/${file}`,
          split,
          label,
          secondAxis: file.startsWith('r_'),
          bytes: readFileSync(join(SAMPLE, split, label, file)),
        });
      }
    }
  }
  return images;
}

async function featurizeAll(featurizer: Featurizer, images: SampleImage[]): Promise<Matrix> {
  const rgb: Uint8Array[] = [];
  for (const image of images) {
    const result = await preprocessImage(image.bytes, {
      size: featurizer.imageSize,
      maxInputPixels: DEFAULT_MAX_INPUT_PIXELS,
      maxInputBytes: DEFAULT_MAX_INPUT_BYTES,
    });
    if (!result.ok) throw new Error(`sample image rejected: ${result.reason}`);
    rgb.push(result.rgb);
  }
  const flat = await featurizer.featurize(rgb);
  const rows = images.map((_, i) => Array.from(flat.subarray(i * featurizer.dim, (i + 1) * featurizer.dim)));
  return new Matrix(rows);
}

/** Feature transforms applied before the evaluator's own StandardScaler. */
const TRANSFORMS: Record<string, (x: Matrix) => Matrix> = {
  none: (x) => x,
  /** Each vector scaled to unit length: removes overall activation strength (image contrast). */
  l2: (x) => x.clone().divColumnVector(rowNorms(x)),
  /** Square root of the (non-negative, ReLU) activations: tames a few dominant channels. */
  sqrt: (x) => new Matrix(x.to2DArray().map((row) => row.map((v) => Math.sqrt(Math.max(0, v))))),
};

function rowNorms(x: Matrix): number[] {
  return x.to2DArray().map((row) => Math.sqrt(row.reduce((s, v) => s + v * v, 0)) || 1);
}

/** Population-std standardisation, as sklearn's StandardScaler; constant columns stay 0. */
function standardise(x: Matrix): Matrix {
  const means = x.mean('column');
  const stds = x.standardDeviation('column', { mean: means, unbiased: false }).map((s) => s || 1);
  return x.clone().subRowVector(means).divRowVector(stds);
}

/** Test accuracy and axis-holdout accuracy of 5-NN on the PCA of `features` (rows in `images` order). */
export function evaluate(features: Matrix, images: SampleImage[], components: number[], varianceThresholds: number[]) {
  const x = standardise(features);
  const pca = new PCA(x, { center: true, scale: false });
  const cumulative = pca.getCumulativeVariance();
  const projected = pca.predict(x, { nComponents: Math.min(x.columns, x.rows) });
  const indices = (keep: (image: SampleImage) => boolean) => images.flatMap((image, i) => (keep(image) ? [i] : []));
  const rowsOf = (indices: number[]) => indices.map((i) => ({ label: images[i].label, vector: projected.getRow(i) }));
  const split = (train: number[], test: number[], k: number) => {
    const { correct, scored } = scoreKnn(rowsOf(train), rowsOf(test), { k: 5, dims: k });
    return correct / scored;
  };
  const training = indices((im) => im.split === 'Training');
  const test = indices((im) => im.split === 'Test');
  const firstAxis = indices((im) => im.split === 'Training' && !im.secondAxis);
  const secondAxis = indices((im) => im.split === 'Training' && im.secondAxis);
  const score = (k: number) => ({ accuracy: split(training, test, k), axisHoldout: split(firstAxis, secondAxis, k) });
  const rows: { k: string; accuracy: number; axisHoldout: number }[] = components.map((k) => ({ k: String(k), ...score(k) }));
  for (const threshold of varianceThresholds) {
    const k = cumulative.findIndex((c) => c >= threshold) + 1 || cumulative.length;
    rows.push({ k: `${k} (var ${threshold})`, ...score(k) });
  }
  return rows;
}

const list = (value: string) =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);

/** The featurizers a `--models` entry stands for: pixels, the default model, or every size, layer and pooling asked for. */
function featurizerSettings(model: string, options: { sizes: string; layers: string; poolings: string; backend?: string }): FeaturizerConfig[] {
  if (model === 'pixels') return [{ kind: 'pixels', modelId: 'pixels' }];
  if (model === 'default') return [{ kind: 'cnn', modelId: DEFAULT_MODEL_ID, modelDir: join(MODELS, DEFAULT_MODEL_ID), backend: options.backend }];
  return list(options.sizes).flatMap((size) =>
    list(options.layers).flatMap((layer) =>
      list(options.poolings).map((pooling) => ({
        kind: 'cnn' as const,
        modelId: model,
        modelDir: join(MODELS, model),
        imageSize: Number(size),
        featureLayers: layer.split('+'),
        pooling: pooling as Pooling,
        power: 1,
        backend: options.backend,
      })),
    ),
  );
}

/**
 * One line of the summary: one lucky k on 240 test images proves little (one image = 0.004), so a
 * setting is judged by its accuracy across all the fixed k values (`fixed`).
 */
function summaryLine(featurizerId: string, transform: string, fixed: readonly { accuracy: number; axisHoldout: number }[], imagesPerSecond: number): string {
  const mean = (values: number[]) => (values.reduce((a, b) => a + b, 0) / values.length).toFixed(3);
  const test = fixed.map((row) => row.accuracy);
  return [
    featurizerId,
    transform,
    mean(test),
    Math.min(...test).toFixed(3),
    Math.max(...test).toFixed(3),
    mean(fixed.map((row) => row.axisHoldout)),
    imagesPerSecond.toFixed(0),
  ].join('\t');
}

async function main() {
  const options = new Command()
    .option('--models <ids>', 'model ids under ../shared/models, "pixels", "default"', 'pixels,default,mobilenet_v1_0.25_224')
    .option('--sizes <px>', 'CNN input sizes', '224')
    .option('--layers <names>', 'feature layers (a+b: pooled side by side)', 'conv_pw_13_relu')
    .option('--poolings <kinds>', 'avg and/or avg-max', 'avg')
    .option('--transforms <names>', `before StandardScaler: ${Object.keys(TRANSFORMS).join(', ')}`, 'none')
    .option('--ks <numbers>', 'PCA components', '10,15,20,30,50,100')
    .option('--variance <thresholds>', 'cumulative explained-variance thresholds', '0.9,0.95')
    .option('--backend <name>', 'force a TF.js backend')
    .parse()
    .opts<{ models: string; sizes: string; layers: string; poolings: string; transforms: string; ks: string; variance: string; backend?: string }>();

  if (!existsSync(SAMPLE)) {
    console.error(`skipped: the shared Fruits-360 sample is not at ${SAMPLE}`);
    return;
  }
  const images = loadSample();
  const ks = list(options.ks).map(Number);
  const thresholds = list(options.variance).map(Number);
  console.log(
    `${images.length} images (${images.filter((i) => i.split === 'Training').length} Training / ${images.filter((i) => i.split === 'Test').length} Test); scaler + PCA fitted on all, 5-NN Euclidean`,
  );
  console.log(['featurizer', 'dim', 'backend', 'featurize s', 'img/s', 'transform', 'k', 'Test acc', 'axis holdout acc'].join('\t'));

  const summary: string[] = [];
  for (const model of list(options.models)) {
    for (const config of featurizerSettings(model, options)) {
      if (config.modelDir && !existsSync(config.modelDir)) {
        console.log(`${model}: skipped, no reference copy at ${config.modelDir}`);
        continue;
      }
      const featurizer = await createFeaturizer(config);
      const started = performance.now();
      const features = await featurizeAll(featurizer, images);
      const seconds = (performance.now() - started) / 1000;
      for (const transform of list(options.transforms)) {
        const rows = evaluate(TRANSFORMS[transform](features), images, ks, thresholds);
        for (const row of rows) {
          console.log(
            [
              featurizer.id,
              featurizer.dim,
              featurizer.backend,
              seconds.toFixed(1),
              (images.length / seconds).toFixed(0),
              transform,
              row.k,
              row.accuracy.toFixed(3),
              row.axisHoldout.toFixed(3),
            ].join('\t'),
          );
        }
        summary.push(summaryLine(featurizer.id, transform, rows.slice(0, ks.length), images.length / seconds));
      }
    }
  }
  console.log(`\nacross k = ${ks.join(', ')}:`);
  console.log(['featurizer', 'transform', 'Test mean', 'Test min', 'Test max', 'axis holdout mean', 'img/s'].join('\t'));
  for (const line of summary) console.log(line);
}

// bench/featurize.ts reuses the evaluation; only a direct run is the command line tool.
if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
