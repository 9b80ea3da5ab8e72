// Backends that fail in the ways real ones do, over real sockets, with
// short limits: one that never accepts, one that accepts and never
// answers, one that stops in the middle of a body. Each wait ends within
// its limit, with the status Envoy would give and a log line naming the
// route, the cluster and the limit.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backend, cluster, freePort, match, route, simpleIR, startDataPlane } from '../dataplane/helpers.ts';
import { connectHangs, logSink, rawBackend, send, unacceptingPort } from './backend-helpers.ts';

const LIMIT_MS = 300;
/**
 * GATEHOUSE_UPSTREAM=undici runs these against undici's Pool: its timers
 * tick twice a second, so a 300 ms limit is met within about a second.
 */
const UNDICI = process.env.GATEHOUSE_UPSTREAM === 'undici';
/** The pool's sweep meets a deadline at most an eighth late; the rest is scheduling slack. */
const SLACK_MS = UNDICI ? 1_500 : 400;

test('backend faults', { timeout: 10_000 }, async (t) => {
  const unaccepting = await unacceptingPort(t);
  assert.ok(await connectHangs(unaccepting, 200), 'a connect to the unaccepting port hangs');
  const silent = await rawBackend(t, () => {});
  const stalls = await rawBackend(t, (conn) => {
    conn.answer('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
  });
  const slowHead = await rawBackend(t, (conn) => {
    setTimeout(() => conn.answer('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 2 * LIMIT_MS);
  });

  const sink = logSink();
  const port = await freePort();
  const dp = await startDataPlane(t, {
    log: sink.log,
    limits: {
      upstreamConnectTimeoutMs: LIMIT_MS,
      upstreamResponseTimeoutMs: LIMIT_MS,
      upstreamIdleTimeoutMs: LIMIT_MS,
      drainTimeoutMs: 100,
    },
  });
  await dp.apply(
    simpleIR(
      port,
      [
        route('unaccepting', match('/unaccepting'), [backend('unaccepting')]),
        route('silent', match('/silent'), [backend('silent')]),
        route('stalls', match('/stalls'), [backend('stalls')]),
        route('slow-head', match('/slow-head'), [backend('slow-head')]),
        // Its own timeout replaces the per-try response timeout.
        route('slow-head-allowed', match('/slow-head-allowed'), [backend('slow-head')], { timeouts: { backendRequestMs: 4 * LIMIT_MS } }),
      ],
      [
        cluster('unaccepting', { port: unaccepting }),
        cluster('silent', silent),
        cluster('stalls', stalls),
        cluster('slow-head', slowHead),
      ],
    ),
  );
  const warned = (msg: string, fields: Record<string, unknown>): boolean =>
    sink.lines.some((l) => l.level === 'warn' && l.msg === msg && Object.entries(fields).every(([k, v]) => l.fields[k] === v));

  await t.test('a backend that never accepts: 503 within the connect timeout', async () => {
    const outcome = await send(port, '/unaccepting');
    assert.equal(outcome.status, 503);
    assert.ok(outcome.ms >= LIMIT_MS - 20 && outcome.ms < LIMIT_MS + SLACK_MS, `answered after ${outcome.ms} ms`);
    assert.ok(
      warned('upstream request failed', { route: 'unaccepting', cluster: 'unaccepting', status: 503, limit: 'upstreamConnectTimeoutMs' }),
      JSON.stringify(sink.lines),
    );
  });

  await t.test('a backend that accepts and never answers: 504 within the response timeout', async () => {
    const outcome = await send(port, '/silent');
    assert.equal(outcome.status, 504);
    assert.ok(outcome.ms >= LIMIT_MS - 20 && outcome.ms < LIMIT_MS + SLACK_MS, `answered after ${outcome.ms} ms`);
    assert.ok(
      warned('upstream request failed', { route: 'silent', cluster: 'silent', status: 504, limit: 'upstreamResponseTimeoutMs' }),
      JSON.stringify(sink.lines),
    );
  });

  await t.test('a backend that stops mid-body: the response is cut within the idle timeout', async () => {
    const outcome = await send(port, '/stalls');
    assert.equal(outcome.status, 200);
    assert.equal(outcome.body, '0123456789');
    assert.ok(outcome.cut, 'the client connection is closed: the response is incomplete');
    assert.ok(outcome.ms >= LIMIT_MS - 20 && outcome.ms < LIMIT_MS + SLACK_MS, `cut after ${outcome.ms} ms`);
    assert.ok(warned('upstream response cut', { route: 'stalls', cluster: 'stalls', limit: 'upstreamIdleTimeoutMs' }), JSON.stringify(sink.lines));
  });

  await t.test("a route's backendRequest timeout replaces the per-try response timeout", { skip: UNDICI && 'undici meets a 300 ms timeout after ~1 s' }, async () => {
    assert.equal((await send(port, '/slow-head')).status, 504);
    const allowed = await send(port, '/slow-head-allowed');
    assert.equal(allowed.status, 200);
    assert.equal(allowed.body, 'ok');
  });
});
