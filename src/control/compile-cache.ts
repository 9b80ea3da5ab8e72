// Writes this thread's compile cache (the type-stripped, compiled modules
// bin/gatehouse.js turns on) to disk once the thread has loaded what it
// serves with. Node writes it only when the process exits; a gateway that
// is killed or crashes instead never writes it, and in a pod, whose
// /tmp (an emptyDir) outlives a container, every restart then starts cold:
// each thread loads node's TypeScript stripper again (~16 MiB of RSS per
// thread, bench/RESULTS.md, issue 13 item 3).
import module from 'node:module';

let flushed = false;

/** Once per thread; a no-op where the cache is off or node has no flush. */
export function persistCompileCache(): void {
  if (flushed) return;
  flushed = true;
  try {
    module.flushCompileCache?.();
  } catch {
    // A cache that cannot be written costs memory at the next start, nothing now.
  }
}
