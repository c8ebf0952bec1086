/**
 * A small fruit-like image set the project makes itself, so that `npm start` on a fresh offline
 * clone has something real to featurize: a few classes of textured, noisy ellipses on white, in
 * the Fruits-360 layout (`Training/<label>/*.jpg`, `Test/<label>/*.jpg`, 100x100 JPEG).
 *
 * Deterministic: a seeded generator drives every choice, so the same bytes come out on every
 * machine (same sharp/libvips version), the same run id follows, and a second run is a no-op upload.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../lambdas/common';

export interface DemoImage {
  /** Path relative to the dataset root, `/`-separated. */
  readonly path: string;
  readonly body: Buffer;
}

interface FruitShape {
  readonly label: string;
  /** Base colour, RGB 0..255. */
  readonly rgb: readonly [number, number, number];
  /** Semi-axes as a fraction of the image side. */
  readonly rx: number;
  readonly ry: number;
  /** Texture: stripes (melon-like), speckles (strawberry-like) or smooth. */
  readonly texture: 'stripes' | 'speckles' | 'smooth';
}

const SHAPES: readonly FruitShape[] = [
  { label: 'Red Apple', rgb: [196, 32, 40], rx: 0.36, ry: 0.34, texture: 'smooth' },
  { label: 'Banana', rgb: [236, 204, 60], rx: 0.44, ry: 0.16, texture: 'smooth' },
  { label: 'Lime', rgb: [104, 176, 48], rx: 0.26, ry: 0.24, texture: 'speckles' },
  { label: 'Orange', rgb: [240, 140, 30], rx: 0.34, ry: 0.34, texture: 'speckles' },
  { label: 'Watermelon', rgb: [40, 120, 50], rx: 0.42, ry: 0.36, texture: 'stripes' },
];

const DEMO_SIDE = 100;

export interface DemoDatasetOptions {
  /** Images per class in Training/. @default 16 */
  readonly trainingPerClass?: number;
  /** Images per class in Test/. @default 8 */
  readonly testPerClass?: number;
  /** @default 360 */
  readonly seed?: number;
}

export async function generateDemoDataset(options: DemoDatasetOptions = {}): Promise<DemoImage[]> {
  const random = seededRandom(options.seed ?? 360);
  const splits: [string, number][] = [
    ['Training', options.trainingPerClass ?? 16],
    ['Test', options.testPerClass ?? 8],
  ];
  const images: DemoImage[] = [];
  for (const [split, perClass] of splits) {
    for (const shape of SHAPES) {
      for (let i = 0; i < perClass; i++) {
        const pixels = drawFruit(shape, random);
        const body = await sharp(pixels, { raw: { width: DEMO_SIDE, height: DEMO_SIDE, channels: 3 } })
          .jpeg({ quality: 90 })
          .toBuffer();
        images.push({ path: `${split}/${shape.label}/${i}_100.jpg`, body });
      }
    }
  }
  return images;
}

/** The demo images written under `folder` in their layout (`Training/<label>/*.jpg`, ...), folders made as needed. */
export async function writeDemoDataset(folder: string, options: DemoDatasetOptions = {}): Promise<void> {
  for (const image of await generateDemoDataset(options)) {
    const file = join(folder, image.path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, image.body);
  }
}

/** One RGB image: the shape at a random pose and scale, shaded, textured, with sensor noise. */
function drawFruit(shape: FruitShape, random: () => number): Buffer {
  const side = DEMO_SIDE;
  const out = Buffer.alloc(side * side * 3, 255);
  const scale = 0.85 + 0.3 * random();
  const angle = random() * Math.PI;
  const cx = side * (0.45 + 0.1 * random());
  const cy = side * (0.45 + 0.1 * random());
  const rx = shape.rx * side * scale;
  const ry = shape.ry * side * scale;
  const tint = [0, 1, 2].map(() => (random() - 0.5) * 30);
  const phase = random() * Math.PI * 2;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const u = (dx * cos + dy * sin) / rx;
      const v = (-dx * sin + dy * cos) / ry;
      const r2 = u * u + v * v;
      const o = (y * side + x) * 3;
      if (r2 > 1) {
        // White background with a little noise, like a photo booth.
        const n = 255 - Math.floor(random() * 6);
        out[o] = out[o + 1] = out[o + 2] = n;
        continue;
      }
      // Lit from the upper left: brighter there, darker towards the rim.
      const shade = 0.65 + 0.35 * (1 - r2) + (0.15 * (-u - v)) / 2;
      let texture = 1;
      if (shape.texture === 'stripes') texture = 0.75 + 0.25 * Math.sign(Math.sin(u * 9 + phase));
      else if (shape.texture === 'speckles') texture = random() < 0.08 ? 0.7 : 1;
      for (let c = 0; c < 3; c++) {
        const value = (shape.rgb[c] + tint[c]) * shade * texture + (random() - 0.5) * 20;
        out[o + c] = Math.max(0, Math.min(255, Math.round(value)));
      }
    }
  }
  return out;
}
