// The data plane as N worker threads, seen from the control plane as one
// DataPlaneHandle: apply() sends every worker the next delta of the
// pool's source (serve's IRDeltaEncoder; gatehouse proxy's DeltaRelay,
// which forwards its controller's) and resolves with their results
// merged once all have applied it. Each worker binds
// every listener itself with SO_REUSEPORT, so the kernel spreads
// connections over them and no thread hands sockets to another. Threads
// rather than processes: one Node runtime, one copy of the code and one
// allocator for all of them, which is most of a worker's memory. A worker
// that dies is replaced and handed the current config in full (the
// source's full()), as is one that refused a delta, with the next. At
// shutdown, beginDrain() has every worker's answers ask clients to close,
// and close() asks every worker to drain and waits for them.
import { Worker } from 'node:worker_threads';
// Loaded for its effect: it puts the session persistence key in the
// environment before any worker starts, so all workers share it.
import '../dataplane/upstream/sticky.ts';
import type { ApplyResult } from '../dataplane/dataplane.ts';
import { asText, type DeltaSource, type IRDelta } from '../ir/delta.ts';
import { ActiveHealthChecks } from '../dataplane/upstream/health-check.ts';
import type { Cluster } from '../ir/types.ts';
import type { DataPlaneHandle } from './data-plane-handle.ts';
import type { LogFn } from '../dataplane/log.ts';
import type { RequestLimits } from '../dataplane/limits.ts';
import { WORKER_YOUNG_GENERATION_MB, type FromWorker, type ToWorker, type WorkerSetup, type WorkerStats } from './worker-protocol.ts';
import type { AccessLogWriter } from '../dataplane/access-log-writer.ts';
import type { TracingOptions } from '../dataplane/tracing.ts';
import { releaseMemoryMeasured, releasedFields } from './release-memory.ts';
import { CHECK_MS } from './release-after-traffic.ts';
import { emptySnapshot, mergeSnapshots, type MetricsSnapshot } from '../dataplane/metrics.ts';

/** How long a scrape waits for the workers' counters; a worker that has not answered by then is left out of that scrape. */
export const METRICS_WAIT_MS = 2_000;

export interface WorkerPoolOptions {
  workers: number;
  logLevel: string;
  /** Where the pool's own lines and the workers' lines (with a `worker` field) go. */
  log: LogFn;
  /**
   * How long close() waits for workers to drain before stopping them: the
   * workers' own drain timeout and a margin, as each cuts its connections
   * at its drain timeout itself. Default 15 s.
   */
  drainTimeoutMs?: number;
  /** Overrides of the data plane's limits, for every worker. */
  limits?: Partial<RequestLimits>;
  /** See DataPlaneOptions.maxMetricSeries. */
  maxMetricSeries?: number;
  /** When access logs are on: each worker gets a port of its own to this writer. */
  accessLog?: AccessLogWriter;
  /** Tracing, in every worker. */
  tracing?: TracingOptions;
  /** What made the deltas apply() is handed, whose full() a new or failed worker is sent. */
  source: DeltaSource;
}

interface Pending {
  resolve(result: ApplyResult): void;
  reject(err: Error): void;
  waiting: Set<Worker>;
  results: ApplyResult[];
}

const ENTRY = new URL('../dataplane/worker.ts', import.meta.url);
const RESTART_DELAY_MS = 500;

export class WorkerPool implements DataPlaneHandle {
  readonly #opts: WorkerPoolOptions;
  readonly #workers = new Set<Worker>();
  /** Workers that must be sent the whole config next: new ones, and those that failed an apply. */
  readonly #needFull = new Set<Worker>();
  readonly #pending = new Map<number, Pending>();
  readonly #statsWaiters = new Map<number, { waiting: Set<Worker>; stats: WorkerStats[]; resolve(s: WorkerStats[]): void }>();
  readonly #metricsWaiters = new Map<number, { waiting: Set<Worker>; snapshots: MetricsSnapshot[]; resolve(s: MetricsSnapshot): void }>();
  /** What workers that exited had counted: kept, so that counters never go back. */
  #retired: MetricsSnapshot = emptySnapshot();
  /** Each worker's last answer, so that its counts are retired when it exits. */
  readonly #lastSnapshot = new Map<Worker, MetricsSnapshot>();
  /** Whose full() a worker that needs the whole config is sent. */
  readonly #source: DeltaSource;
  /**
   * Active health checks, once for all workers: each verdict goes to every
   * worker, and a worker that starts later is told the unhealthy ones.
   */
  readonly #health: ActiveHealthChecks;
  /** The main thread's own release after a load, once for the workers whose loads end together. */
  #release: NodeJS.Timeout | null = null;
  #seq = 0;
  #appliedSeq = 0;
  #closing = false;
  #draining = false;

