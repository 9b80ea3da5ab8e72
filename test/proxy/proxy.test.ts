// `gatehouse proxy` against a real config service and real backends: it
// serves what the controller sends (a snapshot, then deltas), keeps serving
// while no controller answers, finds the controller again (the same
// address, another one of its list, after a silent one), re-reads its
// token at every connect, is ready only once configured, and drains on
// SIGTERM as a process of its own.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2, { type ServerHttp2Stream } from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { asText, IRDeltaEncoder, type IRDelta } from '../../src/ir/delta.ts';
import { irForGateway } from '../../src/ir/per-gateway.ts';
import type { IR } from '../../src/ir/types.ts';
import { startConfigService, type Authentication, type ConfigService } from '../../src/providers/kubernetes/config-service.ts';
import { startProxy, type Proxy } from '../../src/proxy/proxy.ts';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, request, route, startBackend, vhost } from '../dataplane/helpers.ts';
import { startRelay, tlsMaterial, waitUntil } from './helpers.ts';
import { sampleValue } from '../dataplane/prom-text.ts';

const TLS = tlsMaterial();
const GATEWAY = 'ns/gw';

async function authenticate(token: string, gateway: string): Promise<Authentication> {
  if (token !== 'good-token') return { allowed: false, status: 401, reason: 'token not authenticated' };
  return gateway === GATEWAY ? { allowed: true, identity: 'system:serviceaccount:ns:gw-gatehouse' } : { allowed: false, status: 403, reason: 'another Gateway' };
}

/** The controller's IR: Gateway ns/gw on `port` sending `/` to `clusterName`, and another Gateway beside it. */
function controllerIR(port: number, clusterName: string, backends: Record<string, number>): IR {
  return ir(
    [
      { ...listener(port, [gatewayListener(`${GATEWAY}/http`, null, [vhost('*', [route(`${GATEWAY}/r/0/0`, match('/'), [backend(clusterName)])])])]), key: `${GATEWAY}@10.0.0.1:${port}`, address: '10.0.0.1' },
      { ...listener(port + 1, [gatewayListener('ns/other/http', null, [vhost('*', [route('ns/other-r/0/0', match('/'), [backend('other')])])])]), key: `ns/other@10.0.0.2:${port + 1}`, address: '10.0.0.2' },
    ],
    [...Object.entries(backends).map(([name, p]) => cluster(name, { port: p })), cluster('other', { port: 1 })],
  );
}

interface Controller {
  service: ConfigService;
  set(next: IR): void;
}

async function startController(t: TestContext, port: number, initial: IR, heartbeatIntervalMs = 60_000): Promise<Controller> {
  let current = initial;
  const service = await startConfigService({
    address: `127.0.0.1:${port}`,
    tls: { cert: TLS.cert, key: TLS.key },
    authenticate,
    irFor: (gw) => irForGateway(current, gw),
    log: () => {},
    heartbeatIntervalMs,
  });
  t.after(() => service.close());
  return { service, set(next) { current = next; service.publish(); } };
}

function files(t: TestContext, token = 'good-token'): { dir: string; caFile: string; tokenFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-proxy-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const caFile = path.join(dir, 'ca.crt');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(caFile, TLS.ca);
  fs.writeFileSync(tokenFile, `${token}\n`);
  return { dir, caFile, tokenFile };
}

/** A pino logger whose lines the test can read. */
function testLogger(): { log: pino.Logger; text(): string } {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } });
  return { log: pino({ level: 'info', base: undefined }, sink), text: () => lines.join('') };
}

async function startTestProxy(t: TestContext, controllers: number[], f: { caFile: string; tokenFile: string }, workers = 0): Promise<{ proxy: Proxy; logs: () => string }> {
  const { log, text } = testLogger();
  const proxy = await startProxy({
    controllers: controllers.map((port) => ({ host: '127.0.0.1', port })),
    gateway: GATEWAY,
    tokenFile: f.tokenFile,
    caFile: f.caFile,
    healthAddress: '127.0.0.1:0',
    metricsAddress: '127.0.0.1:0',
    workers,
    log,
    limits: { drainTimeoutMs: 2_000 },
    client: { minBackoffMs: 40, maxBackoffMs: 200, connectTimeoutMs: 2_000 },
  });
  t.after(() => proxy.close());
  return { proxy, logs: text };
}

