// clusterSettings: a BackendTrafficPolicy spec -> the IR's ClusterPolicy,
// with the defaults documented in the module, or the problems naming
// each bad field.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterSettings, type BackendTrafficPolicySpec } from '../../src/translate/backend-traffic-policy.ts';
import type { ClusterPolicy } from '../../src/ir/types.ts';

const valid: [string, BackendTrafficPolicySpec, ClusterPolicy][] = [
  ['empty spec: nothing set', {}, {}],
  ['least request', { loadBalancer: { type: 'LeastRequest' } }, { loadBalancer: { type: 'LeastRequest' } }],
  ['round robin with slow start', { loadBalancer: { type: 'RoundRobin', slowStart: { window: '30s' } } }, { loadBalancer: { type: 'RoundRobin' }, slowStartWindowMs: 30_000 }],
  ['random', { loadBalancer: { type: 'Random' } }, { loadBalancer: { type: 'Random' } }],
  [
    'consistent hash on a header: the name lower-cased',
    { loadBalancer: { type: 'ConsistentHash', consistentHash: { type: 'Header', header: { name: 'X-Tenant' } } } },
    { loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'Header', name: 'x-tenant' } } },
  ],
  [
    'consistent hash on a cookie with a ttl',
    { loadBalancer: { type: 'ConsistentHash', consistentHash: { type: 'Cookie', cookie: { name: 'lb', ttl: '1h' } } } },
    { loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'Cookie', name: 'lb', ttlMs: 3_600_000 } } },
  ],
  [
    'consistent hash on the source address',
    { loadBalancer: { type: 'ConsistentHash', consistentHash: { type: 'SourceIP' } } },
    { loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'SourceIP' } } },
  ],
  [
    'timeouts',
    { timeout: { tcp: { connectTimeout: '2s' }, http: { requestTimeout: '1m30s', connectionIdleTimeout: '500ms' } } },
    { connectTimeoutMs: 2_000, requestTimeoutMs: 90_000, connectionIdleTimeoutMs: 500 },
  ],
  [
    'retry with nothing but itself: Envoy Gateway defaults',
    { retry: {} },
    { retry: { numRetries: 2, triggers: ['connect-failure', 'refused-stream', 'retriable-status-codes'], statusCodes: [503] } },
  ],
  [
    'retry in full',
    {
      retry: {
        numRetries: 5,
        perRetry: { timeout: '250ms', backOff: { baseInterval: '100ms', maxInterval: '1s' } },
        retryOn: { httpStatusCodes: [503, 500, 503], triggers: ['retriable-status-codes', 'reset', 'reset'] },
        budget: { percent: 50 },
      },
    },
    {
      retry: {
        numRetries: 5, perTryTimeoutMs: 250, backoffBaseMs: 100, backoffMaxMs: 1_000,
        triggers: ['retriable-status-codes', 'reset'], statusCodes: [500, 503], budget: { percent: 50, minRetryConcurrency: 3 },
      },
    },
  ],
  [
    'retryOn with codes only: the trigger for them is implied',
    { retry: { numRetries: 1, retryOn: { httpStatusCodes: [502] } } },
    { retry: { numRetries: 1, triggers: ['retriable-status-codes'], statusCodes: [502] } },
  ],
  [
    'circuit breaker: what is not given is 1024',
    { circuitBreaker: { maxParallelRequests: 10 } },
    { circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxParallelRequests: 10, maxParallelRetries: 1024 } },
  ],
  [
    'passive health: defaults',
    { healthCheck: { passive: {} } },
    { outlierDetection: { consecutive5xx: 5, consecutiveGatewayErrors: 0, consecutiveLocalOriginFailures: 5, intervalMs: 3_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 } },
  ],
  [
    'passive health: set',
    { healthCheck: { passive: { consecutive5XxErrors: 3, consecutiveGatewayErrors: 2, consecutiveLocalOriginFailures: 0, interval: '1s', baseEjectionTime: '10s', maxEjectionPercent: 50 } } },
    { outlierDetection: { consecutive5xx: 3, consecutiveGatewayErrors: 2, consecutiveLocalOriginFailures: 0, intervalMs: 1_000, baseEjectionTimeMs: 10_000, maxEjectionPercent: 50 } },
  ],
  [
    'active health: defaults around the path',
    { healthCheck: { active: { type: 'HTTP', http: { path: '/healthz' } } } },
    { healthCheck: { type: 'HTTP', intervalMs: 3_000, timeoutMs: 1_000, unhealthyThreshold: 3, healthyThreshold: 1, path: '/healthz', method: 'GET', expectedStatuses: [200] } },
  ],
  [
    'active health: set',
    { healthCheck: { active: { type: 'HTTP', interval: '5s', timeout: '2s', unhealthyThreshold: 2, healthyThreshold: 2, http: { path: '/v3', method: 'head', expectedStatuses: [204, 200] } } } },
    { healthCheck: { type: 'HTTP', intervalMs: 5_000, timeoutMs: 2_000, unhealthyThreshold: 2, healthyThreshold: 2, path: '/v3', method: 'HEAD', expectedStatuses: [200, 204] } },
  ],
];

