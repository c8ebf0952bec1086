import {
  ASSUMED,
  billedMsPerImage,
  costModel,
  CostRow,
  costTable,
  FeaturizeMeasured,
  grown,
  PRICES,
  RECORDED,
  StageFigures,
  StageFigureSet,
  fieldCopyFactor,
} from '../../bench/cost';
import { defaultConfig } from '../../lib/config';

const flat = (seconds: number): StageFigures => ({ points: [{ images: 100_000, seconds, peakRssMb: 100 }], time: 'flat', memory: 'flat', basis: 'test' });

/** Round figures, so that the expected values below can be worked out by hand. */
const STAGES: StageFigureSet = {
  plan: flat(1),
  moments: flat(2),
  mergeMoments: flat(1),
  fit: flat(3),
  project: flat(4),
  fitClassifier: { lda: flat(1), 'lda+logistic': flat(4) },
  classify: { knn: flat(5), lda: flat(6), 'lda+logistic': flat(7) },
  publish: flat(2),
  groupImages: 500,
};
const FEATURIZE: FeaturizeMeasured = {
  featurizeCpuMsPerImage: 4,
  measuredWith: 'test',
  modelLoadSeconds: 0.5,
  probeSeconds: 0.5,
  handlerCoresBusy: 1,
  peakRssMb: 500,
};
// 1,000 images in 4 batches of 250, 2 groups of 2 shards; 2 GB functions; 2 children at a time
// for the featurize map and 1 for the group maps.
const CONFIG = defaultConfig({
  fieldCopyEvery: 0,
  batchSize: 250,
  aggregateGroupShards: 2,
  maxConcurrency: 2,
  aggregateConcurrency: 1,
  featurizeMemoryMb: 2048,
  aggregateMemoryMb: 2048,
});
const GB_S = PRICES.lambdaGbSecond.x86_64;
const REQUEST = PRICES.lambdaRequest;

const stage = (row: CostRow, name: string) => {
  const found = row.stages.find((s) => s.stage.startsWith(name));
  if (!found) throw new Error(`no stage ${name}`);
  return found;
};

