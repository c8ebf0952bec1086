/**
 * A TFLite model file -> plain objects: the main subgraph's tensors (shape, type, constant data,
 * quantisation) and operators (builtin code, inputs, outputs, options), plus dequantisation of
 * constant tensors to float32.
 *
 * Only reading: the model runs elsewhere (tflite-executor.ts on TF.js, tflite-onnx.ts for
 * ONNX Runtime). Constant data stays a view into the file's bytes until it is dequantised.
 */
import { ByteBuffer } from 'flatbuffers';
import {
  Activation,
  activationName,
  ActivationOptionsField,
  BufferField,
  BuiltinOperator,
  builtinOperatorName,
  BuiltinOptionsType,
  ConcatenationOptionsField,
  Conv2DOptionsField,
  DepthwiseConv2DOptionsField,
  FbTable,
  FullyConnectedOptionsField,
  ModelField,
  OperatorCodeField,
  OperatorField,
  Padding,
  paddingName,
  Pool2DOptionsField,
  QuantizationField,
  ReducerOptionsField,
  ReshapeOptionsField,
  SoftmaxOptionsField,
  SqueezeOptionsField,
  SubGraphField,
  TensorField,
  tensorTypeName,
  TensorTypeName,
  TFLITE_FILE_IDENTIFIER,
} from './tflite-schema';

export interface TfliteQuantization {
  /** One scale per tensor, or one per slice along `quantizedDimension`. */
  readonly scale: readonly number[];
  readonly zeroPoint: readonly number[];
  readonly quantizedDimension: number;
  readonly min: readonly number[];
  readonly max: readonly number[];
}

export interface TfliteTensor {
  readonly index: number;
  readonly name: string;
  readonly shape: readonly number[];
  /** -1 marks a dimension that is dynamic (batch, usually); absent in most files. */
  readonly shapeSignature: readonly number[] | null;
  readonly type: TensorTypeName;
  /** Constant data (little-endian), a view into the model bytes; null for activations. */
  readonly data: Uint8Array | null;
  readonly quantization: TfliteQuantization | null;
}

/** How a convolution or a pool slides its window, and the activation fused after it. */
export interface WindowOptions {
  readonly padding: Padding;
  readonly strideH: number;
  readonly strideW: number;
  readonly activation: Activation;
}

/** A convolution's window: a pool's, with the spacing of the taps. */
export interface ConvolutionOptions extends WindowOptions {
  readonly dilationH: number;
  readonly dilationW: number;
}

export type OperatorOptions =
  | ({ readonly kind: 'conv2d' } & ConvolutionOptions)
  | ({ readonly kind: 'depthwiseConv2d'; readonly depthMultiplier: number } & ConvolutionOptions)
  | ({ readonly kind: 'pool2d'; readonly filterH: number; readonly filterW: number } & WindowOptions)
  | { readonly kind: 'fullyConnected'; readonly activation: Activation; readonly weightsFormat: number; readonly keepNumDims: boolean }
  | { readonly kind: 'activation'; readonly activation: Activation }
  | { readonly kind: 'concatenation'; readonly axis: number; readonly activation: Activation }
  | { readonly kind: 'softmax'; readonly beta: number }
  | { readonly kind: 'reshape'; readonly newShape: readonly number[] | null }
  | { readonly kind: 'squeeze'; readonly squeezeDims: readonly number[] }
  | { readonly kind: 'reducer'; readonly keepDims: boolean }
  | { readonly kind: 'none' }
  /** Options this reader does not decode, with the union type they came with. */
  | { readonly kind: 'unparsed'; readonly optionsType: number };

export interface TfliteOperator {
  readonly index: number;
  /** BuiltinOperator value (BuiltinOperator.CUSTOM = 32 for custom ops). */
  readonly builtinCode: number;
  /** e.g. `CONV_2D`, or `BUILTIN_<n>` for operators this reader does not name. */
  readonly opName: string;
  readonly customCode: string | null;
  readonly version: number;
  /** Tensor indices; -1 marks an omitted optional input. */
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
  readonly options: OperatorOptions;
}

export interface TfliteModel {
  readonly schemaVersion: number;
  readonly description: string | null;
  /** The main subgraph (index 0), which is the model for every single-graph file. */
  readonly subgraphName: string | null;
  readonly subgraphCount: number;
  readonly tensors: readonly TfliteTensor[];
  /** In execution order (the schema guarantees it). */
  readonly operators: readonly TfliteOperator[];
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
}

