/**
 * One group of shards, second pass (a child of the `ProjectGroups` map): standardise and project
 * every kept row with the run's model on every component it holds (the kept k, and the fitted
 * head's further ones when `classifierK` is set), and write the group's parts:
 * - `results/<runId>/features/part-<g>.parquet` (and `embeddings/` when kept): one Parquet
 *   dataset across groups, which DuckDB, pandas and Spark read as one table;
 * - its rows of features.csv (publish joins the parts behind the header);
 * - the Training rows' k scores, the k-NN's references: `results/<runId>/knn-references/part-<g>.fsh`
 *   (a part of the saved model, which pca-model.json names with its rows, size and SHA-256, from
 *   this stage's tally), and the rows to predict on every component, for the classify stage, in
 *   the feature-shard format;
 * - for a fitted head, what its fit reads of the Training rows, on every component (classifier-stage.ts);
 * - a uniform sample of the group's points for the scatter plot.
 * The rows left out are those the moments stage left out, read from its tally: both stages see
 * the same shards, and a shard that changed in between is a retryable error.
 */
import { splitOfKey } from '../analysis/knn';
import { encodeKnnReferences, pcaFitOf, referencesFeaturizerId } from '../analysis/pca-model';
import { NativeProjector } from '../analysis/native-kernels';
import type { KernelPrecision } from '../analysis/kernel-graphs';
import { classifierFit } from '../analysis/streaming-pca';
import { encodeFeatureShard } from '../bookkeeping/feature-shard';
import { FeaturesCsvRows } from '../outputs/features-csv';
import { FeatureTableParquetWriter } from '../outputs/features-parquet';
import { ScatterSample } from '../outputs/plots';
import { RunSettings, TransientStorageError } from '../contracts/events';
import { putObject, readText } from '../aws/s3-client';
import { StreamedUpload } from '../aws/streamed-upload';
import { AggregateRunDeps, readShards, stopwatch } from './aggregate-shared';
import { aggregateWorkKeys, MomentsTallySchema, partKey, ProjectTally, referencesPartKey } from './aggregate-work';
import { readFitRecord } from './fit-stage';
import { ClassifierInputs } from './classifier-stage';
import { DEFAULT_CLASSIFIER } from '../contracts/handler-env';

const PARQUET_TYPE = 'application/vnd.apache.parquet';

/**
 * The precision of the projection's product (each row is centred on the model's mean in float64
 * first): MLAS's single-precision GEMM is about twice its double-precision one here, and the
 * projection of the rows and of their field copies was the stage's largest part. The scores are
 * float32 in the Parquet parts and the references, and the features they come from are float32.
 */
export const PROJECTION_PRECISION: KernelPrecision = 'float32';

/**
 * Rows of one kind gathered for a part file in the feature-shard format, `width` scores each. A
 * row's scores are held as the view they were added as (into its shard's scores, which live until
 * the part is written) and converted to float32 once, when the part is encoded.
 */
class RowPart {
  readonly keys: string[] = [];
  readonly labels: string[] = [];
  private readonly rows: (Float64Array | Float32Array)[] = [];

  constructor(readonly width: number) {}

  add(key: string, label: string, scores: Float64Array | Float32Array): void {
    this.keys.push(key);
    this.labels.push(label);
    this.rows.push(scores);
  }

  vectors(): Float32Array {
    const vectors = new Float32Array(this.keys.length * this.width);
    this.rows.forEach((row, r) => vectors.set(row, r * this.width));
    return vectors;
  }

  /** The part, its header naming the scores as PCA scores of `featurizer`'s vectors. */
  encode(featurizer: string): Uint8Array {
    const header = {
      featurizer: referencesFeaturizerId(featurizer, this.width),
      dim: this.width,
      keys: this.keys,
      labels: this.labels,
      failed: [],
      skipped: [],
    };
    return encodeFeatureShard({ header, vectors: this.vectors() });
  }
}

