// A cluster's BackendTrafficPolicy (the IR's ClusterPolicy), compiled for
// the request path: its limits, its retries, its passive health settings;
// and what requests report back to it (in flight, outcomes).

import type { ClusterPolicy, OutlierDetectionIR } from '../../ir/types.ts';
import { compileClusterRetry, mergeRetry, type CompiledRetry } from '../http/retry.ts';
import type { UpstreamCluster, UpstreamEndpoint } from './balancer.ts';
import { recordOutcome, type Outcome } from './endpoint-state.ts';

export interface ClusterBehaviour {
  /** circuitBreaker.maxConnections / maxPendingRequests; undefined: the data plane's limits. */
  readonly maxConnections: number | undefined;
  readonly maxPending: number | undefined;
  /** Requests in flight at most; Infinity: no limit. */
  readonly maxParallelRequests: number;
  /** Retries in flight at most; Infinity: no limit. */
  readonly maxParallelRetries: number;
  readonly outlier: OutlierDetectionIR | null;
  /** The policy's retries for routes without their own; null: none. */
  readonly retry: CompiledRetry | null;
  /** A request's deadline when its route sets none, ms; 0: none. */
  readonly requestTimeoutMs: number;
  /** Route retries merged with this policy's, by the route's (made on first use). */
  readonly merged: WeakMap<CompiledRetry, CompiledRetry>;
}

export function compileBehaviour(policy: ClusterPolicy): ClusterBehaviour {
  const cb = policy.circuitBreaker;
  const requestTimeoutMs = policy.requestTimeoutMs ?? 0;
  return {
    maxConnections: cb?.maxConnections,
    maxPending: cb?.maxPendingRequests,
    maxParallelRequests: cb?.maxParallelRequests ?? Infinity,
    maxParallelRetries: cb?.maxParallelRetries ?? Infinity,
    outlier: policy.outlierDetection ?? null,
    retry: policy.retry === undefined ? null : compileClusterRetry(policy.retry, requestTimeoutMs),
    requestTimeoutMs,
    merged: new WeakMap(),
  };
}

/** The retries a request on a route with `routeRetry` (null: none) makes to `cluster`. */
export function effectiveRetry(routeRetry: CompiledRetry | null, cluster: UpstreamCluster): CompiledRetry | null {
  const b = cluster.behaviour;
  if (b === null || b.retry === null) return routeRetry;
  if (routeRetry === null) return b.retry;
  let merged = b.merged.get(routeRetry);
  if (merged === undefined) b.merged.set(routeRetry, merged = mergeRetry(routeRetry, b.retry));
  return merged;
}

/** Whether one more retry may start now: under maxParallelRetries and the retry budget. */
export function mayRetry(cluster: UpstreamCluster, retry: CompiledRetry): boolean {
  const b = cluster.behaviour;
  if (b === null) return true;
  let limit = b.maxParallelRetries;
  const budget = retry.budget;
  if (budget !== null) {
    // Envoy's retry budget: a share of the requests in flight, never below the floor.
    limit = Math.min(limit, Math.max(budget.minRetryConcurrency, Math.floor((cluster.active * budget.percent) / 100)));
  }
  if (cluster.retriesActive < limit) return true;
  cluster.stats.retriesRefused++;
  return false;
}

/** How a request to `endpoint` ended, for passive health; true when it got the endpoint ejected. */
export function noteOutcome(endpoint: UpstreamEndpoint, outcome: Outcome): boolean {
  const cluster = endpoint.cluster;
  const od = cluster.behaviour?.outlier;
  if (od == null || endpoint.state === null) return false;
  if (!recordOutcome(endpoint.state, outcome, od, cluster.endpoints, Date.now())) return false;
  cluster.stats.ejections++;
  return true;
}
