/**
 * Which runtime should run the TFLite feature extractors: ms per image for the two ImageNet
 * TFLite models (EdgeTPU, MobileNetV2), up to `expanded_conv_12/add` and up to the last feature
 * layer (the input of the classifier's pool), each globally average-pooled, at 128 and 224 px,
 * batch 32, on
 * - TF.js wasm, 1 thread (the Node default: tfjs-backend-wasm disables threads under Node),
 * - TF.js wasm, 2 threads (forced: reported as not available when it cannot start),
 * - TF.js cpu (plain JavaScript kernels),
 * - ONNX Runtime (onnxruntime-node, native CPU provider) with intraOpNumThreads 1 and 2, running
 *   the model tools/tflite-to-onnx.ts builds from the same float plan.
 *
 *   npx tsx bench/tflite-runtimes.ts                         # everything (about 10 min on 2 cores)
 *   npx tsx bench/tflite-runtimes.ts --runtimes ort-1,ort-2 --sizes 128 --rounds 5
 *
 * Each runtime runs in a fresh child process (TF.js has one backend per process; wasm threads must
 * be chosen before it starts). Inside it, per case: the model is prepared (plan or ONNX
 * conversion + session), one warm-up batch, then `--rounds` timed batches (1 for TF.js cpu, which
 * takes seconds per image at 224 px); the figure is the median batch time / 32. Timed: input
 * packing (uint8 -> tensor), inference, pooling, reading the features back.
 * tfjs-node (the Lambda image's TF.js backend) cannot be installed here (its install downloads
 * libtensorflow), so it is not in the table.
 *
 * Needs ../shared (models, sample images); exits with a message when it is absent.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseTfliteModel, TfliteModel } from '../lambdas/model/tflite/tflite-model';
import { BuiltinOperator } from '../lambdas/model/tflite/tflite-schema';
import { shortTensorName } from '../lambdas/model/tflite/tflite-graph';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS, preprocessImage } from '../lambdas/images/preprocess';
import { argValue, ChildResult, fixed, load, machine, markdownTable, median, printTable, runChild } from './bench-support';

const SHARED = resolve(__dirname, '..', '..', 'shared');
const SAMPLE_TEST = join(SHARED, 'datasets', 'fruits-360-sample', 'Test');
const MODELS: Record<string, string> = {
  edgetpu: join(SHARED, 'models', 'mobilenet_edgetpu_224_1.0_uint8', 'mobilenet_edgetpu_224_1.0_uint8.tflite'),
  v2: join(SHARED, 'models', 'mobilenet_v2_1.0_224_quant', 'mobilenet_v2_1.0_224_quant.tflite'),
};
const BATCH = 32;

const RUNTIMES = {
  'tfjs-wasm-1': 'TF.js wasm 1 thread',
  'tfjs-wasm-2': 'TF.js wasm 2 threads',
  'tfjs-cpu': 'TF.js cpu',
  'ort-1': 'onnxruntime-node 1 thread',
  'ort-2': 'onnxruntime-node 2 threads',
} as const;
type Runtime = keyof typeof RUNTIMES;

interface CaseResult {
  model: string;
  tensor: string;
  size: number;
  msPerImage?: number;
  prepareMs?: number;
  error?: string;
}

/** The tensor the classifier head pools: the last feature map. */
function lastFeatureLayer(model: TfliteModel): string {
  const pool = [...model.operators].reverse().find((op) => op.builtinCode === BuiltinOperator.AVERAGE_POOL_2D);
  if (!pool) throw new Error('model has no AVERAGE_POOL_2D head');
  return shortTensorName(model.tensors[pool.inputs[0]]);
}

/** BATCH Test images, taken round-robin over the fruits. */
async function benchImages(size: number): Promise<Uint8Array[]> {
  const lists = readdirSync(SAMPLE_TEST)
    .sort()
    .map((fruit) =>
      readdirSync(join(SAMPLE_TEST, fruit))
        .sort()
        .map((file) => join(SAMPLE_TEST, fruit, file)),
    );
  const files: string[] = [];
  for (let i = 0; files.length < BATCH; i++) for (const list of lists) if (files.length < BATCH && list[i]) files.push(list[i]);
  return Promise.all(
    files.map(async (file) => {
      const result = await preprocessImage(readFileSync(file), { size, maxInputPixels: DEFAULT_MAX_INPUT_PIXELS, maxInputBytes: DEFAULT_MAX_INPUT_BYTES });
      if (!result.ok) throw new Error(`${file}: ${result.reason}`);
      return result.rgb;
    }),
  );
}

