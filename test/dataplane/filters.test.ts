// Filters over real sockets: request and response header modifiers,
// redirects (scheme, host, port and path rules), URL rewrites, per-backend
// filters, and routes whose filters cannot be compiled.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Filter } from '../../src/ir/types.ts';
import { backend, cluster, freePort, match, request, route, simpleIR, startBackend, startDataPlane } from './helpers.ts';

test('filters', async (t) => {
  const [a, b] = await Promise.all([startBackend(t, 'a'), startBackend(t, 'b')]);
  const port = await freePort();
  const dp = await startDataPlane(t);

  const redirect = (name: string, path: string, f: Omit<Extract<Filter, { type: 'RequestRedirect' }>, 'type'>, type: 'Exact' | 'PathPrefix' = 'Exact') =>
    route(name, match(path, type), [], { filters: [{ type: 'RequestRedirect', ...f }] });
  const rewrite = (name: string, path: string, f: Omit<Extract<Filter, { type: 'URLRewrite' }>, 'type'>) =>
    route(name, match(path), [backend('a')], { filters: [{ type: 'URLRewrite', ...f }] });

  const result = await dp.apply(
    simpleIR(
      port,
      [
        route('reqmod', match('/reqmod'), [backend('a')], {
          filters: [
            {
              type: 'RequestHeaderModifier',
              set: [{ name: 'X-Set', value: 'one' }, { name: 'X-Existing', value: 'replaced' }],
              add: [{ name: 'X-Add', value: 'two' }, { name: 'X-Append', value: 'new' }],
              remove: ['X-Remove'],
            },
          ],
        }),
        route('reqmod-order', match('/order'), [backend('a')], {
          filters: [
            { type: 'RequestHeaderModifier', set: [{ name: 'x-seq', value: '1' }], add: [], remove: [] },
            { type: 'RequestHeaderModifier', set: [], add: [{ name: 'x-seq', value: '2' }], remove: [] },
          ],
        }),
        route('respmod', match('/respmod'), [backend('a')], {
          filters: [
            {
              type: 'ResponseHeaderModifier',
              set: [{ name: 'X-Resp-Set', value: 's' }, { name: 'X-Up', value: 'replaced' }],
              add: [{ name: 'X-Up-Add', value: 'a2' }, { name: 'Set-Cookie', value: 'c=3' }],
              remove: ['X-Backend'],
            },
          ],
        }),
        redirect('r-scheme', '/r/scheme', { scheme: 'https', statusCode: 301 }),
        redirect('r-host', '/r/host', { hostname: 'other.example', statusCode: 302 }),
        redirect('r-port', '/r/port', { port: 8443, statusCode: 302 }),
        redirect('r-port80', '/r/port80', { port: 80, statusCode: 302 }),
        redirect('r-https443', '/r/https443', { scheme: 'https', port: 443, statusCode: 302 }),
        redirect('r-scheme-http', '/r/scheme-http', { scheme: 'http', statusCode: 302 }),
        redirect('r-http443', '/r/http443', { scheme: 'http', port: 443, statusCode: 302 }),
        redirect('r-full', '/r/full', { path: { type: 'ReplaceFullPath', value: '/new' }, statusCode: 307 }),
        redirect('r-prefix', '/r/prefix/one', { path: { type: 'ReplacePrefixMatch', value: '/one', prefix: '/r/prefix/one' }, statusCode: 308 }, 'PathPrefix'),
        redirect('r-strip', '/r/strip', { path: { type: 'ReplacePrefixMatch', value: '/', prefix: '/r/strip' }, statusCode: 302 }, 'PathPrefix'),
        route('r-with-headers', match('/r/headers', 'Exact'), [], {
          filters: [
            { type: 'ResponseHeaderModifier', set: [{ name: 'x-on-redirect', value: 'yes' }], add: [], remove: [] },
            { type: 'RequestRedirect', hostname: 'elsewhere.example', statusCode: 301 },
          ],
        }),
        rewrite('rw-host', '/rw/host', { hostname: 'internal.svc' }),
        rewrite('rw-full', '/rw/full', { path: { type: 'ReplaceFullPath', value: '/replaced' } }),
        rewrite('rw-prefix', '/rw/prefix', { path: { type: 'ReplacePrefixMatch', value: '/v2', prefix: '/rw/prefix' } }),
        rewrite('rw-strip', '/rw/strip', { path: { type: 'ReplacePrefixMatch', value: '/', prefix: '/rw/strip' } }),
        route('backend-filters', match('/bf'), [
          backend('a', 1, [{ type: 'RequestHeaderModifier', set: [{ name: 'x-chosen', value: 'a' }], add: [], remove: [] }]),
          backend('b', 1, [
            { type: 'RequestHeaderModifier', set: [{ name: 'x-chosen', value: 'b' }], add: [], remove: [] },
            { type: 'ResponseHeaderModifier', set: [{ name: 'x-via-b', value: '1' }], add: [], remove: [] },
          ]),
        ]),
        // One backend redirects, the other rewrites: each request takes one of the two.
        route('backend-redirect-rewrite', match('/brr', 'PathPrefix'), [
          backend('a', 1, [{ type: 'RequestRedirect', path: { type: 'ReplacePrefixMatch', value: '/moved', prefix: '/brr' }, statusCode: 302 }]),
          backend('b', 1, [{ type: 'URLRewrite', path: { type: 'ReplacePrefixMatch', value: '/rewritten', prefix: '/brr' } }]),
        ]),
        route('bad-filter', match('/bad-filter'), [backend('a')], {
          filters: [{ type: 'RequestHeaderModifier', set: [{ name: 'bad name', value: 'x' }], add: [], remove: [] }],
        }),
        route('bad-regex', match('/bad(', 'RegularExpression'), [backend('b')]),
        route('after-bad-regex', match('/bad('), [backend('a')]),
      ],
      [cluster('a', a), cluster('b', b)],
    ),
  );
  assert.deepEqual(result.listenerErrors, {});
  assert.deepEqual(Object.keys(result.routeErrors).sort(), ['bad-filter', 'bad-regex']);

  await t.test('RequestHeaderModifier: set replaces, add appends with a comma, remove deletes', async () => {
    const reply = await request(port, '/reqmod', {
      headers: { 'x-existing': 'old', 'X-Append': 'old', 'x-remove': 'gone', 'x-keep': 'kept' },
    });
    const h = reply.json().headers;
    assert.equal(h['x-set'], 'one');
    assert.equal(h['x-existing'], 'replaced');
    assert.equal(h['x-add'], 'two');
    assert.equal(h['x-append'], 'old,new');
    assert.equal(h['x-remove'], undefined);
    assert.equal(h['x-keep'], 'kept');
  });

  await t.test('filters apply in order', async () => {
    const reply = await request(port, '/order');
    assert.equal(reply.json().headers['x-seq'], '1,2');
  });

  await t.test('ResponseHeaderModifier on the response to the client', async () => {
    const reply = await request(port, '/respmod', {
      headers: {
        'x-test-response-headers': JSON.stringify({ 'x-up': 'orig', 'x-up-add': 'a1', 'set-cookie': ['c=1', 'c=2'] }),
      },
    });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-resp-set'], 's');
    assert.equal(reply.headers['x-up'], 'replaced');
    assert.equal(reply.headers['x-up-add'], 'a1,a2');
    assert.deepEqual(reply.headers['set-cookie'], ['c=1', 'c=2', 'c=3']);
    assert.equal(reply.headers['x-backend'], undefined);
  });

  const location = async (path: string, host = `example.com:${port}`): Promise<[number, string | undefined]> => {
    const reply = await request(port, path, { host });
    return [reply.status, reply.headers.location];
  };

  await t.test('RequestRedirect: scheme, hostname and port', async () => {
    // A scheme set by the filter means its well-known port, which is omitted.
    assert.deepEqual(await location('/r/scheme?a=1'), [301, 'https://example.com/r/scheme?a=1']);
    // Otherwise the listener's port, and the request's host without its port.
    assert.deepEqual(await location('/r/host'), [302, `http://other.example:${port}/r/host`]);
    assert.deepEqual(await location('/r/port'), [302, 'http://example.com:8443/r/port']);
    assert.deepEqual(await location('/r/port80'), [302, 'http://example.com/r/port80']);
    assert.deepEqual(await location('/r/https443'), [302, 'https://example.com/r/https443']);
    assert.deepEqual(await location('/r/scheme-http'), [302, 'http://example.com/r/scheme-http']);
    assert.deepEqual(await location('/r/http443'), [302, 'http://example.com:443/r/http443']);
    assert.deepEqual(await location('/r/host', 'Upper.Example.com'), [302, `http://other.example:${port}/r/host`]);
  });

  await t.test('RequestRedirect: paths, with the query kept', async () => {
    assert.deepEqual(await location('/r/full?x=1'), [307, `http://example.com:${port}/new?x=1`]);
    assert.deepEqual(await location('/r/prefix/one/two?q=1'), [308, `http://example.com:${port}/one/two?q=1`]);
    assert.deepEqual(await location('/r/prefix/one'), [308, `http://example.com:${port}/one`]);
    assert.deepEqual(await location('/r/strip/bar'), [302, `http://example.com:${port}/bar`]);
    assert.deepEqual(await location('/r/strip'), [302, `http://example.com:${port}/`]);
    assert.deepEqual(await location('/r/strip/'), [302, `http://example.com:${port}/`]);
  });

  await t.test('RequestRedirect carries response header modifiers that ran before it', async () => {
    const reply = await request(port, '/r/headers');
    assert.equal(reply.status, 301);
    assert.equal(reply.headers.location, `http://elsewhere.example:${port}/r/headers`);
    assert.equal(reply.headers['x-on-redirect'], 'yes');
    assert.equal(a.seen.some((s) => s.path.startsWith('/r/')), false);
  });

  await t.test('URLRewrite hostname replaces Host upstream only', async () => {
    const echo = (await request(port, '/rw/host', { host: 'public.example:9000' })).json();
    assert.equal(echo.headers.host, 'internal.svc');
    assert.equal(echo.headers['x-forwarded-host'], 'public.example:9000');
  });

  await t.test('URLRewrite paths', async () => {
    const path = async (p: string) => (await request(port, p)).json().path;
    assert.equal(await path('/rw/full/x?x=1'), '/replaced?x=1');
    assert.equal(await path('/rw/prefix/a/b?c=d'), '/v2/a/b?c=d');
    assert.equal(await path('/rw/prefix'), '/v2');
    assert.equal(await path('/rw/prefix/'), '/v2/');
    assert.equal(await path('/rw/strip/x'), '/x');
    assert.equal(await path('/rw/strip'), '/');
    assert.equal(await path('/rw/strip/'), '/');
  });

  await t.test('backend filters apply only to the backend chosen', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const reply = await request(port, '/bf');
      const echo = reply.json();
      assert.equal(echo.headers['x-chosen'], echo.backend);
      assert.equal(reply.headers['x-via-b'], echo.backend === 'b' ? '1' : undefined);
      seen.add(echo.backend);
    }
    assert.deepEqual([...seen].sort(), ['a', 'b']);
  });

  await t.test('RequestRedirect and URLRewrite on a backend apply when that backend is chosen', async () => {
    let redirected = 0;
    let rewritten = 0;
    for (let i = 0; i < 40; i++) {
      const reply = await request(port, '/brr/x?q=1', { host: `example.com:${port}` });
      if (reply.status === 302) {
        assert.equal(reply.headers.location, `http://example.com:${port}/moved/x?q=1`);
        redirected++;
      } else {
        assert.equal(reply.status, 200);
        const echo = reply.json();
        assert.equal(echo.backend, 'b');
        assert.equal(echo.path, '/rewritten/x?q=1');
        rewritten++;
      }
    }
    assert.ok(redirected > 0 && rewritten > 0, `both backends taken: ${redirected} redirected, ${rewritten} rewritten`);
  });

  await t.test('a route with a filter that cannot be applied answers 500', async () => {
    assert.equal((await request(port, '/bad-filter')).status, 500);
  });

  await t.test('a route whose match cannot compile is left out', async () => {
    // `/bad(` falls through to the next route.
    assert.equal((await request(port, '/bad(')).json().backend, 'a');
  });
});