describe('the cost model, by hand on a small run', () => {
  const row = costModel(FEATURIZE, 1000, 'x86_64', CONFIG, { stages: STAGES });

  test('batches and groups', () => {
    expect(row.batches).toBe(4);
    expect(row.groups).toBe(2);
  });

  test('featurize: 4 ms per image at 2,048 MB (more than one vCPU, one core used), two cold containers of 5 + 0.5 + 0.5 s, two waves', () => {
    const featurize = stage(row, 'FeaturizeImages');
    expect(featurize.slowestSeconds).toBeCloseTo(1, 10); // 250 x 4 ms
    expect(featurize.wallSeconds).toBeCloseTo(6 + 2 * (1 + 1), 10);
    // (1,000 x 4 ms + 2 containers x 6 s) x 2 GB, and 4 requests
    expect(featurize.lambdaUsd).toBeCloseTo((4 + 2 * 6) * 2 * GB_S + 4 * REQUEST, 12);
    expect(row.featurizeLambdaUsd).toBeCloseTo(featurize.lambdaUsd, 12);
  });

  test('aggregate: each stage at its figure; the group maps in waves of one, one cold container for the single stages and one for the maps', () => {
    expect(stage(row, 'PlanAggregate').wallSeconds).toBe(5 + 1 + 1);
    expect(stage(row, 'ComputeMoments').wallSeconds).toBe(5 + 2 * (2 + 1));
    expect(stage(row, 'FitModel').wallSeconds).toBe(3 + 1);
    expect(stage(row, 'ProjectGroups').wallSeconds).toBe(2 * (4 + 1));
    expect(stage(row, 'ClassifyGroups').wallSeconds).toBe(2 * (5 + 1));
    expect(stage(row, 'PublishRun').wallSeconds).toBe(2 + 1);
    // GB-s: plan 1 + 5 cold, moments 2 x 2 + 5 cold, fit 3, project 2 x 4, classify 2 x 5, publish 2;
    // invocations: plan, 2 moments, fit, 2 project, 2 classify, publish.
    expect(row.aggregateLambdaUsd).toBeCloseTo((1 + 5 + 2 * 2 + 5 + 3 + 2 * 4 + 2 * 5 + 2) * 2 * GB_S + 9 * REQUEST, 12);
    expect(row.aggregateMinutes * 60).toBeCloseTo(7 + 11 + 4 + 10 + 12 + 3, 10);
  });

  test('wall time: the listing (one page), featurize and the aggregate', () => {
    expect(row.wallMinutes * 60).toBeCloseTo(ASSUMED.listSecondsPerPage + 10 + 47, 10);
  });

  test('Step Functions: 2 transitions per child (4 batches, 2 groups in each of 3 maps) and the parent', () => {
    expect(row.stepFunctionsUsd).toBeCloseTo((2 * 4 + 3 * 2 * 2 + ASSUMED.parentTransitions) * PRICES.stepFunctionsTransition, 12);
  });

  test('S3: a GET per image and per shard read, the k-NN reading every references part; PUT-priced shards, list pages and parts', () => {
    // GETs: images 1,000; plan 2; moments 4 shards and their 4 batch records + 2 x 2; fit 1 + 2 tallies + 2 partials;
    // project 4 + 4 x 2 (the fit record and its model among them); k-NN 2 x (2 + 2); publish 2 + 4 x 2.
    const gets = 1000 + 2 + 12 + 5 + 12 + 8 + 10;
    // PUTs: 1 list page; 4 shards and 4 batch records; plan 2 + 2; moments 2 x 2; fit 2 (the record and the model); project 8 x 2; classify 2 x 2; publish 1 CSV part + 50.
    const puts = 1 + 8 + 4 + 4 + 2 + 16 + 4 + 51;
    expect(row.s3RequestsUsd).toBeCloseTo(gets * PRICES.s3Get + puts * PRICES.s3Put, 12);
  });

  test('the total is the sum of its parts; the upload is apart', () => {
    expect(row.totalUsd).toBeCloseTo(row.featurizeLambdaUsd + row.aggregateLambdaUsd + row.stepFunctionsUsd + row.s3RequestsUsd, 12);
    expect(row.uploadUsd).toBeCloseTo(1000 * PRICES.s3Put, 12);
    expect(row.limits).toEqual([]);
  });

  test("the LDA adds FitClassifier's fit, and reads no references part; the parent's transitions are the same (every run passes FitClassifier)", () => {
    const lda = costModel(FEATURIZE, 1000, 'x86_64', CONFIG, { stages: STAGES, classifier: 'lda' });
    expect(stage(lda, 'FitClassifier').wallSeconds).toBe(1 + 1);
    expect(stage(lda, 'ClassifyGroups').wallSeconds).toBe(2 * (6 + 1));
    expect(lda.stepFunctionsUsd).toBeCloseTo(row.stepFunctionsUsd, 12);
    expect(stage(lda, 'ClassifyGroups').gets).toBe(3 * 2);
  });

  test("the LDA with logistic regression takes its own FitClassifier figures, and reads the copies' sample too", () => {
    const both = costModel(FEATURIZE, 1000, 'x86_64', CONFIG, { stages: STAGES, classifier: 'lda+logistic' });
    const lda = costModel(FEATURIZE, 1000, 'x86_64', CONFIG, { stages: STAGES, classifier: 'lda' });
    expect(stage(both, 'FitClassifier').wallSeconds).toBe(4 + 1);
    expect(stage(both, 'FitClassifier').gets - stage(lda, 'FitClassifier').gets).toBe(2);
    expect(stage(both, 'ClassifyGroups').wallSeconds).toBe(2 * (7 + 1));
    expect(both.stepFunctionsUsd).toBeCloseTo(lda.stepFunctionsUsd, 12);
  });

  test('arm64: the same time, Lambda 20% cheaper per GB-s', () => {
    const arm = costModel(FEATURIZE, 1000, 'arm64', CONFIG, { stages: STAGES });
    expect(arm.wallMinutes).toBe(row.wallMinutes);
    const gbSeconds = (r: CostRow) => r.featurizeLambdaUsd + r.aggregateLambdaUsd - (4 + 9) * REQUEST;
    expect(gbSeconds(arm) / gbSeconds(row)).toBeCloseTo(0.8, 4);
    expect(arm.stepFunctionsUsd).toBe(row.stepFunctionsUsd);
    expect(arm.s3RequestsUsd).toBe(row.s3RequestsUsd);
  });
});

test("more groups than the merge fan-in: a MergeMoments map of the tree's nodes, level by level, and the fit reads the last level", () => {
  // 4 groups of one shard, fan-in 2: one level of 2 nodes, each 1 s, in waves of one.
  const tree = costModel(FEATURIZE, 1000, 'x86_64', defaultConfig({ ...CONFIG, aggregateGroupShards: 1, momentsMergeFanIn: 2 }), { stages: STAGES });
  expect(tree.groups).toBe(4);
  const merge = stage(tree, 'MergeMoments');
  expect(merge).toMatchObject({
    stage: 'MergeMoments (map)',
    invocations: 2,
    slowestSeconds: 1,
    gets: 4 + 2 * 2,
    puts: 2,
    transitions: 2 * ASSUMED.childTransitions,
  });
  expect(merge.wallSeconds).toBe(2 * (1 + 1));
  expect(stage(tree, 'FitModel').gets).toBe(1 + 4 + 2);
  expect(costModel(FEATURIZE, 1000, 'x86_64', CONFIG, { stages: STAGES }).stages.some((s) => s.stage.startsWith('MergeMoments'))).toBe(false);
});

test('per-group times scale with the images per group', () => {
  const wider = costModel(FEATURIZE, 1000, 'x86_64', defaultConfig({ ...CONFIG, aggregateGroupShards: 4 }), { stages: STAGES });
  expect(wider.groups).toBe(1);
  expect(stage(wider, 'ProjectGroups').slowestSeconds).toBe(2 * 4);
  expect(stage(wider, 'PlanAggregate').slowestSeconds).toBe(1);
});

