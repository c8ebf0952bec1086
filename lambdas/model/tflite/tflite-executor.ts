/**
 * Runs a TFLite model's float plan (tflite-graph.ts) with TF.js ops, on whichever backend is
 * active (wasm, cpu, or tfjs-node's `tensorflow`), at any square input size, and pools the chosen
 * tensor globally into one feature vector per image.
 *
 * Convolutions use TF.js's fused kernels (bias and ReLU/ReLU6 in the same call), which the wasm
 * backend hands to XNNPACK. TF.js 'same' padding is TensorFlow's, which TFLite follows (the extra
 * row/column of an even pad goes at the bottom/right).
 */
import * as tf from '@tensorflow/tfjs-core';
import { FEATURIZE_SETTINGS } from '../../contracts/handler-env';
import type { Activation } from './tflite-schema';
import { FloatGraphPlan, planFloatGraph, PlanOp, PlanOptions, pooledWidths, ValueId } from './tflite-graph';
import type { TfliteModel } from './tflite-model';

/** `avg`: mean over space. `max`: maximum. `gem`: generalised mean (mean of x^p)^(1/p), p = 3 by default. */
export type GlobalPooling = 'avg' | 'max' | 'gem';

/** GeM is defined on non-negative inputs: values are floored here first (linear bottleneck layers go negative). */
export const GEM_EPSILON = 1e-6;

type FusedActivation = 'linear' | 'relu' | 'relu6';

/** Weights of one op as tensors, created once. */
interface OpWeights {
  readonly filter?: tf.Tensor4D;
  readonly matrix?: tf.Tensor2D;
  readonly bias?: tf.Tensor1D;
}

export class TfliteExecutor {
  private readonly weights: OpWeights[];
  private readonly constants = new Map<ValueId, tf.Tensor>();
  /** Index of the last op reading each value: it is disposed right after (bounds memory at batch 32, 224 px). */
  private readonly lastUse = new Map<ValueId, number>();
  private disposed = false;

  constructor(readonly plan: FloatGraphPlan) {
    for (const [id, constant] of plan.constants) this.constants.set(id, tf.tensor(constant.data, [...constant.shape], 'float32'));
    this.weights = plan.ops.map(createWeights);
    plan.ops.forEach((op, i) => op.inputs.forEach((id) => this.lastUse.set(id, i)));
  }

  static fromModel(model: TfliteModel, options: PlanOptions = {}): TfliteExecutor {
    return new TfliteExecutor(planFloatGraph(model, options));
  }

  get outputName(): string {
    return this.plan.outputName;
  }

  /**
   * `pixels`: [batch, size, size, channels] raw uint8 values (any dtype) -> the plan's output
   * tensor, e.g. [batch, h, w, c] for a feature map or [batch, 1001] for probabilities. The
   * caller disposes the result.
   */
  run(pixels: tf.Tensor4D): tf.Tensor {
    const all = this.runAll(pixels);
    const last = all.pop() as tf.Tensor;
    for (const other of all) other.dispose();
    return last;
  }

  /** Every tensor of `plan.outputs`, in that order, from one pass. The caller disposes them. */
  runAll(pixels: tf.Tensor4D): tf.Tensor[] {
    if (this.disposed) throw new Error('TfliteExecutor was disposed');
    if (pixels.shape[3] !== this.plan.inputChannels) throw new Error(`input has ${pixels.shape[3]} channels, model takes ${this.plan.inputChannels}`);
    const kept = new Set(this.plan.outputs);
    const values = new Map<ValueId, tf.Tensor>();
    const { inputScale, inputZeroPoint } = this.plan;
    values.set(
      this.plan.input,
      tf.tidy(() => tf.mul(tf.sub(tf.cast(pixels, 'float32'), inputZeroPoint), inputScale)),
    );
    try {
      this.plan.ops.forEach((op, i) => {
        const inputs = op.inputs.map((id) => {
          const value = values.get(id) ?? this.constants.get(id);
          if (!value) throw new Error(`${op.opName} #${op.opIndex}: input ${id} was not computed`);
          return value;
        });
        values.set(
          op.output,
          tf.tidy(() => applyClip(op, runOp(op, inputs, this.weights[i]))),
        );
        for (const id of op.inputs) {
          if (this.lastUse.get(id) === i && !kept.has(id)) {
            values.get(id)?.dispose();
            values.delete(id);
          }
        }
      });
      for (const id of this.plan.outputs) if (!values.has(id)) throw new Error(`output ${this.plan.names.get(id) ?? id} was not computed`);
      const outputs = new Map([...kept].map((id) => [id, values.get(id) as tf.Tensor]));
      for (const id of kept) values.delete(id);
      // An output asked for twice is handed out as a clone, so that each can be disposed on its own.
      const handed = new Set<ValueId>();
      return this.plan.outputs.map((id) => {
        const out = outputs.get(id) as tf.Tensor;
        if (handed.has(id)) return out.clone();
        handed.add(id);
        return out;
      });
    } finally {
      for (const value of values.values()) value.dispose();
    }
  }

