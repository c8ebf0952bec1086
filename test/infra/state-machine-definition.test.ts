/**
 * Runs the synthesized definition (with placeholder ARNs) in aws-local-stepfunctions, the
 * interpreter the local runner uses, to check what the Pass/Choice states compute: defaults,
 * the start marker's prefix, clear failures for bad input, and the failure-report path. The
 * Distributed Map is swapped for a Task stand-in, since the interpreter has none, and the tasks
 * run local stand-ins that record their input.
 */
import { ExecutionError, StateMachine } from 'aws-local-stepfunctions';
import { AggregateEventSchema } from '../../lambdas/contracts/events';
import { DEFAULT_MOMENTS_MERGE_FAN_IN } from '../../lambdas/contracts/handler-env';
import { momentsMergeLevels } from '../../lambdas/aggregate/aggregate-work';
import { PLACEHOLDERS, stateMachineDefinition, synthesizePipeline } from './synth';

const EXECUTION_NAME = 'run-0042';
const CONTEXT = {
  Execution: {
    Id: `arn:aws:states:us-east-1:123456789012:execution:Pipeline:${EXECUTION_NAME}`,
    Name: EXECUTION_NAME,
  },
};

let definition: Record<string, any>;
beforeAll(() => {
  definition = stateMachineDefinition(synthesizePipeline());
});

const MAP_RESULT = {
  MapRunArn: 'arn:aws:states:us-east-1:123456789012:mapRun:Pipeline/map:1',
  ResultWriterDetails: { Bucket: PLACEHOLDERS.bucket, Key: `work/${EXECUTION_NAME}/map-results/1/manifest.json` },
};

/**
 * The definition with FeaturizeImages as a Task that keeps the Map's ResultSelector, ResultPath,
 * Catch and Next, so what follows it runs as deployed.
 */
