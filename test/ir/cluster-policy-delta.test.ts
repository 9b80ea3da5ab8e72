// A cluster's BackendTrafficPolicy settings travel with the cluster: to
// worker threads (structured clone of the delta) and to `gatehouse proxy`
// (the delta as JSON), and a changed policy ships the cluster again.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IRDeltaEncoder } from '../../src/ir/delta.ts';
import type { Cluster, IR } from '../../src/ir/types.ts';
import { IRDeltaDecoder } from './delta-decoder.ts';

const policy: Cluster['policy'] = {
  loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'Cookie', name: 'lb', ttlMs: 60_000 } },
  connectTimeoutMs: 2_000,
  circuitBreaker: { maxConnections: 10, maxPendingRequests: 5, maxParallelRequests: 20, maxParallelRetries: 3 },
  outlierDetection: { consecutive5xx: 5, consecutiveGatewayErrors: 0, consecutiveLocalOriginFailures: 5, intervalMs: 3_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 },
  healthCheck: { type: 'HTTP', intervalMs: 3_000, timeoutMs: 1_000, unhealthyThreshold: 3, healthyThreshold: 1, path: '/healthz', method: 'GET', expectedStatuses: [200] },
  retry: { numRetries: 2, triggers: ['connect-failure'], statusCodes: [], budget: { percent: 20, minRetryConcurrency: 3 } },
};

function irWith(cluster: Cluster): IR {
  return { version: 1, listeners: [], clusters: { [cluster.name]: cluster } };
}

test('a cluster policy survives the delta as JSON, and a changed one is sent again', () => {
  const encoder = new IRDeltaEncoder();
  const decoder = new IRDeltaDecoder();
  const web: Cluster = { name: 'web', protocol: 'http1', endpoints: [{ address: '10.0.0.1', port: 80 }], policy };
  const first = decoder.decode(JSON.parse(JSON.stringify(encoder.encode(irWith(web)))), true);
  assert.deepEqual(first.clusters.web, web);
  const changed: Cluster = { ...web, policy: { ...policy, slowStartWindowMs: 10_000, loadBalancer: { type: 'LeastRequest' } } };
  const delta = encoder.encode(irWith(changed));
  assert.equal(delta.define.clusters.length, 1);
  assert.deepEqual(decoder.decode(JSON.parse(JSON.stringify(delta)), false).clusters.web, changed);
  assert.deepEqual(structuredClone(delta).define.clusters[0][1], changed);
});
