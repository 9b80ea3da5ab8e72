// Backend choice and upstream failures over real sockets: weights, invalid
// and empty backends, round robin, dead and resetting endpoints, timeouts.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { backend, cluster, freePort, match, request, route, simpleIR, startBackend, startDataPlane } from './helpers.ts';

test('backends', async (t) => {
  const [a, b] = await Promise.all([startBackend(t, 'a'), startBackend(t, 'b')]);
  const deadPort = await freePort();
  // Accepts, reads the request, then resets the connection without answering.
  const resetter = net.createServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
  await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => resetter.close(() => resolve())));
  // Sends headers and part of the body, then cuts the connection.
  const truncator = net.createServer((socket) =>
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
      setTimeout(() => socket.destroy(), 50);
    }),
  );
  await new Promise<void>((resolve) => truncator.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => truncator.close(() => resolve())));

  const port = await freePort();
  const dp = await startDataPlane(t);
  const result = await dp.apply(
    simpleIR(
      port,
      [
        route('w0-100', match('/w0-100'), [backend('a', 0), backend('b', 100)]),
        route('w50-50', match('/w50-50'), [backend('a', 50), backend('b', 50)]),
        route('w1-3', match('/w1-3'), [backend('a', 1), backend('b', 3)]),
        route('null', match('/null'), [backend(null)]),
        route('half-null', match('/half-null'), [backend(null, 1), backend('a', 1)]),
        route('all-zero', match('/all-zero'), [backend('a', 0), backend('b', 0)]),
        route('none', match('/none'), []),
        route('unknown', match('/unknown'), [backend('no-such-cluster')]),
        route('empty', match('/empty'), [backend('empty')]),
        route('rr', match('/rr'), [backend('rr')]),
        route('dead', match('/dead'), [backend('dead')]),
        route('reset', match('/reset'), [backend('reset')]),
        route('truncated', match('/truncated'), [backend('truncated')]),
        route('backend-timeout', match('/backend-timeout'), [backend('a')], { timeouts: { backendRequestMs: 200 } }),
        route('request-timeout', match('/request-timeout'), [backend('a')], { timeouts: { requestMs: 200 } }),
        route('timeout-not-hit', match('/timeout-not-hit'), [backend('a')], { timeouts: { requestMs: 2_000 } }),
      ],
      [
        cluster('a', a),
        cluster('b', b),
        { name: 'empty', protocol: 'http1', endpoints: [] },
        cluster('rr', a, b),
        cluster('dead', { port: deadPort }),
        cluster('reset', { port: (resetter.address() as net.AddressInfo).port }),
        cluster('truncated', { port: (truncator.address() as net.AddressInfo).port }),
      ],
    ),
  );
  assert.deepEqual(result.listenerErrors, {});
  assert.deepEqual(Object.keys(result.routeErrors), ['unknown']);

  const tally = async (path: string, n: number): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const reply = await request(port, path);
      const key = reply.status === 200 ? reply.json().backend : String(reply.status);
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  };

  await t.test('weight 0 is never chosen', async () => {
    assert.deepEqual(await tally('/w0-100', 200), { b: 200 });
  });

  await t.test('50/50 splits evenly (200 requests, ±30)', async () => {
    const counts = await tally('/w50-50', 200);
    assert.equal((counts.a ?? 0) + (counts.b ?? 0), 200);
    assert.ok(Math.abs((counts.a ?? 0) - 100) <= 30, JSON.stringify(counts));
  });

  await t.test('1/3 gives a quarter (400 requests, ±40)', async () => {
    const counts = await tally('/w1-3', 400);
    assert.ok(Math.abs((counts.a ?? 0) - 100) <= 40, JSON.stringify(counts));
  });

  await t.test('an invalid backend gets 500 for its share', async () => {
    assert.deepEqual(await tally('/null', 5), { '500': 5 });
    const counts = await tally('/half-null', 200);
    assert.equal((counts['500'] ?? 0) + (counts.a ?? 0), 200);
    assert.ok(Math.abs((counts['500'] ?? 0) - 100) <= 30, JSON.stringify(counts));
  });

  await t.test('no backends, all weights 0, or an unknown cluster: 500', async () => {
    assert.equal((await request(port, '/all-zero')).status, 500);
    assert.equal((await request(port, '/none')).status, 500);
    assert.equal((await request(port, '/unknown')).status, 500);
  });

  await t.test('a cluster without endpoints: 503', async () => {
    assert.equal((await request(port, '/empty')).status, 503);
  });

  await t.test('endpoints take turns', async () => {
    const order: string[] = [];
    for (let i = 0; i < 6; i++) order.push((await request(port, '/rr')).json().backend);
    assert.ok(order.join() === 'a,b,a,b,a,b' || order.join() === 'b,a,b,a,b,a', order.join());
  });

  await t.test('connection refused: 503, as Envoy answers a connect failure', async () => {
    assert.equal((await request(port, '/dead')).status, 503);
  });

  await t.test('connection reset before a response: 502', async () => {
    assert.equal((await request(port, '/reset')).status, 502);
  });

  await t.test('upstream cut mid-body: the client connection is cut too', async () => {
    await assert.rejects(request(port, '/truncated'), /aborted|ECONNRESET|socket hang up/);
  });

  await t.test('backend request timeout: 504', async () => {
    const started = Date.now();
    const reply = await request(port, '/backend-timeout', { headers: { 'x-test-delay-ms': '3000' } });
    assert.equal(reply.status, 504);
    assert.ok(Date.now() - started < 2_000);
  });

  await t.test('request timeout: 504', async () => {
    const reply = await request(port, '/request-timeout', { headers: { 'x-test-delay-ms': '3000' } });
    assert.equal(reply.status, 504);
  });

  await t.test('a timeout that is not reached changes nothing', async () => {
    const reply = await request(port, '/timeout-not-hit', { headers: { 'x-test-delay-ms': '100' } });
    assert.equal(reply.status, 200);
  });

  await t.test('the data plane still serves after all of the above', async () => {
    assert.equal((await request(port, '/rr')).status, 200);
  });
});
