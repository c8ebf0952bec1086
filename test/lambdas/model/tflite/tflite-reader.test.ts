/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 *
 * The TFLite reader and float executor on a tiny model built here with flatbuffers' Builder
 * (runs offline, without ../shared): every field the reader decodes, both operator-code fields,
 * per-tensor and per-axis dequantisation, name lookup, shape inference, and the TF.js execution
 * checked against the plain-loop uint8 reference, and the ONNX conversion run by ONNX Runtime
 * against the TF.js executor.
 */
import { Builder } from 'flatbuffers';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { dequantize, describeOperators, parseTfliteModel, TfliteModel } from '../../../../lambdas/model/tflite/tflite-model';
import { listActivations, planFloatGraph, resolveActivation } from '../../../../lambdas/model/tflite/tflite-graph';
import { createTfliteFeatureExtractor, globalPool, TfliteExecutor } from '../../../../lambdas/model/tflite/tflite-executor';
import { dequantizeActivation, runUint8Reference } from './tflite-uint8-reference';
import * as ort from 'onnxruntime-node';
import { ONNX_INPUT, ONNX_OUTPUT, tfliteToOnnx, toNchwPixels } from '../../../../lambdas/model/tflite/tflite-onnx';

interface TensorSpec {
  name: string;
  shape: number[];
  /** TensorType code: 2 int32, 3 uint8, 9 int8 */
  type: number;
  data?: Uint8Array;
  scale?: number[];
  zeroPoint?: number[];
  quantizedDimension?: number;
  shapeSignature?: number[];
}
interface OperatorSpec {
  opcode: number;
  inputs: number[];
  outputs: number[];
  optionsType?: number;
  /** Fields as [slot, kind, value]: the options table in schema order. */
  options?: [number, 'int8' | 'int32' | 'float32' | 'int32s', number | number[]][];
}
interface OperatorCodeSpec {
  deprecated?: number;
  builtin?: number;
}

