// What a BackendTrafficPolicy makes the data plane do, over real sockets
// with real backends: least request, consistent hash, passive ejection,
// active health checks, circuit breaking, slow start and the retry budget.

import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test, type TestContext } from 'node:test';
import type { Cluster, ClusterPolicy, RouteEntry } from '../../src/ir/types.ts';
import type { DataPlane } from '../../src/dataplane/dataplane.ts';
import { backend, cluster, freePort, match, request, route, simpleIR, sleep, startDataPlane } from './helpers.ts';

/** A backend whose answers the test steers: status, delay, and its /healthz status; it counts what it gets. */
interface Controlled {
  readonly name: string;
  readonly port: number;
  status: number;
  delayMs: number;
  healthStatus: number;
  /** Requests other than health checks. */
  served: number;
  healthChecks: number;
}

async function controlled(t: TestContext, name: string): Promise<Controlled> {
  const b: Controlled = { name, port: 0, status: 200, delayMs: 0, healthStatus: 200, served: 0, healthChecks: 0 };
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      b.healthChecks++;
      res.writeHead(b.healthStatus, { 'content-length': '0' }).end();
      return;
    }
    b.served++;
    const answer = (): void => {
      const body = JSON.stringify({ backend: name });
      res.writeHead(b.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    };
    req.resume();
    if (b.delayMs > 0) setTimeout(answer, b.delayMs);
    else answer();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (b as { port: number }).port = (server.address() as net.AddressInfo).port;
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return b;
}

function withPolicy(c: Cluster, policy: ClusterPolicy): Cluster {
  return { ...c, policy };
}

async function setup(t: TestContext, clusters: Cluster[], extra: Partial<RouteEntry> = {}): Promise<{ port: number; dp: DataPlane; apply(c: Cluster[]): Promise<void> }> {
  const port = await freePort();
  const dp = await startDataPlane(t);
  const apply = async (cs: Cluster[]): Promise<void> => {
    const result = await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/'), [backend('web')], extra)], cs));
    assert.deepEqual(result.listenerErrors, {});
    assert.deepEqual(result.routeErrors, {});
  };
  await apply(clusters);
  return { port, dp, apply };
}

/** Which backend answered each of `n` requests made one after another. */
async function sequence(port: number, n: number, headers: Record<string, string> = {}): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(port, '/', { headers });
    assert.equal(r.status, 200, r.text);
    out.push(r.json<{ backend: string }>().backend);
  }
  return out;
}

function count(list: string[], name: string): number {
  return list.filter((x) => x === name).length;
}

