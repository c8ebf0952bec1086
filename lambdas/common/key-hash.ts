/**
 * A 32-bit FNV-1a hash of a key's UTF-16 code units: a rule of the key alone, the same on every
 * machine and in every process, for choices that must not depend on how keys were grouped.
 */
export function keyHash(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
