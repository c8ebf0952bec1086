/**
 * Small pieces of the Amazon States Language that the local runner needs outside of
 * aws-local-stepfunctions: the shapes of the states it rewrites, the execution context object,
 * and payload-template evaluation.
 *
 * Payload templates (`"Key.$": "$.path"`, intrinsic functions, `$$` context paths) are evaluated by
 * the library itself, through a one-state Pass machine: the Distributed Map emulation then
 * resolves ItemReader/ItemSelector/BatchInput/ResultWriter parameters with exactly the semantics
 * the other states get, instead of a second, subtly different JSONPath implementation.
 */
import { createHash } from 'node:crypto';
import { StateMachine } from 'aws-local-stepfunctions';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** A state as found in a definition: only the fields the runner inspects are typed. */
export interface AslState {
  Type: string;
  Resource?: string;
  Parameters?: Json;
  Next?: string;
  End?: boolean;
  [field: string]: unknown;
}

export interface AslDefinition {
  StartAt: string;
  States: Record<string, AslState>;
  Comment?: string;
  TimeoutSeconds?: number;
  [field: string]: unknown;
}

/**
 * Every state of `definition` with its name, the states of its Parallel branches included (state
 * names are unique across a state machine, branches and all). A Map's ItemProcessor is a
 * definition of its own, run by its own machine, and is not descended into.
 */
export function statesOf(definition: AslDefinition): [string, AslState][] {
  return Object.entries(definition.States).flatMap(([name, state]): [string, AslState][] => [
    [name, state],
    ...branchesOf(state).flatMap((branch) => statesOf(branch)),
  ]);
}

/** `definition` with every state replaced by `replace(name, state)`, in Parallel branches too (their Branches rebuilt first). */
export function withStatesReplaced<T extends AslDefinition>(definition: T, replace: (name: string, state: AslState) => AslState): T {
  const states = Object.fromEntries(
    Object.entries(definition.States).map(([name, state]) => {
      const branches = branchesOf(state);
      const rebuilt = branches.length > 0 ? { ...state, Branches: branches.map((branch) => withStatesReplaced(branch, replace)) } : state;
      return [name, replace(name, rebuilt)];
    }),
  );
  return { ...definition, States: states };
}

function branchesOf(state: AslState): AslDefinition[] {
  return state.Type === 'Parallel' && Array.isArray(state.Branches) ? (state.Branches as AslDefinition[]) : [];
}

/** The context object (`$$`) of one execution, as Step Functions exposes it. */
export interface ExecutionContext {
  Execution: { Id: string; Name: string; StartTime: string; Input?: Json; RoleArn?: string; [k: string]: Json | undefined };
  StateMachine: { Id: string; Name: string };
  [field: string]: unknown;
}

/** Where the runner pretends to live: every ARN it makes up uses these. */
export interface LocalArnScope {
  readonly partition: string;
  readonly region: string;
  readonly account: string;
}
export const LOCAL_ARN_SCOPE: LocalArnScope = { partition: 'aws', region: 'us-east-1', account: '000000000000' };

function stateMachineArn(scope: LocalArnScope, name: string): string {
  return `arn:${scope.partition}:states:${scope.region}:${scope.account}:stateMachine:${name}`;
}

function executionArn(scope: LocalArnScope, stateMachineName: string, executionName: string): string {
  return `arn:${scope.partition}:states:${scope.region}:${scope.account}:execution:${stateMachineName}:${executionName}`;
}

export function executionContext(scope: LocalArnScope, stateMachineName: string, executionName: string, input: Json): ExecutionContext {
  return {
    Execution: {
      Id: executionArn(scope, stateMachineName, executionName),
      Name: executionName,
      StartTime: new Date().toISOString(),
      Input: input,
    },
    StateMachine: { Id: stateMachineArn(scope, stateMachineName), Name: stateMachineName },
  };
}

/**
 * A UUID-shaped id derived from the given parts. Step Functions uses random UUIDs for map runs and
 * child executions; deriving them instead keeps a repeated local run of the same execution name
 * writing to the same keys (no duplicated map results).
 */
export function deterministicUuid(...parts: string[]): string {
  const hex = createHash('sha256').update(parts.join('\u0000')).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Evaluate a JSONPath payload template against `input` and the context object. The template is a
 * part of the definition, validated with it (local-execution.ts): the one-state machine that
 * evaluates it is not validated again (a validation compiles the schema anew, 0.1-0.5 s of CPU,
 * and a map state evaluates its ItemSelector once per item).
 */
export async function evaluatePayloadTemplate(template: Json, input: Json, context: Record<string, unknown>): Promise<Json> {
  const machine = new StateMachine(
    // The library's definition type is structural; our Json type is compatible at runtime.
    { StartAt: 'Evaluate', States: { Evaluate: { Type: 'Pass', Parameters: template, End: true } } } as never,
    { validationOptions: { noValidate: true } },
  );
  return (await machine.run(input as never, { context: context as never }).result) as Json;
}

/** Evaluate `value` when it is given directly, or its `<field>Path` variant against the input. */
export async function numberOrPath(state: Record<string, unknown>, field: string, input: Json, context: Record<string, unknown>): Promise<number | undefined> {
  if (typeof state[field] === 'number') return state[field] as number;
  const path = state[`${field}Path`];
  if (typeof path !== 'string') return undefined;
  const value = await evaluatePayloadTemplate({ 'value.$': path }, input, context);
  const resolved = (value as JsonObject).value;
  if (typeof resolved !== 'number') throw namedError('States.Runtime', `${field}Path ${path} did not resolve to a number`);
  return resolved;
}

/** An Error whose `name` is what Retry/Catch `ErrorEquals` match against. */
export function namedError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

/** The error that made a library execution fail (it wraps the state's error in ExecutionError). */
export function rootCause(error: unknown): { Error: string; Cause: string } {
  let current = error as { name?: string; message?: string; cause?: unknown };
  while (current && current.name === 'ExecutionError' && current.cause) current = current.cause as typeof current;
  return { Error: current?.name ?? 'Error', Cause: current?.message ?? String(error) };
}
