// WebSockets through the data plane, end to end on real sockets: the
// handshake relayed both ways, frames carried intact in both directions
// (bytes that came with the handshake included), refusals relayed, config
// changes that leave open sockets alone (another route, the socket's own
// route's weights, even its route's removal), the idle timeout, the drain
// at shutdown, the client connection limit, the cluster's connection cap,
// backpressure, TLS, and the undici upstream client.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import type { RouteEntry } from '../../src/ir/types.ts';
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
  selfSigned,
  simpleIR,
  sleep,
  startDataPlane,
  vhost,
} from '../dataplane/helpers.ts';
import { GATEWAY_CLASS, gatewayYAML, spawnServe, tempConfigDir, waitFor, writeConfig } from './helpers.ts';
import { acceptFor, encodeFrame, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, startWsBackend, WsClient } from './websocket-helpers.ts';

const HOST = 'ws.example.com';

function wsRoute(name: string, path: string, clusterName: string, extra: Partial<RouteEntry> = {}): RouteEntry {
  return route(name, match(path), [backend(clusterName)], extra);
}

test('a WebSocket reaches a plain backend: handshake relayed both ways, frames intact each way, closing handshake', async (t) => {
  const be = await startWsBackend('a', { extraHeaders: ['Sec-WebSocket-Protocol: chat', 'X-Backend: a'] });
  t.after(() => be.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/ws', 'a', {
    filters: [{ type: 'ResponseHeaderModifier', set: [{ name: 'x-route', value: 'ws' }], add: [], remove: ['x-backend'] }],
  })], [cluster('a', be)]));

  const client = new WsClient(port);
  t.after(() => client.destroy());
  const answer = await client.open('/ws/chat?room=1', HOST, 'Sec-WebSocket-Protocol: chat, superchat\r\nOrigin: http://example.com\r\n');
  assert.equal(answer.status, 101, answer.head);
  assert.equal(answer.headers['upgrade']?.toLowerCase(), 'websocket');
  assert.equal(answer.headers['connection']?.toLowerCase(), 'upgrade');
  assert.equal(answer.headers['sec-websocket-accept'], acceptFor(client.key));
  assert.equal(answer.headers['sec-websocket-protocol'], 'chat');
  // The route's response header modifiers apply to the 101 as to any answer.
  assert.equal(answer.headers['x-route'], 'ws');
  assert.equal(answer.headers['x-backend'], undefined);

  const seen = be.handshakes[0];
  assert.equal(seen.url, '/ws/chat?room=1');
  assert.equal(seen.headers['upgrade'], 'websocket');
  assert.equal(seen.headers['connection'], 'upgrade');
  assert.equal(seen.headers['sec-websocket-key'], client.key);
  assert.equal(seen.headers['sec-websocket-version'], '13');
  assert.equal(seen.headers['sec-websocket-protocol'], 'chat, superchat');
  assert.equal(seen.headers['origin'], 'http://example.com');
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['host'], HOST);

  const text = await client.echo(OP_TEXT, 'Websocket Support!');
  assert.deepEqual([text.opcode, text.payload.toString()], [OP_TEXT, 'a:Websocket Support!']);
  const small = await client.echo(OP_BINARY, Buffer.from([1, 2, 3, 4, 5, 6, 7]));
  assert.deepEqual([small.opcode, [...small.payload]], [OP_BINARY, [1, 2, 3, 4, 5, 6, 7]]);
  // 16-bit and 64-bit frame lengths, many socket reads each.
  for (const size of [300, 70_000, 3 * 1024 * 1024]) {
    const payload = crypto.randomBytes(size);
    const back = await client.echo(OP_BINARY, payload);
    assert.equal(back.payload.length, size);
    assert.ok(back.payload.equals(payload), `${size} bytes came back intact`);
  }
  const pong = await client.echo(OP_PING, 'are you there');
  assert.deepEqual([pong.opcode, pong.payload.toString()], [OP_PONG, 'are you there']);

  await client.close();
  assert.equal(client.hadError, false, 'closed in order, not reset');
  await waitFor('the backend side closed', async () => be.open.size === 0);
});

