/**
 * Small helpers every program may use, with no AWS and nothing of the project: bounded concurrency
 * (`mapWithConcurrency`) and ordered read-ahead (`OrderedReadAhead`, the featurize path's pipeline
 * of reads ahead of the model), float array concatenation, comparison and mirroring, seeded randoms (mulberry32, xorshift32) for reproducible
 * samples, a hash of a key for choices that must not depend on how keys were grouped, the V8 flag that has Buffers collected with the heap, and onnxruntime's option that keeps idle pool threads from spinning. The exports below are what the rest of the code may use from this folder.
 */
export { OrderedReadAhead, mapWithConcurrency } from './concurrency';
export { columnRange, concatFloat32, largestRelativeDifference, leadingColumns, mirrorUpperTriangle } from './float-arrays';
export { seededRandom, spreadSeed, standardNormal, xorshift32, xorshiftUniform } from './seeded-random';
export { keyHash } from './key-hash';
export { countExternalMemoryInHeapLimit } from './external-memory';
export { IDLE_THREADS_BLOCK } from './onnx-session-options';
