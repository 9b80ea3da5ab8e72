// Routing over real sockets: Gateway listener isolation by hostname,
// virtual host precedence, path/method/header/query matches, and route
// precedence as the IR orders it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  backend,
  cluster,
  freePort,
  gatewayListener,
  ir,
  listener,
  match,
  request,
  route,
  startBackend,
  startDataPlane,
  vhost,
} from './helpers.ts';

test('routing', async (t) => {
  const [a, b, c, d, e, f] = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((n) => startBackend(t, n)));
  const port = await freePort();
  const otherPort = await freePort();
  const all = (name: string, to: string) => route(name, match('/'), [backend(to)]);
  const dp = await startDataPlane(t);
  const result = await dp.apply(
    ir(
      [
        listener(port, [
          gatewayListener('ns/gw/exact', 'api.example.com', [vhost('*', [all('to-a', 'a')])]),
          gatewayListener('ns/gw/wild', '*.example.com', [
            vhost('foo.example.com', [all('to-b', 'b')]),
            vhost('*.foo.example.com', [all('to-f', 'f')]),
            vhost('*', [all('to-c', 'c')]),
          ]),
          gatewayListener('ns/gw/any', null, [
            vhost('other.test', [all('to-d', 'd')]),
            vhost('routes.test', [
              route('exact', match('/exact', 'Exact'), [backend('a')]),
              route('prefix', match('/prefix'), [backend('b')]),
              route('regex', match('/re/[0-9]+', 'RegularExpression'), [backend('c')]),
              route('post', match('/m', 'PathPrefix', { method: 'POST' }), [backend('a')]),
              route('any-method', match('/m'), [backend('b')]),
              route('hdr-exact', match('/h', 'PathPrefix', { headers: [{ name: 'x-env', type: 'Exact', value: 'canary' }] }), [backend('a')]),
              route('hdr-regex', match('/h', 'PathPrefix', { headers: [{ name: 'x-env', type: 'RegularExpression', value: 'ca.*' }] }), [backend('c')]),
              route('hdr-none', match('/h'), [backend('b')]),
              route('q-exact', match('/q', 'PathPrefix', { queryParams: [{ name: 'v', type: 'Exact', value: '2' }] }), [backend('a')]),
              route('q-upper', match('/q', 'PathPrefix', { queryParams: [{ name: 'V', type: 'RegularExpression', value: 'x|y' }] }), [backend('c')]),
              route('q-none', match('/q'), [backend('b')]),
              route('order-short', match('/order'), [backend('a')]),
              route('order-long', match('/order/deeper'), [backend('b')]),
              route('mix-regex', match('/mix/.*', 'RegularExpression'), [backend('c')]),
              route('mix-exact', match('/mix/x', 'Exact'), [backend('a')]),
              route('multi', match('/multi', 'Exact', { headers: [{ name: 'x-multi', type: 'Exact', value: 'a,b' }] }), [backend('a')]),
            ]),
            vhost('*.example.com', [all('shadowed', 'f')]),
            vhost('*.test', [all('to-e', 'e')]),
          ]),
        ]),
        listener(otherPort, [gatewayListener('ns/gw2/http', null, [vhost('only.test', [all('other-socket', 'e')])])]),
      ],
      [cluster('a', a), cluster('b', b), cluster('c', c), cluster('d', d), cluster('e', e), cluster('f', f)],
    ),
  );
  assert.deepEqual(result.listenerErrors, {});
  assert.deepEqual(result.routeErrors, {});

  const via = async (host: string, path = '/', opts: Parameters<typeof request>[2] = {}, p = port): Promise<string | number> => {
    const reply = await request(p, path, { host, ...opts });
    return reply.status === 200 ? reply.json().backend : reply.status;
  };

  await t.test('Gateway listener isolation by hostname', async () => {
    assert.equal(await via('api.example.com'), 'a');
    // Host is case-insensitive, the port and a trailing dot are ignored.
    assert.equal(await via('API.Example.COM.:8080'), 'a');
    assert.equal(await via('foo.example.com'), 'b');
    // Claimed by the wildcard listener, so the catch-all listener's
    // `*.example.com` virtual host never sees it.
    assert.equal(await via('x.example.com'), 'c');
    assert.equal(await via('a.b.example.com'), 'c');
    // `*.example.com` does not match example.com itself.
    assert.equal(await via('example.com'), 404);
    assert.equal(await via('other.test'), 'd');
    assert.equal(await via('nothing.invalid'), 404);
  });

  await t.test('virtual host precedence: exact, then wildcard, then *', async () => {
    assert.equal(await via('foo.example.com'), 'b');
    assert.equal(await via('x.foo.example.com'), 'f');
    assert.equal(await via('y.x.foo.example.com'), 'f');
    assert.equal(await via('bar.example.com'), 'c');
    assert.equal(await via('deep.sub.test'), 'e');
  });

  await t.test('listeners on different sockets do not share routes', async () => {
    assert.equal(await via('only.test', '/', {}, otherPort), 'e');
    assert.equal(await via('api.example.com', '/', {}, otherPort), 404);
    assert.equal(await via('only.test', '/', {}, port), 'e');
  });

  await t.test('path Exact', async () => {
    assert.equal(await via('routes.test', '/exact'), 'a');
    assert.equal(await via('routes.test', '/exact?x=1'), 'a');
    assert.equal(await via('routes.test', '/exact/'), 404);
    assert.equal(await via('routes.test', '/exactly'), 404);
  });

  await t.test('path PathPrefix is segment-wise', async () => {
    assert.equal(await via('routes.test', '/prefix'), 'b');
    assert.equal(await via('routes.test', '/prefix/'), 'b');
    assert.equal(await via('routes.test', '/prefix/x/y?z=1'), 'b');
    assert.equal(await via('routes.test', '/prefixx'), 404);
    assert.equal(await via('routes.test', '/nothing'), 404);
  });

  await t.test('path RegularExpression is a full match', async () => {
    assert.equal(await via('routes.test', '/re/123'), 'c');
    assert.equal(await via('routes.test', '/re/12a'), 404);
    assert.equal(await via('routes.test', '/x/re/1'), 404);
  });

  await t.test('method', async () => {
    assert.equal(await via('routes.test', '/m', { method: 'POST' }), 'a');
    assert.equal(await via('routes.test', '/m', { method: 'GET' }), 'b');
  });

  await t.test('headers: names case-insensitive, values exact or full regex', async () => {
    assert.equal(await via('routes.test', '/h', { headers: { 'X-Env': 'canary' } }), 'a');
    assert.equal(await via('routes.test', '/h', { headers: { 'x-env': 'cat' } }), 'c');
    assert.equal(await via('routes.test', '/h', { headers: { 'x-env': 'CANARY' } }), 'b');
    assert.equal(await via('routes.test', '/h', { headers: { 'x-env': 'xcanary' } }), 'b');
    assert.equal(await via('routes.test', '/h'), 'b');
  });

  await t.test('headers: repeated lines are matched joined with a comma', async () => {
    assert.equal(await via('routes.test', '/multi', { headers: ['X-Multi', 'a', 'x-multi', 'b'] }), 'a');
    assert.equal(await via('routes.test', '/multi', { headers: ['X-Multi', 'a'] }), 404);
  });

  await t.test('query params: first value, names case-sensitive', async () => {
    assert.equal(await via('routes.test', '/q?v=2'), 'a');
    assert.equal(await via('routes.test', '/q?v=1&v=2'), 'b');
    assert.equal(await via('routes.test', '/q?V=y'), 'c');
    assert.equal(await via('routes.test', '/q?V=z'), 'b');
    assert.equal(await via('routes.test', '/q?v=2&V=x'), 'a');
    assert.equal(await via('routes.test', '/q'), 'b');
  });

  await t.test('the IR order decides, not specificity', async () => {
    assert.equal(await via('routes.test', '/order/deeper'), 'a');
    assert.equal(await via('routes.test', '/mix/x'), 'c');
  });

  await t.test('absolute-form request target routes on its authority', async () => {
    const reply = await request(port, 'http://api.example.com/abs?x=1', { host: 'other.test' });
    assert.equal(reply.json().backend, 'a');
    assert.equal(reply.json().path, '/abs?x=1');
  });
});

test('dot segments are resolved before routing, and the backend sees the path that was matched', async (t) => {
  const pub = await startBackend(t, 'public');
  const admin = await startBackend(t, 'admin');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(ir([listener(port, [gatewayListener('gw', null, [vhost('*', [
    route('public', match('/public'), [backend('public')]),
    route('admin', match('/admin'), [backend('admin')]),
  ])])])], [cluster('public', pub), cluster('admin', admin)]));
  const r = await request(port, '/public/../admin/users');
  assert.equal(r.status, 200);
  assert.equal(r.json().backend, 'admin', 'the normalised path /admin/users is routed, not /public');
  assert.equal(r.json().path, '/admin/users');
  const encoded = await request(port, '/public/%2e%2e/admin');
  assert.equal(encoded.json().backend, 'admin');
  assert.equal(encoded.json().path, '/admin');
});
