/**
 * A plain-loop uint8 interpreter for the ops of the reference MobileNets, following TFLite's
 * quantised reference kernels: integer accumulation of (q - zero_point) products plus the int32
 * bias, then one rescale to the output's scale, rounding, the zero point, and the activation's
 * clamp. Only there to check the float executor against what the quantised model really
 * computes; about 1-2 s per 224 px image, batch 1.
 *
 * Rescaling uses a float multiply and Math.round where TFLite uses a fixed-point multiplier with
 * its own rounding (and a fixed-point exp in SOFTMAX): results can differ from the TFLite
 * interpreter by one quantisation step on ties, never more.
 * https://www.tensorflow.org/lite/performance/quantization_spec
 */
import { BuiltinOperator } from '../../../../lambdas/model/tflite/tflite-schema';
import type { Activation, Padding } from '../../../../lambdas/model/tflite/tflite-schema';
import { readIntegers, TfliteModel, TfliteOperator, TfliteTensor } from '../../../../lambdas/model/tflite/tflite-model';
import { resolveActivation } from '../../../../lambdas/model/tflite/tflite-graph';

export interface QuantizedActivation {
  readonly q: Uint8Array;
  /** NHWC with batch 1, or [1, n] after the head. */
  readonly shape: readonly number[];
  readonly scale: number;
  readonly zeroPoint: number;
}

/** Dequantised copy: scale * (q - zeroPoint). */
export function dequantizeActivation(a: QuantizedActivation): Float32Array {
  return Float32Array.from(a.q, (q) => a.scale * (q - a.zeroPoint));
}

/**
 * Run one `size` x `size` RGB image (uint8, HWC) through the quantised graph up to `output`
 * (a name as resolveActivation takes, or the model's output).
 */
export function runUint8Reference(model: TfliteModel, rgb: Uint8Array, size: number, output?: string): QuantizedActivation {
  const inputTensor = model.tensors[model.inputs[0]];
  if (inputTensor.type !== 'uint8') throw new Error(`reference runs uint8 models, input is ${inputTensor.type}`);
  const channels = inputTensor.shape[3];
  if (rgb.length !== size * size * channels) throw new Error(`image holds ${rgb.length} bytes, expected ${size}x${size}x${channels}`);
  const target = output === undefined ? model.outputs[0] : resolveActivation(model, output).index;
  const values = new Map<number, QuantizedActivation>([[inputTensor.index, { ...params(inputTensor), q: rgb, shape: [1, size, size, channels] }]]);
  for (const op of model.operators) {
    const out = model.tensors[op.outputs[0]];
    const x = values.get(op.inputs[0]);
    if (!x) throw new Error(`${op.opName} #${op.index}: input not computed`);
    values.set(out.index, runOp(model, op, x, values, out));
    if (out.index === target) return values.get(target) as QuantizedActivation;
  }
  throw new Error(`tensor ${target} was never computed`);
}

function params(t: TfliteTensor): { scale: number; zeroPoint: number } {
  const q = t.quantization;
  if (!q || q.scale.length !== 1) throw new Error(`tensor ${t.name}: reference needs per-tensor quantisation`);
  return { scale: q.scale[0], zeroPoint: q.zeroPoint[0] };
}

/** The uint8 range a fused activation leaves, as TFLite's CalculateActivationRangeUint8. */
function activationRange(activation: Activation, scale: number, zeroPoint: number): [number, number] {
  const quantize = (v: number) => zeroPoint + Math.round(v / scale);
  if (activation === 'none') return [0, 255];
  if (activation === 'relu') return [Math.max(0, quantize(0)), 255];
  if (activation === 'relu6') return [Math.max(0, quantize(0)), Math.min(255, quantize(6))];
  if (activation === 'relu_n1_to_1') return [Math.max(0, quantize(-1)), Math.min(255, quantize(1))];
  throw new Error(`reference: fused activation ${activation} is not supported`);
}

function samePad(size: number, kernel: number, stride: number, dilation: number, padding: Padding): { out: number; before: number } {
  const effective = (kernel - 1) * dilation + 1;
  if (padding === 'valid') return { out: Math.floor((size - effective) / stride) + 1, before: 0 };
  const out = Math.ceil(size / stride);
  const total = Math.max(0, (out - 1) * stride + effective - size);
  return { out, before: Math.floor(total / 2) };
}

