/**
 * A TFLite model's float plan (the same one the TF.js executor runs, see tflite-graph.ts), up to a
 * chosen tensor (or several: taps), plus a global pool -> an ONNX model for ONNX Runtime. The
 * featurizer builds it in memory at start (about 0.1 s); tools/tflite-to-onnx.ts writes it to a file.
 *
 * The ONNX graph takes `pixels`, float32 [batch, 3, height, width] holding the raw 0-255 RGB
 * values (NCHW, ONNX's convolution layout), with batch and spatial size dynamic; it applies the
 * model's input quantisation ((x - zero_point) * scale) itself and returns `features`
 * [batch, channels]. Weights are the dequantised float32 ones: TFLite OHWI filters become OIHW,
 * depthwise filters [1, H, W, C*M] become [C*M, 1, H, W] convolutions with group = C, RELU6 becomes
 * Clip(0, 6), and TFLite SAME padding is ONNX auto_pad SAME_UPPER (the extra row/column at the end).
 *
 */
import { onnx } from 'onnx-proto';
import type { Activation } from './tflite-schema';
import { FloatGraphPlan, inferShapesAt, planFloatGraph, PlanOp, ValueId } from './tflite-graph';
import type { TfliteModel } from './tflite-model';

/** `none`: the tensor itself (e.g. the probabilities of the full graph). */
export type OnnxPooling = 'avg' | 'max' | 'gem' | 'none';

/** One pooled tensor of a multi-tensor model. */
export interface OnnxTap {
  readonly tensor: string;
  /** @default the options' pooling */
  readonly pooling?: Exclude<OnnxPooling, 'none'>;
}

export interface TfliteToOnnxOptions {
  /** Tensor to stop at (full name, short name, or unique suffix). @default the model's output */
  readonly output?: string;
  /**
   * Several feature maps from one pass, each pooled globally, side by side in `features` (in this
   * order); overrides `output`.
   */
  readonly taps?: readonly OnnxTap[];
  /** @default 'avg' (ignored when the tensor is not a 4-D map) */
  readonly pooling?: OnnxPooling;
  /** GeM exponent. @default 3 */
  readonly gemP?: number;
  /** See PlanOptions.clampToQuantizedRange. @default false */
  readonly clampToQuantizedRange?: boolean;
}

export const ONNX_INPUT = 'pixels';
export const ONNX_OUTPUT = 'features';
/** Opset 17: ReduceMean still takes `axes` as an attribute; ONNX Runtime 1.x runs it. */
const OPSET = 17;
/** Same floor as the TF.js executor's GeM. */
const GEM_EPSILON = 1e-6;

/** Build the ONNX model bytes. */
export function tfliteToOnnx(model: TfliteModel, options: TfliteToOnnxOptions = {}): Uint8Array {
  const taps = options.taps ?? [];
  const plan = planFloatGraph(model, {
    output: options.output,
    outputs: taps.map((tap) => tap.tensor),
    clampToQuantizedRange: options.clampToQuantizedRange,
  });
  const graph = new OnnxGraphBuilder(plan, inferShapesAt(model, plan.nominalSize));
  const gemP = options.gemP ?? 3;
  const features = taps.length
    ? graph.convertTaps(
        taps.map((tap) => tap.pooling ?? (options.pooling === 'none' ? 'avg' : (options.pooling ?? 'avg'))),
        gemP,
      )
    : graph.convert(options.pooling ?? 'avg', gemP);
  const proto = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'fruits-pipeline lambdas/model/tflite/tflite-onnx.ts',
    opsetImport: [{ domain: '', version: OPSET }],
    docString: `${plan.outputName} of a TFLite model, float32 (dequantised weights)`,
    graph: onnx.GraphProto.create({
      name: 'tflite',
      node: graph.nodes,
      initializer: graph.initializers,
      input: [valueInfo(ONNX_INPUT, ['batch', plan.inputChannels, 'height', 'width'])],
      output: [valueInfo(ONNX_OUTPUT, features.dims)],
    }),
  });
  return onnx.ModelProto.encode(proto).finish();
}