test('bytes that come in the same packet as either handshake are not lost', async (t) => {
  // The backend sends a frame in the same write as its 101; the client
  // sends one in the same write as its request.
  const be = await startWsBackend('a', { greeting: encodeFrame(OP_TEXT, Buffer.from('hello from the backend'), false) });
  t.after(() => be.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));
  const client = new WsClient(port);
  t.after(() => client.destroy());
  const answer = await client.open('/', HOST, '', encodeFrame(OP_TEXT, Buffer.from('early'), true));
  assert.equal(answer.status, 101);
  const greeting = await client.receive();
  assert.equal(greeting.payload.toString(), 'hello from the backend');
  const early = await client.receive();
  assert.equal(early.payload.toString(), 'a:early');
  assert.equal((await client.echo(OP_TEXT, 'later')).payload.toString(), 'a:later');
});

test('an upgrade the backend refuses is relayed as it is, and the connection closes', async (t) => {
  const be = await startWsBackend('a', { refuse: { status: 403, body: 'no consoles for you' } });
  t.after(() => be.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/ws', 'a')], [cluster('a', be)]));

  const refused = new WsClient(port);
  t.after(() => refused.destroy());
  const answer = await refused.open('/ws', HOST);
  assert.equal(answer.status, 403);
  assert.equal(await refused.rest(), 'no consoles for you');
  assert.ok(refused.closed);

  // No route: 404 from the gateway, then close (what followed the head was not parsed).
  const lost = new WsClient(port);
  t.after(() => lost.destroy());
  const notFound = await lost.open('/elsewhere', HOST);
  assert.equal(notFound.status, 404);
  assert.match(notFound.headers['connection'] ?? '', /close/);
  await lost.closedWithin(5_000);
});

test('a backend that answers 101 to something other than websocket is a 502', async (t) => {
  const server = net.createServer((socket) => {
    socket.once('data', () => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n'));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'odd')], [cluster('odd', server.address() as net.AddressInfo)]));
  const client = new WsClient(port);
  t.after(() => client.destroy());
  assert.equal((await client.open('/', HOST)).status, 502);
});

test('a POST with Upgrade is served as a plain request, the Upgrade dropped', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));
  const reply = await request(port, '/', { method: 'POST', body: 'x', headers: { connection: 'upgrade', upgrade: 'websocket' } });
  assert.equal(reply.status, 200);
  assert.equal(reply.text, 'a');
  assert.equal(be.handshakes.length, 0);
});

test('config changes leave open WebSockets alone: other routes, its own weights, even its route removed', async (t) => {
  const a = await startWsBackend('a');
  const b = await startWsBackend('b');
  t.after(() => a.close());
  t.after(() => b.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  const clusters = [cluster('a', a), cluster('b', b)];
  const config = (routes: RouteEntry[]) => simpleIR(port, routes, clusters);
  await dp.apply(config([wsRoute('console', '/console', 'a'), wsRoute('other', '/other', 'b')]));

  const sockets: WsClient[] = [];
  for (let i = 0; i < 5; i++) {
    const c = new WsClient(port);
    t.after(() => c.destroy());
    assert.equal((await c.open('/console', HOST)).status, 101);
    sockets.push(c);
  }
  const stillEcho = async (what: string) => {
    for (const [i, c] of sockets.entries()) {
      assert.equal(c.closed, false, `${what}: socket ${i} is open`);
      assert.equal((await c.echo(OP_TEXT, `${what} ${i}`)).payload.toString(), `a:${what} ${i}`);
    }
  };

  await dp.apply(config([wsRoute('console', '/console', 'a')]));
  await stillEcho('another route removed');
  await dp.apply(config([wsRoute('console', '/console', 'a'), wsRoute('new', '/new', 'b')]));
  await stillEcho('another route added');
  await dp.apply(config([route('console', match('/console'), [backend('a', 1), backend('b', 3)])]));
  await stillEcho('its own weights changed');
  // New WebSockets on the route follow the new weights. The pick is weighted
  // random: 60 handshakes all missing the weight-1 backend has odds 0.75^60 (< 1e-7).
  const seenBackends = new Set<string>();
  for (let i = 0; i < 60 && seenBackends.size < 2; i++) {
    const c = new WsClient(port);
    t.after(() => c.destroy());
    assert.equal((await c.open('/console', HOST)).status, 101);
    seenBackends.add((await c.echo(OP_TEXT, 'x')).payload.toString());
    await c.close();
  }
  assert.deepEqual([...seenBackends].sort(), ['a:x', 'b:x']);
  await dp.apply(config([route('console', match('/console'), [backend('b')])]));
  await stillEcho('its route now sends to another backend');
  await dp.apply(config([wsRoute('other', '/other', 'b')]));
  await stillEcho('its route removed');
  // ... while new handshakes follow the config.
  const late = new WsClient(port);
  t.after(() => late.destroy());
  assert.equal((await late.open('/console', HOST)).status, 404);
});

test('the WebSocket idle timeout closes a silent tunnel; traffic either way keeps it open', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t, { limits: { websocketIdleTimeoutMs: 1_500 } });
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));
  const silent = new WsClient(port);
  const chatty = new WsClient(port);
  t.after(() => silent.destroy());
  t.after(() => chatty.destroy());
  assert.equal((await silent.open('/', HOST)).status, 101);
  assert.equal((await chatty.open('/', HOST)).status, 101);
  const started = Date.now();
  while (Date.now() - started < 4_000) {
    await chatty.echo(OP_PING, 'keep me');
    await sleep(400);
  }
  assert.equal(silent.closed, true, 'the silent one was closed');
  assert.equal(chatty.closed, false, 'the chatty one is open');
  await waitFor('the backend side of the silent one closed', async () => be.open.size === 1);
});

