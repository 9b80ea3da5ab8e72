// Objects written for the released Gateway API bundles clusters run (v1.4
// and later), where the vendored CRDs spell a field differently
// (src/api/compat.ts): accepted, read as the newer spelling, with a warning
// naming the newer field; and warnings where errors go, an object with only
// warnings loaded and translated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { validateObject } from '../../src/api/validate.ts';
import { DEFAULT_SESSION_HEADER } from '../../src/api/compat.ts';
import { loadDirectory } from '../../src/providers/file/loader.ts';
import { GenerationTracker } from '../../src/providers/file/generations.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { translate } from '../../src/translate/index.ts';
import { GATEWAY_CLASS } from '../e2e/helpers.ts';

/** An HTTPRoute (or GRPCRoute) whose one rule has `sessionPersistence` as given (YAML flow). */
function route(sp: string, kind = 'HTTPRoute', apiVersion = 'gateway.networking.k8s.io/v1'): ReturnType<typeof validateObject> {
  return validateObject(parse(`apiVersion: ${apiVersion}
kind: ${kind}
metadata: {name: keystone, namespace: openstack}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - backendRefs: [{name: keystone, port: 5000}]
    sessionPersistence: ${sp}
`));
}

function sessionPersistence(r: ReturnType<typeof validateObject>): any {
  assert.deepEqual(r.errors, []);
  assert.ok(r.object);
  return (r.object.spec as any).rules[0].sessionPersistence;
}

const SP = 'spec.rules[0].sessionPersistence';

test('v1.4.1 cookie session persistence: sessionName and cookieConfig read as cookie.name and cookie, with warnings naming them', () => {
  const r = route('{sessionName: KEYSTONE_SESSION, type: Cookie, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}');
  assert.deepEqual(sessionPersistence(r), { type: 'Cookie', absoluteTimeout: '1h', cookie: { name: 'KEYSTONE_SESSION', lifetimeType: 'Permanent', path: '/' } });
  assert.deepEqual(r.warnings.map((w) => w.field), [`${SP}.cookieConfig`, `${SP}.sessionName`]);
  assert.match(r.warnings[0].reason, /cookieConfig is the Gateway API v1\.4 to v1\.6 spelling of cookie: read as cookie; write cookie instead/);
  assert.match(r.warnings[1].reason, /sessionName is the Gateway API v1\.4 to v1\.6 spelling of cookie\.name: read as cookie\.name/);
});

test('the CRD rules hold on the mapped object: Permanent without absoluteTimeout is still refused', () => {
  const r = route('{sessionName: s, cookieConfig: {lifetimeType: Permanent}}');
  assert.equal(r.object, null);
  assert.deepEqual(r.errors, [{ field: SP, reason: 'AbsoluteTimeout must be specified when cookie lifetimeType is Permanent' }]);
});

test('header session persistence: sessionName read as header.name; cookieConfig, valid for any type before v1.6, ignored with a warning', () => {
  const r = route('{type: Header, sessionName: X-Session, cookieConfig: {lifetimeType: Session}}');
  assert.deepEqual(sessionPersistence(r), { type: 'Header', header: { name: 'X-Session' } });
  assert.deepEqual(r.warnings.map((w) => w.field), [`${SP}.cookieConfig`, `${SP}.sessionName`]);
  assert.match(r.warnings[0].reason, /^ignored: cookieConfig .* applies to type Cookie only$/);
  assert.match(r.warnings[1].reason, /read as header\.name/);
});