async function probe(port: number, p: string): Promise<number> {
  return (await request(port, p)).status;
}

/** The backend that answered a GET on the proxy's listener, or the status when none did. */
async function answeredBy(port: number): Promise<string> {
  const reply = await request(port, '/');
  return reply.status === 200 ? String(reply.headers['x-backend']) : `status ${reply.status}`;
}

test('ready only once configured; routes per the snapshot, then per a delta; never listens for another Gateway', async (t) => {
  const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
  const [listenPort, controllerPort] = [await freePort(), await freePort()];
  const f = files(t);
  // No controller yet: alive, not ready.
  const { proxy, logs } = await startTestProxy(t, [controllerPort], f);
  assert.equal(await probe(proxy.healthPort, '/healthz'), 200);
  assert.equal(await probe(proxy.healthPort, '/readyz'), 503);
  assert.equal(await probe(proxy.healthPort, '/config'), 404);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(await probe(proxy.healthPort, '/readyz'), 503);

  const controller = await startController(t, controllerPort, controllerIR(listenPort, 'a', { a: a.port, b: b.port }));
  await waitUntil('ready', async () => (await probe(proxy.healthPort, '/readyz')) === 200);
  assert.equal(await answeredBy(listenPort), 'a');
  // The other Gateway's port is not listened on.
  await assert.rejects(request(listenPort + 1, '/'), /ECONNREFUSED/);

  controller.set(controllerIR(listenPort, 'b', { a: a.port, b: b.port }));
  await waitUntil('the delta routes to b', async () => (await answeredBy(listenPort)) === 'b');
  assert.match(logs(), /configuration applied; ready/);
  assert.doesNotMatch(logs(), /good-token/);
});

test('serves its last config while no controller answers; reconnects when it is back on the same port, and applies what it sends', async (t) => {
  const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
  const [listenPort, controllerPort] = [await freePort(), await freePort()];
  const f = files(t);
  const first = await startController(t, controllerPort, controllerIR(listenPort, 'a', { a: a.port, b: b.port }));
  const { proxy, logs } = await startTestProxy(t, [controllerPort], f);
  await waitUntil('configured', () => proxy.configured);

  // Steady traffic across the controller's restart: not one request fails.
  let stop = false;
  const failures: string[] = [];
  let served = 0;
  const load = (async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    while (!stop) {
      const results = await Promise.allSettled([0, 1, 2, 3].map(() => request(listenPort, '/', { agent })));
      for (const r of results) {
        if (r.status === 'rejected') failures.push(String(r.reason));
        else if (r.value.status !== 200) failures.push(`status ${r.value.status}`);
        else served++;
      }
    }
    agent.destroy();
  })();

  await first.service.close();
  await waitUntil('the proxy sees the controller gone', () => /config stream lost/.test(logs()));
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(await probe(proxy.healthPort, '/readyz'), 200, 'still ready: it serves its config');
  assert.equal(await answeredBy(listenPort), 'a');

  const again = await startController(t, controllerPort, controllerIR(listenPort, 'b', { a: a.port, b: b.port }));
  await waitUntil('reconnected: the new controller\'s config routes to b', async () => (await answeredBy(listenPort)) === 'b');
  again.set(controllerIR(listenPort, 'a', { a: a.port, b: b.port }));
  await waitUntil('and a delta after it applies', async () => (await answeredBy(listenPort)) === 'a');
  stop = true;
  await load;
  assert.deepEqual(failures, []);
  assert.ok(served > 20, `load ran (${served} requests)`);
});

