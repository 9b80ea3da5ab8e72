// Request mirrors (HTTPRoute RequestMirror): a copy of the request goes to
// one endpoint of another cluster, and its answer is read and thrown away.
// A copy never delays or fails the request it copies:
//
// - It is sent with the headers, path and body the request goes upstream
//   with (after every filter), and with `-shadow` appended to the Host's
//   name, as Envoy does, so a backend can tell a copy from the original.
// - It waits for nothing of the original's: a request without a body is
//   copied at once; one with a body is copied when the body has arrived
//   whole, from what ReplayableBody kept. A body longer than
//   maxReplayBodyBytes, or one that never arrives whole, is not copied.
// - Each mirror cluster has a gate per worker: maxMirrorRequestsPerCluster
//   copies in flight, as many waiting (each at most
//   upstreamConnectTimeoutMs), and beyond that copies are dropped. The
//   copies use a cluster object of their own (same endpoints and pools,
//   own connection count and queue), so a mirror that shares its Service
//   with some route's backend never takes that route's connection places.
// - Each copy is bounded in time: the route's timeout, else
//   upstreamResponseTimeoutMs for the whole exchange.
// - Dropped copies are counted and logged at most once a second per
//   cluster, with the count and why.

import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { CompiledConfig } from '../config.ts';
import type { RequestLimits } from '../limits.ts';
import type { LogFn } from '../log.ts';
import { ClusterAdmission, type QueuedRequest } from '../upstream/admission.ts';
import { pickEndpoint, upstreamCluster, type UpstreamCluster } from '../upstream/balancer.ts';
import type { Pool } from '../upstream/pools.ts';
import type { HeaderTable } from './headers.ts';
import type { ReplayableBody } from './replay-body.ts';

/** The limits a gate applies. */
export type MirrorLimits = Pick<RequestLimits, 'maxMirrorRequestsPerCluster' | 'upstreamConnectTimeoutMs' | 'upstreamResponseTimeoutMs'>;

/** One RequestMirror filter, compiled. */
export interface MirrorTarget {
  readonly gate: MirrorGate;
  /** A copy goes for `numerator` out of `denominator` requests. */
  readonly numerator: number;
  readonly denominator: number;
}

/** Why a copy was not sent, for the log. */
type DropReason = 'busy' | 'waited too long' | 'body too long or incomplete' | 'no endpoints';

/** Copies per reason since the last log line. */
type DropCounts = Partial<Record<DropReason, number>>;

const DROP_LOG_EVERY_MS = 1_000;

/**
 * The copies to one cluster: its own cluster object for connections, and
 * the in-flight count and queue. Kept on the UpstreamCluster it mirrors
 * to, so it lasts as long as that cluster does across config changes.
 */
export class MirrorGate {
  readonly cluster: UpstreamCluster;
  readonly #queue: ClusterAdmission<PendingCopy>;
  readonly #limits: MirrorLimits;
  inFlight = 0;
  /** Copies sent, and dropped, since the gate was made: for tests and diagnostics. */
  sent = 0;
  dropped = 0;
  #drops: DropCounts = {};
  #loggedAt = -Infinity;

  constructor(of: UpstreamCluster, limits: MirrorLimits) {
    this.cluster = upstreamCluster(`${of.name} (mirror)`, of.endpoints);
    this.#queue = new ClusterAdmission<PendingCopy>(this.cluster.name);
    this.#limits = limits;
  }

  /** The gate of `cluster`, made on first use. */
  static of(cluster: UpstreamCluster, limits: MirrorLimits): MirrorGate {
    return (cluster.mirrorGate ??= new MirrorGate(cluster, limits));
  }

  submit(copy: Copy, log: LogFn): void {
    const max = this.#limits.maxMirrorRequestsPerCluster;
    if (this.inFlight < max) {
      this.#start(copy, log);
    } else if (this.#queue.waiting < max) {
      this.#queue.enqueue(new PendingCopy(this, copy, log, Date.now() + this.#limits.upstreamConnectTimeoutMs));
    } else {
      this.drop(copy, 'busy', log);
    }
  }

  drop(copy: Copy | null, reason: DropReason, log: LogFn): void {
    copy?.config.release();
    this.dropped++;
    this.#drops[reason] = (this.#drops[reason] ?? 0) + 1;
    const now = Date.now();
    if (now - this.#loggedAt < DROP_LOG_EVERY_MS) return;
    this.#loggedAt = now;
    const drops = this.#drops;
    this.#drops = {};
    log('warn', 'mirror copies dropped', { cluster: this.cluster.name, dropped: drops });
  }

  #start(copy: Copy, log: LogFn): void {
    const endpoint = pickEndpoint(this.cluster);
    if (endpoint === undefined) {
      this.drop(copy, 'no endpoints', log);
      return;
    }
    this.inFlight++;
    this.sent++;
    const timeoutMs = copy.timeoutMs > 0 ? copy.timeoutMs : this.#limits.upstreamResponseTimeoutMs;
    new CopyExchange(this, copy, timeoutMs).send(endpoint.pool, endpoint.origin, log);
  }