test('the newer field wins over the older spelling of it', () => {
  const r = route('{sessionName: old, cookie: {name: new, lifetimeType: Session}, cookieConfig: {lifetimeType: Permanent}, absoluteTimeout: 1h}');
  assert.deepEqual(sessionPersistence(r).cookie, { name: 'new', lifetimeType: 'Session', path: '/' });
  assert.match(r.warnings.find((w) => w.field === `${SP}.sessionName`)!.reason, /^ignored: .*cookie\.name, which is set$/);
  assert.match(r.warnings.find((w) => w.field === `${SP}.cookieConfig`)!.reason, /cookie's own lifetimeType kept/);
});

test('a sessionName the newer field refuses is dropped with a warning, never the route', () => {
  const r = route('{sessionName: "my session"}');
  assert.deepEqual(sessionPersistence(r), { type: 'Cookie', cookie: { lifetimeType: 'Session', path: '/' } });
  assert.deepEqual(r.warnings.map((w) => w.field), [`${SP}.sessionName`, `${SP}.cookie`]);
  assert.match(r.warnings[0].reason, /^ignored: sessionName "my session" is not a valid cookie name/);
});

test('what v1.4 to v1.6 allowed without cookie or header is read with one', () => {
  const cookie = route('{}');
  assert.deepEqual(sessionPersistence(cookie), { type: 'Cookie', cookie: { lifetimeType: 'Session', path: '/' } });
  assert.match(cookie.warnings[0].reason, /cookie is required for type Cookie since Gateway API v1\.7: read as cookie: \{\}/);
  const header = route('{type: Header}');
  assert.deepEqual(sessionPersistence(header), { type: 'Header', header: { name: DEFAULT_SESSION_HEADER } });
  assert.equal(header.warnings[0].field, `${SP}.header.name`);
});

test('idleTimeout (v1.4, v1.5; removed in v1.6 without a counterpart) is kept as written, with a warning, and still checked', () => {
  const r = route('{cookie: {name: s}, idleTimeout: 30m}');
  assert.equal(sessionPersistence(r).idleTimeout, '30m');
  assert.deepEqual(r.warnings.map((w) => w.field), [`${SP}.idleTimeout`]);
  assert.match(r.warnings[0].reason, /removed in v1\.6 with no counterpart: read as written/);
  const bad = route('{cookie: {name: s}, idleTimeout: 30 minutes}');
  assert.equal(bad.object, null);
  assert.equal(bad.errors[0].field, `${SP}.idleTimeout`);
});

test('GRPCRoute and HTTPRoute v1beta1 read the older spellings too', () => {
  assert.deepEqual(sessionPersistence(route('{sessionName: g}', 'GRPCRoute')).cookie, { name: 'g', lifetimeType: 'Session', path: '/' });
  assert.deepEqual(sessionPersistence(route('{sessionName: b}', 'HTTPRoute', 'gateway.networking.k8s.io/v1beta1')).cookie, { name: 'b', lifetimeType: 'Session', path: '/' });
});

test('the current spelling gives no warning', () => {
  const r = route('{type: Cookie, cookie: {name: s, lifetimeType: Session}, absoluteTimeout: 1h}');
  sessionPersistence(r);
  assert.deepEqual(r.warnings, []);
});

test('a field of v1.7.0 the vendored API lacks (listener filters, address routability) is dropped with a warning naming it', () => {
  const r = validateObject(parse(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gc
  addresses: [{type: IPAddress, value: 10.0.0.1, routability: Cluster}]
  listeners:
  - {name: http, port: 80, protocol: HTTP, filters: [{type: RequestHeaderModifier}]}
`));
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.warnings.map((w) => w.field), ['spec.addresses[0].routability', 'spec.listeners[0].filters']);
  assert.match(r.warnings[0].reason, /^unknown field, ignored/);
  assert.equal((r.object!.spec as any).listeners[0].filters, undefined);
});

test('unknown-field warnings are bounded', () => {
  const extra = Array.from({ length: 40 }, (_, i) => `  x${i}: 1`).join('\n');
  const r = validateObject(parse(`apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n${extra}\n`));
  assert.deepEqual(r.errors, []);
  assert.equal(r.warnings.length, 17);
  assert.deepEqual(r.warnings[16], { field: '', reason: '24 more unknown fields, ignored' });
});

test('a route with only warnings loads, its warnings listed where errors go (marked), and it is translated', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-compat-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'all.yaml'), `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: keystone, namespace: openstack}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - backendRefs: [{name: keystone, port: 5000}]
    sessionPersistence: {sessionName: KEYSTONE, cookieConfig: {lifetimeType: Session}}
`);
  const loaded = loadDirectory(dir);
  assert.deepEqual(loaded.objects.map((o) => o.object.kind), ['GatewayClass', 'Gateway', 'HTTPRoute']);
  assert.deepEqual(loaded.errors.map((e) => [e.severity, e.object, e.field]), [
    ['warning', 'HTTPRoute openstack/keystone', `${SP}.cookieConfig`],
    ['warning', 'HTTPRoute openstack/keystone', `${SP}.sessionName`],
  ]);
  assert.match(loaded.errors[1].message, /^all\.yaml document 3 \(HTTPRoute openstack\/keystone\): spec\.rules\[0\]\.sessionPersistence\.sessionName: sessionName is/);
  const objects = new GenerationTracker().stamp(loaded.objects.map((o) => o.object));
  const result = translate(buildSnapshot(objects), { controllerName: 'gatehouse.dev/gateway-controller', addressing: { pool: null, hostAddress: '0.0.0.0', previous: {} } });
  const status = result.statuses.get('HTTPRoute|openstack|keystone') as any;
  const accepted = status.parents[0].conditions.find((c: any) => c.type === 'Accepted');
  assert.equal(accepted.status, 'True');
});

// ---------------------------------------------------------------- XListenerSet (v1.4)

const XLS = (listeners: string, extra = '') => `apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XListenerSet
metadata: {name: team, namespace: app}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners:
${listeners}${extra}
`;

test('v1.4 XListenerSet: validated against its own CRD, kept as XListenerSet, with a warning naming ListenerSet v1', () => {
  const r = validateObject(parse(XLS('  - {name: web, port: 8080, protocol: HTTP, hostname: team.example.com}')));
  assert.deepEqual(r.errors, []);
  assert.ok(r.object);
  assert.equal(r.object.kind, 'XListenerSet');
  assert.equal(r.object.apiVersion, 'gateway.networking.x-k8s.io/v1alpha1');
  // Defaults of its own CRD: the parentRef's group and kind, the listener's allowedRoutes.
  assert.deepEqual((r.object.spec as any).parentRef, { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw', namespace: 'infra' });
  assert.deepEqual((r.object.spec as any).listeners[0].allowedRoutes, { namespaces: { from: 'Same' } });
  assert.deepEqual(r.warnings.map((w) => w.field), ['kind']);
  assert.match(r.warnings[0].reason, /XListenerSet \(gateway\.networking\.x-k8s\.io\/v1alpha1\) is the Gateway API v1\.4 name of ListenerSet.*write apiVersion gateway\.networking\.k8s\.io\/v1, kind ListenerSet instead/);
});

test('v1.4 XListenerSet: its own rules hold (port may be left out, names must be unique); the v1 CRD is not used for it', () => {
  const noPort = validateObject(parse(XLS('  - {name: web, protocol: HTTP}')));
  assert.deepEqual(noPort.errors, []);
  assert.equal((noPort.object!.spec as any).listeners[0].port, 0, 'v1.4 defaults port to 0');
  const dup = validateObject(parse(XLS('  - {name: web, port: 80, protocol: HTTP}\n  - {name: web, port: 81, protocol: HTTP}')));
  assert.equal(dup.object, null);
  assert.ok(dup.errors.some((e) => /unique/.test(e.reason)), JSON.stringify(dup.errors));
  // The v1 ListenerSet requires port; the same object as a ListenerSet is refused for it.
  const v1 = validateObject(parse(XLS('  - {name: web, protocol: HTTP}').replace('gateway.networking.x-k8s.io/v1alpha1', 'gateway.networking.k8s.io/v1').replace('XListenerSet', 'ListenerSet')));
  assert.equal(v1.object, null);
  assert.ok(v1.errors.some((e) => e.field.endsWith('port')), JSON.stringify(v1.errors));
});

test('ListenerSet and XListenerSet load from files, are translated, and their status is their own kind\'s', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-compat-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'all.yaml'), `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gatehouse
  allowedListeners: {namespaces: {from: All}}
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: new, namespace: app}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners: [{name: web, port: 8081, protocol: HTTP}]
---
${XLS('  - {name: web, port: 8082, protocol: HTTP}')}`);
  const loaded = loadDirectory(dir);
  assert.deepEqual(loaded.objects.map((o) => o.object.kind), ['GatewayClass', 'Gateway', 'ListenerSet', 'XListenerSet']);
  assert.deepEqual(loaded.errors.map((e) => [e.severity, e.object, e.field]), [['warning', 'XListenerSet app/team', 'kind']]);
  const objects = new GenerationTracker().stamp(loaded.objects.map((o) => o.object));
  const result = translate(buildSnapshot(objects), { controllerName: 'gatehouse.dev/gateway-controller', addressing: { pool: null, hostAddress: '0.0.0.0', previous: {} } });
  const accepted = (key: string) => (result.statuses.get(key) as any)?.conditions.find((c: any) => c.type === 'Accepted')?.status;
  assert.equal(accepted('ListenerSet|app|new'), 'True');
  assert.equal(accepted('XListenerSet|app|team'), 'True');
  // The v1.4 status schema requires each listener's port.
  assert.deepEqual((result.statuses.get('XListenerSet|app|team') as any).listeners.map((l: any) => [l.name, l.port]), [['web', 8082]]);
  assert.equal((result.statuses.get('ListenerSet|app|new') as any).listeners[0].port, undefined);
  assert.equal((result.statuses.get('Gateway|infra|gw') as any).attachedListenerSets, 2);
  assert.deepEqual(result.ir.listeners.map((l) => l.port), [8080, 8081, 8082]);
});