/** Parse a `.tflite` file. Throws on a file that is not a TFLite flatbuffer or is truncated. */
export function parseTfliteModel(bytes: Uint8Array): TfliteModel {
  if (bytes.length < 8) throw new Error(`not a TFLite model: ${bytes.length} bytes`);
  const bb = new ByteBuffer(bytes);
  if (!bb.__has_identifier(TFLITE_FILE_IDENTIFIER)) {
    throw new Error(`not a TFLite model: file identifier is not ${TFLITE_FILE_IDENTIFIER}`);
  }
  const root = FbTable.root(bb);
  const schemaVersion = root.uint32(ModelField.version);
  if (schemaVersion !== 3) throw new Error(`TFLite schema version ${schemaVersion} is not supported (expected 3)`);

  const buffers = root.tables(ModelField.buffers).map((buffer, index) => readBuffer(buffer, index, bytes));
  const operatorCodes = root.tables(ModelField.operatorCodes).map((code) => ({
    // TFLite's own rule (schema_utils.cc GetBuiltinCode): the larger of the two fields. Old files
    // only set the int8 field; new ones set both, or only the int32 one for codes above 127.
    builtinCode: Math.max(code.int32(OperatorCodeField.builtinCode), code.int8(OperatorCodeField.deprecatedBuiltinCode)),
    customCode: code.string(OperatorCodeField.customCode),
    version: code.int32(OperatorCodeField.version, 1),
  }));
  const subgraphs = root.tables(ModelField.subgraphs);
  if (subgraphs.length === 0) throw new Error('TFLite model has no subgraph');
  const graph = subgraphs[0];

  const tensors = graph.tables(SubGraphField.tensors).map((tensor, index): TfliteTensor => {
    const bufferIndex = tensor.uint32(TensorField.buffer);
    if (bufferIndex >= buffers.length && bufferIndex !== 0) {
      throw new Error(`tensor ${index} refers to buffer ${bufferIndex} of ${buffers.length}`);
    }
    const signature = tensor.int32s(TensorField.shapeSignature);
    return {
      index,
      name: tensor.string(TensorField.name) ?? `tensor_${index}`,
      shape: tensor.int32s(TensorField.shape),
      shapeSignature: signature.length ? signature : null,
      type: tensorTypeName(tensor.int8(TensorField.type)),
      data: buffers[bufferIndex] ?? null,
      quantization: readQuantization(tensor.table(TensorField.quantization)),
    };
  });

  const operators = graph.tables(SubGraphField.operators).map((op, index): TfliteOperator => {
    const opcodeIndex = op.uint32(OperatorField.opcodeIndex);
    const code = operatorCodes[opcodeIndex];
    if (!code) throw new Error(`operator ${index} refers to operator code ${opcodeIndex} of ${operatorCodes.length}`);
    const inputs = op.int32s(OperatorField.inputs);
    const outputs = op.int32s(OperatorField.outputs);
    for (const t of [...inputs, ...outputs]) {
      if (t < -1 || t >= tensors.length) throw new Error(`operator ${index} refers to tensor ${t} of ${tensors.length}`);
    }
    const opName = builtinOperatorName(code.builtinCode);
    return {
      index,
      builtinCode: code.builtinCode,
      opName,
      customCode: code.customCode,
      version: code.version,
      inputs,
      outputs,
      options: readOptions(code.builtinCode, op.uint8(OperatorField.builtinOptionsType), op.table(OperatorField.builtinOptions), `${opName} #${index}`),
    };
  });

  return {
    schemaVersion,
    description: root.string(ModelField.description),
    subgraphName: graph.string(SubGraphField.name),
    subgraphCount: subgraphs.length,
    tensors,
    operators,
    inputs: graph.int32s(SubGraphField.inputs),
    outputs: graph.int32s(SubGraphField.outputs),
  };
}

function readBuffer(buffer: FbTable, index: number, file: Uint8Array): Uint8Array | null {
  const data = buffer.bytes(BufferField.data);
  if (data && data.length > 0) return data;
  // Files over 2 GB keep data after the flatbuffer; offset 0 or 1 means "none" there.
  const offset = buffer.uint64(BufferField.offset);
  const size = buffer.uint64(BufferField.size);
  if (offset > 1) {
    if (offset + size > file.length) throw new Error(`buffer ${index} lies outside the file (${offset}+${size} > ${file.length})`);
    return file.subarray(offset, offset + size);
  }
  return null;
}

function readQuantization(table: FbTable | null): TfliteQuantization | null {
  if (!table) return null;
  const scale = table.float32s(QuantizationField.scale);
  if (scale.length === 0) return null;
  const zeroPoint = table.int64s(QuantizationField.zeroPoint);
  return {
    scale,
    zeroPoint: zeroPoint.length ? zeroPoint : scale.map(() => 0),
    quantizedDimension: table.int32(QuantizationField.quantizedDimension),
    min: table.float32s(QuantizationField.min),
    max: table.float32s(QuantizationField.max),
  };
}

