/**
 * Reads what a Distributed Map's ResultWriter exported, as AWS Step Functions writes it
 * (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html):
 *
 *   <prefix>/<mapRunId>/manifest.json
 *     { DestinationBucket, MapRunArn, ResultFiles: { SUCCEEDED: [{Key, Size}], FAILED: [...], PENDING: [...] } }
 *   <prefix>/<mapRunId>/SUCCEEDED_0.json, FAILED_0.json, PENDING_0.json ...
 *     a JSON array of child execution records { ExecutionArn, Name, Status, Input, Output,
 *     Error, Cause, ... } whose Input and Output are JSON *strings*.
 *
 * ResultWriterV2's `WriterConfig` changes the files: `OutputType: JSONL` writes one record per
 * line, and `Transformation: COMPACT | FLATTEN` writes the children's outputs alone (parsed JSON,
 * no metadata) for succeeded executions while failed ones stay full records. All of these are
 * accepted: a file is parsed as a JSON array or, failing that, as JSON lines, and each entry is
 * read as a full record when it has the record fields, or as a bare output otherwise.
 *
 * The result is one `BatchOutcome` per child execution: a featurize summary to aggregate, or a
 * failed batch with its error and, when the input was included, the keys it held, so that no
 * image goes unaccounted for. A succeeded child's input is not read (COMPACT leaves it out; in a
 * full record it is skipped): its keys are in its batch record (`BatchRecordSchema`).
 */
import { z } from 'zod';
import { FeaturizeBatchSummarySchema, type FeaturizeBatchSummary } from '../contracts/events';

const ResultFileSchema = z.object({ Key: z.string().min(1), Size: z.number().optional() }).passthrough();

const ResultWriterManifestSchema = z
  .object({
    DestinationBucket: z.string().min(1),
    MapRunArn: z.string().optional(),
    ResultFiles: z
      .object({
        SUCCEEDED: z.array(ResultFileSchema).optional(),
        FAILED: z.array(ResultFileSchema).optional(),
        PENDING: z.array(ResultFileSchema).optional(),
      })
      .passthrough(),
  })
  .passthrough();
export type ResultWriterManifest = z.infer<typeof ResultWriterManifestSchema>;

/** Thrown when the manifest or a result file cannot be read as ResultWriter output at all. */
export class MalformedMapResultError extends Error {
  override readonly name = 'MalformedMapResultError';
}

export type ResultStatus = 'SUCCEEDED' | 'FAILED' | 'PENDING';
const RESULT_STATUSES: readonly ResultStatus[] = ['SUCCEEDED', 'FAILED', 'PENDING'];

export interface SucceededBatch {
  kind: 'succeeded';
  executionArn?: string;
  /** Its keys are not read from the record: they are in the batch record beside its shard. */
  summary: FeaturizeBatchSummary;
}

export interface FailedBatch {
  kind: 'failed';
  /** FAILED, PENDING, or SUCCEEDED when its output could not be read as a summary. */
  status: ResultStatus;
  executionArn?: string;
  error: string;
  cause: string;
  /** Keys of the batch's input, when the record includes it; undefined means unknown. */
  inputKeys?: string[];
}

export type BatchOutcome = SucceededBatch | FailedBatch;