function withMapStandIn(): StateMachine {
  // A JSON copy, not structuredClone: under jest that makes objects of another realm, which the
  // interpreter's plain-object checks (States.JsonMerge) reject.
  const copy = JSON.parse(JSON.stringify(definition));
  for (const map of ['FeaturizeImages', 'ComputeMoments', 'MergeMoments', 'ProjectGroups', 'ClassifyGroups']) {
    const kept = Object.entries(copy.States[map]).filter(([field]) => ['ResultSelector', 'ResultPath', 'Catch', 'Next'].includes(field));
    copy.States[map] = { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', ...Object.fromEntries(kept) };
  }
  return new StateMachine(copy);
}

interface RunOutcome {
  /** The run PlanAggregate was invoked with (RunSettings + mapResult), if it ran. */
  aggregateEvent?: unknown;
  /**
   * The stages the aggregate function was invoked for, in order; FitClassifier and PublishFeatures,
   * the two branches of one Parallel, as one entry `fit-classifier:<groups> | publish-features:<groups>`.
   */
  stages: string[];
  /** The level each MergeMoments map run was handed (`$.merge`), in order. */
  merges: unknown[];
  /** The fan-in FitModel was handed. */
  fitFanIn?: number;
  /** What WriteFailureReport was called with, if it ran. */
  failureReport?: unknown;
  /** The Fail state the run ended in. */
  failure?: { error: string; cause: string };
}

async function run(input: unknown, featurizeImages: () => Promise<any> = async () => MAP_RESULT, groups = 2): Promise<RunOutcome> {
  const outcome: RunOutcome = { stages: [], merges: [] };
  const stage = (name: string) => async () => {
    outcome.stages.push(name);
    return [];
  };
  const execution = withMapStandIn().run(input as Parameters<StateMachine['run']>[0], {
    context: CONTEXT,
    overrides: {
      taskResourceLocalHandlers: {
        FeaturizeImages: featurizeImages,
        // A task handler gets the state's Parameters: `{ FunctionName, Payload }` for lambda:invoke.
        // A task handler gets the state's Parameters: the aggregate's name their stage.
        PlanAggregate: async (parameters: any) => {
          outcome.stages.push(parameters.Payload.stage);
          outcome.aggregateEvent = parameters.Payload.run;
          return { Payload: { groups, groupsKey: `work/${EXECUTION_NAME}/aggregate/groups.json` } };
        },
        ComputeMoments: stage('moments'),
        // The stand-in gets the Map state's input: the level its ItemsPath and ItemSelector read.
        MergeMoments: async (state: any) => {
          outcome.stages.push('merge');
          outcome.merges.push(state.merge);
          return [];
        },
        FitModel: async (parameters: any) => {
          outcome.stages.push(`${parameters.Payload.stage}:${parameters.Payload.groups}`);
          outcome.fitFanIn = parameters.Payload.fanIn;
          return { Payload: { classify: true } };
        },
        ProjectGroups: stage('project'),
        FitClassifier: async (parameters: any) => {
          outcome.stages.push(`${parameters.Payload.stage}:${parameters.Payload.groups}`);
          return { Payload: { classifier: 'lda' } };
        },
        PublishFeatures: async (parameters: any) => {
          outcome.stages.push(`${parameters.Payload.stage}:${parameters.Payload.groups}`);
          return { Payload: { features: 'results/run-0042/features.csv' } };
        },
        ClassifyGroups: stage('classify'),
        PublishRun: async (parameters: any) => {
          outcome.stages.push(`${parameters.Payload.stage}:${parameters.Payload.groups}`);
          return { Payload: { ok: true } };
        },
        WriteFailureReport: async (parameters: any) => {
          outcome.failureReport = parameters;
          return {};
        },
      },
    },
  });
  try {
    await execution.result;
  } catch (error) {
    if (!(error instanceof ExecutionError)) throw error;
    const failed = error.cause as Error;
    outcome.failure = { error: failed.name, cause: failed.message };
  }
  return { ...outcome, stages: besideOneAnother(outcome.stages) };
}

/** The Parallel's two branches, which start in either order, as one entry. */
function besideOneAnother(stages: string[]): string[] {
  const at = stages.findIndex((stage) => stage.startsWith('fit-classifier:') || stage.startsWith('publish-features:'));
  if (at < 0 || at + 1 >= stages.length) return stages;
  const pair = stages.slice(at, at + 2).sort();
  if (!pair[0].startsWith('fit-classifier:') || !pair[1].startsWith('publish-features:')) return stages;
  return [...stages.slice(0, at), pair.join(' | '), ...stages.slice(at + 2)];
}

async function runSettingsFor(input: unknown): Promise<unknown> {
  const outcome = await run(input);
  if (outcome.failure) throw new Error(`run failed: ${JSON.stringify(outcome.failure)}`);
  const { mapResult, ...settings } = outcome.aggregateEvent as Record<string, unknown>;
  expect(mapResult).toEqual(MAP_RESULT);
  return settings;
}

async function failureOf(input: unknown): Promise<{ error: string; cause: string }> {
  const outcome = await run(input);
  expect(outcome.aggregateEvent).toBeUndefined();
  expect(outcome.failureReport).toBeUndefined();
  if (!outcome.failure) throw new Error('the run succeeded');
  return outcome.failure;
}

describe('run settings from the execution input', () => {
  test('defaults: the stack bucket, the execution name as run id, results/ and work/ prefixes', async () => {
    await expect(runSettingsFor({ inputPrefix: 'input/fruits/' })).resolves.toEqual({
      bucket: PLACEHOLDERS.bucket,
      inputPrefix: 'input/fruits/',
      runId: EXECUTION_NAME,
      outputPrefix: `results/${EXECUTION_NAME}/`,
      workPrefix: `work/${EXECUTION_NAME}/`,
    });
  });

  test('given values win over defaults; the output prefix derives from the run id; unknown fields are dropped', async () => {
    await expect(runSettingsFor({ bucket: 'other-bucket', inputPrefix: 'input/x/', runId: 'nightly', note: 'hi' })).resolves.toEqual({
      bucket: 'other-bucket',
      inputPrefix: 'input/x/',
      runId: 'nightly',
      outputPrefix: 'results/nightly/',
      workPrefix: 'work/nightly/',
    });
    await expect(runSettingsFor({ inputPrefix: 'input/x/', runId: 'nightly' })).resolves.toMatchObject({
      outputPrefix: 'results/nightly/',
    });
  });

  test('the upload trigger: input/<dataset>/_START runs input/<dataset>/ of the event bucket', async () => {
    await expect(runSettingsFor({ trigger: { bucket: 'event-bucket', key: 'input/fruits-360/_START' } })).resolves.toEqual({
      bucket: 'event-bucket',
      inputPrefix: 'input/fruits-360/',
      runId: EXECUTION_NAME,
      outputPrefix: `results/${EXECUTION_NAME}/`,
      workPrefix: `work/${EXECUTION_NAME}/`,
    });
  });

  test.each(['input/a/b/_START', 'input/_START', 'other/a/_START', 'input/a/_START.txt'])(
    'a marker at the wrong place (%s) fails with a clear cause',
    async (key) => {
      const failure = await failureOf({ trigger: { bucket: 'b', key } });
      expect(failure.error).toBe('InvalidStartMarker');
      expect(failure.cause).toContain('input/<dataset>/_START');
      expect(failure.cause).toContain(key);
    },
  );

  test('a missing inputPrefix fails with a clear cause', async () => {
    const failure = await failureOf({ bucket: 'b' });
    expect(failure.error).toBe('MissingInputPrefix');
    expect(failure.cause).toContain('"inputPrefix"');
  });

  test.each([
    { inputPrefix: 'input/fruits' },
    { inputPrefix: 'elsewhere/fruits/' },
    { inputPrefix: 7 },
    // One run must never write into another's results.
    { inputPrefix: 'input/fruits/', outputPrefix: 'results/other-run/' },
    { inputPrefix: 'input/fruits/', runId: '../../x' },
    { inputPrefix: 'input/fruits/', runId: 'a/b' },
    { inputPrefix: 'input/fruits/', runId: '..' },
    { inputPrefix: 'input/fruits/', runId: 'with space' },
    { inputPrefix: 'input/fruits/', runId: '' },
    { inputPrefix: 'input/fruits/', runId: 42 },
  ])('prefixes outside the layout (%j) fail with a clear cause', async (input) => {
    const failure = await failureOf(input);
    expect(failure.error).toBe('InvalidRunSettings');
    expect(failure.cause).toContain('input/<dataset>/');
  });
});

describe('a saved model to project with (pcaModel)', () => {
  test('a run without one keeps exactly its settings; with one, PlanAggregate gets it and the featurize batches do not', async () => {
    const settings = await runSettingsFor({ inputPrefix: 'input/fruits/', pcaModel: 'results/run-7/pca-model.json' });
    expect(settings).toEqual({
      bucket: PLACEHOLDERS.bucket,
      inputPrefix: 'input/fruits/',
      runId: EXECUTION_NAME,
      outputPrefix: `results/${EXECUTION_NAME}/`,
      workPrefix: `work/${EXECUTION_NAME}/`,
      pcaModel: 'results/run-7/pca-model.json',
    });
    expect(AggregateEventSchema.parse({ ...(settings as object), mapResult: MAP_RESULT })).toMatchObject({ pcaModel: 'results/run-7/pca-model.json' });
    expect(Object.keys(definition.States.FeaturizeImages.ItemBatcher.BatchInput)).not.toContain('pcaModel.$');
  });

  test.each([
    'pca-model.json',
    'work/run-7/pca-model.json',
    'input/fruits/pca-model.json',
    'results/../input/x.json',
    'results/run-7/../../x',
    'results/',
    'results/run-7/',
    42,
    null,
  ])('a pcaModel outside results/ (%j) fails with a clear cause', async (pcaModel) => {
    const failure = await failureOf({ inputPrefix: 'input/fruits/', pcaModel });
    expect(failure.error).toBe('InvalidRunSettings');
    expect(failure.cause).toContain('"pcaModel", when given, must be a key under results/');
  });
});

describe('the moments merge tree', () => {
  const fanIn = DEFAULT_MOMENTS_MERGE_FAN_IN;

  test.each([17, 100, 257, 1000, 16_000])('%d groups: a MergeMoments run per level of momentsMergeLevels, then the fit merges the last', async (groups) => {
    const outcome = await run({ inputPrefix: 'input/fruits/' }, undefined, groups);
    const levels = momentsMergeLevels(groups, fanIn);
    expect(levels.length).toBeGreaterThan(1);
    expect(outcome.merges).toEqual(
      levels.slice(1).map((partials, l) => ({ level: l + 1, inputs: levels[l], partials, firsts: Array.from({ length: partials }, (_, n) => n * fanIn) })),
    );
    expect(outcome.stages).toEqual([
      'plan',
      'moments',
      ...levels.slice(1).map(() => 'merge'),
      `fit:${groups}`,
      'project',
      `fit-classifier:${groups} | publish-features:${groups}`,
      'classify',
      `publish:${groups}`,
    ]);
    expect(outcome.fitFanIn).toBe(fanIn);
  });

  test('at most fanIn groups, or a run that projects with a saved model: straight to the fit, no merge', async () => {
    for (const groups of [0, 1, fanIn]) expect((await run({ inputPrefix: 'input/fruits/' }, undefined, groups)).merges).toEqual([]);
    const projecting = await run({ inputPrefix: 'input/fruits/', pcaModel: 'results/run-7/pca-model.json' }, undefined, 100);
    expect(projecting.merges).toEqual([]);
    expect(projecting.stages.slice(0, 3)).toEqual(['plan', 'moments', 'fit:100']);
  });

  test('past 1,000 nodes a level (States.ArrayRange) the run fails', async () => {
    const outcome = await run({ inputPrefix: 'input/fruits/' }, undefined, 1000 * fanIn + 1);
    expect(outcome.failure).toMatchObject({ error: 'States.Runtime' });
  });
});

describe('aggregate input and failure path', () => {
  test('PlanAggregate gets an AggregateEvent (lambdas/contracts/events.ts), then every stage runs in order', async () => {
    const outcome = await run({ inputPrefix: 'input/fruits/' });
    expect(AggregateEventSchema.safeParse(outcome.aggregateEvent).success).toBe(true);
    expect(outcome.stages).toEqual(['plan', 'moments', 'fit:2', 'project', 'fit-classifier:2 | publish-features:2', 'classify', 'publish:2']);
  });

  test('an error in FeaturizeImages writes <outputPrefix>failure.json and fails the run with that error', async () => {
    const outcome = await run({ inputPrefix: 'input/fruits/' }, async () => {
      const error = new Error('More than 5% of the batches failed');
      error.name = 'States.ExceedToleratedFailureThreshold';
      throw error;
    });
    expect(outcome.aggregateEvent).toBeUndefined();
    expect(outcome.failure).toEqual({ error: 'States.ExceedToleratedFailureThreshold', cause: 'More than 5% of the batches failed' });
    expect(outcome.failureReport).toEqual({
      Bucket: PLACEHOLDERS.bucket,
      Key: `results/${EXECUTION_NAME}/failure.json`,
      ContentType: 'application/json',
      Body: {
        runId: EXECUTION_NAME,
        inputPrefix: 'input/fruits/',
        execution: CONTEXT.Execution.Id,
        error: { Error: 'States.ExceedToleratedFailureThreshold', Cause: 'More than 5% of the batches failed' },
      },
    });
  });
});
