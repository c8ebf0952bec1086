/**
 * A featurize map run as the aggregate finds it, written by the benches from synthetic shards: each
 * shard with its batch record (the keys handed), the ResultWriter's COMPACT SUCCEEDED file (one
 * summary per child) and its manifest; `finish` returns the aggregate's event.
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { encodeFeatureShard, FeatureShard } from '../lambdas/bookkeeping/feature-shard';
import { batchRecordKeyOfShard } from '../lambdas/contracts/bucket-layout';
import { AggregateEvent, BatchRecord, runSettingsFor } from '../lambdas/contracts/events';

export class SyntheticMapRun {
  private readonly summaries: unknown[] = [];

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly runId: string,
  ) {}

  /** `work/<runId>/shards/<name>.fsh`, the key of the shard numbered `index`. */
  shardKey(index: number): string {
    return `work/${this.runId}/shards/${String(index).padStart(7, '0')}.fsh`;
  }

  /** One child's shard and batch record (every key of the shard handed to it), and its summary. */
  async addShard(key: string, shard: FeatureShard): Promise<void> {
    const { s3, bucket } = this;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: encodeFeatureShard(shard) }));
    const record: BatchRecord = { items: shard.header.keys };
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: batchRecordKeyOfShard(`work/${this.runId}/`, key), Body: JSON.stringify(record) }));
    const count = shard.header.keys.length;
    this.summaries.push({ shard: key, count, failed: [], failedCount: 0, skipped: [], skippedCount: 0, truncated: false });
  }

  /** The ResultWriter's files written; the aggregate's event for the run. */
  async finish(): Promise<AggregateEvent> {
    const { s3, bucket, runId } = this;
    const root = `work/${runId}/map-results/synthetic/`;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${root}SUCCEEDED_0.json`, Body: JSON.stringify(this.summaries) }));
    const manifest = {
      DestinationBucket: bucket,
      MapRunArn: 'arn:aws:states:::mapRun:synthetic',
      ResultFiles: { SUCCEEDED: [{ Key: `${root}SUCCEEDED_0.json`, Size: 1 }], FAILED: [], PENDING: [] },
    };
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${root}manifest.json`, Body: JSON.stringify(manifest) }));
    return { ...runSettingsFor(bucket, runId), mapResult: { ResultWriterDetails: { Bucket: bucket, Key: `${root}manifest.json` } } };
  }
}
