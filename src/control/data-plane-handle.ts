// What serve and gatehouse proxy need of their data plane, the same
// whether it runs in worker threads (WorkerPool) or on the main thread
// (localDataPlane): it is handed the deltas of one DeltaSource (serve's
// IRDeltaEncoder, proxy's DeltaRelay), every one, in order, and a data
// plane that refused a delta is sent the source's full() next.
import type { ApplyResult, DataPlane } from '../dataplane/dataplane.ts';
import type { MetricsSnapshot } from '../dataplane/metrics.ts';
import type { DeltaSource, IRDelta } from '../ir/delta.ts';
import type { Cluster } from '../ir/types.ts';
import { releaseMemoryMeasured, releasedFields } from './release-memory.ts';
import type { LogFn } from '../dataplane/log.ts';
import { watchTrafficEnd } from './release-after-traffic.ts';

export interface DataPlaneHandle {
  /**
   * The source's next delta, handed on before the source makes another
   * (its full() is then this delta's config), and that config's clusters
   * by name, for the active health checks.
   */
  apply(delta: IRDelta, clusters: Record<string, Cluster>): Promise<ApplyResult>;
  metrics(): Promise<MetricsSnapshot>;
  beginDrain(): void;
  close(): Promise<void>;
}

/** A data plane on this thread, fed as a worker of the pool is: after a refused delta, the whole config. */
export function localDataPlane(dp: DataPlane, source: DeltaSource, log: LogFn): DataPlaneHandle {
  let needFull = false;
  // As a worker does: its memory back after each load (release-after-traffic.ts).
  const trafficEnd = watchTrafficEnd(() => dp.requestCount, () => {
    log('debug', 'requests stopped: memory given back', { thread: 'main', ...releasedFields(releaseMemoryMeasured()) });
  });
  return {
    apply: async (delta, clusters) => {
      try {
        const result = await dp.applyDelta(needFull ? source.full()! : delta, clusters);
        needFull = false;
        return result;
      } catch (err) {
        needFull = true;
        throw err;
      }
    },
    metrics: () => Promise.resolve(dp.metricsSnapshot()),
    beginDrain: () => dp.beginDrain(),
    close: () => { trafficEnd.stop(); return dp.close(); },
  };
}
