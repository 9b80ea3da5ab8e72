// translate() for TLS, TCP and UDP listeners and TLSRoute, TCPRoute,
// UDPRoute: listener kinds and conflicts, attachment, backends, status,
// and the L4 routes of each socket in the IR.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { KubeObject } from '../../src/api/types.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { translate, type TranslateResult } from '../../src/translate/index.ts';
import { parsePool } from '../../src/translate/addresses.ts';

const BASE: KubeObject[] = YAML.parseAllDocuments(fs.readFileSync(path.join(import.meta.dirname, 'cases', 'base.yaml'), 'utf8')).map((d) => d.toJSON());

function run(...objects: KubeObject[]): TranslateResult {
  return translate(buildSnapshot([...BASE, ...objects]), {
    controllerName: 'gatehouse.dev/gateway-controller',
    addressing: { pool: parsePool('10.9.0.0/24'), hostAddress: '192.0.2.10', previous: {} },
  });
}

function gateway(listeners: unknown[]): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'infra', generation: 1 }, spec: { gatewayClassName: 'gatehouse', listeners } } as KubeObject;
}

const ALL = { namespaces: { from: 'All' } };

function l4route(kind: string, name: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z'): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind, metadata: { name, namespace: 'app', generation: 2, creationTimestamp: created }, spec: { parentRefs: [{ name: 'gw', namespace: 'infra' }], ...spec } } as KubeObject;
}

interface Status { parents: { conditions: { type: string; status: string; reason: string; message: string }[] }[] }
interface GwStatus { listeners: { name: string; attachedRoutes: number; supportedKinds: { kind: string }[]; conditions: { type: string; status: string; reason: string }[] }[] }

function cond(r: TranslateResult, key: string, type: string): string {
  const s = r.statuses.get(key) as Status;
  const c = s.parents[0].conditions.find((x) => x.type === type)!;
  return `${c.status}/${c.reason}`;
}

function listenerStatus(r: TranslateResult, name: string) {
  return (r.statuses.get('Gateway|infra|gw') as GwStatus).listeners.find((l) => l.name === name)!;
}

function listenerCond(r: TranslateResult, name: string, type: string): string {
  const c = listenerStatus(r, name).conditions.find((x) => x.type === type)!;
  return `${c.status}/${c.reason}`;
}

test('TLS passthrough: a TLSRoute attaches by hostname, its backends and mode reach the IR', () => {
  const r = run(
    gateway([{ name: 'tls', port: 443, protocol: 'TLS', hostname: '*.example.com', tls: { mode: 'Passthrough' }, allowedRoutes: ALL }]),
    l4route('TLSRoute', 'a', { hostnames: ['a.example.com'], rules: [{ backendRefs: [{ name: 'web', port: 80, weight: 3 }, { name: 'api', port: 8080 }] }] }),
  );
  assert.equal(cond(r, 'TLSRoute|app|a', 'Accepted'), 'True/Accepted');
  assert.equal(cond(r, 'TLSRoute|app|a', 'ResolvedRefs'), 'True/ResolvedRefs');
  assert.deepEqual(listenerStatus(r, 'tls').supportedKinds.map((k) => k.kind), ['TLSRoute']);
  assert.equal(listenerStatus(r, 'tls').attachedRoutes, 1);
  const sock = r.ir.listeners[0];
  assert.equal(sock.protocol, 'TLS');
  assert.deepEqual(sock.l4, { routes: [{ name: 'app/a', hostname: 'a.example.com', mode: 'Passthrough', backends: [{ weight: 3, cluster: 'app/web:80' }, { weight: 1, cluster: 'app/api:8080' }] }] });
  assert.deepEqual(r.ir.clusters['app/web:80'].endpoints.map((e) => e.address), ['10.1.0.1', '10.1.0.2']);
});

