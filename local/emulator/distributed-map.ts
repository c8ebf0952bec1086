/**
 * Distributed Map emulation for aws-local-stepfunctions, which only runs inline Map states.
 *
 * The runner replaces each DISTRIBUTED Map state by a Task whose local handler is built here.
 * The Task keeps InputPath, ResultSelector, ResultPath, OutputPath, Retry and Catch, so the
 * library still applies them; the handler implements the Map run itself, after the AWS docs:
 * - ItemReader `arn:aws:states:::s3:listObjectsV2`: every page, each object as
 *   `{ Key, Size, ETag, LastModified, StorageClass }` (ReaderConfig.MaxItems honoured);
 *   `arn:aws:states:::s3:getObject` with `ReaderConfig.InputType` JSON (the object is one JSON
 *   array, its elements the items) or JSONL (one item per line), MaxItems honoured, anything
 *   else failing the state with `States.ItemReaderFailed` as AWS does; without an ItemReader,
 *   the array at ItemsPath.
 * - ItemSelector per item (`$$.Map.Item.Index/Value`), then ItemBatcher: `{ Items, BatchInput }`
 *   cut by MaxItemsPerBatch and MaxInputBytesPerBatch (256 KiB at most, the payload limit).
 * - MaxConcurrency bounds the child executions in flight (0: unbounded).
 * - Child executions run the ItemProcessor as their own state machine, with its Retry/Catch.
 * - ToleratedFailureCount/Percentage (counted in items: a failed batch fails all its items);
 *   exceeding them stops new children and fails the state with
 *   `States.ExceedToleratedFailureThreshold`, after the results were written.
 * - ResultWriter `arn:aws:states:::s3:putObject`: `<Prefix>/<mapRunId>/manifest.json` plus
 *   `SUCCEEDED_0.json` / `FAILED_0.json` as WriterConfig says (`resultFormat`: Transformation
 *   NONE records, or COMPACT / FLATTEN outputs; OutputType JSON or JSONL), and the state result
 *   `{ MapRunArn, ResultWriterDetails: { Bucket, Key } }`. Without a ResultWriter the result is
 *   the array of child outputs, as in AWS.
 *
 * https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html
 * https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html
 */
