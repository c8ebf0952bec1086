import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { startLocalS3Server, LocalS3Server } from '../../../../local/emulator/s3/s3-server';

describe('local S3 server (s3rver on loopback)', () => {
  let s3: LocalS3Server;
  beforeAll(async () => {
    s3 = await startLocalS3Server({ buckets: ['fruits-test'] });
  });
  afterAll(() => s3.close());

  it('stores and lists keys with spaces, unicode, + and % exactly', async () => {
    const key = 'input/d/Apple Red+1/ü %20 1.jpg';
    await s3.client.send(new PutObjectCommand({ Bucket: 'fruits-test', Key: key, Body: 'x' }));
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: 'fruits-test', Prefix: 'input/' }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual([key]);
    const got = await s3.client.send(new GetObjectCommand({ Bucket: 'fruits-test', Key: key }));
    expect(await got.Body?.transformToString()).toBe('x');
  });
});