test('TLSRoute hostnames that miss the listener hostname: NoMatchingListenerHostname, nothing in the IR', () => {
  const r = run(
    gateway([{ name: 'tls', port: 443, protocol: 'TLS', hostname: 'a.example.com', tls: { mode: 'Passthrough' }, allowedRoutes: ALL }]),
    l4route('TLSRoute', 'b', { hostnames: ['b.example.com'], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }),
  );
  assert.equal(cond(r, 'TLSRoute|app|b', 'Accepted'), 'False/NoMatchingListenerHostname');
  assert.deepEqual(r.ir.listeners[0].l4?.routes, []);
});

test('route kinds per protocol: a TCPRoute on a TLS listener is not allowed; a TLS listener asked for HTTPRoute has InvalidRouteKinds', () => {
  const r = run(
    gateway([
      { name: 'tls', port: 443, protocol: 'TLS', tls: { mode: 'Passthrough' }, allowedRoutes: ALL },
      { name: 'odd', port: 8443, protocol: 'TLS', tls: { mode: 'Passthrough' }, allowedRoutes: { ...ALL, kinds: [{ kind: 'HTTPRoute' }] } },
    ]),
    l4route('TCPRoute', 't', { rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }),
  );
  assert.equal(cond(r, 'TCPRoute|app|t', 'Accepted'), 'False/NotAllowedByListeners');
  assert.equal(listenerCond(r, 'odd', 'ResolvedRefs'), 'False/InvalidRouteKinds');
  assert.deepEqual(listenerStatus(r, 'odd').supportedKinds, []);
});

test('TCPRoute backends: missing Service, unknown kind, cross-namespace without a grant; weight 0 left out', () => {
  const gw = gateway([{ name: 'tcp', port: 9000, protocol: 'TCP', allowedRoutes: ALL }]);
  const missing = run(gw, l4route('TCPRoute', 't', { rules: [{ backendRefs: [{ name: 'nope', port: 80 }, { name: 'web', port: 80 }] }] }));
  assert.equal(cond(missing, 'TCPRoute|app|t', 'Accepted'), 'True/Accepted');
  assert.equal(cond(missing, 'TCPRoute|app|t', 'ResolvedRefs'), 'False/BackendNotFound');
  assert.deepEqual(missing.ir.listeners[0].l4?.routes[0].backends, [{ weight: 1, cluster: null }, { weight: 1, cluster: 'app/web:80' }]);
  const kind = run(gw, l4route('TCPRoute', 't', { rules: [{ backendRefs: [{ group: 'example.com', kind: 'Thing', name: 'web', port: 80 }] }] }));
  assert.equal(cond(kind, 'TCPRoute|app|t', 'ResolvedRefs'), 'False/InvalidKind');
  const cross = run(gw, l4route('TCPRoute', 't', { rules: [{ backendRefs: [{ name: 'web', namespace: 'other', port: 80 }] }] }));
  assert.equal(cond(cross, 'TCPRoute|app|t', 'ResolvedRefs'), 'False/RefNotPermitted');
  const weights = run(gw, l4route('TCPRoute', 't', { rules: [{ backendRefs: [{ name: 'web', port: 80, weight: 7 }, { name: 'api', port: 8080, weight: 0 }] }] }));
  assert.deepEqual(weights.ir.listeners[0].l4?.routes[0].backends, [{ weight: 7, cluster: 'app/web:80' }]);
});

test('cross-namespace backend with a ReferenceGrant from UDPRoutes resolves', () => {
  const grant = { apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', metadata: { name: 'g', namespace: 'other' }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'UDPRoute', namespace: 'app' }], to: [{ group: '', kind: 'Service' }] } } as KubeObject;
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'dns', namespace: 'other' }, spec: { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } } as KubeObject;
  const gw = gateway([{ name: 'udp', port: 53, protocol: 'UDP', allowedRoutes: ALL }]);
  const route = l4route('UDPRoute', 'u', { rules: [{ backendRefs: [{ name: 'dns', namespace: 'other', port: 53 }] }] });
  assert.equal(cond(run(gw, svc, route), 'UDPRoute|app|u', 'ResolvedRefs'), 'False/RefNotPermitted');
  const ok = run(gw, svc, grant, route);
  assert.equal(cond(ok, 'UDPRoute|app|u', 'ResolvedRefs'), 'True/ResolvedRefs');
  assert.equal(ok.ir.listeners[0].key, '10.9.0.1:53/udp');
});

