// Messages between the control plane (the main thread) and the data-plane
// worker threads. Config travels as IR deltas (src/ir/delta.ts): after the
// first, only the virtual hosts and clusters that changed are cloned into
// the worker. Each apply carries a sequence number so answers are matched
// to requests.
import type { ApplyResult } from '../dataplane/dataplane.ts';
import type { LogLevel } from '../dataplane/log.ts';
import type { IRDelta } from '../ir/delta.ts';
import type { RequestLimits } from '../dataplane/limits.ts';
import type { MessagePort } from 'node:worker_threads';
import type { AccessLogOptions } from '../dataplane/access-log.ts';
import type { MetricsSnapshot } from '../dataplane/metrics.ts';
import type { TracingOptions } from '../dataplane/tracing.ts';

export type ToWorker =
  | { type: 'apply'; seq: number; delta: IRDelta }
  | { type: 'stats'; seq: number }
  /**
   * An active health check's verdict on an endpoint (EndpointStates.key):
   * the checks run once, on the main thread, for every worker.
   */
  | { type: 'health'; key: string; healthy: boolean }
  /** Its counters, for a scrape of /metrics. */
  | { type: 'metrics'; seq: number }
  /** Shutdown, first step: answers ask clients to close; listeners keep accepting. */
  | { type: 'drain' }
  /** Stop accepting, drain up to the drain timeout, exit. */
  | { type: 'close' };

export interface WorkerStats {
  /** The worker thread's id, unique within the process. */
  id: number;
  /** Requests the worker's listeners received since it started. */
  requests: number;
  /** Sequence number of the last IR it applied. */
  appliedSeq: number;
  /** The worker's V8 heap in use, in bytes. */
  heapUsedBytes: number;
}

export type FromWorker =
  | { type: 'applied'; seq: number; result?: ApplyResult; error?: string }
  | { type: 'stats'; seq: number; stats: WorkerStats }
  | { type: 'metrics'; seq: number; snapshot: MetricsSnapshot }
  /** The worker served requests, then none for a while, and gave its memory back (release-after-traffic.ts). */
  | { type: 'trafficEnded' }
  /**
   * A log line, written by the main thread's logger with the worker's id:
   * workers load no logger of their own (~2 MB each), and what a worker
   * says just before it exits still reaches the log, as Node delivers a
   * worker's messages before its 'exit' event.
   */
  | { type: 'log'; level: LogLevel; msg: string; fields?: Record<string, unknown> };

/** What a worker thread is started with. */
export interface WorkerSetup {
  /** The lowest level worth sending (pino's names); lower ones are dropped in the worker. */
  logLevel: string;
  /** Overrides of the data plane's limits (src/dataplane/limits.ts). */
  limits?: Partial<RequestLimits>;
  /** See DataPlaneOptions.maxMetricSeries. */
  maxMetricSeries?: number;
  /** Access logs on: the options, and the worker's port to the writer (transferred). */
  accessLog?: { options: AccessLogOptions; port: MessagePort };
  /** Tracing on: its options. */
  tracing?: TracingOptions;
}

/**
 * V8's young generation for workers, in MiB: 8 MiB semi-spaces, as bin/
 * gives the main thread (V8 sizes the young generation as three
 * semi-spaces). Why 8: see bin/gatehouse.js.
 */
export const WORKER_YOUNG_GENERATION_MB = 24;
