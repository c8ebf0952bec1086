/**
 * How V8 decides to collect the garbage of Buffers and typed arrays, whose bytes live outside its
 * heap ("external memory"). By default it starts a full mark-compact every time 64 MB more of them
 * has been allocated since the last one, however large the heap and however short-lived the
 * arrays: a stage that streams shards, an S3 body or an onnxruntime output at a time then marks
 * its whole heap many times a second. With `--external-memory-accounted-in-global-limit` V8 counts
 * those bytes within the heap's global limit instead, which grows with the heap, and the arrays
 * that die young are freed by the cheap young-generation collections, as the objects beside them
 * are. On the whole dataset's aggregate phase, run locally, the phase's CPU fell by a quarter and
 * its time from 21.8 to 17.1 s; a Lambda invocation alone saves 5-10% of its CPU for 0-230 MB more
 * peak memory (docs/BENCHMARKS.md, "Buffers collected with the heap").
 *
 * V8's flags are process-wide: the Lambda's handler module sets it at its cold start (a handler
 * cannot pass V8 flags through NODE_OPTIONS), and the local run for its own thread, which serves
 * the emulated S3 and Step Functions.
 */
import { setFlagsFromString } from 'node:v8';

/** The V8 flag. V8 ignores a flag it does not know: external-memory.test.ts checks that this one still works. */
export const EXTERNAL_MEMORY_IN_HEAP_LIMIT_FLAG = '--external-memory-accounted-in-global-limit';

/** Sets the flag for the whole process: V8 reads it whenever it computes its limits. */
export function countExternalMemoryInHeapLimit(): void {
  setFlagsFromString(EXTERNAL_MEMORY_IN_HEAP_LIMIT_FLAG);
}
