// Request mirrors over real sockets: copies reach every mirror with the
// request as it goes upstream (filters applied, Host marked -shadow, body
// whole), a body beyond the replay limit is not copied, percentages come
// out at their rate, and a mirror that never answers neither slows nor
// fails the requests it copies: its copies wait in a bounded queue and the
// rest are dropped and counted.

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import type { Filter } from '../../src/ir/types.ts';
import type { LogLevel } from '../../src/dataplane/log.ts';
import { shadowHost } from '../../src/dataplane/http/mirror.ts';
import { backend, cluster, freePort, match, request, route, simpleIR, sleep, startBackend, startDataPlane, type Backend } from './helpers.ts';

const mirror = (c: string, numerator = 1, denominator = 1): Filter => ({ type: 'RequestMirror', cluster: c, numerator, denominator });

async function waitFor(what: string, cond: () => boolean, ms = 3_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Counts of each path's requests a backend saw, ignoring the query. */
const seenOn = (b: Backend, path: string): number => b.seen.filter((s) => s.path.split('?')[0] === path).length;

test('shadowHost marks the name, before any port', () => {
  assert.equal(shadowHost('example.com'), 'example.com-shadow');
  assert.equal(shadowHost('example.com:8080'), 'example.com-shadow:8080');
  assert.equal(shadowHost('[::1]:8080'), '[::1]-shadow:8080');
  assert.equal(shadowHost('[::1]'), '[::1]-shadow');
});

test('mirrors', async (t) => {
  const [primary, m1, m2] = await Promise.all([startBackend(t, 'primary'), startBackend(t, 'm1'), startBackend(t, 'm2')]);
  // Accepts connections and never reads or answers: a mirror that hangs.
  const held: net.Socket[] = [];
  const hole = net.createServer((s) => held.push(s.on('error', () => {})));
  await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((resolve) => hole.close(() => resolve()));
  });
  const deadPort = await freePort();

  const logs: { level: LogLevel; msg: string; fields?: Record<string, unknown> }[] = [];
  const port = await freePort();
  const dp = await startDataPlane(t, {
    log: (level, msg, fields) => logs.push({ level, msg, fields }),
    limits: { maxMirrorRequestsPerCluster: 4, maxReplayBodyBytes: 1024, upstreamResponseTimeoutMs: 3_000, upstreamConnectTimeoutMs: 1_000 },
  });
  const result = await dp.apply(
    simpleIR(
      port,
      [
        route('one', match('/one'), [backend('primary')], { filters: [mirror('m1')] }),
        route('multi', match('/multi'), [backend('primary')], { filters: [mirror('m1'), mirror('m2')] }),
        route('modified', match('/modified'), [backend('primary')], {
          filters: [{ type: 'RequestHeaderModifier', set: [{ name: 'x-set', value: 'by-filter' }], add: [], remove: ['x-remove'] }, mirror('m1')],
        }),
        route('on-backend', match('/on-backend'), [backend('primary', 1, [mirror('m2')])]),
        route('percent', match('/percent'), [backend('primary')], { filters: [mirror('m1', 20, 100)] }),
        route('fraction', match('/fraction'), [backend('primary')], { filters: [mirror('m2', 25, 50)] }),
        route('zero', match('/zero'), [backend('primary')], { filters: [mirror('m1', 0, 100)] }),
        route('hole', match('/hole'), [backend('primary')], { filters: [mirror('hole')] }),
        route('dead', match('/dead'), [backend('primary')], { filters: [mirror('dead')] }),
        route('plain', match('/plain'), [backend('primary')]),
        route('unknown', match('/unknown'), [backend('primary')], { filters: [mirror('no-such-cluster')] }),
      ],
      [cluster('primary', primary), cluster('m1', m1), cluster('m2', m2), cluster('hole', { port: (hole.address() as net.AddressInfo).port }), cluster('dead', { port: deadPort })],
    ),
  );
  assert.deepEqual(result.routeErrors, { unknown: 'mirror cluster "no-such-cluster" is not defined' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  t.after(() => agent.destroy());

  await t.test('a copy reaches the mirror: same method, path and query, Host marked -shadow; the answer comes from the primary', async () => {
    const r = await request(port, '/one?q=1', { agent, headers: { 'x-tag': 'copy-me' } });
    assert.equal(r.status, 200);
    assert.equal(r.json().backend, 'primary');
    await waitFor('the copy', () => seenOn(m1, '/one') === 1);
    const copy = m1.seen.find((s) => s.path === '/one?q=1')!;
    const original = primary.seen.find((s) => s.path === '/one?q=1')!;
    assert.equal(copy.method, 'GET');
    assert.equal(copy.headers.host, 'example.com-shadow');
    assert.equal(original.headers.host, 'example.com');
    assert.equal(copy.headers['x-tag'], 'copy-me');
    assert.equal(copy.headers['x-forwarded-for'], original.headers['x-forwarded-for']);
  });

  await t.test('several mirrors each get a copy; a mirror on a backendRef copies when that backend is chosen', async () => {
    await request(port, '/multi', { agent });
    await request(port, '/on-backend', { agent });
    await waitFor('the copies', () => seenOn(m1, '/multi') === 1 && seenOn(m2, '/multi') === 1 && seenOn(m2, '/on-backend') === 1);
  });

  await t.test('the copy is the request as it goes upstream: filters before the mirror are applied', async () => {
    await request(port, '/modified', { agent, headers: { 'x-remove': 'gone', 'x-set': 'client' } });
    await waitFor('the copy', () => seenOn(m1, '/modified') === 1);
    const copy = m1.seen.find((s) => s.path === '/modified')!;
    assert.equal(copy.headers['x-set'], 'by-filter');
    assert.equal(copy.headers['x-remove'], undefined);
  });

  await t.test('a body within maxReplayBodyBytes is copied whole, with its length', async () => {
    const body = Buffer.alloc(1000, 1);
    const r = await request(port, '/one', { agent, method: 'POST', body });
    assert.equal(r.json().bodyBytes, 1000);
    await waitFor('the copy', () => m1.seen.some((s) => s.method === 'POST'));
    const copy = m1.seen.find((s) => s.method === 'POST')!;
    assert.equal(copy.bodyBytes, 1000);
    assert.equal(copy.headers['content-length'], '1000');
  });

  await t.test('a body beyond maxReplayBodyBytes goes whole to the primary; its copy is dropped, counted and logged', async () => {
    const copiesBefore = m1.seen.length;
    const r = await request(port, '/one', { agent, method: 'PUT', body: Buffer.alloc(100_000, 2) });
    assert.equal(r.status, 200);
    assert.equal(r.json().bodyBytes, 100_000);
    await waitFor('the log line', () => logs.some((l) => l.msg === 'mirror copies dropped' && (l.fields?.dropped as Record<string, number>)['body too long or incomplete'] === 1));
    await sleep(100);
    assert.equal(m1.seen.length, copiesBefore);
  });

  await t.test('percentages: 20% of 1000 requests and 25/50 of 400 are copied, within five standard deviations', async () => {
    const run = async (path: string, n: number): Promise<void> => {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < n) {
          next++;
          assert.equal((await request(port, path, { agent })).status, 200);
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
    };
    await run('/percent', 1000);
    await run('/fraction', 400);
    await run('/zero', 200);
    // Copies may still be on their way: wait until the counts stop moving.
    let last = -1;
    while (last !== seenOn(m1, '/percent') + seenOn(m2, '/fraction')) {
      last = seenOn(m1, '/percent') + seenOn(m2, '/fraction');
      await sleep(200);
    }
    const p = seenOn(m1, '/percent');
    const f = seenOn(m2, '/fraction');
    // 1000 * 0.2 = 200, sd 12.6; 400 * 0.5 = 200, sd 10. Neither 0% nor 100% fits.
    assert.ok(p >= 137 && p <= 263, `20% of 1000: ${p}`);
    assert.ok(f >= 150 && f <= 250, `50% of 400: ${f}`);
    assert.equal(seenOn(m1, '/zero'), 0);
  });

  await t.test('a mirror that never answers neither slows nor fails the primary; copies beyond its queue are dropped and counted', async () => {
    const timed = async (path: string): Promise<number[]> => {
      const took: number[] = [];
      for (let i = 0; i < 150; i++) {
        const started = process.hrtime.bigint();
        const r = await request(port, path, { agent });
        took.push(Number(process.hrtime.bigint() - started) / 1e6);
        assert.equal(r.status, 200);
        assert.equal(r.json().backend, 'primary');
      }
      return took.sort((a, b) => a - b);
    };
    const plain = await timed('/plain');
    const hole = await timed('/hole');
    const median = (xs: number[]) => xs[xs.length >> 1];
    const p95 = (xs: number[]) => xs[Math.floor(xs.length * 0.95)];
    assert.ok(median(hole) <= median(plain) + 5, `median ${median(hole).toFixed(1)} ms with the hole vs ${median(plain).toFixed(1)} ms without`);
    assert.ok(p95(hole) <= p95(plain) + 20, `p95 ${p95(hole).toFixed(1)} ms with the hole vs ${p95(plain).toFixed(1)} ms without`);
    assert.ok(held.length <= 4, `at most maxMirrorRequestsPerCluster copies in flight: ${held.length} connections`);
    // A burst: all answered at once, none waits for the mirror.
    const burst = await Promise.all(Array.from({ length: 50 }, () => request(port, '/hole')));
    assert.ok(burst.every((r) => r.status === 200));
    await waitFor('the drop count', () => logs.some((l) => l.msg === 'mirror copies dropped' && String(l.fields?.cluster).startsWith('hole')));
    const drops = logs.filter((l) => l.msg === 'mirror copies dropped' && String(l.fields?.cluster).startsWith('hole'));
    assert.ok(drops.some((l) => ((l.fields?.dropped as Record<string, number>).busy ?? 0) > 0), JSON.stringify(drops));
  });

  await t.test('a mirror whose endpoint refuses connections, or whose cluster is unknown, does not touch the primary', async () => {
    for (const path of ['/dead', '/unknown']) {
      const r = await request(port, path, { agent });
      assert.equal(r.status, 200);
      assert.equal(r.json().backend, 'primary');
    }
  });
});
