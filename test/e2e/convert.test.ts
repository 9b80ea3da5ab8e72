// gatehouse convert: Envoy Gateway policies in, Gatehouse's out, valid
// against Gatehouse's CRDs; every field not carried named, none silently
// dropped (each leaf of the input is either in the output or named).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jsyaml from 'js-yaml';
import { convert } from '../../src/cli/convert.ts';
import { validateObject } from '../../src/api/validate.ts';

const INPUT = `apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: vip, namespace: infra}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: cloud, sectionName: https}
  enableProxyProtocol: true
  clientIPDetection: {xForwardedFor: {trustedCIDRs: [10.0.0.0/8]}}
  timeout: {http: {idleTimeout: 30s, requestReceivedTimeout: 1h, streamIdleTimeout: 5m}}
  connection: {bufferLimit: 32Ki, connectionLimit: {value: 1000, closeDelay: 1s}}
  http2: {maxConcurrentStreams: 50, onInvalidMessage: TerminateStream}
  headers: {enableEnvoyHeaders: true}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: glance, namespace: openstack}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: glance}]
  loadBalancer: {type: LeastRequest, slowStart: {window: 30s}}
  timeout: {tcp: {connectTimeout: 2s}, http: {requestTimeout: 10m, maxConnectionDuration: 1h}}
  retry: {numRetries: 3, perRetry: {timeout: 5s, backOff: {baseInterval: 100ms, maxInterval: 1s}}, retryOn: {httpStatusCodes: [503], triggers: [connect-failure]}}
  circuitBreaker: {maxConnections: 100, maxRequestsPerConnection: 10}
  healthCheck:
    active: {type: HTTP, interval: 5s, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 1, http: {path: /healthz, expectedStatuses: [200]}}
    passive: {consecutive5XxErrors: 3, baseEjectionTime: 30s}
  rateLimit: {type: Local}
---
apiVersion: v1
kind: Service
metadata: {name: untouched, namespace: infra}
`;

function leaves(v: unknown, at: string, out: string[]): string[] {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) leaves(x, at ? `${at}.${k}` : k, out);
  else out.push(at);
  return out;
}

test('convert: carried fields valid, the rest named, nothing silently dropped', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-convert-'));
  try {
    fs.writeFileSync(path.join(dir, 'eg.yaml'), INPUT);
    let stdout = '';
    let stderr = '';
    const code = convert([path.join(dir, 'eg.yaml')], (s) => (stdout += s), (s) => (stderr += s));
    assert.equal(code, 2, stderr);
    const docs = jsyaml.loadAll(stdout) as { apiVersion: string; kind: string; metadata: { name: string }; spec?: unknown }[];
    assert.equal(docs.length, 3);
    assert.equal(docs[2].kind, 'Service');
    const [ctp, btp] = docs;
    for (const d of [ctp, btp]) {
      assert.equal(d.apiVersion, 'gatehouse.dev/v1alpha1');
      assert.deepEqual(validateObject(d).errors, [], d.kind);
    }
    assert.deepEqual(ctp.spec, {
      targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'cloud', sectionName: 'https' }],
      proxyProtocol: {},
      clientIPDetection: { xForwardedFor: { trustedCIDRs: ['10.0.0.0/8'] } },
      timeout: { http: { idleTimeout: '30s', requestReceivedTimeout: '1h' } },
      connection: { bufferLimit: '32Ki', connectionLimit: { value: 1000 } },
      http2: { maxConcurrentStreams: 50 },
    });
    const named = [...stderr.matchAll(/not carried: (\S+ \S+): (\S+):/g)].map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(named.sort(), [
      'BackendTrafficPolicy openstack/glance spec.circuitBreaker.maxRequestsPerConnection',
      'BackendTrafficPolicy openstack/glance spec.rateLimit',
      'BackendTrafficPolicy openstack/glance spec.timeout.http.maxConnectionDuration',
      'ClientTrafficPolicy infra/vip spec.connection.connectionLimit.closeDelay',
      'ClientTrafficPolicy infra/vip spec.headers',
      'ClientTrafficPolicy infra/vip spec.http2.onInvalidMessage',
      'ClientTrafficPolicy infra/vip spec.timeout.http.streamIdleTimeout',
    ]);
    // Every leaf of the BackendTrafficPolicy input is in the output or named.
    const input = (jsyaml.loadAll(INPUT) as { spec: unknown }[])[1].spec;
    const kept = new Set(leaves(btp.spec, '', []));
    for (const leaf of leaves(input, '', [])) {
      assert.ok(kept.has(leaf) || named.some((n) => leaf === n.split(' spec.')[1] || leaf.startsWith(`${n.split(' spec.')[1]}.`)), `silently dropped: ${leaf}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
