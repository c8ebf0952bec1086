/**
 * Run a resolved state machine definition locally: Distributed Map states become Tasks run by
 * the emulation in `distributed-map.ts`, service-integration Tasks call local functions and the
 * local S3 server (in Parallel branches too), everything else is aws-local-stepfunctions as is. Lambda Tasks' TimeoutSeconds
 * is kept by the functions, from when a worker takes the invocation, not by the library
 * (`withLocalTaskTimeouts`).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { StateMachine } from 'aws-local-stepfunctions';
import { DEFAULT_STACK_NAME } from '../../lambdas/contracts/state-machine';
import { AslDefinition, executionContext, Json, LOCAL_ARN_SCOPE, LocalArnScope, rootCause, statesOf, withStatesReplaced } from './asl';
import { distributedMapHandler, distributedMapStandIn, isDistributedMap, LocalTaskHandlers, MapRunEvent } from './distributed-map';
import { errorsNeverUnhandled, LocalFunctions, serviceIntegrationHandlers, withLocalTaskTimeouts } from './service-integrations';

export interface LocalExecutionProps {
  readonly definition: AslDefinition;
  readonly functions: LocalFunctions;
  readonly s3: S3Client;
  /** Name of the state machine in made-up ARNs. @default DEFAULT_STACK_NAME */
  readonly stateMachineName?: string;
  readonly scope?: LocalArnScope;
  /** Milliseconds between retries, by state name (tests use 0). @default the definition's */
  readonly retryIntervalOverrides?: Record<string, number | number[]>;
  readonly onMapRunEvent?: (stateName: string, event: MapRunEvent) => void;
}

export type LocalExecutionResult =
  { status: 'SUCCEEDED'; executionArn: string; output: Json } | { status: 'FAILED'; executionArn: string; error: string; cause: string };

export async function runLocalExecution(props: LocalExecutionProps, executionName: string, input: Json): Promise<LocalExecutionResult> {
  const scope = props.scope ?? LOCAL_ARN_SCOPE;
  // The definition as synthesized, its Distributed Map processors included, is validated once
  // here; the machines built from it below are not validated again (each validation compiles the
  // schema anew: 0.1-0.5 s of CPU, paid at the start of every map state otherwise).
  new StateMachine(props.definition as never, { validationOptions: { checkArn: false } });
  const context = executionContext(scope, props.stateMachineName ?? DEFAULT_STACK_NAME, executionName, input);
  const handlers: LocalTaskHandlers = {};

  // Each Distributed Map, in a Parallel branch or not, becomes a Task whose handler runs it.
  for (const [name, state] of statesOf(props.definition)) {
    if (!isDistributedMap(state)) continue;
    const processor = state.ItemProcessor as AslDefinition;
    // The children run the processor with the library's Task clocks lifted; their handlers keep
    // the TimeoutSeconds of the processor as synthesized.
    handlers[name] = errorsNeverUnhandled(
      distributedMapHandler(
        name,
        { ...state, ItemProcessor: withLocalTaskTimeouts(processor) },
        {
          s3: props.s3,
          scope,
          processorValidated: true,
          context,
          taskHandlers: serviceIntegrationHandlers(processor, props),
          retryIntervalOverrides: props.retryIntervalOverrides,
          onEvent: (event) => props.onMapRunEvent?.(name, event),
        },
      ),
    );
  }
  const withStandIns = withStatesReplaced(props.definition, (_, state) => (isDistributedMap(state) ? distributedMapStandIn(state) : state));
  Object.assign(handlers, serviceIntegrationHandlers(withStandIns, props));
  const definition = withLocalTaskTimeouts(withStandIns);

  const machine = new StateMachine(definition as never, { validationOptions: { noValidate: true } });
  const execution = machine.run(input as never, {
    overrides: { taskResourceLocalHandlers: handlers as never, retryIntervalOverrides: props.retryIntervalOverrides },
    context: context as never,
  });
  try {
    const output = (await execution.result) as Json;
    return { status: 'SUCCEEDED', executionArn: context.Execution.Id, output };
  } catch (error) {
    const { Error, Cause } = rootCause(error);
    return { status: 'FAILED', executionArn: context.Execution.Id, error: Error, cause: Cause };
  }
}
