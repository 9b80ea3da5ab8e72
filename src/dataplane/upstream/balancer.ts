// Choosing where a request goes: a backend by weight, then an endpoint of
// its cluster in turn. Cumulative weights are prepared per config so a pick
// is one random number and a short scan.

import type { CompiledFilter } from '../http/filters.ts';
import type { MirrorGate } from '../http/mirror.ts';
import { ClusterAdmission } from './admission.ts';
import type { EndpointState } from './endpoint-state.ts';
import type { Balancer, PickContext } from './load-balancing.ts';
import type { Pool } from './pools.ts';
import type { ClusterBehaviour } from './policy.ts';
import { UpstreamSeries } from '../metrics.ts';

/** An endpoint's origin and the pool that holds its connections. */
export interface PooledOrigin {
  /** `http://address:port`, the pool's key. */
  readonly origin: string;
  readonly pool: Pool;
}

/** One endpoint of one cluster. */
export interface UpstreamEndpoint extends PooledOrigin {
  /** The cluster it belongs to: its connection cap and queue, and its name for logs. */
  readonly cluster: UpstreamCluster;
  /** What the data plane learnt about it (policy.ts); null in a cluster without a policy. */
  readonly state: EndpointState | null;
}

export interface UpstreamCluster {
  readonly name: string;
  readonly endpoints: readonly UpstreamEndpoint[];
  /**
   * Its connection cap and queue. Kept as long as the cluster is (a config
   * change that keeps the cluster keeps its counts); a changed cluster
   * starts afresh, as Envoy's do.
   */
  readonly admission: ClusterAdmission;
  /** Round-robin cursor; shared by all routes of the config. */
  next: number;
  /** Copies mirrored to this cluster go through here (mirror.ts); made on first use, kept with the cluster. */
  mirrorGate?: MirrorGate;
  /** Its BackendTrafficPolicy, compiled; null: plain round robin and nothing counted (the fast path). */
  readonly behaviour: ClusterBehaviour | null;
  /** With a behaviour: how it picks. */
  readonly balancer: Balancer | null;
  /** With a behaviour: requests in flight (circuit breaking, retry budget). */
  active: number;
  /** With a behaviour: requests between their first try and their end that are retrying. */
  retriesActive: number;
  /** Its counters (metrics.ts), by cluster name: a changed cluster keeps counting where the old one was. */
  readonly stats: UpstreamSeries;
}

export function upstreamCluster(
  name: string,
  origins: readonly PooledOrigin[],
  behaviour: ClusterBehaviour | null = null,
  states: readonly EndpointState[] = [],
  balancer: Balancer | null = null,
  stats: UpstreamSeries = new UpstreamSeries(name, [name]),
): UpstreamCluster {
  const endpoints: UpstreamEndpoint[] = [];
  const admission = new ClusterAdmission(name);
  if (behaviour !== null) {
    admission.maxConnections = behaviour.maxConnections;
    admission.maxPending = behaviour.maxPending;
  }
  const cluster: UpstreamCluster = {
    name, endpoints, admission, next: 0, behaviour, balancer, active: 0, retriesActive: 0, stats,
  };
  origins.forEach(({ origin, pool }, i) => endpoints.push({ origin, pool, cluster, state: behaviour === null ? null : states[i] }));
  return cluster;
}

export interface CompiledBackend {
  /** null when the reference was invalid or named an unknown cluster: 500. */
  readonly cluster: UpstreamCluster | null;
  readonly filters: readonly CompiledFilter[];
}

/** `ctx`: the request, for a consistent-hash balancer's key. */
export function pickEndpoint(cluster: UpstreamCluster, ctx?: PickContext): UpstreamEndpoint | undefined {
  if (cluster.balancer !== null) return cluster.balancer.pick(cluster.endpoints, ctx, Date.now());
  const endpoints = cluster.endpoints;
  if (endpoints.length === 0) return undefined;
  const index = cluster.next;
  cluster.next = index + 1 >= endpoints.length ? 0 : index + 1;
  return endpoints[index];
}

export class WeightedBackends {
  readonly #backends: CompiledBackend[] = [];
  /** Running totals of weight; weight-0 backends are left out entirely. */
  readonly #cumulative: number[] = [];
  readonly #total: number;

  constructor(backends: Iterable<{ weight: number; backend: CompiledBackend }>) {
    let total = 0;
    for (const { weight, backend } of backends) {
      if (!(weight > 0)) continue;
      total += weight;
      this.#backends.push(backend);
      this.#cumulative.push(total);
    }
    this.#total = total;
  }

  /** The backends that can be chosen (weight above 0), for session persistence to look its endpoint up in. */
  get all(): readonly CompiledBackend[] {
    return this.#backends;
  }

  /** undefined when nothing can be chosen (no backends, or all weight 0). */
  pick(random: () => number = Math.random): CompiledBackend | undefined {
    const n = this.#backends.length;
    if (n === 0) return undefined;
    if (n === 1) return this.#backends[0];
    const r = random() * this.#total;
    const cumulative = this.#cumulative;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r < cumulative[mid]) hi = mid;
      else lo = mid + 1;
    }
    return this.#backends[lo];
  }
}
