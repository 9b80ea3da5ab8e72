// A route author writes an EndpointSlice that points the gateway at
// itself (its admin API, one of its listeners) or at the cloud metadata
// service. Config files as a user writes them, loaded by the file provider
// and translated as standalone and Kubernetes modes would: the refused
// endpoints are not in the IR, and each route's status says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDirectory } from '../../src/providers/file/loader.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { translate, type TranslateResult } from '../../src/translate/index.ts';
import { hostPort, KUBERNETES_ENDPOINT_DEFAULTS, STANDALONE_ENDPOINT_DEFAULTS, type EndpointPolicyOptions } from '../../src/net/endpoint-policy.ts';

const ADMIN_PORT = 9901;
const LISTENER_PORT = 18080;

/** A Service `name` whose one EndpointSlice holds `address`:`port` and a harmless 10.20.0.1 on the same port. */
function service(name: string, addressType: 'IPv4' | 'IPv6', address: string, port: number): string {
  const other = addressType === 'IPv4' ? '10.20.0.1' : '2001:db8::20';
  return `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: tenant}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: tenant, labels: {kubernetes.io/service-name: ${name}}}
addressType: ${addressType}
ports: [{name: http, port: ${port}}]
endpoints: [{addresses: ["${address}", "${other}"]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: tenant}
spec:
  parentRefs: [{name: shared, namespace: infra}]
  hostnames: [${name}.example.com]
  rules: [{backendRefs: [{name: ${name}, port: 80}]}]
`;
}

const GATEWAY = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: v1
kind: Namespace
metadata: {name: tenant}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: ${LISTENER_PORT}, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
`;

function configDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-endpoints-'));
  fs.writeFileSync(path.join(dir, 'gateway.yaml'), GATEWAY);
  fs.writeFileSync(path.join(dir, 'tenant.yaml'), [
    service('admin', 'IPv4', '127.0.0.1', ADMIN_PORT),
    service('mapped', 'IPv6', '::ffff:127.0.0.1', ADMIN_PORT),
    service('listener', 'IPv4', '127.0.0.1', LISTENER_PORT),
    service('metadata', 'IPv4', '169.254.169.254', 80),
    service('local', 'IPv4', '127.0.0.1', 3000),
  ].join(''));
  return dir;
}

function translateDir(dir: string, endpoints: EndpointPolicyOptions): TranslateResult {
  const loaded = loadDirectory(dir);
  assert.deepEqual(loaded.errors, [], 'the config loads without errors');
  return translate(buildSnapshot(loaded.objects.map((o) => o.object)), {
    controllerName: 'gatehouse.dev/gateway-controller',
    addressing: { pool: null, hostAddress: '192.0.2.10', previous: {} },
    endpoints,
  });
}

function endpoints(r: TranslateResult, svc: string): string[] {
  const cluster = r.ir.clusters[`tenant/${svc}:80`];
  assert.ok(cluster, `cluster tenant/${svc}:80 is in the IR`);
  return cluster.endpoints.map((e) => hostPort(e.address, e.port));
}

function resolvedRefs(r: TranslateResult, route: string): { status: string; reason: string; message: string } {
  const st = r.statuses.get(`HTTPRoute|tenant|${route}`) as { parents: { conditions: { type: string; status: string; reason: string; message: string }[] }[] };
  return st.parents[0].conditions.find((c) => c.type === 'ResolvedRefs')!;
}

test('standalone: the admin API, a listener and cloud metadata are refused; other loopback endpoints serve', { timeout: 10_000 }, (t) => {
  const dir = configDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = translateDir(dir, { ...STANDALONE_ENDPOINT_DEFAULTS, admin: { address: '127.0.0.1', port: ADMIN_PORT } });

  const refused: [string, string, RegExp][] = [
    ['admin', '127.0.0.1:9901', /127\.0\.0\.1:9901 is the gateway itself \(9901 is the admin API port/],
    ['mapped', '[::ffff:127.0.0.1]:9901', /\[::ffff:127\.0\.0\.1\]:9901 is the gateway itself \(9901 is the admin API port/],
    ['listener', `127.0.0.1:${LISTENER_PORT}`, new RegExp(`127\\.0\\.0\\.1:${LISTENER_PORT} is the gateway itself \\(${LISTENER_PORT} is the port of listener infra/shared/http`)],
    ['metadata', '169.254.169.254:80', /169\.254\.169\.254 is link-local/],
  ];
  for (const [svc, endpoint, why] of refused) {
    assert.ok(!endpoints(r, svc).includes(endpoint), `${endpoint} is not an endpoint of ${svc}`);
    assert.equal(endpoints(r, svc).length, 1, `${svc}: the other endpoint still serves`);
    const c = resolvedRefs(r, svc);
    assert.equal(c.status, 'False', `${svc}: ResolvedRefs`);
    assert.equal(c.reason, 'EndpointNotPermitted', `${svc}: reason`);
    assert.match(c.message, why, `${svc}: message`);
    assert.match(c.message, /the other 1 endpoint\(s\) serve/, `${svc}: message`);
  }
  assert.deepEqual(endpoints(r, 'local'), ['127.0.0.1:3000', '10.20.0.1:3000']);
  assert.equal(resolvedRefs(r, 'local').status, 'True');
});

test('kubernetes defaults: every loopback endpoint is refused as well', { timeout: 10_000 }, (t) => {
  const dir = configDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = translateDir(dir, { ...KUBERNETES_ENDPOINT_DEFAULTS, admin: { address: '127.0.0.1', port: ADMIN_PORT } });
  assert.deepEqual(endpoints(r, 'local'), ['10.20.0.1:3000']);
  assert.match(resolvedRefs(r, 'local').message, /127\.0\.0\.1 is a loopback address/);
  // The gateway itself is still named as such, not as mere loopback.
  assert.match(resolvedRefs(r, 'admin').message, /is the gateway itself/);
  for (const svc of ['admin', 'mapped', 'listener', 'metadata']) assert.equal(endpoints(r, svc).length, 1, svc);
});
