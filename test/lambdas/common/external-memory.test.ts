import { execFileSync } from 'node:child_process';
import { EXTERNAL_MEMORY_IN_HEAP_LIMIT_FLAG } from '../../../lambdas/common/external-memory';

/**
 * Full collections in a fresh Node process that holds a heap of small objects and allocates 1.4 MB
 * Buffers one after another, each dead at once (a shard's body at a time), with the flag set at
 * run time first, as the handlers do, or not.
 */
function fullCollections(setFlag: boolean): number {
  const script = `
    const { setFlagsFromString } = require('node:v8');
    const { PerformanceObserver, constants } = require('node:perf_hooks');
    if (${setFlag}) setFlagsFromString(${JSON.stringify(EXTERNAL_MEMORY_IN_HEAP_LIMIT_FLAG)});
    let full = 0;
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) if (entry.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) full++;
    }).observe({ entryTypes: ['gc'] });
    const live = Array.from({ length: 200000 }, (_, i) => ({ key: 'key' + i }));
    let sum = 0;
    for (let i = 0; i < 2000; i++) sum += Buffer.allocUnsafe(1400000).fill(i & 255)[0];
    setTimeout(() => console.log(JSON.stringify({ full, sum, live: live.length })), 50);
  `;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })).full;
}

describe('external memory within the heap limit', () => {
  it('spares a process that streams short-lived Buffers the full collections 64 MB of them each started', () => {
    const unflagged = fullCollections(false);
    const flagged = fullCollections(true);
    // 2.8 GB of Buffers: about one full collection per 64 MB without the flag, a few with it.
    expect(unflagged).toBeGreaterThan(20);
    expect(flagged).toBeLessThan(5);
  });
});
