/**
 * A parsed TFLite model -> a float32 graph ("plan") up to one chosen tensor: weights dequantised
 * and laid out once, every op reduced to what a float runtime needs, shapes inferred at any square
 * input size. The TF.js executor (tflite-executor.ts) and the ONNX converter
 * (tflite-onnx.ts) both run from the same plan, so they cannot disagree on semantics.
 *
 * Running dequantised weights in float32 is not the uint8 arithmetic TFLite does (no requantising
 * of activations, no rounding): outputs differ from the interpreter's by about one quantisation
 * step, which is below what ImageNet top-1 or nearest-neighbour features notice.
 */
import type { Activation, Padding } from './tflite-schema';
import { BuiltinOperator } from './tflite-schema';
import { dequantize, quantizedRange, readIntegers, TfliteModel, TfliteOperator, TfliteTensor } from './tflite-model';

/** Index of a tensor in the model; also the id of the value a plan op reads or writes. */
export type ValueId = number;

export interface ConstantValue {
  readonly id: ValueId;
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/**
 * A convolution's weights and window. The filter is as stored in the file: OHWI for `conv2d`;
 * [1, H, W, C * depthMultiplier] for `depthwiseConv2d`, whose output channel c * depthMultiplier + m
 * reads input channel c.
 */
export interface PlanConvolution {
  readonly filter: Float32Array;
  readonly filterShape: readonly [number, number, number, number];
  readonly bias: Float32Array | null;
  readonly strides: readonly [number, number];
  readonly dilations: readonly [number, number];
  readonly padding: Padding;
}

/** Ops in NHWC, as TFLite defines them. `clip` is [min, max] applied after `activation`, if any. */
export type PlanOp = (
  | ({ readonly kind: 'conv2d' } & PlanConvolution)
  | ({ readonly kind: 'depthwiseConv2d'; readonly depthMultiplier: number } & PlanConvolution)
  | {
      readonly kind: 'fullyConnected';
      /** [outputs, inputs] */
      readonly weights: Float32Array;
      readonly weightsShape: readonly [number, number];
      readonly bias: Float32Array | null;
    }
  | { readonly kind: 'add' | 'mul' | 'sub' }
  | {
      readonly kind: 'avgPool' | 'maxPool';
      readonly filter: readonly [number, number];
      readonly strides: readonly [number, number];
      readonly padding: Padding;
      /**
       * The pool covers the whole map at the model's own input size (the classifier head's 7x7
       * average): run as a global pool so the head works at any input size.
       */
      readonly global: boolean;
    }
  | { readonly kind: 'concat'; readonly axis: number }
  | { readonly kind: 'mean' | 'reduceMax'; readonly axes: readonly number[]; readonly keepDims: boolean }
  /** Target shape with the batch dimension as -1 (the file's is the batch of 1 it was saved with). */
  | { readonly kind: 'reshape'; readonly shape: readonly number[] }
  | { readonly kind: 'squeeze'; readonly axes: readonly number[] }
  | { readonly kind: 'softmax'; readonly beta: number }
  | { readonly kind: 'relu' | 'relu6' | 'logistic' | 'hardSwish' | 'identity' }
) & {
  readonly opIndex: number;
  readonly opName: string;
  /** Activation inputs and constants (see FloatGraphPlan.constants); weights are in the op. */
  readonly inputs: readonly ValueId[];
  readonly output: ValueId;
  readonly activation: Activation;
  readonly clip: readonly [number, number] | null;
};

export interface FloatGraphPlan {
  readonly input: ValueId;
  /** float input = scale * (uint8 - zeroPoint): the input tensor's quantisation. */
  readonly inputScale: number;
  readonly inputZeroPoint: number;
  /** The square side the model was saved with (224 for both reference models). */
  readonly nominalSize: number;
  readonly inputChannels: number;
  readonly ops: readonly PlanOp[];
  readonly constants: ReadonlyMap<ValueId, ConstantValue>;
  /** The tensor a single-output plan stops at: the last of `outputs`. */
  readonly output: ValueId;
  readonly outputName: string;
  /** Every tensor the plan computes for its caller, in the order asked (one pass for all). */
  readonly outputs: readonly ValueId[];
  /** Value names (short: see shortTensorName), for debugging and ONNX value names. */
  readonly names: ReadonlyMap<ValueId, string>;
}

export interface PlanOptions {
  /** Tensor to stop at (see resolveActivation). @default the model's output */
  readonly output?: string | ValueId;
  /** Several tensors from one pass (e.g. a middle and a late layer); overrides `output`. */
  readonly outputs?: readonly (string | ValueId)[];
  /**
   * Also clamp every op's output to the range its uint8 tensor can hold, as the quantised model
   * saturates (e.g. [0, 35] after a ReLU). @default false: plain float semantics.
   */
  readonly clampToQuantizedRange?: boolean;
}

/** Ops the plan can run in float. */
const SUPPORTED = new Set<number>([
  BuiltinOperator.CONV_2D,
  BuiltinOperator.DEPTHWISE_CONV_2D,
  BuiltinOperator.FULLY_CONNECTED,
  BuiltinOperator.ADD,
  BuiltinOperator.MUL,
  BuiltinOperator.SUB,
  BuiltinOperator.AVERAGE_POOL_2D,
  BuiltinOperator.MAX_POOL_2D,
  BuiltinOperator.CONCATENATION,
  BuiltinOperator.MEAN,
  BuiltinOperator.REDUCE_MAX,
  BuiltinOperator.RESHAPE,
  BuiltinOperator.SQUEEZE,
  BuiltinOperator.SOFTMAX,
  BuiltinOperator.RELU,
  BuiltinOperator.RELU6,
  BuiltinOperator.LOGISTIC,
  BuiltinOperator.HARD_SWISH,
  BuiltinOperator.QUANTIZE,
  BuiltinOperator.DEQUANTIZE,
]);

/**
 * A tensor's readable name: MLIR-converted files join every fused op's name with ';'
 * ("MobilenetV2/Conv/Relu6;MobilenetV2/Conv/add_fold;..."): the first part names the op's result.
 */
export function shortTensorName(tensor: TfliteTensor): string {
  return tensor.name.split(';')[0];
}

/** Tensors a plan can stop at: the graph inputs and every operator's outputs, in execution order. */
export function activationTensors(model: TfliteModel): TfliteTensor[] {
  const ids = [...model.inputs, ...model.operators.flatMap((op) => op.outputs)];
  return [...new Set(ids)].map((id) => model.tensors[id]);
}

/**
 * The activation tensor `name` designates: its full name, its short name, or a unique
 * `/`-suffix of either (e.g. `expanded_conv_12/add` for `MobilenetEdgeTPU/expanded_conv_12/add`).
 */
export function resolveActivation(model: TfliteModel, name: string): TfliteTensor {
  const candidates = activationTensors(model);
  const exact = candidates.filter((t) => t.name === name || shortTensorName(t) === name);
  if (exact.length === 1) return exact[0];
  const suffixed = exact.length ? exact : candidates.filter((t) => shortTensorName(t).endsWith(`/${name}`));
  if (suffixed.length === 1) return suffixed[0];
  if (suffixed.length > 1) throw new Error(`tensor name "${name}" is ambiguous: ${suffixed.map(shortTensorName).join(', ')}`);
  throw new Error(`model has no activation tensor "${name}" (see listActivations for the names)`);
}

/** Build the float plan of the ops the output depends on. */
export function planFloatGraph(model: TfliteModel, options: PlanOptions = {}): FloatGraphPlan {
  if (model.inputs.length !== 1) throw new Error(`model has ${model.inputs.length} inputs, expected 1 image input`);
  const inputTensor = model.tensors[model.inputs[0]];
  if (inputTensor.shape.length !== 4 || inputTensor.shape[1] !== inputTensor.shape[2]) {
    throw new Error(`model input ${inputTensor.name} has shape [${inputTensor.shape}], expected [1, n, n, c]`);
  }
  const inputQuant = inputTensor.quantization;
  if (inputTensor.type === 'uint8' && !inputQuant) throw new Error(`uint8 input ${inputTensor.name} has no quantisation parameters`);
  const resolve = (name: string | ValueId): ValueId => (typeof name === 'number' ? name : resolveActivation(model, name).index);
  const outputs = options.outputs?.length ? options.outputs.map(resolve) : [options.output === undefined ? model.outputs[0] : resolve(options.output)];
  const output = outputs[outputs.length - 1];

  // Producer of each activation, then the ops the output needs, in file (= execution) order.
  const producer = new Map<ValueId, TfliteOperator>();
  for (const op of model.operators) for (const out of op.outputs) producer.set(out, op);
  const needed = new Set<number>();
  const stack = [...outputs];
  const visited = new Set<ValueId>();
  while (stack.length) {
    const id = stack.pop() as ValueId;
    if (visited.has(id)) continue;
    visited.add(id);
    const op = producer.get(id);
    if (!op) continue;
    needed.add(op.index);
    for (const input of op.inputs) if (input >= 0 && !model.tensors[input].data) stack.push(input);
  }
  for (const id of outputs) if (id !== inputTensor.index && !producer.has(id)) throw new Error(`tensor ${id} is not produced by any operator`);

  const constants = new Map<ValueId, ConstantValue>();
  const names = new Map<ValueId, string>([[inputTensor.index, shortTensorName(inputTensor)]]);
  const ops: PlanOp[] = [];
  for (const op of model.operators) {
    if (!needed.has(op.index)) continue;
    if (!SUPPORTED.has(op.builtinCode)) throw new Error(`operator ${op.opName} (#${op.index}) is not supported by the float executor`);
    if (op.outputs.length !== 1) throw new Error(`operator ${op.opName} (#${op.index}) has ${op.outputs.length} outputs, expected 1`);
    const out = model.tensors[op.outputs[0]];
    names.set(out.index, shortTensorName(out));
    const range = options.clampToQuantizedRange ? quantizedRange(out) : null;
    ops.push(planOp(model, op, range, constants));
  }
  return {
    input: inputTensor.index,
    inputScale: inputQuant?.scale[0] ?? 1,
    inputZeroPoint: inputQuant?.zeroPoint[0] ?? 0,
    nominalSize: inputTensor.shape[1],
    inputChannels: inputTensor.shape[3],
    ops,
    constants,
    output,
    outputName: names.get(output) ?? shortTensorName(model.tensors[output]),
    outputs,
    names,
  };
}

// eslint-disable-next-line max-lines-per-function -- one case per TFLite operator, each a few lines that read on their own
function planOp(model: TfliteModel, op: TfliteOperator, clip: readonly [number, number] | null, constants: Map<ValueId, ConstantValue>): PlanOp {
  const tensors = model.tensors;
  const base = { opIndex: op.index, opName: op.opName, output: op.outputs[0], activation: 'none' as Activation, clip };
  const o = op.options;
  // Activation inputs stay ids; constant inputs (an ADD of a constant, say) become constants.
  const valueInputs = (ids: readonly number[]): ValueId[] =>
    ids.map((id) => {
      const t = tensors[id];
      if (t.data && !constants.has(id)) constants.set(id, { id, data: dequantize(t), shape: t.shape });
      return id;
    });
  const weightsAndBias = () => {
    const [input, weights, bias] = op.inputs.map((id) => (id >= 0 ? tensors[id] : null));
    if (!input || !weights?.data) throw new Error(`${op.opName} #${op.index}: weights are not constant`);
    if (bias && !bias.data) throw new Error(`${op.opName} #${op.index}: bias is not constant`);
    // An int32 bias written without parameters has scale input_scale * weight_scale (quantisation spec).
    const fallback =
      input.quantization && weights.quantization
        ? weights.quantization.scale.map((s) => s * (input.quantization as { scale: readonly number[] }).scale[0])
        : undefined;
    return { input: input.index, weights, filter: dequantize(weights), bias: bias ? dequantize(bias, fallback) : null };
  };
  switch (op.builtinCode) {
    case BuiltinOperator.CONV_2D:
    case BuiltinOperator.DEPTHWISE_CONV_2D: {
      if (o.kind !== 'conv2d' && o.kind !== 'depthwiseConv2d') throw new Error(`${op.opName} #${op.index}: options ${o.kind}`);
      const { input, weights, filter, bias } = weightsAndBias();
      if (weights.shape.length !== 4) throw new Error(`${op.opName} #${op.index}: filter shape [${weights.shape}]`);
      const common = {
        ...base,
        inputs: [input],
        filter,
        filterShape: weights.shape as unknown as [number, number, number, number],
        bias,
        strides: [o.strideH, o.strideW] as const,
        dilations: [o.dilationH, o.dilationW] as const,
        padding: o.padding,
        activation: o.activation,
      };
      if (o.kind === 'conv2d') return { kind: 'conv2d', ...common };
      // Version 1 files may say depth_multiplier 0; the filter's channel count is the truth.
      const inChannels = inferredChannels(model, input);
      const depthMultiplier = inChannels ? weights.shape[3] / inChannels : o.depthMultiplier || 1;
      return { kind: 'depthwiseConv2d', ...common, depthMultiplier };
    }
    case BuiltinOperator.FULLY_CONNECTED: {
      if (o.kind !== 'fullyConnected') throw new Error(`${op.opName} #${op.index}: options ${o.kind}`);
      if (o.weightsFormat !== 0) throw new Error(`${op.opName} #${op.index}: shuffled weights are not supported`);
      const { input, weights, filter, bias } = weightsAndBias();
      return {
        kind: 'fullyConnected',
        ...base,
        inputs: [input],
        weights: filter,
        weightsShape: [weights.shape[0], weights.shape[1]],
        bias,
        activation: o.activation,
      };
    }
    case BuiltinOperator.ADD:
    case BuiltinOperator.MUL:
    case BuiltinOperator.SUB: {
      const kind = op.builtinCode === BuiltinOperator.ADD ? 'add' : op.builtinCode === BuiltinOperator.MUL ? 'mul' : 'sub';
      return { kind, ...base, inputs: valueInputs(op.inputs), activation: o.kind === 'activation' ? o.activation : 'none' };
    }
    case BuiltinOperator.AVERAGE_POOL_2D:
    case BuiltinOperator.MAX_POOL_2D: {
      if (o.kind !== 'pool2d') throw new Error(`${op.opName} #${op.index}: options ${o.kind}`);
      const global = isGlobalHeadPool(model, op);
      return {
        kind: op.builtinCode === BuiltinOperator.AVERAGE_POOL_2D ? 'avgPool' : 'maxPool',
        ...base,
        inputs: [op.inputs[0]],
        filter: [o.filterH, o.filterW],
        strides: [o.strideH, o.strideW],
        padding: o.padding,
        global,
        activation: o.activation,
      };
    }
    case BuiltinOperator.CONCATENATION:
      if (o.kind !== 'concatenation') throw new Error(`${op.opName} #${op.index}: options ${o.kind}`);
      return { kind: 'concat', ...base, inputs: valueInputs(op.inputs), axis: o.axis, activation: o.activation };
    case BuiltinOperator.MEAN:
    case BuiltinOperator.REDUCE_MAX: {
      const axes = constantInts(model, op.inputs[1], op);
      const kind = op.builtinCode === BuiltinOperator.MEAN ? 'mean' : 'reduceMax';
      return { kind, ...base, inputs: [op.inputs[0]], axes, keepDims: o.kind === 'reducer' && o.keepDims };
    }
    case BuiltinOperator.RESHAPE: {
      const target = o.kind === 'reshape' && o.newShape ? o.newShape : constantInts(model, op.inputs[1], op);
      // Saved with batch 1: let the batch dimension follow the input instead.
      const shape = target.length > 0 && (target[0] === 1 || target[0] === -1) ? [-1, ...target.slice(1)] : target;
      if (shape.slice(1).includes(-1)) throw new Error(`${op.opName} #${op.index}: reshape to [${target}] infers a non-batch dimension`);
      return { kind: 'reshape', ...base, inputs: [op.inputs[0]], shape };
    }
    case BuiltinOperator.SQUEEZE:
      if (o.kind !== 'squeeze') throw new Error(`${op.opName} #${op.index}: options ${o.kind}`);
      if (o.squeezeDims.length === 0) throw new Error(`${op.opName} #${op.index}: squeeze of every 1-dimension is not supported (batch 1 would vanish)`);
      return { kind: 'squeeze', ...base, inputs: [op.inputs[0]], axes: o.squeezeDims };
    case BuiltinOperator.SOFTMAX:
      return { kind: 'softmax', ...base, inputs: [op.inputs[0]], beta: o.kind === 'softmax' ? o.beta : 1 };
    case BuiltinOperator.RELU:
      return { kind: 'relu', ...base, inputs: [op.inputs[0]] };
    case BuiltinOperator.RELU6:
      return { kind: 'relu6', ...base, inputs: [op.inputs[0]] };
    case BuiltinOperator.LOGISTIC:
      return { kind: 'logistic', ...base, inputs: [op.inputs[0]] };
    case BuiltinOperator.HARD_SWISH:
      return { kind: 'hardSwish', ...base, inputs: [op.inputs[0]] };
    default:
      // QUANTIZE / DEQUANTIZE: a change of representation only, the identity in float.
      return { kind: 'identity', ...base, inputs: [op.inputs[0]] };
  }
}

/**
 * A VALID pool whose window is its whole input at the model's own size (the classifier head's
 * 7x7 average at 224 px): the plan runs it as a global pool, so the head works at any size.
 */
function isGlobalHeadPool(model: TfliteModel, op: TfliteOperator): boolean {
  const o = op.options;
  if (o.kind !== 'pool2d' || o.padding !== 'valid') return false;
  const nominal = inferShapesAt(model, model.tensors[model.inputs[0]].shape[1]).get(op.inputs[0]);
  return !!nominal && nominal[1] === o.filterH && nominal[2] === o.filterW;
}

function constantInts(model: TfliteModel, id: number, op: TfliteOperator): number[] {
  const t = id >= 0 ? model.tensors[id] : undefined;
  if (!t?.data || t.type !== 'int32') throw new Error(`${op.opName} #${op.index}: input ${id} is not a constant int32 tensor`);
  return readIntegers(t);
}

function inferredChannels(model: TfliteModel, id: ValueId): number | null {
  const shape = inferShapesAt(model, model.tensors[model.inputs[0]].shape[1]).get(id);
  return shape ? shape[shape.length - 1] : null;
}

const shapeCache = new WeakMap<TfliteModel, Map<number, Map<ValueId, readonly number[]>>>();

/**
 * Floats each tensor gives per image once pooled globally (its channels), or flattened when it is
 * not a feature map: what the extractors' outputs hold, side by side, at `size` px.
 */
export function pooledWidths(model: TfliteModel, tensors: readonly (string | ValueId)[], size: number): number[] {
  const shapes = inferShapesAt(model, size);
  return tensors.map((tensor) => {
    const id = typeof tensor === 'number' ? tensor : resolveActivation(model, tensor).index;
    const shape = shapes.get(id);
    if (!shape) throw new Error(`cannot infer the shape of ${shortTensorName(model.tensors[id])} at ${size} px`);
    return shape.length === 4 ? shape[3] : shape.slice(1).reduce((a, b) => a * b, 1);
  });
}

/**
 * Shapes of every activation when the model runs on one `size` x `size` image (batch 1), from the
 * ops' own rules: files converted with a dynamic batch store no activation shapes at all.
 * Stops silently at the first op it cannot infer (that op's output and later ones are absent).
 */
export function inferShapesAt(model: TfliteModel, size: number): ReadonlyMap<ValueId, readonly number[]> {
  let bySize = shapeCache.get(model);
  if (!bySize) shapeCache.set(model, (bySize = new Map()));
  const cached = bySize.get(size);
  if (cached) return cached;
  const shapes = new Map<ValueId, readonly number[]>();
  const input = model.tensors[model.inputs[0]];
  shapes.set(input.index, [1, size, size, input.shape[3]]);
  for (const t of model.tensors) if (t.data) shapes.set(t.index, t.shape);
  for (const op of model.operators) {
    const inShape = shapes.get(op.inputs[0]);
    const shape = inShape ? outputShape(model, op, inShape, shapes, size === input.shape[1]) : null;
    if (!shape) break;
    shapes.set(op.outputs[0], shape);
  }
  bySize.set(size, shapes);
  return shapes;
}

function spatial(size: number, kernel: number, stride: number, dilation: number, padding: Padding): number {
  const effective = (kernel - 1) * dilation + 1;
  return padding === 'same' ? Math.ceil(size / stride) : Math.floor((size - effective) / stride) + 1;
}

function outputShape(
  model: TfliteModel,
  op: TfliteOperator,
  input: readonly number[],
  shapes: ReadonlyMap<ValueId, readonly number[]>,
  atNominalSize: boolean,
): readonly number[] | null {
  const o = op.options;
  const filter = op.inputs[1] >= 0 ? model.tensors[op.inputs[1]] : undefined;
  switch (op.builtinCode) {
    case BuiltinOperator.CONV_2D:
    case BuiltinOperator.DEPTHWISE_CONV_2D: {
      if ((o.kind !== 'conv2d' && o.kind !== 'depthwiseConv2d') || !filter) return null;
      const [n, h, w] = input;
      const outChannels = op.builtinCode === BuiltinOperator.CONV_2D ? filter.shape[0] : filter.shape[3];
      return [n, spatial(h, filter.shape[1], o.strideH, o.dilationH, o.padding), spatial(w, filter.shape[2], o.strideW, o.dilationW, o.padding), outChannels];
    }
    case BuiltinOperator.AVERAGE_POOL_2D:
    case BuiltinOperator.MAX_POOL_2D:
      if (o.kind !== 'pool2d') return null;
      if (!atNominalSize && isGlobalHeadPool(model, op)) return [input[0], 1, 1, input[3]];
      return [input[0], spatial(input[1], o.filterH, o.strideH, 1, o.padding), spatial(input[2], o.filterW, o.strideW, 1, o.padding), input[3]];
    case BuiltinOperator.FULLY_CONNECTED:
      return filter ? [input[0], filter.shape[0]] : null;
    case BuiltinOperator.ADD:
    case BuiltinOperator.MUL:
    case BuiltinOperator.SUB: {
      const other = shapes.get(op.inputs[1]);
      return other && other.length > input.length ? other : input;
    }
    case BuiltinOperator.CONCATENATION: {
      if (o.kind !== 'concatenation') return null;
      const parts = op.inputs.map((id) => shapes.get(id));
      if (parts.some((p) => !p)) return null;
      const axis = o.axis < 0 ? o.axis + input.length : o.axis;
      return input.map((d, i) => (i === axis ? parts.reduce((sum, p) => sum + (p as readonly number[])[i], 0) : d));
    }
    case BuiltinOperator.MEAN:
    case BuiltinOperator.REDUCE_MAX: {
      const axesTensor = model.tensors[op.inputs[1]];
      if (!axesTensor?.data) return null;
      const axes = readIntegers(axesTensor).map((a) => (a < 0 ? a + input.length : a));
      const keep = o.kind === 'reducer' && o.keepDims;
      return keep ? input.map((d, i) => (axes.includes(i) ? 1 : d)) : input.filter((_, i) => !axes.includes(i));
    }
    case BuiltinOperator.RESHAPE: {
      const target = o.kind === 'reshape' && o.newShape ? o.newShape : model.tensors[op.inputs[1]]?.data ? readIntegers(model.tensors[op.inputs[1]]) : null;
      if (!target) return null;
      const total = input.reduce((a, b) => a * b, 1);
      const known = target.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
      return target.map((d) => (d === -1 ? total / known : d));
    }
    case BuiltinOperator.SQUEEZE: {
      if (o.kind !== 'squeeze') return null;
      const axes = o.squeezeDims.map((a) => (a < 0 ? a + input.length : a));
      return input.filter((d, i) => (axes.length ? !axes.includes(i) : d !== 1));
    }
    default:
      return input;
  }
}

export interface ActivationInfo {
  readonly index: ValueId;
  /** Short name (see shortTensorName). */
  readonly name: string;
  readonly opName: string;
  /** At the given input size, batch 1. */
  readonly shape: readonly number[];
}

/** Every tensor a plan can stop at, with its shape at `size` px. */
export function listActivations(model: TfliteModel, size: number): ActivationInfo[] {
  const shapes = inferShapesAt(model, size);
  const producer = new Map<ValueId, string>();
  for (const op of model.operators) for (const out of op.outputs) producer.set(out, op.opName);
  return activationTensors(model).map((t) => ({
    index: t.index,
    name: shortTensorName(t),
    opName: producer.get(t.index) ?? 'INPUT',
    shape: shapes.get(t.index) ?? [],
  }));
}
