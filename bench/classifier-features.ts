/**
 * The product's default features (MobileNetV2, 1,376 floats) of every image set the classifier
 * choice is judged on, computed once and cached on disk outside the repository: a set is
 * `<name>.json` (keys, labels, field condition) beside `<name>.f32` (count x dim, little-endian
 * float32). A cached set is reused when its keys match; delete the folder to recompute.
 *
 * The cache holds the signed square root of the pooled activations (`CACHED_FEATURE_POWER`), the
 * features it was first made with; readers map them to another power in memory
 * (bench/classifier-choice.ts: the product's, FEATURIZE_SETTINGS.featurePower).
 *
 * Sets, each image through the product's own preprocessing and featurizer:
 * - `<dataset>-train` / `<dataset>-test`: the Training and Test images as photographed;
 * - `<dataset>-test-<condition>`: every Test image altered by that field condition
 *   (evaluate/field-conditions.ts, seed = the image's index);
 * - `<dataset>-train-<condition>` (the sample only: its `r_` Training images are the axis
 *   holdout's queries): every Training image altered the same way;
 * - `<dataset>-train-augmented`: one altered copy of each Training image, the conditions in turn,
 *   with other seeds than any query's: what a featurize step could emit for augmentation.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_MODEL_ID } from '../lambdas/contracts/handler-env';
import { createFeaturizer, Featurizer } from '../lambdas/model/featurizer';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS, preprocessImage } from '../lambdas/images/preprocess';
import { alterImage, FIELD_CONDITIONS, FieldCondition } from '../evaluate/field-conditions';

export const FEATURE_CACHE = process.env.CLASSIFIER_FEATURES ?? '/tmp/classifier-features';
/** sign(a) |a|^CACHED_FEATURE_POWER of the pooled activations a is what the cache holds. */
export const CACHED_FEATURE_POWER = 0.5;
/** Seeds of the augmentation copies start here, far from any query's index. */
const AUGMENTATION_SEED = 1_000_003;

export interface FeatureSet {
  readonly keys: string[];
  readonly labels: string[];
  /** The field condition of each row, '' when clean. */
  readonly conditions: string[];
  readonly dim: number;
  /** count x dim, row-major. */
  readonly vectors: Float32Array;
}

interface SourceImage {
  key: string;
  label: string;
  file: string;
}

function listSplit(dataset: string, split: string): SourceImage[] {
  const root = join(dataset, split);
  return readdirSync(root)
    .sort()
    .flatMap((label) =>
      readdirSync(join(root, label))
        .sort()
        .map((file) => ({ key: `${split}/${label}/${file}`, label, file: join(root, label, file) })),
    );
}

/** What turns preprocessed images into feature rows: the product's featurizer, or a variant of it. */
export type FeatureSource = Pick<Featurizer, 'dim' | 'imageSize' | 'featurize'>;

let productFeaturizer: Promise<Featurizer> | undefined;

/** The product's featurizer, holding the cache's power. */
function productFeatures(): Promise<FeatureSource> {
  return (productFeaturizer ??= createFeaturizer({ kind: 'cnn', modelId: DEFAULT_MODEL_ID, power: CACHED_FEATURE_POWER }));
}

async function featurize(
  images: readonly SourceImage[],
  alteration: (index: number) => { condition: FieldCondition; seed: number } | undefined,
  source: () => Promise<FeatureSource>,
): Promise<FeatureSet> {
  const model = await source();
  const chunks: Float32Array[] = [];
  const conditions: string[] = [];
  for (let start = 0; start < images.length; start += 64) {
    const chunk = images.slice(start, start + 64);
    const rgb = await Promise.all(
      chunk.map(async (image, offset) => {
        const alter = alteration(start + offset);
        conditions.push(alter?.condition ?? '');
        const original = readFileSync(image.file);
        const bytes = alter ? await alterImage(original, alter.condition, alter.seed) : original;
        const result = await preprocessImage(bytes, {
          size: model.imageSize,
          maxInputPixels: DEFAULT_MAX_INPUT_PIXELS,
          maxInputBytes: DEFAULT_MAX_INPUT_BYTES,
        });
        if (!result.ok) throw new Error(`${image.key}: ${result.reason}`);
        return result.rgb;
      }),
    );
    chunks.push(await model.featurize(rgb));
  }
  const vectors = new Float32Array(images.length * model.dim);
  chunks.reduce((offset, chunk) => (vectors.set(chunk, offset), offset + chunk.length), 0);
  return { keys: images.map((i) => i.key), labels: images.map((i) => i.label), conditions, dim: model.dim, vectors };
}

