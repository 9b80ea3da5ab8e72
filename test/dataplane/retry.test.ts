// Retries over real sockets (HTTPRoute retry, GEP-1731): listed codes only,
// connection failures and resets (resets for idempotent methods only),
// per-try timeouts, the request timeout bounding every try and wait, the
// backoff between tries, and request bodies sent again up to the replay
// limit and not beyond.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { test, type TestContext } from 'node:test';
import type { RetryPolicy } from '../../src/ir/types.ts';
import { backoffDelay, compileRetry } from '../../src/dataplane/http/retry.ts';
import { backend, cluster, freePort, match, request, route, simpleIR, startDataPlane } from './helpers.ts';

interface Try {
  at: number;
  bodyBytes: number;
  sha: string;
}

/**
 * A backend that fails the first `x-fail` tries of each `x-key`, the way
 * `x-mode` says: a status code (`503`), `reset` (reads the request, then
 * resets the connection), or `slow` (answers 200 after `x-slow-ms`). Later
 * tries get 200. `x-delay-ms` delays every answer. Tries are recorded per key.
 */
async function startFlaky(t: TestContext): Promise<{ port: number; tries: Map<string, Try[]> }> {
  const tries = new Map<string, Try[]>();
  const server = http.createServer((req, res) => {
    if (req.headers['x-mode'] === 'early' && !(tries.get(String(req.headers['x-key'])) ?? []).length) {
      // The first try is refused as soon as its head arrives, its body unread.
      tries.set(String(req.headers['x-key']), [{ at: Date.now(), bodyBytes: -1, sha: '' }]);
      res.writeHead(503, { 'content-length': '0', connection: 'close' }).end();
      return;
    }
    const hash = createHash('sha256');
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
      hash.update(c);
    });
    req.on('end', () => {
      const key = String(req.headers['x-key']);
      const list = tries.get(key) ?? [];
      tries.set(key, list);
      list.push({ at: Date.now(), bodyBytes, sha: hash.digest('hex') });
      const n = list.length;
      const failing = n <= Number(req.headers['x-fail'] ?? 0);
      const mode = String(req.headers['x-mode'] ?? '503');
      const answer = (): void => {
        if (failing && mode === 'reset') {
          req.socket.resetAndDestroy();
          return;
        }
        if (failing && mode !== 'slow') {
          res.writeHead(Number(mode), { 'x-flaky': 'failed', 'content-length': '0' }).end();
          return;
        }
        const json = JSON.stringify({ tries: n, bodyBytes });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
      };
      const delay = Number(req.headers['x-delay-ms'] ?? 0) + (failing && mode === 'slow' ? Number(req.headers['x-slow-ms']) : 0);
      if (delay > 0) setTimeout(answer, delay).unref();
      else answer();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as net.AddressInfo).port, tries };
}

let keys = 0;
const newKey = (): string => `k${++keys}`;

test('backoff: at least the base, doubling, at most ten times the base, plus up to half at random', () => {
  const r = compileRetry({ codes: [], attempts: 10, backoffMs: 100 }, undefined, undefined);
  assert.equal(backoffDelay(r, 1, () => 0), 100);
  assert.equal(backoffDelay(r, 1, () => 0.999), 150);
  assert.equal(backoffDelay(r, 2, () => 0), 200);
  assert.equal(backoffDelay(r, 3, () => 0), 400);
  assert.equal(backoffDelay(r, 10, () => 0), 1000);
  assert.equal(backoffDelay(r, 60, () => 0), 1000);
  const d = compileRetry({ codes: [], attempts: 1 }, undefined, undefined);
  assert.equal(backoffDelay(d, 1, () => 0), 25, "Envoy's 25 ms base when none is given");
});