import { GetObjectCommand, paginateListObjectsV2, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { StateMachine } from 'aws-local-stepfunctions';
import {
  AslDefinition,
  AslState,
  deterministicUuid,
  evaluatePayloadTemplate,
  ExecutionContext,
  Json,
  JsonObject,
  LocalArnScope,
  namedError,
  numberOrPath,
  rootCause,
} from './asl';

/** Step Functions' cap on a state's input/output, which also caps a batch. */
const MAX_PAYLOAD_BYTES = 256 * 1024;
/** AWS reads at most 1,000 keys per ListObjectsV2 page; asking for it explicitly keeps s3rver the same. */
const LIST_PAGE_SIZE = 1000;

export type LocalTaskHandler = (input: Json) => Promise<Json>;
export type LocalTaskHandlers = Record<string, LocalTaskHandler>;

/** What the map run reports while it runs (for progress bars; never needed for correctness). */
export type MapRunEvent =
  | { type: 'started'; mapRunArn: string; totalItems: number; totalBatches: number }
  | { type: 'childSucceeded'; items: number; output: Json }
  | { type: 'childFailed'; items: number; error: string; cause: string }
  | { type: 'finished'; mapRunArn: string; result: Json };

export interface DistributedMapDeps {
  readonly s3: S3Client;
  readonly scope: LocalArnScope;
  /** Context object of the parent execution. */
  readonly context: ExecutionContext;
  /** Local handlers for Task states inside the ItemProcessor, by state name. */
  readonly taskHandlers: LocalTaskHandlers;
  /** Milliseconds to wait between retries of child states (tests shorten them). @default the definition's */
  readonly retryIntervalOverrides?: Record<string, number | number[]>;
  readonly onEvent?: (event: MapRunEvent) => void;
  /** The ItemProcessor was validated with the whole definition: its children are not validated again. @default false */
  readonly processorValidated?: boolean;
}

export interface ChildExecutionRecord {
  ExecutionArn: string;
  Input: string;
  InputDetails: { Included: boolean };
  Name: string;
  Output?: string;
  OutputDetails?: { Included: boolean };
  Error?: string;
  Cause?: string;
  RedriveCount: number;
  RedriveStatus: string;
  RedriveStatusReason: string;
  StartDate: string;
  StateMachineArn: string;
  Status: 'SUCCEEDED' | 'FAILED';
  StopDate: string;
}

export function isDistributedMap(state: AslState): boolean {
  const processor = (state.ItemProcessor ?? {}) as { ProcessorConfig?: { Mode?: string } };
  return state.Type === 'Map' && processor.ProcessorConfig?.Mode === 'DISTRIBUTED';
}

/**
 * TimeoutSeconds that keeps aws-local-stepfunctions' own Task clock out of the way where Step
 * Functions has none or the runner keeps time itself. 20 days: the longest a timer can wait
 * (2^31 ms) with margin.
 */
export const NO_LIBRARY_TIMEOUT_SECONDS = 20 * 24 * 3600;

/** The Task that stands in for a Distributed Map state: same wiring, the run happens in the handler. */
export function distributedMapStandIn(state: AslState): AslState {
  const kept: AslState = { Type: 'Task', Resource: 'arn:aws:states:::local:distributedMap' };
  for (const field of ['Comment', 'InputPath', 'ResultSelector', 'ResultPath', 'OutputPath', 'Retry', 'Catch', 'Next', 'End']) {
    if (field in state) kept[field] = state[field];
  }
  // The library's Task default (60 s) would cut a Map Run short; Step Functions has no such limit.
  kept.TimeoutSeconds = NO_LIBRARY_TIMEOUT_SECONDS;
  return kept;
}

/** Build the local handler that runs one Distributed Map state. */
export function distributedMapHandler(stateName: string, state: AslState, deps: DistributedMapDeps): LocalTaskHandler {
  return (input) => new MapRun(stateName, state, deps).run(input);
}

class MapRun {
  private readonly label: string;
  private readonly mapRunId: string;
  private readonly mapRunArn: string;
  private readonly childMachineArn: string;
  private childStateMachine: StateMachine | undefined;

  constructor(
    private readonly stateName: string,
    private readonly state: AslState,
    private readonly deps: DistributedMapDeps,
  ) {
    const { scope, context } = deps;
    this.label = typeof state.Label === 'string' ? state.Label : stateName;
    this.mapRunId = deterministicUuid(context.Execution.Id, stateName);
    const machine = `${context.StateMachine.Name}/${this.label}`;
    this.mapRunArn = `arn:${scope.partition}:states:${scope.region}:${scope.account}:mapRun:${machine}:${this.mapRunId}`;
    this.childMachineArn = `arn:${scope.partition}:states:${scope.region}:${scope.account}:stateMachine:${machine}`;
  }

  async run(input: Json): Promise<Json> {
    const ctx = this.deps.context;
    const items = await this.selectItems(await this.readItems(input), input);
    const batches = await this.batch(items, input);
    this.deps.onEvent?.({ type: 'started', mapRunArn: this.mapRunArn, totalItems: items.length, totalBatches: batches.length });

    const maxConcurrency = (await numberOrPath(this.state, 'MaxConcurrency', input, ctx)) ?? 0;
    const toleratedCount = await numberOrPath(this.state, 'ToleratedFailureCount', input, ctx);
    const toleratedPercentage = await numberOrPath(this.state, 'ToleratedFailurePercentage', input, ctx);
    const tolerance = new FailureTolerance(items.length, toleratedCount, toleratedPercentage);

    const records: (ChildExecutionRecord | undefined)[] = new Array(batches.length);
    let next = 0;
    const worker = async () => {
      while (next < batches.length && !tolerance.exceeded) {
        const index = next++;
        records[index] = await this.runChild(index, batches[index]);
        const itemCount = batches[index].count;
        const record = records[index]!;
        if (record.Status === 'FAILED') {
          tolerance.fail(itemCount);
          this.deps.onEvent?.({ type: 'childFailed', items: itemCount, error: record.Error ?? '', cause: record.Cause ?? '' });
        } else {
          this.deps.onEvent?.({ type: 'childSucceeded', items: itemCount, output: JSON.parse(record.Output ?? 'null') });
        }
      }
    };
    const lanes = maxConcurrency > 0 ? Math.min(maxConcurrency, batches.length) : batches.length;
    await Promise.all(Array.from({ length: lanes }, worker));

    const finished = records.filter((r): r is ChildExecutionRecord => r !== undefined);
    const result = await this.writeResults(finished, input);
    this.deps.onEvent?.({ type: 'finished', mapRunArn: this.mapRunArn, result });
    if (tolerance.exceeded) {
      throw namedError(
        'States.ExceedToleratedFailureThreshold',
        `The specified tolerated failure threshold was exceeded: ${tolerance.describe()} (map run ${this.mapRunArn})`,
      );
    }
    return result;
  }

  private async readItems(input: Json): Promise<Json[]> {
    const ctx = this.deps.context;
    const reader = this.state.ItemReader as { Resource?: string; Parameters?: Json; ReaderConfig?: Record<string, unknown> } | undefined;
    if (!reader) {
      const value = await evaluatePayloadTemplate({ 'items.$': (this.state.ItemsPath as string) ?? '$' }, input, ctx);
      const items = (value as JsonObject).items;
      if (!Array.isArray(items)) throw namedError('States.Runtime', `${this.stateName}: ItemsPath does not select an array`);
      return items;
    }
    const params = (await evaluatePayloadTemplate(reader.Parameters ?? {}, input, ctx)) as JsonObject;
    const maxItems = reader.ReaderConfig ? await numberOrPath(reader.ReaderConfig, 'MaxItems', input, ctx) : undefined;
    if (reader.Resource?.endsWith(':s3:getObject')) return this.readObjectItems(params, String(reader.ReaderConfig?.InputType ?? ''), maxItems);
    if (!reader.Resource?.endsWith(':s3:listObjectsV2')) {
      throw namedError(
        'States.Runtime',
        `${this.stateName}: the local runner emulates the s3:listObjectsV2 and s3:getObject ItemReaders, not ${reader.Resource}`,
      );
    }
    const objects: Json[] = [];
    try {
      const pages = paginateListObjectsV2(
        { client: this.deps.s3, pageSize: LIST_PAGE_SIZE },
        { Bucket: params.Bucket as string, Prefix: (params.Prefix as string | undefined) ?? '' },
      );
      for await (const page of pages) {
        for (const object of page.Contents ?? []) objects.push(listedObject(object));
        if (maxItems !== undefined && objects.length >= maxItems) break;
      }
    } catch (error) {
      throw namedError('States.ItemReaderFailed', `listing s3://${params.Bucket}/${params.Prefix ?? ''} failed: ${(error as Error).message}`);
    }
    return maxItems ? objects.slice(0, maxItems) : objects;
  }

  /** The items of one S3 object: a JSON array, or JSON Lines (InputType JSON / JSONL). */
  private async readObjectItems(params: JsonObject, inputType: string, maxItems: number | undefined): Promise<Json[]> {
    const where = `s3://${params.Bucket}/${params.Key}`;
    if (inputType !== 'JSON' && inputType !== 'JSONL') {
      throw namedError('States.Runtime', `${this.stateName}: the local runner emulates ReaderConfig.InputType JSON and JSONL, not ${inputType || '(none)'}`);
    }
    let text: string;
    try {
      const response = await this.deps.s3.send(new GetObjectCommand({ Bucket: params.Bucket as string, Key: params.Key as string }));
      text = await response.Body!.transformToString('utf-8');
    } catch (error) {
      throw namedError('States.ItemReaderFailed', `reading ${where} failed: ${(error as Error).message}`);
    }
    let items: Json[];
    try {
      if (inputType === 'JSON') {
        const parsed = JSON.parse(text) as Json;
        if (!Array.isArray(parsed)) throw new Error('the object is not a JSON array');
        items = parsed;
      } else {
        items = text
          .split('\n')
          .filter((line) => line.trim() !== '')
          .map((line) => JSON.parse(line) as Json);
      }
    } catch (error) {
      throw namedError('States.ItemReaderFailed', `${where} is not valid ${inputType}: ${(error as Error).message}`);
    }
    return maxItems ? items.slice(0, maxItems) : items;
  }

  private async selectItems(items: Json[], input: Json): Promise<Json[]> {
    // `Parameters` is the pre-2022 name of ItemSelector.
    const selector = (this.state.ItemSelector ?? this.state.Parameters) as Json | undefined;
    if (selector === undefined) return items;
    const selected: Json[] = [];
    for (let index = 0; index < items.length; index++) {
      const context = { ...this.deps.context, Map: { Item: { Index: index, Value: items[index] } } };
      selected.push(await evaluatePayloadTemplate(selector, input, context));
    }
    return selected;
  }

  private async batch(items: Json[], input: Json): Promise<{ payload: Json; count: number }[]> {
    const batcher = this.state.ItemBatcher as (Record<string, unknown> & { BatchInput?: Json }) | undefined;
    if (!batcher) return items.map((item) => ({ payload: item, count: 1 }));
    const ctx = this.deps.context;
    const maxItems = (await numberOrPath(batcher, 'MaxItemsPerBatch', input, ctx)) ?? Number.POSITIVE_INFINITY;
    const maxBytes = Math.min((await numberOrPath(batcher, 'MaxInputBytesPerBatch', input, ctx)) ?? MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES);
    const batchInput = batcher.BatchInput === undefined ? undefined : await evaluatePayloadTemplate(batcher.BatchInput, input, ctx);
    const envelope = (batchItems: Json[]): Json => (batchInput === undefined ? { Items: batchItems } : { Items: batchItems, BatchInput: batchInput });
    const emptyBytes = byteLength(envelope([]));

    const batches: { payload: Json; count: number }[] = [];
    let current: Json[] = [];
    let currentBytes = emptyBytes;
    for (const item of items) {
      // An item costs its JSON plus the comma that separates it from the previous one.
      const itemBytes = byteLength(item) + (current.length > 0 ? 1 : 0);
      if (emptyBytes + byteLength(item) > maxBytes) {
        throw namedError('States.Runtime', `${this.stateName}: one item alone exceeds MaxInputBytesPerBatch (${maxBytes} bytes)`);
      }
      if (current.length > 0 && (current.length >= maxItems || currentBytes + itemBytes > maxBytes)) {
        batches.push({ payload: envelope(current), count: current.length });
        current = [];
        currentBytes = emptyBytes;
      }
      currentBytes += byteLength(item) + (current.length > 0 ? 1 : 0);
      current.push(item);
    }
    if (current.length > 0) batches.push({ payload: envelope(current), count: current.length });
    return batches;
  }

  /** The ItemProcessor as a state machine, validated once (unless it already was) and run for every batch. */
  private childMachine(): StateMachine {
    if (!this.childStateMachine) {
      const { ProcessorConfig: _config, ...definition } = this.state.ItemProcessor as AslDefinition & { ProcessorConfig?: unknown };
      const validationOptions = this.deps.processorValidated ? { noValidate: true } : { checkArn: false };
      this.childStateMachine = new StateMachine(definition as never, { validationOptions });
    }
    return this.childStateMachine;
  }

  private async runChild(index: number, batch: { payload: Json }): Promise<ChildExecutionRecord> {
    const name = deterministicUuid(this.mapRunId, String(index));
    const arn = `${this.childMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
    const startDate = new Date().toISOString();
    const context = {
      Execution: { Id: arn, Name: name, StartTime: startDate, Input: batch.payload },
      StateMachine: { Id: this.childMachineArn, Name: `${this.deps.context.StateMachine.Name}/${this.label}` },
    };
    const base = {
      ExecutionArn: arn,
      Input: JSON.stringify(batch.payload),
      InputDetails: { Included: true },
      Name: name,
      RedriveCount: 0,
      StartDate: startDate,
      StateMachineArn: this.childMachineArn,
    };
    try {
      const execution = this.childMachine().run(batch.payload as never, {
        overrides: { taskResourceLocalHandlers: this.deps.taskHandlers as never, retryIntervalOverrides: this.deps.retryIntervalOverrides },
        context: context as never,
      });
      const output = await execution.result;
      return {
        ...base,
        Output: JSON.stringify(output),
        OutputDetails: { Included: true },
        RedriveStatus: 'NOT_REDRIVABLE',
        RedriveStatusReason: 'Execution is SUCCEEDED and cannot be redriven',
        Status: 'SUCCEEDED',
        StopDate: new Date().toISOString(),
      };
    } catch (error) {
      const { Error: name, Cause } = rootCause(error);
      return {
        ...base,
        Error: name,
        Cause,
        RedriveStatus: 'REDRIVABLE_BY_MAP_RUN',
        RedriveStatusReason: '',
        Status: 'FAILED',
        StopDate: new Date().toISOString(),
      };
    }
  }

  private async writeResults(records: ChildExecutionRecord[], input: Json): Promise<Json> {
    const writer = this.state.ResultWriter as { Resource?: string; Parameters?: Json; WriterConfig?: WriterConfig } | undefined;
    if (!writer) {
      // Without ResultWriter the outputs come back in item order, like an inline Map.
      return records.map((record) => (record.Output ? JSON.parse(record.Output) : null));
    }
    const format = resultFormat(this.stateName, writer.WriterConfig);
    const params = (await evaluatePayloadTemplate(writer.Parameters ?? {}, input, this.deps.context)) as JsonObject;
    const bucket = params.Bucket as string;
    const prefix = typeof params.Prefix === 'string' && params.Prefix.length > 0 ? `${params.Prefix.replace(/\/+$/, '')}/` : '';
    const root = `${prefix}${this.mapRunId}/`;
    const resultFiles: Record<'FAILED' | 'PENDING' | 'SUCCEEDED', { Key: string; Size: number }[]> = { FAILED: [], PENDING: [], SUCCEEDED: [] };
    try {
      for (const status of ['SUCCEEDED', 'FAILED'] as const) {
        const ofStatus = records.filter((r) => r.Status === status);
        if (ofStatus.length === 0) continue;
        const key = `${root}${status}_0.json`;
        const body = format(ofStatus);
        await this.put(bucket, key, body);
        resultFiles[status].push({ Key: key, Size: Buffer.byteLength(body) });
      }
      const manifestKey = `${root}manifest.json`;
      await this.put(bucket, manifestKey, JSON.stringify({ DestinationBucket: bucket, MapRunArn: this.mapRunArn, ResultFiles: resultFiles }));
      return { MapRunArn: this.mapRunArn, ResultWriterDetails: { Bucket: bucket, Key: manifestKey } };
    } catch (error) {
      throw namedError('States.ResultWriterFailed', `writing map results to s3://${bucket}/${root} failed: ${(error as Error).message}`);
    }
  }

  private async put(bucket: string, key: string, body: string): Promise<void> {
    await this.deps.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: 'application/json' }));
  }
}