test('port sharing: TCP and UDP on one port do not conflict; TLS and HTTPS on one port do', () => {
  const r = run(gateway([
    { name: 'tcp', port: 53, protocol: 'TCP', allowedRoutes: ALL },
    { name: 'udp', port: 53, protocol: 'UDP', allowedRoutes: ALL },
    { name: 'https', port: 443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'tls' }] } },
    { name: 'tls', port: 443, protocol: 'TLS', tls: { mode: 'Passthrough' } },
  ]));
  assert.equal(listenerCond(r, 'tcp', 'Conflicted'), 'False/NoConflicts');
  assert.equal(listenerCond(r, 'udp', 'Conflicted'), 'False/NoConflicts');
  assert.equal(listenerCond(r, 'tls', 'Conflicted'), 'True/ProtocolConflict');
  assert.deepEqual(r.ir.listeners.map((l) => l.key), ['10.9.0.1:53', '10.9.0.1:53/udp', '10.9.0.1:443']);
});

test('two TCPRoutes on one listener: both Accepted and counted, the older one carries the traffic', () => {
  const r = run(
    gateway([{ name: 'tcp', port: 9000, protocol: 'TCP', allowedRoutes: ALL }]),
    l4route('TCPRoute', 'newer', { rules: [{ backendRefs: [{ name: 'api', port: 8080 }] }] }, '2026-01-02T00:00:00Z'),
    l4route('TCPRoute', 'older', { rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }, '2026-01-01T00:00:00Z'),
  );
  assert.equal(cond(r, 'TCPRoute|app|newer', 'Accepted'), 'True/Accepted');
  assert.equal(cond(r, 'TCPRoute|app|older', 'Accepted'), 'True/Accepted');
  assert.equal(listenerStatus(r, 'tcp').attachedRoutes, 2);
  assert.deepEqual(r.ir.listeners[0].l4?.routes.map((x) => x.name), ['app/older']);
});

test('sectionName and port select the listener a route attaches to', () => {
  const gw = gateway([{ name: 'a', port: 9000, protocol: 'TCP', allowedRoutes: ALL }, { name: 'b', port: 9001, protocol: 'TCP', allowedRoutes: ALL }]);
  const bySection = run(gw, { ...l4route('TCPRoute', 't', { rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }), spec: { parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'b' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } } as KubeObject);
  assert.deepEqual([listenerStatus(bySection, 'a').attachedRoutes, listenerStatus(bySection, 'b').attachedRoutes], [0, 1]);
  const wrongPort = run(gw, { ...l4route('TCPRoute', 't', {}), spec: { parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'b', port: 9000 }], rules: [] } } as KubeObject);
  assert.equal(cond(wrongPort, 'TCPRoute|app|t', 'Accepted'), 'False/NoMatchingParent');
});

test('TLS Terminate: the listener certificate is carried; without certificateRefs the listener is not served', () => {
  const ok = run(
    gateway([{ name: 'tls', port: 443, protocol: 'TLS', hostname: 'a.example.com', tls: { mode: 'Terminate', certificateRefs: [{ name: 'tls' }] }, allowedRoutes: ALL }]),
    l4route('TLSRoute', 'a', { hostnames: ['a.example.com'], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }),
  );
  assert.equal(listenerCond(ok, 'tls', 'Programmed'), 'True/Programmed');
  assert.equal(ok.ir.listeners[0].tls?.certificates.length, 1);
  assert.deepEqual(ok.ir.listeners[0].tls?.certificates[0].serverNames, ['a.example.com']);
  assert.equal(ok.ir.listeners[0].l4?.routes[0].mode, 'Terminate');
  const bad = run(gateway([{ name: 'tls', port: 443, protocol: 'TLS', tls: { mode: 'Terminate' }, allowedRoutes: ALL }]));
  assert.equal(listenerCond(bad, 'tls', 'ResolvedRefs'), 'False/InvalidCertificateRef');
  assert.equal(bad.ir.listeners.length, 0);
});