/** Serialise a one-subgraph TFLite model, field ids as in schema.fbs. */
function buildTflite(codes: OperatorCodeSpec[], tensors: TensorSpec[], operators: OperatorSpec[], inputs: number[], outputs: number[]): Uint8Array {
  const b = new Builder(1024);
  const int32Vector = (values: number[]) => {
    b.startVector(4, values.length, 4);
    for (let i = values.length - 1; i >= 0; i--) b.addInt32(values[i]);
    return b.endVector();
  };
  const float32Vector = (values: number[]) => {
    b.startVector(4, values.length, 4);
    for (let i = values.length - 1; i >= 0; i--) b.addFloat32(values[i]);
    return b.endVector();
  };
  const int64Vector = (values: number[]) => {
    b.startVector(8, values.length, 8);
    for (let i = values.length - 1; i >= 0; i--) b.addInt64(BigInt(values[i]));
    return b.endVector();
  };
  const tableVector = (offsets: number[]) => {
    b.startVector(4, offsets.length, 4);
    for (let i = offsets.length - 1; i >= 0; i--) b.addOffset(offsets[i]);
    return b.endVector();
  };

  // Buffer 0 is the empty sentinel; each constant tensor gets the next one.
  const bufferOffsets: number[] = [];
  b.startObject(3);
  bufferOffsets.push(b.endObject());
  const tensorBuffer = tensors.map((t) => {
    if (!t.data) return 0;
    b.startVector(1, t.data.length, 16);
    for (let i = t.data.length - 1; i >= 0; i--) b.addInt8(t.data[i]);
    const data = b.endVector();
    b.startObject(3);
    b.addFieldOffset(0, data, 0);
    bufferOffsets.push(b.endObject());
    return bufferOffsets.length - 1;
  });

  const tensorOffsets = tensors.map((t, i) => {
    const name = b.createString(t.name);
    const shape = int32Vector(t.shape);
    const signature = t.shapeSignature ? int32Vector(t.shapeSignature) : 0;
    let quantization = 0;
    if (t.scale) {
      const scale = float32Vector(t.scale);
      const zero = int64Vector(t.zeroPoint ?? t.scale.map(() => 0));
      b.startObject(7);
      b.addFieldOffset(2, scale, 0);
      b.addFieldOffset(3, zero, 0);
      b.addFieldInt32(6, t.quantizedDimension ?? 0, 0);
      quantization = b.endObject();
    }
    b.startObject(8);
    b.addFieldOffset(0, shape, 0);
    b.addFieldInt8(1, t.type, 0);
    b.addFieldInt32(2, tensorBuffer[i], 0);
    b.addFieldOffset(3, name, 0);
    if (quantization) b.addFieldOffset(4, quantization, 0);
    if (signature) b.addFieldOffset(7, signature, 0);
    return b.endObject();
  });

  const operatorOffsets = operators.map((op) => {
    const ins = int32Vector(op.inputs);
    const outs = int32Vector(op.outputs);
    let options = 0;
    if (op.options) {
      const vectors = op.options.map(([, kind, value]) => (kind === 'int32s' ? int32Vector(value as number[]) : 0));
      b.startObject(8);
      op.options.forEach(([slot, kind, value], i) => {
        if (kind === 'int8') b.addFieldInt8(slot, value as number, 0);
        else if (kind === 'int32') b.addFieldInt32(slot, value as number, 0);
        else if (kind === 'float32') b.addFieldFloat32(slot, value as number, 0);
        else b.addFieldOffset(slot, vectors[i], 0);
      });
      options = b.endObject();
    }
    b.startObject(9);
    b.addFieldInt32(0, op.opcode, 0);
    b.addFieldOffset(1, ins, 0);
    b.addFieldOffset(2, outs, 0);
    if (options) {
      b.addFieldInt8(3, op.optionsType ?? 0, 0);
      b.addFieldOffset(4, options, 0);
    }
    return b.endObject();
  });

  const codeOffsets = codes.map((c) => {
    b.startObject(4);
    if (c.deprecated !== undefined) b.addFieldInt8(0, c.deprecated, 0);
    b.addFieldInt32(2, 1, 1);
    if (c.builtin !== undefined) b.addFieldInt32(3, c.builtin, 0);
    return b.endObject();
  });

  const graphName = b.createString('main');
  const tensorsVector = tableVector(tensorOffsets);
  const operatorsVector = tableVector(operatorOffsets);
  const inputsVector = int32Vector(inputs);
  const outputsVector = int32Vector(outputs);
  b.startObject(5);
  b.addFieldOffset(0, tensorsVector, 0);
  b.addFieldOffset(1, inputsVector, 0);
  b.addFieldOffset(2, outputsVector, 0);
  b.addFieldOffset(3, operatorsVector, 0);
  b.addFieldOffset(4, graphName, 0);
  const graph = b.endObject();

  const description = b.createString('synthetic test model');
  const codesVector = tableVector(codeOffsets);
  const subgraphs = tableVector([graph]);
  const buffers = tableVector(bufferOffsets);
  b.startObject(5);
  b.addFieldInt32(0, 3, 0);
  b.addFieldOffset(1, codesVector, 0);
  b.addFieldOffset(2, subgraphs, 0);
  b.addFieldOffset(3, description, 0);
  b.addFieldOffset(4, buffers, 0);
  b.finish(b.endObject(), 'TFL3');
  return b.asUint8Array().slice();
}

/** Deterministic bytes in [lo, hi]. */
function pseudoRandomBytes(n: number, seed: number, lo = 0, hi = 255): Uint8Array {
  let state = seed >>> 0;
  return Uint8Array.from({ length: n }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return lo + (state % (hi - lo + 1));
  });
}
const int32Bytes = (values: number[]) => new Uint8Array(Int32Array.from(values).buffer);

const IN_SCALE = 1 / 127;
const CONV_W_SCALE = 0.02;
const DW_W_SCALE = 0.01;
const CONV_OUT_SCALE = 6 / 255;

/**
 * input [1,5,5,2] -> CONV_2D 3x3 stride 2 SAME RELU6 -> `block/conv` [1,3,3,4]
 *   -> DEPTHWISE_CONV_2D 3x3 SAME -> `block/depthwise`; ADD(conv, depthwise) -> `block/add`
 *   -> AVERAGE_POOL_2D 3x3 VALID -> RESHAPE [1,4] -> SOFTMAX -> `probabilities`
 * plus an operator with an extended (int32-only) code, and a per-axis int8 tensor nobody reads.
 */