interface WriterConfig {
  Transformation?: string;
  OutputType?: string;
}

/**
 * How a ResultWriter's WriterConfig writes a file of child records: Transformation NONE keeps the
 * records; COMPACT writes a succeeded child's output alone, and FLATTEN also spreads an output
 * that is an array into its elements; a failed child stays a whole record under either, as with
 * NONE. OutputType JSON writes one JSON array, JSONL one entry per line.
 * https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html
 */
export function resultFormat(stateName: string, config: WriterConfig | undefined): (records: readonly ChildExecutionRecord[]) => string {
  const transformation = config?.Transformation ?? 'NONE';
  const outputType = config?.OutputType ?? 'JSON';
  if (!['NONE', 'COMPACT', 'FLATTEN'].includes(transformation) || !['JSON', 'JSONL'].includes(outputType)) {
    throw namedError(
      'States.Runtime',
      `${stateName}: WriterConfig Transformation ${transformation} or OutputType ${outputType} is not one Step Functions knows`,
    );
  }
  const entriesOf = (record: ChildExecutionRecord): Json[] => {
    if (transformation === 'NONE' || record.Status !== 'SUCCEEDED') return [record as unknown as Json];
    const output = JSON.parse(record.Output ?? 'null') as Json;
    return transformation === 'FLATTEN' && Array.isArray(output) ? output : [output];
  };
  return (records) => {
    const entries = records.flatMap(entriesOf);
    return outputType === 'JSONL' ? entries.map((entry) => JSON.stringify(entry)).join('\n') : JSON.stringify(entries);
  };
}