function valueInfo(name: string, dims: readonly (number | string)[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

type Attribute = number | number[] | string;

/** NHWC axis -> NCHW axis for 4-D values. */
const NCHW_AXIS = [0, 2, 3, 1];

class OnnxGraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  private readonly valueNames = new Map<ValueId, string>();
  private counter = 0;

  constructor(
    private readonly plan: FloatGraphPlan,
    /** Shapes at the model's own size: only their rank is used (layout decisions). */
    private readonly shapes: ReadonlyMap<ValueId, readonly number[]>,
  ) {}

  convert(pooling: OnnxPooling, gemP: number): { name: string; dims: (number | string)[] } {
    const { plan } = this;
    this.convertBody();

    const out = this.name(plan.output);
    const shape = this.rankOf(plan.output) === 4 ? (this.shapes.get(plan.output) as readonly number[]) : null;
    let features: string;
    let dims: (number | string)[];
    if (shape && pooling !== 'none') {
      features = this.node('Flatten', [this.pool(out, pooling, gemP)], { axis: 1 }, ONNX_OUTPUT);
      dims = ['batch', shape[3]];
    } else {
      // A map returned as is goes back to NHWC, the layout the TF.js executor returns.
      features = shape ? this.node('Transpose', [out], { perm: [0, 2, 3, 1] }, ONNX_OUTPUT) : this.node('Identity', [out], {}, ONNX_OUTPUT);
      const outShape = this.shapes.get(plan.output) ?? [];
      dims = shape ? ['batch', 'out_height', 'out_width', shape[3]] : ['batch', ...outShape.slice(1)];
    }
    return { name: features, dims };
  }

  /** Each of `plan.outputs` pooled globally with its pooling, concatenated: [batch, sum of channels]. */
  convertTaps(poolings: readonly Exclude<OnnxPooling, 'none'>[], gemP: number): { name: string; dims: (number | string)[] } {
    this.convertBody();
    let channels = 0;
    const pooled = this.plan.outputs.map((id, i) => {
      const shape = this.shapes.get(id);
      if (!shape || shape.length !== 4) throw new Error(`tap ${this.plan.names.get(id)} is not a feature map`);
      channels += shape[3];
      return this.node('Flatten', [this.pool(this.name(id), poolings[i], gemP)], { axis: 1 });
    });
    const features = pooled.length === 1 ? this.node('Identity', pooled, {}, ONNX_OUTPUT) : this.node('Concat', pooled, { axis: 1 }, ONNX_OUTPUT);
    return { name: features, dims: ['batch', channels] };
  }

  /** The input scaling and every op of the plan. */
  private convertBody(): void {
    const { plan } = this;
    const shifted = this.node('Sub', [ONNX_INPUT, this.constant('input_zero_point', [plan.inputZeroPoint], [])]);
    this.valueNames.set(plan.input, this.node('Mul', [shifted, this.constant('input_scale', [plan.inputScale], [])]));
    for (const op of plan.ops) this.valueNames.set(op.output, this.clip(op, this.convertOp(op)));
  }

  /** [batch, C, H, W] -> [batch, C, 1, 1]. */
  private pool(map: string, pooling: Exclude<OnnxPooling, 'none'>, gemP: number): string {
    if (pooling === 'avg') return this.node('GlobalAveragePool', [map]);
    if (pooling === 'max') return this.node('GlobalMaxPool', [map]);
    const floored = this.node('Max', [map, this.constant('gem_epsilon', [GEM_EPSILON], [])]);
    const mean = this.node('GlobalAveragePool', [this.node('Pow', [floored, this.constant('gem_p', [gemP], [])])]);
    return this.node('Pow', [mean, this.constant('gem_inverse_p', [1 / gemP], [])]);
  }

  private rankOf(id: ValueId): number {
    const shape = this.shapes.get(id);
    if (!shape) throw new Error(`no shape for value ${id} (${this.plan.names.get(id)})`);
    return shape.length;
  }

  private name(id: ValueId): string {
    const name = this.valueNames.get(id);
    if (name) return name;
    const constant = this.plan.constants.get(id);
    if (!constant) throw new Error(`value ${id} (${this.plan.names.get(id)}) was not converted`);
    // Constants broadcast against NHWC maps: a scalar or a per-channel vector maps to NCHW as [C, 1, 1].
    if (constant.shape.length > 1 && constant.shape.slice(0, -1).some((d) => d !== 1)) {
      throw new Error(`constant ${this.plan.names.get(id) ?? id} of shape [${constant.shape}] is not supported (only scalars and per-channel vectors)`);
    }
    const channels = constant.data.length;
    const dims = channels === 1 ? [] : [channels, 1, 1];
    const created = this.constant(`const_${id}`, Array.from(constant.data), dims);
    this.valueNames.set(id, created);
    return created;
  }

  /** A value in NHWC order for ops that see the layout (reshape, flatten): rank-4 NCHW values get transposed back. */
  private nhwc(id: ValueId): string {
    return this.rankOf(id) === 4 ? this.node('Transpose', [this.name(id)], { perm: [0, 2, 3, 1] }) : this.name(id);
  }

  // eslint-disable-next-line max-lines-per-function -- one case per plan operator, each its few ONNX nodes
  private convertOp(op: PlanOp): string {
    const inputs = op.inputs.map((id) => this.name(id));
    const [x] = inputs;
    switch (op.kind) {
      case 'conv2d':
      case 'depthwiseConv2d': {
        const [o, h, w, i] = op.filterShape;
        const depthwise = op.kind === 'depthwiseConv2d';
        // OHWI -> OIHW; depthwise [1, H, W, C*M] -> [C*M, 1, H, W].
        const outChannels = depthwise ? i : o;
        const inPerGroup = depthwise ? 1 : i;
        const weights = new Float32Array(outChannels * inPerGroup * h * w);
        for (let oc = 0; oc < outChannels; oc++)
          for (let ic = 0; ic < inPerGroup; ic++)
            for (let y = 0; y < h; y++)
              for (let xx = 0; xx < w; xx++) {
                const src = depthwise ? (y * w + xx) * outChannels + oc : ((oc * h + y) * w + xx) * i + ic;
                weights[((oc * inPerGroup + ic) * h + y) * w + xx] = op.filter[src];
              }
        const convInputs = [x, this.constant(`w_${op.opIndex}`, weights, [outChannels, inPerGroup, h, w])];
        if (op.bias) convInputs.push(this.constant(`b_${op.opIndex}`, op.bias, [outChannels]));
        const conv = this.node('Conv', convInputs, {
          kernel_shape: [h, w],
          strides: [...op.strides],
          dilations: [...op.dilations],
          group: depthwise ? outChannels / op.depthMultiplier : 1,
          auto_pad: op.padding === 'same' ? 'SAME_UPPER' : 'VALID',
        });
        return this.activation(conv, op.activation, op);
      }
      case 'fullyConnected': {
        const flat = this.node('Reshape', [this.nhwc(op.inputs[0]), this.int64Constant(`shape_${op.opIndex}`, [-1, op.weightsShape[1]])]);
        const gemmInputs = [flat, this.constant(`w_${op.opIndex}`, op.weights, [...op.weightsShape])];
        if (op.bias) gemmInputs.push(this.constant(`b_${op.opIndex}`, op.bias, [op.weightsShape[0]]));
        return this.activation(this.node('Gemm', gemmInputs, { transB: 1 }), op.activation, op);
      }
      case 'add':
      case 'sub':
      case 'mul':
        return this.activation(this.node({ add: 'Add', sub: 'Sub', mul: 'Mul' }[op.kind], inputs), op.activation, op);
      case 'avgPool':
      case 'maxPool': {
        const pool = op.global
          ? this.node(op.kind === 'avgPool' ? 'GlobalAveragePool' : 'GlobalMaxPool', [x])
          : this.node(op.kind === 'avgPool' ? 'AveragePool' : 'MaxPool', [x], {
              kernel_shape: [...op.filter],
              strides: [...op.strides],
              auto_pad: op.padding === 'same' ? 'SAME_UPPER' : 'VALID',
            });
        return this.activation(pool, op.activation, op);
      }
      case 'concat': {
        const rank = this.rankOf(op.output);
        const axis = op.axis < 0 ? op.axis + rank : op.axis;
        return this.activation(this.node('Concat', inputs, { axis: rank === 4 ? NCHW_AXIS[axis] : axis }), op.activation, op);
      }
      case 'mean':
      case 'reduceMax': {
        const rank = this.rankOf(op.inputs[0]);
        const axes = op.axes.map((a) => (a < 0 ? a + rank : a));
        if (rank === 4 && !op.keepDims && !(axes.length === 2 && axes.includes(1) && axes.includes(2))) {
          throw new Error(`${op.opName} #${op.opIndex}: reducing axes [${op.axes}] of a map without keep_dims is not supported`);
        }
        const reduced = this.node(op.kind === 'mean' ? 'ReduceMean' : 'ReduceMax', [x], {
          axes: rank === 4 ? axes.map((a) => NCHW_AXIS[a]) : axes,
          keepdims: op.keepDims ? 1 : 0,
        });
        return reduced;
      }
      case 'reshape':
        return this.node('Reshape', [this.nhwc(op.inputs[0]), this.int64Constant(`shape_${op.opIndex}`, [...op.shape])]);
      case 'squeeze': {
        const rank = this.rankOf(op.inputs[0]);
        const axes = op.axes.map((a) => (a < 0 ? a + rank : a)).map((a) => (rank === 4 ? NCHW_AXIS[a] : a));
        return this.node('Squeeze', [x, this.int64Constant(`axes_${op.opIndex}`, axes)]);
      }
      case 'softmax': {
        const scaled = op.beta === 1 ? x : this.node('Mul', [x, this.constant(`beta_${op.opIndex}`, [op.beta], [])]);
        return this.node('Softmax', [scaled], { axis: this.rankOf(op.inputs[0]) === 4 ? 1 : -1 });
      }
      case 'relu':
        return this.node('Relu', [x]);
      case 'relu6':
        return this.activation(x, 'relu6', op);
      case 'logistic':
        return this.node('Sigmoid', [x]);
      case 'hardSwish':
        return this.node('HardSwish', [x]);
      case 'identity':
        return this.node('Identity', [x]);
    }
  }

  private activation(x: string, activation: Activation, op: PlanOp): string {
    switch (activation) {
      case 'none':
        return x;
      case 'relu':
        return this.node('Relu', [x]);
      case 'relu6':
        return this.node('Clip', [x, this.constant('zero', [0], []), this.constant('six', [6], [])]);
      case 'relu_n1_to_1':
        return this.node('Clip', [x, this.constant('minus_one', [-1], []), this.constant('one', [1], [])]);
      case 'tanh':
        return this.node('Tanh', [x]);
      default:
        throw new Error(`${op.opName} #${op.opIndex}: fused activation ${activation} is not supported`);
    }
  }

  private clip(op: PlanOp, x: string): string {
    if (!op.clip) return x;
    return this.node('Clip', [x, this.constant(`clip_lo_${op.opIndex}`, [op.clip[0]], []), this.constant(`clip_hi_${op.opIndex}`, [op.clip[1]], [])]);
  }

  private node(opType: string, inputs: string[], attributes: Record<string, Attribute> = {}, output?: string): string {
    const name = output ?? `${opType.toLowerCase()}_${this.counter++}`;
    this.nodes.push({
      opType,
      name,
      input: inputs,
      output: [name],
      attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
    });
    return name;
  }

  private readonly shared = new Map<string, string>();
  private constant(name: string, values: ArrayLike<number>, dims: number[]): string {
    if (this.shared.has(name)) return name;
    this.shared.set(name, name);
    const data = Float32Array.from(values);
    this.initializers.push({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  private int64Constant(name: string, values: number[]): string {
    const data = BigInt64Array.from(values.map(BigInt));
    this.initializers.push({ name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }
}

function attribute(name: string, value: Attribute): onnx.IAttributeProto {
  const type = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: type.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: type.INTS, ints: value };
  return Number.isInteger(value) ? { name, type: type.INT, i: value } : { name, type: type.FLOAT, f: value };
}

/** uint8 RGB images (HWC each) -> the ONNX model's `pixels` input data, [n, 3, size, size] float32. */
export function toNchwPixels(images: readonly Uint8Array[], size: number, channels = 3): Float32Array {
  const plane = size * size;
  const out = new Float32Array(images.length * channels * plane);
  images.forEach((rgb, n) => {
    if (rgb.length !== plane * channels) throw new Error(`image holds ${rgb.length} bytes, expected ${size}x${size}x${channels}`);
    const base = n * channels * plane;
    for (let p = 0; p < plane; p++) for (let c = 0; c < channels; c++) out[base + c * plane + p] = rgb[p * channels + c];
  });
  return out;
}