test('any address of the list: a refused one is skipped, a silent one left for the next that answers', async (t) => {
  const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
  const [listenPort, portTwo] = [await freePort(), await freePort()];
  const f = files(t);
  // Controller one behind a relay that will go silent; nothing on portTwo yet.
  const one = await startController(t, 0, controllerIR(listenPort, 'a', { a: a.port, b: b.port }), 100);
  const relay = await startRelay(t, one.service.port);
  const { proxy, logs } = await startTestProxy(t, [portTwo, relay.port], f);
  await waitUntil('configured from controller one', () => proxy.configured);
  assert.equal(await answeredBy(listenPort), 'a');

  const two = await startController(t, portTwo, controllerIR(listenPort, 'b', { a: a.port, b: b.port }), 100);
  relay.freeze();
  // Heartbeats every 100 ms: the silence is noticed within 300 ms; a new
  // attempt through the frozen relay waits out the connect timeout (2 s)
  // and controller two answers.
  await waitUntil('moved to controller two', async () => (await answeredBy(listenPort)) === 'b', 8_000);
  assert.equal(two.service.streams().length, 1);
  assert.match(logs(), /nothing heard within 300 ms/);
});

test('the token is read again at every connect: a rotated token is used, a bad one refused while the config keeps serving', async (t) => {
  const a = await startBackend(t, 'a');
  const [listenPort, controllerPort] = [await freePort(), await freePort()];
  const f = files(t);
  let controller = await startController(t, controllerPort, controllerIR(listenPort, 'a', { a: a.port }));
  const { proxy, logs } = await startTestProxy(t, [controllerPort], f);
  await waitUntil('configured', () => proxy.configured);

  fs.writeFileSync(f.tokenFile, 'forged-token');
  await controller.service.close();
  controller = await startController(t, controllerPort, controllerIR(listenPort, 'a', { a: a.port }));
  await waitUntil('refused with the bad token', () => /controller refused the stream: 401/.test(logs()));
  assert.equal(await answeredBy(listenPort), 'a');
  assert.equal(controller.service.streams().length, 0);
  assert.doesNotMatch(logs(), /forged-token|good-token/);

  fs.writeFileSync(f.tokenFile, 'good-token\n');
  await waitUntil('connected with the rotated token', () => controller.service.streams().length === 1);
});

test('worker threads: the config reaches every worker', async (t) => {
  const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
  const [listenPort, controllerPort] = [await freePort(), await freePort()];
  const f = files(t);
  const controller = await startController(t, controllerPort, controllerIR(listenPort, 'a', { a: a.port, b: b.port }));
  const { proxy } = await startTestProxy(t, [controllerPort], f, 2);
  await waitUntil('configured', () => proxy.configured, 15_000);
  await waitUntil('served by a', async () => (await answeredBy(listenPort).catch(() => '')) === 'a', 10_000);
  controller.set(controllerIR(listenPort, 'b', { a: a.port, b: b.port }));
  await waitUntil('b, on every connection', async () => {
    const seen = await Promise.all(Array.from({ length: 8 }, () => answeredBy(listenPort)));
    return seen.every((s) => s === 'b');
  });
});

/**
 * A config service that sends exactly the frames a test writes: one that
 * misbehaves (an id it never defined, an IR version the proxy cannot
 * read). `streams` are the proxy's streams so far, in order.
 */
async function startScriptedController(t: TestContext): Promise<{ port: number; streams: ServerHttp2Stream[]; send(stream: ServerHttp2Stream, frame: object): void }> {
  const streams: ServerHttp2Stream[] = [];
  const server = http2.createSecureServer({ cert: TLS.cert, key: TLS.key });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
    streams.push(stream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    for (const s of streams) s.destroy();
    server.close(() => resolve());
  }));
  return {
    port: (server.address() as import('node:net').AddressInfo).port,
    streams,
    send: (stream, frame) => { stream.write(`${JSON.stringify(frame)}\n`); },
  };
}

const snapshotFrame = (delta: IRDelta) => ({ type: 'snapshot', protocol: 1, gateway: GATEWAY, heartbeatIntervalMs: 60_000, seq: 1, delta: asText(delta) });