function runOp(
  model: TfliteModel,
  op: TfliteOperator,
  x: QuantizedActivation,
  values: Map<number, QuantizedActivation>,
  out: TfliteTensor,
): QuantizedActivation {
  const o = op.options;
  const { scale: outScale, zeroPoint: outZero } = params(out);
  switch (op.builtinCode) {
    case BuiltinOperator.CONV_2D:
    case BuiltinOperator.DEPTHWISE_CONV_2D: {
      if (o.kind !== 'conv2d' && o.kind !== 'depthwiseConv2d') throw new Error(`${op.opName}: options ${o.kind}`);
      const w = model.tensors[op.inputs[1]];
      const b = op.inputs[2] >= 0 ? model.tensors[op.inputs[2]] : null;
      const wp = params(w);
      const bias = b ? readIntegers(b) : null;
      const [, h, wIn, cIn] = x.shape;
      const depthwise = o.kind === 'depthwiseConv2d';
      const [kh, kw] = [w.shape[1], w.shape[2]];
      const cOut = depthwise ? w.shape[3] : w.shape[0];
      const multiplier = depthwise ? cOut / cIn : 1;
      const rows = samePad(h, kh, o.strideH, o.dilationH, o.padding);
      const cols = samePad(wIn, kw, o.strideW, o.dilationW, o.padding);
      const data = w.data as Uint8Array;
      // Filter as [kh][kw][cIn (or 1)][cOut] with zero points removed, so the inner loop runs over cOut.
      const inner = depthwise ? 1 : cIn;
      const filter = new Int32Array(kh * kw * inner * cOut);
      for (let oc = 0; oc < cOut; oc++)
        for (let y = 0; y < kh; y++)
          for (let xx = 0; xx < kw; xx++)
            for (let ic = 0; ic < inner; ic++) {
              const src = depthwise ? (y * kw + xx) * cOut + oc : ((oc * kh + y) * kw + xx) * cIn + ic;
              filter[((y * kw + xx) * inner + ic) * cOut + oc] = data[src] - wp.zeroPoint;
            }
      const multiplierReal = (x.scale * wp.scale) / outScale;
      const [lo, hi] = activationRange(o.activation, outScale, outZero);
      const result = new Uint8Array(rows.out * cols.out * cOut);
      const acc = new Int32Array(cOut);
      for (let oy = 0; oy < rows.out; oy++) {
        for (let ox = 0; ox < cols.out; ox++) {
          if (bias) for (let oc = 0; oc < cOut; oc++) acc[oc] = bias[oc];
          else acc.fill(0);
          for (let y = 0; y < kh; y++) {
            const iy = oy * o.strideH - rows.before + y * o.dilationH;
            if (iy < 0 || iy >= h) continue; // padding holds the zero point: contributes 0
            for (let xx = 0; xx < kw; xx++) {
              const ix = ox * o.strideW - cols.before + xx * o.dilationW;
              if (ix < 0 || ix >= wIn) continue;
              const pixel = (iy * wIn + ix) * cIn;
              const tap = (y * kw + xx) * inner * cOut;
              if (depthwise) {
                for (let oc = 0; oc < cOut; oc++) acc[oc] += (x.q[pixel + Math.floor(oc / multiplier)] - x.zeroPoint) * filter[tap + oc];
              } else {
                for (let ic = 0; ic < cIn; ic++) {
                  const v = x.q[pixel + ic] - x.zeroPoint;
                  if (v === 0) continue;
                  const row = tap + ic * cOut;
                  for (let oc = 0; oc < cOut; oc++) acc[oc] += v * filter[row + oc];
                }
              }
            }
          }
          const base = (oy * cols.out + ox) * cOut;
          for (let oc = 0; oc < cOut; oc++) result[base + oc] = clamp(Math.round(acc[oc] * multiplierReal) + outZero, lo, hi);
        }
      }
      return { q: result, shape: [1, rows.out, cols.out, cOut], scale: outScale, zeroPoint: outZero };
    }
    case BuiltinOperator.ADD: {
      if (o.kind !== 'activation') throw new Error(`${op.opName}: options ${o.kind}`);
      const y = values.get(op.inputs[1]);
      if (!y || y.q.length !== x.q.length) throw new Error(`${op.opName} #${op.index}: reference adds same-shape activations only`);
      const [lo, hi] = activationRange(o.activation, outScale, outZero);
      const q = new Uint8Array(x.q.length);
      for (let i = 0; i < q.length; i++) {
        const real = x.scale * (x.q[i] - x.zeroPoint) + y.scale * (y.q[i] - y.zeroPoint);
        q[i] = clamp(Math.round(real / outScale) + outZero, lo, hi);
      }
      return { q, shape: x.shape, scale: outScale, zeroPoint: outZero };
    }
    case BuiltinOperator.AVERAGE_POOL_2D: {
      if (o.kind !== 'pool2d') throw new Error(`${op.opName}: options ${o.kind}`);
      const [, h, w, c] = x.shape;
      const rows = samePad(h, o.filterH, o.strideH, 1, o.padding);
      const cols = samePad(w, o.filterW, o.strideW, 1, o.padding);
      const [lo, hi] = activationRange(o.activation, outScale, outZero);
      const q = new Uint8Array(rows.out * cols.out * c);
      for (let oy = 0; oy < rows.out; oy++)
        for (let ox = 0; ox < cols.out; ox++)
          for (let ch = 0; ch < c; ch++) {
            let sum = 0;
            let count = 0;
            for (let y = 0; y < o.filterH; y++)
              for (let xx = 0; xx < o.filterW; xx++) {
                const iy = oy * o.strideH - rows.before + y;
                const ix = ox * o.strideW - cols.before + xx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                sum += x.q[(iy * w + ix) * c + ch] - x.zeroPoint;
                count++;
              }
            q[(oy * cols.out + ox) * c + ch] = clamp(Math.round(((sum / count) * x.scale) / outScale) + outZero, lo, hi);
          }
      return { q, shape: [1, rows.out, cols.out, c], scale: outScale, zeroPoint: outZero };
    }
    case BuiltinOperator.SQUEEZE:
    case BuiltinOperator.RESHAPE: {
      const n = x.q.length;
      return { ...x, shape: [1, n], scale: outScale, zeroPoint: outZero };
    }
    case BuiltinOperator.SOFTMAX: {
      if (o.kind !== 'softmax') throw new Error(`${op.opName}: options ${o.kind}`);
      const real = Array.from(x.q, (q) => o.beta * x.scale * (q - x.zeroPoint));
      const max = Math.max(...real);
      const exp = real.map((v) => Math.exp(v - max));
      const total = exp.reduce((a, b) => a + b, 0);
      return { q: Uint8Array.from(exp, (e) => clamp(Math.round(e / total / outScale) + outZero, 0, 255)), shape: x.shape, scale: outScale, zeroPoint: outZero };
    }
    default:
      throw new Error(`reference: operator ${op.opName} is not supported`);
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
