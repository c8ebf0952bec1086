/**
 * The tiny ONNX graphs the analysis kernels run on onnxruntime-node's CPU provider, and the cache
 * of their sessions.
 *
 * Every graph is built in memory with onnx-proto (a few hundred bytes, no weights: matrices are
 * inputs) with dynamic dimensions, so one session per graph, precision and thread count serves
 * every block shape; a session is created on first use (a few milliseconds) and kept for the life
 * of the process, as a Lambda execution environment keeps it across invocations.
 *
 * `float32` graphs run MLAS's single-precision GEMM (about 2.5 times the double-precision speed
 * here); `float64` graphs its double GEMM. Inputs that the shards hold as float32 are cast inside
 * the graph, and centring is done in float64 before any cast to float32, so the rounding that
 * matters is that of the products alone.
 */
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { IDLE_THREADS_BLOCK } from '../common';

/** The floating-point type a kernel's products are computed in. Results are float64 either way. */
export type KernelPrecision = 'float32' | 'float64';

export interface KernelOptions {
  /** @default 'float64' */
  readonly precision?: KernelPrecision;
  /**
   * onnxruntime's intra-op threads. One suits a Lambda function up to 1,769 MB (one vCPU) and a
   * map child that shares the machine with its siblings; two fits a 3,538 MB function.
   * @default DEFAULT_INTRA_OP_THREADS
   */
  readonly intraOpNumThreads?: number;
}

export const DEFAULT_INTRA_OP_THREADS = 1;

const { FLOAT, DOUBLE, INT64 } = onnx.TensorProto.DataType;
/** Opset 17: Reduce* still take `axes` as an attribute. */
const OPSET = 17;

type Dim = number | string;
/** An integer, a list of integers, or a float (`{ float }`). */
type Attribute = number | number[] | { float: number };

interface GraphSpec {
  readonly inputs: readonly (readonly [string, number, readonly Dim[]])[];
  readonly outputs: readonly (readonly [string, number, readonly Dim[]])[];
  readonly nodes: readonly onnx.INodeProto[];
}

/** The graphs by name; each is built for one precision. */
export type GraphName = 'project' | 'matmul' | 'innerProducts' | 'chebyshevStep' | 'nearest' | 'softmax' | 'softmaxGradient';

function node(opType: string, input: string[], output: string[], attributes: Record<string, Attribute> = {}): onnx.INodeProto {
  const { INTS, INT, FLOAT: FLOAT_ATTRIBUTE } = onnx.AttributeProto.AttributeType;
  const attribute = Object.entries(attributes).map(([name, value]) =>
    Array.isArray(value)
      ? { name, type: INTS, ints: value }
      : typeof value === 'number'
        ? { name, type: INT, i: value }
        : { name, type: FLOAT_ATTRIBUTE, f: value.float },
  );
  return { opType, input, output, attribute };
}

function valueInfo([name, elemType, dims]: readonly [string, number, readonly Dim[]]): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/**
 * `x` of type DOUBLE as `precision` (a Cast node when float32), named `name`. Returns the name of
 * the value to use.
 */
function asPrecision(nodes: onnx.INodeProto[], x: string, name: string, precision: KernelPrecision): string {
  if (precision === 'float64') return x;
  nodes.push(node('Cast', [x], [name], { to: FLOAT }));
  return name;
}