test('shutdown: an open WebSocket gets the drain timeout, then is cut; close() does not wait longer', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t, { limits: { drainTimeoutMs: 1_500 } });
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));
  const held = new WsClient(port);
  const leaving = new WsClient(port);
  t.after(() => held.destroy());
  t.after(() => leaving.destroy());
  assert.equal((await held.open('/', HOST)).status, 101);
  assert.equal((await leaving.open('/', HOST)).status, 101);
  const started = Date.now();
  dp.beginDrain();
  const closing = dp.close();
  // During the drain the tunnels still carry frames; one closes itself.
  await sleep(300);
  assert.equal((await held.echo(OP_TEXT, 'draining')).payload.toString(), 'a:draining');
  await leaving.close();
  assert.equal(held.closed, false);
  await closing;
  const took = Date.now() - started;
  assert.ok(took >= 1_400 && took < 4_000, `close() took ${took} ms with a 1.5 s drain timeout`);
  await held.closedWithin(2_000);
  await waitFor('the backend side closed', async () => be.open.size === 0);
});

test('open WebSockets count against maxClientConnections', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t, { limits: { maxClientConnections: 3 } });
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));
  const open: WsClient[] = [];
  for (let i = 0; i < 3; i++) {
    const c = new WsClient(port);
    t.after(() => c.destroy());
    assert.equal((await c.open('/', HOST)).status, 101);
    open.push(c);
  }
  const refused = new WsClient(port);
  t.after(() => refused.destroy());
  await assert.rejects(refused.open('/', HOST, '', null, 3_000), /closed before the handshake answer/);
  await open[0].close();
  await waitFor('a place to free up', async () => {
    const c = new WsClient(port);
    try {
      return (await c.open('/', HOST, '', null, 2_000)).status === 101;
    } finally {
      c.destroy();
    }
  }, 5_000);
});

test('tunnels leave the upstream pool: the cluster connection cap does not hold them', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t, { limits: { maxUpstreamConnectionsPerCluster: 2, maxPendingRequestsPerCluster: 2 } });
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));
  for (let i = 0; i < 6; i++) {
    const c = new WsClient(port);
    t.after(() => c.destroy());
    assert.equal((await c.open('/', HOST)).status, 101, `WebSocket ${i}`);
  }
  const plain = await request(port, '/', { host: HOST });
  assert.equal(plain.status, 200);
  assert.equal(be.open.size, 6);
});

