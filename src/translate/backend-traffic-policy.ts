// A BackendTrafficPolicy's spec -> the IR's ClusterPolicy: what the data
// plane does for the clusters the policy reaches (load balancing, timeouts,
// retries, circuit breaking, passive and active health, slow start). Pure:
// which clusters a policy reaches is the attachment framework's business.
//
// Defaults, where the spec leaves a field out (Envoy Gateway's where it has
// one, so that a policy moved from it behaves the same):
//
//   field                                     default
//   loadBalancer (absent)                     round robin (Envoy Gateway: LeastRequest; a
//                                             cluster without policy keeps Gatehouse's fast
//                                             round robin, so say LeastRequest to get it)
//   consistentHash.cookie.ttl                 none: a session cookie
//   timeout.tcp.connectTimeout                the data plane's (--upstream-connect-timeout, 10 s)
//   timeout.http.requestTimeout               none (the route's, if any)
//   timeout.http.connectionIdleTimeout        the data plane's upstream keep-alive (4 s)
//   retry.numRetries                          2
//   retry.perRetry.timeout                    none (the route's backendRequest timeout, if any)
//   retry.perRetry.backOff.baseInterval       25 ms
//   retry.perRetry.backOff.maxInterval        10 x baseInterval
//   retry.retryOn (absent)                    connect-failure, refused-stream and
//                                             retriable-status-codes with 503
//   retry.retryOn.triggers (absent, codes     retriable-status-codes
//     given)
//   retry.budget.percent                      20
//   retry.budget.minRetryConcurrency          3
//   circuitBreaker.* (in a circuitBreaker)    1024 each
//   healthCheck.passive.consecutive5XxErrors  5
//     consecutiveGatewayErrors                0 (off)
//     consecutiveLocalOriginFailures          5
//     interval                                3 s
//     baseEjectionTime                        30 s
//     maxEjectionPercent                      10
//   healthCheck.active.interval               3 s
//     timeout                                 1 s
//     unhealthyThreshold                      3
//     healthyThreshold                        1
//     http.method                             GET
//     http.expectedStatuses                   [200]
import { parseDuration } from '../api/durations.ts';
import type { BackendTrafficPolicySpec as CrdSpec } from '../api/types.ts';
import type {
  ActiveHealthCheckIR,
  CircuitBreakerIR,
  ClusterPolicy,
  ClusterRetryIR,
  LoadBalancerIR,
  OutlierDetectionIR,
  RetryTrigger,
} from '../ir/types.ts';

/** A Gateway API duration string: `1h`, `10s`, `1m30s`, `500ms`. */
export type Duration = string;

/** The spec as the CRD defines it (api/types.ts); targetRefs are the attachment framework's business, not this module's. */
export type BackendTrafficPolicySpec = Omit<CrdSpec, 'targetRefs'> & { targetRefs?: unknown[] };

/** One thing wrong with a spec: the field (a path from `spec`) and why. */
export interface PolicyProblem {
  field: string;
  reason: string;
}

export type ClusterSettingsResult =
  | { ok: true; settings: ClusterPolicy }
  | { ok: false; problems: PolicyProblem[] };

export const DEFAULT_NUM_RETRIES = 2;
export const DEFAULT_BACKOFF_BASE_MS = 25;
export const DEFAULT_RETRY_TRIGGERS: readonly RetryTrigger[] = ['connect-failure', 'refused-stream', 'retriable-status-codes'];
export const DEFAULT_RETRY_STATUS_CODES: readonly number[] = [503];
export const DEFAULT_BUDGET = { percent: 20, minRetryConcurrency: 3 } as const;
export const DEFAULT_CIRCUIT_LIMIT = 1024;
export const DEFAULT_OUTLIER: Readonly<OutlierDetectionIR> = {
  consecutive5xx: 5,
  consecutiveGatewayErrors: 0,
  consecutiveLocalOriginFailures: 5,
  intervalMs: 3_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
};
export const DEFAULT_ACTIVE = { intervalMs: 3_000, timeoutMs: 1_000, unhealthyThreshold: 3, healthyThreshold: 1, method: 'GET', expectedStatuses: [200] } as const;

