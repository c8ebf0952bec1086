#!/usr/bin/env node
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { configFromContext } from '../lib/config';
import { FruitsPipelineStack } from '../lib/fruits-pipeline-stack';

const app = new App();
new FruitsPipelineStack(app, 'FruitsPipeline', {
  description: 'Fruit photos in S3 -> Step Functions Distributed Map -> container Lambdas -> PCA feature table',
  config: configFromContext(app),
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
