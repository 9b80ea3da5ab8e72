// HTTPRoute retries (GEP-1731): which failed tries are made again, how
// long to wait between them, and what a request that ran out of tries is
// answered. proxy.ts runs the tries; this module only decides.
//
// What is retried, when the rule has `retry` and tries are left:
//
//   failure of a try                                  GET HEAD OPTIONS      POST PATCH
//                                                     TRACE PUT DELETE      (others)
//   response status listed in `codes`                 yes                   yes
//   no connection (refused, unreachable, connect
//     timeout): the request was never sent            yes                   yes
//   the try timed out (timeouts.backendRequest, or
//     no response head within the response timeout)   yes                   yes
//   connection reset or closed, or a response that
//     is not HTTP, before any response head           yes                   no
//   the cluster at its connection cap (queue full
//     or waited too long)                             no                    no
//
// - Status codes and timeouts are retried for every method because the
//   spec says so: the route's owner listed the codes, and GEP-1731 retries
//   a try that "reached the configured BackendRequest timeout".
// - A reset after the request went out is where GEP-1731 says
//   implementations SHOULD NOT retry by default, since the backend may
//   have acted on it; the conformance suite (HTTPRouteRetryConnectionError)
//   requires it to be retried. Gatehouse retries it for the idempotent
//   methods of RFC 9110 §9.2.2 only, where acting twice is the same as
//   once, and never for POST or PATCH.
// - A cluster that refuses for overload is not retried: more tries are
//   more load.
// - Nothing is retried once any byte of the response went to the client,
//   nor when the request body cannot be sent again (replay-body.ts: longer
//   than maxReplayBodyBytes and partly sent), nor after the rule's
//   `timeouts.request`, which bounds all tries and waits together.
//
// A request that runs out of tries gets the last try's answer: the
// response itself for a listed status, 504 for a timeout, and 503 for
// connection failures (as Envoy: the backend is unavailable).

import type { ClusterRetryIR, RetryPolicy, RetryTrigger } from '../../ir/types.ts';

export interface CompiledRetry {
  /** Retried status codes: index = status - 400. */
  readonly codes: Uint8Array;
  /** Tries after the first. */
  readonly retries: number;
  /** The least wait before the first retry, ms. */
  readonly backoffMs: number;
  /** Each try's deadline (timeouts.backendRequest), ms; 0: the pool's response timeout only. */
  readonly perTryMs: number;
  /** All tries' deadline (timeouts.request), ms; 0: none. */
  readonly totalMs: number;
  /** The most wait between tries, ms; 0: ten times backoffMs. */
  readonly maxBackoffMs: number;
  /** A BackendTrafficPolicy's retryOn triggers (TRIGGER bits); 0: none. */
  readonly triggers: number;
  /** Whether the route's own table above applies (the rule has `retry`). */
  readonly routeRules: boolean;
  /** A BackendTrafficPolicy's retry budget; null: none. */
  readonly budget: { readonly percent: number; readonly minRetryConcurrency: number } | null;
}

/** retryOn triggers as bits. refused-stream is accepted and adds nothing: the h2c client already fails such a stream as a reset. */
export const TRIGGER: Readonly<Record<RetryTrigger, number>> = {
  '5xx': 1,
  'gateway-error': 2,
  reset: 4,
  'connect-failure': 8,
  'retriable-4xx': 16,
  'refused-stream': 32,
  'retriable-status-codes': 64,
};

/**
 * Envoy's base interval when none is given. The wait before retry n is
 * base * 2^(n-1), at most ten times the base (Envoy's cap), plus up to
 * half again at random so that clients failing together do not retry
 * together. It is never less than the base (the spec's minimum).
 */
export const DEFAULT_BACKOFF_MS = 25;
const MAX_BACKOFF_FACTOR = 10;

export function compileRetry(policy: RetryPolicy, requestMs: number | undefined, backendRequestMs: number | undefined): CompiledRetry {
  const codes = new Uint8Array(200);
  for (const code of policy.codes) {
    if (!(Number.isInteger(code) && code >= 400 && code <= 599)) throw new TypeError(`retry status code ${code} is not from 400 to 599`);
    codes[code - 400] = 1;
  }
  if (!(Number.isInteger(policy.attempts) && policy.attempts >= 0)) throw new TypeError(`invalid retry attempts ${policy.attempts}`);
  const backoffMs = policy.backoffMs ?? DEFAULT_BACKOFF_MS;
  if (!(Number.isFinite(backoffMs) && backoffMs >= 0)) throw new TypeError(`invalid retry backoff ${backoffMs}`);
  return {
    codes,
    retries: policy.attempts,
    backoffMs,
    perTryMs: backendRequestMs !== undefined && backendRequestMs > 0 ? backendRequestMs : 0,
    totalMs: requestMs !== undefined && requestMs > 0 ? requestMs : 0,
    maxBackoffMs: 0,
    triggers: 0,
    routeRules: true,
    budget: null,
  };
}

/**
 * A BackendTrafficPolicy's retries, for a route without `retry` of its
 * own. `requestTimeoutMs`: the policy's request timeout, bounding all tries.
 */
