import { seededRandom } from '../../lambdas/common/seeded-random';

/**
 * A separable toy set: class c centred at `separation` along axis c, spread about 1, in `dim`
 * dimensions, `perClass` rows each interleaved, as one float32 block with its labels (`class <c>`).
 */
export function blobs(classes: number, perClass: number, dim: number, seed: number, separation = 6) {
  const random = seededRandom(seed);
  const noise = () => (random() + random() + random() - 1.5) * 2;
  const rows = classes * perClass;
  const data = new Float32Array(rows * dim);
  const labels: string[] = [];
  for (let i = 0; i < rows; i++) {
    const c = i % classes;
    for (let d = 0; d < dim; d++) data[i * dim + d] = (d === c ? separation : 0) + noise();
    labels.push(`class ${c}`);
  }
  /** The rows as arrays, for the APIs that take them. */
  const rowArrays = () => Array.from({ length: rows }, (_, r) => Array.from(data.subarray(r * dim, (r + 1) * dim)));
  return { block: { data, rows, dims: dim }, labels, rowArrays };
}