  constructor(opts: WorkerPoolOptions) {
    this.#opts = opts;
    this.#source = opts.source;
    this.#health = new ActiveHealthChecks((key, healthy) => {
      for (const worker of this.#workers) this.#send(worker, { type: 'health', key, healthy });
    }, opts.log);
    for (let i = 0; i < opts.workers; i++) this.#start();
  }

  get size(): number {
    return this.#workers.size;
  }

  #start(): Worker {
    const setup: WorkerSetup = { logLevel: this.#opts.logLevel, limits: this.#opts.limits, maxMetricSeries: this.#opts.maxMetricSeries, tracing: this.#opts.tracing };
    const writer = this.#opts.accessLog;
    if (writer !== undefined) setup.accessLog = { options: writer.options, port: writer.connect() };
    const worker = new Worker(ENTRY, {
      workerData: setup,
      transferList: setup.accessLog === undefined ? [] : [setup.accessLog.port],
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    this.#workers.add(worker);
    worker.on('message', (m: FromWorker) => this.#onMessage(worker, m));
    worker.on('error', (err) => this.#opts.log('error', 'data-plane worker failed', { worker: worker.threadId, error: err.message }));
    worker.on('exit', (code) => this.#onExit(worker, code));
    // A worker started after the first config gets the current one at once.
    const full = this.#source.full();
    if (full !== null) {
      this.#send(worker, { type: 'apply', seq: this.#appliedSeq, delta: asText(full) });
      for (const key of this.#health.unhealthy()) this.#send(worker, { type: 'health', key, healthy: false });
    }
    if (this.#draining) this.#send(worker, { type: 'drain' });
    return worker;
  }

  #send(worker: Worker, m: ToWorker): void {
    worker.postMessage(m);
  }

  /**
   * Applies `next`, the next delta of the pool's `source` (which must have
   * it as its full() from now on), on every worker; resolves when all
   * have, with their errors merged. `clusters` are its config's clusters
   * by name, for the active health checks.
   */
  apply(next: IRDelta, clusters: Record<string, Cluster>): Promise<ApplyResult> {
    if (this.#closing) return Promise.reject(new Error('data plane is closed'));
    const seq = ++this.#seq;
    this.#appliedSeq = seq;
    const delta = asText(next);
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, waiting: new Set(this.#workers), results: [] };
      this.#pending.set(seq, pending);
      for (const worker of this.#workers) {
        this.#send(worker, { type: 'apply', seq, delta: this.#needFull.delete(worker) ? asText(this.#source.full()!) : delta });
      }
      // After the deltas: a verdict reaches a worker after the config with its endpoint.
      this.#health.update(clusters);
      this.#settle(seq, pending);
    });
  }

  /** Every worker's id, request count and applied config, for the admin API. */
  stats(): Promise<WorkerStats[]> {
    const seq = ++this.#seq;
    return new Promise((resolve) => {
      const entry = { waiting: new Set(this.#workers), stats: [] as WorkerStats[], resolve };
      this.#statsWaiters.set(seq, entry);
      for (const worker of this.#workers) this.#send(worker, { type: 'stats', seq });
      const timer = setTimeout(() => { this.#statsWaiters.delete(seq); resolve(entry.stats); }, 2000);
      timer.unref();
      if (entry.waiting.size === 0) { this.#statsWaiters.delete(seq); resolve([]); }
    });
  }

  /**
   * Every worker's counters added up, with those of workers that exited
   * (as far as their last scrape saw them). Waits METRICS_WAIT_MS at most.
   */
  metrics(): Promise<MetricsSnapshot> {
    const seq = ++this.#seq;
    return new Promise((resolve) => {
      const entry = { waiting: new Set(this.#workers), snapshots: [] as MetricsSnapshot[], resolve };
      const done = () => {
        this.#metricsWaiters.delete(seq);
        clearTimeout(timer);
        resolve(mergeSnapshots([this.#retired, ...entry.snapshots]));
      };
      entry.resolve = done;
      this.#metricsWaiters.set(seq, entry);
      for (const worker of this.#workers) this.#send(worker, { type: 'metrics', seq });
      const timer = setTimeout(done, METRICS_WAIT_MS);
      timer.unref();
      if (entry.waiting.size === 0) done();
    });
  }

  /** The sequence number of the delta last handed to apply(). */
  get currentSeq(): number {
    return this.#appliedSeq;
  }

  /**
   * Stops one worker at once, as a crash would: the pool replaces it.
   * For tests of that path and for an operator's diagnostics.
   */
  async terminate(id: number): Promise<boolean> {
    const worker = [...this.#workers].find((w) => w.threadId === id);
    if (worker === undefined) return false;
    await worker.terminate();
    return true;
  }

  #onMessage(worker: Worker, m: FromWorker): void {
    if (m.type === 'applied') {
      const pending = this.#pending.get(m.seq);
      if (m.error !== undefined) this.#needFull.add(worker);
      if (pending === undefined) return;
      pending.waiting.delete(worker);
      if (m.error !== undefined) {
        this.#pending.delete(m.seq);
        pending.reject(new Error(m.error));
        return;
      }
      if (m.result !== undefined) pending.results.push(m.result);
      this.#settle(m.seq, pending);
    } else if (m.type === 'log') {
      // `worker` first, where the worker's own logger had it.
      this.#opts.log(m.level, m.msg, { worker: worker.threadId, ...m.fields });
    } else if (m.type === 'metrics') {
      this.#lastSnapshot.set(worker, m.snapshot);
      const entry = this.#metricsWaiters.get(m.seq);
      if (entry === undefined) return;
      entry.snapshots.push(m.snapshot);
      entry.waiting.delete(worker);
      if (entry.waiting.size === 0) entry.resolve(emptySnapshot());
    } else if (m.type === 'trafficEnded') {
      // The main thread's memory grows with the load too (log lines, metric
      // scrapes, the workers' messages). Workers notice the end within
      // CHECK_MS of each other: one release after the last of them.
      if (this.#release !== null || this.#closing) return;
      this.#release = setTimeout(() => {
        this.#release = null;
        this.#opts.log('debug', 'requests stopped: memory given back', { thread: 'main', ...releasedFields(releaseMemoryMeasured()) });
      }, CHECK_MS);
      this.#release.unref();
    } else if (m.type === 'stats') {
      const entry = this.#statsWaiters.get(m.seq);
      if (entry === undefined) return;
      entry.stats.push(m.stats);
      entry.waiting.delete(worker);
      if (entry.waiting.size === 0) { this.#statsWaiters.delete(m.seq); entry.resolve(entry.stats); }
    }
  }

  #settle(seq: number, pending: Pending): void {
    if (pending.waiting.size !== 0) return;
    this.#pending.delete(seq);
    pending.resolve(mergeResults(pending.results));
  }

  #onExit(worker: Worker, code: number): void {
    this.#workers.delete(worker);
    this.#needFull.delete(worker);
    // It will not answer: settle what waited on it.
    for (const [seq, pending] of this.#pending) {
      if (pending.waiting.delete(worker)) this.#settle(seq, pending);
    }
    for (const [seq, entry] of this.#statsWaiters) {
      if (entry.waiting.delete(worker) && entry.waiting.size === 0) { this.#statsWaiters.delete(seq); entry.resolve(entry.stats); }
    }
    const last = this.#lastSnapshot.get(worker);
    if (last !== undefined) {
      // Its connections are gone with it: only its totals are kept.
      for (const l of last.listeners) l.values[1] = 0;
      this.#retired = mergeSnapshots([this.#retired, last]);
      this.#lastSnapshot.delete(worker);
    }
    for (const entry of this.#metricsWaiters.values()) {
      if (entry.waiting.delete(worker) && entry.waiting.size === 0) entry.resolve(emptySnapshot());
    }
    if (this.#closing) return;
    this.#opts.log('error', 'data-plane worker exited; starting another', { worker: worker.threadId, code });
    // A short pause, so a worker that dies at start does not spin.
    setTimeout(() => { if (!this.#closing) this.#start(); }, RESTART_DELAY_MS).unref();
  }

  /** Shutdown, first step: every worker's answers ask clients to close; listeners keep accepting. */
  beginDrain(): void {
    this.#draining = true;
    for (const worker of this.#workers) this.#send(worker, { type: 'drain' });
  }

  /** Asks every worker to drain and exit; stops those still there after the drain timeout. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#health.close();
    if (this.#release !== null) clearTimeout(this.#release);
    const exits = [...this.#workers].map((worker) => new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      this.#send(worker, { type: 'close' });
    }));
    const drainTimeoutMs = this.#opts.drainTimeoutMs ?? 15_000;
    const timer = setTimeout(() => {
      for (const w of this.#workers) {
        this.#opts.log('error', 'data-plane worker did not drain in time; stopping it', { worker: w.threadId, waitedMs: drainTimeoutMs });
        void w.terminate();
      }
    }, drainTimeoutMs);
    timer.unref();
    await Promise.all(exits);
    clearTimeout(timer);
    for (const pending of this.#pending.values()) pending.reject(new Error('data plane is closed'));
    this.#pending.clear();
  }
}

/** A listener, certificate or route error in any worker is an error of the data plane. */
export function mergeResults(results: ApplyResult[]): ApplyResult {
  const merged: ApplyResult = { listenerErrors: {}, certificateErrors: {}, routeErrors: {} };
  for (const r of results) {
    Object.assign(merged.listenerErrors, r.listenerErrors);
    Object.assign(merged.certificateErrors, r.certificateErrors);
    Object.assign(merged.routeErrors, r.routeErrors);
  }
  return merged;
}
