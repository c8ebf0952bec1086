import type { App } from 'aws-cdk-lib';
import { CONFIG_CONTEXT_KEY, configFromContext, defaultConfig, parsePipelineConfig, PipelineConfigError, PipelineConfigSchema } from '../../lib/config';
import { testApp } from '../support/cdk-app';
import { cdkJson } from './synth';

function appWith(value: unknown): App {
  return testApp({ context: value === undefined ? {} : { [CONFIG_CONTEXT_KEY]: value } });
}

describe('pipeline config', () => {
  test('defaults fill every setting', () => {
    const config = defaultConfig();
    expect(config).toMatchObject({
      batchSize: 250,
      maxConcurrency: 200,
      toleratedFailurePercentage: 5,
      featurizeMemoryMb: 1769,
      featurizeTimeoutSeconds: 300,
      aggregateMemoryMb: 3008,
      aggregateTimeoutSeconds: 900,
      pcaComponents: 100,
      classifier: 'lda+logistic',
      classifierComponents: 300,
      fieldCopyEvery: 4,
      modelId: 'mobilenet_v2_1.0_224_quant',
      featurizer: 'cnn',
      architecture: 'x86_64',
      intermediateRetentionDays: 7,
      logRetentionDays: 30,
      removalPolicy: 'retain',
    });
    // Unset: the handlers' own defaults apply.
    for (const key of [
      'featurizeReservedConcurrency',
      'pcaVarianceThreshold',
      'imageSize',
      'featureLayers',
      'featurePower',
      'maxInputPixels',
      'readConcurrency',
    ] as const) {
      expect(config[key]).toBeUndefined();
    }
  });

  test('the classifier is lda or knn; field copies of 1 in 0-64 Training images', () => {
    expect(defaultConfig({ classifier: 'knn' }).classifier).toBe('knn');
    expect(() => defaultConfig({ classifier: 'svm' as 'knn' })).toThrow(/classifier/);
    expect(defaultConfig({ fieldCopyEvery: 0 }).fieldCopyEvery).toBe(0);
    expect(() => defaultConfig({ fieldCopyEvery: 65 })).toThrow(/fieldCopyEvery/);
  });

  test('cdk.json holds a valid config under its one key', () => {
    const context = cdkJson().context;
    expect(context[CONFIG_CONTEXT_KEY]).toBeDefined();
    expect(() => PipelineConfigSchema.parse(context[CONFIG_CONTEXT_KEY])).not.toThrow();
    expect(context['@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2']).toBe(true);
  });

  test('reads the context key, missing key means defaults', () => {
    expect(configFromContext(appWith({ batchSize: 10, architecture: 'arm64' }))).toMatchObject({ batchSize: 10, architecture: 'arm64', maxConcurrency: 200 });
    expect(configFromContext(appWith(undefined))).toEqual(defaultConfig());
    expect(configFromContext(appWith({ batchSize: 10 }).node)).toMatchObject({ batchSize: 10 });
  });

  test('a -c value arrives as a JSON string and is parsed', () => {
    expect(configFromContext(appWith('{"pcaVarianceThreshold":0.95,"featurizer":"pixels"}'))).toMatchObject({
      pcaVarianceThreshold: 0.95,
      featurizer: 'pixels',
    });
    expect(() => configFromContext(appWith('{batchSize: 1'))).toThrow(/not JSON/);
  });

  test('accepts good values at the limits', () => {
    expect(() =>
      defaultConfig({
        batchSize: 1000,
        maxConcurrency: 10,
        featurizeReservedConcurrency: 10,
        toleratedFailurePercentage: 0,
        featurizeMemoryMb: 10240,
        aggregateTimeoutSeconds: 900,
        logRetentionDays: 9999,
        pcaVarianceThreshold: 1,
        maxInputPixels: 1_000_000_000,
        removalPolicy: 'destroy',
      }),
    ).not.toThrow();
  });

  test.each([
    [{ batchSize: 0 }, /batchSize/],
    [{ batchSize: 1001 }, /batchSize/],
    [{ batchSize: 2.5 }, /batchSize/],
    [{ maxConcurrency: 20000 }, /maxConcurrency/],
    [{ toleratedFailurePercentage: 101 }, /toleratedFailurePercentage/],
    [{ featurizeMemoryMb: 64 }, /featurizeMemoryMb/],
    [{ aggregateTimeoutSeconds: 901 }, /aggregateTimeoutSeconds/],
    [{ pcaVarianceThreshold: 0 }, /pcaVarianceThreshold/],
    [{ architecture: 'x86' }, /architecture/],
    [{ featurizer: 'resnet' }, /featurizer/],
    [{ modelId: '../etc/passwd' }, /modelId: must be a model id/],
    [{ imageSize: 16 }, /imageSize/],
    [{ featureLayers: [] }, /featureLayers/],
    [{ featureLayers: ['conv_pw_11_relu,x'] }, /featureLayers.0: must be a layer name/],
    [{ featurePower: 0 }, /featurePower/],
    [{ featurePower: 1.5 }, /featurePower/],
    [{ readConcurrency: 0 }, /readConcurrency/],
    // Above what the featurize handler's environment accepts: it would fail every cold start.
    [{ maxInputPixels: 2_000_000_000 }, /maxInputPixels/],
    [{ logRetentionDays: 10 }, /logRetentionDays: must be one of 1, 3, 5/],
    [{ removalPolicy: 'snapshot' }, /removalPolicy/],
    [{ batchsize: 10 }, /Unrecognized key.*batchsize/],
    [{ maxConcurrency: 100, featurizeReservedConcurrency: 20 }, /maxConcurrency: 100 exceeds featurizeReservedConcurrency \(20\)/],
  ])('rejects %j', (settings, message) => {
    expect(() => configFromContext(appWith(settings))).toThrow(PipelineConfigError);
    expect(() => configFromContext(appWith(settings))).toThrow(message);
  });

  test('the error names its source and lists every problem', () => {
    expect(() => parsePipelineConfig({ batchSize: -1, featurizer: 'x' }, 'cdk.json')).toThrow(/^Invalid cdk\.json:\n {2}- batchSize: .*\n {2}- featurizer: /);
  });
});

