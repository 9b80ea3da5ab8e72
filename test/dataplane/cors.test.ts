// The CORS filter over real sockets: preflights answered by the gateway
// (never reaching a backend), actual requests forwarded with the CORS
// response headers, origin matching (exact, `*.suffix`, default ports,
// `null`), wildcards with and without credentials, and Vary.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CORSFilter } from '../../src/ir/types.ts';
import { backend, cluster, freePort, match, request, route, simpleIR, startBackend, startDataPlane } from './helpers.ts';

function cors(f: Partial<CORSFilter>): CORSFilter {
  return { type: 'CORS', allowOrigins: [], allowMethods: [], allowHeaders: [], exposeHeaders: [], maxAgeSeconds: 5, allowCredentials: false, ...f };
}

test('CORS', async (t) => {
  const a = await startBackend(t, 'a');
  const port = await freePort();
  const dp = await startDataPlane(t);
  const result = await dp.apply(
    simpleIR(
      port,
      [
        route('listed', match('/listed'), [backend('a')], {
          filters: [cors({
            allowOrigins: ['https://www.foo.com', 'https://*.bar.com', 'http://*:8080'],
            allowMethods: ['GET', 'OPTIONS'],
            allowHeaders: ['x-header-1', 'x-header-2'],
            exposeHeaders: ['x-header-3', 'x-header-4'],
            allowCredentials: true,
            maxAgeSeconds: 3600,
          })],
        }),
        route('wild-creds', match('/wild-creds'), [backend('a')], {
          filters: [cors({ allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], exposeHeaders: ['*'], allowCredentials: true })],
        }),
        route('wild', match('/wild'), [backend('a')], {
          filters: [cors({ allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], exposeHeaders: ['*'] })],
        }),
        route('no-backend', match('/no-backend'), [], { filters: [cors({ allowOrigins: ['https://www.foo.com'] })] }),
        route('plain', match('/plain'), [backend('a')]),
      ],
      [cluster('a', a)],
    ),
  );
  assert.deepEqual(result.routeErrors, {});

  const preflight = (path: string, origin: string, method = 'GET', headers?: string) =>
    request(port, path, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': method, ...(headers === undefined ? {} : { 'access-control-request-headers': headers }) },
    });

  await t.test('a preflight from a listed origin is answered by the gateway: 200, empty, every allow-* header', async () => {
    const before = a.seen.length;
    const r = await preflight('/listed', 'https://www.foo.com', 'GET', 'x-header-1, x-header-2');
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 0);
    assert.equal(r.headers['content-length'], '0');
    assert.equal(r.headers['access-control-allow-origin'], 'https://www.foo.com');
    assert.equal(r.headers['access-control-allow-methods'], 'GET, OPTIONS');
    assert.equal(r.headers['access-control-allow-headers'], 'x-header-1, x-header-2');
    assert.equal(r.headers['access-control-expose-headers'], 'x-header-3, x-header-4');
    assert.equal(r.headers['access-control-max-age'], '3600');
    assert.equal(r.headers['access-control-allow-credentials'], 'true');
    assert.equal(r.headers.vary, 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers');
    assert.equal(a.seen.length, before, 'a preflight never reaches the backend');
  });

  await t.test('origin matching: *.suffix takes any number of labels but not the bare suffix; ports default by scheme; case does not matter', async () => {
    const allowed = async (origin: string) => (await preflight('/listed', origin)).headers['access-control-allow-origin'] === origin;
    assert.equal(await allowed('https://www.bar.com'), true);
    assert.equal(await allowed('https://a.b.www.bar.com'), true);
    assert.equal(await allowed('https://bar.com'), false);
    assert.equal(await allowed('https://evilbar.com'), false);
    assert.equal(await allowed('http://www.bar.com'), false, 'scheme must match');
    assert.equal(await allowed('https://www.foo.com:443'), true, '443 is https\'s default');
    assert.equal(await allowed('https://WWW.FOO.COM'), true);
    assert.equal(await allowed('https://www.foo.com:8443'), false);
    assert.equal(await allowed('http://anything.example:8080'), true, 'http://*:8080');
    assert.equal(await allowed('http://anything.example'), false, 'port 80 is not 8080');
    assert.equal(await allowed('null'), false);
  });

  await t.test('a preflight from any other origin is answered 200 without CORS headers, and never reaches the backend', async () => {
    const before = a.seen.length;
    const r = await preflight('/listed', 'https://foobar.com');
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    assert.equal(r.headers['access-control-allow-methods'], undefined);
    assert.equal(r.headers['access-control-allow-credentials'], undefined);
    assert.match(String(r.headers.vary), /Origin/);
    assert.equal(a.seen.length, before);
  });

  await t.test('an actual request from a listed origin is forwarded and its response gets the CORS headers, replacing the backend\'s', async () => {
    const r = await request(port, '/listed', {
      headers: {
        origin: 'https://www.foo.com',
        'x-test-response-headers': JSON.stringify({ 'access-control-allow-origin': '*', vary: 'Accept-Encoding' }),
      },
    });
    assert.equal(r.status, 200);
    assert.equal(r.json().backend, 'a');
    assert.equal(r.headers['access-control-allow-origin'], 'https://www.foo.com');
    assert.equal(r.headers['access-control-allow-credentials'], 'true');
    assert.equal(r.headers['access-control-expose-headers'], 'x-header-3, x-header-4');
    assert.equal(r.headers['access-control-allow-methods'], undefined, 'allow-methods is for preflights');
    assert.equal(r.headers.vary, 'Accept-Encoding,Origin');
  });

  await t.test('an actual request from another origin, or with none, is forwarded without CORS headers, with Vary: Origin', async () => {
    for (const headers of [{ origin: 'https://foobar.com' }, {}]) {
      const r = await request(port, '/listed', { headers });
      assert.equal(r.status, 200);
      assert.equal(r.headers['access-control-allow-origin'], undefined);
      assert.equal(r.headers['access-control-allow-credentials'], undefined);
      assert.equal(r.headers.vary, 'Origin');
    }
  });

  await t.test('OPTIONS without Access-Control-Request-Method is not a preflight: it is forwarded', async () => {
    const r = await request(port, '/listed', { method: 'OPTIONS', headers: { origin: 'https://www.foo.com' } });
    assert.equal(r.status, 200);
    assert.equal(r.json().method, 'OPTIONS');
    assert.equal(r.headers['access-control-allow-origin'], 'https://www.foo.com');
  });

  await t.test('wildcards with credentials answer with what was asked, never *; expose * is left out', async () => {
    const r = await preflight('/wild-creds', 'https://other.foo.com', 'PUT', 'x-header-1, x-header-2');
    assert.equal(r.headers['access-control-allow-origin'], 'https://other.foo.com');
    assert.equal(r.headers['access-control-allow-methods'], 'PUT');
    assert.equal(r.headers['access-control-allow-headers'], 'x-header-1, x-header-2');
    assert.equal(r.headers['access-control-allow-credentials'], 'true');
    assert.equal(r.headers['access-control-expose-headers'], undefined);
    const noHeaders = await preflight('/wild-creds', 'https://other.foo.com', 'PUT');
    assert.equal(noHeaders.headers['access-control-allow-headers'], undefined, 'nothing asked, nothing allowed');
    const actual = await request(port, '/wild-creds', { headers: { origin: 'https://other.foo.com' } });
    assert.equal(actual.headers['access-control-allow-origin'], 'https://other.foo.com');
    assert.equal(actual.headers['access-control-allow-credentials'], 'true');
  });

  await t.test('wildcards without credentials: no allow-credentials, expose * as *; the Origin null is refused even by *', async () => {
    const r = await preflight('/wild', 'https://foobar.com:12345', 'PUT', 'x-a');
    assert.equal(r.headers['access-control-allow-origin'], 'https://foobar.com:12345');
    assert.equal(r.headers['access-control-allow-methods'], 'PUT');
    assert.equal(r.headers['access-control-allow-headers'], 'x-a');
    assert.equal(r.headers['access-control-allow-credentials'], undefined);
    assert.equal(r.headers['access-control-expose-headers'], '*');
    const nul = await preflight('/wild', 'null');
    assert.equal(nul.headers['access-control-allow-origin'], undefined);
  });

  await t.test('the gateway\'s own answers carry the CORS headers too (a route without backends: 500)', async () => {
    const r = await request(port, '/no-backend', { headers: { origin: 'https://www.foo.com' } });
    assert.equal(r.status, 500);
    assert.equal(r.headers['access-control-allow-origin'], 'https://www.foo.com');
    const pre = await preflight('/no-backend', 'https://www.foo.com');
    assert.equal(pre.status, 200, 'a preflight needs no backend');
    assert.equal(pre.headers['access-control-allow-origin'], 'https://www.foo.com');
  });

  await t.test('a route without the filter adds nothing', async () => {
    const r = await request(port, '/plain', { headers: { origin: 'https://www.foo.com' } });
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    assert.equal(r.headers.vary, undefined);
  });
});
