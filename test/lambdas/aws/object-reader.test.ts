/**
 * The featurize path's GETs (lambdas/aws/object-reader.ts) against the local S3 server, which
 * checks SigV4 signatures: odd keys, missing objects (404 and the 403 a role without
 * s3:ListBucket gets), the size limit, bad credentials, and retries of transient failures.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ObjectReader } from '../../../lambdas/aws/object-reader';
import { createS3Client, isAccessDeniedError, isMissingObjectError, isTransientS3Error } from '../../../lambdas/aws/s3-client';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';
import { SLOW_DOWN, startFailingS3Server } from '../../support/failing-s3-server';

const BUCKET = 'reader-test';
const ODD_KEYS = [
  'input/d/Apple Red 1/r_0_100.jpg',
  'input/d/Pêche plate/ü 東京.jpg',
  "input/d/odd/!*'()+%20&=;,$@:~.jpg",
  'input/d/odd//double slash.jpg',
  'input/d/odd/plus+and%25percent.jpg',
];

describe('ObjectReader', () => {
  let server: LocalS3Server;
  let denying: LocalS3Server;
  beforeAll(async () => {
    server = await startLocalS3Server({ buckets: [BUCKET] });
    denying = await startLocalS3Server({ buckets: [BUCKET], missingObjectAnswer: 'AccessDenied' });
    for (const [i, key] of ODD_KEYS.entries()) await server.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: Buffer.from(`body ${i}`) }));
  });
  afterAll(async () => {
    await server?.close();
    await denying?.close();
  });

  it('reads objects under any key S3 accepts, byte for byte', async () => {
    const reader = new ObjectReader(server.client);
    for (const [i, key] of ODD_KEYS.entries()) {
      const read = await reader.read(BUCKET, key, 1024);
      expect({ key, body: 'bytes' in read ? Buffer.from(read.bytes).toString() : read }).toEqual({ key, body: `body ${i}` });
    }
  });

  it('answers a missing key as the SDK would: NoSuchKey, or AccessDenied without s3:ListBucket', async () => {
    const missing = await new ObjectReader(server.client).read(BUCKET, 'input/d/none.jpg', 1024).catch((error: unknown) => error);
    expect(isMissingObjectError(missing)).toBe(true);
    const denied = await new ObjectReader(denying.client).read(BUCKET, 'input/d/none.jpg', 1024).catch((error: unknown) => error);
    expect(isAccessDeniedError(denied)).toBe(true);
  });

  it('stops at the size limit without reading the body', async () => {
    expect(await new ObjectReader(server.client).read(BUCKET, ODD_KEYS[0], 3)).toEqual({ tooLarge: 6 });
  });

  it('fails on credentials S3 does not know, not as a missing object and not as transient', async () => {
    const wrong = createS3Client({ ...server.env, AWS_ACCESS_KEY_ID: 'NOBODY' });
    const error = await new ObjectReader(wrong).read(BUCKET, ODD_KEYS[0], 1024).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ name: 'InvalidAccessKeyId', $metadata: { httpStatusCode: 403 } });
    expect([isMissingObjectError(error), isAccessDeniedError(error), isTransientS3Error(error)]).toEqual([false, false, false]);
  });

  it("retries 5xx as the client's maxAttempts allow, then gives up with a transient error", async () => {
    let failFirst = 2;
    let calls = 0;
    const flaky = await startFailingS3Server(() => (++calls <= failFirst ? SLOW_DOWN : { status: 200, body: 'ok' }));
    try {
      const client = flaky.client();
      const read = await new ObjectReader(client).read(BUCKET, 'k.jpg', 1024);
      expect({ calls, body: 'bytes' in read ? Buffer.from(read.bytes).toString() : read }).toEqual({ calls: 3, body: 'ok' });
      calls = 0;
      failFirst = 100;
      const error = await new ObjectReader(client).read(BUCKET, 'k.jpg', 1024).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ name: 'SlowDown', message: 'Please reduce your request rate.', $metadata: { httpStatusCode: 503 } });
      expect(isTransientS3Error(error)).toBe(true);
      expect(calls).toBe(5);
    } finally {
      await flaky.close();
    }
  });
});
