/**
 * The part of the TFLite flatbuffer schema this reader needs, as field ids over flatbuffers'
 * ByteBuffer instead of generated code (flatc is not a dependency, and the pipeline reads a few
 * dozen fields of a schema with hundreds).
 *
 * Field ids are the declaration order in tensorflow/lite/schema/schema.fbs; a union field takes
 * two ids (its `_type` byte, then the table). New fields are only ever appended there, so these
 * ids hold for every schema version 3 file.
 * https://github.com/tensorflow/tensorflow/blob/master/tensorflow/lite/schema/schema.fbs
 */
import { ByteBuffer } from 'flatbuffers';

export const TFLITE_FILE_IDENTIFIER = 'TFL3';

/** A table of a flatbuffer: reads field `id` through its vtable, or the default when absent. */
export class FbTable {
  constructor(
    readonly bb: ByteBuffer,
    readonly pos: number,
  ) {}

  static root(bb: ByteBuffer): FbTable {
    return new FbTable(bb, bb.readInt32(bb.position()) + bb.position());
  }

  /** Offset of field `id` from the table start, 0 when the field is absent. */
  private field(id: number): number {
    return this.bb.__offset(this.pos, 4 + 2 * id);
  }

  has(id: number): boolean {
    return this.field(id) !== 0;
  }
  int8(id: number, fallback = 0): number {
    return this.readField(id, fallback, (at) => this.bb.readInt8(at));
  }
  uint8(id: number, fallback = 0): number {
    return this.readField(id, fallback, (at) => this.bb.readUint8(at));
  }
  bool(id: number, fallback = false): boolean {
    return this.readField(id, fallback, (at) => this.bb.readUint8(at) !== 0);
  }
  int32(id: number, fallback = 0): number {
    return this.readField(id, fallback, (at) => this.bb.readInt32(at));
  }
  uint32(id: number, fallback = 0): number {
    return this.readField(id, fallback, (at) => this.bb.readUint32(at));
  }
  float32(id: number, fallback = 0): number {
    return this.readField(id, fallback, (at) => this.bb.readFloat32(at));
  }
  /** A uint64 field as a number; throws above 2^53 (buffer offsets of files over 8 PB). */
  uint64(id: number, fallback = 0): number {
    return this.readField(id, fallback, (at) => toSafeNumber(this.bb.readUint64(at)));
  }
  string(id: number): string | null {
    return this.readField(id, null, (at) => this.bb.__string(at) as string);
  }
  table(id: number): FbTable | null {
    return this.readField(id, null, (at) => new FbTable(this.bb, this.bb.__indirect(at)));
  }
  tables(id: number): FbTable[] {
    const o = this.field(id);
    if (!o) return [];
    const start = this.bb.__vector(this.pos + o);
    const length = this.bb.__vector_len(this.pos + o);
    const out: FbTable[] = [];
    for (let i = 0; i < length; i++) out.push(new FbTable(this.bb, this.bb.__indirect(start + 4 * i)));
    return out;
  }
  int32s(id: number): number[] {
    return this.scalars(id, 4, (at) => this.bb.readInt32(at));
  }
  float32s(id: number): number[] {
    return this.scalars(id, 4, (at) => this.bb.readFloat32(at));
  }
  int64s(id: number): number[] {
    return this.scalars(id, 8, (at) => toSafeNumber(this.bb.readInt64(at)));
  }
  /** A [ubyte] vector as a view into the file's bytes (no copy), or null when absent. */
  bytes(id: number): Uint8Array | null {
    const o = this.field(id);
    if (!o) return null;
    const start = this.bb.__vector(this.pos + o);
    return this.bb.bytes().subarray(start, start + this.bb.__vector_len(this.pos + o));
  }

  /** Field `id` read at its position by `read`, or `fallback` when it is absent. */
  private readField<T>(id: number, fallback: T, read: (at: number) => T): T {
    const o = this.field(id);
    return o ? read(this.pos + o) : fallback;
  }

  private scalars(id: number, width: number, read: (at: number) => number): number[] {
    const o = this.field(id);
    if (!o) return [];
    const start = this.bb.__vector(this.pos + o);
    const length = this.bb.__vector_len(this.pos + o);
    const out = new Array<number>(length);
    for (let i = 0; i < length; i++) out[i] = read(start + width * i);
    return out;
  }
}

function toSafeNumber(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new Error(`64-bit value ${value} does not fit a JavaScript number`);
  }
  return Number(value);
}

/** table Model */
export const ModelField = { version: 0, operatorCodes: 1, subgraphs: 2, description: 3, buffers: 4, metadataBuffer: 5 } as const;
/** table OperatorCode: `builtin_code` (int32) was added at the end when the int8 field ran out. */
export const OperatorCodeField = { deprecatedBuiltinCode: 0, customCode: 1, version: 2, builtinCode: 3 } as const;
/** table SubGraph */
export const SubGraphField = { tensors: 0, inputs: 1, outputs: 2, operators: 3, name: 4 } as const;
/** table Tensor */
export const TensorField = { shape: 0, type: 1, buffer: 2, name: 3, quantization: 4, isVariable: 5, sparsity: 6, shapeSignature: 7 } as const;
/** table QuantizationParameters (`details` is a union: ids 4 and 5) */
export const QuantizationField = { min: 0, max: 1, scale: 2, zeroPoint: 3, detailsType: 4, details: 5, quantizedDimension: 6 } as const;
/** table Buffer: `offset`/`size` (uint64) locate data stored after the flatbuffer in files over 2 GB. */
export const BufferField = { data: 0, offset: 1, size: 2 } as const;
/** table Operator (`builtin_options` is a union: ids 3 and 4) */
export const OperatorField = {
  opcodeIndex: 0,
  inputs: 1,
  outputs: 2,
  builtinOptionsType: 3,
  builtinOptions: 4,
  customOptions: 5,
  customOptionsFormat: 6,
  mutatingVariableInputs: 7,
  intermediates: 8,
} as const;

