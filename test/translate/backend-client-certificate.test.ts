// Gateway spec.tls.backend.clientCertificateRef through translate(): the
// Gateway's routes reach TLS clusters through copies that present its
// certificate (plain clusters, and other Gateways, are untouched); a bad
// reference sets the Gateway's ResolvedRefs False with the spec's reasons
// and leaves it Accepted; copies are the same objects from one call to the next.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { KubeObject } from '../../src/api/types.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { parsePool } from '../../src/translate/addresses.ts';
import { newTranslateMemo, translate, type TranslateMemo } from '../../src/translate/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-client-cert-'));
execFileSync('/usr/bin/openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'k'), '-out', join(dir, 'c'), '-subj', '/CN=gw-client', '-days', '1'], { stdio: 'ignore' });
const CERT = readFileSync(join(dir, 'c'), 'utf8');
const KEY = readFileSync(join(dir, 'k'), 'utf8');
rmSync(dir, { recursive: true, force: true });
const b64 = (s: string) => Buffer.from(s).toString('base64');

const gw = (name: string, port: number, ref?: Record<string, unknown>) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: 'app' },
  spec: { gatewayClassName: 'gatehouse', listeners: [{ name: 'http', port, protocol: 'HTTP' }], ...(ref ? { tls: { backend: { clientCertificateRef: ref } } } : {}) },
});

function objects(ref?: Record<string, unknown>): KubeObject[] {
  const list = [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse' }, spec: { controllerName: 'gatehouse.dev/gateway-controller' } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'app' } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } },
    gw('with-cert', 80, ref),
    gw('plain', 8080),
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'client', namespace: 'app' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(CERT), 'tls.key': b64(KEY) } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'client', namespace: 'other' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(CERT), 'tls.key': b64(KEY) } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'broken', namespace: 'app' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64('nope'), 'tls.key': b64(KEY) } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'secure', namespace: 'app' }, spec: { ports: [{ name: 'https', port: 443 }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'app' }, spec: { ports: [{ name: 'http', port: 80 }] } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ca', namespace: 'app' }, data: { 'ca.crt': CERT } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'BackendTLSPolicy', metadata: { name: 'p', namespace: 'app' }, spec: {
      targetRefs: [{ group: '', kind: 'Service', name: 'secure' }], validation: { caCertificateRefs: [{ group: '', kind: 'ConfigMap', name: 'ca' }], hostname: 'abc.example.com' },
    } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'app' }, spec: {
      parentRefs: [{ name: 'with-cert' }, { name: 'plain' }],
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/s' } }], backendRefs: [{ name: 'secure', port: 443 }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'secure', port: 443 } } }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/w' } }], backendRefs: [{ name: 'web', port: 80 }] },
      ],
    } },
  ];
  return list.map((o, i) => ({ ...o, metadata: { generation: 1, creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), ...o.metadata } })) as unknown as KubeObject[];
}

function run(ref?: Record<string, unknown>, memo?: TranslateMemo, objs: KubeObject[] = objects(ref)) {
  const result = translate(buildSnapshot(objs), {
    controllerName: 'gatehouse.dev/gateway-controller',
    addressing: { pool: parsePool('10.9.0.0/24'), hostAddress: '192.0.2.10', previous: {} },
    memo,
  });
  const conditions = (name: string) => Object.fromEntries(
    (result.statuses.get(`Gateway|app|${name}`) as { conditions: { type: string; status: string; reason: string; message: string }[] }).conditions.map((c) => [c.type, c]),
  );
  const routesOn = (port: number) => result.ir.listeners.find((l) => l.port === port)!.gatewayListeners[0].virtualHosts[0].routes;
  return { result, conditions, routesOn };
}

test('a Gateway with a client certificate reaches TLS clusters through copies that present it; plain clusters and other Gateways are untouched', () => {
  const { result, conditions, routesOn } = run({ group: '', kind: 'Secret', name: 'client' });
  const mine = routesOn(80);
  const secureRoute = mine.find((e) => e.match.path.value === '/s')!;
  assert.equal(secureRoute.backends[0].cluster, 'app/secure:443@app/with-cert');
  assert.deepEqual(secureRoute.filters.map((f) => (f.type === 'RequestMirror' ? f.cluster : f.type)), ['app/secure:443@app/with-cert']);
  assert.equal(mine.find((e) => e.match.path.value === '/w')!.backends[0].cluster, 'app/web:80');
  const copy = result.ir.clusters['app/secure:443@app/with-cert'];
  assert.deepEqual(copy.tls?.clientCertificate, { certChain: CERT, privateKey: KEY });
  assert.equal(copy.tls?.serverName, 'abc.example.com');
  assert.equal(result.ir.clusters['app/secure:443'].tls?.clientCertificate, undefined);
  // The other Gateway presents nothing.
  assert.equal(routesOn(8080).find((e) => e.match.path.value === '/s')!.backends[0].cluster, 'app/secure:443');
  assert.equal(conditions('with-cert').ResolvedRefs.status, 'True');
  assert.equal(conditions('with-cert').Accepted.status, 'True');
  assert.equal(conditions('plain').ResolvedRefs, undefined);
});

test('bad client certificate references: ResolvedRefs False with the reasons of the spec, the Gateway stays Accepted, nothing presented', () => {
  const cases: [Record<string, unknown>, string, string][] = [
    [{ group: '', kind: 'Secret', name: 'missing' }, 'InvalidClientCertificateRef', 'Secret not found'],
    [{ group: '', kind: 'ConfigMap', name: 'client' }, 'InvalidClientCertificateRef', 'unsupported kind'],
    [{ group: 'example.com', kind: 'Secret', name: 'client' }, 'InvalidClientCertificateRef', 'unsupported kind'],
    [{ group: '', kind: 'Secret', name: 'broken' }, 'InvalidClientCertificateRef', 'tls.crt'],
    [{ group: '', kind: 'Secret', name: 'client', namespace: 'other' }, 'RefNotPermitted', 'no ReferenceGrant in other'],
  ];
  for (const [ref, reason, text] of cases) {
    const { result, conditions, routesOn } = run(ref);
    const c = conditions('with-cert');
    assert.equal(c.ResolvedRefs.status, 'False', reason);
    assert.equal(c.ResolvedRefs.reason, reason);
    assert.ok(c.ResolvedRefs.message.includes(text), `${c.ResolvedRefs.message} should include ${text}`);
    assert.ok(c.ResolvedRefs.message.startsWith('spec.tls.backend.clientCertificateRef'), c.ResolvedRefs.message);
    assert.equal(c.Accepted.status, 'True');
    assert.equal(routesOn(80).find((e) => e.match.path.value === '/s')!.backends[0].cluster, 'app/secure:443');
    assert.ok(!Object.keys(result.ir.clusters).some((n) => n.includes('@')));
    assert.ok(!c.ResolvedRefs.message.includes('PRIVATE KEY'));
  }
});

test('an unchanged config gives the same copy and virtual host objects (nothing for the IR delta to send again)', () => {
  const memo = newTranslateMemo();
  const ref = { group: '', kind: 'Secret', name: 'client' };
  // The same object instances, as the file provider keeps unchanged objects.
  const objs = objects(ref);
  const first = run(ref, memo, objs);
  const second = run(ref, memo, objs);
  assert.equal(second.result.ir.clusters['app/secure:443@app/with-cert'], first.result.ir.clusters['app/secure:443@app/with-cert']);
  assert.equal(second.routesOn(80)[0], first.routesOn(80)[0]);
});