// eslint-disable-next-line max-lines-per-function -- one case per graph, each a short list of nodes that reads on its own
function spec(name: GraphName, precision: KernelPrecision): GraphSpec {
  const P = precision === 'float32' ? FLOAT : DOUBLE;
  const nodes: onnx.INodeProto[] = [];
  switch (name) {
    case 'project': {
      // ((rows - mean) as precision) x weights, weights being components / scale, d x k.
      nodes.push(node('Cast', ['rows'], ['rows64'], { to: DOUBLE }));
      nodes.push(node('Sub', ['rows64', 'mean'], ['centred64']));
      const centred = asPrecision(nodes, 'centred64', 'centred32', precision);
      if (precision === 'float64') nodes.push(node('MatMul', [centred, 'weights'], ['scores']));
      else nodes.push(node('MatMul', [centred, 'weights'], ['scores32']), node('Cast', ['scores32'], ['scores'], { to: DOUBLE }));
      return {
        inputs: [
          ['rows', FLOAT, ['n', 'd']],
          ['mean', DOUBLE, [1, 'd']],
          ['weights', P, ['d', 'k']],
        ],
        outputs: [['scores', DOUBLE, ['n', 'k']]],
        nodes,
      };
    }
    case 'matmul':
      nodes.push(node('MatMul', ['a', 'b'], ['c']));
      return {
        inputs: [
          ['a', P, ['m', 'n']],
          ['b', P, ['n', 'p']],
        ],
        outputs: [['c', P, ['m', 'p']]],
        nodes,
      };
    case 'innerProducts':
      // a^T b: the inner products of a's columns with b's.
      nodes.push(node('Transpose', ['a'], ['aT'], { perm: [1, 0] }), node('MatMul', ['aT', 'b'], ['c']));
      return {
        inputs: [
          ['a', P, ['n', 'p']],
          ['b', P, ['n', 'q']],
        ],
        outputs: [['c', P, ['p', 'q']]],
        nodes,
      };
    case 'chebyshevStep':
      // z = alpha (a y) + beta y + gamma x: one step of the three-term Chebyshev recurrence.
      nodes.push(
        node('MatMul', ['a', 'y'], ['ay']),
        node('Mul', ['ay', 'alpha'], ['t1']),
        node('Mul', ['y', 'beta'], ['t2']),
        node('Mul', ['x', 'gamma'], ['t3']),
        node('Add', ['t1', 't2'], ['t12']),
        node('Add', ['t12', 't3'], ['z']),
      );
      return {
        inputs: [
          ['a', P, ['d', 'd']],
          ['y', P, ['d', 'l']],
          ['x', P, ['d', 'l']],
          ['alpha', P, [1]],
          ['beta', P, [1]],
          ['gamma', P, [1]],
        ],
        outputs: [['z', P, ['d', 'l']]],
        nodes,
      };
    case 'nearest':
      // Squared distances less the query's own norm, -2 q r^T + ||r||^2, as one Gemm (the norms
      // are its C input, so no pass over the distance block follows), then the `count` smallest per
      // query: ||q||^2 is the same along a row, so the order is that of the distances. TopK keeps
      // the lower index first among equal values.
      nodes.push(
        node('Gemm', ['queries', 'references', 'referenceNorms'], ['distances'], { transB: 1, alpha: { float: -2 }, beta: { float: 1 } }),
        node('TopK', ['distances', 'count'], ['values', 'indices'], { axis: 1, largest: 0, sorted: 1 }),
      );
      return {
        inputs: [
          ['queries', P, ['m', 'p']],
          ['references', P, ['r', 'p']],
          ['referenceNorms', P, [1, 'r']],
          ['count', INT64, [1]],
        ],
        outputs: [
          ['values', P, ['m', 'c']],
          ['indices', INT64, ['m', 'c']],
        ],
        nodes,
      };
    case 'softmax':
      // Class probabilities of rows x weights (the rows carry the bias column).
      nodes.push(node('MatMul', ['x', 'w'], ['scores']), node('Softmax', ['scores'], ['probabilities'], { axis: 1 }));
      return {
        inputs: [
          ['x', P, ['n', 'p']],
          ['w', P, ['p', 'c']],
        ],
        outputs: [['probabilities', P, ['n', 'c']]],
        nodes,
      };
    case 'softmaxGradient':
      // The mean cross-entropy of softmax(x w) against `targets` (one-hot rows), -sum(targets *
      // log softmax(x w)) / n, and its gradient x^T (softmax(x w) - targets) / n, with 1/n as the
      // input `invN`. A caller that needs only the gradient fetches only it.
      nodes.push(
        node('MatMul', ['x', 'w'], ['scores']),
        node('Softmax', ['scores'], ['probabilities'], { axis: 1 }),
        node('Sub', ['probabilities', 'targets'], ['residuals']),
        node('Mul', ['residuals', 'invN'], ['scaled']),
        node('Gemm', ['x', 'scaled'], ['gradient'], { transA: 1 }),
        node('LogSoftmax', ['scores'], ['logProbabilities'], { axis: 1 }),
        node('Mul', ['logProbabilities', 'targets'], ['targetLogProbabilities']),
        node('ReduceSum', ['targetLogProbabilities'], ['logLikelihood'], { keepdims: 0 }),
        node('Mul', ['logLikelihood', 'invN'], ['meanLogLikelihood']),
        node('Neg', ['meanLogLikelihood'], ['loss']),
      );
      return {
        inputs: [
          ['x', P, ['n', 'p']],
          ['w', P, ['p', 'c']],
          ['targets', P, ['n', 'c']],
          ['invN', P, [1]],
        ],
        outputs: [
          ['gradient', P, ['p', 'c']],
          ['loss', P, [1]],
        ],
        nodes,
      };
  }
}

