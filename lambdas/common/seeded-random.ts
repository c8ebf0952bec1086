/**
 * A small seedable PRNG (mulberry32, public domain): the same seed gives the same sequence on
 * every machine, which keeps demo images, plot samples and synthetic test data reproducible.
 * Not for anything security-related.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Marsaglia's xorshift32: successive 32-bit states, whole numbers in [1, 2^32), from a seed taken
 * as an unsigned 32-bit value. 0 is taken as 1: it is the one state the generator cannot leave.
 * The topEigen start block and the synthetic feature rows of the benches and tests draw from it.
 */
export function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

/**
 * A seed for xorshift32 from a small whole number (an index, a run's seed): multiplying by an odd
 * constant and mixing in the golden ratio's bits spreads neighbouring numbers over all 32 bits, so
 * that seeds 1, 2, 3 do not start nearly the same sequence.
 */
export function spreadSeed(n: number): number {
  return (0x9e3779b9 ^ Math.imul(n | 0, 0x85ebca6b)) >>> 0;
}

/** Uniform values in (0, 1) from xorshift32: the middle of each state's 2^-32 step, never 0, so a logarithm of one is finite. */
export function xorshiftUniform(seed: number): () => number {
  const next = xorshift32(seed);
  return () => (next() + 0.5) / 4294967296;
}

/** Standard normal values by Box-Muller, one from each two uniform values in (0, 1): the cosine half. */
export function standardNormal(uniform: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}