/** table Conv2DOptions */
export const Conv2DOptionsField = { padding: 0, strideW: 1, strideH: 2, fusedActivationFunction: 3, dilationWFactor: 4, dilationHFactor: 5 } as const;
/** table DepthwiseConv2DOptions */
export const DepthwiseConv2DOptionsField = {
  padding: 0,
  strideW: 1,
  strideH: 2,
  depthMultiplier: 3,
  fusedActivationFunction: 4,
  dilationWFactor: 5,
  dilationHFactor: 6,
} as const;
/** table Pool2DOptions */
export const Pool2DOptionsField = { padding: 0, strideW: 1, strideH: 2, filterWidth: 3, filterHeight: 4, fusedActivationFunction: 5 } as const;
/** table FullyConnectedOptions */
export const FullyConnectedOptionsField = { fusedActivationFunction: 0, weightsFormat: 1, keepNumDims: 2 } as const;
/** table SoftmaxOptions */
export const SoftmaxOptionsField = { beta: 0 } as const;
/** table ConcatenationOptions */
export const ConcatenationOptionsField = { axis: 0, fusedActivationFunction: 1 } as const;
/** tables AddOptions, MulOptions, SubOptions, DivOptions: the activation comes first in each. */
export const ActivationOptionsField = { fusedActivationFunction: 0 } as const;
/** table ReshapeOptions */
export const ReshapeOptionsField = { newShape: 0 } as const;
/** table SqueezeOptions */
export const SqueezeOptionsField = { squeezeDims: 0 } as const;
/** table ReducerOptions (MEAN, SUM, REDUCE_MAX...) */
export const ReducerOptionsField = { keepDims: 0 } as const;

/** union BuiltinOptions: the `_type` value of each options table (its position in the union, NONE = 0). */
export const BuiltinOptionsType = {
  NONE: 0,
  Conv2DOptions: 1,
  DepthwiseConv2DOptions: 2,
  Pool2DOptions: 5,
  FullyConnectedOptions: 8,
  SoftmaxOptions: 9,
  ConcatenationOptions: 10,
  AddOptions: 11,
  ReshapeOptions: 17,
  MulOptions: 21,
  PadOptions: 22,
  ReducerOptions: 27,
  SubOptions: 28,
  SqueezeOptions: 30,
} as const;

/** enum TensorType : byte */
export const TENSOR_TYPES = [
  'float32',
  'float16',
  'int32',
  'uint8',
  'int64',
  'string',
  'bool',
  'int16',
  'complex64',
  'int8',
  'float64',
  'complex128',
  'uint64',
  'resource',
  'variant',
  'uint32',
  'uint16',
  'int4',
] as const;
export type TensorTypeName = (typeof TENSOR_TYPES)[number] | `unknown(${number})`;

export function tensorTypeName(code: number): TensorTypeName {
  return TENSOR_TYPES[code] ?? `unknown(${code})`;
}

/** enum BuiltinOperator: the operators this reader names (others are reported by number). */
export const BuiltinOperator = {
  ADD: 0,
  AVERAGE_POOL_2D: 1,
  CONCATENATION: 2,
  CONV_2D: 3,
  DEPTHWISE_CONV_2D: 4,
  DEQUANTIZE: 6,
  FULLY_CONNECTED: 9,
  LOGISTIC: 14,
  MAX_POOL_2D: 17,
  MUL: 18,
  RELU: 19,
  RELU6: 21,
  RESHAPE: 22,
  SOFTMAX: 25,
  PAD: 34,
  MEAN: 40,
  SUB: 41,
  SQUEEZE: 43,
  REDUCE_MAX: 82,
  HARD_SWISH: 117,
  QUANTIZE: 114,
  PLACEHOLDER_FOR_GREATER_OP_CODES: 127,
} as const;
export type BuiltinOperatorName = keyof typeof BuiltinOperator;

const OPERATOR_NAMES = new Map<number, BuiltinOperatorName>(Object.entries(BuiltinOperator).map(([name, code]) => [code, name as BuiltinOperatorName]));
export function builtinOperatorName(code: number): string {
  return OPERATOR_NAMES.get(code) ?? `BUILTIN_${code}`;
}

/** enum Padding : byte { SAME, VALID } */
export type Padding = 'same' | 'valid';
export function paddingName(code: number): Padding {
  if (code === 0) return 'same';
  if (code === 1) return 'valid';
  throw new Error(`unknown TFLite padding ${code}`);
}

/** enum ActivationFunctionType : byte */
export type Activation = 'none' | 'relu' | 'relu_n1_to_1' | 'relu6' | 'tanh' | 'sign_bit';
const ACTIVATIONS: readonly Activation[] = ['none', 'relu', 'relu_n1_to_1', 'relu6', 'tanh', 'sign_bit'];
export function activationName(code: number): Activation {
  const name = ACTIVATIONS[code];
  if (!name) throw new Error(`unknown TFLite fused activation ${code}`);
  return name;
}