/** The ONNX model bytes of graph `name` at `precision`. */
export function kernelModel(name: GraphName, precision: KernelPrecision): Uint8Array {
  return modelOf(name, spec(name, precision));
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** The session of graph `name`, created on first use and then shared. */
export function kernelSession(name: GraphName, options: KernelOptions = {}): Promise<ort.InferenceSession> {
  return cachedSession(name, () => kernelModel(name, options.precision ?? 'float64'), options);
}

/** (rows x inner) times (inner x columns), row-major, in float64 on the `matmul` graph. */
export async function matrixProduct(
  x: Float64Array,
  rows: number,
  inner: number,
  y: Float64Array,
  columns: number,
  options: Pick<KernelOptions, 'intraOpNumThreads'> = {},
): Promise<Float64Array> {
  const session = await kernelSession('matmul', { ...options, precision: 'float64' });
  const result = await session.run({ a: new ort.Tensor('float64', x, [rows, inner]), b: new ort.Tensor('float64', y, [inner, columns]) });
  return float64Of(result.c);
}

/** The session of a graph by name, precision and thread count, created once from `model()`. */
function cachedSession(name: string, model: () => Uint8Array, options: KernelOptions): Promise<ort.InferenceSession> {
  const precision = options.precision ?? 'float64';
  const threads = options.intraOpNumThreads ?? DEFAULT_INTRA_OP_THREADS;
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`intraOpNumThreads must be a positive integer, got ${threads}`);
  const key = `${name}/${precision}/${threads}`;
  let session = sessions.get(key);
  if (!session) {
    session = ort.InferenceSession.create(model(), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      extra: IDLE_THREADS_BLOCK,
    });
    sessions.set(key, session);
    // A failed creation is not cached: the next call tries again and reports its own error.
    session.catch(() => sessions.delete(key));
  }
  return session;
}

/**
 * The upper block triangle of a centred scatter, from the centred rows held transposed (one row of
 * n values per feature): for each strip i of features s_i..e_i, `strip_i` (its rows) times
 * `tail_i` (the rows of features s_i..d) transposed, one Gemm per strip. The blocks below the
 * diagonal are the transposes of those above it, so with S strips the d x n x d product costs
 * (S + 1) / 2S of the full one. Every input is a contiguous range of the transposed rows: the
 * caller passes views, nothing is copied or sliced inside the graph.
 */
function scatterStripsSpec(strips: number, precision: KernelPrecision): GraphSpec {
  const P = precision === 'float32' ? FLOAT : DOUBLE;
  const range = Array.from({ length: strips }, (_, i) => i);
  return {
    inputs: range.flatMap((i) => [[`strip${i}`, P, [`w${i}`, 'n']] as const, [`tail${i}`, P, [`t${i}`, 'n']] as const]),
    outputs: range.map((i) => [`part${i}`, P, [`w${i}`, `t${i}`]] as const),
    nodes: range.map((i) => node('Gemm', [`strip${i}`, `tail${i}`], [`part${i}`], { transB: 1 })),
  };
}

/** The ONNX model bytes of a spec. */
function modelOf(name: string, { inputs, outputs, nodes }: GraphSpec): Uint8Array {
  const proto = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'fruits-pipeline lambdas/analysis/kernel-graphs.ts',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: onnx.GraphProto.create({ name, node: [...nodes], input: inputs.map(valueInfo), output: outputs.map(valueInfo) }),
  });
  return onnx.ModelProto.encode(proto).finish();
}

/** The session of the scatter's `strips`-strip graph (`scatterStripsSpec`), created on first use and then shared. */
export function scatterStripsSession(strips: number, options: KernelOptions = {}): Promise<ort.InferenceSession> {
  if (!Number.isInteger(strips) || strips < 1) throw new RangeError(`strips must be a positive integer, got ${strips}`);
  const precision = options.precision ?? 'float64';
  return cachedSession(`scatterStrips${strips}`, () => modelOf('scatterStrips', scatterStripsSpec(strips, precision)), options);
}

/** A float32 or float64 tensor of `data` (no copy when it already has the type). */
export function tensorOf(data: ArrayLike<number>, dims: readonly number[], precision: KernelPrecision): ort.Tensor {
  if (precision === 'float32') return new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);
  return new ort.Tensor('float64', data instanceof Float64Array ? data : Float64Array.from(data), dims);
}

/** A tensor's data as float64 (no copy when it already is). */
export function float64Of(tensor: ort.Tensor): Float64Array {
  const data = tensor.data;
  return data instanceof Float64Array ? data : Float64Array.from(data as Float32Array);
}

export { ort };
