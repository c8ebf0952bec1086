/**
 * onnxruntime's session option that has the idle threads of its intra-op pool block instead of
 * spinning (`extra`, a SessionOptions field). A spinning thread keeps a core busy between two runs,
 * and takes it from the JavaScript that works between them: the aggregate's kernels
 * (lambdas/analysis/kernel-graphs.ts) and the featurizer's session on its own thread, while the
 * handler reads and decodes the next images (lambdas/model/tflite/onnx-worker-session.ts). Both
 * measured in docs/BENCHMARKS.md. A plain object: it is handed to a worker thread and a probe
 * process as data.
 */
export const IDLE_THREADS_BLOCK = { session: { intra_op: { allow_spinning: '0' } } } as const;
