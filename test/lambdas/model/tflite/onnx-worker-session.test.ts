/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 *
 * How the featurizer's onnxruntime session, on its own thread, shares the machine with the
 * handler's thread, which reads and decodes the next images between two runs.
 */
import { availableParallelism } from 'node:os';
import { onnx } from 'onnx-proto';
import { OnnxWorkerSession } from '../../../../lambdas/model/tflite/onnx-worker-session';

/** Keeps this thread busy for `ms` milliseconds, as the handler's reading and decoding do. */
function busyFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/** An ONNX model of one product: `y = x . w`, x of `rows x size`, w a constant `size x size`. */
function productModel(size: number): Uint8Array {
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const tensorType = (dims: (number | string)[]) => ({
    tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } },
  });
  const weights = Float32Array.from({ length: size * size }, (_, i) => Math.sin(i));
  const graph = onnx.GraphProto.create({
    name: 'product',
    node: [{ opType: 'MatMul', input: ['x', 'w'], output: ['y'] }],
    initializer: [{ name: 'w', dataType: FLOAT, dims: [size, size], floatData: Array.from(weights) }],
    input: [{ name: 'x', type: tensorType(['rows', size]) }],
    output: [{ name: 'y', type: tensorType(['rows', size]) }],
  });
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'onnx-worker-session.test', opsetImport: [{ domain: '', version: 13 }], graph });
  return onnx.ModelProto.encode(model).finish();
}

const twoCores = availableParallelism() >= 2;
if (!twoCores) console.warn('onnx-worker-session.test: skipping the spinning check, which needs two cores');

describe('the featurizer session on its own thread', () => {
  (twoCores ? it : it.skip)('with two intra-op threads leaves the second core alone while the handler thread works between runs', async () => {
    const size = 256;
    const session = await OnnxWorkerSession.create(productModel(size), { intraOpNumThreads: 2, inputName: 'x', outputName: 'y' });
    const input = () => Float32Array.from({ length: size * size }, (_, i) => Math.cos(i));
    try {
      expect(await session.run(input(), [size, size])).toHaveLength(size * size);
      const cpuBefore = process.cpuUsage();
      const wallBefore = performance.now();
      for (let round = 0; round < 20; round++) {
        await session.run(input(), [size, size]);
        busyFor(20);
      }
      const cpu = process.cpuUsage(cpuBefore);
      // A pool thread that spins while it waits for the next run would take about as much CPU as this thread.
      expect((cpu.user + cpu.system) / 1000 / (performance.now() - wallBefore)).toBeLessThan(1.4);
    } finally {
      await session.close();
    }
  });
});