export function compileClusterRetry(policy: ClusterRetryIR, requestTimeoutMs: number): CompiledRetry {
  const codes = new Uint8Array(200);
  let triggers = 0;
  for (const t of policy.triggers) triggers |= TRIGGER[t];
  if ((triggers & TRIGGER['retriable-status-codes']) !== 0) {
    for (const code of policy.statusCodes) if (code >= 400 && code <= 599) codes[code - 400] = 1;
  }
  return {
    codes,
    retries: policy.numRetries,
    backoffMs: policy.backoffBaseMs ?? DEFAULT_BACKOFF_MS,
    perTryMs: policy.perTryTimeoutMs ?? 0,
    totalMs: requestTimeoutMs,
    maxBackoffMs: policy.backoffMaxMs ?? 0,
    triggers,
    routeRules: false,
    budget: policy.budget ?? null,
  };
}

/**
 * A rule's own retries with what a BackendTrafficPolicy adds where the
 * rule says nothing: its triggers, the per-try timeout (when the rule has
 * no backendRequest timeout), the most backoff and the budget. The rule's
 * codes, attempts and base backoff stand.
 */
export function mergeRetry(route: CompiledRetry, policy: CompiledRetry): CompiledRetry {
  return {
    ...route,
    perTryMs: route.perTryMs > 0 ? route.perTryMs : policy.perTryMs,
    totalMs: route.totalMs > 0 ? route.totalMs : policy.totalMs,
    maxBackoffMs: policy.maxBackoffMs,
    triggers: policy.triggers & ~TRIGGER['retriable-status-codes'],
    budget: policy.budget,
  };
}

export function retriesStatus(retry: CompiledRetry, status: number): boolean {
  if (status >= 400 && status <= 599 && retry.codes[status - 400] === 1) return true;
  const t = retry.triggers;
  if (t === 0) return false;
  if ((t & TRIGGER['5xx']) !== 0 && status >= 500) return true;
  if ((t & TRIGGER['gateway-error']) !== 0 && status >= 502 && status <= 504) return true;
  return (t & TRIGGER['retriable-4xx']) !== 0 && status === 409;
}

/** The wait before retry `n` (1 for the first), ms. */
export function backoffDelay(retry: CompiledRetry, n: number, random: () => number = Math.random): number {
  const base = retry.backoffMs;
  const cap = retry.maxBackoffMs > 0 ? retry.maxBackoffMs : base * MAX_BACKOFF_FACTOR;
  const grown = Math.min(base * 2 ** Math.min(n - 1, 30), cap);
  const wait = Math.max(base, grown);
  // With a policy's maxInterval the jitter stays under it too.
  const jitter = retry.maxBackoffMs > 0 ? Math.min(wait * 0.5, Math.max(0, cap - wait)) : wait * 0.5;
  return Math.round(wait + random() * jitter);
}

/** How a try failed without a response head. */
export type TryFailure = 'connect' | 'reset' | 'timeout' | 'overload';

const CONNECT_CODES: ReadonlySet<string> = new Set([
  'GATEHOUSE_CONNECT_FAILED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'GATEHOUSE_ROUTE_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'GATEHOUSE_UPSTREAM_SEND_TIMEOUT',
  'ETIMEDOUT',
]);
const OVERLOAD_CODES: ReadonlySet<string> = new Set(['GATEHOUSE_UPSTREAM_QUEUE_FULL', 'GATEHOUSE_UPSTREAM_QUEUE_TIMEOUT']);

export function tryFailure(err: Error): TryFailure {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (CONNECT_CODES.has(code)) return 'connect';
    if (TIMEOUT_CODES.has(code)) return 'timeout';
    if (OVERLOAD_CODES.has(code)) return 'overload';
  }
  return 'reset';
}

/** RFC 9110 §9.2.2. */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * Whether a try that failed this way may be made again under `retry`: the
 * route's table above when the rule has `retry`, or what the policy's
 * triggers say, as Envoy reads them: connect-failure, reset (any method,
 * as Envoy), and 5xx or gateway-error, which also take a try with no
 * response at all (connect failure, reset, timeout).
 */
export function retriesTryFailure(retry: CompiledRetry, failure: TryFailure, method: string): boolean {
  if (failure === 'overload') return false;
  if (retry.routeRules && retriesFailure(failure, method)) return true;
  const t = retry.triggers;
  if ((t & (TRIGGER['5xx'] | TRIGGER['gateway-error'])) !== 0) return true;
  if (failure === 'connect') return (t & TRIGGER['connect-failure']) !== 0;
  if (failure === 'reset') return (t & TRIGGER.reset) !== 0;
  return false;
}

/** Whether a try of `method` that failed this way may be made again (the table above). */
export function retriesFailure(failure: TryFailure, method: string): boolean {
  switch (failure) {
    case 'connect':
    case 'timeout':
      return true;
    case 'reset':
      return IDEMPOTENT.has(method);
    case 'overload':
      return false;
  }
}

/** The answer to a request whose last try failed this way. */
export function statusAfterTries(failure: TryFailure): 503 | 504 {
  return failure === 'timeout' ? 504 : 503;
}
