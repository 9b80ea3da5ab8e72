// What a data plane knows about each endpoint of a cluster with a
// BackendTrafficPolicy: requests in flight (least request, circuit
// breaking), the active health check's verdict, passive health (outlier
// ejection) and when it joined (slow start). Kept by (cluster name,
// address:port) across configs, so a reload that keeps an endpoint keeps
// what was learnt about it, as Envoy keeps host state across cluster
// updates that keep the host.
//
// Per data plane, so per worker thread. Passive health is learnt from the
// traffic each worker forwards, without crossing threads on the request
// path: an endpoint that fails every request is ejected by each worker
// after that worker's own run of failures. Active health checks run once
// per process (health-check.ts) and their verdicts are sent to every
// worker (setHealthy), since a check's answer is the same for all.

import type { OutlierDetectionIR } from '../../ir/types.ts';

/** Envoy's max_ejection_time default: an ejection never lasts longer, however often it is repeated. */
export const MAX_EJECTION_MS = 300_000;

export class EndpointState {
  readonly key: string;
  /** Requests sent to it and not yet finished. */
  active = 0;
  /** The active health check's verdict; true until a check says otherwise (or when none runs). */
  healthy = true;
  /** Ejected (passive health) until this time, ms; 0 or past: not ejected. */
  ejectedUntil = 0;
  /** Times ejected, lessened by one per outlier interval spent not ejected (the ejection time's multiplier). */
  ejections = 0;
  consecutive5xx = 0;
  consecutiveGateway = 0;
  consecutiveLocal = 0;
  /** When it joined a cluster that already existed, or came back healthy, ms: slow start counts from here. 0: full weight. */
  since = 0;

  constructor(key: string) {
    this.key = key;
  }
}

/** Whether the endpoint may be chosen now: healthy and not ejected. */
export function available(state: EndpointState, now: number): boolean {
  return state.healthy && state.ejectedUntil <= now;
}

/** A cluster's endpoints, as passive health counts them. */
type Peers = readonly { readonly state: EndpointState | null }[];

/** How a request to an endpoint ended, for passive health. */
export type Outcome = number | 'local-failure';

/**
 * Counts `outcome` against the endpoint; true when that ejected it. A
 * response (any status) means the connection worked: the local-origin run
 * ends. `peers` are the cluster's endpoints, for maxEjectionPercent.
 */
export function recordOutcome(state: EndpointState, outcome: Outcome, od: OutlierDetectionIR, peers: Peers, now: number): boolean {
  if (outcome === 'local-failure') {
    state.consecutiveLocal++;
    return od.consecutiveLocalOriginFailures > 0 && state.consecutiveLocal >= od.consecutiveLocalOriginFailures && eject(state, od, peers, now);
  }
  state.consecutiveLocal = 0;
  if (outcome < 500) {
    state.consecutive5xx = 0;
    state.consecutiveGateway = 0;
    return false;
  }
  state.consecutive5xx++;
  if (outcome >= 502 && outcome <= 504) state.consecutiveGateway++;
  else state.consecutiveGateway = 0;
  const by5xx = od.consecutive5xx > 0 && state.consecutive5xx >= od.consecutive5xx;
  const byGateway = od.consecutiveGatewayErrors > 0 && state.consecutiveGateway >= od.consecutiveGatewayErrors;
  return (by5xx || byGateway) && eject(state, od, peers, now);
}

/**
 * Ejects the endpoint for baseEjectionTime x (times ejected before, less
 * one per interval spent since, plus one), at most MAX_EJECTION_MS; unless
 * that would put more than maxEjectionPercent of the cluster out at once.
 * Its counts start again either way, so a refused ejection is tried again
 * after another full run of failures rather than on every failure.
 */
function eject(state: EndpointState, od: OutlierDetectionIR, peers: Peers, now: number): boolean {
  state.consecutive5xx = state.consecutiveGateway = state.consecutiveLocal = 0;
  if (state.ejectedUntil > now) return false;
  let ejected = 0;
  for (const p of peers) if (p.state !== null && p.state.ejectedUntil > now) ejected++;
  if ((ejected + 1) * 100 > od.maxEjectionPercent * peers.length) return false;
  if (state.ejections > 0 && state.ejectedUntil > 0) {
    const quiet = Math.floor((now - state.ejectedUntil) / od.intervalMs);
    state.ejections = Math.max(0, state.ejections - Math.max(0, quiet));
  }
  state.ejections++;
  state.ejectedUntil = now + Math.min(Math.max(od.baseEjectionTimeMs, MAX_EJECTION_MS), od.baseEjectionTimeMs * state.ejections);
  return true;
}

/**
 * The endpoint states of one data plane, by cluster and endpoint. A
 * compile takes states with get() and then retain()s exactly those of the
 * new config; the rest are forgotten.
 */
export class EndpointStates {
  #states = new Map<string, EndpointState>();
  /** Clusters seen before: an endpoint new to one of these starts slow. */
  #clusters = new Set<string>();
  /** Verdicts of active checks, by key, kept for endpoints a config has not (yet) compiled. */
  readonly #health = new Map<string, boolean>();

  static key(cluster: string, address: string, port: number): string {
    return `${cluster}\u0000${address}:${port}`;
  }

  /** The endpoint's state, made if new (starting slow when `slowStart` and its cluster is not new). */
  get(cluster: string, address: string, port: number, slowStart: boolean, now: number): EndpointState {
    const key = EndpointStates.key(cluster, address, port);
    let state = this.#states.get(key);
    if (state === undefined) {
      state = new EndpointState(key);
      state.healthy = this.#health.get(key) ?? true;
      if (slowStart && this.#clusters.has(cluster)) state.since = now;
      this.#states.set(key, state);
    }
    return state;
  }

  /** Keeps the states of `keys` (and their clusters), forgets the rest. */
  retain(keys: Iterable<string>, clusters: Iterable<string>): void {
    const next = new Map<string, EndpointState>();
    for (const key of keys) {
      const state = this.#states.get(key);
      if (state !== undefined) next.set(key, state);
    }
    this.#states = next;
    this.#clusters = new Set(clusters);
    for (const key of this.#health.keys()) if (!next.has(key)) this.#health.delete(key);
  }

  /** An active check's verdict; an endpoint back to healthy starts slow again (when its cluster has slow start). */
  setHealthy(key: string, healthy: boolean, now: number): void {
    this.#health.set(key, healthy);
    const state = this.#states.get(key);
    if (state === undefined || state.healthy === healthy) return;
    state.healthy = healthy;
    if (healthy) state.since = now;
  }
}