  dispose(): void {
    this.disposed = true;
    for (const w of this.weights) for (const t of Object.values(w)) (t as tf.Tensor).dispose();
    for (const t of this.constants.values()) t.dispose();
  }
}

function createWeights(op: PlanOp): OpWeights {
  const bias = 'bias' in op && op.bias ? tf.tensor1d(op.bias) : undefined;
  if (op.kind === 'conv2d') {
    const [o, h, w, i] = op.filterShape;
    // OHWI (TFLite) -> HWIO (TF.js)
    return { filter: tf.tidy(() => tf.transpose(tf.tensor4d(op.filter, [o, h, w, i]), [1, 2, 3, 0])), bias };
  }
  if (op.kind === 'depthwiseConv2d') {
    const [, h, w, channels] = op.filterShape;
    // [1, H, W, C*M] -> [H, W, C, M]: output channel c*M + m is already C-major.
    return { filter: tf.tensor4d(op.filter, [h, w, channels / op.depthMultiplier, op.depthMultiplier]), bias };
  }
  if (op.kind === 'fullyConnected') return { matrix: tf.tensor2d(op.weights, [...op.weightsShape]), bias };
  return {};
}

/** The activation TF.js can fuse into the kernel, and what is left to apply after it. */
function splitActivation(activation: Activation): { fused: FusedActivation; after: Activation } {
  if (activation === 'none') return { fused: 'linear', after: 'none' };
  if (activation === 'relu' || activation === 'relu6') return { fused: activation, after: 'none' };
  return { fused: 'linear', after: activation };
}

function applyActivation(x: tf.Tensor, activation: Activation, where: string): tf.Tensor {
  switch (activation) {
    case 'none':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'relu_n1_to_1':
      return tf.clipByValue(x, -1, 1);
    case 'tanh':
      return tf.tanh(x);
    default:
      throw new Error(`${where}: fused activation ${activation} is not supported`);
  }
}

function applyClip(op: PlanOp, x: tf.Tensor): tf.Tensor {
  return op.clip ? tf.clipByValue(x, op.clip[0], op.clip[1]) : x;
}

function runOp(op: PlanOp, inputs: tf.Tensor[], weights: OpWeights): tf.Tensor {
  const where = `${op.opName} #${op.opIndex}`;
  const [x] = inputs;
  const { fused, after } = splitActivation(op.activation);
  const post = (y: tf.Tensor) => applyActivation(y, after, where);
  switch (op.kind) {
    case 'conv2d':
    case 'depthwiseConv2d': {
      const args = {
        x: x as tf.Tensor4D,
        filter: weights.filter as tf.Tensor4D,
        strides: [...op.strides] as [number, number],
        pad: op.padding,
        dilations: [...op.dilations] as [number, number],
        bias: weights.bias,
        activation: fused,
      };
      return post(op.kind === 'conv2d' ? tf.fused.conv2d(args) : tf.fused.depthwiseConv2d(args));
    }
    case 'fullyConnected': {
      const flat = tf.reshape(x, [-1, op.weightsShape[1]]) as tf.Tensor2D;
      return post(tf.fused.matMul({ a: flat, b: weights.matrix as tf.Tensor2D, transposeB: true, bias: weights.bias, activation: fused }));
    }
    case 'add':
      return applyActivation(tf.add(inputs[0], inputs[1]), op.activation, where);
    case 'sub':
      return applyActivation(tf.sub(inputs[0], inputs[1]), op.activation, where);
    case 'mul':
      return applyActivation(tf.mul(inputs[0], inputs[1]), op.activation, where);
    case 'avgPool':
    case 'maxPool': {
      let y: tf.Tensor;
      if (op.global) y = op.kind === 'avgPool' ? tf.mean(x, [1, 2], true) : tf.max(x, [1, 2], true);
      else if (op.kind === 'avgPool') y = tf.avgPool(x as tf.Tensor4D, [...op.filter] as [number, number], [...op.strides] as [number, number], op.padding);
      else y = tf.maxPool(x as tf.Tensor4D, [...op.filter] as [number, number], [...op.strides] as [number, number], op.padding);
      return applyActivation(y, op.activation, where);
    }
    case 'concat':
      return applyActivation(tf.concat(inputs, op.axis), op.activation, where);
    case 'mean':
      return tf.mean(x, [...op.axes], op.keepDims);
    case 'reduceMax':
      return tf.max(x, [...op.axes], op.keepDims);
    case 'reshape':
      return tf.reshape(x, [...op.shape]);
    case 'squeeze':
      return tf.squeeze(x, [...op.axes]);
    case 'softmax':
      return tf.softmax(op.beta === 1 ? x : tf.mul(x, op.beta));
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'logistic':
      return tf.sigmoid(x);
    case 'hardSwish':
      return tf.div(tf.mul(x, tf.relu6(tf.add(x, 3))), 6);
    case 'identity':
      return tf.clone(x);
  }
}