function syntheticModelBytes(): Uint8Array {
  const tensors: TensorSpec[] = [
    { name: 'input', shape: [1, 5, 5, 2], type: 3, scale: [IN_SCALE], zeroPoint: [128], shapeSignature: [-1, 5, 5, 2] },
    { name: 'block/conv/weights', shape: [4, 3, 3, 2], type: 3, data: pseudoRandomBytes(72, 1, 60, 200), scale: [CONV_W_SCALE], zeroPoint: [120] },
    { name: 'block/conv/bias', shape: [4], type: 2, data: int32Bytes([300, -200, 0, 1000]), scale: [IN_SCALE * CONV_W_SCALE], zeroPoint: [0] },
    { name: 'block/conv/Relu6;block/conv/BatchNorm_Fold', shape: [1, 3, 3, 4], type: 3, scale: [CONV_OUT_SCALE], zeroPoint: [0] },
    { name: 'block/depthwise/weights', shape: [1, 3, 3, 4], type: 3, data: pseudoRandomBytes(36, 2, 90, 170), scale: [DW_W_SCALE], zeroPoint: [128] },
    // No quantisation: its scale must come from input_scale * weight_scale.
    { name: 'block/depthwise/bias', shape: [4], type: 2, data: int32Bytes([50, 0, -75, 20]) },
    { name: 'block/depthwise', shape: [1, 3, 3, 4], type: 3, scale: [0.02], zeroPoint: [100] },
    { name: 'block/add', shape: [1, 3, 3, 4], type: 3, scale: [0.03], zeroPoint: [90] },
    { name: 'head/pool', shape: [1, 1, 1, 4], type: 3, scale: [0.03], zeroPoint: [90] },
    { name: 'head/reshape/shape', shape: [2], type: 2, data: int32Bytes([1, 4]) },
    { name: 'head/reshape', shape: [1, 4], type: 3, scale: [0.03], zeroPoint: [90] },
    { name: 'probabilities', shape: [1, 4], type: 3, scale: [1 / 256], zeroPoint: [0] },
    { name: 'extended_op_output', shape: [1, 5, 5, 2], type: 3, scale: [IN_SCALE], zeroPoint: [128] },
    { name: 'per_axis', shape: [2, 3], type: 9, data: Uint8Array.from([1, 3, 5, 254, 0, 2]), scale: [0.5, 0.25], zeroPoint: [1, -2], quantizedDimension: 0 },
  ];
  const codes: OperatorCodeSpec[] = [
    { deprecated: 3 }, // CONV_2D as an old converter writes it: int8 field only
    { deprecated: 4, builtin: 4 }, // DEPTHWISE_CONV_2D: both fields
    { deprecated: 0, builtin: 0 }, // ADD
    { deprecated: 1 }, // AVERAGE_POOL_2D
    { builtin: 22 }, // RESHAPE: int32 field only
    { deprecated: 25 }, // SOFTMAX
    { deprecated: 127, builtin: 150 }, // a code above 127: placeholder in the int8 field
  ];
  const operators: OperatorSpec[] = [
    {
      opcode: 0,
      inputs: [0, 1, 2],
      outputs: [3],
      optionsType: 1,
      options: [
        [0, 'int8', 0],
        [1, 'int32', 2],
        [2, 'int32', 2],
        [3, 'int8', 3],
      ],
    },
    {
      opcode: 1,
      inputs: [3, 4, 5],
      outputs: [6],
      optionsType: 2,
      options: [
        [0, 'int8', 0],
        [1, 'int32', 1],
        [2, 'int32', 1],
        [3, 'int32', 1],
      ],
    },
    { opcode: 2, inputs: [3, 6], outputs: [7], optionsType: 11, options: [[0, 'int8', 0]] },
    {
      opcode: 3,
      inputs: [7],
      outputs: [8],
      optionsType: 5,
      options: [
        [0, 'int8', 1],
        [1, 'int32', 1],
        [2, 'int32', 1],
        [3, 'int32', 3],
        [4, 'int32', 3],
      ],
    },
    { opcode: 4, inputs: [8, 9], outputs: [10] },
    { opcode: 5, inputs: [10], outputs: [11], optionsType: 9, options: [[0, 'float32', 1]] },
    { opcode: 6, inputs: [0], outputs: [12] },
  ];
  return buildTflite(codes, tensors, operators, [0], [11]);
}

