/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 */
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { aggregateWorkKeys, momentsMergeLevels } from '../../../lambdas/aggregate/aggregate-work';
import { mergePackedMomentsInto, packedMomentsOf, unpackMoments } from '../../../lambdas/analysis/packed-moments';
import { mergedPartials, mergeMomentsNode, mergeMomentsTree } from '../../../lambdas/aggregate/merge-stage';
import { NativeScatterAccumulator } from '../../../lambdas/analysis/native-kernels';
import { decodeMoments, encodeMoments, mergeMomentsInto } from '../../support/reference-moments';
import type { FeatureMoments } from '../../../lambdas/analysis/streaming-pca';
import { MalformedEventError, RunSettings } from '../../../lambdas/contracts/events';
import { MissingObjectError } from '../../../lambdas/aws/s3-client';
import { seededRandom } from '../../../lambdas/common/seeded-random';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';

const BUCKET = 'fruits-merge-test';
const DIM = 24;

let server: LocalS3Server;
beforeAll(async () => {
  server = await startLocalS3Server({ buckets: [BUCKET] });
});
afterAll(async () => {
  await server?.close();
});

function runSettings(runId: string): RunSettings {
  return { bucket: BUCKET, inputPrefix: `input/${runId}/`, runId, outputPrefix: `results/${runId}/`, workPrefix: `work/${runId}/` };
}

