// The data plane as N worker processes (node:cluster), seen from the
// control plane as one: apply(IR) sends the IR to every worker and
// resolves with their results merged once all have applied it. A worker
// that dies is replaced and handed the current IR; close() asks every
// worker to drain and waits for them.
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import type { ApplyResult } from '../dataplane/dataplane.ts';
import type { IR } from '../ir/types.ts';
import { DEFAULT_GLIBC_TUNABLES, WORKER_COMMAND, workerExecArgv, type FromWorker, type ToWorker, type WorkerStats } from './worker-protocol.ts';

export interface WorkerPoolOptions {
  workers: number;
  logLevel: string;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** How long close() waits for workers to drain before killing them. */
  drainTimeoutMs?: number;
}

interface Pending {
  resolve(result: ApplyResult): void;
  reject(err: Error): void;
  waiting: Set<Worker>;
  results: ApplyResult[];
}

const BIN = path.resolve(import.meta.dirname, '../../bin/gatehouse.js');
const RESTART_DELAY_MS = 500;

export class WorkerPool {
  readonly #opts: WorkerPoolOptions;
  readonly #workers = new Set<Worker>();
  readonly #pending = new Map<number, Pending>();
  readonly #statsWaiters = new Map<number, { waiting: Set<Worker>; stats: WorkerStats[]; resolve(s: WorkerStats[]): void }>();
  #seq = 0;
  #current: { seq: number; irJson: string } | null = null;
  #closing = false;

  constructor(opts: WorkerPoolOptions) {
    this.#opts = opts;
    const env = process.env;
    cluster.setupPrimary({
      exec: BIN,
      args: [WORKER_COMMAND],
      execArgv: workerExecArgv(process.execArgv, env.NODE_OPTIONS),
      silent: false,
      serialization: 'advanced',
    });
    for (let i = 0; i < opts.workers; i++) this.#fork(env);
  }

  get size(): number {
    return this.#workers.size;
  }

  #fork(env: NodeJS.ProcessEnv): Worker {
    const worker = cluster.fork({
      GLIBC_TUNABLES: env.GLIBC_TUNABLES ?? DEFAULT_GLIBC_TUNABLES,
      GATEHOUSE_LOG_LEVEL: this.#opts.logLevel,
    });
    this.#workers.add(worker);
    worker.on('message', (m: FromWorker) => this.#onMessage(worker, m));
    worker.on('exit', (code, signal) => this.#onExit(worker, code, signal));
    // A worker started after the first config gets the current one at once.
    if (this.#current !== null) this.#send(worker, { type: 'apply', seq: this.#current.seq, irJson: this.#current.irJson });
    return worker;
  }

  #send(worker: Worker, m: ToWorker): void {
    if (worker.isConnected()) worker.send(m);
  }

  /** Applies `ir` on every worker; resolves when all have, with their errors merged. */
  apply(ir: IR): Promise<ApplyResult> {
    if (this.#closing) return Promise.reject(new Error('data plane is closed'));
    const seq = ++this.#seq;
    const irJson = JSON.stringify(ir);
    this.#current = { seq, irJson };
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, waiting: new Set(this.#workers), results: [] };
      this.#pending.set(seq, pending);
      for (const worker of this.#workers) this.#send(worker, { type: 'apply', seq, irJson });
      this.#settle(seq, pending);
    });
  }

  /** Every worker's pid, request count and applied config, for the admin API. */
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

  /** The sequence number of the IR last handed to apply(). */
  get currentSeq(): number {
    return this.#current?.seq ?? 0;
  }

  #onMessage(worker: Worker, m: FromWorker): void {
    if (m.type === 'applied') {
      const pending = this.#pending.get(m.seq);
      if (pending === undefined) return;
      pending.waiting.delete(worker);
      if (m.error !== undefined) {
        this.#pending.delete(m.seq);
        pending.reject(new Error(m.error));
        return;
      }
      if (m.result !== undefined) pending.results.push(m.result);
      this.#settle(m.seq, pending);
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

  #onExit(worker: Worker, code: number | null, signal: string | null): void {
    this.#workers.delete(worker);
    // It will not answer: settle what waited on it.
    for (const [seq, pending] of this.#pending) {
      if (pending.waiting.delete(worker)) this.#settle(seq, pending);
    }
    for (const [seq, entry] of this.#statsWaiters) {
      if (entry.waiting.delete(worker) && entry.waiting.size === 0) { this.#statsWaiters.delete(seq); entry.resolve(entry.stats); }
    }
    if (this.#closing) return;
    this.#opts.log('error', 'data-plane worker exited; starting another', { pid: worker.process.pid, code, signal });
    // A short pause, so a worker that dies at start does not spin.
    setTimeout(() => { if (!this.#closing) this.#fork(process.env); }, RESTART_DELAY_MS).unref();
  }

  /** Asks every worker to drain and exit; kills those still there after the drain timeout. */
  async close(): Promise<void> {
    this.#closing = true;
    const exits = [...this.#workers].map((worker) => new Promise<void>((resolve) => {
      if (worker.isDead()) { resolve(); return; }
      worker.once('exit', () => resolve());
      this.#send(worker, { type: 'close' });
    }));
    const timer = setTimeout(() => { for (const w of this.#workers) w.process.kill('SIGKILL'); }, this.#opts.drainTimeoutMs ?? 15_000);
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
