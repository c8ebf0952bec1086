/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 */
import { createHash } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { PCA } from 'ml-pca';
import { aggregateRun, aggregateSettingsFrom, AggregateSettings, readAggregateEnv } from '../../../lambdas/aggregate/handler';
import { logisticWarning } from '../../../lambdas/analysis/classifier-components';
import { fitSelection } from '../../../lambdas/aggregate/fit-stage';
import { MalformedEventError, runSettingsFor, TransientStorageError } from '../../../lambdas/contracts/events';
import { batchRecordKeyOfShard } from '../../../lambdas/contracts/bucket-layout';
import { decodeFeatureShard, encodeFeatureShard, ShardHeader } from '../../../lambdas/bookkeeping/feature-shard';
import { encodeKnnReferences, FeaturizerMismatchError, parsePcaModel, PcaModelError, pcaFitOf } from '../../../lambdas/analysis/pca-model';
import { fitLdaClassifier, loadLdaClassifier } from '../../../lambdas/analysis/lda-classifier';
import { decodeClassStatistics } from '../../../lambdas/analysis/class-statistics';
import {
  DEFAULT_LOGISTIC_L2,
  DEFAULT_LOGISTIC_ROUNDS,
  LOGISTIC_CLASSIFIER_FORMAT,
  loadLogisticClassifier,
} from '../../../lambdas/analysis/logistic-classifier';
import { IncompleteRunError } from '../../../lambdas/bookkeeping/input-accounting';
import { CombinedClassifier, COMBINED_CLASSIFIER_FORMAT, DEFAULT_LDA_WEIGHT } from '../../../lambdas/analysis/combined-classifier';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { parseCsv } from '../../../evaluate/csv';
import { restoreTextField } from '../../../lambdas/outputs/features-csv';
import { classifierFit, InsufficientDataError, PcaProjector } from '../../../lambdas/analysis/streaming-pca';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';
import { seededRandom } from '../../../lambdas/common/seeded-random';
import { referenceKnn } from '../../support/reference-knn';
import { SLOW_DOWN, startFailingS3Server } from '../../support/failing-s3-server';

const BUCKET = 'fruits-aggregate-test';
const LABELS = ['Apple Red 1', 'Kiwi', 'Lemon, "Meyer"', 'Fraise été 🍓'];

/** Labelled vectors with class structure: each label has its own centre. */
function makeRows(count: number, dim: number, seed: number, runId: string, prefix = 'img') {
  const random = seededRandom(seed);
  const centres = LABELS.map((_, l) => Array.from({ length: dim }, (_, f) => Math.sin(l * 7 + f) * 3 + f));
  const keys: string[] = [];
  const labels: string[] = [];
  const vectors = new Float32Array(count * dim);
  for (let r = 0; r < count; r++) {
    const label = LABELS[r % LABELS.length];
    labels.push(label);
    keys.push(`input/${runId}/${label}/${prefix}_${seed}_${r}.jpg`);
    for (let f = 0; f < dim; f++) vectors[r * dim + f] = centres[r % LABELS.length][f] + (random() - 0.5) * 2;
  }
  return { keys, labels, vectors };
}

const meta = { featurizerKind: 'cnn', modelId: 'mobilenet_v1_0.25_224', backend: 'wasm', imageSize: 224, warnings: [], timingsMs: { infer: 10, decode: 5 } };

function header(keys: string[], labels: string[], dim: number, extra: Partial<ShardHeader> = {}): ShardHeader {
  return { featurizer: 'mobilenet_v1_0.25_224@224', dim, keys, labels, failed: [], skipped: [], meta, ...extra };
}

function summaryOf(shard: string | null, h: Pick<ShardHeader, 'keys' | 'failed' | 'skipped'>) {
  return { shard, count: h.keys.length, failed: h.failed, failedCount: h.failed.length, skipped: h.skipped, skippedCount: h.skipped.length, truncated: false };
}

/** A child execution record as the ResultWriter exports it (Transformation NONE). */
function childRecord(status: 'SUCCEEDED' | 'FAILED', itemKeys: string[], runId: string, extra: Record<string, unknown>) {
  const name = `${status.toLowerCase()}-${Math.random().toString(36).slice(2, 10)}`;
  return {
    ExecutionArn: `arn:aws:states:us-east-1:123456789012:execution:Pipeline/FeaturizeImages:${name}`,
    Input: JSON.stringify({ Items: itemKeys.map((Key) => ({ Key, Size: 1000 })), BatchInput: { bucket: BUCKET, runId } }),
    InputDetails: { Included: true },
    Name: name,
    RedriveCount: 0,
    StartDate: '2026-11-25T08:00:00.000Z',
    StateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:Pipeline/FeaturizeImages',
    Status: status,
    StopDate: '2026-11-25T08:00:05.000Z',
    ...extra,
  };
}

