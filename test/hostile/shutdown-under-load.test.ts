// SIGTERM with requests in flight, as a rolling update delivers it: /readyz
// turns 503 at once, the listeners keep accepting for the shutdown delay,
// then stop; requests in flight finish (200) within the drain timeout and
// the one that outlasts it is cut, with a log line; the process exits 0.
// A real `gatehouse serve`, a real slow backend, real sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { GATEWAY_CLASS, freePort, serviceYAML, tempConfigDir, waitFor, writeConfig } from '../e2e/helpers.ts';
import { exitWithin, rawRequest, spawnGatehouse, untilReady, type GatehouseProcess } from './admin-fixtures.ts';

const DELAY_MS = 1_000;
const DRAIN_MS = 1_500;

interface SlowBackend { port: number; started: number; close(): void }

/** Answers `/slow?ms=N` after N ms, anything else at once; counts requests that arrived. */
async function slowBackend(): Promise<SlowBackend> {
  const backend: SlowBackend = { port: 0, started: 0, close: () => {} };
  const server = http.createServer((req, res) => {
    backend.started++;
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    const timer = setTimeout(() => res.end('done'), ms);
    res.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  backend.port = (server.address() as AddressInfo).port;
  backend.close = () => { server.closeAllConnections(); server.close(); };
  return backend;
}

interface Outcome { status?: number; body?: string; connection?: string; error?: string; at: number }

/** One request on a connection of its own; never rejects: an error is an outcome. */
function get(host: string, port: number, p: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.request({ host, port, path: p, agent: false, headers: { host: 'app.example.test' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body, connection: res.headers.connection, at: performance.now() }));
      res.on('error', (e) => resolve({ error: e.message, at: performance.now() }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, at: performance.now() }));
    req.setTimeout(15_000, () => req.destroy(new Error('no answer in 15 s')));
    req.end();
  });
}

