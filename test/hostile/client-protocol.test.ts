// Requests a gateway must not forward whatever the route: a malformed
// chunked body (whose head must not reach a backend either, even over a
// warm pooled connection that would take it at once), CONNECT, TRACE and
// HTTP versions other than 1.x. Each is answered with its status and a
// close, and the backend saw none of it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rawExchange } from '../dataplane/helpers.ts';
import { firstStatus, startFixture } from './client-helpers.ts';

test('client protocol defects', { timeout: 15_000 }, async (t) => {
  const fx = await startFixture(t, { headersTimeoutMs: 500, keepAliveTimeoutMs: 1_000 });
  const warm = async (): Promise<void> => {
    // A pooled backend connection is ready: a forwarded head would leave at once.
    const reply = await rawExchange(fx.port, 'GET /warm HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n', 2_000);
    assert.equal(firstStatus(reply.text), 200);
  };

  /** Sends `raw` after warming the pool; expects `status`, a close, and nothing of it at the backend. */
  const refused = async (raw: string, status: number, marker: string): Promise<string> => {
    await warm();
    const seenBefore = fx.backend.seen.length;
    const reply = await rawExchange(fx.port, raw, 2_000);
    assert.equal(firstStatus(reply.text), status, `got ${JSON.stringify(reply.text.slice(0, 100))}`);
    assert.ok(reply.closed, 'connection closed after the refusal');
    // Give a forwarded head time to arrive, then check nothing did.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(fx.backend.seen.length, seenBefore, 'a request reached the backend');
    assert.ok(!fx.backend.raw().includes(marker), `the backend received ${marker}`);
    return reply.text;
  };

  await t.test('a malformed chunk size in the same packet as the head: 400, the head never reaches the backend', async () => {
    await refused('POST /chunked-bad HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400, '/chunked-bad');
    // A good chunk, then a bad one, still in one packet.
    await refused(
      'POST /chunked-bad2 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5x\r\n',
      400,
      '/chunked-bad2',
    );
  });

  await t.test('a complete request followed by garbage in the same packet: 400, nothing forwarded', async () => {
    await refused('GET /before-garbage HTTP/1.1\r\nHost: example.com\r\n\r\n\x01\x02 garbage\r\n\r\n', 400, '/before-garbage');
  });

  await t.test('bytes after a request that said Connection: close are ignored; the request is served', async () => {
    const reply = await rawExchange(
      fx.port,
      'GET /last HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\nGET /after-close HTTP/1.1\r\nHost: example.com\r\n\r\n',
      2_000,
    );
    assert.equal(firstStatus(reply.text), 200);
    assert.equal(reply.text.match(/HTTP\/1\.1 /g)?.length, 1);
    assert.ok(reply.closed);
    assert.ok(fx.backend.seen.some((r) => r.url === '/last'));
    assert.ok(!fx.backend.seen.some((r) => r.url === '/after-close'));
  });

  await t.test('CONNECT with a path (origin form): 400', async () => {
    await refused('CONNECT /connect-origin HTTP/1.1\r\nHost: example.com\r\n\r\n', 400, '/connect-origin');
  });

  await t.test('CONNECT host:port (authority form): 405 with Allow, no tunnel', async () => {
    const text = await refused('CONNECT connect-authority.example:443 HTTP/1.1\r\nHost: connect-authority.example:443\r\n\r\n', 405, 'connect-authority');
    assert.match(text, /\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i);
  });

  await t.test('TRACE: 405 with Allow (cross-site tracing)', async () => {
    const text = await refused('TRACE /trace-me HTTP/1.1\r\nHost: example.com\r\nCookie: secret=1\r\n\r\n', 405, '/trace-me');
    assert.match(text, /\r\nallow: /i);
    assert.ok(!text.includes('secret=1'), 'the request was echoed');
  });

  await t.test('HTTP/2.0 on an HTTP/1 connection: 505', async () => {
    await refused('GET /version-2 HTTP/2.0\r\nHost: example.com\r\n\r\n', 505, '/version-2');
  });

  await t.test('HTTP/3.0, HTTP/1.2 and a versioned HTTP/0.9: 505', async () => {
    await refused('GET /version-3 HTTP/3.0\r\nHost: example.com\r\n\r\n', 505, '/version-3');
    await refused('GET /version-12 HTTP/1.2\r\nHost: example.com\r\n\r\n', 505, '/version-12');
    await refused('GET /version-09 HTTP/0.9\r\nHost: example.com\r\n\r\n', 505, '/version-09');
  });

  await t.test('a malformed version (HTTP/x.y, HTTP/1): 400', async () => {
    await refused('GET /version-xy HTTP/x.y\r\nHost: example.com\r\n\r\n', 400, '/version-xy');
    await refused('GET /version-1 HTTP/1\r\nHost: example.com\r\n\r\n', 400, '/version-1');
  });

  await t.test('refusals are logged with listener, status and reason; the data plane still serves', async () => {
    await warm();
    const reasons = fx.logs.filter((l) => l.msg === 'request refused').map((l) => `${l.fields.status} ${l.fields.reason}`);
    assert.ok(reasons.includes('405 TRACE is not forwarded'), reasons.join('; '));
    assert.ok(reasons.includes('400 CONNECT with a path as its target'), reasons.join('; '));
    assert.ok(reasons.some((r) => r.startsWith('505 HTTP/2')), reasons.join('; '));
    assert.ok(fx.logs.filter((l) => l.msg === 'request refused').every((l) => typeof l.fields.listener === 'string'));
  });
});