describe('operations settings', () => {
  test('defaults: dashboard, notifications (topic, alarms, run-end rule) and tags on; budget, e-mail and customer-managed key off', () => {
    expect(defaultConfig()).toMatchObject({ dashboard: true, notifications: true, featurizeErrorRateAlarmPercent: 5, customerManagedKey: false, tags: {} });
    for (const key of ['notificationEmail', 'monthlyBudgetUsd', 'budgetEmail'] as const) expect(defaultConfig()[key]).toBeUndefined();
  });

  test('accepts a full operations setup', () => {
    expect(
      defaultConfig({
        dashboard: false,
        notifications: true,
        notificationEmail: 'ops@example.com',
        featurizeErrorRateAlarmPercent: 100,
        monthlyBudgetUsd: 25.5,
        budgetEmail: 'billing@example.com',
        customerManagedKey: true,
        tags: { team: 'data-platform', 'cost-centre': '' },
      }),
    ).toMatchObject({ monthlyBudgetUsd: 25.5, customerManagedKey: true, tags: { team: 'data-platform' } });
  });

  test.each([
    [{ notificationEmail: 'not-an-address' }, /notificationEmail/],
    [{ featurizeErrorRateAlarmPercent: 0 }, /featurizeErrorRateAlarmPercent/],
    [{ monthlyBudgetUsd: -5, budgetEmail: 'a@example.com' }, /monthlyBudgetUsd/],
    [{ monthlyBudgetUsd: 10 }, /budgetEmail: monthlyBudgetUsd and budgetEmail go together/],
    [{ budgetEmail: 'a@example.com' }, /budgetEmail: monthlyBudgetUsd and budgetEmail go together/],
    [{ customerManagedKey: 'yes' }, /customerManagedKey/],
    [{ tags: { '': 'x' } }, /tags/],
  ])('rejects %j', (settings, message) => {
    expect(() => defaultConfig(settings as never)).toThrow(message);
  });
});