/** Whether a TCP connection to host:port is accepted now. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function logLines(proc: GatehouseProcess): { msg: string; [k: string]: unknown }[] {
  return proc.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

async function startGateway(t: import('node:test').TestContext, workers: number, pool: string) {
  const backend = await slowBackend();
  t.after(() => backend.close());
  const dir = tempConfigDir();
  const port = await freePort();
  writeConfig(dir, 'all.yaml', `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: ${port}, protocol: HTTP}]
---
${serviceYAML('default', 'app', 80, backend.port)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: app, port: 80}]}]
`);
  const adminPort = await freePort();
  const proc = spawnGatehouse(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--address-pool', pool,
    '--workers', String(workers), '--shutdown-delay', `${DELAY_MS}ms`, '--drain-timeout', `${DRAIN_MS}ms`]);
  t.after(() => proc.kill());
  const host = pool.replace(/0\/24$/, '1');
  await untilReady(proc, adminPort);
  await waitFor('the route', async () => (await get(host, port, '/')).status === 200, 5_000);
  return { backend, proc, host, port, adminPort };
}

for (const workers of [0, 1]) {
  test(`SIGTERM under load, --workers ${workers}: readyz 503, accepting for the delay, in-flight requests finish, the longest is cut, exit 0`, { timeout: 20_000 }, async (t) => {
    const { backend, proc, host, port, adminPort } = await startGateway(t, workers, workers === 0 ? '127.89.0.0/24' : '127.89.1.0/24');
    const before = backend.started;
    // Finishes after accepting has stopped, within the drain timeout.
    const finishing = get(host, port, `/slow?ms=${DELAY_MS + 700}`);
    // Outlasts the delay and the drain timeout: cut.
    const outlasting = get(host, port, '/slow?ms=10000');
    await waitFor('both requests at the backend', async () => backend.started === before + 2, 5_000);

    const t0 = performance.now();
    proc.signal('SIGTERM');
    await waitFor('readyz 503', async () => {
      const res = await rawRequest(adminPort, '/readyz');
      return res.status === 503 && res.body === 'draining';
    }, 500);
    assert.ok(performance.now() - t0 < 500, 'readyz turned 503 at once');
    assert.equal((await rawRequest(adminPort, '/healthz')).status, 200);

    // During the delay a new connection is accepted and served, and asked to close.
    const during = await get(host, port, '/');
    assert.ok(during.at - t0 < DELAY_MS, `answered ${Math.round(during.at - t0)} ms after SIGTERM, within the delay`);
    assert.equal(during.status, 200, during.error);
    assert.equal(during.connection, 'close');

    // After it, new connections are refused.
    await waitFor('connections refused', async () => !(await accepts(host, port)), DELAY_MS + 1_000);
    const refusedAt = performance.now() - t0;
    assert.ok(refusedAt >= DELAY_MS - 50, `refused ${Math.round(refusedAt)} ms after SIGTERM, before the delay was over`);

    const done = await finishing;
    assert.equal(done.status, 200, done.error);
    assert.equal(done.body, 'done');
    assert.ok(done.at - t0 > DELAY_MS, 'the request in flight finished after accepting stopped');

    const cut = await outlasting;
    assert.equal(cut.status, undefined, `the longest request was cut, not answered ${cut.status}`);
    assert.ok(cut.at - t0 >= DELAY_MS + DRAIN_MS - 100, `cut ${Math.round(cut.at - t0)} ms after SIGTERM, before the drain timeout`);

    assert.equal(await exitWithin(proc, DELAY_MS + DRAIN_MS + 5_000), 0, proc.output());
    const exitedAfter = proc.exitedAt()! - t0;
    assert.ok(exitedAfter < DELAY_MS + DRAIN_MS + 3_000, `exited ${Math.round(exitedAfter)} ms after SIGTERM`);

    const lines = logLines(proc);
    const find = (re: RegExp) => lines.find((l) => re.test(l.msg));
    assert.ok(find(/^shutdown: draining started/), proc.output());
    assert.ok(find(/^shutdown: delay over/), proc.output());
    const stopped = find(/^drain: stopped accepting/);
    assert.ok(stopped, proc.output());
    assert.ok((stopped.connections as number) >= 2, `connections still open: ${stopped.connections}`);
    const cutLine = find(/^drain timeout reached: cutting connections/);
    assert.ok(cutLine, proc.output());
    assert.ok((cutLine.connections as number) >= 1);
    assert.ok(find(/^drain ended at the drain timeout/), proc.output());
    assert.ok(find(/^shutdown: complete/), proc.output());
    assert.ok(!find(/^shutdown: not finished/), 'the last resort did not fire');
  });
}

test('a second signal during the drain exits at once, logged; the same signal delivered twice at once does not', { timeout: 20_000 }, async (t) => {
  const dir = tempConfigDir();
  writeConfig(dir, 'class.yaml', GATEWAY_CLASS);
  const adminPort = await freePort();
  const proc = spawnGatehouse(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '1', '--shutdown-delay', '30s']);
  t.after(() => proc.kill());
  await untilReady(proc, adminPort);
  proc.signal('SIGTERM');
  // As a terminal's Ctrl-C and npm's forwarding of it arrive: one request.
  await new Promise((r) => setTimeout(r, 50));
  proc.signal('SIGINT');
  await new Promise((r) => setTimeout(r, 1_200));
  assert.equal(proc.exitedAt(), null, 'still draining');
  assert.equal((await rawRequest(adminPort, '/readyz')).status, 503);
  const t0 = performance.now();
  proc.signal('SIGTERM');
  assert.equal(await exitWithin(proc, 3_000), 1, proc.output());
  assert.ok(proc.exitedAt()! - t0 < 1_000);
  const msgs = logLines(proc).map((l) => l.msg);
  assert.ok(msgs.some((m) => /^shutdown: signal repeated at once/.test(m)), proc.output());
  assert.ok(msgs.some((m) => /^shutdown: second signal, exiting now/.test(m)), proc.output());
});