for (const workers of [0, 1]) {
  test(`workers ${workers}: a delta naming an unknown id is refused, the stream dropped, and the data plane keeps serving what it had`, { timeout: 30_000 }, async (t) => {
    const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
    const listenPort = await freePort();
    const f = files(t);
    const controller = await startScriptedController(t);
    const { proxy, logs } = await startTestProxy(t, [controller.port], f, workers);
    await waitUntil('a stream', () => controller.streams.length === 1);
    const encoder = new IRDeltaEncoder();
    const own = (name: string) => irForGateway(controllerIR(listenPort, name, { a: a.port, b: b.port }), GATEWAY);
    controller.send(controller.streams[0]!, snapshotFrame(encoder.encode(own('a'))));
    await waitUntil('configured', () => proxy.configured, 15_000);
    assert.equal(await answeredBy(listenPort), 'a');

    const next = asText(encoder.encode(own('b')));
    const bad = { ...next, listeners: next.listeners.map((l) => ({ ...l, gatewayListeners: l.gatewayListeners.map((gl) => ({ ...gl, virtualHosts: [...gl.virtualHosts, 4242] })) })) };
    controller.send(controller.streams[0]!, { type: 'delta', seq: 2, delta: bad });
    await waitUntil('the refusal', () => /protocol error in frame 2: config delta: listener \\"0\.0\.0\.0:\d+\\", \\"ns\/gw\/http\\": unknown virtual host id 4242/.test(logs()));
    // It connects again for a snapshot; meanwhile, and after, the last config serves.
    await waitUntil('a second stream', () => controller.streams.length === 2);
    for (let i = 0; i < 5; i++) assert.equal(await answeredBy(listenPort), 'a');
    assert.equal(await probe(proxy.healthPort, '/readyz'), 200);
    // The new stream's snapshot, from an encoder of its own (ids from 1 again), applies.
    controller.send(controller.streams[1]!, snapshotFrame(new IRDeltaEncoder().encode(own('b'))));
    await waitUntil('the second snapshot routes to b', async () => (await answeredBy(listenPort)) === 'b');
  });

  test(`workers ${workers}: after a delta the data plane refuses, the next one reaches it whole`, { timeout: 30_000 }, async (t) => {
    const a = await startBackend(t, 'a');
    const listenPort = await freePort();
    const f = files(t);
    const controller = await startScriptedController(t);
    const { proxy, logs } = await startTestProxy(t, [controller.port], f, workers);
    await waitUntil('a stream', () => controller.streams.length === 1);
    const one = vhost('one.test', [route(`${GATEWAY}/one/0/0`, match('/'), [backend('a')])]);
    const two = vhost('two.test', [route(`${GATEWAY}/two/0/0`, match('/'), [backend('a')])]);
    const echo = cluster('a', { port: a.port });
    const config = (hosts: ReturnType<typeof vhost>[]) => ir([{ ...listener(listenPort, [gatewayListener(`${GATEWAY}/http`, null, hosts)]), key: `${GATEWAY}@127.0.0.1:${listenPort}` }], [echo]);
    const encoder = new IRDeltaEncoder();
    const stream = controller.streams[0]!;
    controller.send(stream, snapshotFrame(encoder.encode(config([one]))));
    await waitUntil('configured', () => proxy.configured, 15_000);
    const status = async (host: string) => (await request(listenPort, '/', { host, headers: { connection: 'close' } })).status;
    assert.equal(await status('one.test'), 200);
    // two.test is defined in a delta the data plane refuses (an IR version it cannot read)...
    controller.send(stream, { type: 'delta', seq: 2, delta: { ...asText(encoder.encode(config([one, two]))), version: 2 } });
    await waitUntil('the refusal', () => logs().split('\n').some((l) => l.includes('config received but not applied') && l.includes('unsupported IR version 2')));
    assert.equal(await status('two.test'), 404);
    // ...so the next delta, which keeps it by id, must reach it whole.
    controller.send(stream, { type: 'delta', seq: 3, delta: asText(encoder.encode(config([one, two]))) });
    await waitUntil('two.test served', async () => (await status('two.test')) === 200);
    assert.equal(await status('one.test'), 200);
    assert.equal(controller.streams.length, 1, 'the stream went on');
  });
}

