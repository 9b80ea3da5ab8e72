// irForGateway: what one Gateway's proxies are given, and what they never are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { irForGateway } from '../../src/ir/per-gateway.ts';
import { IRDeltaEncoder } from '../../src/ir/delta.ts';
import type { IR, IRListener, TLSCertificate } from '../../src/ir/types.ts';
import { backend, cluster, gatewayListener, ir, match, route, vhost } from '../dataplane/helpers.ts';

function pem(label: string, body: string): string {
  return `-----BEGIN ${label}-----\n${Buffer.from(body).toString('base64')}\n-----END ${label}-----\n`;
}

function certFor(owner: string, serverName: string): TLSCertificate {
  return { serverNames: [serverName], certChain: pem('CERTIFICATE', `chain of ${owner}`), privateKey: pem('PRIVATE KEY', `secret key of ${owner}`) };
}

function socket(address: string, port: number, gatewayListeners: IRListener['gatewayListeners'], certificates?: TLSCertificate[]): IRListener {
  return {
    key: `${address}:${port}`, address, port, protocol: certificates ? 'HTTPS' : 'HTTP',
    ...(certificates ? { tls: { certificates } } : {}),
    gatewayListeners,
  };
}

/** Gateways infra/a and infra/b, each on its own address with HTTP and HTTPS; infra/ab shares a's prefix but not its name. */
function twoGateways(): IR {
  const keystone = vhost('keystone.test', [route('identity/keystone/0/0', match('/'), [backend('identity/keystone:5000')])]);
  const nova = vhost('nova.test', [route('compute/nova/0/0', match('/'), [backend('compute/nova:8774'), backend(null)])]);
  const glance = vhost('glance.test', [route('image/glance/0/0', match('/'), [backend('image/glance:9292')])]);
  return ir([
    socket('10.0.0.1', 80, [gatewayListener('infra/a/http', null, [keystone, nova])]),
    socket('10.0.0.1', 443, [gatewayListener('infra/a/https', '*.test', [keystone])], [certFor('a', '*.test')]),
    socket('10.0.0.2', 80, [gatewayListener('infra/b/http', null, [glance])]),
    socket('10.0.0.2', 443, [gatewayListener('infra/b/https', '*.test', [glance])], [certFor('b', '*.test')]),
    socket('10.0.0.3', 8443, [gatewayListener('infra/ab/https', null, [glance])], [certFor('ab', '*')]),
  ], [
    cluster('identity/keystone:5000', { port: 5000 }),
    cluster('compute/nova:8774', { port: 8774 }),
    cluster('image/glance:9292', { port: 9292 }),
  ]);
}

test('a Gateway gets its own listeners, rebound to all interfaces, and only the clusters they send to', () => {
  const full = twoGateways();
  const a = irForGateway(full, 'infra/a');
  assert.deepEqual(a.listeners.map((l) => [l.key, l.address, l.port, l.protocol]), [
    ['0.0.0.0:80', '0.0.0.0', 80, 'HTTP'],
    ['0.0.0.0:443', '0.0.0.0', 443, 'HTTPS'],
  ]);
  assert.deepEqual(a.listeners.flatMap((l) => l.gatewayListeners.map((gl) => gl.name)), ['infra/a/http', 'infra/a/https']);
  assert.deepEqual(Object.keys(a.clusters), ['compute/nova:8774', 'identity/keystone:5000']);
  assert.deepEqual(a.listeners[1]!.tls!.certificates.map((c) => c.certChain), [pem('CERTIFICATE', 'chain of a')]);
  assert.equal(a.version, full.version);
});

test("another Gateway's private key never appears in the output JSON", () => {
  const full = twoGateways();
  const text = JSON.stringify(irForGateway(full, 'infra/a'));
  assert.ok(text.includes(JSON.stringify(pem('PRIVATE KEY', 'secret key of a')).slice(1, -1)), 'its own key is there');
  for (const other of ['b', 'ab']) {
    const key = JSON.stringify(pem('PRIVATE KEY', `secret key of ${other}`)).slice(1, -1);
    assert.ok(!text.includes(key), `the key of ${other} leaked`);
    assert.ok(!text.includes(Buffer.from(`secret key of ${other}`).toString('base64')), `the key of ${other} leaked`);
  }
});

test('a name is matched whole: infra/a is not infra/ab', () => {
  const ab = irForGateway(twoGateways(), 'infra/ab');
  assert.deepEqual(ab.listeners.flatMap((l) => l.gatewayListeners.map((gl) => gl.name)), ['infra/ab/https']);
  assert.deepEqual(Object.keys(ab.clusters), ['image/glance:9292']);
});

