import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { configFromContext } from './config';
import { FruitsPipelineStack } from './fruits-pipeline-stack';
import { DEFAULT_STACK_NAME } from '../lambdas/contracts/state-machine';

/**
 * The CDK app `cdk synth` builds (bin/app.ts): the pipeline stack from cdk.json's settings, and
 * cdk-nag's AwsSolutions pack as a validation plugin, so a finding nobody acknowledged fails the
 * synth. A function, so the infrastructure tests synthesize through the very same wiring.
 */
export function buildPipelineApp(app: App): { app: App; stack: FruitsPipelineStack } {
  const stack = new FruitsPipelineStack(app, DEFAULT_STACK_NAME, {
    description: 'Fruit photos in S3 -> Step Functions Distributed Map -> container Lambdas -> PCA feature table',
    config: configFromContext(app),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}
