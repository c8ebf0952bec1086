/**
 * Local stand-ins for the service integrations the definition uses, shaped like the real ones so
 * that Parameters, OutputPath (`$.Payload`), Retry and Catch in the definition work unchanged:
 * - `arn:aws:states:::lambda:invoke`: input `{ FunctionName, Payload }`, result
 *   `{ Payload, StatusCode: 200, ExecutedVersion }`; a function error surfaces under the error's
 *   name with the JSON cause Lambda reports (`errorType`, `errorMessage`, `trace`).
 * - a plain Lambda ARN as Resource: input and result are the function's own.
 * - For both, the Task's TimeoutSeconds goes to the function, which keeps that time from when the
 *   invocation starts running (a worker takes it) and fails it with `States.Timeout`; the
 *   definition the library runs has the clock of these Tasks lifted (`withLocalTaskTimeouts`).
 * - `arn:aws:states:::aws-sdk:s3:putObject` against the local S3 server (JSON bodies serialized,
 *   as the SDK integration does).
 * https://docs.aws.amazon.com/step-functions/latest/dg/connect-lambda.html
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AslDefinition, AslState, Json, JsonObject, namedError, statesOf, withStatesReplaced } from './asl';
import { LocalTaskHandler, LocalTaskHandlers, NO_LIBRARY_TIMEOUT_SECONDS } from './distributed-map';

/** What the Task state tells the function it invokes. */
export interface LocalFunctionOptions {
  /**
   * The Task's TimeoutSeconds, in milliseconds. The function counts it from when the invocation
   * starts running, never while it waits for a free worker, and then rejects with an error named
   * `States.Timeout`. @default no state timeout (a Task without TimeoutSeconds has none on AWS)
   */
  readonly timeoutMs?: number;
}

/** A function the definition can invoke, run in-process or in a worker pool. */
export type LocalFunction = (payload: Json, options?: LocalFunctionOptions) => Promise<Json>;

/** Lambda function ARNs (as they appear in the resolved definition) to local implementations. */
export type LocalFunctions = ReadonlyMap<string, LocalFunction>;

const LAMBDA_INVOKE = 'arn:aws:states:::lambda:invoke';
const S3_PUT_OBJECT = 'arn:aws:states:::aws-sdk:s3:putObject';

export interface ServiceIntegrationDeps {
  readonly functions: LocalFunctions;
  readonly s3: S3Client;
}

/**
 * Local handlers for every service-integration Task of `definition`, those in Parallel branches
 * included (the library hands a branch's machine the same handlers, by state name); a Map's
 * processor gets its own.
 */
export function serviceIntegrationHandlers(definition: AslDefinition, deps: ServiceIntegrationDeps): LocalTaskHandlers {
  const handlers: LocalTaskHandlers = {};
  for (const [name, state] of statesOf(definition)) {
    const handler = state.Type === 'Task' ? integrationFor(name, state, deps) : undefined;
    if (handler) handlers[name] = errorsNeverUnhandled(handler);
  }
  return handlers;
}

/**
 * `handler`, its failures marked as handled (the caller still receives them). The runner may leave
 * a Task's promise behind, failing the state on its own account after it started the handler (its
 * Task clock; on a Node without `Promise.withResolvers`, at once); what that handler ends with later
 * (the worker pool closed under it) must not end the process as an unhandled rejection.
 */
export function errorsNeverUnhandled(handler: LocalTaskHandler): LocalTaskHandler {
  return (input) => {
    const result = handler(input);
    result.catch(() => undefined);
    return result;
  };
}

/**
 * `definition` as aws-local-stepfunctions runs it (in Parallel branches too; a Map's processor is
 * given its own): every Lambda Task gets
 * a TimeoutSeconds the library never reaches, as `distributedMapStandIn` does for the Map. The
 * library's clock starts when the Task does, so it would count the wait for a free worker, and
 * without TimeoutSeconds it applies 60 s where Step Functions has no limit. The Task's own
 * TimeoutSeconds is kept by the function instead (`serviceIntegrationHandlers` reads it from the
 * definition as given). A TimeoutSecondsPath is left to the library: the pipeline uses none.
 */
export function withLocalTaskTimeouts<T extends AslDefinition>(definition: T): T {
  return withStatesReplaced(definition, (_, state) =>
    invokesLambda(state) && state.TimeoutSecondsPath === undefined ? { ...state, TimeoutSeconds: NO_LIBRARY_TIMEOUT_SECONDS } : state,
  );
}

function invokesLambda(state: AslState): boolean {
  const resource = state.Resource ?? '';
  return state.Type === 'Task' && (resource === LAMBDA_INVOKE || /^arn:[^:]+:lambda:/.test(resource));
}

function integrationFor(stateName: string, state: AslState, deps: ServiceIntegrationDeps): LocalTaskHandler | undefined {
  const resource = state.Resource ?? '';
  const options: LocalFunctionOptions = typeof state.TimeoutSeconds === 'number' ? { timeoutMs: state.TimeoutSeconds * 1000 } : {};
  if (resource === LAMBDA_INVOKE) {
    return async (input) => {
      const { FunctionName, Payload } = input as JsonObject;
      const result = await invoke(deps.functions, String(FunctionName), Payload ?? null, stateName, options);
      return { Payload: result, StatusCode: 200, ExecutedVersion: '$LATEST' };
    };
  }
  if (/^arn:[^:]+:lambda:/.test(resource)) {
    return (input) => invoke(deps.functions, resource, input, stateName, options);
  }
  if (resource === S3_PUT_OBJECT) {
    return async (input) => {
      const { Bucket, Key, Body, ContentType } = input as JsonObject;
      const body = typeof Body === 'string' ? Body : JSON.stringify(Body ?? '');
      try {
        const out = await deps.s3.send(
          new PutObjectCommand({ Bucket: String(Bucket), Key: String(Key), Body: body, ContentType: ContentType ? String(ContentType) : undefined }),
        );
        return { ETag: out.ETag ?? '' };
      } catch (error) {
        // The SDK integrations name errors `S3.<Exception>`.
        throw namedError(`S3.${(error as Error).name}`, (error as Error).message);
      }
    };
  }
  return undefined;
}

async function invoke(functions: LocalFunctions, functionName: string, payload: Json, stateName: string, options: LocalFunctionOptions): Promise<Json> {
  // FunctionName may carry a version or alias suffix (`arn:...:function:name:$LATEST`).
  const fn = functions.get(functionName) ?? functions.get(functionName.split(':').slice(0, 7).join(':'));
  if (!fn) {
    throw namedError('Lambda.ResourceNotFoundException', `${stateName}: no local handler for function ${functionName}`);
  }
  try {
    return await fn(payload, options);
  } catch (error) {
    const err = error as Error;
    // `States.` errors are Step Functions' own (the Task's timeout), not the function's: they
    // carry no Lambda error JSON.
    if (err.name?.startsWith('States.')) throw namedError(err.name, err.message);
    throw namedError(err.name || 'Error', JSON.stringify({ errorType: err.name || 'Error', errorMessage: err.message, trace: (err.stack ?? '').split('\n') }));
  }
}
