// The IR delta encoder: what it spells out again and what it sends by id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { asText, IRDeltaEncoder, type IRDelta } from '../../src/ir/delta.ts';
import { backend, cluster, gatewayListener, ir, listener, match, route, vhost } from '../dataplane/helpers.ts';
import type { IR, VirtualHost } from '../../src/ir/types.ts';

const hostnameOf = (vh: VirtualHost | string) => (typeof vh === 'string' ? (JSON.parse(vh) as VirtualHost) : vh).hostname;

function definedHosts(d: IRDelta): string[] {
  return d.define.virtualHosts.map(([, vh]) => hostnameOf(vh)).sort();
}

function hostIds(d: IRDelta): number[] {
  return d.listeners.flatMap((l) => l.gatewayListeners.flatMap((gl) => gl.virtualHosts));
}

function base(): IR {
  const a = cluster('a', { port: 1001 });
  const b = cluster('b', { port: 1002 });
  return ir([listener(8080, [gatewayListener('gw/http', null, [
    vhost('a.test', [route('ra', match('/'), [backend('a')])]),
    vhost('b.test', [route('rb', match('/'), [backend('b')])]),
    vhost('c.test', [route('rc', match('/'), [backend('a')])]),
  ])])], [a, b]);
}

test('the first delta defines everything; the same IR again defines nothing', () => {
  const enc = new IRDeltaEncoder();
  const first = base();
  const d1 = enc.encode(first);
  assert.deepEqual(definedHosts(d1), ['a.test', 'b.test', 'c.test']);
  assert.equal(d1.define.clusters.length, 2);
  const d2 = enc.encode(first);
  assert.deepEqual(d2.define, { virtualHosts: [], clusters: [] });
  assert.deepEqual(hostIds(d2), hostIds(d1));
  assert.deepEqual(d2.clusters, d1.clusters);
});

test('a virtual host whose route list changed is defined again, under a new id; the others keep theirs', () => {
  const enc = new IRDeltaEncoder();
  const first = base();
  const d1 = enc.encode(first);
  const second = structuredClone(first);
  const gl = second.listeners[0].gatewayListeners[0];
  // Unchanged hosts keep their entry objects (as translate's memo does).
  gl.virtualHosts[0].routes = first.listeners[0].gatewayListeners[0].virtualHosts[0].routes;
  gl.virtualHosts[2].routes = first.listeners[0].gatewayListeners[0].virtualHosts[2].routes;
  second.clusters = first.clusters;
  const d2 = enc.encode(second);
  assert.deepEqual(definedHosts(d2), ['b.test']);
  const [a1, b1, c1] = hostIds(d1);
  const [a2, b2, c2] = hostIds(d2);
  assert.equal(a2, a1);
  assert.equal(c2, c1);
  assert.notEqual(b2, b1);
});

test('a changed cluster is defined again, with every virtual host that sends to it', () => {
  const enc = new IRDeltaEncoder();
  const first = base();
  enc.encode(first);
  const d2 = enc.encode({ ...first, clusters: { ...first.clusters, a: cluster('a', { port: 2001 }) } });
  assert.deepEqual(d2.define.clusters.map(([, c]) => c.endpoints[0].port), [2001]);
  assert.deepEqual(definedHosts(d2), ['a.test', 'c.test']);
});

test('a removed cluster redefines the hosts that named it', () => {
  const enc = new IRDeltaEncoder();
  const first = base();
  enc.encode(first);
  const { a, ...rest } = first.clusters;
  void a;
  const d2 = enc.encode({ ...first, clusters: rest });
  assert.deepEqual(Object.keys(d2.clusters), ['b']);
  assert.deepEqual(definedHosts(d2), ['a.test', 'c.test']);
});

test('full() defines every virtual host and cluster of the last IR, with the ids the deltas use', () => {
  const enc = new IRDeltaEncoder();
  assert.equal(enc.full(), null);
  const first = base();
  enc.encode(first);
  const d2 = enc.encode(first);
  const full = enc.full()!;
  assert.deepEqual(full.listeners, d2.listeners);
  assert.deepEqual(full.clusters, d2.clusters);
  assert.deepEqual(full.define.virtualHosts.map(([id]) => id).sort(), hostIds(d2).sort());
  assert.deepEqual(full.define.clusters.map(([id]) => id).sort(), Object.values(d2.clusters).sort());
});

test('the same virtual host on two listeners is defined once and shares its id', () => {
  const enc = new IRDeltaEncoder();
  const routes = [route('ra', match('/'), [backend('a')])];
  const make = (a: ReturnType<typeof cluster>) => ir([
    listener(8080, [gatewayListener('gw/http', null, [vhost('a.test', [...routes])])]),
    listener(8443, [gatewayListener('gw/https', null, [vhost('a.test', [...routes]), vhost('b.test', [route('rb', match('/'), [backend('a')])])])]),
  ], [a]);
  const d1 = enc.encode(make(cluster('a', { port: 1 })));
  assert.deepEqual(definedHosts(d1), ['a.test', 'b.test']);
  const [http, https] = d1.listeners.map((l) => l.gatewayListeners[0].virtualHosts);
  assert.equal(http[0], https[0]);
  // After a cluster change, still once.
  const d2 = enc.encode(make(cluster('a', { port: 2 })));
  assert.equal(d2.define.virtualHosts.filter(([, vh]) => hostnameOf(vh) === 'a.test').length, 1);
  assert.equal(enc.full()!.define.virtualHosts.length, 2);
});

test('asText() carries the same delta with virtual hosts as JSON text', () => {
  const d = new IRDeltaEncoder().encode(base());
  const text = asText(d);
  assert.ok(text.define.virtualHosts.every(([, vh]) => typeof vh === 'string'));
  assert.deepEqual(text.define.virtualHosts.map(([id, vh]) => [id, JSON.parse(vh as string)]), d.define.virtualHosts);
  assert.deepEqual({ ...text, define: null }, { ...d, define: null });
});

test('a changed cluster that a route only mirrors to redefines that route\'s virtual host', () => {
  const enc = new IRDeltaEncoder();
  const first = base();
  first.listeners[0].gatewayListeners[0].virtualHosts[1].routes[0].filters = [{ type: 'RequestMirror', cluster: 'a', numerator: 1, denominator: 2 }];
  enc.encode(first);
  const d2 = enc.encode({ ...first, clusters: { ...first.clusters, a: cluster('a', { port: 2001 }) } });
  assert.deepEqual(definedHosts(d2), ['a.test', 'b.test', 'c.test']);
});