/** What one runtime needs to run a case: prepare once, then extract a batch. */
type Prepare = (
  model: TfliteModel,
  tensor: string,
  size: number,
) => Promise<{ extract: (images: Uint8Array[]) => Promise<Float32Array>; dispose: () => Promise<void> }>;

async function tfjsRuntime(runtime: Runtime): Promise<{ prepare: Prepare; note: string }> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const tf = require('@tensorflow/tfjs-core') as typeof import('@tensorflow/tfjs-core');
  const { createTfliteFeatureExtractor } = require('../lambdas/model/tflite/tflite-executor') as typeof import('../lambdas/model/tflite/tflite-executor');
  let note: string;
  if (runtime === 'tfjs-cpu') {
    require('@tensorflow/tfjs-backend-cpu');
    if (!(await tf.setBackend('cpu'))) throw new Error('cpu backend did not start');
    note = 'cpu';
  } else {
    const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    if (runtime === 'tfjs-wasm-2') {
      // tfjs-backend-wasm answers "no threads" under Node (tensorflow/tfjs#3830); ask for them anyway.
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
      wasm.setThreadsCount(2);
    }
    // setBackend reports why it failed only through console.warn: keep that line for the table.
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(' '));
    const started = await tf.setBackend('wasm').finally(() => (console.warn = warn));
    if (!started) throw new Error(`wasm backend did not start: ${warnings.join('; ').split('\n')[0]}`);
    await tf.ready();
    const threads = wasm.getThreadsCount();
    if (runtime === 'tfjs-wasm-2' && threads < 2) throw new Error(`wasm started with ${threads} thread(s)`);
    note = `wasm, ${threads} thread(s), SIMD ${String(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))}`;
  }
  /* eslint-enable @typescript-eslint/no-require-imports */
  return {
    note,
    prepare: async (model, tensor, size) => {
      const extractor = createTfliteFeatureExtractor(model, { output: tensor, imageSize: size, pooling: 'avg', batchSize: BATCH });
      return { extract: (images) => extractor.extract(images), dispose: async () => extractor.dispose() };
    },
  };
}

async function ortRuntime(threads: number): Promise<{ prepare: Prepare; note: string }> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');
  const { ONNX_INPUT, ONNX_OUTPUT, tfliteToOnnx, toNchwPixels } =
    require('../lambdas/model/tflite/tflite-onnx') as typeof import('../lambdas/model/tflite/tflite-onnx');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return {
    note: `onnxruntime-node ${ort.env.versions.node}, CPU provider, intraOpNumThreads ${threads}`,
    prepare: async (model, tensor, size) => {
      const session = await ort.InferenceSession.create(tfliteToOnnx(model, { output: tensor, pooling: 'avg' }), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      return {
        extract: async (images) => {
          const input = new ort.Tensor('float32', toNchwPixels(images, size), [images.length, 3, size, size]);
          const result = await session.run({ [ONNX_INPUT]: input });
          return result[ONNX_OUTPUT].data as Float32Array;
        },
        dispose: () => session.release(),
      };
    },
  };
}

/** Child process: one runtime, every case. Prints its result as JSON on the last line. */
async function runCase(runtime: Runtime, models: string[], sizes: number[], rounds: number): Promise<void> {
  const { prepare, note } = runtime.startsWith('ort-') ? await ortRuntime(Number(runtime.slice(4))) : await tfjsRuntime(runtime);
  const results: CaseResult[] = [];
  const loads = [load()];
  for (const size of sizes) {
    const images = await benchImages(size);
    for (const key of models) {
      const model = parseTfliteModel(readFileSync(MODELS[key]));
      for (const tensor of ['expanded_conv_12/add', lastFeatureLayer(model)]) {
        const started = performance.now();
        try {
          const runner = await prepare(model, tensor, size);
          const prepareMs = performance.now() - started;
          await runner.extract(images);
          const times: number[] = [];
          for (let r = 0; r < (runtime === 'tfjs-cpu' ? 1 : rounds); r++) {
            const t0 = performance.now();
            await runner.extract(images);
            times.push(performance.now() - t0);
          }
          await runner.dispose();
          results.push({ model: key, tensor, size, msPerImage: fixed(median(times) / BATCH), prepareMs: Math.round(prepareMs) });
        } catch (error) {
          results.push({ model: key, tensor, size, error: error instanceof Error ? error.message.split('\n')[0] : String(error) });
        }
        console.error(`${runtime} ${key} ${tensor} @${size}: ${JSON.stringify(results[results.length - 1])}`);
      }
    }
  }
  loads.push(load());
  console.log(JSON.stringify({ runtime, note, results, loads }));
}