const TRIGGERS: ReadonlySet<string> = new Set<RetryTrigger>([
  '5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx', 'refused-stream', 'retriable-status-codes',
]);
/** Envoy's gRPC-status triggers: they need gRPC status handling the data plane does not have. */
const GRPC_TRIGGERS: ReadonlySet<string> = new Set(['cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 6265 cookie-name is a token too; the value we set is base64url. */
const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT']);

/** The cluster settings `spec` asks for, or every problem with it (then nothing is programmed from it). */
export function clusterSettings(spec: BackendTrafficPolicySpec): ClusterSettingsResult {
  const c = new Checker();
  const settings: ClusterPolicy = {};
  const lb = spec.loadBalancer;
  if (lb !== undefined) {
    const balancer = loadBalancer(lb, c);
    if (balancer !== undefined) settings.loadBalancer = balancer;
    if (lb.slowStart !== undefined) {
      if (lb.type === 'ConsistentHash') c.problem('loadBalancer.slowStart', 'slow start does not apply to ConsistentHash (an endpoint owns its keys whatever its weight)');
      const window = c.duration('loadBalancer.slowStart.window', lb.slowStart.window, { required: true, positive: true });
      if (window !== undefined) settings.slowStartWindowMs = window;
    }
  }
  const connect = c.duration('timeout.tcp.connectTimeout', spec.timeout?.tcp?.connectTimeout, { positive: true });
  if (connect !== undefined) settings.connectTimeoutMs = connect;
  const request = c.duration('timeout.http.requestTimeout', spec.timeout?.http?.requestTimeout, { positive: true });
  if (request !== undefined) settings.requestTimeoutMs = request;
  const idle = c.duration('timeout.http.connectionIdleTimeout', spec.timeout?.http?.connectionIdleTimeout, { positive: true });
  if (idle !== undefined) settings.connectionIdleTimeoutMs = idle;
  if (spec.retry !== undefined) settings.retry = retry(spec.retry, c);
  if (spec.circuitBreaker !== undefined) settings.circuitBreaker = circuitBreaker(spec.circuitBreaker, c);
  if (spec.healthCheck?.passive !== undefined) settings.outlierDetection = passive(spec.healthCheck.passive, c);
  if (spec.healthCheck?.active !== undefined) {
    const active = activeCheck(spec.healthCheck.active, c);
    if (active !== undefined) settings.healthCheck = active;
  }
  return c.problems.length === 0 ? { ok: true, settings } : { ok: false, problems: c.problems };
}

function loadBalancer(lb: NonNullable<BackendTrafficPolicySpec['loadBalancer']>, c: Checker): LoadBalancerIR | undefined {
  switch (lb.type) {
    case 'RoundRobin':
    case 'LeastRequest':
    case 'Random':
      if (lb.consistentHash !== undefined) c.problem('loadBalancer.consistentHash', `only with type ConsistentHash, not ${lb.type}`);
      return { type: lb.type };
    case 'ConsistentHash': {
      const ch = lb.consistentHash;
      if (ch === undefined) {
        c.problem('loadBalancer.consistentHash', 'required with type ConsistentHash');
        return undefined;
      }
      switch (ch.type) {
        case 'SourceIP':
          return { type: 'ConsistentHash', hashOn: { type: 'SourceIP' } };
        case 'Header': {
          const name = ch.header?.name;
          if (typeof name !== 'string' || !TOKEN.test(name)) {
            c.problem('loadBalancer.consistentHash.header.name', name === undefined ? 'required with type Header' : `${JSON.stringify(name)} is not a header name`);
            return undefined;
          }
          return { type: 'ConsistentHash', hashOn: { type: 'Header', name: name.toLowerCase() } };
        }
        case 'Cookie': {
          const name = ch.cookie?.name;
          if (typeof name !== 'string' || !TOKEN.test(name)) {
            c.problem('loadBalancer.consistentHash.cookie.name', name === undefined ? 'required with type Cookie' : `${JSON.stringify(name)} is not a cookie name`);
            return undefined;
          }
          const ttl = c.duration('loadBalancer.consistentHash.cookie.ttl', ch.cookie?.ttl, { positive: true });
          return { type: 'ConsistentHash', hashOn: ttl === undefined ? { type: 'Cookie', name } : { type: 'Cookie', name, ttlMs: ttl } };
        }
        default:
          c.problem('loadBalancer.consistentHash.type', `${JSON.stringify((ch as { type: unknown }).type)} is not Header, Cookie or SourceIP`);
          return undefined;
      }
    }
    default:
      c.problem('loadBalancer.type', `${JSON.stringify((lb as { type: unknown }).type)} is not RoundRobin, LeastRequest, Random or ConsistentHash`);
      return undefined;
  }
}

function retry(r: NonNullable<BackendTrafficPolicySpec['retry']>, c: Checker): ClusterRetryIR {
  const out: ClusterRetryIR = {
    numRetries: c.count('retry.numRetries', r.numRetries, 0) ?? DEFAULT_NUM_RETRIES,
    triggers: [...DEFAULT_RETRY_TRIGGERS],
    statusCodes: [...DEFAULT_RETRY_STATUS_CODES],
  };
  const perTry = c.duration('retry.perRetry.timeout', r.perRetry?.timeout, { positive: true });
  if (perTry !== undefined) out.perTryTimeoutMs = perTry;
  const base = c.duration('retry.perRetry.backOff.baseInterval', r.perRetry?.backOff?.baseInterval, { positive: true });
  const max = c.duration('retry.perRetry.backOff.maxInterval', r.perRetry?.backOff?.maxInterval, { positive: true });
  if (base !== undefined) out.backoffBaseMs = base;
  if (max !== undefined) {
    if (max < (base ?? DEFAULT_BACKOFF_BASE_MS)) c.problem('retry.perRetry.backOff.maxInterval', 'is shorter than baseInterval');
    out.backoffMaxMs = max;
  }
  const on = r.retryOn;
  if (on !== undefined) {
    const codes: number[] = [];
    (on.httpStatusCodes ?? []).forEach((code, i) => {
      if (!(Number.isInteger(code) && code >= 400 && code <= 599)) c.problem(`retry.retryOn.httpStatusCodes[${i}]`, `${String(code)} is not a status code from 400 to 599 (only failures are retried)`);
      else codes.push(code);
    });
    out.statusCodes = [...new Set(codes)].sort((a, b) => a - b);
    const triggers: RetryTrigger[] = [];
    (on.triggers ?? ((on.httpStatusCodes ?? []).length !== 0 ? ['retriable-status-codes'] : [])).forEach((t, i) => {
      if (TRIGGERS.has(t)) triggers.push(t as RetryTrigger);
      else if (GRPC_TRIGGERS.has(t)) c.problem(`retry.retryOn.triggers[${i}]`, `${JSON.stringify(t)} is a gRPC status trigger, which Gatehouse does not support`);
      else c.problem(`retry.retryOn.triggers[${i}]`, `${JSON.stringify(t)} is not a known retry trigger`);
    });
    out.triggers = [...new Set(triggers)];
    if (on.triggers === undefined && (on.httpStatusCodes ?? []).length === 0) c.problem('retry.retryOn', 'names neither triggers nor httpStatusCodes');
    if (codes.length !== 0 && !out.triggers.includes('retriable-status-codes')) {
      c.problem('retry.retryOn.httpStatusCodes', 'need the retriable-status-codes trigger to take effect');
    }
  }
  if (r.budget !== undefined) {
    const percent = r.budget.percent ?? DEFAULT_BUDGET.percent;
    if (!(typeof percent === 'number' && Number.isFinite(percent) && percent >= 0 && percent <= 100)) {
      c.problem('retry.budget.percent', `${String(percent)} is not a percentage from 0 to 100`);
    }
    const min = c.count('retry.budget.minRetryConcurrency', r.budget.minRetryConcurrency, 0) ?? DEFAULT_BUDGET.minRetryConcurrency;
    out.budget = { percent, minRetryConcurrency: min };
  }
  return out;
}

function circuitBreaker(cb: NonNullable<BackendTrafficPolicySpec['circuitBreaker']>, c: Checker): CircuitBreakerIR {
  return {
    maxConnections: c.count('circuitBreaker.maxConnections', cb.maxConnections, 1) ?? DEFAULT_CIRCUIT_LIMIT,
    maxPendingRequests: c.count('circuitBreaker.maxPendingRequests', cb.maxPendingRequests, 0) ?? DEFAULT_CIRCUIT_LIMIT,
    maxParallelRequests: c.count('circuitBreaker.maxParallelRequests', cb.maxParallelRequests, 1) ?? DEFAULT_CIRCUIT_LIMIT,
    maxParallelRetries: c.count('circuitBreaker.maxParallelRetries', cb.maxParallelRetries, 0) ?? DEFAULT_CIRCUIT_LIMIT,
  };
}

function passive(p: NonNullable<NonNullable<BackendTrafficPolicySpec['healthCheck']>['passive']>, c: Checker): OutlierDetectionIR {
  const f = 'healthCheck.passive';
  const percent = p.maxEjectionPercent ?? DEFAULT_OUTLIER.maxEjectionPercent;
  if (!(Number.isInteger(percent) && percent >= 0 && percent <= 100)) c.problem(`${f}.maxEjectionPercent`, `${String(percent)} is not a whole percentage from 0 to 100`);
  return {
    consecutive5xx: c.count(`${f}.consecutive5XxErrors`, p.consecutive5XxErrors, 0) ?? DEFAULT_OUTLIER.consecutive5xx,
    consecutiveGatewayErrors: c.count(`${f}.consecutiveGatewayErrors`, p.consecutiveGatewayErrors, 0) ?? DEFAULT_OUTLIER.consecutiveGatewayErrors,
    consecutiveLocalOriginFailures: c.count(`${f}.consecutiveLocalOriginFailures`, p.consecutiveLocalOriginFailures, 0) ?? DEFAULT_OUTLIER.consecutiveLocalOriginFailures,
    intervalMs: c.duration(`${f}.interval`, p.interval, { positive: true }) ?? DEFAULT_OUTLIER.intervalMs,
    baseEjectionTimeMs: c.duration(`${f}.baseEjectionTime`, p.baseEjectionTime, { positive: true }) ?? DEFAULT_OUTLIER.baseEjectionTimeMs,
    maxEjectionPercent: percent,
  };
}

function activeCheck(a: NonNullable<NonNullable<BackendTrafficPolicySpec['healthCheck']>['active']>, c: Checker): ActiveHealthCheckIR | undefined {
  const f = 'healthCheck.active';
  if (a.type !== 'HTTP') {
    c.problem(`${f}.type`, `${JSON.stringify(a.type)} is not supported; only HTTP`);
    return undefined;
  }
  const http = a.http;
  if (http === undefined) {
    c.problem(`${f}.http`, 'required with type HTTP');
    return undefined;
  }
  if (typeof http.path !== 'string' || !http.path.startsWith('/') || /[\s\u0000-\u001f\u007f]/.test(http.path)) {
    c.problem(`${f}.http.path`, `${JSON.stringify(http.path)} is not an absolute path without spaces or control characters`);
  }
  const method = (http.method ?? DEFAULT_ACTIVE.method).toUpperCase();
  if (!METHODS.has(method) || method === 'CONNECT') c.problem(`${f}.http.method`, `${JSON.stringify(http.method)} is not a method a health check can use`);
  const expected: number[] = [];
  (http.expectedStatuses ?? DEFAULT_ACTIVE.expectedStatuses).forEach((s, i) => {
    if (!(Number.isInteger(s) && s >= 100 && s <= 599)) c.problem(`${f}.http.expectedStatuses[${i}]`, `${String(s)} is not a status code from 100 to 599`);
    else expected.push(s);
  });
  const intervalMs = c.duration(`${f}.interval`, a.interval, { positive: true }) ?? DEFAULT_ACTIVE.intervalMs;
  const timeoutMs = c.duration(`${f}.timeout`, a.timeout, { positive: true }) ?? DEFAULT_ACTIVE.timeoutMs;
  return {
    type: 'HTTP',
    intervalMs,
    timeoutMs,
    unhealthyThreshold: c.count(`${f}.unhealthyThreshold`, a.unhealthyThreshold, 1) ?? DEFAULT_ACTIVE.unhealthyThreshold,
    healthyThreshold: c.count(`${f}.healthyThreshold`, a.healthyThreshold, 1) ?? DEFAULT_ACTIVE.healthyThreshold,
    path: http.path,
    method,
    expectedStatuses: [...new Set(expected)].sort((x, y) => x - y),
  };
}

class Checker {
  readonly problems: PolicyProblem[] = [];

  problem(field: string, reason: string): void {
    this.problems.push({ field: `spec.${field}`, reason });
  }

  /** Milliseconds of an optional duration; undefined when absent or invalid (a problem is noted then). */
  duration(field: string, value: unknown, opts: { required?: boolean; positive?: boolean } = {}): number | undefined {
    if (value === undefined) {
      if (opts.required) this.problem(field, 'required');
      return undefined;
    }
    const ms = typeof value === 'string' ? parseDuration(value) : null;
    if (ms === null) {
      this.problem(field, `${JSON.stringify(value)} is not a duration (e.g. 500ms, 10s, 1m30s)`);
      return undefined;
    }
    if (opts.positive && ms === 0) {
      this.problem(field, 'must be longer than 0');
      return undefined;
    }
    return ms;
  }

  /** A whole number at least `min`; undefined when absent or invalid (a problem is noted then). */
  count(field: string, value: unknown, min: number): number | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 2 ** 31 - 1) {
      this.problem(field, `${JSON.stringify(value)} is not a whole number from ${min}`);
      return undefined;
    }
    return value;
  }
}