test('retries', { timeout: 60_000 }, async (t) => {
  const flaky = await startFlaky(t);
  const deadPort = await freePort();
  const port = await freePort();
  // A try that hangs (a bug sending too little body) ends in seconds, not the default minute.
  const dp = await startDataPlane(t, { limits: { maxReplayBodyBytes: 16 * 1024, upstreamResponseTimeoutMs: 5_000 } });
  const retry = (p: Partial<RetryPolicy>): RetryPolicy => ({ codes: [], attempts: 2, backoffMs: 10, ...p });
  const result = await dp.apply(
    simpleIR(
      port,
      [
        route('codes', match('/codes'), [backend('flaky')], { retry: retry({ codes: [503] }) }),
        route('no-retry', match('/no-retry'), [backend('flaky')]),
        route('resets', match('/resets'), [backend('flaky')], { retry: retry({}) }),
        route('half-dead', match('/half-dead'), [backend('half-dead')], { retry: retry({ attempts: 1 }) }),
        route('half-dead-no-retry', match('/half-dead-no-retry'), [backend('half-dead')]),
        route('per-try', match('/per-try'), [backend('flaky')], { retry: retry({}), timeouts: { backendRequestMs: 150 } }),
        route('total', match('/total'), [backend('flaky')], { retry: retry({ codes: [500], attempts: 50 }), timeouts: { requestMs: 300 } }),
        route('backoff', match('/backoff'), [backend('flaky')], { retry: retry({ codes: [503], backoffMs: 100 }) }),
        route('body', match('/body'), [backend('flaky')], { retry: retry({ codes: [503] }) }),
      ],
      [cluster('flaky', { port: flaky.port }), cluster('half-dead', { port: deadPort }, { port: flaky.port })],
    ),
  );
  assert.deepEqual(result.routeErrors, {});

  const send = (path: string, key: string, headers: Record<string, string> = {}, method = 'GET', body?: Buffer) =>
    request(port, path, { method, headers: { 'x-key': key, ...headers }, ...(body === undefined ? {} : { body }) });
  const triesOf = (key: string) => flaky.tries.get(key) ?? [];

  await t.test('a listed status is retried until a try succeeds', async () => {
    const key = newKey();
    const r = await send('/codes', key, { 'x-fail': '2', 'x-mode': '503' });
    assert.equal(r.status, 200);
    assert.equal(r.json<{ tries: number }>().tries, 3);
    assert.equal(triesOf(key).length, 3);
  });

  await t.test('out of tries, the last response is relayed as the backend sent it', async () => {
    const key = newKey();
    const r = await send('/codes', key, { 'x-fail': '3', 'x-mode': '503' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-flaky'], 'failed');
    assert.equal(triesOf(key).length, 3, 'attempts: 2 means three tries');
  });

  await t.test('a status not listed is not retried, nor anything on a route without retry', async () => {
    const key = newKey();
    assert.equal((await send('/codes', key, { 'x-fail': '1', 'x-mode': '500' })).status, 500);
    assert.equal(triesOf(key).length, 1);
    const key2 = newKey();
    assert.equal((await send('/no-retry', key2, { 'x-fail': '1', 'x-mode': '503' })).status, 503);
    assert.equal(triesOf(key2).length, 1);
  });

  await t.test('a reset before any response is retried for GET; out of tries it is 503', async () => {
    const key = newKey();
    const r = await send('/resets', key, { 'x-fail': '2', 'x-mode': 'reset' });
    assert.equal(r.status, 200);
    assert.equal(triesOf(key).length, 3);
    const key2 = newKey();
    assert.equal((await send('/resets', key2, { 'x-fail': '5', 'x-mode': 'reset' })).status, 503);
    assert.equal(triesOf(key2).length, 3);
  });

  await t.test('a reset is not retried for POST: the backend may have acted on it', async () => {
    const key = newKey();
    const r = await send('/resets', key, { 'x-fail': '1', 'x-mode': 'reset' }, 'POST', Buffer.from('order one pizza'));
    assert.equal(r.status, 503);
    assert.equal(triesOf(key).length, 1);
  });

  await t.test('a connection that cannot be made is retried, on another endpoint, for POST too', async () => {
    const key = newKey();
    for (let i = 0; i < 6; i++) {
      const r = await send('/half-dead', key, {}, 'POST', Buffer.from(`request ${i}`));
      assert.equal(r.status, 200, `request ${i}`);
    }
    assert.equal(triesOf(key).length, 6, 'each reached the live endpoint once');
    // The control: without retry, the dead endpoint's turns fail.
    const statuses = new Set<number>();
    for (let i = 0; i < 4; i++) statuses.add((await send('/half-dead-no-retry', newKey())).status);
    assert.deepEqual([...statuses].sort(), [200, 503]);
  });

  await t.test('each try has timeouts.backendRequest: slow tries are cut and retried', async () => {
    const key = newKey();
    const started = Date.now();
    const r = await send('/per-try', key, { 'x-fail': '2', 'x-mode': 'slow', 'x-slow-ms': '1000' });
    const took = Date.now() - started;
    assert.equal(r.status, 200);
    assert.equal(triesOf(key).length, 3);
    assert.ok(took >= 300 && took < 900, `two tries of 150 ms, then a fast one: took ${took} ms`);
    const key2 = newKey();
    const r2 = await send('/per-try', key2, { 'x-fail': '9', 'x-mode': 'slow', 'x-slow-ms': '1000' });
    assert.equal(r2.status, 504);
    assert.equal(triesOf(key2).length, 3);
  });

  await t.test('timeouts.request bounds every try and wait together: 504 when it passes', async () => {
    const key = newKey();
    const started = Date.now();
    const r = await send('/total', key, { 'x-fail': '100', 'x-mode': '500', 'x-delay-ms': '60' });
    const took = Date.now() - started;
    assert.equal(r.status, 504);
    assert.ok(took >= 290 && took < 700, `took ${took} ms for a 300 ms request timeout`);
    const n = triesOf(key).length;
    assert.ok(n >= 2 && n <= 5, `${n} tries of 60 ms fit in 300 ms with the waits`);
  });

  await t.test('tries wait at least the backoff, doubling', async () => {
    const key = newKey();
    assert.equal((await send('/backoff', key, { 'x-fail': '2', 'x-mode': '503' })).status, 200);
    const [one, two, three] = triesOf(key);
    assert.ok(two.at - one.at >= 100 && two.at - one.at < 400, `first wait ${two.at - one.at} ms, base 100`);
    assert.ok(three.at - two.at >= 200, `second wait ${three.at - two.at} ms, at least 200`);
  });

  await t.test('a body within maxReplayBodyBytes is sent again whole', async () => {
    const key = newKey();
    const body = Buffer.alloc(10_000, 7);
    const r = await send('/body', key, { 'x-fail': '1', 'x-mode': '503' }, 'POST', body);
    assert.equal(r.status, 200);
    const [first, second] = triesOf(key);
    assert.equal(first.bodyBytes, 10_000);
    assert.equal(second.bodyBytes, 10_000);
    assert.equal(second.sha, first.sha);
  });

  await t.test('a try refused while the client is still uploading: the next try gets what was sent so far, then the rest', async () => {
    const key = newKey();
    const chunks = [Buffer.alloc(3000, 1), Buffer.alloc(3000, 2), Buffer.alloc(3000, 3)];
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port, path: '/body', method: 'POST',
        headers: { host: 'example.com', 'x-key': key, 'x-mode': 'early', 'content-length': '9000' },
        agent: false,
      }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.write(chunks[0]);
      setTimeout(() => req.write(chunks[1]), 100);
      setTimeout(() => req.end(chunks[2]), 200);
    });
    assert.equal(reply.status, 200);
    const [first, second] = triesOf(key);
    assert.equal(first.bodyBytes, -1, 'the first try was refused unread');
    assert.equal(second.bodyBytes, 9000);
    assert.equal(second.sha, createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
  });

  await t.test('a body beyond maxReplayBodyBytes is forwarded whole but not retried', async () => {
    const key = newKey();
    const body = Buffer.alloc(50_000, 9);
    const r = await send('/body', key, { 'x-fail': '1', 'x-mode': '503' }, 'POST', body);
    assert.equal(r.status, 503);
    assert.equal(triesOf(key).length, 1);
    assert.equal(triesOf(key)[0].bodyBytes, 50_000);
  });
});