for (const [name, spec, want] of valid) {
  test(`clusterSettings: ${name}`, () => {
    assert.deepEqual(clusterSettings(spec), { ok: true, settings: want });
  });
}

const invalid: [string, unknown, { field: string; reason: RegExp }[]][] = [
  ['unknown balancer', { loadBalancer: { type: 'Fastest' } }, [{ field: 'spec.loadBalancer.type', reason: /"Fastest" is not RoundRobin/ }]],
  ['consistent hash without its settings', { loadBalancer: { type: 'ConsistentHash' } }, [{ field: 'spec.loadBalancer.consistentHash', reason: /required/ }]],
  [
    'consistent hash on a header without a name',
    { loadBalancer: { type: 'ConsistentHash', consistentHash: { type: 'Header' } } },
    [{ field: 'spec.loadBalancer.consistentHash.header.name', reason: /required with type Header/ }],
  ],
  [
    'a header name with a space',
    { loadBalancer: { type: 'ConsistentHash', consistentHash: { type: 'Header', header: { name: 'x tenant' } } } },
    [{ field: 'spec.loadBalancer.consistentHash.header.name', reason: /is not a header name/ }],
  ],
  [
    'cookie with a bad ttl',
    { loadBalancer: { type: 'ConsistentHash', consistentHash: { type: 'Cookie', cookie: { name: 'lb', ttl: '1d' } } } },
    [{ field: 'spec.loadBalancer.consistentHash.cookie.ttl', reason: /"1d" is not a duration/ }],
  ],
  ['consistentHash under another type', { loadBalancer: { type: 'Random', consistentHash: { type: 'SourceIP' } } }, [{ field: 'spec.loadBalancer.consistentHash', reason: /only with type ConsistentHash/ }]],
  ['slow start without a window', { loadBalancer: { type: 'LeastRequest', slowStart: {} } }, [{ field: 'spec.loadBalancer.slowStart.window', reason: /required/ }]],
  [
    'slow start with consistent hash',
    { loadBalancer: { type: 'ConsistentHash', consistentHash: { type: 'SourceIP' }, slowStart: { window: '10s' } } },
    [{ field: 'spec.loadBalancer.slowStart', reason: /does not apply to ConsistentHash/ }],
  ],
  ['a zero connect timeout', { timeout: { tcp: { connectTimeout: '0s' } } }, [{ field: 'spec.timeout.tcp.connectTimeout', reason: /longer than 0/ }]],
  ['a request timeout that is no duration', { timeout: { http: { requestTimeout: '10' } } }, [{ field: 'spec.timeout.http.requestTimeout', reason: /not a duration/ }]],
  ['negative retries', { retry: { numRetries: -1 } }, [{ field: 'spec.retry.numRetries', reason: /whole number from 0/ }]],
  [
    'a gRPC trigger and an unknown one',
    { retry: { retryOn: { triggers: ['unavailable', 'sometimes'] } } },
    [
      { field: 'spec.retry.retryOn.triggers[0]', reason: /gRPC status trigger/ },
      { field: 'spec.retry.retryOn.triggers[1]', reason: /not a known retry trigger/ },
    ],
  ],
  ['a status that is not a failure', { retry: { retryOn: { httpStatusCodes: [200] } } }, [{ field: 'spec.retry.retryOn.httpStatusCodes[0]', reason: /from 400 to 599/ }]],
  [
    'codes without their trigger',
    { retry: { retryOn: { httpStatusCodes: [503], triggers: ['reset'] } } },
    [{ field: 'spec.retry.retryOn.httpStatusCodes', reason: /retriable-status-codes trigger/ }],
  ],
  ['maxInterval under baseInterval', { retry: { perRetry: { backOff: { baseInterval: '1s', maxInterval: '100ms' } } } }, [{ field: 'spec.retry.perRetry.backOff.maxInterval', reason: /shorter than baseInterval/ }]],
  ['a budget over 100%', { retry: { budget: { percent: 120 } } }, [{ field: 'spec.retry.budget.percent', reason: /percentage/ }]],
  ['zero connections', { circuitBreaker: { maxConnections: 0 } }, [{ field: 'spec.circuitBreaker.maxConnections', reason: /whole number from 1/ }]],
  ['a fractional limit', { circuitBreaker: { maxParallelRequests: 1.5 } }, [{ field: 'spec.circuitBreaker.maxParallelRequests', reason: /whole number/ }]],
  ['ejection percent over 100', { healthCheck: { passive: { maxEjectionPercent: 101 } } }, [{ field: 'spec.healthCheck.passive.maxEjectionPercent', reason: /percentage/ }]],
  ['a TCP active check', { healthCheck: { active: { type: 'TCP' } } }, [{ field: 'spec.healthCheck.active.type', reason: /only HTTP/ }]],
  ['an HTTP check without http', { healthCheck: { active: { type: 'HTTP' } } }, [{ field: 'spec.healthCheck.active.http', reason: /required/ }]],
  [
    'a relative path and a CONNECT check',
    { healthCheck: { active: { type: 'HTTP', http: { path: 'healthz', method: 'CONNECT' } } } },
    [
      { field: 'spec.healthCheck.active.http.path', reason: /absolute path/ },
      { field: 'spec.healthCheck.active.http.method', reason: /not a method a health check can use/ },
    ],
  ],
  ['a zero unhealthy threshold', { healthCheck: { active: { type: 'HTTP', unhealthyThreshold: 0, http: { path: '/' } } } }, [{ field: 'spec.healthCheck.active.unhealthyThreshold', reason: /from 1/ }]],
];

for (const [name, spec, want] of invalid) {
  test(`clusterSettings refuses ${name}`, () => {
    const result = clusterSettings(spec as BackendTrafficPolicySpec);
    assert.equal(result.ok, false, JSON.stringify(result));
    if (result.ok) return;
    assert.deepEqual(result.problems.map((p) => p.field), want.map((w) => w.field));
    result.problems.forEach((p, i) => assert.match(p.reason, want[i].reason, p.field));
  });
}

test('clusterSettings reports every problem of a spec, not only the first', () => {
  const result = clusterSettings({ timeout: { tcp: { connectTimeout: 'x' } }, circuitBreaker: { maxConnections: -2 }, retry: { numRetries: 0.5 } });
  assert.equal(result.ok, false);
  if (!result.ok) assert.deepEqual(result.problems.map((p) => p.field).sort(), ['spec.circuitBreaker.maxConnections', 'spec.retry.numRetries', 'spec.timeout.tcp.connectTimeout']);
});
