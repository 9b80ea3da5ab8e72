// HTTP/2 at the front, over real sockets with node's http2 client: h2 over
// TLS by ALPN and cleartext h2 with prior knowledge, HTTP/1.1 still served
// on both listeners, and the same routes, filters, redirects, errors and
// bodies giving the same answers over both protocols (RFC 9113 §8 for the
// translation: :authority as Host, cookies joined, no connection-specific
// fields). Drain: GOAWAY, and the streams in flight finish.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import tls from 'node:tls';
import type { Filter } from '../../src/ir/types.ts';
import { h2connect, h2request, type H2Reply } from './h2-helpers.ts';
import {
  backend,
  cluster,
  freePort,
  gatewayListener,
  ir,
  listener,
  match,
  rawExchange,
  request,
  route,
  selfSigned,
  sleep,
  startBackend,
  startDataPlane,
  statusOf,
  vhost,
  type Reply,
} from './helpers.ts';

const header = (name: string, value: string) => ({ name, value });

test('HTTP/2 at the front', { timeout: 60_000 }, async (t) => {
  const [a, b] = await Promise.all([startBackend(t, 'a'), startBackend(t, 'b')]);
  const plainPort = await freePort();
  const tlsPort = await freePort();
  const deadPort = await freePort();
  const { cert, key } = selfSigned('example.com', ['example.com', '*.example.com']);
  const redirect: Filter = { type: 'RequestRedirect', hostname: 'elsewhere.example', statusCode: 301 };
  const routes = [
    route('hdr', match('/h', 'PathPrefix', { headers: [{ name: 'x-env', type: 'Exact', value: 'canary' }] }), [backend('b')]),
    route('redir', match('/redir', 'Exact'), [], { filters: [redirect] }),
    route('rewrite', match('/rw'), [backend('a')], {
      filters: [
        { type: 'URLRewrite', path: { type: 'ReplacePrefixMatch', value: '/v2', prefix: '/rw' } },
        { type: 'RequestHeaderModifier', set: [header('x-set', 'yes')], add: [], remove: ['x-drop'] },
        { type: 'ResponseHeaderModifier', set: [header('x-resp', 'r')], add: [], remove: [] },
      ],
    }),
    route('dead', match('/dead'), [backend('dead')]),
    // A response modifier may add fields HTTP/2 forbids (RFC 9113 §8.2.2).
    route('hop-mod', match('/hop-mod'), [backend('a')], {
      filters: [{ type: 'ResponseHeaderModifier', set: [header('keep-alive', 'timeout=5'), header('upgrade', 'h2c')], add: [], remove: [] }],
    }),
    route('slow', match('/slow'), [backend('a')], { timeouts: { requestMs: 200 } }),
    route('none', match('/none'), []),
    route('all', match('/'), [backend('a')]),
  ];
  const gw = [gatewayListener('ns/gw/l', null, [vhost('*.example.com', routes), vhost('example.com', routes)])];
  const dp = await startDataPlane(t);
  const result = await dp.apply(
    ir(
      [listener(plainPort, gw), listener(tlsPort, gw, [{ serverNames: ['*'], certChain: cert, privateKey: key }])],
      [cluster('a', a), cluster('b', b), cluster('dead', { port: deadPort })],
    ),
  );
  assert.deepEqual(result.listenerErrors, {});

  const h2c = await h2connect(plainPort);
  const h2tls = await h2connect(tlsPort, { tls: true });
  t.after(() => {
    h2c.destroy();
    h2tls.destroy();
  });

  await t.test('h2 over TLS is chosen by ALPN; http/1.1 and no ALPN still get HTTP/1.1', async () => {
    assert.equal(h2tls.alpnProtocol, 'h2');
    const reply = await h2request(h2tls, '/x', { authority: 'api.example.com' });
    assert.equal(reply.status, 200);
    const echo = reply.json();
    assert.equal(echo.backend, 'a');
    assert.equal(echo.headers['x-forwarded-proto'], 'https');
    for (const alpn of [['http/1.1'], undefined]) {
      const socket = tls.connect({ host: '127.0.0.1', port: tlsPort, servername: 'example.com', rejectUnauthorized: false, ...(alpn ? { ALPNProtocols: alpn } : {}) });
      await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      assert.equal(socket.alpnProtocol, alpn ? 'http/1.1' : false);
      // end(), not destroy(): the server must see the handshake finish.
      socket.end();
      await new Promise((resolve) => socket.once('close', resolve));
    }
    const h1 = await request(tlsPort, '/x', { https: { servername: 'example.com' } });
    assert.equal(h1.status, 200);
    assert.equal(h1.json().backend, 'a');
  });

  await t.test('h2c with prior knowledge and HTTP/1.1 share the plain port', async () => {
    const reply = await h2request(h2c, '/x?q=1', { authority: 'api.example.com' });
    assert.equal(reply.status, 200);
    const echo = reply.json();
    assert.equal(echo.path, '/x?q=1');
    assert.equal(echo.headers['x-forwarded-proto'], 'http');
    // HTTP/1.1 on the same port, keep-alive included, after the h2c session.
    const agentReply = await request(plainPort, '/y', { host: 'api.example.com' });
    assert.equal(agentReply.status, 200);
    const raw = await rawExchange(plainPort, 'GET /one HTTP/1.1\r\nHost: example.com\r\n\r\nGET /two HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n');
    assert.equal(raw.text.match(/HTTP\/1\.1 200 /g)?.length, 2);
  });

  await t.test('RFC 9113 §8: :authority is Host, cookie crumbs joined, no connection-specific field answered', async () => {
    const reply = await h2request(h2c, '/hdrs', {
      authority: 'api.example.com:8080',
      headers: {
        cookie: ['a=1', 'b=2'],
        'x-many': ['1', '2'],
        // The backend answers with HTTP/1.1 hop-by-hop fields, which HTTP/2 forbids.
        'x-test-response-headers': JSON.stringify({ connection: 'x-hop', 'x-hop': 'no', 'keep-alive': 'timeout=5', 'x-kept': 'yes' }),
      },
    });
    assert.equal(reply.status, 200);
    const echo = reply.json();
    assert.equal(echo.headers.host, 'api.example.com:8080');
    assert.equal(echo.headers['x-forwarded-host'], 'api.example.com:8080');
    assert.equal(echo.headers.cookie, 'a=1; b=2');
    assert.equal(echo.headers['x-many'], '1, 2');
    assert.equal(reply.headers['x-kept'], 'yes');
    for (const name of ['connection', 'keep-alive', 'x-hop', 'transfer-encoding']) assert.equal(reply.headers[name], undefined, name);
    assert.ok(reply.headers.date, 'a Date field');
    const modified = await h2request(h2c, '/hop-mod');
    assert.equal(modified.status, 200);
    assert.equal(modified.headers['keep-alive'], undefined);
    assert.equal(modified.headers.upgrade, undefined);
  });

  await t.test('a Host that differs from :authority: the stream is refused (malformed, RFC 9113 §8.3.1)', async () => {
    await assert.rejects(h2request(h2c, '/mismatch', { authority: 'a.example.com', headers: { host: 'b.example.com' } }), /PROTOCOL_ERROR/);
    assert.ok(!a.seen.some((r) => r.path === '/mismatch'));
    // The session goes on.
    assert.equal((await h2request(h2c, '/after-mismatch')).status, 200);
  });

  await t.test('routing, filters, redirects and errors answer the same over HTTP/1.1 and HTTP/2', async () => {
    interface Case {
      path: string;
      host?: string;
      method?: string;
      headers?: Record<string, string>;
    }
    const cases: Case[] = [
      { path: '/h/1', headers: { 'x-env': 'canary' } },
      { path: '/h/1', headers: { 'x-env': 'other' } },
      { path: '/redir' },
      { path: '/rw/rest?k=v', headers: { 'x-drop': 'gone', 'x-set': 'no' } },
      { path: '/dead' },
      { path: '/none' },
      { path: '/slow', headers: { 'x-test-delay-ms': '1000' } },
      { path: '/x', host: 'nowhere.test' },
      { path: '/%zz' },
      { path: '/trace', method: 'TRACE' },
      { path: '/head', method: 'HEAD' },
      { path: '/post', method: 'POST' },
    ];
    const summary = (r: Reply | H2Reply) => {
      const echo = r.status === 200 && r.text !== '' ? r.json() : null;
      return {
        status: r.status,
        location: r.headers.location,
        allow: r.headers.allow,
        resp: r.headers['x-resp'],
        // Local answers only: an echo's length differs with the protocol it saw.
        length: echo === null ? r.headers['content-length'] : undefined,
        backend: echo?.backend,
        path: echo?.path,
        set: echo?.headers['x-set'],
        drop: echo?.headers['x-drop'],
      };
    };
    for (const c of cases) {
      const host = c.host ?? 'example.com';
      for (const session of [h2c, h2tls]) {
        // Over the same listener: a redirect names its scheme and port.
        const h1 = await request(session === h2c ? plainPort : tlsPort, c.path, {
          host,
          method: c.method,
          headers: c.headers,
          ...(session === h2c ? {} : { https: { servername: 'example.com' } }),
        });
        const h2 = await h2request(session, c.path, { authority: host, method: c.method, headers: c.headers });
        assert.deepEqual(summary(h2), summary(h1), `${c.method ?? 'GET'} ${host}${c.path} over ${session === h2c ? 'h2c' : 'h2'}`);
      }
    }
  });

  await t.test('large bodies stream both ways (16 MiB up, echoed back down)', async () => {
    const size = 16 * 1024 * 1024;
    const piece = Buffer.alloc(64 * 1024);
    for (let i = 0; i < piece.length; i++) piece[i] = (i * 31) & 0xff;
    const upload = Readable.from((function* () {
      for (let sent = 0; sent < size; sent += piece.length) yield piece;
    })());
    const expected = createHash('sha256');
    for (let sent = 0; sent < size; sent += piece.length) expected.update(piece);
    for (const session of [h2c, h2tls]) {
      const body = Readable.from((function* () {
        for (let sent = 0; sent < size; sent += piece.length) yield piece;
      })());
      const reply = await h2request(session, '/echo', { method: 'PUT', headers: { 'x-test-echo-body': '1' }, body });
      assert.equal(reply.status, 200);
      assert.equal(reply.body.length, size);
      assert.equal(createHash('sha256').update(reply.body).digest('hex'), expected.copy().digest('hex'));
    }
    upload.destroy();
  });

  await t.test('Expect: 100-continue is answered with a 100 before the body', async () => {
    const stream = h2c.request({ ':method': 'POST', ':path': '/continue', ':authority': 'example.com', expect: '100-continue' });
    const continued = new Promise<void>((resolve) => stream.once('continue', resolve));
    await continued;
    stream.end('after continue');
    const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    stream.resume();
    assert.equal(status, 200);
  });

  await t.test('many streams on one connection at once', async () => {
    const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => h2request(h2c, `/many/${i}`, { headers: { 'x-test-delay-ms': '20' } })));
    assert.deepEqual(new Set(replies.map((r) => r.status)), new Set([200]));
    assert.deepEqual(replies.map((r) => r.json().path), Array.from({ length: 60 }, (_, i) => `/many/${i}`));
  });

  await t.test('a client that resets a stream aborts its upstream request; the session goes on', async () => {
    const upstreamClosed = new Promise<boolean>((resolve) => {
      const onRequest = (req: { url?: string }, res: { on(e: 'close', f: () => void): void; writableFinished: boolean }) => {
        if (req.url !== '/slow-reset') return;
        a.server.off('request', onRequest);
        res.on('close', () => resolve(!res.writableFinished));
      };
      a.server.on('request', onRequest);
    });
    const stream = h2c.request({ ':path': '/slow-reset', ':authority': 'example.com', 'x-test-delay-ms': '1000' });
    stream.on('error', () => {});
    await sleep(100);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    assert.equal(await upstreamClosed, true, 'the backend request was abandoned before its answer');
    assert.equal((await h2request(h2c, '/after-reset')).status, 200);
  });

  await t.test('"PRI * HTTP/2.0" that is not the exact preface goes to HTTP/1.1 and is refused', async () => {
    const reply = await rawExchange(plainPort, 'PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n', 2_000);
    assert.ok([400, 505].includes(statusOf(reply.text)), JSON.stringify(reply.text.slice(0, 60)));
    assert.ok(reply.closed);
  });

  await t.test('drain: GOAWAY to HTTP/2 clients, the streams in flight finish', async () => {
    // Shutdown's first step: the next answer on a connection sends it away.
    dp.beginDrain();
    const early = await h2connect(tlsPort, { tls: true });
    const earlyGoaway = new Promise<number>((resolve) => early.once('goaway', (code) => resolve(code)));
    assert.equal((await h2request(early, '/while-draining')).status, 200);
    assert.equal(await earlyGoaway, http2.constants.NGHTTP2_NO_ERROR);
    early.destroy();
    const session = await h2connect(plainPort);
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)));
    const inFlight = h2request(session, '/in-flight', { headers: { 'x-test-delay-ms': '300' } });
    await sleep(50);
    const closing = dp.close();
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    const reply = await inFlight;
    assert.equal(reply.status, 200);
    assert.equal(reply.json().path, '/in-flight');
    await closing;
    session.destroy();
  });
});
