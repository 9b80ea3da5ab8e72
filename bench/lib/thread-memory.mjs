// --import hook for the control-plane bench: every thread of the gatehouse
// process (main and each data-plane worker; --import runs in workers too)
// writes its own memory figures to $BENCH_THREAD_MEMORY_DIR/<threadId>.json
// every second, so the bench can say where each MB goes. Not used by
// gatehouse itself. The timer is unref'd: it keeps no thread alive.
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { threadId } from 'node:worker_threads';

const dir = process.env.BENCH_THREAD_MEMORY_DIR;
if (dir !== undefined && dir !== '') {
  const file = path.join(dir, `${threadId}.json`);
  const write = () => {
    const mu = process.memoryUsage();
    const heap = v8.getHeapStatistics();
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]));
    const code = v8.getHeapCodeStatistics();
    fs.writeFileSync(file, JSON.stringify({
      threadId, at: Date.now(), rss: mu.rss, external: mu.external, arrayBuffers: mu.arrayBuffers,
      heapTotal: heap.total_heap_size, heapUsed: heap.used_heap_size, physical: heap.total_physical_size,
      malloced: heap.malloced_memory, peakMalloced: heap.peak_malloced_memory, externalV8: heap.external_memory,
      code: code.code_and_metadata_size + code.bytecode_and_metadata_size, spaces,
    }));
  };
  setInterval(write, 1000).unref();
  write();
}
