// Giving back the memory a large config change leaves behind. Loading or
// compiling thousands of routes leaves megabytes of dead objects in the old
// generation and a young generation grown to its limit; V8 collects the old
// generation only when allocation reaches its limit, which an idle gateway
// never does, so the process would keep them indefinitely (measured with
// 5,000 routes: ~13 MB of garbage per data-plane worker, and 16 MB of young
// generation per thread). V8's last-resort collection frees them, compacts,
// shrinks the young generation (it regrows under traffic) and returns the
// pages to the OS: about 60 ms per worker and 100-200 ms on the main thread
// at 5,000 routes, so it runs only after large changes.
import v8 from 'node:v8';
import vm from 'node:vm';

type GC = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

let gc: GC | null | undefined;

/** V8's gc() without exposing it as a global of this or any later thread. */
function collector(): GC | null {
  if (gc !== undefined) return gc;
  const exposed = (globalThis as { gc?: GC }).gc;
  if (typeof exposed === 'function') return gc = exposed;
  try {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as GC;
  } catch {
    gc = null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return gc;
}

/** Collects everything collectable and shrinks the heap; blocks this thread while it runs. */
export function releaseMemory(): void {
  collector()?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/** What a release gave back: the heap in use and committed before and after, in bytes, and how long it blocked. */
export interface Released {
  usedBefore: number;
  usedAfter: number;
  committedBefore: number;
  committedAfter: number;
  ms: number;
}

/** releaseMemory(), measured: for a log line that shows what it was worth. */
export function releaseMemoryMeasured(): Released {
  const before = v8.getHeapStatistics();
  const t0 = performance.now();
  releaseMemory();
  const ms = performance.now() - t0;
  const after = v8.getHeapStatistics();
  return { usedBefore: before.used_heap_size, usedAfter: after.used_heap_size, committedBefore: before.total_heap_size, committedAfter: after.total_heap_size, ms };
}

/** A Released as log fields, in MiB and ms. */
export function releasedFields(r: Released): Record<string, number> {
  const mib = (n: number) => Math.round(n / 104857.6) / 10;
  return {
    heapUsedMiB: mib(r.usedAfter), heapUsedFreedMiB: mib(r.usedBefore - r.usedAfter),
    heapCommittedMiB: mib(r.committedAfter), heapCommittedFreedMiB: mib(r.committedBefore - r.committedAfter), ms: Math.round(r.ms),
  };
}
