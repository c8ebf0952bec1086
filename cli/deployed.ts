/**
 * Driving the deployed stack without the console: find it in CloudFormation, start a run, follow
 * it in Step Functions. What the bucket holds (uploads, outputs, failed items) is client/'s, shared
 * with the local run. Plain functions over injected SDK clients, so the commands are thin and the
 * tests use a real S3 server on loopback plus mocked Step Functions and CloudFormation.
 */
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  DescribeExecutionCommandOutput,
  DescribeMapRunCommand,
  ExecutionStatus,
  ListExecutionsCommand,
  ListMapRunsCommand,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { datasetInputPrefix } from '../lambdas/contracts/bucket-layout';
import { uploadStartMarker } from '../client/folder-upload';
import type { ProgressUpdate } from './progress';

export interface DeployedClients {
  readonly s3: S3Client;
  readonly sfn: SFNClient;
  readonly cfn: CloudFormationClient;
}

export interface Deployment {
  readonly bucket: string;
  readonly stateMachineArn: string;
}

/** Bucket and state machine: from flags when given, else from the stack's outputs. */
export async function resolveDeployment(
  cfn: CloudFormationClient,
  options: { stackName: string; bucket?: string; stateMachineArn?: string },
): Promise<Deployment> {
  if (options.bucket && options.stateMachineArn) return { bucket: options.bucket, stateMachineArn: options.stateMachineArn };
  const { Stacks } = await cfn.send(new DescribeStacksCommand({ StackName: options.stackName }));
  const outputs = new Map((Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
  // Outputs defined below a construct get a hash suffix: match on the name's start.
  const find = (name: string) => [...outputs].find(([key]) => key === name || key.startsWith(name))?.[1];
  const bucket = options.bucket ?? find('BucketName');
  const stateMachineArn = options.stateMachineArn ?? find('StateMachineArn');
  if (!bucket || !stateMachineArn) {
    throw new Error(`stack ${options.stackName} has no ${!bucket ? 'BucketName' : 'StateMachineArn'} output; pass --bucket and --state-machine-arn`);
  }
  return { bucket, stateMachineArn };
}

export interface StartRunOptions {
  readonly dataset: string;
  /** Write the start marker (the upload trigger starts the run) instead of StartExecution. */
  readonly trigger: boolean;
  readonly runId?: string;
  /** A saved model to project with (the execution input's `pcaModel`); needs `trigger: false`. */
  readonly pcaModel?: string;
  /** How long to wait for the trigger's execution to appear. @default 120 s */
  readonly triggerTimeoutMs?: number;
  readonly pollMs?: number;
}

/** Start a run for `input/<dataset>/`; returns its execution ARN. */
export async function startRun(clients: DeployedClients, deployment: Deployment, options: StartRunOptions): Promise<string> {
  const inputPrefix = datasetInputPrefix(options.dataset);
  if (options.pcaModel && options.trigger) throw new Error('a run started by the upload trigger cannot project with a saved model: start it directly');
  if (!options.trigger) {
    const { executionArn } = await clients.sfn.send(
      new StartExecutionCommand({
        stateMachineArn: deployment.stateMachineArn,
        name: options.runId,
        input: JSON.stringify({
          bucket: deployment.bucket,
          inputPrefix,
          ...(options.runId && { runId: options.runId }),
          ...(options.pcaModel && { pcaModel: options.pcaModel }),
        }),
      }),
    );
    return executionArn!;
  }
  const since = new Date(Date.now() - 5_000);
  const markerKey = await uploadStartMarker(clients.s3, deployment.bucket, inputPrefix);
  return findTriggeredExecution(clients.sfn, deployment.stateMachineArn, markerKey, since, options.triggerTimeoutMs ?? 120_000, options.pollMs ?? 2_000);
}

/** The execution the upload rule started for `markerKey`: its input is `{ trigger: { key } }`. */
async function findTriggeredExecution(
  sfn: SFNClient,
  stateMachineArn: string,
  markerKey: string,
  since: Date,
  timeoutMs: number,
  pollMs: number,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set<string>();
  while (Date.now() < deadline) {
    const { executions } = await sfn.send(new ListExecutionsCommand({ stateMachineArn, maxResults: 20 }));
    for (const execution of executions ?? []) {
      if (!execution.executionArn || seen.has(execution.executionArn)) continue;
      if (execution.startDate && execution.startDate < since) continue;
      seen.add(execution.executionArn);
      const described = await sfn.send(new DescribeExecutionCommand({ executionArn: execution.executionArn }));
      const input = parseJson(described.input) as { trigger?: { key?: string } } | undefined;
      if (input?.trigger?.key === markerKey) return execution.executionArn;
    }
    await sleep(pollMs);
  }
  throw new Error(
    `no execution started for s3 marker ${markerKey} within ${Math.round(timeoutMs / 1000)} s: is the upload trigger (EventBridge notifications) deployed?`,
  );
}

export interface RunStatus {
  readonly executionArn: string;
  readonly runId: string;
  readonly status: ExecutionStatus | string;
  readonly startDate?: Date;
  readonly stopDate?: Date;
  readonly error?: string;
  readonly cause?: string;
  /** Items of the Distributed Map run, when it started. */
  readonly items?: { total: number; succeeded: number; failed: number; running: number; pending: number };
  readonly output?: unknown;
}

export async function describeRun(sfn: SFNClient, executionArn: string): Promise<RunStatus> {
  const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
  return { ...fromExecution(execution), items: await mapRunItems(sfn, executionArn) };
}

function fromExecution(execution: DescribeExecutionCommandOutput): RunStatus {
  return {
    executionArn: execution.executionArn!,
    runId: execution.name ?? execution.executionArn!.split(':').pop()!,
    status: execution.status ?? 'UNKNOWN',
    startDate: execution.startDate,
    stopDate: execution.stopDate,
    error: execution.error,
    cause: execution.cause,
    output: parseJson(execution.output),
  };
}

async function mapRunItems(sfn: SFNClient, executionArn: string): Promise<RunStatus['items']> {
  const { mapRuns } = await sfn.send(new ListMapRunsCommand({ executionArn }));
  const arn = mapRuns?.[0]?.mapRunArn;
  if (!arn) return undefined;
  const { itemCounts } = await sfn.send(new DescribeMapRunCommand({ mapRunArn: arn }));
  if (!itemCounts) return undefined;
  return {
    total: itemCounts.total ?? 0,
    succeeded: itemCounts.succeeded ?? 0,
    failed: (itemCounts.failed ?? 0) + (itemCounts.timedOut ?? 0) + (itemCounts.aborted ?? 0),
    running: itemCounts.running ?? 0,
    pending: itemCounts.pending ?? 0,
  };
}

/** Seconds between two looks at a run being followed, when nothing else is asked for. */
export const DEFAULT_POLL_SECONDS = 5;

/** Poll until the execution stops, reporting map-run item counts as progress. */
export async function followRun(
  sfn: SFNClient,
  executionArn: string,
  options: { pollMs?: number; onProgress?: (p: ProgressUpdate) => void } = {},
): Promise<RunStatus> {
  for (;;) {
    const status = await describeRun(sfn, executionArn);
    if (status.items) {
      const done = status.items.succeeded + status.items.failed;
      options.onProgress?.({ phase: done < status.items.total ? 'featurize' : 'aggregate', total: status.items.total, done, failed: status.items.failed });
    }
    if (status.status !== 'RUNNING' && status.status !== 'PENDING_REDRIVE') return status;
    await sleep(options.pollMs ?? DEFAULT_POLL_SECONDS * 1000);
  }
}

/** The execution ARN of a run id, from the state machine's ARN (the run id is the execution name). */
export function executionArnOf(stateMachineArn: string, runId: string): string {
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${runId}`;
}

function parseJson(text: string | undefined): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
