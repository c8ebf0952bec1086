/**
 * bin/app.ts's wiring, as `cdk synth` runs it (lib/pipeline-app.ts): cdk-nag is attached as a
 * validation plugin, so the synth itself fails on a finding nobody acknowledged. The other
 * infrastructure tests call the pack's validateScope directly; this one goes through the app.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { buildPipelineApp } from '../../lib/pipeline-app';
import { cdkJson, PROJECT_ROOT } from './synth';

describe('the CDK app of bin/app.ts', () => {
  const outdirs: string[] = [];
  /** The app as bin/app.ts builds it, with cdk.json's context, synthesized into a folder of its own. */
  const pipelineApp = () => {
    const outdir = mkdtempSync(join(tmpdir(), 'fruits-app-'));
    outdirs.push(outdir);
    return { outdir, ...buildPipelineApp(new App({ context: cdkJson().context, outdir })) };
  };
  afterAll(() => outdirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  it('is lib/pipeline-app.ts: bin/app.ts holds no other wiring', () => {
    expect(cdkJson().app).toMatch(/bin\/app\.ts/);
    const source = readFileSync(join(PROJECT_ROOT, 'bin', 'app.ts'), 'utf8');
    expect(source).toContain('buildPipelineApp(new App());');
    expect(source).not.toMatch(/new FruitsPipelineStack|addPlugins/);
  });

  it('synthesizes the stack as it stands: every cdk-nag finding is acknowledged', () => {
    const { app, outdir } = pipelineApp();
    expect(() => app.synth()).not.toThrow();
    expect(readFileSync(join(outdir, 'FruitsPipeline.template.json'), 'utf8')).toContain('AWS::StepFunctions::StateMachine');
  });

  it('fails the synth on a planted violation, and the report names the rule and the construct', () => {
    const { app, stack, outdir } = pipelineApp();
    stack.featurizeFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['*'] }));
    const errors = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      // The message differs between a plain run and jest (which reports the construct's source line); both name the report.
      expect(() => app.synth()).toThrow(/A copy of this report can be found in: .*validation-report\.json/);
    } finally {
      errors.mockRestore();
    }
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8'));
    const findings = report.pluginReports.flatMap((plugin: any) =>
      plugin.violations.flatMap((violation: any) =>
        violation.violatingConstructs.map((construct: any) => `${plugin.pluginName}: ${violation.ruleName} at ${construct.constructPath}`),
      ),
    );
    expect(findings).toEqual(['AwsSolutions: AwsSolutions-IAM5[Resource::*] at FruitsPipeline/Featurize/Role/DefaultPolicy/Resource']);
  });
});
