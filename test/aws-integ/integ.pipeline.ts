/**
 * The pipeline against AWS itself, for whoever has an account (never run by `npm test` or CI: jest
 * only collects `*.test.ts`). It pins the local emulator's reading of AWS behaviour to the
 * service: deploy the stack, upload a few dozen demo images, start a run, wait for it, then check
 * the Distributed Map's ResultWriter manifest, the features.csv row count and report.json's counts.
 *
 *   npm run test:aws          # integ-runner: deploy, assert, destroy (needs Docker and credentials)
 *
 * What it costs is in README ("Test"). The stack is deployed with removalPolicy "destroy", so
 * integ-runner's clean-up deletes the bucket with its objects.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExpectedResult, IntegTest, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Duration } from 'aws-cdk-lib';
import * as s3deploy from 'aws-cdk-lib/aws-s3-deployment';
import { defaultConfig } from '../../lib/config';
import { FruitsPipelineStack } from '../../lib/fruits-pipeline-stack';
import { writeDemoDataset } from '../../local/demo-dataset';

const DATASET = 'integ';
const RUN_ID = 'integ-run';
/** 5 classes x (6 Training + 2 Test) images. */
const PER_CLASS = { trainingPerClass: 6, testPerClass: 2 };
const IMAGES = 5 * (PER_CLASS.trainingPerClass + PER_CLASS.testPerClass);

async function main(): Promise<void> {
  const folder = mkdtempSync(join(tmpdir(), 'fruits-integ-'));
  await writeDemoDataset(folder, PER_CLASS);

  const app = new App();
  const stack = new FruitsPipelineStack(app, 'FruitsPipelineInteg', {
    config: defaultConfig({ removalPolicy: 'destroy', dashboard: false, notifications: false }),
  });
  const upload = new s3deploy.BucketDeployment(stack, 'SampleImages', {
    sources: [s3deploy.Source.asset(folder)],
    destinationBucket: stack.bucket,
    destinationKeyPrefix: `input/${DATASET}/`,
    memoryLimit: 512,
  });

  const integ = new IntegTest(app, 'FruitsPipelineOnAws', { testCases: [stack], regions: ['us-east-1'] });
  const bucket = stack.bucket.bucketName;
  const start = integ.assertions.awsApiCall('SFN', 'startExecution', {
    stateMachineArn: stack.stateMachine.stateMachineArn,
    name: RUN_ID,
    input: JSON.stringify({ inputPrefix: `input/${DATASET}/`, runId: RUN_ID }),
  });
  start.node.addDependency(upload);

  // The run: SUCCEEDED, its output (the aggregate step's result) with one row per image.
  const finished = integ.assertions
    .awsApiCall('SFN', 'describeExecution', { executionArn: start.getAttString('executionArn') })
    .expect(ExpectedResult.objectLike({ status: 'SUCCEEDED', output: Match.stringLikeRegexp(`"rows":${IMAGES}[,}]`) }))
    .waitForAssertions({ totalTimeout: Duration.minutes(30), interval: Duration.seconds(30) });

  // The Distributed Map's ResultWriter wrote its manifest under work/<runId>/map-results/.
  const manifest = integ.assertions
    .awsApiCall('S3', 'listObjectsV2', { Bucket: bucket, Prefix: `work/${RUN_ID}/map-results/` })
    .expect(ExpectedResult.objectLike({ Contents: Match.arrayWith([Match.objectLike({ Key: Match.stringLikeRegexp('/manifest\\.json$') })]) }));
  // features.csv: the header and one line per image, nothing else.
  const features = integ.assertions
    .awsApiCall('S3', 'getObject', { Bucket: bucket, Key: `results/${RUN_ID}/features.csv` })
    .expect(ExpectedResult.objectLike({ Body: Match.stringLikeRegexp(`^([^\\n]*\\n){${IMAGES + 1}}$`) }));
  // report.json accounts for every image: all processed, none failed or skipped, accounting complete.
  const report = integ.assertions.awsApiCall('S3', 'getObject', { Bucket: bucket, Key: `results/${RUN_ID}/report.json` }).expect(
    ExpectedResult.objectLike({
      Body: Match.stringLikeRegexp(`"processed": ${IMAGES},[\\s\\S]*"failed": 0,[\\s\\S]*"skipped": 0`),
    }),
  );
  // Each call's provider is granted its own API action by integ-tests (s3:GetObject, ...).
  finished.next(manifest).next(features).next(report);
}

main().catch((error: Error) => {
  console.error(error);
  process.exit(1);
});