/** Tolerated failures, counted in items: AWS fails when either threshold is exceeded (default 0). */
class FailureTolerance {
  private failedItems = 0;
  constructor(
    private readonly totalItems: number,
    private readonly count: number | undefined,
    private readonly percentage: number | undefined,
  ) {}

  fail(items: number): void {
    this.failedItems += items;
  }

  get exceeded(): boolean {
    if (this.failedItems === 0) return false;
    const countExceeded = this.count === undefined ? this.percentage === undefined : this.failedItems > this.count;
    const percent = (100 * this.failedItems) / Math.max(1, this.totalItems);
    const percentExceeded = this.percentage === undefined ? this.count === undefined : percent > this.percentage;
    return countExceeded || percentExceeded;
  }

  describe(): string {
    const limits = [
      this.count !== undefined ? `ToleratedFailureCount ${this.count}` : undefined,
      this.percentage !== undefined ? `ToleratedFailurePercentage ${this.percentage}` : undefined,
    ].filter(Boolean);
    return `${this.failedItems} of ${this.totalItems} items failed (${limits.join(', ') || 'no failure tolerated'})`;
  }
}

function listedObject(object: { Key?: string; Size?: number; ETag?: string; LastModified?: Date; StorageClass?: string }): Json {
  return {
    Key: object.Key ?? '',
    Size: object.Size ?? 0,
    ETag: object.ETag ?? '',
    LastModified: object.LastModified ? object.LastModified.toISOString() : '',
    StorageClass: object.StorageClass ?? 'STANDARD',
  };
}

function byteLength(value: Json): number {
  return Buffer.byteLength(JSON.stringify(value));
}