describe('TFLite reader (synthetic model)', () => {
  let model: TfliteModel;
  beforeAll(() => {
    model = parseTfliteModel(syntheticModelBytes());
  });

  it('reads the model, tensors and quantisation', () => {
    expect(model.schemaVersion).toBe(3);
    expect(model.description).toBe('synthetic test model');
    expect(model.subgraphName).toBe('main');
    expect(model.inputs).toEqual([0]);
    expect(model.outputs).toEqual([11]);
    const input = model.tensors[0];
    expect(input).toMatchObject({ name: 'input', shape: [1, 5, 5, 2], shapeSignature: [-1, 5, 5, 2], type: 'uint8', data: null });
    expect(input.quantization?.scale[0]).toBeCloseTo(IN_SCALE, 7);
    expect(input.quantization?.zeroPoint).toEqual([128]);
    expect(model.tensors[1].data?.length).toBe(72);
    expect(model.tensors[2].type).toBe('int32');
    expect(model.tensors[5].quantization).toBeNull();
    expect(model.tensors[13]).toMatchObject({ type: 'int8', quantization: { quantizedDimension: 0, zeroPoint: [1, -2] } });
  });

  it('takes the builtin code from whichever operator-code field holds it', () => {
    expect(model.operators.map((op) => op.opName)).toEqual(['CONV_2D', 'DEPTHWISE_CONV_2D', 'ADD', 'AVERAGE_POOL_2D', 'RESHAPE', 'SOFTMAX', 'BUILTIN_150']);
    expect(model.operators[6].builtinCode).toBe(150);
  });

  it('decodes the builtin options of each operator', () => {
    const [conv, depthwise, add, pool, reshape, softmax, extended] = model.operators.map((op) => op.options);
    expect(conv).toEqual({ kind: 'conv2d', padding: 'same', strideW: 2, strideH: 2, dilationW: 1, dilationH: 1, activation: 'relu6' });
    expect(depthwise).toEqual({
      kind: 'depthwiseConv2d',
      padding: 'same',
      strideW: 1,
      strideH: 1,
      depthMultiplier: 1,
      dilationW: 1,
      dilationH: 1,
      activation: 'none',
    });
    expect(add).toEqual({ kind: 'activation', activation: 'none' });
    expect(pool).toEqual({ kind: 'pool2d', padding: 'valid', strideW: 1, strideH: 1, filterW: 3, filterH: 3, activation: 'none' });
    expect(reshape).toEqual({ kind: 'reshape', newShape: null });
    expect(softmax).toEqual({ kind: 'softmax', beta: 1 });
    expect(extended).toEqual({ kind: 'none' });
    expect(model.operators[0].inputs).toEqual([0, 1, 2]);
    expect(describeOperators(model)[0]).toBe(
      '0 CONV_2D(input [1,5,5,2], block/conv/weights [4,3,3,2], block/conv/bias [4]) -> block/conv/Relu6;block/conv/BatchNorm_Fold [1,3,3,4]',
    );
  });

  it('dequantises per tensor, per axis, and int32 biases with or without their own scale', () => {
    const weights = dequantize(model.tensors[1]);
    const raw = model.tensors[1].data as Uint8Array;
    expect(weights[5]).toBeCloseTo(CONV_W_SCALE * (raw[5] - 120), 6);
    expect(Array.from(dequantize(model.tensors[13]))).toEqual([0, 1, 2, 0, 0.5, 1]);
    expect(Array.from(dequantize(model.tensors[2]))).toEqual(Array.from(Float32Array.from([300, -200, 0, 1000], (q) => IN_SCALE * CONV_W_SCALE * q)));
    expect(() => dequantize(model.tensors[5])).toThrow(/without quantisation/);
    expect(Array.from(dequantize(model.tensors[5], [0.5]))).toEqual([25, 0, -37.5, 10]);
  });

  it('rejects bytes that are not a TFLite model', () => {
    expect(() => parseTfliteModel(new Uint8Array(4))).toThrow(/not a TFLite model/);
    const notTflite = syntheticModelBytes();
    notTflite.set([0x58, 0x58, 0x58, 0x58], 4);
    expect(() => parseTfliteModel(notTflite)).toThrow(/file identifier/);
  });

  it('finds activations by full name, short name or unique suffix, and infers their shapes at any size', () => {
    expect(resolveActivation(model, 'block/conv/Relu6;block/conv/BatchNorm_Fold').index).toBe(3);
    expect(resolveActivation(model, 'block/conv/Relu6').index).toBe(3);
    expect(resolveActivation(model, 'add').index).toBe(7);
    expect(() => resolveActivation(model, 'block/conv/weights')).toThrow(/no activation tensor/);
    const at9 = new Map(listActivations(model, 9).map((a) => [a.name, a.shape]));
    expect(at9.get('block/add')).toEqual([1, 5, 5, 4]);
    // The 3x3 VALID pool covers the whole map at the saved 5 px: a global pool at any size.
    expect(at9.get('head/pool')).toEqual([1, 1, 1, 4]);
    expect(at9.get('probabilities')).toEqual([1, 4]);
    const pool = planFloatGraph(model).ops.find((op) => op.kind === 'avgPool');
    expect(pool && pool.kind === 'avgPool' && pool.global).toBe(true);
  });
});

