/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 *
 * How the kernels' onnxruntime sessions share the machine.
 */
import { availableParallelism } from 'node:os';
import { matrixProduct } from '../../../lambdas/analysis/kernel-graphs';

/** Keeps this thread busy for `ms` milliseconds, as JavaScript between two native runs does. */
function busyFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

const twoCores = availableParallelism() >= 2;
if (!twoCores) console.warn('kernel-graphs.test: skipping the spinning check, which needs two cores');

describe('kernel sessions', () => {
  (twoCores ? it : it.skip)('a session of two threads leaves the second core alone while JavaScript runs between its products', async () => {
    const size = 256;
    const x = Float64Array.from({ length: size * size }, (_, i) => Math.sin(i));
    await matrixProduct(x, size, size, x, size, { intraOpNumThreads: 2 });
    const cpuBefore = process.cpuUsage();
    const wallBefore = performance.now();
    for (let round = 0; round < 20; round++) {
      await matrixProduct(x, size, size, x, size, { intraOpNumThreads: 2 });
      busyFor(20);
    }
    const cpu = process.cpuUsage(cpuBefore);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    // A pool thread that spins while it waits for the next run would take about as much CPU as the JavaScript.
    expect(cpuMs / (performance.now() - wallBefore)).toBeLessThan(1.4);
  });
});