test('a client that does not read holds the backend back: the gateway buffers at most its socket buffers', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));
  const client = new WsClient(port);
  t.after(() => client.destroy());
  assert.equal((await client.open('/', HOST)).status, 101);
  client.socket.pause();
  const [backendSide] = [...be.open];
  // 64 MiB offered as fast as the backend can write.
  const frame = encodeFrame(OP_BINARY, Buffer.alloc(1024 * 1024, 7), false);
  for (let i = 0; i < 64; i++) backendSide.write(frame);
  await sleep(1_000);
  // What the gateway and both kernels' buffers did not take waits at the backend.
  assert.ok(backendSide.writableLength > 48 * 1024 * 1024, `waiting at the backend: ${backendSide.writableLength} bytes`);
  client.socket.resume();
  let received = 0;
  while (received < 64) {
    const f = await client.receive(20_000);
    assert.equal(f.payload.length, 1024 * 1024);
    received++;
  }
});

test('the backend closing ends the client connection in order; a client reset closes the backend side', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [wsRoute('ws', '/', 'a')], [cluster('a', be)]));

  const first = new WsClient(port);
  t.after(() => first.destroy());
  assert.equal((await first.open('/', HOST)).status, 101);
  const [side] = [...be.open];
  side.end(encodeFrame(OP_CLOSE, Buffer.from([0x03, 0xe8]), false));
  const close = await first.receive();
  assert.equal(close.opcode, OP_CLOSE);
  await first.closedWithin(3_000);
  assert.equal(first.hadError, false);

  const second = new WsClient(port);
  assert.equal((await second.open('/', HOST)).status, 101);
  assert.equal(be.open.size, 1);
  second.socket.resetAndDestroy();
  await waitFor('the backend side closed', async () => be.open.size === 0);
});

test('wss: a WebSocket over an HTTPS listener', async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dp = await startDataPlane(t);
  const port = await freePort();
  const { cert, key } = selfSigned(HOST);
  await dp.apply(ir(
    [listener(port, [gatewayListener('ns/gw/https', null, [vhost('*', [wsRoute('ws', '/', 'a')])])], [{ serverNames: ['*'], certChain: cert, privateKey: key }])],
    [cluster('a', be)],
  ));
  const client = new WsClient(port, '127.0.0.1', HOST);
  t.after(() => client.destroy());
  assert.equal((await client.open('/', HOST, '', encodeFrame(OP_TEXT, Buffer.from('early'), true))).status, 101);
  assert.equal((await client.receive()).payload.toString(), 'a:early');
  const payload = crypto.randomBytes(1024 * 1024);
  assert.ok((await client.echo(OP_BINARY, payload)).payload.equals(payload));
  await client.close();
});

test('GATEHOUSE_UPSTREAM=undici: the same WebSocket through undici\'s pool', { timeout: 60_000 }, async (t) => {
  const be = await startWsBackend('a');
  t.after(() => be.close());
  const dir = tempConfigDir();
  const port = await freePort();
  const adminPort = await freePort();
  writeConfig(dir, 'all.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(port)}---
apiVersion: v1
kind: Service
metadata: {name: ws, namespace: default}
spec: {ports: [{name: http, port: 80, appProtocol: kubernetes.io/ws}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ws-1, namespace: default, labels: {kubernetes.io/service-name: ws}}
addressType: IPv4
ports: [{name: http, port: ${be.port}}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ws, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: ws, port: 80}]}]
`);
  const serve = spawnServe(
    ['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '0', '--log-level', 'warn', '--shutdown-delay', '0s'],
    { ...process.env, GATEHOUSE_UPSTREAM: 'undici' },
  );
  t.after(() => serve.stop());
  await waitFor('readyz', async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 30_000);
  const client = new WsClient(port);
  t.after(() => client.destroy());
  const answer = await client.open('/ws', HOST, '', encodeFrame(OP_TEXT, Buffer.from('early'), true));
  assert.equal(answer.status, 101, `${answer.head}\n${serve.output()}`);
  assert.equal(answer.headers['sec-websocket-accept'], acceptFor(client.key));
  assert.equal((await client.receive()).payload.toString(), 'a:early');
  const payload = crypto.randomBytes(200_000);
  assert.ok((await client.echo(OP_BINARY, payload)).payload.equals(payload));
  await client.close();
});