test('a Gateway the IR does not mention gets no listeners and no clusters', () => {
  assert.deepEqual(irForGateway(twoGateways(), 'infra/gone'), { version: 1, listeners: [], clusters: {} });
});

test('on a socket shared with another Gateway, only certificates that can only be its own are kept', () => {
  const shared = ir([socket('10.0.0.9', 443, [
    gatewayListener('infra/a/keystone', 'keystone.test', []),
    gatewayListener('infra/a/both', 'both.test', []),
    gatewayListener('infra/b/glance', 'glance.test', []),
    gatewayListener('infra/b/both', 'both.test', []),
  ], [certFor('a', 'keystone.test'), certFor('a', 'both.test'), certFor('b', 'glance.test'), certFor('b', 'both.test')])], []);
  const a = irForGateway(shared, 'infra/a');
  assert.deepEqual(a.listeners[0]!.tls!.certificates.map((c) => c.serverNames), [['keystone.test']]);
  const text = JSON.stringify(a);
  assert.ok(!text.includes(Buffer.from('secret key of b').toString('base64')));
});

test('unchanged parts stay the same objects, so a change to another Gateway sends its proxies nothing new', () => {
  const before = twoGateways();
  const a1 = irForGateway(before, 'infra/a');
  assert.equal(a1.listeners[0]!.gatewayListeners[0]!.virtualHosts[0], before.listeners[0]!.gatewayListeners[0]!.virtualHosts[0]);
  assert.equal(a1.clusters['compute/nova:8774'], before.clusters['compute/nova:8774']);

  // Gateway b gets a new route and a new cluster; a's objects are untouched, as translate's memo keeps them.
  const after: IR = {
    ...before,
    listeners: before.listeners.map((l) => l.address !== '10.0.0.2' ? l : {
      ...l,
      gatewayListeners: [gatewayListener(l.gatewayListeners[0]!.name, l.gatewayListeners[0]!.hostname,
        [vhost('swift.test', [route('storage/swift/0/0', match('/'), [backend('storage/swift:8080')])])])],
    }),
    clusters: { ...before.clusters, 'storage/swift:8080': cluster('storage/swift:8080', { port: 8080 }) },
  };
  const encoder = new IRDeltaEncoder();
  encoder.encode(a1);
  const delta = encoder.encode(irForGateway(after, 'infra/a'));
  assert.deepEqual(delta.define, { virtualHosts: [], clusters: [] });
});

test('clusters a route only mirrors to, from its filters or its backends\' filters, are the Gateway\'s too', () => {
  const mirror = (c: string) => ({ type: 'RequestMirror' as const, cluster: c, numerator: 1, denominator: 1 });
  const full = ir([
    socket('10.0.0.1', 80, [gatewayListener('infra/a/http', null, [
      vhost('a.test', [route('r/0/0', match('/'), [backend('primary', 1, [mirror('shadow-b')])], { filters: [mirror('shadow-a')] })]),
    ])]),
  ], [cluster('primary', { port: 1 }), cluster('shadow-a', { port: 2 }), cluster('shadow-b', { port: 3 }), cluster('unused', { port: 4 })]);
  assert.deepEqual(Object.keys(irForGateway(full, 'infra/a').clusters), ['primary', 'shadow-a', 'shadow-b']);
});

test("a socket's client validation (tls.frontend) goes to the Gateway's proxies with it", () => {
  const full = twoGateways();
  const validation = { caCertificates: pem('CERTIFICATE', 'client CA of a'), mode: 'AllowValidOnly' as const };
  full.listeners[1]!.tls!.clientValidation = validation;
  assert.deepEqual(irForGateway(full, 'infra/a').listeners[1]!.tls!.clientValidation, validation);
  assert.equal(irForGateway(full, 'infra/b').listeners[1]!.tls!.clientValidation, undefined);
});

test('a Gateway\'s proxies get the listeners of the ListenerSets it took in (named under the Gateway), not another Gateway\'s', () => {
  const team = vhost('team.test', [route('team/app/0/0', match('/'), [backend('team/app:80')])]);
  const out = irForGateway(ir([
    socket('10.0.0.1', 8443, [gatewayListener('infra/a/ListenerSet/team/extra/https', 'team.test', [team])], [certFor('team', 'team.test')]),
    socket('10.0.0.2', 8443, [gatewayListener('infra/b/ListenerSet/team/other/https', 'team.test', [team])], [certFor('other', 'team.test')]),
  ], [cluster('team/app:80', { port: 80 })]), 'infra/a');
  assert.deepEqual(out.listeners.map((l) => [l.key, l.gatewayListeners.map((g) => g.name)]), [['0.0.0.0:8443', ['infra/a/ListenerSet/team/extra/https']]]);
  assert.deepEqual(Object.keys(out.clusters), ['team/app:80']);
});