describe('how figures grow with the run', () => {
  const two = (time: 'flat' | 'linear'): StageFigures => ({
    points: [
      { images: 100_000, seconds: 1, peakRssMb: 200 },
      { images: 1_000_000, seconds: 10, peakRssMb: 300 },
    ],
    time,
    memory: 'linear',
    basis: 'test',
  });

  test('flat takes the largest measured figure', () => {
    expect(grown(two('flat'), 'seconds', 10_000_000)).toBe(10);
    expect(grown(two('flat'), 'seconds', 10_000)).toBe(10);
  });

  test('linear goes through the two points', () => {
    expect(grown(two('linear'), 'seconds', 10_000_000)).toBeCloseTo(100, 10);
    expect(grown(two('linear'), 'seconds', 550_000)).toBeCloseTo(5.5, 10);
    expect(grown(two('linear'), 'peakRssMb', 10_000_000)).toBeCloseTo(1300, 10);
  });

  test('linear from one point goes through zero', () => {
    expect(grown({ ...flat(4), time: 'linear' }, 'seconds', 1_000_000)).toBeCloseTo(40, 10);
  });
});

describe('billed featurize time per image', () => {
  const measured = { ...FEATURIZE, handlerCoresBusy: 1.5 };
  test('one vCPU at 1,769 MB bills the CPU time', () => expect(billedMsPerImage(measured, 1769)).toBeCloseTo(4, 10));
  test('half a vCPU takes twice as long', () => expect(billedMsPerImage(measured, 1769 / 2)).toBeCloseTo(8, 10));
  test('above one vCPU, no more cores than the handler used', () => expect(billedMsPerImage(measured, 1769 * 3)).toBeCloseTo(4 / 1.5, 10));
});

describe('limits', () => {
  test('an invocation over its memory or timeout, a concurrency over the account', () => {
    const stages = { ...STAGES, plan: { ...flat(1000), points: [{ images: 100_000, seconds: 1000, peakRssMb: 4000 }] } };
    const row = costModel(FEATURIZE, 1000, 'x86_64', defaultConfig({ maxConcurrency: 2000 }), { stages });
    expect(row.limits).toEqual([
      "maxConcurrency 2,000 is above the account's 1,000",
      'PlanAggregate takes 1000 s (timeout 900 s)',
      'PlanAggregate needs 4,000 MB (memory 3,008 MB)',
    ]);
  });
});

describe('the recorded figures', () => {
  test('at 1,000,000 images the model gives back the measured slowest invocations', () => {
    const row = costModel(RECORDED.featurize, 1_000_000, 'x86_64', defaultConfig({ aggregateMemoryMb: 1769 }));
    const { stages } = RECORDED;
    const measuredAt = (figures: { points: readonly { images: number; seconds: number }[] }, images: number) =>
      figures.points.find((point) => point.images === images)!.seconds;
    // A flat stage takes the larger of the two measured; a linear one passes through its points.
    const largest = (figures: { points: readonly { seconds: number }[] }) => Math.max(...figures.points.map((point) => point.seconds));
    expect(stage(row, 'PlanAggregate').slowestSeconds).toBeCloseTo(measuredAt(stages.plan, 1_000_000), 10);
    expect(stage(row, 'ComputeMoments').slowestSeconds).toBeCloseTo(largest(stages.moments), 10);
    expect(stage(row, 'MergeMoments').slowestSeconds).toBeCloseTo(measuredAt(stages.mergeMoments, 1_000_000), 10);
    expect(stage(row, 'FitModel').slowestSeconds).toBeCloseTo(largest(stages.fit), 10);
    expect(stage(row, 'ProjectGroups').slowestSeconds).toBeCloseTo(largest(stages.project), 10);
    expect(stage(row, 'ClassifyGroups').slowestSeconds).toBeCloseTo(measuredAt(stages.classify.knn, 1_000_000), 10);
    expect(row.groups).toBe(100);
  });

  test("BENCHMARKS.md's table: the deployed defaults, both architectures", () => {
    const table = costTable(RECORDED.featurize);
    expect(table.rows.map((r) => [r[0], r[1]])).toEqual([
      ['71,014', 'x86_64'],
      ['71,014', 'arm64'],
      ['1,000,000', 'x86_64'],
      ['1,000,000', 'arm64'],
    ]);
  });
});

describe('field copies in the featurize work', () => {
  test('one Training image in 4 copied, a copy costing 2 images: 75% Training gives x1.375 the featurize CPU', () => {
    const measured = { ...FEATURIZE, fieldCopyCpuRatio: 2 };
    expect(fieldCopyFactor(measured, 4)).toBeCloseTo(1 + (0.75 / 4) * 2, 12);
    expect(fieldCopyFactor(measured, 0)).toBe(1);
    const without = stage(costModel(measured, 1000, 'x86_64', CONFIG, { stages: STAGES }), 'FeaturizeImages');
    const withCopies = stage(costModel(measured, 1000, 'x86_64', defaultConfig({ ...CONFIG, fieldCopyEvery: 4 }), { stages: STAGES }), 'FeaturizeImages');
    expect(withCopies.slowestSeconds).toBeCloseTo(without.slowestSeconds * 1.375, 9);
  });
});