export async function projectGroup(run: RunSettings, group: number, deps: AggregateRunDeps): Promise<{ group: number; rows: number }> {
  const { s3, settings, log } = deps;
  const clock = stopwatch();
  const work = aggregateWorkKeys(run.workPrefix);
  const { record, model } = await readFitRecord(deps, run);
  const tally = MomentsTallySchema.parse(JSON.parse(await readText(s3, run.bucket, work.momentsTally(group))));
  const fit = pcaFitOf(model);
  // On every component the model holds: the kept k for the tables, all of them (wide) for the fitted head.
  const wideFit = classifierFit(fit);
  const [{ k, dim }, { k: wide }] = [fit, wideFit];
  const projector = new NativeProjector(wideFit, { precision: PROJECTION_PRECISION });
  const projecting = record.pcaModelKey !== undefined;
  // A fitting run saves its Training rows as references even when it has nothing to predict.
  const keepReferences = !projecting && record.references > 0;
  const classifying = record.classificationSkipped === undefined;
  // The LDA and logistic regression are fitted on what the groups gather; k-NN reads the references parts.
  const head = settings.classifier ?? DEFAULT_CLASSIFIER;
  const classifierInputs = keepReferences && head !== 'knn' ? new ClassifierInputs(wide, head, record.trainingClasses) : undefined;

  const { csv, parquet, embeddings, uploads } = openTableParts(run, group, { k, dim }, deps);
  const references = new RowPart(k);
  const queries = new RowPart(wide);
  const sample = new ScatterSample(settings.scatterPoints, 0x5eed + group);
  const csvRows = new FeaturesCsvRows();
  const byShard = new Map(tally.usable.map((shard) => [shard.shard, shard]));
  let rows = 0;
  try {
    for await (const read of readShards(s3, run.bucket, [...byShard.keys()], settings.readAhead ?? 2)) {
      const expected = byShard.get(read.key)!;
      // The moments stage read it fine: a shard that changes or vanishes mid-run is worth a retry.
      if ('problem' in read || read.shard.header.keys.length !== expected.rows) {
        throw new TransientStorageError(`shard s3://${run.bucket}/${read.key} changed between the moments and project stages`);
      }
      const { header, vectors } = read.shard;
      const excluded = new Set(expected.excluded);
      const scores = await projector.projectRows({ data: vectors, rows: header.keys.length, dims: dim });
      await classifierInputs?.addFieldCopies(projector, read.shard, excluded);
      for (let row = 0; row < header.keys.length; row++) {
        if (excluded.has(row)) continue;
        const key = header.keys[row];
        const label = header.labels[row];
        const split = splitOfKey(key);
        const rowScores = scores.subarray(row * wide, row * wide + k);
        const classifierScores = scores.subarray(row * wide, (row + 1) * wide);
        csvRows.add(key, label, split, rowScores, k);
        await parquet.append(key, label, split, rowScores);
        await embeddings?.append(key, label, split, vectors, row * dim);
        sample.offer({ x: rowScores[0], y: k > 1 ? rowScores[1] : 0, label, split });
        if (keepReferences && split === 'train') {
          references.add(key, label, rowScores);
          await classifierInputs?.add(key, label, classifierScores);
        }
        if (classifying && (projecting || split !== 'train')) queries.add(key, label, classifierScores);
        rows++;
      }
      // The shard's rows as one write: a write per row costs more than its formatting.
      await csv.write(csvRows.take());
    }
    await parquet.close();
    await embeddings?.close();
    for (const upload of uploads) await upload.close();
  } catch (error) {
    uploads.forEach((upload) => upload.abort());
    throw error;
  }
  const savedReferences = references.keys.length > 0 ? await writeReferencesPart(run, group, record.featurizer, references, deps) : undefined;
  if (classifying) await putObject(s3, run.bucket, work.queries(group), queries.encode(record.featurizer), 'application/octet-stream');
  await classifierInputs?.write(s3, run, group, record.featurizer);
  const projectTally: ProjectTally = {
    group,
    rows,
    queries: queries.keys.length,
    ...(savedReferences ? { references: savedReferences } : {}),
    sample: { points: sample.points, total: sample.total },
    timingsMs: { project: clock.total() },
  };
  await putObject(s3, run.bucket, work.projectTally(group), JSON.stringify(projectTally), 'application/json');
  log?.info('group projected', { group, rows, ms: projectTally.timingsMs.project });
  return { group, rows };
}

/** The group's streamed parts of the tables: its features.csv rows, its features Parquet part (and embeddings', when kept). */
function openTableParts(run: RunSettings, group: number, { k, dim }: { k: number; dim: number }, { s3, settings }: AggregateRunDeps) {
  const work = aggregateWorkKeys(run.workPrefix);
  const csv = new StreamedUpload(s3, run.bucket, work.featuresCsv(group), 'text/csv; charset=utf-8');
  const parquetUpload = new StreamedUpload(s3, run.bucket, partKey(run.outputPrefix, 'features', group), PARQUET_TYPE);
  const parquet = new FeatureTableParquetWriter(parquetUpload, 'pc', k);
  const embeddingsUpload = settings.keepEmbeddings
    ? new StreamedUpload(s3, run.bucket, partKey(run.outputPrefix, 'embeddings', group), PARQUET_TYPE)
    : undefined;
  const embeddings = embeddingsUpload ? new FeatureTableParquetWriter(embeddingsUpload, 'f', dim) : undefined;
  const uploads = [csv, parquetUpload, embeddingsUpload].filter((u): u is StreamedUpload => u !== undefined);
  return { csv, parquet, embeddings, uploads };
}

/** The group's references part, written to the run's outputs beside the model; what pca-model.json states of it. */
async function writeReferencesPart(run: RunSettings, group: number, featurizer: string, references: RowPart, { s3 }: AggregateRunDeps) {
  const rows = { keys: references.keys, labels: references.labels, vectors: references.vectors() };
  const { bytes, stated } = encodeKnnReferences({ runId: run.runId, featurizer, k: references.width }, rows);
  await putObject(s3, run.bucket, referencesPartKey(run.outputPrefix, group), bytes, 'application/octet-stream');
  return stated;
}
