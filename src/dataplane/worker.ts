// A data-plane worker thread: one DataPlane, driven by IR deltas from the
// control plane on the main thread; answers each apply with its
// ApplyResult so bind errors still reach status. Every worker binds every
// listener with SO_REUSEPORT, and the kernel spreads connections over them.
import { getHeapStatistics } from 'node:v8';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import pino from 'pino';
import type { FromWorker, ToWorker, WorkerSetup } from '../control/worker-protocol.ts';
import { releaseMemory } from '../control/release-memory.ts';
import { DataPlane } from './dataplane.ts';

/**
 * A delta defining this many virtual hosts (a worker's first config, a
 * resync, a bulk change) leaves megabytes of garbage behind: see
 * release-memory.ts. One-route changes, the common case, leave little.
 */
const LARGE_DELTA_HOSTS = 500;

function runDataPlaneWorker(): void {
  const port = parentPort;
  if (port === null) throw new Error('the data-plane worker runs as a worker thread of gatehouse serve');
  const setup = workerData as WorkerSetup;
  const log = pino({ level: setup.logLevel, base: { worker: threadId } });
  const dataPlane = new DataPlane({ log: (level, msg, fields) => log[level](fields ?? {}, msg), reusePort: true });
  let appliedSeq = 0;
  let closing = false;
  const reply = (m: FromWorker) => port.postMessage(m);

  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'apply':
        dataPlane.applyDelta(m.delta).then(
          (result) => {
            appliedSeq = m.seq;
            reply({ type: 'applied', seq: m.seq, result });
            // After the answer, so the control plane does not wait for it.
            if (m.delta.define.virtualHosts.length >= LARGE_DELTA_HOSTS) setImmediate(releaseMemory);
          },
          (err: unknown) => reply({ type: 'applied', seq: m.seq, error: String(err) }),
        );
        return;
      case 'stats':
        reply({ type: 'stats', seq: m.seq, stats: { id: threadId, requests: dataPlane.requestCount, appliedSeq, heapUsedBytes: getHeapStatistics().used_heap_size } });
        return;
      case 'close':
        if (closing) return;
        closing = true;
        // Drain: stop accepting, let requests in flight finish, then go.
        dataPlane.close().finally(() => process.exit(0));
        return;
    }
  });
  // One bad request or a bug in one code path must not take the worker down.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
}

runDataPlaneWorker();