export function parseResultManifest(text: string): ResultWriterManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new MalformedMapResultError(`ResultWriter manifest is not JSON: ${(error as Error).message}`);
  }
  const parsed = ResultWriterManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((issue) => `${issue.path.join('.') || '(manifest)'}: ${issue.message}`);
    throw new MalformedMapResultError(`ResultWriter manifest does not have the documented shape: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** The entries of one result file: a JSON array (OutputType JSON) or JSON lines (JSONL). */
export function parseResultFile(text: string, key = 'result file'): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  if (trimmed.startsWith('[')) {
    try {
      const json = JSON.parse(trimmed) as unknown;
      if (Array.isArray(json)) return json;
    } catch {
      // Fall through: a JSONL file whose first record is an array output (FLATTEN) starts with '['.
    }
  }
  const entries: unknown[] = [];
  trimmed.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === '') return;
    try {
      entries.push(JSON.parse(line));
    } catch (error) {
      throw new MalformedMapResultError(`${key} line ${index + 1} is neither part of a JSON array nor a JSON line: ${(error as Error).message}`);
    }
  });
  return entries;
}

const RECORD_FIELDS = ['ExecutionArn', 'Status', 'Output', 'Input', 'Error', 'Cause'];

/** Reads one entry of a result file of the given status as a batch outcome. */
export function toBatchOutcome(entry: unknown, fileStatus: ResultStatus): BatchOutcome {
  const isRecord = isObject(entry) && RECORD_FIELDS.some((field) => field in entry);
  if (!isRecord) {
    // COMPACT / FLATTEN: a succeeded child's bare output.
    return fileStatus === 'SUCCEEDED' ? fromOutput(entry, {}) : failed(fileStatus, {}, 'States.Unknown', describeJson(entry));
  }
  const record = entry as Record<string, unknown>;
  const status = (typeof record.Status === 'string' ? record.Status : fileStatus) as ResultStatus;
  const executionArn = typeof record.ExecutionArn === 'string' ? record.ExecutionArn : undefined;
  // A succeeded batch's input is read only when its output cannot be: the keys of a batch that
  // left a shard are in its batch record, and parsing every input would grow with the images.
  const withInput = () => ({ executionArn, inputKeys: batchInputKeys(record.Input) });
  if (status === 'SUCCEEDED') {
    if (!('Output' in record)) return failed('SUCCEEDED', withInput(), 'OutputNotIncluded', 'the result record does not include the child output');
    const outcome = fromOutput(typeof record.Output === 'string' ? parseJsonString(record.Output) : record.Output, { executionArn });
    return outcome.kind === 'succeeded' ? outcome : { ...outcome, ...definedOnly(withInput()) };
  }
  const context = withInput();
  const error = typeof record.Error === 'string' && record.Error !== '' ? record.Error : status === 'PENDING' ? 'States.Pending' : 'States.Unknown';
  const cause =
    typeof record.Cause === 'string' && record.Cause !== ''
      ? readableCause(record.Cause)
      : status === 'PENDING'
        ? 'the child execution had not finished when the map run ended'
        : 'no cause recorded';
  return failed(status, context, error, cause);
}

/** Every outcome of a map run, given a way to read an object of the manifest's bucket as text. */
export async function readMapRunResults(
  manifestText: string,
  readText: (bucket: string, key: string) => Promise<string>,
): Promise<{ manifest: ResultWriterManifest; outcomes: BatchOutcome[] }> {
  const manifest = parseResultManifest(manifestText);
  const outcomes: BatchOutcome[] = [];
  for (const status of RESULT_STATUSES) {
    for (const file of manifest.ResultFiles[status] ?? []) {
      const entries = parseResultFile(await readText(manifest.DestinationBucket, file.Key), file.Key);
      for (const entry of entries) outcomes.push(toBatchOutcome(entry, status));
    }
  }
  return { manifest, outcomes };
}

interface OutcomeContext {
  executionArn?: string;
  inputKeys?: string[];
}

function fromOutput(output: unknown, context: OutcomeContext): BatchOutcome {
  // Tolerate a Task without `OutputPath: $.Payload`: the Lambda integration's envelope.
  const candidate = isObject(output) && isObject(output.Payload) && !('shard' in output) ? output.Payload : output;
  const parsed = FeaturizeBatchSummarySchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return failed(
      'SUCCEEDED',
      context,
      'UnreadableBatchOutput',
      `child output is not a featurize summary (${issue.path.join('.') || 'output'}: ${issue.message}): ${describeJson(output)}`,
    );
  }
  return { kind: 'succeeded', summary: parsed.data, ...definedOnly(context) };
}

function failed(status: ResultStatus, context: OutcomeContext, error: string, cause: string): FailedBatch {
  return { kind: 'failed', status, error, cause, ...definedOnly(context) };
}

/** Keys of an ItemBatcher input `{ Items: [{ Key }], BatchInput }` given as a JSON string or object. */
function batchInputKeys(input: unknown): string[] | undefined {
  const value = typeof input === 'string' ? parseJsonString(input) : input;
  if (!isObject(value) || !Array.isArray(value.Items)) return undefined;
  const keys = value.Items.map((item) => (isObject(item) && typeof item.Key === 'string' ? item.Key : undefined));
  return keys.every((key): key is string => key !== undefined) ? keys : undefined;
}

/**
 * A Lambda error's Cause is itself JSON `{ errorType, errorMessage, trace }`: people need
 * `errorType: errorMessage`, or only the message where it is shown after an error name that is
 * already the errorType. Any other cause (a States.* one is already a sentence) is kept as it is.
 */
export function readableCause(cause: string, shownAfter?: string): string {
  const json = parseJsonString(cause);
  if (isObject(json) && typeof json.errorMessage === 'string') {
    return typeof json.errorType === 'string' && json.errorType !== shownAfter ? `${json.errorType}: ${json.errorMessage}` : json.errorMessage;
  }
  return cause;
}

function parseJsonString(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function describeJson(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