describe('TFLite float executor (synthetic model, cpu backend)', () => {
  let model: TfliteModel;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    model = parseTfliteModel(syntheticModelBytes());
  });

  const images = (count: number, size: number) => Array.from({ length: count }, (_, i) => pseudoRandomBytes(size * size * 2, 10 + i));

  it('matches the uint8 reference at every stage, within the quantisation steps', async () => {
    const [image] = images(1, 5);
    for (const [name, steps] of [
      ['block/conv/Relu6', 0.5],
      ['block/add', 2],
      ['probabilities', 2],
    ] as const) {
      const reference = runUint8Reference(model, image, 5, name);
      const executor = TfliteExecutor.fromModel(model, { output: name });
      const out = executor.run(tf.tensor4d(Int32Array.from(image), [1, 5, 5, 2], 'int32'));
      const float = await out.data();
      out.dispose();
      executor.dispose();
      const expected = dequantizeActivation(reference);
      expect(float.length).toBe(expected.length);
      const worst = Math.max(...Array.from(float, (v, i) => Math.abs(v - expected[i])));
      expect(worst).toBeLessThanOrEqual(steps * reference.scale + 1e-6);
    }
  });

  it('runs a batch at another input size, pooling globally where the head pooled 3x3', async () => {
    const extractor = createTfliteFeatureExtractor(model, { imageSize: 9 });
    expect(extractor.dim).toBe(4);
    const batch = images(3, 9);
    const probabilities = await extractor.extract(batch);
    expect(probabilities.length).toBe(12);
    for (let i = 0; i < 3; i++) expect(probabilities.subarray(4 * i, 4 * i + 4).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    // One image alone gives the same row as in the batch.
    const single = await extractor.extract([batch[1]]);
    for (let c = 0; c < 4; c++) expect(single[c]).toBeCloseTo(probabilities[4 + c], 6);
    extractor.dispose();
  });

  it('pools a map by average, maximum and generalised mean', async () => {
    const features = createTfliteFeatureExtractor(model, { output: 'block/conv/Relu6', imageSize: 9, pooling: 'max' });
    const [image] = images(1, 9);
    const maps = features.executor.run(tf.tensor4d(Int32Array.from(image), [1, 9, 9, 2], 'int32'));
    const values = (await maps.data()) as Float32Array;
    expect(Array.from(await features.extract([image]))).toEqual(Array.from({ length: 4 }, (_, c) => Math.max(...values.filter((_, i) => i % 4 === c))));
    const avg = await globalPool(maps as tf.Tensor4D, 'avg').data();
    const gem = await globalPool(maps as tf.Tensor4D, 'gem', 3).data();
    for (let c = 0; c < 4; c++) {
      const channel = values.filter((_, i) => i % 4 === c);
      expect(avg[c]).toBeCloseTo(channel.reduce((a, b) => a + b, 0) / channel.length, 5);
      expect(gem[c]).toBeCloseTo(Math.cbrt(channel.reduce((a, b) => a + Math.max(b, 1e-6) ** 3, 0) / channel.length), 4);
    }
    maps.dispose();
    features.dispose();
  });

  it('refuses operators the float plan cannot run', () => {
    expect(() => planFloatGraph(model, { output: 'extended_op_output' })).toThrow(/BUILTIN_150.*not supported/);
  });
});

describe('TFLite -> ONNX (synthetic model, onnxruntime-node)', () => {
  let model: TfliteModel;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    model = parseTfliteModel(syntheticModelBytes());
  });

  it.each([
    ['block/add', 'avg', 7, 'block/add'],
    ['block/add', 'gem', 7, 'block/add'],
    ['block/conv/Relu6', 'max', 9, 'block/conv/Relu6'],
    ['the model output (softmax)', 'none', 9, undefined],
  ] as const)('%s, pooling %s, at %i px: ONNX Runtime matches the TF.js executor', async (_label, pooling, size, output) => {
    const images = Array.from({ length: 3 }, (_, i) => pseudoRandomBytes(size * size * 2, 40 + i));
    const session = await ort.InferenceSession.create(tfliteToOnnx(model, { output, pooling }));
    const result = await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', toNchwPixels(images, size, 2), [3, 2, size, size]) });
    const fromOnnx = result[ONNX_OUTPUT].data as Float32Array;
    const extractor = createTfliteFeatureExtractor(model, { output, imageSize: size, pooling: pooling === 'none' ? 'avg' : pooling });
    const fromTfjs = await extractor.extract(images);
    extractor.dispose();
    expect(result[ONNX_OUTPUT].dims).toEqual([3, 4]);
    expect(fromOnnx.length).toBe(fromTfjs.length);
    fromTfjs.forEach((v, i) => expect(Math.abs(v - fromOnnx[i])).toBeLessThan(1e-5));
  });
});
