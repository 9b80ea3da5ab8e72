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
  fs.writeFileSync(path.join(dir, 'all.yaml'), `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
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