async function put(key: string, body: string | Uint8Array): Promise<void> {
  await server.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

/** Rows far from the origin (a mean of about 1,000 against a spread of 1-4), where merges lose most to cancellation. */
function rowsOf(count: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const rows = new Float32Array(count * DIM);
  for (let r = 0; r < count; r++) for (let f = 0; f < DIM; f++) rows[r * DIM + f] = 1000 + f + (random() - 0.5) * (1 + (f % 4)) + (r % 3);
  return rows;
}

async function momentsOf(rows: Float32Array): Promise<FeatureMoments> {
  const accumulator = new NativeScatterAccumulator(DIM, { precision: 'float64', blockRows: 64 });
  await accumulator.addRows(rows, rows.length / DIM);
  return accumulator.moments();
}

/** Largest difference relative to the largest magnitude. */
function relativeDifference(a: Float64Array, b: Float64Array): number {
  let difference = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    difference = Math.max(difference, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return difference / scale;
}

/**
 * A run's groups as the moments stage leaves them: each group's partial, or for a group that kept
 * no rows only its tally (rows 0). Returns the moments of every row in one pass.
 */
async function writeGroups(run: RunSettings, sizes: readonly number[]): Promise<FeatureMoments> {
  const work = aggregateWorkKeys(run.workPrefix);
  const all: Float32Array[] = [];
  for (const [g, size] of sizes.entries()) {
    const rows = rowsOf(size, 100 + g);
    all.push(rows);
    const tally = { group: g, rows: size, references: 0, report: { processed: {} }, accounting: { listed: 0 }, usable: [], timingsMs: {} };
    await put(work.momentsTally(g), JSON.stringify(tally));
    if (size > 0) await put(work.moments(g), encodeMoments(await momentsOf(rows)));
  }
  const whole = new Float32Array(all.reduce((sum, rows) => sum + rows.length, 0));
  let at = 0;
  for (const rows of all) {
    whole.set(rows, at);
    at += rows.length;
  }
  return momentsOf(whole);
}

describe('the moments merge tree', () => {
  test('a partial holds the upper triangle only, and reads back as the whole symmetric scatter', async () => {
    const moments = await momentsOf(rowsOf(50, 1));
    const bytes = encodeMoments(moments);
    expect(bytes.byteLength).toBe(8 * (2 + DIM + (DIM * (DIM + 1)) / 2));
    const back = decodeMoments(bytes, 'test');
    expect(back.count).toBe(50);
    expect(back.mean).toEqual(moments.mean);
    for (let i = 0; i < DIM; i++) {
      for (let j = i; j < DIM; j++) {
        expect(back.scatter[i * DIM + j]).toBe(moments.scatter[i * DIM + j]);
        expect(back.scatter[j * DIM + i]).toBe(moments.scatter[i * DIM + j]);
      }
    }
    expect(() => decodeMoments(bytes.subarray(0, bytes.byteLength - 8), 'cut')).toThrow(/moments cut/);
  });

  test('partials merged packed give the merge of the whole moments, the upper triangle bit for bit, and an empty partial changes nothing', async () => {
    const [a, b, c] = [await momentsOf(rowsOf(30, 7)), await momentsOf(rowsOf(45, 8)), await momentsOf(rowsOf(12, 9))];
    const packed = packedMomentsOf(encodeMoments(a), 'a');
    mergePackedMomentsInto(packed, packedMomentsOf(encodeMoments(b), 'b'));
    mergePackedMomentsInto(packed, packedMomentsOf(encodeMoments(await momentsOf(rowsOf(0, 1))), 'empty'));
    mergePackedMomentsInto(packed, packedMomentsOf(encodeMoments(c), 'c'));
    const whole = mergeMomentsInto(mergeMomentsInto(a, b), c);
    const merged = unpackMoments(packed);
    expect(merged.count).toBe(87);
    expect(merged.mean).toEqual(whole.mean);
    // The upper triangle, which is what a partial holds and every reader takes.
    for (let i = 0; i < DIM; i++) for (let j = i; j < DIM; j++) expect(merged.scatter[i * DIM + j]).toBe(whole.scatter[i * DIM + j]);
    expect(() => mergePackedMomentsInto(packed, Float64Array.of(1, DIM + 1))).toThrow(RangeError);
  });

  test('its levels: one partial per fanIn of the level below, until at most fanIn remain', () => {
    expect(momentsMergeLevels(0, 16)).toEqual([0]);
    expect(momentsMergeLevels(16, 16)).toEqual([16]);
    expect(momentsMergeLevels(17, 16)).toEqual([17, 2]);
    expect(momentsMergeLevels(100, 16)).toEqual([100, 7]);
    expect(momentsMergeLevels(1000, 16)).toEqual([1000, 63, 4]);
    expect(momentsMergeLevels(7, 2)).toEqual([7, 4, 2]);
    expect(() => momentsMergeLevels(7, 1)).toThrow(RangeError);
  });

  test.each([
    { fanIn: 2, sizes: [40, 0, 13, 70, 1, 25, 60] },
    { fanIn: 3, sizes: [5, 90, 33, 0, 0, 41, 12, 8, 77, 64] },
    { fanIn: 4, sizes: Array.from({ length: 17 }, (_, g) => 10 + ((g * 37) % 50)) },
    { fanIn: 16, sizes: Array.from({ length: 40 }, (_, g) => (g % 9 === 4 ? 0 : 5 + ((g * 13) % 30))) },
    { fanIn: 8, sizes: [30, 30, 30] },
  ])('merged as a tree of fan-in $fanIn over $sizes.length groups: the count, mean and scatter of one pass', async ({ fanIn, sizes }) => {
    const run = runSettings(`tree-${fanIn}-${sizes.length}`);
    const onePass = await writeGroups(run, sizes);
    const deps = { s3: server.client, settings: { components: 2 } };
    await mergeMomentsTree(run, sizes.length, fanIn, deps);
    const levels = momentsMergeLevels(sizes.length, fanIn);
    const top = levels.length - 1;
    const indices = Array.from({ length: levels[top] }, (_, i) => i);
    const merged = unpackMoments(await mergedPartials(run, top, indices, deps));
    expect(merged.count).toBe(onePass.count);
    expect(relativeDifference(merged.mean, onePass.mean)).toBeLessThan(1e-9);
    expect(relativeDifference(merged.scatter, onePass.scatter)).toBeLessThan(1e-9);
    // The order of the inputs fixes the result: merging the same partials again gives the same bits.
    const again = unpackMoments(await mergedPartials(run, top, indices, deps));
    expect(again.scatter).toEqual(merged.scatter);
  });

  test('a partial missing fails the merge, unless it is a group whose tally kept no rows; a node outside its level is a wiring error', async () => {
    const run = runSettings('tree-missing');
    await writeGroups(run, [10, 0, 30]);
    const deps = { s3: server.client, settings: { components: 2 } };
    await expect(mergeMomentsNode(run, { level: 1, first: 0, inputs: 3, fanIn: 2 }, deps)).resolves.toEqual({ level: 1, node: 0, rows: 10 });
    await server.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: aggregateWorkKeys(run.workPrefix).moments(2) }));
    await expect(mergeMomentsNode(run, { level: 1, first: 2, inputs: 3, fanIn: 2 }, deps)).rejects.toThrow(
      /moments of group 2 .* are missing, though its tally counts 30 rows/,
    );
    await expect(mergedPartials(run, 1, [1], deps)).rejects.toThrow(MissingObjectError);
    await put(aggregateWorkKeys(run.workPrefix).moments(0), new Uint8Array(24));
    await expect(mergedPartials(run, 0, [0], deps)).rejects.toThrow(/moments .*00000\.bin: 24 bytes/);
    await expect(mergeMomentsNode(run, { level: 1, first: 1, inputs: 3, fanIn: 2 }, deps)).rejects.toThrow(MalformedEventError);
    await expect(mergeMomentsNode(run, { level: 1, first: 4, inputs: 3, fanIn: 2 }, deps)).rejects.toThrow(MalformedEventError);
  });
});