/** The options table of `builtinCode`, checked against the union type the file declares. */
function readOptions(builtinCode: number, optionsType: number, table: FbTable | null, where: string): OperatorOptions {
  const expect = (type: number): FbTable | null => {
    if (optionsType !== BuiltinOptionsType.NONE && optionsType !== type) {
      throw new Error(`${where}: builtin_options type ${optionsType}, expected ${type}`);
    }
    return optionsType === type ? table : null;
  };
  // A missing options table means every field takes its schema default.
  const empty = (t: FbTable | null) => t ?? new FbTable(new ByteBuffer(EMPTY_TABLE), 4);
  switch (builtinCode) {
    case BuiltinOperator.CONV_2D:
      return { kind: 'conv2d', ...convolutionOptions(empty(expect(BuiltinOptionsType.Conv2DOptions)), Conv2DOptionsField) };
    case BuiltinOperator.DEPTHWISE_CONV_2D: {
      const t = empty(expect(BuiltinOptionsType.DepthwiseConv2DOptions));
      const depthMultiplier = t.int32(DepthwiseConv2DOptionsField.depthMultiplier);
      return { kind: 'depthwiseConv2d', depthMultiplier, ...convolutionOptions(t, DepthwiseConv2DOptionsField) };
    }
    case BuiltinOperator.AVERAGE_POOL_2D:
    case BuiltinOperator.MAX_POOL_2D: {
      const t = empty(expect(BuiltinOptionsType.Pool2DOptions));
      const filter = { filterW: t.int32(Pool2DOptionsField.filterWidth), filterH: t.int32(Pool2DOptionsField.filterHeight) };
      return { kind: 'pool2d', ...filter, ...windowOptions(t, Pool2DOptionsField) };
    }
    case BuiltinOperator.FULLY_CONNECTED: {
      const t = empty(expect(BuiltinOptionsType.FullyConnectedOptions));
      return {
        kind: 'fullyConnected',
        activation: activationName(t.int8(FullyConnectedOptionsField.fusedActivationFunction)),
        weightsFormat: t.int8(FullyConnectedOptionsField.weightsFormat),
        keepNumDims: t.bool(FullyConnectedOptionsField.keepNumDims),
      };
    }
    case BuiltinOperator.ADD:
    case BuiltinOperator.MUL:
    case BuiltinOperator.SUB: {
      const type =
        builtinCode === BuiltinOperator.ADD
          ? BuiltinOptionsType.AddOptions
          : builtinCode === BuiltinOperator.MUL
            ? BuiltinOptionsType.MulOptions
            : BuiltinOptionsType.SubOptions;
      const t = empty(expect(type));
      return { kind: 'activation', activation: activationName(t.int8(ActivationOptionsField.fusedActivationFunction)) };
    }
    case BuiltinOperator.CONCATENATION: {
      const t = empty(expect(BuiltinOptionsType.ConcatenationOptions));
      return {
        kind: 'concatenation',
        axis: t.int32(ConcatenationOptionsField.axis),
        activation: activationName(t.int8(ConcatenationOptionsField.fusedActivationFunction)),
      };
    }
    case BuiltinOperator.SOFTMAX:
      return { kind: 'softmax', beta: empty(expect(BuiltinOptionsType.SoftmaxOptions)).float32(SoftmaxOptionsField.beta) };
    case BuiltinOperator.RESHAPE: {
      // The target shape is either here or (newer converters) in a second, constant input.
      const t = expect(BuiltinOptionsType.ReshapeOptions);
      return { kind: 'reshape', newShape: t?.has(ReshapeOptionsField.newShape) ? t.int32s(ReshapeOptionsField.newShape) : null };
    }
    case BuiltinOperator.SQUEEZE:
      return { kind: 'squeeze', squeezeDims: empty(expect(BuiltinOptionsType.SqueezeOptions)).int32s(SqueezeOptionsField.squeezeDims) };
    case BuiltinOperator.MEAN:
    case BuiltinOperator.REDUCE_MAX:
      return { kind: 'reducer', keepDims: empty(expect(BuiltinOptionsType.ReducerOptions)).bool(ReducerOptionsField.keepDims) };
    default:
      return optionsType === BuiltinOptionsType.NONE ? { kind: 'none' } : { kind: 'unparsed', optionsType };
  }
}

/** The ids of the window fields, which the options tables of convolutions and pools each have. */
interface WindowFields {
  readonly padding: number;
  readonly strideW: number;
  readonly strideH: number;
  readonly fusedActivationFunction: number;
}

function windowOptions(t: FbTable, fields: WindowFields): WindowOptions {
  return {
    padding: paddingName(t.int8(fields.padding)),
    strideW: t.int32(fields.strideW),
    strideH: t.int32(fields.strideH),
    activation: activationName(t.int8(fields.fusedActivationFunction)),
  };
}

