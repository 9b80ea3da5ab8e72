// The connection cap and queue of a cluster, over real sockets: requests
// beyond the cap wait in order for a connection, a full queue is refused at
// once with 503 (and one log line a second, with a count), a waiter gives up
// after the connect timeout, and a client that goes away leaves the queue.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { backend, cluster, freePort, match, route, simpleIR, startDataPlane } from '../dataplane/helpers.ts';
import { deferred, eventually, logSink, okResponse, rawBackend, send, type RawConnection } from './backend-helpers.ts';

const MAX_CONNECTIONS = 2;
const MAX_PENDING = 2;
const QUEUE_WAIT_MS = 800;

function pathOf(conn: RawConnection): string {
  return /^[A-Z]+ (\S+)/.exec(conn.raw)?.[1] ?? '?';
}

// undici's Pool caps connections per endpoint only, and its queue has no bound.
const UNDICI = process.env.GATEHOUSE_UPSTREAM === 'undici';

test('backend connection cap and queue', { timeout: 10_000, skip: UNDICI && 'the lean client only' }, async (t) => {
  // Holds every answer until released; records which requests it saw.
  let release = deferred();
  const seen: string[] = [];
  const slow = await rawBackend(t, (conn) => {
    seen.push(pathOf(conn));
    void release.promise.then(() => conn.answer(okResponse(pathOf(conn))));
  });
  const quickA = await rawBackend(t, (conn) => conn.answer(okResponse('a')));
  const quickB = await rawBackend(t, (conn) => conn.answer(okResponse('b')));
  const quickC = await rawBackend(t, (conn) => conn.answer(okResponse('c')));

  const sink = logSink();
  const port = await freePort();
  const dp = await startDataPlane(t, {
    log: sink.log,
    limits: {
      maxUpstreamConnectionsPerCluster: MAX_CONNECTIONS,
      maxPendingRequestsPerCluster: MAX_PENDING,
      upstreamConnectTimeoutMs: QUEUE_WAIT_MS,
      drainTimeoutMs: 100,
    },
  });
  await dp.apply(
    simpleIR(
      port,
      [route('slow', match('/slow'), [backend('slow')]), route('trio', match('/trio'), [backend('trio')])],
      [cluster('slow', slow), cluster('trio', quickA, quickB, quickC)],
    ),
  );

  await t.test('beyond the cap requests wait in order; beyond the queue: 503 at once, logged once a second', async () => {
    release = deferred();
    seen.length = 0;
    const running = [send(port, '/slow/1'), send(port, '/slow/2')];
    assert.ok(await eventually(() => seen.length === 2, 2_000), 'the first two reach the backend');
    const waiting = [send(port, '/slow/3'), send(port, '/slow/4')];
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seen, ['/slow/1', '/slow/2'], 'the next two wait: no third connection');
    assert.equal(slow.open, MAX_CONNECTIONS);

    const refused = await Promise.all(Array.from({ length: 10 }, () => send(port, '/slow/overflow')));
    for (const o of refused) {
      assert.equal(o.status, 503);
      assert.ok(o.ms < 200, `refused at once (${o.ms} ms)`);
    }
    const lines = sink.lines.filter((l) => l.msg.startsWith('upstream cluster at its connection cap'));
    assert.equal(lines.length, 1, 'one log line for the burst');
    assert.equal(lines[0].level, 'warn');
    assert.equal(lines[0].fields.cluster, 'slow');
    assert.equal(lines[0].fields.limit, 'maxPendingRequestsPerCluster');

    release.resolve();
    const answers = await Promise.all([...running, ...waiting]);
    assert.deepEqual(answers.map((o) => o.body), ['/slow/1', '/slow/2', '/slow/3', '/slow/4']);
    assert.deepEqual(seen, ['/slow/1', '/slow/2', '/slow/3', '/slow/4'], 'served first come, first served');
    assert.equal(slow.maxOpen, MAX_CONNECTIONS, 'never more connections than the cap');
  });

  await t.test('a waiting request gives up after the connect timeout: 503', async () => {
    release = deferred();
    seen.length = 0;
    const running = [send(port, '/slow/1'), send(port, '/slow/2')];
    assert.ok(await eventually(() => seen.length === 2, 2_000));
    const waited = await send(port, '/slow/waits');
    assert.equal(waited.status, 503);
    assert.ok(waited.ms >= QUEUE_WAIT_MS - 20 && waited.ms < QUEUE_WAIT_MS + 400, `gave up after ${waited.ms} ms`);
    assert.ok(
      sink.lines.some((l) => l.msg === 'upstream request failed' && l.fields.cluster === 'slow' && l.fields.limit === 'upstreamConnectTimeoutMs'),
      JSON.stringify(sink.lines),
    );
    release.resolve();
    await Promise.all(running);
    assert.deepEqual(seen, ['/slow/1', '/slow/2'], 'the backend never saw the request that gave up');
  });

  await t.test('a client that goes away leaves the queue', async () => {
    release = deferred();
    seen.length = 0;
    const running = [send(port, '/slow/1'), send(port, '/slow/2')];
    assert.ok(await eventually(() => seen.length === 2, 2_000));
    // Goes away for good: a reset, not a half-close (after a FIN a client
    // may still be waiting for its answer).
    const leaving = net.connect(port, '127.0.0.1');
    leaving.on('error', () => {});
    leaving.write('GET /slow/leaves HTTP/1.1\r\nHost: example.com\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50));
    const staying = send(port, '/slow/stays');
    await new Promise((r) => setTimeout(r, 50));
    leaving.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 50));
    // Its place in the queue is free again: this one waits instead of a 503.
    const third = send(port, '/slow/third');
    await new Promise((r) => setTimeout(r, 50));
    release.resolve();
    const answers = await Promise.all([...running, staying, third]);
    assert.deepEqual(answers.map((o) => o.status), [200, 200, 200, 200]);
    assert.deepEqual(seen, ['/slow/1', '/slow/2', '/slow/stays', '/slow/third'], 'the request whose client left never reached the backend');
  });

  await t.test('at the cap, an idle connection at another endpoint of the cluster makes room', async () => {
    // /trio round-robins over three endpoints; with a cap of 2 the third
    // request finds both places taken by idle connections at the others.
    const bodies: string[] = [];
    for (let i = 0; i < 6; i++) {
      const o = await send(port, '/trio');
      assert.equal(o.status, 200);
      assert.ok(o.ms < QUEUE_WAIT_MS / 2, `served without waiting for the queue (${o.ms} ms)`);
      bodies.push(o.body);
    }
    assert.deepEqual(bodies, ['a', 'b', 'c', 'a', 'b', 'c']);
    assert.ok(await eventually(() => quickA.open + quickB.open + quickC.open <= MAX_CONNECTIONS, 1_000), 'never more than the cap open');
  });
});
