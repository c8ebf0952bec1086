/**
 * When onnxruntime-node cannot start, the CNN runs on TF.js: same features, a warning, a metric,
 * and the batch goes on. The failure is injected (a session factory that throws); the probe that
 * guards against a native abort is run against a module that aborts its process.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import type { RunSettings } from '../../../lambdas/contracts/events';
import { BATCH_METRICS, BatchMeasurements } from '../../../lambdas/contracts/metrics';
import { createFeaturizer, FeaturizerConfig } from '../../../lambdas/model/featurizer';
import { probeOnnxRuntime } from '../../../lambdas/model/tflite/onnx-worker-session';
import { parseTfliteModel } from '../../../lambdas/model/tflite/tflite-model';
import { ONNX_INPUT, ONNX_OUTPUT, tfliteToOnnx } from '../../../lambdas/model/tflite/tflite-onnx';
import { recordBatchMetrics } from '../../../lambdas/aws/observability';
import { featurizeBatch } from '../../../lambdas/featurize/featurize-batch';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';

const MODEL_DIR = join(__dirname, '..', '..', '..', 'layers', 'model-weights', 'mobilenet_v2_1.0_224_quant');
const shipped: FeaturizerConfig = { kind: 'cnn', modelId: 'mobilenet_v2_1.0_224_quant', modelDir: MODEL_DIR };
const failingSession = async (): Promise<never> => {
  throw new Error('injected: the session factory failed');
};

/** Two 128 px RGB images with some structure (a gradient and its mirror). */
function images(): Uint8Array[] {
  const size = 128;
  const a = new Uint8Array(size * size * 3);
  for (let i = 0; i < a.length; i++) a[i] = (i * 7) % 256;
  return [a, a.slice().reverse()];
}

describe('TFLite CNN when onnxruntime-node cannot start', () => {
  it('falls back to TF.js with the same features, a warning and runtimeFallback set', async () => {
    const native = await createFeaturizer(shipped);
    expect(native.backend).toMatch(/^onnxruntime-node/);
    expect(native.runtimeFallback).toBeUndefined();
    expect(native.warnings).toEqual([]);

    const fallback = await createFeaturizer(shipped, { startOnnxSession: failingSession });
    expect(fallback.backend).toMatch(/^tfjs-/);
    expect(fallback.id).toBe(native.id);
    expect(fallback.runtimeFallback).toBe('onnxruntime-node: injected: the session factory failed');
    expect(fallback.backendsSkipped).toContain(fallback.runtimeFallback);
    expect(fallback.warnings).toEqual([expect.stringMatching(/runs on tfjs-.* instead of onnxruntime-node .*injected: the session factory failed/)]);

    const [fromNative, fromFallback] = [await native.featurize(images()), await fallback.featurize(images())];
    expect(fromFallback).toHaveLength(fromNative.length);
    const worst = fromNative.reduce((max, v, i) => Math.max(max, Math.abs(v - fromFallback[i])), 0);
    // The bound of tflite-onnx.test.ts: the default fourth root magnifies the runtimes' difference
    // near zero (1.3e-3 measured here).
    expect(worst).toBeLessThan(1e-2);
  });

  it('throws instead when onnxruntime was asked for explicitly (INFER_RUNTIME=onnxruntime)', async () => {
    await expect(createFeaturizer({ ...shipped, runtime: 'onnxruntime' }, { startOnnxSession: failingSession })).rejects.toThrow('injected');
  });

  it('the batch goes on: shard written, InferenceRuntimeFallback = 1 in its metrics', async () => {
    const bucket = 'fallback-test';
    const s3: LocalS3Server = await startLocalS3Server({ buckets: [bucket] });
    try {
      const jpeg = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 200, g: 40, b: 30 } } })
        .jpeg()
        .toBuffer();
      await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'input/f/Apple/1.jpg', Body: jpeg }));
      const run: RunSettings = { bucket, inputPrefix: 'input/f/', runId: 'run-f', outputPrefix: 'results/run-f/', workPrefix: 'work/run-f/' };
      const featurizer = await createFeaturizer(shipped, { startOnnxSession: failingSession });
      let measured: BatchMeasurements | undefined;
      const summary = await featurizeBatch(
        { Items: [{ Key: 'input/f/Apple/1.jpg', Size: jpeg.length, ETag: '"1"' }], BatchInput: run },
        {
          s3: s3.client,
          featurizer,
          settings: { maxInputPixels: 1e7, maxInputBytes: 1e7, readConcurrency: 2, chunkSize: 8 },
          onMeasured: (m) => (measured = m),
        },
      );
      expect(summary).toMatchObject({ count: 1, failedCount: 0 });
      expect(measured?.runtimeFallback).toBe(true);

      const metrics = new Metrics({ namespace: 'FruitsPipelineTest', serviceName: 'test' });
      recordBatchMetrics(metrics, measured!);
      expect(metrics.serializeMetrics()).toMatchObject({ [BATCH_METRICS.runtimeFallback]: 1 });
      recordBatchMetrics(metrics, { ...measured!, runtimeFallback: false });
      expect(metrics.serializeMetrics()).toMatchObject({ [BATCH_METRICS.runtimeFallback]: [1, 0] });
    } finally {
      await s3.close();
    }
  });
});

describe('probeOnnxRuntime: the first session in a child process', () => {
  const onnx = tfliteToOnnx(parseTfliteModel(readFileSync(join(MODEL_DIR, 'mobilenet_v2_1.0_224_quant.tflite'))), {
    taps: [{ tensor: 'expanded_conv_12/add', pooling: 'avg' }],
  });
  const options = { intraOpNumThreads: 1, inputName: ONNX_INPUT, outputName: ONNX_OUTPUT, probeInputDims: [1, 3, 96, 96] };
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'ort-probe-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('resolves when the session builds and runs', async () => {
    await expect(probeOnnxRuntime(onnx, options)).resolves.toBeUndefined();
  });

  it('rejects, and this process lives on, when the runtime aborts its process (as cpuinfo did on arm64 Lambda)', async () => {
    const aborting = join(dir, 'aborting-ort.js');
    writeFileSync(aborting, "process.stderr.write('Error in cpuinfo: failed to parse both lists of possible and present processors\\n');\nprocess.abort();\n");
    await expect(probeOnnxRuntime(onnx, options, aborting)).rejects.toThrow(/killed by SIGABRT: Error in cpuinfo: failed to parse both lists/);
  });

  it('rejects with onnxruntime’s own message when the model does not load', async () => {
    await expect(probeOnnxRuntime(new Uint8Array([1, 2, 3, 4]), options)).rejects.toThrow(/exited with code 1: .*(protobuf|parse|model)/i);
  });
});