/** [batch, h, w, c] -> [batch, c], pooled over h and w. */
export function globalPool(maps: tf.Tensor4D, pooling: GlobalPooling, gemP = 3): tf.Tensor2D {
  return tf.tidy(() => {
    if (pooling === 'avg') return tf.mean(maps, [1, 2]) as tf.Tensor2D;
    if (pooling === 'max') return tf.max(maps, [1, 2]) as tf.Tensor2D;
    const powered = tf.mean(tf.pow(tf.maximum(maps, GEM_EPSILON), gemP), [1, 2]);
    return tf.pow(powered, 1 / gemP) as tf.Tensor2D;
  });
}

export interface TfliteFeatureExtractorOptions extends PlanOptions {
  /** Square side of the images given to `extract`. @default the model's own (224) */
  readonly imageSize?: number;
  /** @default 'avg' */
  readonly pooling?: GlobalPooling;
  /** Exponent of `gem` pooling. @default 3 */
  readonly gemP?: number;
  /** Images per inference call: bounds tensor memory. @default 32 */
  readonly batchSize?: number;
  /**
   * Several feature maps from one pass, each pooled globally (its own pooling, else `pooling`),
   * side by side in this order; overrides `output`/`outputs`.
   */
  readonly taps?: readonly { readonly tensor: string; readonly pooling?: GlobalPooling }[];
}

export interface TfliteFeatureExtractor {
  /** Short name of the pooled tensor(s), e.g. `MobilenetEdgeTPU/expanded_conv_12/add` (`+` between taps). */
  readonly outputName: string;
  readonly imageSize: number;
  /** Floats per image: the pooled tensors' channels (or the flattened size of a tensor that is not a map). */
  readonly dim: number;
  readonly executor: TfliteExecutor;
  /** `images`: imageSize x imageSize x 3 uint8 RGB each. Returns count x dim, row-major. */
  extract(images: readonly Uint8Array[]): Promise<Float32Array>;
  dispose(): void;
}

/** Features of one or more tensors of a TFLite model, pooled globally, on the active TF.js backend. */
export function createTfliteFeatureExtractor(model: TfliteModel, options: TfliteFeatureExtractorOptions = {}): TfliteFeatureExtractor {
  const taps = options.taps ?? [];
  const executor = TfliteExecutor.fromModel(model, taps.length ? { ...options, outputs: taps.map((tap) => tap.tensor) } : options);
  const { plan } = executor;
  const imageSize = options.imageSize ?? plan.nominalSize;
  const poolings = plan.outputs.map((_, i) => taps[i]?.pooling ?? options.pooling ?? 'avg');
  const batchSize = options.batchSize ?? FEATURIZE_SETTINGS.inferBatchSize.default;
  const dim = pooledWidths(model, plan.outputs, imageSize).reduce((a, b) => a + b, 0);
  const pixelsPerImage = imageSize * imageSize * plan.inputChannels;
  return {
    outputName: plan.outputs.map((id) => plan.names.get(id)).join('+'),
    imageSize,
    dim,
    executor,
    async extract(images) {
      const out = new Float32Array(images.length * dim);
      for (let start = 0; start < images.length; start += batchSize) {
        const chunk = images.slice(start, start + batchSize);
        const pixels = new Uint8Array(chunk.length * pixelsPerImage);
        chunk.forEach((rgb, i) => {
          if (rgb.length !== pixelsPerImage) throw new Error(`image holds ${rgb.length} bytes, expected ${imageSize}x${imageSize}x${plan.inputChannels}`);
          pixels.set(rgb, i * pixelsPerImage);
        });
        const input = tf.tensor4d(Int32Array.from(pixels), [chunk.length, imageSize, imageSize, plan.inputChannels], 'int32');
        let features: tf.Tensor;
        try {
          const maps = executor.runAll(input);
          features = tf.tidy(() => {
            const pooled = maps.map((map, i) =>
              map.rank === 4 ? globalPool(map as tf.Tensor4D, poolings[i], options.gemP) : tf.reshape(map, [chunk.length, -1]),
            );
            return pooled.length === 1 ? pooled[0] : tf.concat(pooled, 1);
          });
          maps.forEach((map) => map.dispose());
        } finally {
          input.dispose();
        }
        try {
          out.set(await features.data<'float32'>(), start * dim);
        } finally {
          features.dispose();
        }
      }
      return out;
    },
    dispose: () => executor.dispose(),
  };
}