interface CacheOptions {
  /** @default FEATURE_CACHE */
  readonly cache?: string;
  /** @default the product's featurizer */
  readonly source?: () => Promise<FeatureSource>;
}

async function cached(name: string, images: readonly SourceImage[], alteration: Parameters<typeof featurize>[1], options: CacheOptions): Promise<FeatureSet> {
  const folder = options.cache ?? FEATURE_CACHE;
  const meta = join(folder, `${name}.json`);
  const data = join(folder, `${name}.f32`);
  if (existsSync(meta) && existsSync(data)) {
    const header = JSON.parse(readFileSync(meta, 'utf8')) as Omit<FeatureSet, 'vectors'>;
    if (header.keys.length === images.length && header.keys.every((key, i) => key === images[i].key)) {
      const bytes = readFileSync(data);
      return { ...header, vectors: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) };
    }
  }
  const started = performance.now();
  const set = await featurize(images, alteration, options.source ?? productFeatures);
  mkdirSync(folder, { recursive: true });
  writeFileSync(meta, JSON.stringify({ keys: set.keys, labels: set.labels, conditions: set.conditions, dim: set.dim }));
  writeFileSync(data, Buffer.from(set.vectors.buffer, set.vectors.byteOffset, set.vectors.byteLength));
  console.log(`  featurized ${name}: ${images.length} images in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return set;
}

export interface DatasetFeatures {
  readonly train: FeatureSet;
  readonly test: FeatureSet;
  /** Every Test image under each condition. */
  readonly testAltered: Record<FieldCondition, FeatureSet>;
  /** Every Training image under each condition (only when asked for). */
  readonly trainAltered?: Record<FieldCondition, FeatureSet>;
  /** One altered copy per Training image, the conditions in turn. */
  readonly trainAugmented: FeatureSet;
}

/** The cached features of `dataset` (`<split>/<label>/<file>`), named `name` in the cache. */
export async function datasetFeatures(dataset: string, name: string, options: { alterTraining?: boolean } & CacheOptions = {}): Promise<DatasetFeatures> {
  const training = listSplit(dataset, 'Training');
  const test = listSplit(dataset, 'Test');
  const alteredSets = async (split: string, images: SourceImage[]) => {
    const sets = {} as Record<FieldCondition, FeatureSet>;
    for (const condition of FIELD_CONDITIONS) sets[condition] = await cached(`${name}-${split}-${condition}`, images, (i) => ({ condition, seed: i }), options);
    return sets;
  };
  return {
    train: await cached(`${name}-train`, training, () => undefined, options),
    test: await cached(`${name}-test`, test, () => undefined, options),
    testAltered: await alteredSets('test', test),
    trainAltered: options.alterTraining ? await alteredSets('train', training) : undefined,
    trainAugmented: await cached(
      `${name}-train-augmented`,
      training,
      (i) => ({ condition: FIELD_CONDITIONS[i % FIELD_CONDITIONS.length], seed: AUGMENTATION_SEED + i }),
      options,
    ),
  };
}

/** The rows of `set` at `indices`, as a new set. */
export function subset(set: FeatureSet, indices: readonly number[]): FeatureSet {
  const vectors = new Float32Array(indices.length * set.dim);
  indices.forEach((row, i) => vectors.set(set.vectors.subarray(row * set.dim, (row + 1) * set.dim), i * set.dim));
  return {
    keys: indices.map((i) => set.keys[i]),
    labels: indices.map((i) => set.labels[i]),
    conditions: indices.map((i) => set.conditions[i]),
    dim: set.dim,
    vectors,
  };
}

if (require.main === module) {
  const shared = join(__dirname, '..', '..', 'shared', 'datasets');
  (async () => {
    await datasetFeatures(join(shared, 'fruits-360-sample'), 'sample', { alterTraining: true });
    await datasetFeatures(join(shared, 'fruits-360-103'), 'f103');
  })().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
