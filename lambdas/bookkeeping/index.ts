/**
 * The bookkeeping: what a run hands out and what comes back, so that every listed object is
 * accounted for. `classifyKey` says which keys are images and their labels; the feature-shard
 * format carries one batch's rows and failures; `readMapRunResults` reads the Distributed Map's
 * ResultWriter output; `InputAccounting` proves that every key came out exactly once, or the run
 * fails with `IncompleteRunError`. The exports below are what the rest of the code may use from
 * this folder.
 */
export { classifyKey } from './image-keys';
export { type FeatureShard, type ShardHeader, decodeFeatureShard, encodeFeatureShard } from './feature-shard';
export { type FailedBatch, readMapRunResults, readableCause } from './map-results';
export { IncompleteRunError, InputAccounting, type InputAccountingReport, type KeySample, describeIncompleteAccounting } from './input-accounting';