async function main(argv: string[]): Promise<void> {
  if (![...Object.values(MODELS), SAMPLE_TEST].every(existsSync)) {
    console.error(`needs ${Object.values(MODELS).join(', ')} and ${SAMPLE_TEST}: absent here, nothing measured`);
    process.exit(1);
  }
  const models = (argValue(argv, 'models') ?? Object.keys(MODELS).join(',')).split(',');
  const sizes = (argValue(argv, 'sizes') ?? '128,224').split(',').map(Number);
  const rounds = Number(argValue(argv, 'rounds') ?? 3);
  const caseRuntime = argValue(argv, 'case');
  if (caseRuntime) return runCase(caseRuntime as Runtime, models, sizes, rounds);

  const runtimes = (argValue(argv, 'runtimes') ?? Object.keys(RUNTIMES).join(',')).split(',') as Runtime[];
  for (const r of runtimes) if (!(r in RUNTIMES)) throw new Error(`unknown runtime ${r}: expected ${Object.keys(RUNTIMES).join(', ')}`);
  const m = machine();
  console.log(`${m.cores} x ${m.cpuModel}, ${m.memoryGb} GB, node ${m.node} ${m.platform}; ${load()}`);
  const byRuntime = new Map<Runtime, ChildResult>();
  for (const runtime of runtimes) {
    const result = await runChild(__filename, ['--case', runtime, '--models', models.join(','), '--sizes', sizes.join(','), '--rounds', String(rounds)], {
      timeoutMinutes: 30,
    });
    byRuntime.set(runtime, result);
    console.log(`${runtime}: ${result.error ? `failed: ${result.error}` : `${String(result.note)}; ${(result.loads as string[]).join(' -> ')}`}`);
  }

  const keys: { model: string; tensor: string; size: number }[] = [];
  for (const result of byRuntime.values()) {
    for (const r of (result.results as CaseResult[] | undefined) ?? []) {
      if (!keys.some((k) => k.model === r.model && k.tensor === r.tensor && k.size === r.size)) keys.push({ model: r.model, tensor: r.tensor, size: r.size });
    }
  }
  keys.sort((a, b) => a.model.localeCompare(b.model) || a.size - b.size);
  const cell = (runtime: Runtime, key: (typeof keys)[number]) => {
    const result = byRuntime.get(runtime);
    if (result?.error) return 'n/a';
    const r = (result?.results as CaseResult[] | undefined)?.find((x) => x.model === key.model && x.tensor === key.tensor && x.size === key.size);
    return r?.msPerImage ?? (r?.error ? `error: ${r.error}` : '');
  };
  const table = {
    title: `ms per image (batch ${BATCH}, median of ${rounds} batches after a warm-up; TF.js cpu: 1 batch), global average pool of the tensor`,
    headers: ['model', 'px', 'tensor', ...runtimes.map((r) => RUNTIMES[r])],
    rows: keys.map((key) => [key.model, key.size, key.tensor.replace(/^Mobilenet(EdgeTPU|V2)\//, ''), ...runtimes.map((r) => cell(r, key))]),
    notes: [
      ...runtimes
        .filter((r) => byRuntime.get(r)?.error)
        .map(
          (r) =>
            `${RUNTIMES[r]}: not available here (${String(byRuntime.get(r)?.error)
              .split(/\s+at /)[0]
              .trim()})`,
        ),
      `${m.cores} cores shared with other work; ${load()} at the end`,
    ],
  };
  printTable(table);
  console.log(`\n${markdownTable(table)}`);
}

main(process.argv).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
