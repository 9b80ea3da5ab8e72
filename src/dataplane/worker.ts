// A data-plane worker thread: one DataPlane, driven by IR deltas from the
// control plane on the main thread; answers each apply with its
// ApplyResult so bind errors still reach status. Every worker binds every
// listener with SO_REUSEPORT, and the kernel spreads connections over them.
import { getHeapStatistics } from 'node:v8';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerSetup } from '../control/worker-protocol.ts';
import { releaseMemory, releaseMemoryMeasured, releasedFields } from '../control/release-memory.ts';
import { watchTrafficEnd } from '../control/release-after-traffic.ts';
import { persistCompileCache } from '../control/compile-cache.ts';
import { DataPlane } from './dataplane.ts';
import type { LogFn } from './log.ts';

/**
 * A delta defining this many virtual hosts (a worker's first config, a
 * resync, a bulk change) leaves megabytes of garbage behind: see
 * release-memory.ts. One-route changes, the common case, leave little.
 */
const LARGE_DELTA_HOSTS = 500;

/** pino's level numbers; a level it does not know sends everything and leaves the choice to the main thread. */
const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** Log lines go to the main thread, which writes them (see the 'log' message). */
function portLog(port: MessagePort, minLevel: string): LogFn {
  const min = LEVELS[minLevel] ?? 0;
  return (level, msg, fields) => {
    if (LEVELS[level] < min) return;
    try {
      port.postMessage({ type: 'log', level, msg, fields } satisfies FromWorker);
    } catch {
      // A field that cannot be cloned (an unhandled rejection's reason, say) is sent as text.
      const text = Object.fromEntries(Object.entries(fields ?? {}).map(([k, v]) => [k, String(v)]));
      port.postMessage({ type: 'log', level, msg, fields: text } satisfies FromWorker);
    }
  };
}

function runDataPlaneWorker(): void {
  const port = parentPort;
  if (port === null) throw new Error('the data-plane worker runs as a worker thread of gatehouse serve');
  const setup = workerData as WorkerSetup | null;
  // Started any other way (scripts/warm-compile-cache.mjs loads every module in a thread), it does nothing.
  if (typeof setup?.logLevel !== 'string') throw new Error('the data-plane worker runs as a worker thread of gatehouse serve, given its setup');
  const log = portLog(port, setup.logLevel);
  const dataPlane = new DataPlane({
    log, reusePort: true, limits: setup.limits, activeHealthChecks: false,
    maxMetricSeries: setup.maxMetricSeries, accessLog: setup.accessLog, tracing: setup.tracing,
  });
  let appliedSeq = 0;
  let closing = false;
  const reply = (m: FromWorker) => port.postMessage(m);

  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'apply': {
        const { seq } = m;
        const large = m.delta.define.virtualHosts.length >= LARGE_DELTA_HOSTS;
        dataPlane.applyDelta(m.delta).then(
          (result) => {
            appliedSeq = seq;
            // The modules a data plane serves with are loaded by its first apply.
            persistCompileCache();
            if (!large) return reply({ type: 'applied', seq, result });
            // Answered after: a config counts as applied once the worker has
            // settled, so the next change or a readiness check does not meet
            // the pause. From a fresh task, whose stack no longer holds the
            // compile's garbage.
            setImmediate(() => {
              releaseMemory();
              reply({ type: 'applied', seq, result });
            });
          },
          (err: unknown) => reply({ type: 'applied', seq, error: String(err) }),
        );
        return;
      }
      case 'stats':
        reply({ type: 'stats', seq: m.seq, stats: { id: threadId, requests: dataPlane.requestCount, appliedSeq, heapUsedBytes: getHeapStatistics().used_heap_size } });
        return;
      case 'health':
        dataPlane.setEndpointHealth(m.key, m.healthy);
        return;
      case 'metrics':
        reply({ type: 'metrics', seq: m.seq, snapshot: dataPlane.metricsSnapshot() });
        return;
      case 'drain':
        dataPlane.beginDrain();
        return;
      case 'close':
        if (closing) return;
        closing = true;
        trafficEnd.stop();
        // Drain: stop accepting, let requests in flight finish, then go.
        dataPlane.close().finally(() => process.exit(0));
        return;
    }
  });
  // One bad request or a bug in one code path must not take the worker down.
  // After a load, this thread's memory goes back (release-after-traffic.ts),
  // and the main thread is told, to do the same with its own.
  const trafficEnd = watchTrafficEnd(() => dataPlane.requestCount, () => {
    log('debug', 'requests stopped: memory given back', releasedFields(releaseMemoryMeasured()));
    reply({ type: 'trafficEnded' });
  });
  process.on('uncaughtException', (err) => log('error', 'uncaught exception', { err }));
  process.on('unhandledRejection', (err) => log('error', 'unhandled rejection', { err }));
}

runDataPlaneWorker();
