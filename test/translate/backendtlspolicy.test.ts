// BackendTLSPolicy through translate(): the clusters of targeted Service
// ports get TLS settings in the IR (a port's own policy before the
// Service's; the oldest of two on one target), bad CA references get the
// reasons of GEP-1897 and fail their targets closed, status goes to
// `ancestors` per Gateway; appProtocol kubernetes.io/h2c makes an h2c cluster.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import type { KubeObject } from '../../src/api/types.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { parsePool } from '../../src/translate/addresses.ts';
import { translate } from '../../src/translate/index.ts';

const CA_PEM = execFileSync(
  '/usr/bin/openssl',
  ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=test-ca', '-days', '1'],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
);

const svc = (name: string, ports: Record<string, unknown>[]) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'app' }, spec: { ports } });
const slice = (svcName: string, ports: Record<string, unknown>[]) => ({
  apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${svcName}-1`, namespace: 'app', labels: { 'kubernetes.io/service-name': svcName } },
  addressType: 'IPv4', ports, endpoints: [{ addresses: ['10.1.0.1'] }],
});

const BASE = [
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse' }, spec: { controllerName: 'gatehouse.dev/gateway-controller' } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'app' } },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'app' }, spec: { gatewayClassName: 'gatehouse', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } },
  svc('secure', [{ name: 'btls', port: 443 }, { name: 'other', port: 8443 }]),
  slice('secure', [{ name: 'btls', port: 8443 }, { name: 'other', port: 9443 }]),
  svc('grpc', [{ name: 'h2', port: 80, appProtocol: 'kubernetes.io/h2c' }]),
  slice('grpc', [{ name: 'h2', port: 8080 }]),
  svc('unused', [{ name: 'x', port: 443 }]),
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'app' }, spec: {
    parentRefs: [{ name: 'gw' }],
    rules: [
      { matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [{ name: 'secure', port: 443 }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/b' } }], backendRefs: [{ name: 'secure', port: 8443 }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/g' } }], backendRefs: [{ name: 'grpc', port: 80 }] },
    ],
  } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ca', namespace: 'app' }, data: { 'ca.crt': CA_PEM } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'garbage', namespace: 'app' }, data: { 'ca.crt': '-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n' } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'nokey', namespace: 'app' }, data: { 'other.crt': CA_PEM } },
];

const cm = (name: string) => ({ group: '', kind: 'ConfigMap', name });

function policy(name: string, target: { name: string; sectionName?: string }, validation: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'BackendTLSPolicy', metadata: { name, namespace: 'app', generation: 2 }, spec: { targetRefs: [{ group: '', kind: 'Service', ...target }], validation } };
}

interface Cond { type: string; status: string; reason: string; message: string; observedGeneration?: number }
interface Ancestor { ancestorRef: { name: string; namespace: string; kind: string; group: string }; controllerName: string; conditions: Cond[] }

function run(extra: Record<string, unknown>[]) {
  const objects = [...BASE, ...extra].map((o, i) => ({
    ...o,
    metadata: { generation: 1, creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), ...(o.metadata as object) },
  })) as unknown as KubeObject[];
  const result = translate(buildSnapshot(objects), {
    controllerName: 'gatehouse.dev/gateway-controller',
    addressing: { pool: parsePool('10.9.0.0/24'), hostAddress: '192.0.2.10', previous: {} },
  });
  const ancestors = (name: string) => (result.statuses.get(`BackendTLSPolicy|app|${name}`) as { ancestors: Ancestor[] }).ancestors;
  const conditions = (name: string) => {
    const a = ancestors(name);
    assert.equal(a.length, 1, `${name}: one ancestor`);
    return Object.fromEntries(a[0].conditions.map((c) => [c.type, c]));
  };
  return { clusters: result.ir.clusters, ancestors, conditions };
}

test('a policy on a Service port: TLS settings on its cluster, status on the Gateway as ancestor', () => {
  const { clusters, ancestors, conditions } = run([policy('p', { name: 'secure', sectionName: 'btls' }, {
    caCertificateRefs: [cm('ca')], hostname: 'abc.example.com',
    subjectAltNames: [{ type: 'Hostname', hostname: 'abc.example.com' }, { type: 'URI', uri: 'spiffe://abc.example.com/id' }],
  })]);
  assert.deepEqual(clusters['app/secure:443'].tls, {
    serverName: 'abc.example.com', caCertificates: CA_PEM,
    subjectAltNames: [{ type: 'Hostname', value: 'abc.example.com' }, { type: 'URI', value: 'spiffe://abc.example.com/id' }],
  });
  assert.deepEqual(clusters['app/secure:443'].endpoints, [{ address: '10.1.0.1', port: 8443 }]);
  // The other port is not targeted: plain HTTP/1.1.
  assert.equal(clusters['app/secure:8443'].tls, undefined);
  assert.deepEqual(ancestors('p')[0].ancestorRef, { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'app', name: 'gw' });
  assert.equal(ancestors('p')[0].controllerName, 'gatehouse.dev/gateway-controller');
  const c = conditions('p');
  assert.equal(c.Accepted.status, 'True');
  assert.equal(c.Accepted.reason, 'Accepted');
  assert.equal(c.ResolvedRefs.status, 'True');
  assert.equal(c.Accepted.observedGeneration, 2);
});

test('wellKnownCACertificates System: no bundle in the IR (the system roots); a policy on no routed Service has no ancestors', () => {
  const { clusters, ancestors } = run([
    policy('sys', { name: 'secure' }, { wellKnownCACertificates: 'System', hostname: 'abc.example.com' }),
    policy('idle', { name: 'unused' }, { wellKnownCACertificates: 'System', hostname: 'abc.example.com' }),
  ]);
  // Without sectionName it covers every port of the Service.
  for (const name of ['app/secure:443', 'app/secure:8443']) assert.deepEqual(clusters[name].tls, { serverName: 'abc.example.com', subjectAltNames: [] });
  assert.deepEqual(ancestors('idle'), []);
});

test('bad CA references: the reasons of the spec; with no usable CA the targets fail closed', () => {
  const cases: [Record<string, unknown>, string, string][] = [
    [cm('missing'), 'InvalidCACertificateRef', 'caCertificateRef app/missing: ConfigMap not found'],
    [cm('nokey'), 'InvalidCACertificateRef', 'has no ca.crt'],
    [cm('garbage'), 'InvalidCACertificateRef', 'holds no PEM certificate that can be parsed'],
    [{ group: '', kind: 'Secret', name: 'ca' }, 'InvalidKind', 'kind core/Secret is not supported'],
  ];
  for (const [bad, reason, text] of cases) {
    const only = run([policy('p', { name: 'secure', sectionName: 'btls' }, { caCertificateRefs: [bad], hostname: 'abc.example.com' })]);
    const c = only.conditions('p');
    assert.equal(c.Accepted.status, 'False', reason);
    assert.equal(c.Accepted.reason, 'NoValidCACertificate');
    assert.equal(c.ResolvedRefs.status, 'False');
    assert.equal(c.ResolvedRefs.reason, reason);
    assert.ok(c.ResolvedRefs.message.includes(text), `${c.ResolvedRefs.message} should include ${text}`);
    // Never in cleartext: no endpoints, so the route's requests get a 503.
    assert.deepEqual(only.clusters['app/secure:443'].endpoints, []);
    assert.equal(only.clusters['app/secure:443'].tls, undefined);

    // Beside a good one: served with the good one, and reported.
    const mixed = run([policy('p', { name: 'secure', sectionName: 'btls' }, { caCertificateRefs: [cm('ca'), bad], hostname: 'abc.example.com' })]);
    assert.equal(mixed.conditions('p').Accepted.status, 'True');
    assert.equal(mixed.conditions('p').ResolvedRefs.reason, reason);
    assert.equal(mixed.clusters['app/secure:443'].tls?.caCertificates, CA_PEM);
  }
});

test('two policies on one target: the oldest wins, the other is Conflicted; a port policy beats a Service policy', () => {
  const { clusters, conditions } = run([
    policy('old', { name: 'secure', sectionName: 'btls' }, { caCertificateRefs: [cm('ca')], hostname: 'old.example.com' }),
    policy('new', { name: 'secure', sectionName: 'btls' }, { caCertificateRefs: [cm('ca')], hostname: 'new.example.com' }),
    policy('whole', { name: 'secure' }, { caCertificateRefs: [cm('ca')], hostname: 'whole.example.com' }),
  ]);
  assert.equal(clusters['app/secure:443'].tls?.serverName, 'old.example.com');
  assert.equal(clusters['app/secure:8443'].tls?.serverName, 'whole.example.com');
  assert.equal(conditions('old').Accepted.status, 'True');
  assert.equal(conditions('new').Accepted.status, 'False');
  assert.equal(conditions('new').Accepted.reason, 'Conflicted');
  assert.match(conditions('new').Accepted.message, /app\/old is older/);
  assert.equal(conditions('whole').Accepted.status, 'True');
});

test('appProtocol kubernetes.io/h2c: the cluster speaks cleartext HTTP/2', () => {
  const { clusters } = run([]);
  assert.equal(clusters['app/grpc:80'].protocol, 'h2c');
  assert.equal(clusters['app/secure:443'].protocol, 'http1');
});