  /** A copy is over: the oldest waiting one, if any, goes. */
  finished(copy: Copy, log: LogFn): void {
    copy.config.release();
    this.inFlight--;
    const next = this.#queue.shift();
    if (next !== undefined) this.#start(next.copy, log);
  }
}

/** A copy ready to go. */
export interface Copy {
  readonly method: string;
  readonly path: string;
  readonly headers: HeaderTable;
  /** The whole body, or null for none. */
  readonly body: readonly Buffer[] | null;
  /** The route's deadline (0: none). */
  readonly timeoutMs: number;
  /** Held from the copy's making to its end, so its pools stay open. */
  readonly config: CompiledConfig;
}

class PendingCopy implements QueuedRequest {
  readonly gate: MirrorGate;
  readonly copy: Copy;
  readonly log: LogFn;
  queuedUntil: number;

  constructor(gate: MirrorGate, copy: Copy, log: LogFn, until: number) {
    this.gate = gate;
    this.copy = copy;
    this.log = log;
    this.queuedUntil = until;
  }

  expire(): void {
    this.gate.drop(this.copy, 'waited too long', this.log);
  }
}

/** What a request hands to its mirrors. */
export interface MirroredRequest {
  readonly method: string;
  /** Path and query as sent upstream. */
  readonly upstreamTarget: string;
  readonly requestHeaders: HeaderTable;
  readonly hasBody: boolean;
}

/**
 * Sends a copy of `req` through each of `targets`; `body` holds the body
 * when it has one. Returns at once: nothing here waits.
 */
export function sendCopies(
  targets: readonly MirrorTarget[],
  req: MirroredRequest,
  body: ReplayableBody | null,
  timeoutMs: number,
  config: CompiledConfig,
  log: LogFn,
): void {
  const headers = shadowHeaders(req.requestHeaders);
  const make = (chunks: readonly Buffer[] | null): Copy => {
    // Each copy holds the config until it is over.
    config.retain();
    return { method: req.method, path: req.upstreamTarget, headers, body: chunks, timeoutMs, config };
  };
  if (!req.hasBody || body === null) {
    for (const t of targets) t.gate.submit(make(null), log);
    return;
  }
  // Held while the body arrives, so the pools outlive the request if need be.
  config.retain();
  body.whenWhole((chunks) => {
    try {
      if (chunks === null) {
        for (const t of targets) t.gate.drop(null, 'body too long or incomplete', log);
        return;
      }
      let length = 0;
      for (const c of chunks) length += c.length;
      headers.set('content-length', String(length));
      for (const t of targets) t.gate.submit(make(chunks), log);
    } finally {
      config.release();
    }
  });
}

/** A copy of the request's headers, its Host marked as a copy's. */
function shadowHeaders(headers: HeaderTable): HeaderTable {
  const out: HeaderTable = new Map(headers);
  const host = out.get('host');
  if (typeof host === 'string' && host !== '') out.set('host', shadowHost(host));
  // The copy's body is sent whole with its length.
  out.delete('content-length');
  return out;
}

/** `name-shadow[:port]`: Envoy's marking of a mirrored request's authority. */
export function shadowHost(host: string): string {
  const colon = host.lastIndexOf(':');
  // An IPv6 literal's colons are inside brackets.
  if (colon !== -1 && colon > host.lastIndexOf(']')) return `${host.slice(0, colon)}-shadow${host.slice(colon)}`;
  return `${host}-shadow`;
}

/** Sending one copy and reading its answer to nowhere. */
class CopyExchange implements Dispatcher.DispatchHandler {
  readonly #gate: MirrorGate;
  readonly #copy: Copy;
  readonly #timeoutMs: number;
  #controller: Dispatcher.DispatchController | null = null;
  #timer: NodeJS.Timeout | null = null;
  #log: LogFn | null = null;
  #over = false;

  constructor(gate: MirrorGate, copy: Copy, timeoutMs: number) {
    this.#gate = gate;
    this.#copy = copy;
    this.#timeoutMs = timeoutMs;
  }

  send(pool: Pool, origin: string, log: LogFn): void {
    this.#log = log;
    const copy = this.#copy;
    this.#timer = setTimeout(this.#onTimeout, this.#timeoutMs);
    this.#timer.unref();
    let body: Readable | null = null;
    if (copy.body !== null) {
      body = new Readable({ read() {} });
      for (const chunk of copy.body) body.push(chunk);
      body.push(null);
    }
    try {
      pool.dispatch({ origin, path: copy.path, method: copy.method, headers: copy.headers, body }, this, this.#gate.cluster);
    } catch {
      // Only for a head that cannot be sent, which the original was.
      this.#end();
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#over) controller.abort(new Error('mirror copy timed out'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, _status: number, _headers: IncomingHttpHeaders): void {}

  onResponseData(): void {}

  onResponseEnd(): void {
    this.#end();
  }

  onResponseError(): void {
    this.#end();
  }

  readonly #onTimeout = (): void => {
    this.#timer = null;
    if (this.#controller !== null) this.#controller.abort(new Error('mirror copy timed out'));
    else this.#over = true;
  };

  #end(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#log === null) return;
    const log = this.#log;
    this.#log = null;
    this.#gate.finished(this.#copy, log);
  }
}
