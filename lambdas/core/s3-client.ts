import { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';

/**
 * One S3 client factory for Lambda, the local runner and tests.
 *
 * `S3_ENDPOINT` points the client at an S3-compatible server (the local runner's, or a test's on
 * loopback); path-style addressing is then required because such servers have no per-bucket DNS.
 * Flexible checksums are only sent when an operation requires them: third-party servers do not
 * all understand the `aws-chunked` trailer encoding that the SDK otherwise uses for uploads.
 */
export function createS3Client(env: NodeJS.ProcessEnv = process.env, overrides: S3ClientConfig = {}): S3Client {
  const endpoint = env.S3_ENDPOINT;
  const config: S3ClientConfig = {
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 5,
  };
  if (endpoint) {
    Object.assign(config, {
      endpoint,
      forcePathStyle: true,
      region: env.AWS_REGION ?? 'us-east-1',
      credentials: {
        accessKeyId: env.AWS_ACCESS_KEY_ID ?? 'S3RVER',
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? 'S3RVER',
      },
    });
  }
  return new S3Client({ ...config, ...overrides });
}