async function put(client: S3Client, key: string, body: string | Uint8Array) {
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

async function getText(client: S3Client, key: string): Promise<string> {
  const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return response.Body!.transformToString('utf-8');
}

/** An object's bytes as an ArrayBuffer of their own (what hyparquet reads). */
async function getBuffer(client: S3Client, key: string): Promise<ArrayBuffer> {
  const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Uint8Array.from(await response.Body!.transformToByteArray()).buffer;
}

/**
 * Writes what a featurize map run leaves: each succeeded child's batch record (the keys of its
 * input) beside its shard, and the ResultWriter output as the state machine asks for it
 * (Transformation COMPACT: a succeeded child's output alone, a failed one's whole record), and
 * returns the aggregate's event.
 */
async function writeMapRun(client: S3Client, runId: string, succeeded: Record<string, unknown>[], failed: unknown[]) {
  const root = `work/${runId}/map-results/0b5c6d7e-1111-2222-3333-444455556666/`;
  const files: Record<string, { Key: string; Size: number }[]> = { SUCCEEDED: [], FAILED: [], PENDING: [] };
  const outputs: unknown[] = [];
  for (const child of succeeded) {
    const output = JSON.parse(child.Output as string) as { shard: string | null };
    const items = (JSON.parse(child.Input as string) as { Items: { Key: string }[] }).Items.map((item) => item.Key);
    if (output.shard) await put(client, batchRecordKeyOfShard(`work/${runId}/`, output.shard), JSON.stringify({ items }));
    outputs.push(output);
  }
  for (const [status, records] of [
    ['SUCCEEDED', outputs],
    ['FAILED', failed],
  ] as const) {
    if (records.length === 0) continue;
    const body = JSON.stringify(records);
    await put(client, `${root}${status}_0.json`, body);
    files[status].push({ Key: `${root}${status}_0.json`, Size: Buffer.byteLength(body) });
  }
  const mapRunArn = `arn:aws:states:us-east-1:123456789012:mapRun:Pipeline/FeaturizeImages:${runId}`;
  await put(client, `${root}manifest.json`, JSON.stringify({ DestinationBucket: BUCKET, MapRunArn: mapRunArn, ResultFiles: files }));
  return { ...runSettingsFor(BUCKET, runId), mapResult: { MapRunArn: mapRunArn, ResultWriterDetails: { Bucket: BUCKET, Key: `${root}manifest.json` } } };
}

describe('aggregate handler against a local S3 server', () => {
  let server: LocalS3Server;
  let client: S3Client;
  const settings: AggregateSettings = { components: 3 };

  beforeAll(async () => {
    server = await startLocalS3Server({ buckets: [BUCKET] });
    client = server.client;
  });
  afterAll(async () => {
    await server?.close();
  });

  /**
   * A map run of `shards` shards of 12 rows of 10 features, under Training/ and Test/ in turn
   * (seeds from `seed`); the `corrupt` ones hold bytes that are not a shard. Returns the event.
   */
  async function writeSplitRun(runId: string, shards: number, seed: number, corrupt: readonly number[] = []) {
    const succeeded = [];
    for (let s = 0; s < shards; s++) {
      const rows = makeRows(12, 10, seed + s, runId);
      rows.keys = rows.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/${s % 2 ? 'Test' : 'Training'}/`));
      const h = header(rows.keys, rows.labels, 10);
      const key = `work/${runId}/shards/${s}.fsh`;
      await put(client, key, corrupt.includes(s) ? Buffer.from('not a shard') : encodeFeatureShard({ header: h, vectors: rows.vectors }));
      succeeded.push(childRecord('SUCCEEDED', rows.keys, runId, { Output: JSON.stringify(summaryOf(key, h)) }));
    }
    return writeMapRun(client, runId, succeeded, []);
  }

  it('turns shards + ResultWriter output into every output object, accounting for every image', async () => {
    const runId = 'run-e2e';
    const dim = 16;
    // Shard A: clean rows, odd keys, one failed and one skipped image listed in the header.
    const a = makeRows(40, dim, 1, runId);
    a.keys[0] = `input/${runId}/Kiwi/with,comma "quoted"\nnewline.jpg`;
    a.labels[0] = 'Kiwi';
    const headerA = header(a.keys, a.labels, dim, {
      failed: [{ key: `input/${runId}/Kiwi/broken.jpg`, reason: 'cannot decode image: unsupported image format' }],
      skipped: [{ key: `input/${runId}/_START`, reason: 'start marker' }],
    });
    // Shard B: a NaN row.
    const b = makeRows(30, dim, 2, runId);
    b.vectors[5 * dim + 3] = Number.NaN;
    const headerB = header(b.keys, b.labels, dim);
    // Shard C: listed, but its object is corrupt.
    const c = makeRows(4, dim, 3, runId);
    await put(client, `work/${runId}/shards/a.fsh`, encodeFeatureShard({ header: headerA, vectors: a.vectors }));
    await put(client, `work/${runId}/shards/b.fsh`, encodeFeatureShard({ header: headerB, vectors: b.vectors }));
    await put(client, `work/${runId}/shards/c.fsh`, Buffer.from('not a shard'));
    // A batch where no image worked (no shard), and a batch that failed after retries.
    const noShard = { keys: [] as string[], failed: [{ key: `input/${runId}/Lemon/x.png`, reason: 'image too small' }], skipped: [] };
    const failedKeys = [`input/${runId}/Kiwi/lost1.jpg`, `input/${runId}/Kiwi/lost2.jpg`];
    const event = await writeMapRun(
      client,
      runId,
      [
        childRecord('SUCCEEDED', [...a.keys, headerA.failed[0].key, headerA.skipped[0].key], runId, {
          Output: JSON.stringify(summaryOf(`work/${runId}/shards/a.fsh`, headerA)),
        }),
        childRecord('SUCCEEDED', b.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/b.fsh`, headerB)) }),
        childRecord('SUCCEEDED', c.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/c.fsh`, header(c.keys, c.labels, dim))) }),
        childRecord('SUCCEEDED', [noShard.failed[0].key], runId, { Output: JSON.stringify(summaryOf(null, noShard)) }),
      ],
      [
        childRecord('FAILED', failedKeys, runId, {
          Error: 'Lambda.Unknown',
          Cause: JSON.stringify({ errorType: 'Runtime.ExitError', errorMessage: 'RequestId: x Error: Runtime exited with error: signal: killed' }),
        }),
      ],
    );

    const result = await aggregateRun(event, { s3: client, settings: { ...settings, blockRows: 16 } });

    const processedKeys = [...a.keys, ...b.keys.filter((_, r) => r !== 5)];
    expect(result).toEqual({
      runId,
      bucket: BUCKET,
      rows: processedKeys.length,
      components: 3,
      explainedVariance: expect.any(Number),
      counts: { processed: 69, failed: 1 + 1 + 4 + 1 + 2, skipped: 1, failedBatches: 2 },
      outputs: {
        features: `results/${runId}/features.csv`,
        featuresParquet: `results/${runId}/features.parquet`,
        featuresParts: `results/${runId}/features/`,
        model: `results/${runId}/pca-model.json`,
        explainedVariance: `results/${runId}/explained-variance.csv`,
        scree: `results/${runId}/scree.svg`,
        scatter: `results/${runId}/pca-scatter.svg`,
        readme: `results/${runId}/README.txt`,
        report: `results/${runId}/report.json`,
        html: `results/${runId}/report.html`,
      },
    });

    // features.csv: header, one row per processed image, keys exact, scores = reference PCA.
    const csv = parseCsv(await getText(client, result.outputs.features));
    expect(csv[0]).toEqual(['key', 'label', 'split', 'pc_1', 'pc_2', 'pc_3']);
    expect(
      csv
        .slice(1)
        .map((row) => row[0])
        .sort(),
    ).toEqual([...processedKeys].sort());
    const rows = new Map(csv.slice(1).map((row) => [row[0], row]));
    expect(rows.get(a.keys[0])![1]).toBe('Kiwi');
    expect(rows.get(`input/${runId}/${LABELS[3]}/img_1_3.jpg`)![1]).toBe(LABELS[3]);

    const matrix: number[][] = [];
    const vectorOf = new Map<string, number[]>();
    a.keys.forEach((key, r) => vectorOf.set(key, Array.from(a.vectors.subarray(r * dim, (r + 1) * dim))));
    b.keys.forEach((key, r) => {
      if (r !== 5) vectorOf.set(key, Array.from(b.vectors.subarray(r * dim, (r + 1) * dim)));
    });
    for (const key of processedKeys) matrix.push(vectorOf.get(key)!);
    const reference = new PCA(matrix, { scale: true });
    const predicted = reference.predict(matrix, { nComponents: 3 });
    const n = matrix.length;
    const factor = Math.sqrt(n / (n - 1)); // ours: population std; ml-pca: sample std
    for (let c = 0; c < 3; c++) {
      const ours = processedKeys.map((key) => Number(rows.get(key)![3 + c]));
      const theirs = processedKeys.map((_, i) => predicted.get(i, c) * factor);
      const sign = Math.sign(ours[0]) === Math.sign(theirs[0]) ? 1 : -1;
      ours.forEach((value, i) => expect(value).toBeCloseTo(sign * theirs[i], 4));
    }

    const model = JSON.parse(await getText(client, result.outputs.model!));
    expect(model).toMatchObject({ featurizer: 'mobilenet_v1_0.25_224@224', modelId: 'mobilenet_v1_0.25_224', imageSize: 224, count: 69, dim, k: 3 });
    expect(model.mean).toHaveLength(dim);
    expect(model.scale).toHaveLength(dim);
    expect(model.components).toHaveLength(3);
    expect(model.components[0]).toHaveLength(dim);
    expect(model.eigenvalues).toHaveLength(dim);
    expect(model.explainedVarianceRatio.reduce((s: number, r: number) => s + r, 0)).toBeCloseTo(1, 10);
    expect(model.explainedVariance).toBeCloseTo(result.explainedVariance, 12);
    reference
      .getExplainedVariance()
      .slice(0, 3)
      // The moments' float32 products (moments-stage.ts) keep the ratios within 1e-8 of ml-pca's.
      .forEach((r, i) => expect(Math.abs(model.explainedVarianceRatio[i] - r)).toBeLessThan(1e-8));

    const variance = parseCsv(await getText(client, result.outputs.explainedVariance));
    expect(variance).toHaveLength(dim + 1);
    expect(variance[3][4]).toBe('true');
    expect(variance[4][4]).toBe('false');

    for (const key of [result.outputs.scree, result.outputs.scatter]) {
      const svg = await getText(client, key);
      expect(svg.startsWith('<svg')).toBe(true);
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      expect(head.ContentType).toBe('image/svg+xml');
    }
    expect(await getText(client, result.outputs.scatter)).toContain('Fraise été 🍓');

    const report = JSON.parse(await getText(client, result.outputs.report));
    expect(report.status).toBe('SUCCEEDED');
    expect(report.counts).toEqual({ images: 79, processed: 69, failed: 9, skipped: 1, batches: 5, failedBatches: 2, batchesWithUnknownKeys: 0 });
    const reasons = Object.fromEntries(report.failed.byReason.map((r: { reason: string; count: number }) => [r.reason, r.count]));
    expect(reasons['feature vector holds NaN or infinite values']).toBe(1);
    expect(reasons['image too small']).toBe(1);
    expect(reasons['batch failed (Lambda.Unknown): Runtime.ExitError: RequestId: x Error: Runtime exited with error: signal: killed']).toBe(2);
    expect(Object.keys(reasons).find((r) => r.startsWith('batch failed (UnreadableShard)'))).toBeDefined();
    expect(report.failedBatches.map((f: { error: string }) => f.error).sort()).toEqual(['Lambda.Unknown', 'UnreadableShard']);
    expect(report.skipped.items.map((s: { reason: string }) => s.reason)).toEqual(['start marker']);
    expect(report.featurizer).toMatchObject({ ids: { 'mobilenet_v1_0.25_224@224': 69 }, dim, backends: ['wasm'], imageSizes: [224] });
    expect(report.pca).toMatchObject({ rows: 69, k: 3, requestedComponents: 3 });
    expect(Object.keys(report.timingsMs)).toEqual(expect.arrayContaining(['plan', 'momentsSlowest', 'fit', 'projectSlowest', 'publish']));
    // Every listed object is accounted for exactly once.
    const accounted = [...processedKeys, ...report.failed.items.map((i: { key: string }) => i.key), ...report.skipped.items.map((i: { key: string }) => i.key)];
    const listed = [...a.keys, headerA.failed[0].key, headerA.skipped[0].key, ...b.keys, ...c.keys, noShard.failed[0].key, ...failedKeys];
    expect(accounted.sort()).toEqual(listed.sort());
    expect(report.accounting).toMatchObject({ complete: true, listed: 79, accounted: 79, unaccounted: { count: 0 }, listedTwice: { count: 0 }, problems: [] });
  });

  it('fails the run, naming the keys, when the listing handed out a key twice or a batch lost one', async () => {
    const runId = 'run-not-accounted';
    const dim = 8;
    const a = makeRows(12, dim, 21, runId);
    const b = makeRows(12, dim, 22, runId);
    b.keys[4] = a.keys[4]; // listed twice: a listing that repeats keys across pages
    const lost = `input/${runId}/Kiwi/never-came-back.jpg`; // in the batch input, in no outcome
    await put(client, `work/${runId}/shards/a.fsh`, encodeFeatureShard({ header: header(a.keys, a.labels, dim), vectors: a.vectors }));
    await put(client, `work/${runId}/shards/b.fsh`, encodeFeatureShard({ header: header(b.keys, b.labels, dim), vectors: b.vectors }));
    const event = await writeMapRun(
      client,
      runId,
      [
        childRecord('SUCCEEDED', [...a.keys, lost], runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/a.fsh`, header(a.keys, a.labels, dim))) }),
        childRecord('SUCCEEDED', b.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/b.fsh`, header(b.keys, b.labels, dim))) }),
      ],
      [],
    );
    await expect(aggregateRun(event, { s3: client, settings })).rejects.toThrow(IncompleteRunError);
    const report = JSON.parse(await getText(client, `results/${runId}/report.json`));
    expect(report.status).toBe('FAILED');
    expect(report.error.name).toBe('IncompleteRunError');
    expect(report.accounting).toMatchObject({
      complete: false,
      listed: 25,
      unaccounted: { count: 1, keys: [lost] },
      listedTwice: { count: 1, keys: [a.keys[4]] },
    });
    expect(report.error.message).toContain(lost);
    // Nothing is published for an unproven run.
    await expect(getText(client, `results/${runId}/features.csv`)).rejects.toThrow();
  });

  it('fails the run when a shard has no batch record: the keys its batch was handed are not known', async () => {
    const runId = 'run-no-record';
    const dim = 8;
    const a = makeRows(12, dim, 23, runId);
    const b = makeRows(12, dim, 24, runId);
    await put(client, `work/${runId}/shards/a.fsh`, encodeFeatureShard({ header: header(a.keys, a.labels, dim), vectors: a.vectors }));
    await put(client, `work/${runId}/shards/b.fsh`, encodeFeatureShard({ header: header(b.keys, b.labels, dim), vectors: b.vectors }));
    const event = await writeMapRun(
      client,
      runId,
      [
        childRecord('SUCCEEDED', a.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/a.fsh`, header(a.keys, a.labels, dim))) }),
        childRecord('SUCCEEDED', b.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/b.fsh`, header(b.keys, b.labels, dim))) }),
      ],
      [],
    );
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `work/${runId}/batches/b.json` }));
    // The groups name shards and summaries only: no key of any batch passes through the plan.
    await expect(aggregateRun(event, { s3: client, settings })).rejects.toThrow(IncompleteRunError);
    expect(await getText(client, `work/${runId}/aggregate/groups/00000.json`)).not.toContain(a.keys[0]);
    const report = JSON.parse(await getText(client, `results/${runId}/report.json`));
    expect(report.accounting).toMatchObject({ complete: false, listed: 12, accounted: 24 });
    expect(report.accounting.problems).toEqual([
      `no readable batch record for 1 of the group's shards (work/${runId}/shards/b.fsh): the keys their batches were handed are not known`,
    ]);
  });

  it('accounts a child that wrote its shard and record and then failed once, as failed: its shard is in no group', async () => {
    const runId = 'run-failed-after-write';
    const dim = 8;
    const kept = makeRows(16, dim, 25, runId);
    const late = makeRows(4, dim, 26, runId, 'late');
    await put(client, `work/${runId}/shards/kept.fsh`, encodeFeatureShard({ header: header(kept.keys, kept.labels, dim), vectors: kept.vectors }));
    // The failed child's shard and batch record, written before its Task timed out.
    await put(client, `work/${runId}/shards/late.fsh`, encodeFeatureShard({ header: header(late.keys, late.labels, dim), vectors: late.vectors }));
    await put(client, `work/${runId}/batches/late.json`, JSON.stringify({ items: late.keys }));
    const event = await writeMapRun(
      client,
      runId,
      [childRecord('SUCCEEDED', kept.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/kept.fsh`, header(kept.keys, kept.labels, dim))) })],
      [childRecord('FAILED', late.keys, runId, { Error: 'States.Timeout', Cause: '' })],
    );
    const result = await aggregateRun(event, { s3: client, settings });
    expect(result).toMatchObject({ rows: 16, counts: { processed: 16, failed: 4, failedBatches: 1 } });
    const report = JSON.parse(await getText(client, result.outputs.report));
    expect(report.accounting).toMatchObject({ complete: true, listed: 20, accounted: 20 });
    expect(await getText(client, `work/${runId}/aggregate/groups/00000.json`)).not.toContain('late.fsh');
  });

  it('classifies every non-Training row against the Training rows with k-NN: predictions.csv, accuracy, confusion, Parquet, report.html', async () => {
    const runId = 'run-classify';
    const dim = 12;
    // Training and Test rows of the four labels, one unsplit row, one row in a split of no name.
    const train = makeRows(48, dim, 31, runId);
    const test = makeRows(16, dim, 32, runId);
    train.keys = train.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/Training/`));
    test.keys = test.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/Test/`));
    // Two Test rows made to look like another class: they must be misclassified and shown.
    const swapped = [1, 6];
    for (const r of swapped) {
      const other = (r + 1) % LABELS.length;
      for (let f = 0; f < dim; f++) test.vectors[r * dim + f] = train.vectors[other * dim + f] + 0.01;
    }
    const loose = makeRows(2, dim, 33, runId);
    loose.keys = [`input/${runId}/Kiwi/unsplit.jpg`, `input/${runId}/New batch/=cmd.jpg`];
    loose.labels = ['Kiwi', 'New batch'];
    // Real images for the gallery: the misclassified Test rows and every Training row.
    const sharp = (await import('sharp')).default;
    const png = (hue: number) =>
      sharp({ create: { width: 40, height: 30, channels: 3, background: { r: hue, g: 255 - hue, b: 90 } } })
        .png()
        .toBuffer();
    for (const r of swapped) await put(client, test.keys[r], await png(r * 40));
    for (let r = 0; r < train.keys.length; r++) await put(client, train.keys[r], await png((r * 13) % 255));
    // Training and Test rows in separate shards, Test first, as a listing of Fruits-360 gives them.
    const shards = [
      { name: 'a-test', rows: test },
      { name: 'b-train', rows: train },
      { name: 'c-loose', rows: loose },
    ];
    const succeeded = [];
    for (const { name, rows } of shards) {
      const h = header(rows.keys, rows.labels, dim);
      await put(client, `work/${runId}/shards/${name}.fsh`, encodeFeatureShard({ header: h, vectors: rows.vectors }));
      succeeded.push(childRecord('SUCCEEDED', rows.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/${name}.fsh`, h)) }));
    }
    const event = await writeMapRun(client, runId, succeeded, []);

    const result = await aggregateRun(event, { s3: client, settings: { components: 4, knnNeighbours: 3, keepEmbeddings: true, classifier: 'knn' } });
    expect(result.outputs).toMatchObject({ predictions: `results/${runId}/predictions.csv`, embeddings: `results/${runId}/embeddings.parquet` });

    // features.csv: the split column.
    const features = parseCsv(await getText(client, result.outputs.features));
    const splitOf = new Map(features.slice(1).map((row) => [restoreTextField(row[0]), row[2]]));
    expect(splitOf.get(train.keys[0])).toBe('train');
    expect(splitOf.get(test.keys[0])).toBe('test');
    expect(splitOf.get(loose.keys[0])).toBe('');

    // predictions.csv: every row but the Training ones, guarded text cells.
    const predictions = parseCsv(await getText(client, result.outputs.predictions!));
    expect(predictions[0]).toEqual(['key', 'label', 'split', 'predicted', 'confidence', 'nearest_distance']);
    expect(
      predictions
        .slice(1)
        .map((row) => restoreTextField(row[0]))
        .sort(),
    ).toEqual([...test.keys, ...loose.keys].sort());
    const byKey = new Map(predictions.slice(1).map((row) => [restoreTextField(row[0]), row]));
    for (const r of swapped) expect(byKey.get(test.keys[r])![3]).toBe(LABELS[(r + 1) % LABELS.length]);
    expect(byKey.get(test.keys[0])![3]).toBe(test.labels[0]);
    expect(byKey.get(loose.keys[1])![0]).toBe(`input/${runId}/New batch/=cmd.jpg`);
    // Every prediction and nearest distance as a k-NN written out from its definition gives them
    // over the published features.csv (test/support/reference-knn.ts shares no code with the classifier).
    const table = features.slice(1).map((row) => ({ key: restoreTextField(row[0]), label: row[1], split: row[2], vector: row.slice(3).map(Number) }));
    expect(table[0].vector).toHaveLength(4);
    const reference = referenceKnn(
      table.filter((row) => row.split === 'train'),
      table.filter((row) => row.split !== 'train'),
      3,
    );
    expect(reference.predictions.size).toBe(predictions.length - 1);
    for (const [key, { predicted, nearest }] of reference.predictions) {
      expect({ key, predicted: byKey.get(key)![3] }).toEqual({ key, predicted });
      expect(Number(byKey.get(key)![5])).toBeCloseTo(nearest, 3);
      // The vote share: 1, 2 or 3 of the 3 neighbours, the winner holding at least one.
      expect([1 / 3, 2 / 3, 1].map((share) => Number(share.toPrecision(4)))).toContain(Number(byKey.get(key)![4]));
    }
    expect(Number(byKey.get(test.keys[swapped[0]])![5])).toBeGreaterThan(0);

    // report.json: accuracy (14 of 16 by construction: the two swapped rows), per class, sparse confusion.
    const report = JSON.parse(await getText(client, result.outputs.report));
    const scoredRows = table.filter((row) => row.split === 'test');
    const referenceCorrect = scoredRows.filter((row) => reference.predictions.get(row.key)!.predicted === row.label).length;
    expect(report.classification).toMatchObject({
      status: 'classified',
      classifier: 'knn',
      neighbours: 3,
      components: 4,
      references: 48,
      predicted: 18,
      scored: 16,
      correct: 14,
      accuracy: 14 / 16,
      unscored: 2,
      confusion: { format: 'sparse' },
    });
    expect({ correct: referenceCorrect, scored: scoredRows.length }).toEqual({ correct: 14, scored: 16 });
    expect(result.accuracy).toBe(14 / 16);
    expect(report.classification.perClass).toHaveLength(4);
    const cells = report.classification.confusion.cells as { actual: string; predicted: string; count: number }[];
    expect(cells.every((cell) => cell.count > 0)).toBe(true);
    expect(cells.reduce((sum, cell) => sum + cell.count, 0)).toBe(16);
    expect(report.classification.mostConfused).toHaveLength(2);
    expect(report.classification.mostConfused[0]).toMatchObject({ count: 1, shareOfActual: 0.25 });
    expect(report.settings).toEqual({ pcaComponents: 4, pcaVarianceThreshold: null, classifier: 'knn', knnNeighbours: 3, keepEmbeddings: true });
    expect(report.schema.files.map((f: { file: string }) => f.file)).toEqual(
      expect.arrayContaining(['features.csv', 'features.parquet', 'predictions.csv', 'embeddings.parquet']),
    );
    expect(await getText(client, result.outputs.readme)).toContain('split [BYTE_ARRAY UTF8, optional]');

    // features.parquet: typed columns, the same rows as the CSV, read by hyparquet (a reader the writer does not include).
    const parquetFile = await getBuffer(client, result.outputs.featuresParquet!);
    const metadata = parquetMetadata(parquetFile);
    expect(metadata.schema.slice(1).map((c) => [c.name, c.type, c.converted_type, c.repetition_type])).toEqual([
      ['key', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
      ['label', 'BYTE_ARRAY', 'UTF8', 'REQUIRED'],
      ['split', 'BYTE_ARRAY', 'UTF8', 'OPTIONAL'],
      ...[1, 2, 3, 4].map((c) => [`pc_${c}`, 'FLOAT', undefined, 'REQUIRED']),
    ]);
    const parquetRows = (await parquetReadObjects({ file: parquetFile })) as Record<string, string | number | null>[];
    expect(parquetRows).toHaveLength(features.length - 1);
    features.slice(1).forEach((row, i) => {
      expect(parquetRows[i].key).toBe(restoreTextField(row[0]));
      expect(parquetRows[i].label).toBe(restoreTextField(row[1]));
      expect(parquetRows[i].split ?? '').toBe(row[2]);
      expect(parquetRows[i].pc_2 as number).toBeCloseTo(Number(row[4]), 4);
    });
    // The rows with no split in the CSV (there are some) hold null, not an empty string, in the file.
    const noSplit = features.slice(1).filter((row) => row[2] === '').length;
    expect(noSplit).toBeGreaterThan(0);
    expect(parquetRows.filter((row) => row.split === null)).toHaveLength(noSplit);

    const embeddingsMetadata = parquetMetadata(await getBuffer(client, result.outputs.embeddings!));
    expect(embeddingsMetadata.schema).toHaveLength(1 + 3 + dim);
    expect(Number(embeddingsMetadata.num_rows)).toBe(66);

    // report.html: one page, thumbnails inline, the misclassified pair beside its nearest reference.
    const html = await getText(client, result.outputs.html);
    expect(html).toContain("default-src 'none'");
    expect(html).toContain('Misclassified Test images');
    expect((html.match(/src="data:image\/jpeg;base64,/g) ?? []).length).toBe(4);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(html).toContain('87.5%');
  });

  it('classifies with the LDA when asked: fitted from the Training rows, saved in pca-model.json, a confidence per prediction', async () => {
    const runId = 'run-lda';
    const dim = 12;
    const train = makeRows(64, dim, 41, runId);
    const test = makeRows(24, dim, 42, runId);
    train.keys = train.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/Training/`));
    test.keys = test.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/Test/`));
    // One Test row made to look like a Training row of another class: misclassified, shown.
    const other = 2;
    for (let f = 0; f < dim; f++) test.vectors[f] = train.vectors[other * dim + f];
    const sharp = (await import('sharp')).default;
    const png = await sharp({ create: { width: 30, height: 30, channels: 3, background: { r: 200, g: 40, b: 90 } } })
      .png()
      .toBuffer();
    for (const key of [...train.keys, test.keys[0]]) await put(client, key, png);
    const succeeded = [];
    for (const [name, rows] of [
      ['a-test', test],
      ['b-train', train],
    ] as const) {
      const h = header(rows.keys, rows.labels, dim);
      await put(client, `work/${runId}/shards/${name}.fsh`, encodeFeatureShard({ header: h, vectors: rows.vectors }));
      succeeded.push(childRecord('SUCCEEDED', rows.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/${name}.fsh`, h)) }));
    }
    const event = await writeMapRun(client, runId, succeeded, []);
    const result = await aggregateRun(event, { s3: client, settings: { components: 6, classifier: 'lda' } });

    // pca-model.json carries the classifier, checked by its schema. It sees every component the
    // data supports (64 Training rows allow 16, the features 12), features.csv the 6 kept.
    const text = await getText(client, result.outputs.model!);
    const model = JSON.parse(text);
    expect(model).toMatchObject({ k: 6, classifierK: 12 });
    expect(model.components).toHaveLength(12);
    const lda = loadLdaClassifier(model.classifier);
    expect(lda.dim).toBe(12);
    expect([...lda.labels].sort()).toEqual([...LABELS].sort());
    expect(model.classifier).toMatchObject({ count: 64, shrinkage: 0.1 });
    expect(new Set(model.classifier.prototypeKeys)).toEqual(new Set(model.classifier.prototypeKeys.filter((key: string) => train.keys.includes(key))));

    // The same classifier as the module fits on the Training rows' scores on the model's 12
    // components (all of them fit in the sample): the same predictions. features.csv holds the
    // leading 6 of those scores.
    const features = parseCsv(await getText(client, result.outputs.features));
    expect(features[0]).toHaveLength(3 + 6);
    const wide = new PcaProjector(classifierFit(pcaFitOf(parsePcaModel(text, 'pca-model.json'))));
    const raw = new Map([...train.keys, ...test.keys].map((key, r) => [key, r < 64 ? train.vectors.subarray(r * dim) : test.vectors.subarray((r - 64) * dim)]));
    const table = features.slice(1).map((row) => {
      const key = restoreTextField(row[0]);
      const vector = Array.from(wide.project(raw.get(key)!, 0));
      vector.slice(0, 6).forEach((score, c) => expect(Number(row[3 + c])).toBeCloseTo(score, 5));
      return { key, label: row[1], split: row[2], vector };
    });
    const training = table.filter((row) => row.split === 'train').sort((a, b) => (a.key < b.key ? -1 : 1));
    const local = await fitLdaClassifier(
      training.map((row) => row.vector),
      training.map((row) => row.label),
    );
    const predictions = parseCsv(await getText(client, result.outputs.predictions!));
    expect(predictions[0]).toEqual(['key', 'label', 'split', 'predicted', 'confidence', 'nearest_distance']);
    expect(predictions).toHaveLength(1 + 24);
    const byKey = new Map(predictions.slice(1).map((row) => [restoreTextField(row[0]), row]));
    const queries = table.filter((row) => row.split === 'test');
    local.predict(queries.map((row) => row.vector)).forEach((expected, q) => {
      const row = byKey.get(queries[q].key)!;
      expect({ key: queries[q].key, predicted: row[3] }).toEqual({ key: queries[q].key, predicted: expected.label });
      expect(Number(row[4])).toBeCloseTo(expected.confidence, 2);
      expect(Number(row[4])).toBeGreaterThan(0);
      expect(Number(row[4])).toBeLessThanOrEqual(1);
      expect(Number(row[5])).toBeCloseTo(expected.distance, 2);
    });
    expect(byKey.get(test.keys[0])![3]).toBe(LABELS[other]);

    const report = JSON.parse(await getText(client, result.outputs.report));
    expect(report.classification).toMatchObject({
      status: 'classified',
      classifier: 'lda',
      shrinkage: 0.1,
      prototypes: 8,
      references: 64,
      scored: 24,
      correct: 23,
    });
    expect(report.classification.neighbours).toBeUndefined();
    for (const mean of Object.values(report.classification.confidence) as number[]) expect(mean > 0 && mean <= 1).toBe(true);
    expect(report.settings).toMatchObject({ classifier: 'lda' });
    expect(JSON.stringify(report.schema)).toContain('softmax probability');
    const html = await getText(client, result.outputs.html);
    expect(html).toContain('LDA over 12 components');
    expect(html).toContain('LDA Test accuracy');
    expect(html).toMatch(/Mean confidence \d+\.\d%/);
    // The misclassified row beside the Training image nearest the prototype that won.
    expect(html).toContain(`predicted <b class="wrong">${LABELS[other].replaceAll('"', '&quot;')}</b> (confidence`);
    expect((html.match(/src="data:image\/jpeg;base64,/g) ?? []).length).toBe(2);
  });

  it("adds the shards' field copies of Training images to the LDA's statistics only: no row, no count, no prototype", async () => {
    const dim = 10;
    const runOf = async (runId: string, withCopies: boolean) => {
      const train = makeRows(40, dim, 91, runId);
      const test = makeRows(12, dim, 92, runId);
      train.keys = train.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/Training/`));
      test.keys = test.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/Test/`));
      // A copy of every other Training image, shifted along feature 0 (what a new background might do).
      const copied = train.keys.flatMap((key, r) => (r % 2 === 0 ? [r] : []));
      const copies = new Float32Array(copied.length * dim);
      copied.forEach((r, c) => {
        copies.set(train.vectors.subarray(r * dim, (r + 1) * dim), c * dim);
        copies[c * dim] += 4 * (c % 3) - 4;
      });
      const h = header(train.keys, train.labels, dim, {
        ...(withCopies
          ? { fieldCopies: { keys: copied.map((r) => train.keys[r]), labels: copied.map((r) => train.labels[r]), conditions: copied.map(() => 'background') } }
          : {}),
      });
      const vectors = withCopies ? Float32Array.from([...train.vectors, ...copies]) : train.vectors;
      const succeeded = [];
      for (const [name, shardHeader, shardVectors] of [
        ['a-train', h, vectors],
        ['b-test', header(test.keys, test.labels, dim), test.vectors],
      ] as const) {
        await put(client, `work/${runId}/shards/${name}.fsh`, encodeFeatureShard({ header: shardHeader, vectors: shardVectors }));
        succeeded.push(
          childRecord('SUCCEEDED', shardHeader.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/${name}.fsh`, shardHeader)) }),
        );
      }
      const result = await aggregateRun(await writeMapRun(client, runId, succeeded, []), { s3: client, settings: { components: 5, classifier: 'lda' } });
      const text = async (key: string) => (await getText(client, key)).replaceAll(runId, 'RUN');
      return {
        result,
        features: await text(result.outputs.features),
        report: JSON.parse(await getText(client, result.outputs.report)),
        classifier: JSON.parse(await getText(client, result.outputs.model!)).classifier,
      };
    };
    const plain = await runOf('run-no-copies', false);
    const copied = await runOf('run-copies', true);
    // The LDA's inputs: class statistics and the clean rows' sample, no sample of the copies (only logistic regression reads one).
    const key = 'work/run-copies/aggregate/class-statistics/00000.bin';
    const bytes = await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray();
    const statistics = decodeClassStatistics(bytes, key);
    expect(statistics.classes.reduce((sum, c) => sum + c.count, 0)).toBeGreaterThan(0);
    await expect(getText(client, 'work/run-copies/aggregate/copy-sample/00000.fsh')).rejects.toThrow();
    expect(copied.features).toBe(plain.features);
    expect(copied.report.counts).toEqual(plain.report.counts);
    expect(copied.report.accounting.complete).toBe(true);
    expect(copied.report.classification).toMatchObject({ classifier: 'lda', references: 40, predicted: 12 });
    // The statistics held 40 images and 20 copies; the prototypes are the images' own.
    expect(plain.classifier.count).toBe(40);
    expect(copied.classifier.count).toBe(60);
    expect(copied.classifier.prototypeKeys.every((key: string) => key.includes('/Training/'))).toBe(true);
    expect(copied.classifier.projection).not.toEqual(plain.classifier.projection);
  });

  it('gives the same tables in groups of one shard as in one group, the features as one Parquet dataset', async () => {
    const runOf = async (runId: string, groupShards: number) => {
      const event = await writeSplitRun(runId, 5, 70);
      const result = await aggregateRun(event, { s3: client, settings: { components: 4, groupShards, classifier: 'lda' } });
      const text = async (name: string) => (await getText(client, `results/${runId}/${name}`)).replaceAll(runId, 'RUN');
      return {
        result,
        features: await text('features.csv'),
        predictions: await text('predictions.csv'),
        report: JSON.parse(await getText(client, `results/${runId}/report.json`)),
      };
    };
    const whole = await runOf('run-one-group', 40);
    const grouped = await runOf('run-five-groups', 1);
    expect(whole.report.pca.groups).toBe(1);
    expect(grouped.report.pca.groups).toBe(5);
    expect(grouped.result.outputs.featuresParquet).toBeUndefined();
    expect(grouped.report.accounting.complete).toBe(true);
    expect(grouped.report.counts).toEqual(whole.report.counts);
    // The LDA fitted from the groups' merged class statistics and sample: every
    // prediction and confidence as in one group, the distances up to the rounding of the moments'
    // float32 products over other blocks of rows (moments-stage.ts).
    expect(grouped.report.classification).toMatchObject({ classifier: 'lda', predicted: 24 });
    const [wholePredictions, groupedPredictions] = [parseCsv(whole.predictions), parseCsv(grouped.predictions)];
    expect(groupedPredictions.map((row) => row.slice(0, 5))).toEqual(wholePredictions.map((row) => row.slice(0, 5)));
    groupedPredictions.slice(1).forEach((row, r) => expect(Number(row[5])).toBeCloseTo(Number(wholePredictions[r + 1][5]), 4));
    expect(grouped.report.classification.accuracy).toBe(whole.report.classification.accuracy);
    const classifierOf = async (runId: string) => loadLdaClassifier(JSON.parse(await getText(client, `results/${runId}/pca-model.json`)).classifier).toJSON();
    const [wholeLda, groupedLda] = [await classifierOf('run-one-group'), await classifierOf('run-five-groups')];
    expect(groupedLda.labels).toEqual(wholeLda.labels);
    expect(groupedLda.prototypeLabels).toEqual(wholeLda.prototypeLabels);
    groupedLda.prototypes.flat().forEach((value, i) => expect(value).toBeCloseTo(wholeLda.prototypes.flat()[i], 4));
    // The same scores, up to the rounding of moments computed in other blocks and merged in another order.
    const cells = (csv: string) => parseCsv(csv).slice(1);
    const [a, b] = [cells(whole.features), cells(grouped.features)];
    expect(b.map((row) => row.slice(0, 3))).toEqual(a.map((row) => row.slice(0, 3)));
    b.forEach((row, r) => row.slice(3).forEach((value, c) => expect(Number(value)).toBeCloseTo(Number(a[r][c + 3]), 5)));
    // The parts read back as one table (hyparquet).
    const partRows: Record<string, unknown>[] = [];
    for (let g = 0; g < 5; g++) {
      partRows.push(...(await parquetReadObjects({ file: await getBuffer(client, `results/run-five-groups/features/part-0000${g}.parquet`) })));
    }
    expect(partRows.map((row) => row.key)).toEqual(b.map((row) => restoreTextField(row[0]).replaceAll('RUN', 'run-five-groups')));
  });

  it('merges the moments of more groups than the fan-in as a tree, with the outputs of a run that merges them at once', async () => {
    const runOf = async (runId: string, momentsMergeFanIn: number) => {
      // Shard 3 is corrupt: its group keeps no rows, so it leaves a tally and no moments.
      const event = await writeSplitRun(runId, 9, 90, [3]);
      await aggregateRun(event, { s3: client, settings: { components: 4, groupShards: 1, momentsMergeFanIn } });
      const text = async (name: string) => (await getText(client, `results/${runId}/${name}`)).replaceAll(runId, 'RUN');
      const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `work/${runId}/aggregate/merged-moments/` }));
      return {
        merged: (listed.Contents ?? []).map((object) => object.Key!.split('/merged-moments/')[1]),
        features: await text('features.csv'),
        predictions: await text('predictions.csv'),
        report: JSON.parse(await text('report.json')),
        model: JSON.parse(await text('pca-model.json')),
      };
    };
    const atOnce = await runOf('run-moments-at-once', 16);
    const tree = await runOf('run-moments-tree', 2);
    expect(atOnce.merged).toEqual([]);
    // 9 groups in levels of 9, 5, 3 and 2 partials: three levels of merges, then the fit merges 2.
    const nodes = (level: number, count: number) => Array.from({ length: count }, (_, n) => `${level}/0000${n}.bin`);
    expect(tree.merged).toEqual([...nodes(1, 5), ...nodes(2, 3), ...nodes(3, 2)]);
    // The same proof of completeness, counts and predictions; the model and scores to rounding.
    expect(tree.report.accounting).toEqual(atOnce.report.accounting);
    expect(tree.report.accounting.complete).toBe(true);
    expect(tree.report.counts).toEqual(atOnce.report.counts);
    expect(tree.report.counts.processed).toBe(96);
    const close = (a: number[], b: number[], tolerance: number) =>
      a.forEach((value, i) => expect(Math.abs(value - b[i])).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(b[i]))));
    // The same predictions; confidences (4 digits) and distances to the float32 projection's rounding.
    const [atOncePredictions, treePredictions] = [parseCsv(atOnce.predictions), parseCsv(tree.predictions)];
    expect(treePredictions.map((row) => row.slice(0, 4))).toEqual(atOncePredictions.map((row) => row.slice(0, 4)));
    const column = (rows: string[][], c: number) => rows.slice(1).map((row) => Number(row[c]));
    close(column(treePredictions, 4), column(atOncePredictions, 4), 1e-4);
    close(column(treePredictions, 5), column(atOncePredictions, 5), 1e-6);
    close(tree.model.mean, atOnce.model.mean, 1e-12);
    close(tree.model.eigenvalues, atOnce.model.eigenvalues, 1e-9);
    close(tree.model.components.flat(), atOnce.model.components.flat(), 1e-9);
    const cells = (csv: string) => parseCsv(csv).slice(1);
    const [a, b] = [cells(atOnce.features), cells(tree.features)];
    expect(b.map((row) => row.slice(0, 3))).toEqual(a.map((row) => row.slice(0, 3)));
    b.forEach((row, r) => close(row.slice(3).map(Number), a[r].slice(3).map(Number), 1e-6));
  });

  it('streams a features.csv larger than one multipart part', async () => {
    const runId = 'run-multipart';
    const dim = 24;
    const succeeded = [];
    for (let s = 0; s < 4; s++) {
      const rows = makeRows(9000, dim, 10 + s, runId, 'a-rather-long-file-name-to-make-the-csv-grow');
      const h = header(rows.keys, rows.labels, dim);
      const key = `work/${runId}/shards/${s}.fsh`;
      await put(client, key, encodeFeatureShard({ header: h, vectors: rows.vectors }));
      succeeded.push(childRecord('SUCCEEDED', rows.keys, runId, { Output: JSON.stringify(summaryOf(key, h)) }));
    }
    const event = await writeMapRun(client, runId, succeeded, []);
    const result = await aggregateRun(event, { s3: client, settings: { components: 20 } });
    expect(result.rows).toBe(36000);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: result.outputs.features }));
    expect(head.ContentLength).toBeGreaterThan(8 * 1024 * 1024);
    const text = await getText(client, result.outputs.features);
    expect(text.split('\r\n')).toHaveLength(36000 + 2);
  });

  it('joins groups whose rows fill multipart parts into features.csv by part copies, the small predictions through memory', async () => {
    const runId = 'run-part-copy';
    const dim = 24;
    const succeeded = [];
    const keys: string[] = [];
    for (let s = 0; s < 4; s++) {
      const rows = makeRows(9000, dim, 10 + s, runId, 'a-rather-long-file-name-to-make-the-csv-grow');
      keys.push(...rows.keys);
      const h = header(rows.keys, rows.labels, dim);
      const key = `work/${runId}/shards/${s}.fsh`;
      await put(client, key, encodeFeatureShard({ header: h, vectors: rows.vectors }));
      succeeded.push(childRecord('SUCCEEDED', rows.keys, runId, { Output: JSON.stringify(summaryOf(key, h)) }));
    }
    const event = await writeMapRun(client, runId, succeeded, []);
    const sent: string[] = [];
    const name = 'count commands';
    client.middlewareStack.add((next, context) => (args) => (sent.push(context.commandName!), next(args)), { step: 'initialize', name });
    try {
      await aggregateRun(event, { s3: client, settings: { components: 20, groupShards: 2 } });
    } finally {
      client.middlewareStack.remove(name);
    }
    // Two groups of about 6 MB: the second group's rows are copied by S3, not read.
    expect(sent.filter((command) => command === 'UploadPartCopyCommand')).toHaveLength(1);
    const rows = parseCsv(await getText(client, `results/${runId}/features.csv`));
    expect(rows[0].slice(0, 4)).toEqual(['key', 'label', 'split', 'pc_1']);
    expect(rows.slice(1).map((row) => restoreTextField(row[0]))).toEqual(keys);
    expect(rows.slice(1).every((row) => row.length === 3 + 20)).toBe(true);
  });

  it('picks k from PCA_VARIANCE_THRESHOLD and clamps to what few images support', async () => {
    const runId = 'run-few';
    const dim = 8;
    const rows = makeRows(5, dim, 21, runId);
    const h = header(rows.keys, rows.labels, dim);
    await put(client, `work/${runId}/shards/only.fsh`, encodeFeatureShard({ header: h, vectors: rows.vectors }));
    const event = await writeMapRun(
      client,
      runId,
      [childRecord('SUCCEEDED', rows.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/only.fsh`, h)) })],
      [],
    );
    const clamped = await aggregateRun(event, { s3: client, settings: { components: 50 } });
    expect(clamped.components).toBe(4);
    const report = JSON.parse(await getText(client, clamped.outputs.report));
    expect(report.warnings.join('\n')).toMatch(/at most 4/);
    const threshold = await aggregateRun(event, { s3: client, settings: { components: 50, varianceThreshold: 0.5 } });
    expect(threshold.components).toBeLessThan(4);
    expect(threshold.explainedVariance).toBeGreaterThanOrEqual(0.5);
  });

  it('fails the images of a missing shard and of a shard from another featurizer, and goes on', async () => {
    const runId = 'run-mixed';
    const good = makeRows(20, 8, 31, runId);
    const other = makeRows(3, 6, 32, runId, 'other');
    const gone = makeRows(2, 8, 33, runId, 'gone');
    const goodHeader = header(good.keys, good.labels, 8);
    const otherHeader = header(other.keys, other.labels, 6, { featurizer: 'pixels-16x16' });
    await put(client, `work/${runId}/shards/1.fsh`, encodeFeatureShard({ header: goodHeader, vectors: good.vectors }));
    await put(client, `work/${runId}/shards/2.fsh`, encodeFeatureShard({ header: otherHeader, vectors: other.vectors }));
    const event = await writeMapRun(
      client,
      runId,
      [
        childRecord('SUCCEEDED', good.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/1.fsh`, goodHeader)) }),
        childRecord('SUCCEEDED', other.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/2.fsh`, otherHeader)) }),
        childRecord('SUCCEEDED', gone.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/3.fsh`, header(gone.keys, gone.labels, 8))) }),
      ],
      [],
    );
    const result = await aggregateRun(event, { s3: client, settings });
    expect(result.rows).toBe(20);
    const report = JSON.parse(await getText(client, result.outputs.report));
    expect(report.counts).toMatchObject({ images: 25, processed: 20, failed: 5, failedBatches: 1 });
    const reasons = report.failed.byReason.map((r: { reason: string }) => r.reason);
    expect(reasons).toEqual(
      expect.arrayContaining([
        "features from pixels-16x16 (6 values) cannot be mixed with the run's mobilenet_v1_0.25_224@224 (8 values)",
        `batch failed (UnreadableShard): feature shard work/${runId}/shards/3.fsh: missing (no such key)`,
      ]),
    );
    expect(report.warnings.join('\n')).toMatch(/raw-pixels fallback/);
  });

  it('fails the images of a shard that answers 403 AccessDenied (AWS, no s3:ListBucket) as missing, and goes on', async () => {
    // On AWS the aggregate role cannot list, so S3 answers a missing key with 403, not 404.
    const denying = await startLocalS3Server({ buckets: [BUCKET], missingObjectAnswer: 'AccessDenied' });
    try {
      const runId = 'run-403';
      const good = makeRows(20, 8, 41, runId);
      const gone = makeRows(3, 8, 42, runId, 'gone');
      const goodHeader = header(good.keys, good.labels, 8);
      await put(denying.client, `work/${runId}/shards/1.fsh`, encodeFeatureShard({ header: goodHeader, vectors: good.vectors }));
      const event = await writeMapRun(
        denying.client,
        runId,
        [
          childRecord('SUCCEEDED', good.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/1.fsh`, goodHeader)) }),
          childRecord('SUCCEEDED', gone.keys, runId, { Output: JSON.stringify(summaryOf(`work/${runId}/shards/2.fsh`, header(gone.keys, gone.labels, 8))) }),
        ],
        [],
      );
      const result = await aggregateRun(event, { s3: denying.client, settings });
      expect(result).toMatchObject({ rows: 20, counts: { processed: 20, failed: 3, failedBatches: 1 } });
      const report = JSON.parse(
        await (await denying.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: result.outputs.report }))).Body!.transformToString(),
      );
      expect(report.failed.byReason.map((r: { reason: string }) => r.reason)).toEqual([
        `batch failed (UnreadableShard): feature shard work/${runId}/shards/2.fsh: missing or not readable (403 AccessDenied)`,
      ]);
      expect(report.accounting.complete).toBe(true);
    } finally {
      await denying.close();
    }
  });

  it('fails clearly, with a report, when every image failed', async () => {
    const runId = 'run-all-failed';
    const noShard = { keys: [], failed: [{ key: `input/${runId}/Kiwi/a.jpg`, reason: 'cannot decode image' }], skipped: [] };
    const event = await writeMapRun(
      client,
      runId,
      [childRecord('SUCCEEDED', [noShard.failed[0].key], runId, { Output: JSON.stringify(summaryOf(null, noShard)) })],
      [childRecord('FAILED', [`input/${runId}/Kiwi/b.jpg`], runId, { Error: 'States.Timeout', Cause: '' })],
    );
    await expect(aggregateRun(event, { s3: client, settings })).rejects.toThrow(InsufficientDataError);
    const report = JSON.parse(await getText(client, `results/${runId}/report.json`));
    expect(report.status).toBe('FAILED');
    expect(report.error.message).toMatch(/every image failed/);
    expect(report.counts).toMatchObject({ processed: 0, failed: 2, failedBatches: 1 });
  });

  it('rejects a malformed event and reports transient storage trouble as retryable', async () => {
    await expect(aggregateRun({ runId: 'x' }, { s3: client, settings })).rejects.toThrow(MalformedEventError);
    const event = {
      bucket: BUCKET,
      inputPrefix: 'input/x/',
      runId: 'x',
      outputPrefix: 'results/x/',
      workPrefix: 'work/x/',
      mapResult: { ResultWriterDetails: { Bucket: BUCKET, Key: 'work/x/map-results/m/manifest.json' } },
    };
    // S3 throttles every request (503 SlowDown over HTTP): the SDK retries, then the run gives up retryable.
    const throttled = await startFailingS3Server(() => SLOW_DOWN);
    try {
      await expect(aggregateRun(event, { s3: throttled.client({ maxAttempts: 2 }), settings })).rejects.toThrow(TransientStorageError);
      expect(throttled.requests).toEqual([
        { method: 'GET', key: 'work/x/map-results/m/manifest.json' },
        { method: 'GET', key: 'work/x/map-results/m/manifest.json' },
      ]);
    } finally {
      await throttled.close();
    }
    await expect(aggregateRun(event, { s3: client, settings })).rejects.toThrow(/manifest .* does not exist/);
  });

  it('reads PCA_COMPONENTS and PCA_VARIANCE_THRESHOLD once, failing fast on bad values', () => {
    expect(aggregateSettingsFrom(readAggregateEnv({}))).toEqual({
      components: expect.any(Number),
      varianceThreshold: undefined,
      knnNeighbours: 5,
      classifierComponents: 300,
      classifier: 'lda+logistic',
      groupShards: 40,
      momentsMergeFanIn: 16,
      keepEmbeddings: false,
    });
    expect(
      aggregateSettingsFrom(
        readAggregateEnv({
          PCA_COMPONENTS: '20',
          PCA_VARIANCE_THRESHOLD: '0.9',
          KNN_NEIGHBOURS: '3',
          KEEP_EMBEDDINGS: 'true',
          AGGREGATE_GROUP_SHARDS: '7',
          MOMENTS_MERGE_FAN_IN: '4',
          CLASSIFIER: 'knn',
          CLASSIFIER_COMPONENTS: '40',
        }),
      ),
    ).toEqual({
      groupShards: 7,
      momentsMergeFanIn: 4,
      components: 20,
      varianceThreshold: 0.9,
      knnNeighbours: 3,
      classifier: 'knn',
      classifierComponents: 40,
      keepEmbeddings: true,
    });
    expect(() => readAggregateEnv({ KNN_NEIGHBOURS: '0' })).toThrow(/KNN_NEIGHBOURS/);
    expect(() => readAggregateEnv({ CLASSIFIER: 'svm' })).toThrow(/CLASSIFIER/);
    expect(() => readAggregateEnv({ CLASSIFIER_COMPONENTS: '0' })).toThrow(/CLASSIFIER_COMPONENTS/);
    expect(() => readAggregateEnv({ KEEP_EMBEDDINGS: 'yes' })).toThrow(/KEEP_EMBEDDINGS/);
    expect(() => readAggregateEnv({ MOMENTS_MERGE_FAN_IN: '1' })).toThrow(/MOMENTS_MERGE_FAN_IN/);
    expect(() => readAggregateEnv({ PCA_COMPONENTS: '0' })).toThrow(/PCA_COMPONENTS/);
    expect(() => readAggregateEnv({ PCA_VARIANCE_THRESHOLD: '1.5' })).toThrow(/PCA_VARIANCE_THRESHOLD/);
  });
});

describe('aggregate handler projecting with a saved model (pcaModel)', () => {
  let server: LocalS3Server;
  let client: S3Client;
  const dim = 12;
  const settings: AggregateSettings = { components: 3 };

  beforeAll(async () => {
    server = await startLocalS3Server({ buckets: [BUCKET] });
    client = server.client;
  });
  afterAll(async () => {
    await server?.close();
  });

  type Rows = ReturnType<typeof makeRows>;
  /** Rows under `<split>/` of the run's input (none: no split folder). */
  function rowsOf(count: number, seed: number, runId: string, split?: string): Rows {
    const rows = makeRows(count, dim, seed, runId);
    if (split) rows.keys = rows.keys.map((key) => key.replace(`input/${runId}/`, `input/${runId}/${split}/`));
    return rows;
  }
  /** The same images (vectors, labels, folders below the dataset) uploaded as another dataset. */
  function asDataset(rows: Rows, from: string, to: string): Rows {
    return { ...rows, keys: rows.keys.map((key) => key.replace(`input/${from}/`, `input/${to}/`)), vectors: rows.vectors.slice() };
  }
  /** One shard per group of rows, the map run's records, and the event (with `pcaModel` when given). */
  async function mapRunOf(runId: string, groups: Rows[], options: { featurizer?: string; pcaModel?: string } = {}) {
    const succeeded = [];
    for (const [index, rows] of groups.entries()) {
      const h = header(rows.keys, rows.labels, dim, options.featurizer ? { featurizer: options.featurizer } : {});
      const key = `work/${runId}/shards/${index}.fsh`;
      await put(client, key, encodeFeatureShard({ header: h, vectors: rows.vectors }));
      succeeded.push(childRecord('SUCCEEDED', rows.keys, runId, { Output: JSON.stringify(summaryOf(key, h)) }));
    }
    const event = await writeMapRun(client, runId, succeeded, []);
    return options.pcaModel ? { ...event, pcaModel: options.pcaModel } : event;
  }
  const relative = (key: string) => key.split('/').slice(2).join('/');
  async function csvRows(key: string): Promise<Map<string, string[]>> {
    return new Map(
      parseCsv(await getText(client, key))
        .slice(1)
        .map((row) => [relative(restoreTextField(row[0])), row]),
    );
  }
  async function bytesOf(key: string): Promise<Buffer> {
    return Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray());
  }
  /** The test's client, counting the GETs of keys under `prefix` (what a run read of a model's references). */
  function countingGets(prefix: string): { s3: S3Client; gets: () => number } {
    let gets = 0;
    const s3 = new Proxy(client, {
      get(target, property, receiver) {
        if (property !== 'send') return Reflect.get(target, property, receiver);
        return (command: unknown, ...rest: unknown[]) => {
          if (command instanceof GetObjectCommand && command.input.Key?.startsWith(prefix)) gets++;
          return (target.send as (...args: unknown[]) => unknown).call(target, command, ...rest);
        };
      },
    });
    return { s3, gets: () => gets };
  }

  /**
   * A fitting run of `trainingRows` Training rows (a field copy of every other one, moved along
   * feature 0) and 16 Test rows, a shard each, with `settings`.
   */
  async function runWithFieldCopies(runId: string, settings: AggregateSettings, trainingRows = 48, s3: S3Client = client) {
    const train = rowsOf(trainingRows, 61, runId, 'Training');
    const test = rowsOf(16, 62, runId, 'Test');
    const copied = train.keys.flatMap((_, r) => (r % 2 === 0 ? [r] : []));
    const copies = new Float32Array(copied.length * dim);
    copied.forEach((r, c) => {
      copies.set(train.vectors.subarray(r * dim, (r + 1) * dim), c * dim);
      copies[c * dim] += 2;
    });
    const trainHeader = header(train.keys, train.labels, dim, {
      fieldCopies: { keys: copied.map((r) => train.keys[r]), labels: copied.map((r) => train.labels[r]), conditions: copied.map(() => 'lighting') },
    });
    const succeeded = [];
    for (const [name, h, vectors] of [
      ['0', header(test.keys, test.labels, dim), test.vectors],
      ['1', trainHeader, Float32Array.from([...train.vectors, ...copies])],
    ] as const) {
      const key = `work/${runId}/shards/${name}.fsh`;
      await put(client, key, encodeFeatureShard({ header: h, vectors }));
      succeeded.push(childRecord('SUCCEEDED', h.keys, runId, { Output: JSON.stringify(summaryOf(key, h)) }));
    }
    const fitted = await aggregateRun(await writeMapRun(client, runId, succeeded, []), { s3, settings });
    return { train, test, fitted };
  }

  it('classifies with logistic regression when asked: fitted on the Training rows and their field copies, saved, and reused by a projecting run', async () => {
    const runId = 'logistic-run';
    // The head over the 4 kept components only, to compare it with features.csv.
    const { train, test, fitted } = await runWithFieldCopies(runId, { components: 4, classifier: 'logistic', classifierComponents: 4, groupShards: 1 });

    // Its inputs: the Training group's samples of the clean rows and of the copies; no class statistics, which only the LDA reads.
    for (const part of ['prototype-sample/00001.fsh', 'copy-sample/00001.fsh'])
      expect((await bytesOf(`work/${runId}/aggregate/${part}`)).byteLength).toBeGreaterThan(0);
    await expect(bytesOf(`work/${runId}/aggregate/class-statistics/00001.bin`)).rejects.toThrow();
    // pca-model.json holds the head, fitted on the 48 Training rows and the 24 copies (all within the samples).
    const model = JSON.parse(await getText(client, fitted.outputs.model!));
    expect(model.classifier).toMatchObject({ format: LOGISTIC_CLASSIFIER_FORMAT, dim: 4, count: 72, l2: DEFAULT_LOGISTIC_L2, rounds: DEFAULT_LOGISTIC_ROUNDS });
    expect([...model.classifier.labels].sort()).toEqual([...new Set(train.labels)].sort());
    // predictions.csv: the saved head's predictions of the published components, and no distance.
    const features = await csvRows(fitted.outputs.features);
    const predictions = await csvRows(fitted.outputs.predictions!);
    expect(predictions.size).toBe(16);
    const testKeys = test.keys.map(relative);
    const block = { data: Float32Array.from(testKeys.flatMap((key) => features.get(key)!.slice(3).map(Number))), rows: testKeys.length, dims: 4 };
    (await loadLogisticClassifier(model.classifier).predictBlock(block)).forEach((expected, q) => {
      const row = predictions.get(testKeys[q])!;
      expect({ key: testKeys[q], predicted: row[3] }).toEqual({ key: testKeys[q], predicted: expected.label });
      expect(Number(row[4])).toBeCloseTo(expected.confidence, 3);
      expect(row[5]).toBe('');
    });
    const report = JSON.parse(await getText(client, fitted.outputs.report));
    expect(report.classification).toMatchObject({ status: 'classified', classifier: 'logistic', l2: DEFAULT_LOGISTIC_L2, references: 48, predicted: 16 });
    expect(report.settings).toMatchObject({ classifier: 'logistic' });
    // 48 Training rows over 4 components: enough per component, no warning.
    expect(report.warnings.join('\n')).not.toMatch(/logistic regression over/);
    expect(JSON.stringify(report.schema)).toContain('no prototype or reference');
    expect(await getText(client, fitted.outputs.html)).toContain('logistic regression over 4 components');

    // A projecting run (at the default setting, lda) classifies with the model's head as saved.
    const event = await mapRunOf('logistic-projected', [asDataset(test, runId, 'logistic-projected')], { pcaModel: `results/${runId}/pca-model.json` });
    const projected = await aggregateRun(event, { s3: client, settings: { components: 2 } });
    const record = JSON.parse(await getText(client, 'work/logistic-projected/aggregate/classifier.json'));
    expect(record).toMatchObject({ classifier: 'logistic', fitted: false });
    expect(record.model).toEqual(model.classifier);
    const again = await csvRows(projected.outputs.predictions!);
    for (const key of testKeys) expect(again.get(key)!.slice(3)).toEqual(predictions.get(key)!.slice(3));
  });

  it('fits logistic regression on as many field copies of a class as clean rows, not a quarter of them: distinct copies are what it holds in the field on', async () => {
    // 200 Training rows, 50 per class; a copy of every other one: 50 for each of two classes, more than a quarter of 128 (32).
    const { fitted } = await runWithFieldCopies('logistic-copies', { components: 4, classifier: 'logistic', classifierComponents: 4, groupShards: 1 }, 200);
    const model = JSON.parse(await getText(client, fitted.outputs.model!));
    expect(model.classifier.count).toBe(200 + 100);
  });

  it('classifies with the LDA and logistic regression together when asked: both fitted over the components the rows allow, saved as one head, reused by a projecting run', async () => {
    const runId = 'combined-run';
    const readingModel = countingGets(`work/${runId}/aggregate/pca-fit-model.json`);
    const { test, fitted } = await runWithFieldCopies(runId, { components: 4, classifier: 'lda+logistic', groupShards: 1 }, 48, readingModel.s3);
    // The model is read by the two project groups and publish; FitClassifier and the classify groups read the run's facts alone.
    expect(readingModel.gets()).toBe(3);
    // Both heads' inputs: the class statistics, and the samples of the clean rows and of the copies.
    for (const part of ['class-statistics/00001.bin', 'prototype-sample/00001.fsh', 'copy-sample/00001.fsh'])
      expect((await bytesOf(`work/${runId}/aggregate/${part}`)).byteLength).toBeGreaterThan(0);
    // The run's Training rows and their copies by class, counted by the moments stage for the samples' limits.
    const fitRecord = JSON.parse(await getText(client, `work/${runId}/aggregate/pca-fit.json`));
    expect(fitRecord.model).toBeUndefined();
    // The components every row was projected on, which FitClassifier fits over.
    expect(fitRecord.projectedComponents).toBe(12);
    const counted = Object.values(fitRecord.trainingClasses as Record<string, { rows: number; copies: number }>);
    expect(counted.reduce((sum, c) => sum + c.rows, 0)).toBe(48);
    expect(counted.reduce((sum, c) => sum + c.copies, 0)).toBe(24);
    // One head in pca-model.json, over the 12 components the 48 Training rows allow.
    const text = await getText(client, fitted.outputs.model!);
    const model = JSON.parse(text);
    expect(model).toMatchObject({ k: 4, classifierK: 12 });
    expect(model.classifier).toMatchObject({
      format: COMBINED_CLASSIFIER_FORMAT,
      dim: 12,
      ldaWeight: DEFAULT_LDA_WEIGHT,
      lda: { dim: 12, count: 72 },
      logistic: { dim: 12, count: 72, rounds: DEFAULT_LOGISTIC_ROUNDS },
    });
    // predictions.csv: the saved head's predictions of the Test images' 12 scores, each with the
    // distance to the winning class's nearest LDA prototype.
    const wide = new PcaProjector(classifierFit(pcaFitOf(parsePcaModel(text, 'pca-model.json'))));
    const block = { data: new Float32Array(16 * 12), rows: 16, dims: 12 };
    for (let r = 0; r < 16; r++) block.data.set(wide.project(test.vectors, r * dim), r * 12);
    const predictions = await csvRows(fitted.outputs.predictions!);
    const testKeys = test.keys.map(relative);
    (await CombinedClassifier.of(model.classifier).predictBlock(block)).forEach((expected, q) => {
      const row = predictions.get(testKeys[q])!;
      expect({ key: testKeys[q], predicted: row[3] }).toEqual({ key: testKeys[q], predicted: expected.label });
      expect(Number(row[4])).toBeCloseTo(expected.confidence, 3);
      expect(Number(row[5])).toBeCloseTo(expected.distance, 3);
    });
    const report = JSON.parse(await getText(client, fitted.outputs.report));
    expect(report.classification).toMatchObject({
      status: 'classified',
      classifier: 'lda+logistic',
      ldaWeight: DEFAULT_LDA_WEIGHT,
      shrinkage: 0.1,
      prototypes: 8,
      l2: DEFAULT_LOGISTIC_L2,
      rounds: DEFAULT_LOGISTIC_ROUNDS,
      components: 12,
      logisticComponents: 12,
      references: 48,
      predicted: 16,
    });
    expect(await getText(client, fitted.outputs.html)).toContain('LDA + logistic regression over 12 components');

    // A projecting run classifies with the saved head, not refitted: the same predictions.
    const event = await mapRunOf('combined-projected', [asDataset(test, runId, 'combined-projected')], { pcaModel: `results/${runId}/pca-model.json` });
    const projected = await aggregateRun(event, { s3: client, settings: { components: 2 } });
    const record = JSON.parse(await getText(client, 'work/combined-projected/aggregate/classifier.json'));
    expect(record).toMatchObject({ classifier: 'lda+logistic', fitted: false, prototypes: 8 });
    expect(record.model).toEqual(model.classifier);
    const again = await csvRows(projected.outputs.predictions!);
    for (const key of testKeys) expect(again.get(key)!.slice(3)).toEqual(predictions.get(key)!.slice(3));
  });

  it('holds logistic regression beside the LDA to one component per 4 Training rows, below the kept k: the LDA over k, no warning', async () => {
    const runId = 'held-run';
    const { test, fitted } = await runWithFieldCopies(runId, { components: 8, classifier: 'lda+logistic', groupShards: 1 }, 24);
    const model = JSON.parse(await getText(client, fitted.outputs.model!));
    expect(model.k).toBe(8);
    expect(model.classifierK).toBeUndefined();
    expect(model.classifier).toMatchObject({ format: COMBINED_CLASSIFIER_FORMAT, dim: 8, lda: { dim: 8, count: 36 }, logistic: { dim: 6, count: 36 } });
    // predictions.csv: the saved head's predictions of features.csv's 8 components (logistic regression reads the leading 6).
    const features = await csvRows(fitted.outputs.features);
    const predictions = await csvRows(fitted.outputs.predictions!);
    const testKeys = test.keys.map(relative);
    const block = { data: Float32Array.from(testKeys.flatMap((key) => features.get(key)!.slice(3).map(Number))), rows: testKeys.length, dims: 8 };
    (await CombinedClassifier.of(model.classifier).predictBlock(block)).forEach((expected, q) => {
      const row = predictions.get(testKeys[q])!;
      expect({ key: testKeys[q], predicted: row[3] }).toEqual({ key: testKeys[q], predicted: expected.label });
      expect(Number(row[4])).toBeCloseTo(expected.confidence, 3);
    });
    const report = JSON.parse(await getText(client, fitted.outputs.report));
    expect(report.classification).toMatchObject({ classifier: 'lda+logistic', components: 8, logisticComponents: 6, references: 24 });
    expect(report.warnings.join('\n')).not.toMatch(/logistic regression over/);
  });

  it('gives a fitted head up to one component per 4 Training rows, at least the kept k; k-NN the kept k only', () => {
    expect(fitSelection({ components: 100 }, 71_000)).toEqual({ components: 100, classifierComponents: 300 });
    expect(fitSelection({ components: 100, classifier: 'logistic' }, 480)).toEqual({ components: 100, classifierComponents: 120 });
    expect(fitSelection({ components: 50, classifierComponents: 80, varianceThreshold: 0.9 }, 71_000)).toEqual({
      components: 50,
      varianceThreshold: 0.9,
      classifierComponents: 80,
    });
    expect(fitSelection({ components: 100, classifier: 'knn' }, 71_000)).toEqual({ components: 100 });
    // Fewer than k: the fit keeps k for the head (fitPca's rule).
    expect(fitSelection({ components: 100 }, 48)).toEqual({ components: 100, classifierComponents: 12 });
  });

  it('warns of logistic regression fitted on fewer Training rows per component than it needs', () => {
    expect(logisticWarning(480, 300)).toMatch(/over 300 components was fitted on 480 Training images \(1\.6 per component, fewer than 4\)/);
    expect(logisticWarning(480, 100)).toBeUndefined();
    expect(logisticWarning(6180, 300)).toBeUndefined();
  });

  it('projects and classifies new images without refitting: the same scores and predictions for images of both runs', async () => {
    const train = rowsOf(48, 51, 'model-run', 'Training');
    const test = rowsOf(16, 52, 'model-run', 'Test');
    // A group per shard: the Test rows' group writes no references part, the Training rows' group its part.
    const modelEvent = await mapRunOf('model-run', [test, train]);
    const fitted = await aggregateRun(modelEvent, { s3: client, settings: { components: 4, knnNeighbours: 3, groupShards: 1, classifier: 'lda' } });
    expect(fitted.outputs).toMatchObject({ model: 'results/model-run/pca-model.json', knnReferences: 'results/model-run/knn-references/' });
    const modelText = await getText(client, fitted.outputs.model!);
    const model = JSON.parse(modelText);
    const partKey = 'results/model-run/knn-references/part-00001.fsh';
    const partBytes = await bytesOf(partKey);
    expect(model.knnReferences).toEqual({
      count: 48,
      parts: [{ file: 'knn-references/part-00001.fsh', count: 48, bytes: partBytes.byteLength, sha256: createHash('sha256').update(partBytes).digest('hex') }],
    });
    await expect(bytesOf('results/model-run/knn-references/part-00000.fsh')).rejects.toThrow();
    // The LDA sees the 12 components the 48 Training rows allow (features.csv the 4 kept), the
    // references the 4 kept: k-NN measures over those.
    expect(model).toMatchObject({ k: 4, classifierK: 12 });
    expect(model.classifier).toMatchObject({ format: 'fruits-pipeline/lda-classifier@1', dim: 12, count: 48 });
    // The references: the Training rows' keys and labels, their scores as float32.
    const saved = decodeFeatureShard(partBytes);
    expect(saved.header).toMatchObject({ featurizer: `pca4(${model.featurizer})`, dim: 4, keys: train.keys, labels: train.labels });
    const fittedFeatures = await csvRows(fitted.outputs.features);
    expect(Number(fittedFeatures.get(relative(train.keys[0]))![3])).toBeCloseTo(saved.vectors[0], 5);

    // The new run: half the model run's Test images and a few of its Training ones, as another
    // dataset, beside new images: unsplit ones of known labels and one of a label the model never saw.
    const again = asDataset(test, 'model-run', 'projected');
    const shared = { keys: again.keys.slice(0, 8), labels: again.labels.slice(0, 8), vectors: again.vectors.slice(0, 8 * dim) };
    const sharedTraining = asDataset(
      { keys: train.keys.slice(0, 4), labels: train.labels.slice(0, 4), vectors: train.vectors.slice(0, 4 * dim) },
      'model-run',
      'projected',
    );
    const fresh = rowsOf(6, 53, 'projected');
    fresh.keys[5] = 'input/projected/Durian/new.jpg';
    fresh.labels[5] = 'Durian';
    const event = await mapRunOf('projected', [fresh, shared, sharedTraining], { pcaModel: 'results/model-run/pca-model.json' });
    // With the model's LDA, nothing reads the references (the plan and the fit only HEAD them).
    const reading = countingGets('results/model-run/knn-references/');
    const projected = await aggregateRun(event, { s3: reading.s3, settings: { components: 2, knnNeighbours: 3 } });
    expect(reading.gets()).toBe(0);

    expect(projected).toMatchObject({
      rows: 18,
      components: 4,
      explainedVariance: model.explainedVariance,
      pcaModel: { key: 'results/model-run/pca-model.json', runId: 'model-run' },
    });
    expect(projected.outputs.model).toBeUndefined();
    expect(projected.outputs.knnReferences).toBeUndefined();
    await expect(getText(client, 'results/projected/pca-model.json')).rejects.toThrow();
    expect(await getText(client, fitted.outputs.model!)).toBe(modelText);

    // The same image, the same components (features.csv writes 8 significant digits: every digit equal).
    const features = await csvRows(projected.outputs.features);
    expect(features.size).toBe(18);
    for (const key of [...shared.keys, ...sharedTraining.keys])
      expect(features.get(relative(key))!.slice(3)).toEqual(fittedFeatures.get(relative(key))!.slice(3));
    // Every row predicted with the model's LDA, not refitted: a shared Test image exactly as in the
    // model run (label, confidence, distance), a Training image of the model run as its own class.
    const predictions = await csvRows(projected.outputs.predictions!);
    expect([...predictions.keys()].sort()).toEqual([...features.keys()].sort());
    const fittedPredictions = await csvRows(fitted.outputs.predictions!);
    for (const key of shared.keys) expect(predictions.get(relative(key))!.slice(3)).toEqual(fittedPredictions.get(relative(key))!.slice(3));
    for (const [r, key] of sharedTraining.keys.entries()) expect(predictions.get(relative(key))![3]).toBe(sharedTraining.labels[r]);
    const classifierRecord = JSON.parse(await getText(client, 'work/projected/aggregate/classifier.json'));
    expect(classifierRecord).toMatchObject({ classifier: 'lda', fitted: false });
    expect(classifierRecord.model).toEqual(model.classifier);

    // With k-NN asked for, against the model's references: a Training image of the model run finds
    // itself (its reference scores are float32: not quite 0 away).
    const knnEvent = await mapRunOf(
      'projected-knn',
      [fresh, shared, sharedTraining].map((rows) => asDataset(rows, 'projected', 'projected-knn')),
      {
        pcaModel: 'results/model-run/pca-model.json',
      },
    );
    const readingKnn = countingGets('results/model-run/knn-references/');
    const byKnn = await aggregateRun(knnEvent, { s3: readingKnn.s3, settings: { components: 2, knnNeighbours: 3, classifier: 'knn', groupShards: 2 } });
    // The one part, once per classify group.
    expect(readingKnn.gets()).toBe(2);
    const knnPredictions = await csvRows(byKnn.outputs.predictions!);
    for (const [r, key] of sharedTraining.keys.entries()) {
      expect(knnPredictions.get(relative(key))![3]).toBe(sharedTraining.labels[r]);
      expect(Number(knnPredictions.get(relative(key))![5])).toBeLessThan(1e-6);
    }
    // The queries carry the model's 12 scores; the vote measures over the 4 the references hold.
    expect(JSON.parse(await getText(client, byKnn.outputs.report)).classification).toMatchObject({
      classifier: 'knn',
      neighbours: 3,
      references: 48,
      components: 4,
    });

    const report = JSON.parse(await getText(client, projected.outputs.report));
    expect(report.pca).toEqual({
      source: 'model',
      model: 'results/model-run/pca-model.json',
      modelRunId: 'model-run',
      refit: false,
      rows: 18,
      fittedRows: 64,
      dim,
      k: 4,
      classifierK: 12,
      explainedVariance: model.explainedVariance,
      constantFeatures: 0,
    });
    expect(report.timingsMs).toHaveProperty('plan');
    expect(report.settings).toMatchObject({ pcaModel: 'results/model-run/pca-model.json' });
    expect(report.accounting.complete).toBe(true);
    // Every row is predicted; the rows of the model's classes are scored, whatever their split.
    expect(report.classification).toMatchObject({
      status: 'classified',
      classifier: 'lda',
      references: 48,
      predicted: 18,
      scored: 17,
      unscored: 1,
      components: 12,
    });
    expect(report.classification.scope).toMatch(/class of the model/);
    expect(await getText(client, projected.outputs.readme)).toMatch(/pca-model.json\n {2}not written: .*results\/model-run\/pca-model.json/);
    expect(await getText(client, projected.outputs.html)).toContain('components of the model of run model-run, not refitted');
  });

  it('fails with FeaturizerMismatchError, both ids named in the error and in report.json, before writing any output', async () => {
    const rows = rowsOf(20, 61, 'mismatch-model');
    const fitted = await aggregateRun(await mapRunOf('mismatch-model', [rows]), { s3: client, settings: { components: 3 } });
    expect(fitted.outputs.knnReferences).toBeUndefined();
    const event = await mapRunOf('mismatch', [rowsOf(5, 62, 'mismatch')], { featurizer: 'pixels-16x16', pcaModel: fitted.outputs.model });
    const failure = aggregateRun(event, { s3: client, settings });
    await expect(failure).rejects.toThrow(FeaturizerMismatchError);
    await expect(failure).rejects.toThrow(/mobilenet_v1_0\.25_224@224 \(12 values\).*pixels-16x16 \(12 values/);
    const report = JSON.parse(await getText(client, 'results/mismatch/report.json'));
    expect(report).toMatchObject({
      status: 'FAILED',
      error: { name: 'FeaturizerMismatchError', message: expect.stringContaining('pixels-16x16') },
      pca: {
        source: 'model',
        model: fitted.outputs.model,
        modelRunId: 'mismatch-model',
        modelFeaturizer: 'mobilenet_v1_0.25_224@224',
        runFeaturizer: 'pixels-16x16',
      },
    });
    await expect(getText(client, 'results/mismatch/features.csv')).rejects.toThrow();
  });

  it('a model without references: projects, and says why nothing is classified', async () => {
    const fitted = await aggregateRun(await mapRunOf('plain-model', [rowsOf(20, 71, 'plain-model')]), { s3: client, settings: { components: 3 } });
    const event = await mapRunOf('plain-projected', [rowsOf(6, 72, 'plain-projected', 'Test')], { pcaModel: fitted.outputs.model });
    const projected = await aggregateRun(event, { s3: client, settings });
    expect(projected).toMatchObject({ rows: 6, components: 3 });
    expect(projected.outputs.predictions).toBeUndefined();
    const report = JSON.parse(await getText(client, projected.outputs.report));
    expect(report.classification).toEqual({
      status: 'skipped',
      reason: "the model's run plain-model saved no classifier and no Training references (no knnReferences): nothing to classify with",
    });
  });

  it('a run of Training images only saves its references, for later runs to classify against', async () => {
    const fitted = await aggregateRun(await mapRunOf('training-only', [rowsOf(20, 81, 'training-only', 'Training')]), {
      s3: client,
      settings: { components: 3 },
    });
    expect(fitted.outputs).toMatchObject({ knnReferences: 'results/training-only/knn-references/' });
    expect(JSON.parse(await getText(client, fitted.outputs.model!)).knnReferences).toMatchObject({
      count: 20,
      parts: [{ file: 'knn-references/part-00000.fsh', count: 20 }],
    });
    expect(fitted.outputs.predictions).toBeUndefined();
    const report = JSON.parse(await getText(client, fitted.outputs.report));
    expect(report.classification).toEqual({ status: 'skipped', reason: 'every image is a Training image: nothing to predict' });
    expect(report.pca.source).toBe('fit');
    expect(await getText(client, fitted.outputs.readme)).toContain('knn-references/part-*.fsh\n');
  });

  it('fails with PcaModelError, written into report.json, for a model that is missing, not JSON, not the format or inconsistent', async () => {
    // Two groups of Training rows: two references parts.
    const source = [rowsOf(20, 91, 'source-model', 'Training'), rowsOf(10, 95, 'source-model', 'Training'), rowsOf(8, 92, 'source-model', 'Test')];
    const fitted = await aggregateRun(await mapRunOf('source-model', source), { s3: client, settings: { components: 3, groupShards: 1 } });
    const model = JSON.parse(await getText(client, fitted.outputs.model!));
    expect(model.knnReferences.parts.map((part: { file: string }) => part.file)).toEqual(['knn-references/part-00000.fsh', 'knn-references/part-00001.fsh']);
    const broken = async (name: string, body: string | Uint8Array) => {
      await put(client, `results/broken-${name}/pca-model.json`, body);
      return `results/broken-${name}/pca-model.json`;
    };
    const part = (g: number) => bytesOf(`results/source-model/knn-references/part-0000${g}.fsh`);
    // A part missing (the second), a part of another size than the model states.
    await put(client, 'results/no-references/pca-model.json', JSON.stringify(model));
    await put(client, 'results/no-references/knn-references/part-00000.fsh', await part(0));
    await put(client, 'results/resized/pca-model.json', JSON.stringify(model));
    await put(client, 'results/resized/knn-references/part-00000.fsh', await part(0));
    await put(client, 'results/resized/knn-references/part-00001.fsh', Buffer.concat([await part(1), Buffer.alloc(4)]));
    const partsSize = (await part(1)).byteLength;
    // A model that names its references as one file, without it.
    await put(
      client,
      'results/lost-file/pca-model.json',
      JSON.stringify({ ...model, knnReferences: { file: 'knn-references.fsh', count: 30, sha256: 'a'.repeat(64) } }),
    );
    const cases: [string, RegExp][] = [
      ['results/nobody/pca-model.json', /pca model s3:\/\/.*results\/nobody\/pca-model.json does not exist/],
      [await broken('text', 'not json {'), /broken-text\/pca-model.json is not JSON/],
      [await broken('format', JSON.stringify({ ...model, format: 'sklearn' })), /is not a fruits-pipeline\/pca-model@1 file \(format "sklearn"\)/],
      [await broken('lengths', JSON.stringify({ ...model, mean: model.mean.slice(1) })), /not a usable PCA model: .*mean holds 11 values, expected dim = 12/],
      [
        await broken('nan', JSON.stringify({ ...model, scale: model.scale.map((v: number, i: number) => (i === 2 ? 'NaN' : v)) })),
        /scale\.2: .*expected number/,
      ],
      ['results/no-references/pca-model.json', /the model's references s3:\/\/.*no-references\/knn-references\/part-00001.fsh does not exist/],
      [
        'results/resized/pca-model.json',
        new RegExp(
          `resized/knn-references/part-00001.fsh is not the references file of the model of run source-model \\(${partsSize + 4} bytes, pca-model.json states ${partsSize}\\)`,
        ),
      ],
      ['results/lost-file/pca-model.json', /the model's references s3:\/\/.*lost-file\/knn-references.fsh does not exist/],
      ['results/own/pca-model.json', /lies in this run's own results\/own\//],
    ];
    for (const [index, [pcaModel, message]] of cases.entries()) {
      const runId = index === cases.length - 1 ? 'own' : `bad-model-${index}`;
      const event = await mapRunOf(runId, [rowsOf(4, 93, runId)], { pcaModel });
      const failure = aggregateRun(event, { s3: client, settings });
      await expect(failure).rejects.toThrow(PcaModelError);
      await expect(failure).rejects.toThrow(message);
      const report = JSON.parse(await getText(client, `results/${runId}/report.json`));
      expect({ pcaModel, status: report.status, error: report.error, pca: report.pca }).toEqual({
        pcaModel,
        status: 'FAILED',
        error: { name: 'PcaModelError', message: expect.stringMatching(message) },
        pca: { source: 'model', model: pcaModel },
      });
      await expect(getText(client, `results/${runId}/features.csv`)).rejects.toThrow();
    }
    // A key outside results/ never reaches S3: the event does not match its schema.
    for (const pcaModel of ['work/x/pca-model.json', 'results/../input/x.json', 'results/']) {
      await expect(aggregateRun({ ...(await mapRunOf('bad-key', [rowsOf(2, 94, 'bad-key')])), pcaModel }, { s3: client, settings })).rejects.toThrow(
        MalformedEventError,
      );
    }
  });

  it("reads a references part only where the k-NN uses it: a part of the model's size but other bytes fails there, and the LDA never reads it", async () => {
    const source = [rowsOf(20, 101, 'knn-model', 'Training'), rowsOf(12, 102, 'knn-model', 'Training'), rowsOf(8, 103, 'knn-model', 'Test')];
    const fitted = await aggregateRun(await mapRunOf('knn-model', source), { s3: client, settings: { components: 3, groupShards: 1, classifier: 'lda' } });
    const second = await bytesOf('results/knn-model/knn-references/part-00001.fsh');
    await put(client, 'results/tampered/pca-model.json', await getText(client, fitted.outputs.model!));
    await put(client, 'results/tampered/knn-references/part-00000.fsh', await bytesOf('results/knn-model/knn-references/part-00000.fsh'));
    // The same size, other bytes: only its SHA-256 tells.
    await put(client, 'results/tampered/knn-references/part-00001.fsh', Buffer.concat([second.subarray(0, -4), Buffer.alloc(4)]));
    const test = rowsOf(6, 104, 'tampered-lda', 'Test');
    const byLda = await aggregateRun(await mapRunOf('tampered-lda', [test], { pcaModel: 'results/tampered/pca-model.json' }), { s3: client, settings });
    expect(JSON.parse(await getText(client, byLda.outputs.report)).classification).toMatchObject({ status: 'classified', classifier: 'lda' });

    const knnEvent = await mapRunOf('tampered-knn', [asDataset(test, 'tampered-lda', 'tampered-knn')], { pcaModel: 'results/tampered/pca-model.json' });
    const failure = aggregateRun(knnEvent, { s3: client, settings: { ...settings, classifier: 'knn' } });
    await expect(failure).rejects.toThrow(PcaModelError);
    await expect(failure).rejects.toThrow(
      /s3:\/\/.*\/results\/tampered\/knn-references\/part-00001.fsh is not the references file of the model of run knn-model \(its SHA-256 differs from pca-model.json's\)/,
    );
  });

  it('a model whose references are one file (knn-references.fsh) projects and classifies with k-NN as the same references in parts do', async () => {
    const source = [rowsOf(20, 111, 'parts-model', 'Training'), rowsOf(12, 112, 'parts-model', 'Training'), rowsOf(8, 113, 'parts-model', 'Test')];
    const fitted = await aggregateRun(await mapRunOf('parts-model', source), { s3: client, settings: { components: 3, groupShards: 1 } });
    const model = JSON.parse(await getText(client, fitted.outputs.model!));
    // The parts joined into one file, and a model that names it.
    const parts = [0, 1].map(async (g) => decodeFeatureShard(await bytesOf(`results/parts-model/knn-references/part-0000${g}.fsh`)));
    const [first, second] = await Promise.all(parts);
    const joined = {
      keys: [...first.header.keys, ...second.header.keys],
      labels: [...first.header.labels, ...second.header.labels],
      vectors: Float32Array.from([...first.vectors, ...second.vectors]),
    };
    const { bytes, stated } = encodeKnnReferences({ runId: model.runId, featurizer: model.featurizer, k: model.k }, joined);
    await put(client, 'results/one-file-model/knn-references.fsh', bytes);
    await put(
      client,
      'results/one-file-model/pca-model.json',
      JSON.stringify({ ...model, knnReferences: { file: 'knn-references.fsh', count: 32, sha256: stated.sha256 } }),
    );

    const fresh = rowsOf(10, 114, 'by-parts', 'Test');
    const knn: AggregateSettings = { ...settings, classifier: 'knn', knnNeighbours: 3 };
    const byParts = await aggregateRun(await mapRunOf('by-parts', [fresh], { pcaModel: fitted.outputs.model }), { s3: client, settings: knn });
    const oneFileEvent = await mapRunOf('by-one-file', [asDataset(fresh, 'by-parts', 'by-one-file')], { pcaModel: 'results/one-file-model/pca-model.json' });
    const byOneFile = await aggregateRun(oneFileEvent, { s3: client, settings: knn });
    const predictions = async (result: typeof byParts) =>
      [...(await csvRows(result.outputs.predictions!)).entries()].map(([key, row]) => [key, ...row.slice(1)]);
    expect(await predictions(byOneFile)).toEqual(await predictions(byParts));
    expect(JSON.parse(await getText(client, byOneFile.outputs.report)).classification).toMatchObject({ classifier: 'knn', references: 32, predicted: 10 });
  });
});
