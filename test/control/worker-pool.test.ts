// The worker-thread data plane seen from the control plane: every worker
// applies each IR's delta, and a worker that dies is replaced by one that
// gets the current config in full and serves it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerPool, type WorkerPoolOptions } from '../../src/control/worker-pool.ts';
import type { ApplyResult } from '../../src/dataplane/dataplane.ts';
import { IRDeltaEncoder } from '../../src/ir/delta.ts';
import type { IR } from '../../src/ir/types.ts';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, request, route, startBackend, vhost } from '../dataplane/helpers.ts';
import { waitFor } from '../e2e/helpers.ts';

/** A pool fed as serve feeds it: each IR's delta from an encoder that is the pool's source, with the IR's clusters. */
function encodingPool(opts: Omit<WorkerPoolOptions, 'source'>): { pool: WorkerPool; apply(config: IR): Promise<ApplyResult> } {
  const encoder = new IRDeltaEncoder();
  const pool = new WorkerPool({ ...opts, source: encoder });
  return { pool, apply: (config) => pool.apply(encoder.encode(config), config.clusters) };
}

test('WorkerPool: all workers apply each IR; a dead worker is replaced and serves the current config', { timeout: 60_000 }, async (t) => {
  const echo = await startBackend(t, 'echo');
  const port = await freePort();
  const logged: string[] = [];
  const { pool, apply } = encodingPool({ workers: 2, logLevel: 'warn', log: (_level, msg) => logged.push(msg), drainTimeoutMs: 2_000 });
  t.after(() => pool.close());
  const hosts = [vhost('one.test', [route('one', match('/'), [backend('echo')])])];
  const config = () => ir([listener(port, [gatewayListener('gw', null, hosts)])], [cluster('echo', echo)]);

  assert.deepEqual(await apply(config()), { listenerErrors: {}, certificateErrors: {}, routeErrors: {} });
  assert.equal((await request(port, '/', { host: 'one.test' })).status, 200);
  // A second host added: applied as a delta, served by every worker.
  hosts.push(vhost('two.test', [route('two', match('/'), [backend('nowhere')])]));
  assert.deepEqual(Object.keys((await apply(config())).routeErrors), ['two']);
  const before = await pool.stats();
  assert.equal(before.length, 2);
  assert.ok(before.every((w) => w.appliedSeq === pool.currentSeq), JSON.stringify(before));

  assert.equal(await pool.terminate(before[0].id), true);
  const after = await waitFor('a replacement worker', async () => {
    const now = await pool.stats();
    return now.length === 2 && !now.some((w) => w.id === before[0].id) && now.every((w) => w.appliedSeq === pool.currentSeq) && now;
  }, 10_000);
  assert.ok(logged.includes('data-plane worker exited; starting another'));
  // Each request on a connection of its own, so the kernel spreads them over both workers.
  for (let i = 0; i < 20; i++) {
    assert.equal((await request(port, '/', { host: 'one.test', headers: { connection: 'close' } })).status, 200);
    assert.equal((await request(port, '/', { host: 'two.test', headers: { connection: 'close' } })).status, 500);
  }
  const served = await pool.stats();
  assert.ok(served.every((w) => w.requests > 0), `both workers served: ${JSON.stringify(served)} (was ${JSON.stringify(after)})`);
  // The replacement took the following delta too.
  hosts.splice(1, 1);
  assert.deepEqual((await apply(config())).routeErrors, {});
  assert.equal((await request(port, '/', { host: 'two.test', headers: { connection: 'close' } })).status, 404);
});

test('WorkerPool: workers log through the pool with their id, up to their last line before exit', { timeout: 60_000 }, async (t) => {
  const echo = await startBackend(t, 'echo');
  const port = await freePort();
  const logged: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const { pool, apply } = encodingPool({ workers: 2, logLevel: 'info', log: (level, msg, fields) => logged.push({ level, msg, fields }), drainTimeoutMs: 2_000 });
  const hosts = [vhost('one.test', [route('one', match('/'), [backend('echo')])])];
  await apply(ir([listener(port, [gatewayListener('gw', null, hosts)])], [cluster('echo', echo)]));
  const ids = (await pool.stats()).map((w) => w.id).sort();
  const from = (msg: string) => logged.filter((l) => l.msg === msg).map((l) => l.fields?.worker).sort();
  assert.deepEqual(from('listener bound'), ids);
  assert.deepEqual(logged.find((l) => l.msg === 'listener bound')?.fields, { worker: logged.find((l) => l.msg === 'listener bound')?.fields?.worker, listener: `127.0.0.1:${port}`, protocol: 'HTTP' });
  // Each worker's last words, logged as it drains just before exiting.
  await pool.close();
  assert.deepEqual(from('listener closed'), ids);
});

test('WorkerPool: workers send nothing below the log level', { timeout: 60_000 }, async (t) => {
  const echo = await startBackend(t, 'echo');
  const port = await freePort();
  const logged: string[] = [];
  const { pool, apply } = encodingPool({ workers: 1, logLevel: 'warn', log: (level, msg) => logged.push(`${level} ${msg}`), drainTimeoutMs: 2_000 });
  t.after(() => pool.close());
  const hosts = [vhost('one.test', [route('one', match('/'), [backend('nowhere')])])];
  await apply(ir([listener(port, [gatewayListener('gw', null, hosts)])], [cluster('echo', echo)]));
  await pool.stats();
  assert.deepEqual(logged, ['warn route not served as configured']);
});

test('WorkerPool: active health checks run once for all workers, and every worker acts on their verdicts', { timeout: 60_000 }, async (t) => {
  const http = await import('node:http');
  let checks = 0;
  let healthy = true;
  const sick = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      checks++;
      res.writeHead(healthy ? 200 : 503, { 'content-length': '0' }).end();
      return;
    }
    res.writeHead(200, { 'content-length': '4' }).end('sick');
  });
  await new Promise<void>((resolve) => sick.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    sick.closeAllConnections();
    sick.close();
  });
  const well = await startBackend(t, 'well');
  const port = await freePort();
  const { pool, apply } = encodingPool({ workers: 2, logLevel: 'silent', log: () => {}, drainTimeoutMs: 2_000 });
  t.after(() => pool.close());
  const web = {
    ...cluster('web', { port: (sick.address() as import('node:net').AddressInfo).port }, well),
    policy: { healthCheck: { type: 'HTTP' as const, intervalMs: 100, timeoutMs: 500, unhealthyThreshold: 1, healthyThreshold: 1, path: '/healthz', method: 'GET', expectedStatuses: [200] } },
  };
  await apply(ir([listener(port, [gatewayListener('gw', null, [vhost('*', [route('r', match('/'), [backend('web')])])])])], [web]));
  await waitFor('checks', async () => checks >= 3, 5_000);
  const started = Date.now();
  const before = checks;
  await new Promise((r) => setTimeout(r, 500));
  // One checker (every 100 ms), not one per worker.
  assert.ok(checks - before <= 7, `${checks - before} checks in ${Date.now() - started} ms`);

  healthy = false;
  await new Promise((r) => setTimeout(r, 400));
  // Each on a connection of its own, so both workers serve some: none sends to the sick endpoint.
  for (let i = 0; i < 16; i++) {
    const r = await request(port, '/', { headers: { connection: 'close' } });
    assert.equal(r.status, 200);
    assert.notEqual(r.text, 'sick', `request ${i} went to the unhealthy endpoint`);
  }
  const served = await pool.stats();
  assert.ok(served.every((w) => w.requests > 0), JSON.stringify(served));
});
