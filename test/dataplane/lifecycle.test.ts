// apply() over time: config swaps with requests in flight and keep-alive
// connections open, listeners added and removed by diff, bind conflicts,
// upstream pools kept across configs and closed when unused, close().

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import type { IR } from '../../src/ir/types.ts';
import {
  backend,
  cluster,
  freePort,
  gatewayListener,
  ir,
  listener,
  match,
  request,
  route,
  simpleIR,
  sleep,
  startBackend,
  startDataPlane,
  statusOf,
  vhost,
} from './helpers.ts';

/** Resolves when `server` receives its next request. */
function nextRequest(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.once('request', () => resolve()));
}

/** A raw keep-alive client on one socket: send a request, read one response. */
class RawClient {
  readonly socket: net.Socket;
  #buffer = '';
  #waiter: (() => void) | null = null;
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.#buffer += d.toString('latin1');
      this.#waiter?.();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.#waiter?.();
    });
  }

  async get(path: string, extraHeaders = ''): Promise<{ status: number; head: string; body: string }> {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: example.com\r\n${extraHeaders}\r\n`);
    for (;;) {
      const end = this.#buffer.indexOf('\r\n\r\n');
      if (end !== -1) {
        const length = Number(/content-length: (\d+)/i.exec(this.#buffer.slice(0, end))?.[1] ?? 0);
        if (this.#buffer.length >= end + 4 + length) {
          const status = statusOf(this.#buffer);
          const head = this.#buffer.slice(0, end);
          const body = this.#buffer.slice(end + 4, end + 4 + length);
          this.#buffer = this.#buffer.slice(end + 4 + length);
          return { status, head, body };
        }
      }
      if (this.closed) throw new Error('connection closed');
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }
}

test('lifecycle', async (t) => {
  const [a, b] = await Promise.all([startBackend(t, 'a'), startBackend(t, 'b')]);
  const port = await freePort();
  const dp = await startDataPlane(t, { limits: { drainTimeoutMs: 3_000 } });
  const toA = simpleIR(port, [route('all', match('/'), [backend('a')])], [cluster('a', a)]);
  const toB = simpleIR(port, [route('all', match('/'), [backend('b')])], [cluster('b', b)]);
  assert.deepEqual((await dp.apply(toA)).listenerErrors, {});

  await t.test('a request in flight finishes on the config it started with', async () => {
    const arrived = nextRequest(a.server);
    const slow = request(port, '/slow', { headers: { 'x-test-delay-ms': '500' } });
    await arrived;
    await dp.apply(toB);
    assert.equal((await request(port, '/now')).json().backend, 'b');
    const reply = await slow;
    assert.equal(reply.status, 200);
    assert.equal(reply.json().backend, 'a');
  });

  await t.test('keep-alive connections survive apply() and see the new config', async () => {
    const client = new RawClient(port);
    t.after(() => client.socket.destroy());
    assert.equal(JSON.parse((await client.get('/1')).body).backend, 'b');
    await dp.apply(toA);
    assert.equal(JSON.parse((await client.get('/2')).body).backend, 'a');
    await dp.apply(toB);
    assert.equal(JSON.parse((await client.get('/3')).body).backend, 'b');
    assert.equal(client.closed, false);
  });

  await t.test('upstream pools are kept across configs and closed when unused', async () => {
    let connections = 0;
    const count = () => connections++;
    b.server.on('connection', count);
    t.after(() => b.server.off('connection', count));
    await request(port, '/warm');
    const before = connections;
    // Same endpoint in a new config: the warm connection is reused.
    await dp.apply(simpleIR(port, [route('renamed', match('/'), [backend('b2')])], [cluster('b2', b)]));
    assert.equal((await request(port, '/reuse')).json().backend, 'b');
    assert.equal(connections, before);
    // No config uses b any more: its pool closes its connections.
    await dp.apply(toA);
    for (let i = 0; i < 50; i++) {
      const open = await new Promise<number>((resolve) => b.server.getConnections((_, n) => resolve(n)));
      if (open === 0) break;
      await sleep(20);
    }
    const open = await new Promise<number>((resolve) => b.server.getConnections((_, n) => resolve(n)));
    assert.equal(open, 0);
  });

  await t.test('a bind conflict is reported and the other listeners serve', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as net.AddressInfo).port;
    const both: IR = ir(
      [
        listener(port, [gatewayListener('ns/gw/a', null, [vhost('*', [route('all', match('/'), [backend('a')])])])]),
        listener(taken, [gatewayListener('ns/gw/b', null, [vhost('*', [route('all', match('/'), [backend('a')])])])]),
      ],
      [cluster('a', a)],
    );
    const res = await dp.apply(both);
    assert.match(res.listenerErrors[`127.0.0.1:${taken}`] ?? '', /EADDRINUSE/);
    assert.equal(Object.keys(res.listenerErrors).length, 1);
    assert.equal((await request(port, '/ok')).json().backend, 'a');
    // Once the port is free, the next apply binds it.
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
    const retry = await dp.apply(both);
    assert.deepEqual(retry.listenerErrors, {});
    assert.equal((await request(taken, '/ok')).json().backend, 'a');
    await dp.apply(toA);
  });

  await t.test('a removed listener stops accepting and lets requests in flight finish', async () => {
    const extra = await freePort();
    const withExtra = ir(
      [...toA.listeners, listener(extra, [gatewayListener('ns/gw/x', null, [vhost('*', [route('all', match('/'), [backend('a')])])])])],
      [cluster('a', a)],
    );
    await dp.apply(withExtra);
    const client = new RawClient(extra);
    t.after(() => client.socket.destroy());
    assert.equal((await client.get('/warm')).status, 200);
    const arrived = nextRequest(a.server);
    const slow = client.get('/slow', 'X-Test-Delay-Ms: 400\r\n');
    await arrived;
    await dp.apply(toA);
    await assert.rejects(request(extra, '/new'), /ECONNREFUSED/);
    const reply = await slow;
    assert.equal(reply.status, 200);
    assert.equal(JSON.parse(reply.body).backend, 'a');
    // The keep-alive client is told to go, and the connection closes.
    assert.match(reply.head, /\r\nConnection: close/i);
    for (let i = 0; i < 100 && !client.closed; i++) await sleep(10);
    assert.ok(client.closed);
    assert.equal((await request(port, '/still')).status, 200);
  });

  await t.test('an IR of another version is refused and the old config stays', async () => {
    await assert.rejects(dp.apply({ ...toB, version: 2 as 1 }), /unsupported IR version/);
    assert.equal((await request(port, '/x')).json().backend, 'a');
  });

  await t.test('applies are serialised: the last one wins', async () => {
    const results = await Promise.all([dp.apply(toB), dp.apply(toA), dp.apply(toB)]);
    for (const r of results) assert.deepEqual(r.listenerErrors, {});
    assert.equal((await request(port, '/x')).json().backend, 'b');
  });

  await t.test('close() frees the ports', async () => {
    await dp.close();
    await assert.rejects(request(port, '/x'), /ECONNREFUSED/);
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, '127.0.0.1', resolve);
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await assert.rejects(dp.apply(toA), /closed/);
  });
});

test('apply() reuses what did not change and recompiles what did', async (t) => {
  const [a, b, c] = await Promise.all([startBackend(t, 'a'), startBackend(t, 'b'), startBackend(t, 'c')]);
  const port = await freePort();
  const dp = await startDataPlane(t);
  const one = vhost('one.test', [route('one', match('/'), [backend('shared')])]);
  const two = vhost('two.test', [route('two', match('/'), [backend('own')])]);
  const config = (hosts: ReturnType<typeof vhost>[], shared: number, own: number): IR =>
    ir([listener(port, [gatewayListener('gw', null, hosts)])], [cluster('shared', { port: shared }), cluster('own', { port: own })]);
  const backendOf = async (host: string) => (await request(port, '/', { host })).json().backend;

  // Cluster objects are rebuilt each time, as translate does when a Service changes.
  assert.deepEqual(await dp.apply(config([one, two], a.port, b.port)), { listenerErrors: {}, certificateErrors: {}, routeErrors: {} });
  assert.equal(await backendOf('one.test'), 'a');
  assert.equal(await backendOf('two.test'), 'b');

  // Same virtual host objects, shared cluster moved to c: one.test follows it.
  await dp.apply(config([one, two], c.port, b.port));
  assert.equal(await backendOf('one.test'), 'c');
  assert.equal(await backendOf('two.test'), 'b');

  // Same objects again, and a virtual host added, then one removed.
  const three = vhost('three.test', [route('three', match('/'), [backend('missing')])]);
  const res = await dp.apply(config([one, two, three], c.port, b.port));
  assert.deepEqual(Object.keys(res.routeErrors), ['three']);
  assert.equal(await backendOf('one.test'), 'c');
  assert.equal((await request(port, '/', { host: 'three.test' })).status, 500);
  // A reused virtual host still reports the errors compiling it gave.
  assert.deepEqual(Object.keys((await dp.apply(config([one, three], c.port, b.port))).routeErrors), ['three']);
  assert.equal((await request(port, '/', { host: 'two.test' })).status, 404);
  assert.equal(await backendOf('one.test'), 'c');

  // A rejected IR leaves the previous config serving, and the next one applies in full.
  await assert.rejects(dp.apply({ ...config([one], a.port, b.port), version: 2 as 1 }), /unsupported IR version/);
  assert.equal(await backendOf('one.test'), 'c');
  await dp.apply(config([one, two], a.port, b.port));
  assert.equal(await backendOf('one.test'), 'a');
  assert.equal(await backendOf('two.test'), 'b');
});
