/**
 * Field conditions for judging features: the start-up's robots will not photograph fruit on white
 * under studio light. Each alteration turns a clean Fruits-360 photo into one a harvesting robot
 * might take of the same fruit: another background, other lighting, another white balance, blur,
 * a small rotation, an off-centre crop, or all of these at once. Queries altered this way are
 * scored against clean references (bench/accuracy.ts), so a descriptor that only works on white
 * shows it.
 *
 * Deterministic: the same image, alteration and seed give the same bytes on every machine.
 */
import sharp, { type Sharp, type SharpOptions } from 'sharp';
import { seededRandom } from '../common';

export type FieldCondition = 'background' | 'lighting' | 'white-balance' | 'blur' | 'rotation' | 'crop' | 'combined';
export const FIELD_CONDITIONS: readonly FieldCondition[] = ['background', 'lighting', 'white-balance', 'blur', 'rotation', 'crop', 'combined'];

/**
 * How white a pixel must be to count as the studio background (Fruits-360 is on white): fully
 * from BACKGROUND_FULL up, blended down to BACKGROUND_EDGE so the fruit keeps no white halo.
 */
const BACKGROUND_FULL = 232;
const BACKGROUND_EDGE = 200;

/** RGB raster of a photo, decoded once. */
interface Raster {
  data: Buffer;
  width: number;
  height: number;
}

/** `image` (any format sharp reads) under `condition`, as a JPEG (quality 92). */
export async function alterImage(image: Uint8Array, condition: FieldCondition, seed: number): Promise<Buffer> {
  const random = seededRandom(seed);
  let raster = await decode(image);
  const steps: Exclude<FieldCondition, 'combined'>[] =
    condition === 'combined' ? ['background', 'lighting', 'white-balance', 'rotation', 'crop', 'blur'] : [condition];
  for (const step of steps) raster = await STEPS[step](raster, random);
  return sharp(raster.data, { raw: { width: raster.width, height: raster.height, channels: 3 } })
    .jpeg({ quality: 92 })
    .toBuffer();
}

type Step = (raster: Raster, random: () => number) => Promise<Raster> | Raster;

const STEPS: Record<Exclude<FieldCondition, 'combined'>, Step> = {
  /** The white studio background replaced by foliage, soil, a crate or a conveyor belt, with texture. */
  background: (raster, random) => {
    const palettes: [number, number, number][] = [
      [62, 110, 48], // leaves
      [104, 78, 52], // soil
      [150, 118, 80], // wooden crate
      [70, 72, 78], // conveyor belt
    ];
    const base = palettes[Math.floor(random() * palettes.length)];
    const data = Buffer.from(raster.data);
    const phase = random() * Math.PI * 2;
    for (let y = 0; y < raster.height; y++) {
      for (let x = 0; x < raster.width; x++) {
        const i = (y * raster.width + x) * 3;
        const weight = backgroundWeight(data, i);
        if (weight === 0) continue;
        // Low-frequency shading plus grain: a flat colour would be as easy to ignore as white.
        const shade = 0.75 + 0.25 * Math.sin(x / 7 + phase) * Math.cos(y / 9 - phase) + (random() - 0.5) * 0.3;
        for (let c = 0; c < 3; c++) data[i + c] = clampByte(weight * base[c] * shade + (1 - weight) * data[i + c]);
      }
    }
    return { ...raster, data };
  },
  /** Darker or brighter, with a gamma change: shade under leaves, direct sun. */
  lighting: (raster, random) => {
    const gain = random() < 0.5 ? 0.55 + random() * 0.2 : 1.2 + random() * 0.2;
    const gamma = 0.8 + random() * 0.4;
    return mapPixels(raster, (value) => 255 * Math.pow(Math.min(1, (value / 255) * gain), gamma));
  },
  /** A colour cast: warm evening light or a cold overcast sky. */
  'white-balance': (raster, random) => {
    const warm = random() < 0.5;
    const strength = 0.12 + random() * 0.12;
    const gains = warm ? [1 + strength, 1, 1 - strength] : [1 - strength, 1, 1 + strength];
    return mapPixels(raster, (value, channel) => value * gains[channel]);
  },
  /** Motion or focus blur. */
  blur: async (raster, random) => fromSharp(sharp(raster.data, rawOf(raster)).blur(0.8 + random() * 1.2)),
  /** A small rotation (up to 20 degrees), the corners filled with the image's own edge colour. */
  rotation: async (raster, random) => {
    const angle = (random() < 0.5 ? -1 : 1) * (5 + random() * 15);
    const corner = { r: raster.data[0], g: raster.data[1], b: raster.data[2] };
    const rotated = await sharp(raster.data, rawOf(raster)).rotate(angle, { background: corner }).raw().toBuffer({ resolveWithObject: true });
    // Back to the original size, centred: the fruit stays as large as it was.
    const left = Math.floor((rotated.info.width - raster.width) / 2);
    const top = Math.floor((rotated.info.height - raster.height) / 2);
    return fromSharp(
      sharp(rotated.data, { raw: { width: rotated.info.width, height: rotated.info.height, channels: 3 } }).extract({
        left,
        top,
        width: raster.width,
        height: raster.height,
      }),
    );
  },
  /** An off-centre crop of 75-90% of the frame, scaled back up: the fruit is not always centred. */
  crop: async (raster, random) => {
    const share = 0.75 + random() * 0.15;
    const width = Math.round(raster.width * share);
    const height = Math.round(raster.height * share);
    const left = Math.floor(random() * (raster.width - width + 1));
    const top = Math.floor(random() * (raster.height - height + 1));
    return fromSharp(sharp(raster.data, rawOf(raster)).extract({ left, top, width, height }).resize(raster.width, raster.height));
  },
};

async function decode(image: Uint8Array): Promise<Raster> {
  return fromSharp(sharp(image).removeAlpha().toColourspace('srgb'));
}

async function fromSharp(pipeline: Sharp): Promise<Raster> {
  const { data, info } = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

function rawOf(raster: Raster): SharpOptions {
  return { raw: { width: raster.width, height: raster.height, channels: 3 } };
}

function mapPixels(raster: Raster, map: (value: number, channel: number) => number): Raster {
  const data = Buffer.alloc(raster.data.length);
  for (let i = 0; i < data.length; i++) data[i] = clampByte(map(raster.data[i], i % 3));
  return { ...raster, data };
}

/** 1 for studio white, 0 for the fruit, in between on the anti-aliased edge. */
function backgroundWeight(data: Buffer, i: number): number {
  const darkest = Math.min(data[i], data[i + 1], data[i + 2]);
  return Math.max(0, Math.min(1, (darkest - BACKGROUND_EDGE) / (BACKGROUND_FULL - BACKGROUND_EDGE)));
}

function clampByte(value: number): number {
  return Math.max(0, Math.min(255, Math.round(value)));
}