// The test IR's route is named `ns/gw/r/0/0`: HTTPRoute ns/gw, rule r.
const ROUTE_LABELS = { gateway: 'ns/gw', listener: 'http', route: 'ns/gw', rule: 'r', backend: 'a', code_class: '2xx' };

test('the metrics port: /metrics adds up every worker\'s requests; it serves nothing else, and the health port no metrics', async (t) => {
  const a = await startBackend(t, 'a');
  const [listenPort, controllerPort] = [await freePort(), await freePort()];
  const f = files(t);
  await startController(t, controllerPort, controllerIR(listenPort, 'a', { a: a.port }));
  const { proxy } = await startTestProxy(t, [controllerPort], f, 2);
  await waitUntil('served by a', async () => (await answeredBy(listenPort).catch(() => '')) === 'a', 15_000);
  const before = sampleValue((await request(proxy.metricsPort, '/metrics')).text, 'gatehouse_http_requests_total', ROUTE_LABELS) ?? 0;
  // Each on a connection of its own: both workers take some.
  for (let i = 0; i < 20; i++) assert.equal(await answeredBy(listenPort), 'a');
  const reply = await request(proxy.metricsPort, '/metrics');
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.equal(sampleValue(reply.text, 'gatehouse_http_requests_total', ROUTE_LABELS), before + 20);
  assert.ok(sampleValue(reply.text, 'gatehouse_config_generation')! >= 1, 'configurations applied are counted');
  assert.equal(await probe(proxy.metricsPort, '/readyz'), 404);
  assert.equal(await probe(proxy.healthPort, '/metrics'), 404);
});

test('gatehouse proxy as a process: SIGTERM turns /readyz 503, keeps accepting for the delay, finishes a request in flight, exits 0', { timeout: 60_000 }, async (t) => {
  const a = await startBackend(t, 'a');
  const [listenPort, controllerPort, healthPort] = [await freePort(), await freePort(), await freePort()];
  const f = files(t);
  await startController(t, controllerPort, controllerIR(listenPort, 'a', { a: a.port }));
  const main = path.join(import.meta.dirname, '../../src/cli/main.ts');
  const child = spawn(process.execPath, [
    main, 'proxy',
    '--controller-address', `localhost:${controllerPort}`,
    '--gateway', GATEWAY,
    '--ca-file', f.caFile,
    '--token-file', f.tokenFile,
    '--health-address', `127.0.0.1:${healthPort}`,
    '--workers', '1',
    '--shutdown-delay', '1s',
    '--drain-timeout', '10s',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c) => { output += c; });
  child.stderr.on('data', (c) => { output += c; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.after(() => child.kill('SIGKILL'));

  await waitUntil('ready', async () => (await probe(healthPort, '/readyz').catch(() => 0)) === 200, 20_000);
  assert.equal(await answeredBy(listenPort), 'a');
  // A request the backend holds for 2 s, in flight when SIGTERM comes.
  const slow = request(listenPort, '/', { headers: { 'x-test-delay-ms': '2000' } });
  await new Promise((resolve) => setTimeout(resolve, 200));
  child.kill('SIGTERM');
  await waitUntil('not ready once draining', async () => (await probe(healthPort, '/readyz')) === 503, 2_000);
  // Within the shutdown delay, new connections are still served.
  assert.equal(await answeredBy(listenPort), 'a');
  const reply = await slow;
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['x-backend'], 'a');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(() => resolve('still running'), 20_000); })]);
  clearTimeout(timer);
  assert.equal(code, 0, output);
  assert.match(output, /shutdown: complete/);
  assert.doesNotMatch(output, /good-token/);
});
