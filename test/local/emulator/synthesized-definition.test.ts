import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Json } from '../../../local/emulator/asl';
import { runLocalExecution } from '../../../local/emulator/local-execution';
import type { LocalFunction } from '../../../local/emulator/service-integrations';
import { LocalS3Server, startLocalS3Server } from '../../../local/emulator/s3/s3-server';
import { resolveStateMachineDefinition, synthesizePipeline, SynthesizedPipeline } from '../../../local/emulator/synthesized-definition';
import { MAX_BATCH_INPUT_BYTES } from '../../../lib/constructs/feature-pipeline';
import { momentsMergeLevels } from '../../../lambdas/aggregate/aggregate-work';

describe('state machine definition from the synthesized stack', () => {
  let pipeline: SynthesizedPipeline;
  beforeAll(() => {
    pipeline = synthesizePipeline({ bucketName: 'local-bucket', config: { batchSize: 7, maxConcurrency: 3 } });
  });

  it('resolves every CloudFormation token: functions to placeholder ARNs, the bucket to the local name', () => {
    const text = JSON.stringify(pipeline.definition);
    expect(text).not.toMatch(/Fn::|"Ref"|\$\{Token/);
    const map = pipeline.definition.States.FeaturizeImages as Record<string, any>;
    expect(map.ItemProcessor.ProcessorConfig.Mode).toBe('DISTRIBUTED');
    expect(map.ItemBatcher.MaxItemsPerBatch).toBe(7);
    expect(map.MaxConcurrency).toBe(3);
    expect(map.ItemProcessor.States.FeaturizeBatch.Parameters.FunctionName).toBe(pipeline.featurize.arn);
    for (const task of ['PlanAggregate', 'FitModel', 'PublishRun']) {
      expect((pipeline.definition.States[task].Parameters as Record<string, string>).FunctionName).toBe(pipeline.aggregate.arn);
    }
    // The Tasks of the Parallel's branches too.
    const beside = (pipeline.definition.States.FitClassifierBesideFeatures as Record<string, any>).Branches;
    for (const branch of beside) expect(Object.values(branch.States as Record<string, any>)[0].Parameters.FunctionName).toBe(pipeline.aggregate.arn);
    const moments = pipeline.definition.States.ComputeMoments as Record<string, any>;
    expect(moments.ItemProcessor.States.MomentsOfGroup.Parameters.FunctionName).toBe(pipeline.aggregate.arn);
    const merge = pipeline.definition.States.MergeMoments as Record<string, any>;
    expect(merge.ItemProcessor.States.MergeMomentsNode.Parameters.FunctionName).toBe(pipeline.aggregate.arn);
    expect(pipeline.featurize.arn).toMatch(/^arn:aws:lambda:us-east-1:\d{12}:function:Featurize/);
    expect(text).toContain('"local-bucket"');
    expect(pipeline.featurize.environment).toMatchObject({ MODEL_ID: expect.any(String), FEATURIZER: expect.any(String) });
    expect(pipeline.featurize.timeoutSeconds).toBe(pipeline.config.featurizeTimeoutSeconds);
    expect(pipeline.aggregate.timeoutSeconds).toBe(pipeline.config.aggregateTimeoutSeconds);
    expect(Object.keys(pipeline.definition.States)).toEqual(
      expect.arrayContaining([
        'FeaturizeImages',
        'PlanAggregate',
        'ComputeMoments',
        'ChooseMomentsMerge',
        'MergeMoments',
        'FitModel',
        'ProjectGroups',
        'FitClassifierBesideFeatures',
        'ClassifyGroups',
        'PublishRun',
        'WriteFailureReport',
      ]),
    );
  });

  describe('runs locally with stub functions', () => {
    let s3: LocalS3Server;
    beforeAll(async () => {
      s3 = await startLocalS3Server({ buckets: ['local-bucket'] });
      for (const key of ['input/d/A/1.jpg', 'input/d/B/2.jpg', 'input/d/_START']) {
        await s3.client.send(new PutObjectCommand({ Bucket: 'local-bucket', Key: key, Body: 'x' }));
      }
    });
    afterAll(() => s3.close());

    const summary = (items: number): Json => ({ shard: null, count: items, failed: [], failedCount: 0, skipped: [], skippedCount: 0, truncated: false });

    /**
     * An aggregate function that answers each stage as the real one shapes its answer: the plan
     * writes `groups` groups to groups.json (which the group maps' ItemReader reads from S3), the
     * fit says whether to classify, publish ends the run.
     */
    const stubAggregate =
      (groups: number, classify: boolean, seen: Json[] = [], timeouts: (number | undefined)[] = []): LocalFunction =>
      async (payload, options): Promise<Json> => {
        seen.push(payload);
        timeouts.push(options?.timeoutMs);
        const { stage, run } = payload as { stage: string; run: { workPrefix: string } };
        if (stage === 'plan') {
          const groupsKey = `${run.workPrefix}aggregate/groups.json`;
          const body = JSON.stringify(Array.from({ length: groups }, (_, group) => ({ group })));
          await s3.client.send(new PutObjectCommand({ Bucket: 'local-bucket', Key: groupsKey, Body: body }));
          return { groups, groupsKey };
        }
        if (stage === 'fit') return { classify };
        if (stage === 'publish') return { ok: true };
        return { group: (payload as { group: number }).group };
      };

    it('passes RunSettings to the batches and the ResultWriter location to the aggregate step', async () => {
      const seen: Record<string, Json[]> = { featurize: [], aggregate: [] };
      const timeouts: Record<string, (number | undefined)[]> = { featurize: [], aggregate: [] };
      const result = await runLocalExecution(
        {
          definition: pipeline.definition,
          s3: s3.client,
          functions: new Map<string, LocalFunction>([
            [
              pipeline.featurize.arn,
              async (p, options) => (seen.featurize.push(p), timeouts.featurize.push(options?.timeoutMs), summary((p as { Items: Json[] }).Items.length)),
            ],
            [pipeline.aggregate.arn, stubAggregate(3, true, seen.aggregate, timeouts.aggregate)],
          ]),
        },
        'run-1',
        { trigger: { bucket: 'local-bucket', key: 'input/d/_START' } },
      );
      expect(result).toMatchObject({ status: 'SUCCEEDED', output: { ok: true } });
      expect(seen.featurize[0]).toMatchObject({
        BatchInput: { bucket: 'local-bucket', inputPrefix: 'input/d/', runId: 'run-1', outputPrefix: 'results/run-1/', workPrefix: 'work/run-1/' },
      });
      expect(seen.aggregate[0]).toMatchObject({
        stage: 'plan',
        run: {
          runId: 'run-1',
          mapResult: {
            ResultWriterDetails: { Bucket: 'local-bucket', Key: expect.stringMatching(/^work\/run-1\/map-results\/[0-9a-f-]{36}\/manifest\.json$/) },
          },
        },
      });
      // Every stage in order; one child per group, read by the ItemReader from groups.json.
      const stages = seen.aggregate.map((p) => `${(p as { stage: string }).stage}${'group' in (p as object) ? (p as { group: number }).group : ''}`);
      const sorted = (prefix: string) => stages.filter((s) => s.startsWith(prefix)).sort();
      expect(stages[0]).toBe('plan');
      expect(sorted('moments')).toEqual(['moments0', 'moments1', 'moments2']);
      expect(sorted('project')).toEqual(['project0', 'project1', 'project2']);
      expect(sorted('classify')).toEqual(['classify0', 'classify1', 'classify2']);
      expect(stages.indexOf('fit')).toBeGreaterThan(Math.max(...['moments0', 'moments1', 'moments2'].map((s) => stages.indexOf(s))));
      expect(stages.at(-1)).toBe('publish');
      // The Parallel's branches: the classifier's fit and features.csv's join, after every group's
      // projection and before any group is classified.
      const lastProjected = Math.max(...sorted('project').map((s) => stages.indexOf(s)));
      const firstClassified = Math.min(...sorted('classify').map((s) => stages.indexOf(s)));
      for (const stage of ['fit-classifier', 'publish-features']) {
        expect(stages.indexOf(stage)).toBeGreaterThan(lastProjected);
        expect(stages.indexOf(stage)).toBeLessThan(firstClassified);
      }
      expect(seen.aggregate.find((p) => (p as { stage: string }).stage === 'moments')).toEqual({
        stage: 'moments',
        group: expect.any(Number),
        run: { bucket: 'local-bucket', inputPrefix: 'input/d/', runId: 'run-1', outputPrefix: 'results/run-1/', workPrefix: 'work/run-1/' },
      });
      // Each Task's TimeoutSeconds reaches its function, which keeps the time (not the interpreter).
      const stateTimeoutMs = (state: unknown) => (state as { TimeoutSeconds: number }).TimeoutSeconds * 1000;
      const map = pipeline.definition.States.FeaturizeImages as Record<string, any>;
      expect(timeouts.featurize).toEqual([stateTimeoutMs(map.ItemProcessor.States.FeaturizeBatch)]);
      expect(new Set(timeouts.aggregate)).toEqual(new Set([stateTimeoutMs(pipeline.definition.States.PlanAggregate)]));
      expect(timeouts.featurize[0]).toBe((pipeline.featurize.timeoutSeconds + 60) * 1000);
    });

    it("merges more groups' moments than the fan-in as a tree of MergeMoments levels, the levels momentsMergeLevels gives, before the fit", async () => {
      const tree = synthesizePipeline({ bucketName: 'local-bucket', config: { momentsMergeFanIn: 2 } });
      const runWith = async (runId: string, groups: number) => {
        const seen: Json[] = [];
        const result = await runLocalExecution(
          {
            definition: tree.definition,
            s3: s3.client,
            functions: new Map<string, LocalFunction>([
              [tree.featurize.arn, async (p: Json) => summary((p as { Items: Json[] }).Items.length)],
              [tree.aggregate.arn, stubAggregate(groups, false, seen)],
            ]),
          },
          runId,
          { inputPrefix: 'input/d/' },
        );
        expect(result).toMatchObject({ status: 'SUCCEEDED' });
        const stages = seen.map((p) => p as { stage: string; level?: number; first?: number; inputs?: number; fanIn?: number });
        const merges = stages.filter((p) => p.stage === 'merge-moments');
        return { stages: stages.map((p) => p.stage), merges, fit: stages.find((p) => p.stage === 'fit') };
      };
      // 5 groups: levels of 5, 3 and 2 partials (momentsMergeLevels(5, 2)); each node's first input, by level.
      const { stages, merges, fit } = await runWith('run-tree', 5);
      expect(momentsMergeLevels(5, 2)).toEqual([5, 3, 2]);
      const byLevel = (level: number) =>
        merges
          .filter((p) => p.level === level)
          .map((p) => p.first)
          .sort((a, b) => a! - b!);
      expect(byLevel(1)).toEqual([0, 2, 4]);
      expect(byLevel(2)).toEqual([0, 2]);
      expect(merges).toHaveLength(5);
      expect(merges.filter((p) => p.level === 1).every((p) => p.inputs === 5 && p.fanIn === 2)).toBe(true);
      expect(merges.filter((p) => p.level === 2).every((p) => p.inputs === 3 && p.fanIn === 2)).toBe(true);
      expect(merges[0]).toMatchObject({ run: { runId: 'run-tree', workPrefix: 'work/run-tree/' } });
      expect(fit).toMatchObject({ groups: 5, fanIn: 2 });
      // Every level after every group's moments and the level below, the fit after the last level.
      const at = (stage: string) => stages.flatMap((s, i) => (s === stage ? [i] : []));
      expect(Math.min(...at('merge-moments'))).toBeGreaterThan(Math.max(...at('moments')));
      const levelAt = merges.map((p) => p.level!);
      expect(levelAt).toEqual([...levelAt].sort());
      expect(at('fit')[0]).toBeGreaterThan(Math.max(...at('merge-moments')));
      // A run of at most fanIn groups has no merge stage (a projecting run neither: the definition's own test).
      expect((await runWith('run-few', 2)).merges).toEqual([]);
    });

    it('catches a failing aggregate step into WriteFailureReport and fails with its error', async () => {
      const result = await runLocalExecution(
        {
          definition: pipeline.definition,
          s3: s3.client,
          functions: new Map([
            [pipeline.featurize.arn, async (p: Json) => summary((p as { Items: Json[] }).Items.length)],
            [
              pipeline.aggregate.arn,
              async () => {
                throw Object.assign(new Error('no shard could be read'), { name: 'NoFeaturesError' });
              },
            ],
          ]),
        },
        'run-2',
        { inputPrefix: 'input/d/' },
      );
      expect(result).toMatchObject({ status: 'FAILED', error: 'NoFeaturesError' });
      const failure = await s3.client.send(new GetObjectCommand({ Bucket: 'local-bucket', Key: 'results/run-2/failure.json' }));
      expect(JSON.parse(await failure.Body!.transformToString())).toMatchObject({ runId: 'run-2', error: { Error: 'NoFeaturesError' } });
    });

    it('at the default batch size, cuts a batch of long keys below MAX_BATCH_INPUT_BYTES instead of overfilling a child', async () => {
      const defaults = synthesizePipeline({ bucketName: 'local-bucket' });
      const count = defaults.config.batchSize + 50;
      // S3's longest keys (1,024 bytes): a full batch of them is over the 256 KiB input limit.
      const folder = `input/long/${'label-'.repeat(60)}`;
      for (let i = 0; i < count; i++) {
        const key = `${folder}/${String(i).padStart(1024 - folder.length - 5, '0')}.jpg`;
        await s3.client.send(new PutObjectCommand({ Bucket: 'local-bucket', Key: key, Body: 'x' }));
      }
      const batches: Json[][] = [];
      const result = await runLocalExecution(
        {
          definition: defaults.definition,
          s3: s3.client,
          functions: new Map<string, LocalFunction>([
            [defaults.featurize.arn, async (p: Json) => (batches.push(p as Json[]), summary((p as { Items: Json[] }).Items.length))],
            [defaults.aggregate.arn, stubAggregate(1, false)],
          ]),
        },
        'run-3',
        { inputPrefix: 'input/long/' },
      );
      expect(result).toMatchObject({ status: 'SUCCEEDED' });
      const items = batches.map((batch) => (batch as unknown as { Items: Json[] }).Items.length);
      expect(Math.max(...batches.map((batch) => Buffer.byteLength(JSON.stringify(batch))))).toBeLessThanOrEqual(MAX_BATCH_INPUT_BYTES);
      expect(Math.max(...items)).toBeLessThan(defaults.config.batchSize);
      expect(items.reduce((sum, n) => sum + n, 0)).toBe(count);
    }, 60_000);
  });
});

describe('resolveStateMachineDefinition', () => {
  it('joins Fn::Join parts, resolves Ref/GetAtt/pseudo parameters and DefinitionSubstitutions', () => {
    const template = {
      Resources: {
        Fn1: { Type: 'AWS::Lambda::Function' },
        Bucket1: { Type: 'AWS::S3::Bucket' },
        Machine: {
          Type: 'AWS::StepFunctions::StateMachine',
          Properties: {
            DefinitionString: {
              'Fn::Join': [
                '',
                [
                  '{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:',
                  { Ref: 'AWS::Partition' },
                  ':states:::lambda:invoke","Parameters":{"FunctionName":"',
                  { 'Fn::GetAtt': ['Fn1', 'Arn'] },
                  '","Payload":{"b":"',
                  { Ref: 'Bucket1' },
                  '","s":"${Sub}"}},"End":true}}}',
                ],
              ],
            },
            DefinitionSubstitutions: { Sub: { Ref: 'AWS::Region' } },
          },
        },
      },
    };
    const definition = resolveStateMachineDefinition(template, { refs: { Bucket1: 'my-bucket' } });
    expect(definition.States.T).toMatchObject({
      Resource: 'arn:aws:states:::lambda:invoke',
      Parameters: { FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:Fn1', Payload: { b: 'my-bucket', s: 'us-east-1' } },
    });
    expect(() => resolveStateMachineDefinition(template)).toThrow(/Ref Bucket1/);
  });
});