async function until(what: string, check: () => boolean, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${withinMs} ms`);
    await sleep(20);
  }
}

test('least request sends to the idle endpoint while the other is busy with slow requests', async (t) => {
  const slow = await controlled(t, 'slow');
  const fast = await controlled(t, 'fast');
  slow.delayMs = 600;
  const { port } = await setup(t, [withPolicy(cluster('web', slow, fast), { loadBalancer: { type: 'LeastRequest' } })]);
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < 20; i++) {
    pending.push(request(port, '/'));
    await sleep(10);
  }
  await Promise.all(pending);
  // Round robin would give the slow one 10. Least request gives it the first
  // it drew at most, and then one more only when the fast one is busy too.
  assert.ok(slow.served <= 2, `slow endpoint got ${slow.served}`);
  assert.equal(slow.served + fast.served, 20);
});

test('consistent hash on a header keeps a key on one endpoint and spreads keys over all', async (t) => {
  const bs = [await controlled(t, 'a'), await controlled(t, 'b'), await controlled(t, 'c')];
  const policy: ClusterPolicy = { loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'Header', name: 'x-tenant' } } };
  const { port, apply } = await setup(t, [withPolicy(cluster('web', ...bs), policy)]);
  const one = await sequence(port, 12, { 'x-tenant': 'project-42' });
  assert.equal(new Set(one).size, 1, `one key, one endpoint: ${one.join(',')}`);
  const spread = new Set<string>();
  const home = new Map<string, string>();
  for (let i = 0; i < 40; i++) {
    const [b] = await sequence(port, 1, { 'x-tenant': `project-${i}` });
    spread.add(b);
    home.set(`project-${i}`, b);
  }
  assert.deepEqual([...spread].sort(), ['a', 'b', 'c']);
  // Another endpoint joins: keys mostly stay where they were (Maglev moves about a quarter).
  const d = await controlled(t, 'd');
  await apply([withPolicy(cluster('web', ...bs, d), policy)]);
  let moved = 0;
  for (const [key, b] of home) if ((await sequence(port, 1, { 'x-tenant': key }))[0] !== b) moved++;
  assert.ok(moved < 20, `${moved} of 40 keys moved`);
});

test('consistent hash on a cookie sets one when absent, with its ttl, and sticks to it', async (t) => {
  const bs = [await controlled(t, 'a'), await controlled(t, 'b'), await controlled(t, 'c')];
  const { port } = await setup(t, [withPolicy(cluster('web', ...bs), { loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'Cookie', name: 'lb', ttlMs: 60_000 } } })]);
  const first = await request(port, '/');
  const line = (first.headers['set-cookie'] ?? [])[0];
  assert.match(line ?? '', /^lb=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; Max-Age=60$/);
  const cookie = line.split(';')[0];
  const home = first.json<{ backend: string }>().backend;
  for (let i = 0; i < 10; i++) {
    const r = await request(port, '/', { headers: { cookie: `x=1; ${cookie}` } });
    assert.equal(r.json<{ backend: string }>().backend, home);
    assert.equal(r.headers['set-cookie'], undefined, 'no new cookie when the client brings one');
  }
});

test('consistent hash on the source address: one client, one endpoint', async (t) => {
  const bs = [await controlled(t, 'a'), await controlled(t, 'b'), await controlled(t, 'c')];
  const { port } = await setup(t, [withPolicy(cluster('web', ...bs), { loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'SourceIP' } } })]);
  assert.equal(new Set(await sequence(port, 10)).size, 1);
});

test('an endpoint ejected on consecutive 5xx receives nothing until its ejection ends', async (t) => {
  const bad = await controlled(t, 'bad');
  const good = await controlled(t, 'good');
  bad.status = 503;
  const { port, dp } = await setup(t, [withPolicy(cluster('web', bad, good), {
    outlierDetection: { consecutive5xx: 3, consecutiveGatewayErrors: 0, consecutiveLocalOriginFailures: 5, intervalMs: 1_000, baseEjectionTimeMs: 800, maxEjectionPercent: 50 },
  })]);
  for (let i = 0; i < 6; i++) await request(port, '/');
  assert.equal(bad.served, 3, 'round robin gave the bad endpoint every other request');
  assert.equal(dp.clusterStats().web.ejections, 1);
  const during = await sequence(port, 12);
  assert.deepEqual(new Set(during), new Set(['good']));
  assert.equal(bad.served, 3, 'the ejected endpoint got nothing');
  bad.status = 200;
  await sleep(850);
  const after = await sequence(port, 6);
  assert.ok(count(after, 'bad') >= 2, `back after its ejection: ${after.join(',')}`);
});

test('ejection never takes more than maxEjectionPercent of the endpoints out', async (t) => {
  const a = await controlled(t, 'a');
  const b = await controlled(t, 'b');
  a.status = b.status = 500;
  const { port, dp } = await setup(t, [withPolicy(cluster('web', a, b), {
    outlierDetection: { consecutive5xx: 2, consecutiveGatewayErrors: 0, consecutiveLocalOriginFailures: 5, intervalMs: 1_000, baseEjectionTimeMs: 10_000, maxEjectionPercent: 50 },
  })]);
  for (let i = 0; i < 12; i++) await request(port, '/');
  const stats = dp.clusterStats().web;
  assert.equal(stats.ejected, 1, 'one of two is 50%: the second stays');
  assert.equal(stats.ejections, 1);
});

test('a refused connect counts as a local-origin failure and ejects the endpoint', async (t) => {
  const good = await controlled(t, 'good');
  const closed = await freePort();
  const { port, dp } = await setup(t, [withPolicy(cluster('web', { port: closed }, good), {
    outlierDetection: { consecutive5xx: 0, consecutiveGatewayErrors: 0, consecutiveLocalOriginFailures: 2, intervalMs: 1_000, baseEjectionTimeMs: 5_000, maxEjectionPercent: 50 },
  })]);
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await request(port, '/')).status);
  assert.deepEqual(statuses, [503, 200, 503, 200]);
  assert.equal(dp.clusterStats().web.ejected, 1);
  for (let i = 0; i < 6; i++) assert.equal((await request(port, '/')).status, 200);
});

test('an active health check takes an endpoint out and brings it back; checks stop when the cluster loses them', async (t) => {
  const a = await controlled(t, 'a');
  const b = await controlled(t, 'b');
  const policy: ClusterPolicy = {
    healthCheck: { type: 'HTTP', intervalMs: 50, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 2, path: '/healthz', method: 'GET', expectedStatuses: [200] },
  };
  const { port, dp, apply } = await setup(t, [withPolicy(cluster('web', a, b), policy)]);
  await until('first checks', () => a.healthChecks >= 1 && b.healthChecks >= 1, 2_000);
  assert.deepEqual(new Set(await sequence(port, 4)), new Set(['a', 'b']));

  a.healthStatus = 503;
  await until('a unhealthy', () => dp.clusterStats().web.unhealthy === 1, 3_000);
  const out = await sequence(port, 10);
  assert.deepEqual(new Set(out), new Set(['b']));

  a.healthStatus = 200;
  await until('a healthy again', () => dp.clusterStats().web.unhealthy === 0, 3_000);
  assert.ok(count(await sequence(port, 6), 'a') >= 2);

  // A reload without the check stops it.
  await apply([cluster('web', a, b)]);
  await sleep(100);
  const seen = a.healthChecks;
  await sleep(300);
  assert.ok(a.healthChecks <= seen + 1, `checks went on: ${seen} -> ${a.healthChecks}`);
});

test('the circuit breaker answers 503 at maxParallelRequests, counts it, and lets requests through again after', async (t) => {
  const slow = await controlled(t, 'slow');
  slow.delayMs = 300;
  const { port, dp } = await setup(t, [withPolicy(cluster('web', slow), { circuitBreaker: { maxParallelRequests: 2 } })]);
  const replies = await Promise.all([0, 1, 2, 3].map(async (i) => {
    await sleep(i * 20);
    return request(port, '/');
  }));
  const statuses = replies.map((r) => r.status).sort();
  assert.deepEqual(statuses, [200, 200, 503, 503]);
  const refused = replies.find((r) => r.status === 503)!;
  assert.equal(refused.headers['x-gatehouse-overloaded'], 'true');
  assert.match(refused.text, /circuit breaker open/);
  assert.equal(slow.served, 2);
  assert.equal(dp.clusterStats().web.circuitOpen, 2);
  assert.equal(dp.clusterStats().web.active, 0);
  slow.delayMs = 0;
  assert.equal((await request(port, '/')).status, 200);
});

test('circuit breaker maxConnections caps the connections and maxPendingRequests the queue', async (t) => {
  const slow = await controlled(t, 'slow');
  slow.delayMs = 300;
  const { port } = await setup(t, [withPolicy(cluster('web', slow), { circuitBreaker: { maxConnections: 1, maxPendingRequests: 1 } })]);
  const replies = await Promise.all([0, 1, 2].map(async (i) => {
    await sleep(i * 20);
    return request(port, '/');
  }));
  // One on the connection, one waiting for it, one refused.
  assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 503]);
});

test('slow start: a new endpoint gets a small share at first and its full share after the window', async (t) => {
  const a = await controlled(t, 'a');
  const b = await controlled(t, 'b');
  const policy: ClusterPolicy = { loadBalancer: { type: 'RoundRobin' }, slowStartWindowMs: 3_000 };
  const { port, apply } = await setup(t, [withPolicy(cluster('web', a), policy)]);
  await sequence(port, 2);
  await apply([withPolicy(cluster('web', a, b), policy)]);
  const early = await sequence(port, 60);
  assert.ok(count(early, 'b') < 15, `b got ${count(early, 'b')} of 60 at first`);
  assert.ok(count(early, 'b') >= 1, 'but not nothing');
  await sleep(3_050);
  const late = await sequence(port, 20);
  assert.equal(count(late, 'b'), 10, 'round robin once the window is over');
});

test('endpoints present when the cluster first appears start at full weight', async (t) => {
  const a = await controlled(t, 'a');
  const b = await controlled(t, 'b');
  const { port } = await setup(t, [withPolicy(cluster('web', a, b), { loadBalancer: { type: 'RoundRobin' }, slowStartWindowMs: 60_000 })]);
  assert.equal(count(await sequence(port, 20), 'b'), 10);
});

test('the retry budget caps retries in flight to a share of the requests', async (t) => {
  const failing = await controlled(t, 'failing');
  failing.status = 503;
  failing.delayMs = 100;
  const run = async (budget: boolean): Promise<{ tries: number; refused: number }> => {
    failing.served = 0;
    const policy: ClusterPolicy = {
      retry: { numRetries: 3, backoffBaseMs: 5, triggers: ['retriable-status-codes'], statusCodes: [503], ...(budget ? { budget: { percent: 0, minRetryConcurrency: 1 } } : {}) },
    };
    const { port, dp } = await setup(t, [withPolicy(cluster('web', failing), policy)]);
    const replies = await Promise.all(Array.from({ length: 10 }, () => request(port, '/')));
    for (const r of replies) assert.equal(r.status, 503);
    return { tries: failing.served, refused: dp.clusterStats().web.retriesRefused };
  };
  const unbudgeted = await run(false);
  assert.equal(unbudgeted.tries, 40, 'every request tried 4 times without a budget');
  const budgeted = await run(true);
  // One request at a time may retry: its 3 retries, and a few more from
  // requests whose first try failed after it finished (on a loaded machine).
  assert.ok(budgeted.tries >= 13 && budgeted.tries <= 22, `${budgeted.tries} tries`);
  assert.ok(budgeted.refused >= 5, `${budgeted.refused} retries refused`);
});

test('maxParallelRetries caps retries as the budget does', async (t) => {
  const failing = await controlled(t, 'failing');
  failing.status = 503;
  failing.delayMs = 100;
  const { port, dp } = await setup(t, [withPolicy(cluster('web', failing), {
    circuitBreaker: { maxParallelRetries: 2 },
  })], { retry: { codes: [503], attempts: 2, backoffMs: 5 } });
  await Promise.all(Array.from({ length: 8 }, () => request(port, '/')));
  assert.ok(failing.served <= 8 + 2 * 2 + 2, `${failing.served} tries`);
  assert.ok(dp.clusterStats().web.retriesRefused >= 4);
});

test('a policy retry adds its trigger set to a route retry: gateway-error retries a 502 the route did not list', async (t) => {
  const a = await controlled(t, 'a');
  a.status = 502;
  const { port } = await setup(t, [withPolicy(cluster('web', a), {
    retry: { numRetries: 1, triggers: ['gateway-error'], statusCodes: [] },
  })], { retry: { codes: [500], attempts: 2, backoffMs: 5 } });
  const r = await request(port, '/');
  assert.equal(r.status, 502);
  assert.equal(a.served, 3, "the route's attempts, on the policy's trigger");
});

test('the policy request timeout bounds a request when the route sets none, and its connect timeout makes a pool of its own', async (t) => {
  const slow = await controlled(t, 'slow');
  slow.delayMs = 1_000;
  const { port, dp } = await setup(t, [withPolicy(cluster('web', slow), { requestTimeoutMs: 200, connectTimeoutMs: 1_500 })]);
  const started = Date.now();
  const r = await request(port, '/');
  assert.equal(r.status, 504);
  assert.ok(Date.now() - started < 900);
  void dp;
});

test('consistent hash on a cookie: a retried request hands out one cookie, hashed the same for every try', async (t) => {
  const a = await controlled(t, 'a');
  const b = await controlled(t, 'b');
  a.status = b.status = 503;
  const { port } = await setup(t, [withPolicy(cluster('web', a, b), {
    loadBalancer: { type: 'ConsistentHash', hashOn: { type: 'Cookie', name: 'lb' } },
    retry: { numRetries: 3, backoffBaseMs: 1, triggers: ['retriable-status-codes'], statusCodes: [503] },
  })]);
  const r = await request(port, '/');
  assert.equal(r.status, 503);
  assert.equal(r.headers['set-cookie']?.length, 1, JSON.stringify(r.headers['set-cookie']));
  assert.ok(a.served === 4 || b.served === 4, `every try to one endpoint: a ${a.served}, b ${b.served}`);
});
