/**
 * Sizing table for the featurize function: memory 1,769 / 3,008 MB x x86_64 / arm64 -> estimated
 * cost and wall time per 100,000 images, from the benchmark's measured CPU per image and the cost
 * model of bench/cost.ts (its prices and assumptions). Prints markdown for docs/SIZING.md:
 *
 *   npx tsx bench/sizing.ts
 *
 * The measured inputs are docs/BENCHMARKS.md's (sections 1, 3b and 4, `npm run bench --
 * --whole-dataset`, 2026-12-01, onnxruntime-node, the default MobileNetV2 features at 128 px):
 * re-run the bench and update MEASURED when the featurizer or the machine changes.
 */
import { defaultConfig } from '../lib/config';
import { markdownTable, Table } from './bench-support';
import { costModel, MeasuredInputs } from './cost';

const MEASURED: MeasuredInputs & { handlerCoresBusy: number } = {
  featurizeCpuMsPerImage: 3.76,
  measuredWith: 'onnxruntime-node (cpu, 1 thread), mobilenet_v2_1.0_224_quant@7aad0c74/expanded_conv_12/add+Conv_1/Relu6/avg-sqrt@128',
  modelLoadSeconds: 0.2,
  // The whole-dataset run's aggregate step: 98.5 s for 71,014 rows of 1,376 features, classification included.
  aggregateSecondsPerRow: 98.5 / 71_014,
  aggregateFitSeconds: 0,
  aggregateMeasuredRows: 71_014,
  aggregateMeasuredWith: "the whole-dataset run's aggregate step (both passes, fit, k-NN classification, CSV and Parquet)",
  dim: 1376,
  /** Cores the handler path keeps busy at full speed (CPU time / wall time), measured on 2 cores. */
  handlerCoresBusy: 1.54,
};

/** Lambda allocates CPU in proportion to memory: 1,769 MB is one vCPU (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). */
const MB_PER_VCPU = 1769;
const MEMORIES = [1769, 3008] as const;
const IMAGES = 100_000;

/** Billed ms per image: the CPU work, spread over as many vCPUs as the memory buys and the handler can use. */
function billedMsPerImage(memoryMb: number): number {
  return MEASURED.featurizeCpuMsPerImage / Math.min(memoryMb / MB_PER_VCPU, MEASURED.handlerCoresBusy);
}

export function sizingTable(): Table {
  const rows = MEMORIES.flatMap((memoryMb) =>
    (['x86_64', 'arm64'] as const).map((architecture) => {
      const config = defaultConfig({ featurizeMemoryMb: memoryMb, architecture });
      const msPerImage = billedMsPerImage(memoryMb);
      const row = costModel({ ...MEASURED, featurizeCpuMsPerImage: msPerImage }, IMAGES, architecture, config);
      return [
        memoryMb.toLocaleString('en-US'),
        architecture,
        (memoryMb / MB_PER_VCPU).toFixed(2),
        msPerImage.toFixed(2),
        `$${row.featurizeLambdaUsd.toFixed(3)}`,
        `$${row.totalUsd.toFixed(3)}`,
        row.wallMinutes.toFixed(1),
      ];
    }),
  );
  const config = defaultConfig();
  return {
    title: `Featurize sizing: one run of ${IMAGES.toLocaleString('en-US')} images`,
    headers: ['featurize memory (MB)', 'arch', 'vCPU', 'billed ms / image', 'featurize Lambda', 'run total', 'wall time (min)'],
    rows,
    notes: [
      `Measured (docs/BENCHMARKS.md): ${MEASURED.featurizeCpuMsPerImage} ms CPU per image on the handler path (${MEASURED.measuredWith}), which keeps ${MEASURED.handlerCoresBusy} cores busy at full speed.`,
      `Billed ms per image = CPU ms / min(memory / ${MB_PER_VCPU} MB, ${MEASURED.handlerCoresBusy}): below 1,769 MB a function has less than one vCPU; above it, the handler cannot use more than the ${MEASURED.handlerCoresBusy} cores it used here.`,
      `Everything else is bench/cost.ts's model at the deployed defaults (batch ${config.batchSize}, MaxConcurrency ${config.maxConcurrency}, aggregate ${config.aggregateMemoryMb} MB): its prices (us-east-1 list prices, arm64 20% cheaper per GB-s), 5 s cold start per container, 2 transitions per child, S3 request prices. "run total" adds the aggregate Lambda, Step Functions and S3 requests, which do not change with the featurize memory.`,
      "Assumed, not measured: arm64 at the speed of the x86 machine measured here, on onnxruntime-node (not its TF.js fallback: InferenceRuntimeFallback = 0); Lambda vCPUs as fast as this machine's cores; no tfjs-node speed-up. Measure on AWS (the dashboard's featurize duration and ms per image) before choosing.",
    ],
  };
}

if (require.main === module) {
  const table = sizingTable();
  console.log([markdownTable(table), '', ...(table.notes ?? []).map((note) => `- ${note}`)].join('\n'));
}
