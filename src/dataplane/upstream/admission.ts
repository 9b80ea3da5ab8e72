// How many connections one backend cluster may have open, and who waits
// for one: Envoy's per-cluster circuit breakers (max_connections,
// max_pending_requests), kept per data plane (worker thread). The lean
// client charges each connection it opens to the cluster of the request
// that opened it; a request that finds the cluster at its cap waits here,
// first come first served, for a bounded time, and a full queue is refused
// at once. This module only keeps the counts, the queue and its one
// timer; lean.ts decides what a free slot or a released connection does.

/** A request waiting for a connection. */
export interface QueuedRequest {
  /** When it stops waiting (Date.now() ms). */
  queuedUntil: number;
  /** Called once, when it has waited until queuedUntil; it is out of the queue by then. */
  expire(): void;
}

/** Overflow log lines are at most one per cluster per this many ms; each says how many were refused. */
const OVERFLOW_LOG_EVERY_MS = 1_000;

export class ClusterAdmission<R extends QueuedRequest = QueuedRequest> {
  readonly cluster: string;
  /** Connections charged to this cluster, connecting or connected, busy or idle. */
  open = 0;
  /** The cluster's own connection cap and queue length (circuitBreaker); undefined: the pool's. */
  maxConnections: number | undefined = undefined;
  maxPending: number | undefined = undefined;
  /** Waiting requests, oldest first; all wait equally long, so the first also expires first. */
  readonly #queue: R[] = [];
  /** Fires when the oldest waiter's time is up; set only while someone waits. */
  #timer: NodeJS.Timeout | null = null;
  #refusedSinceLog = 0;
  #loggedAt = -Infinity;

  constructor(cluster: string) {
    this.cluster = cluster;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  enqueue(req: R): void {
    this.#queue.push(req);
    if (this.#queue.length === 1) this.#arm();
  }

  /** The oldest waiter, left in the queue. */
  peek(): R | undefined {
    return this.#queue[0];
  }

  /** Takes the oldest waiter out of the queue. */
  shift(): R | undefined {
    const req = this.#queue.shift();
    if (this.#queue.length === 0) this.#disarm();
    return req;
  }

  /** Takes `req` out of the queue (its client went away); false if it was not waiting. */
  remove(req: R): boolean {
    const i = this.#queue.indexOf(req);
    if (i === -1) return false;
    this.#queue.splice(i, 1);
    if (i === 0) {
      this.#disarm();
      if (this.#queue.length !== 0) this.#arm();
    }
    return true;
  }

  /**
   * Counts a request refused because the queue was full. Returns how many
   * were refused since the last log line when one is due now (at most one
   * a second), else 0: a flood of refusals must not become a flood of logs.
   */
  noteRefused(now: number): number {
    this.#refusedSinceLog++;
    if (now - this.#loggedAt < OVERFLOW_LOG_EVERY_MS) return 0;
    const refused = this.#refusedSinceLog;
    this.#refusedSinceLog = 0;
    this.#loggedAt = now;
    return refused;
  }

  #arm(): void {
    this.#disarm();
    const delay = Math.max(0, this.#queue[0].queuedUntil - Date.now());
    this.#timer = setTimeout(this.#expireDue, delay);
    this.#timer.unref();
  }

  #disarm(): void {
    if (this.#timer === null) return;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  readonly #expireDue = (): void => {
    this.#timer = null;
    const now = Date.now();
    const queue = this.#queue;
    while (queue.length !== 0 && queue[0].queuedUntil <= now) (queue.shift() as R).expire();
    if (queue.length !== 0) this.#arm();
  };
}