/** A convolution's window; a dilation factor absent from the file is 1 (no gaps), the schema's default. */
function convolutionOptions(t: FbTable, fields: WindowFields & { readonly dilationWFactor: number; readonly dilationHFactor: number }): ConvolutionOptions {
  return { ...windowOptions(t, fields), dilationW: t.int32(fields.dilationWFactor, 1), dilationH: t.int32(fields.dilationHFactor, 1) };
}

/** A table with an empty vtable (every field absent), read as the schema defaults. */
const EMPTY_TABLE = new Uint8Array([4, 0, 4, 0, 4, 0, 0, 0]);

/**
 * A quantised (uint8, int8, int32, int16) or float32 constant tensor as float32:
 * float = scale * (q - zero_point), per tensor or per slice along the quantised dimension.
 * `fallbackScale` serves int32 biases written without their own parameters (their scale is
 * input_scale * weight_scale by the TFLite quantisation spec, zero point 0).
 */
export function dequantize(tensor: TfliteTensor, fallbackScale?: readonly number[]): Float32Array {
  if (!tensor.data) throw new Error(`tensor ${tensor.name} has no constant data`);
  const count = tensor.shape.reduce((a, b) => a * b, 1);
  const view = new DataView(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  const width = { float32: 4, uint8: 1, int8: 1, int16: 2, int32: 4 }[tensor.type as string];
  if (width === undefined) throw new Error(`tensor ${tensor.name}: dequantising ${tensor.type} is not supported`);
  if (tensor.data.byteLength !== count * width) {
    throw new Error(`tensor ${tensor.name}: ${tensor.data.byteLength} bytes for shape [${tensor.shape}] of ${tensor.type}`);
  }
  const read: (i: number) => number =
    tensor.type === 'float32'
      ? (i) => view.getFloat32(4 * i, true)
      : tensor.type === 'uint8'
        ? (i) => view.getUint8(i)
        : tensor.type === 'int8'
          ? (i) => view.getInt8(i)
          : tensor.type === 'int16'
            ? (i) => view.getInt16(2 * i, true)
            : (i) => view.getInt32(4 * i, true);
  const out = new Float32Array(count);
  if (tensor.type === 'float32') {
    for (let i = 0; i < count; i++) out[i] = read(i);
    return out;
  }
  const q = tensor.quantization;
  const scale = q?.scale ?? fallbackScale;
  if (!scale) throw new Error(`tensor ${tensor.name} is ${tensor.type} without quantisation parameters`);
  const zeroPoint = q?.zeroPoint ?? scale.map(() => 0);
  if (scale.length === 1) {
    for (let i = 0; i < count; i++) out[i] = scale[0] * (read(i) - zeroPoint[0]);
    return out;
  }
  // Per-axis: index i lies in slice floor(i / inner) % channels of the quantised dimension.
  const axis = q?.quantizedDimension ?? 0;
  const channels = tensor.shape[axis];
  if (channels !== scale.length) throw new Error(`tensor ${tensor.name}: ${scale.length} scales for dimension ${axis} of [${tensor.shape}]`);
  const inner = tensor.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  for (let i = 0; i < count; i++) {
    const c = Math.floor(i / inner) % channels;
    out[i] = scale[c] * (read(i) - (zeroPoint[c] ?? zeroPoint[0]));
  }
  return out;
}

/** A constant int32 tensor's values as stored (shapes, axes: tensors that carry no quantisation). */
export function readIntegers(tensor: TfliteTensor): number[] {
  if (!tensor.data || tensor.type !== 'int32') throw new Error(`tensor ${tensor.name} is not a constant int32 tensor`);
  const view = new DataView(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  return Array.from({ length: tensor.data.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true));
}

/** `[min, max]` a quantised activation tensor can hold, e.g. [0, 6] after a RELU6. */
export function quantizedRange(tensor: TfliteTensor): readonly [number, number] | null {
  const q = tensor.quantization;
  if (!q || q.scale.length !== 1) return null;
  const bounds = { uint8: [0, 255], int8: [-128, 127], int16: [-32768, 32767] }[tensor.type as string];
  if (!bounds) return null;
  return [q.scale[0] * (bounds[0] - q.zeroPoint[0]), q.scale[0] * (bounds[1] - q.zeroPoint[0])];
}

/** One line per operator: `CONV_2D(input [1,224,224,3]) -> name [1,112,112,32]`. For exploring models. */
export function describeOperators(model: TfliteModel): string[] {
  const shape = (i: number) => (i < 0 ? '-' : `${model.tensors[i].name} [${model.tensors[i].shape.join(',')}]`);
  return model.operators.map((op) => `${op.index} ${op.opName}(${op.inputs.map(shape).join(', ')}) -> ${op.outputs.map(shape).join(', ')}`);
}
