/**
 * Float32 matrix products on onnxruntime-node's native kernel (MLAS GEMM), for the benchmarks'
 * brute-force searches over thousands of references: one ONNX graph, `C = A B`, shapes dynamic.
 */
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';

function tensorInfo(name: string, dims: string[]): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: dims.map((dimParam) => ({ dimParam })) } } },
  };
}

let session: Promise<ort.InferenceSession> | undefined;

function matmulSession(): Promise<ort.InferenceSession> {
  const model = onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'fruits-pipeline bench/native-matmul.ts',
      opsetImport: [{ domain: '', version: 17 }],
      graph: onnx.GraphProto.create({
        name: 'matmul',
        node: [{ opType: 'MatMul', input: ['a', 'b'], output: ['c'] }],
        input: [tensorInfo('a', ['m', 'k']), tensorInfo('b', ['k', 'n'])],
        output: [tensorInfo('c', ['m', 'n'])],
      }),
    }),
  ).finish();
  return ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
}

/** `a` (m x k) times `b` (k x n), row-major float32. */
export async function matmul(a: Float32Array, m: number, k: number, b: Float32Array, n: number): Promise<Float32Array> {
  const s = await (session ??= matmulSession());
  const result = await s.run({ a: new ort.Tensor('float32', a, [m, k]), b: new ort.Tensor('float32', b, [k, n]) });
  return result.c.data as Float32Array;
}
