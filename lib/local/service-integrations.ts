/**
 * Local stand-ins for the service integrations the definition uses, shaped like the real ones so
 * that Parameters, OutputPath (`$.Payload`), Retry and Catch in the definition work unchanged:
 * - `arn:aws:states:::lambda:invoke`: input `{ FunctionName, Payload }`, result
 *   `{ Payload, StatusCode: 200, ExecutedVersion }`; a function error surfaces under the error's
 *   name with the JSON cause Lambda reports (`errorType`, `errorMessage`, `trace`).
 * - a plain Lambda ARN as Resource: input and result are the function's own.
 * - `arn:aws:states:::aws-sdk:s3:putObject` against the local S3 server (JSON bodies serialized,
 *   as the SDK integration does).
 * https://docs.aws.amazon.com/step-functions/latest/dg/connect-lambda.html
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AslDefinition, AslState, Json, JsonObject, namedError } from './asl';
import type { LocalTaskHandler, LocalTaskHandlers } from './distributed-map';

/** A function the definition can invoke, run in-process or in a worker pool. */
export type LocalFunction = (payload: Json) => Promise<Json>;

/** Lambda function ARNs (as they appear in the resolved definition) to local implementations. */
export type LocalFunctions = ReadonlyMap<string, LocalFunction>;

export const LAMBDA_INVOKE = 'arn:aws:states:::lambda:invoke';
export const S3_PUT_OBJECT = 'arn:aws:states:::aws-sdk:s3:putObject';

export interface ServiceIntegrationDeps {
  readonly functions: LocalFunctions;
  readonly s3: S3Client;
}

/** Local handlers for every service-integration Task of `definition` (nested ones excluded). */
export function serviceIntegrationHandlers(definition: AslDefinition, deps: ServiceIntegrationDeps): LocalTaskHandlers {
  const handlers: LocalTaskHandlers = {};
  for (const [name, state] of Object.entries(definition.States)) {
    const handler = state.Type === 'Task' ? integrationFor(name, state, deps) : undefined;
    if (handler) handlers[name] = handler;
  }
  return handlers;
}

function integrationFor(stateName: string, state: AslState, deps: ServiceIntegrationDeps): LocalTaskHandler | undefined {
  const resource = state.Resource ?? '';
  if (resource === LAMBDA_INVOKE) {
    return async (input) => {
      const { FunctionName, Payload } = input as JsonObject;
      const result = await invoke(deps.functions, String(FunctionName), Payload ?? null, stateName);
      return { Payload: result, StatusCode: 200, ExecutedVersion: '$LATEST' };
    };
  }
  if (/^arn:[^:]+:lambda:/.test(resource)) {
    return (input) => invoke(deps.functions, resource, input, stateName);
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

async function invoke(functions: LocalFunctions, functionName: string, payload: Json, stateName: string): Promise<Json> {
  // FunctionName may carry a version or alias suffix (`arn:...:function:name:$LATEST`).
  const fn = functions.get(functionName) ?? functions.get(functionName.split(':').slice(0, 7).join(':'));
  if (!fn) {
    throw namedError('Lambda.ResourceNotFoundException', `${stateName}: no local handler for function ${functionName}`);
  }
  try {
    return await fn(payload);
  } catch (error) {
    const err = error as Error;
    throw namedError(
      err.name || 'Error',
      JSON.stringify({ errorType: err.name || 'Error', errorMessage: err.message, trace: (err.stack ?? '').split('\n') }),
    );
  }
}
