// A listener's client settings (ClientTrafficPolicy) over real sockets:
// the client address through X-Forwarded-For hops, trusted CIDRs and the
// PROXY protocol (v1 and v2, plain and TLS), a listener that requires the
// PROXY header, the request body limit (and none), the connection limit,
// and a listener without a policy left as it was.

import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'node:test';
import type { ClientSettings, IR } from '../../src/ir/types.ts';
import {
  backend, cluster, freePort, gatewayListener, ir, listener, rawExchange, request, route, match, selfSigned, sleep, startBackend, startDataPlane,
  statusOf, vhost, type EchoReply,
} from './helpers.ts';
import { proxyV2 } from './proxy-protocol-helpers.ts';

function irWith(port: number, backendPort: number, client: ClientSettings | undefined, tlsCert?: { cert: string; key: string }): IR {
  const l = listener(
    port,
    [gatewayListener('ns/gw/l', null, [vhost('*', [route('all', match('/'), [backend('b')])])])],
    tlsCert === undefined ? undefined : [{ serverNames: ['*'], certChain: tlsCert.cert, privateKey: tlsCert.key }],
  );
  if (client !== undefined) l.client = client;
  return ir([l], [cluster('b', { port: backendPort })]);
}

/** Sends `head` bytes then an HTTP/1.1 GET on one socket; resolves with what came back before the close. */
function rawWithPrefix(port: number, prefix: Buffer, request = 'GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(Buffer.concat([prefix, Buffer.from(request, 'latin1')])));
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('close', () => resolve(text));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(text) : reject(err)));
    setTimeout(() => socket.destroy(), 5_000).unref();
  });
}

function echoOf(text: string): EchoReply {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as EchoReply;
}

test('client IP through two trusted X-Forwarded-For hops', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', clientIP: { xForwardedFor: { numTrustedHops: 2 } } }));
  // The hardware balancer appended the client, MetalLB's node the balancer; the peer is the node.
  let echo = (await request(port, '/', { headers: { 'x-forwarded-for': '203.0.113.7, 10.0.0.5' } })).json();
  assert.equal(echo.headers['x-real-ip'], '203.0.113.7');
  assert.equal(echo.headers['x-forwarded-for'], '203.0.113.7, 10.0.0.5, 127.0.0.1', 'the peer is appended, as Envoy does');
  // What the client wrote itself, left of the trusted hops, is not believed.
  echo = (await request(port, '/', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.7, 10.0.0.5' } })).json();
  assert.equal(echo.headers['x-real-ip'], '203.0.113.7');
  // Fewer addresses than trusted hops: nothing can be trusted, the peer is the client.
  echo = (await request(port, '/', { headers: { 'x-forwarded-for': '10.0.0.5' } })).json();
  assert.equal(echo.headers['x-real-ip'], '127.0.0.1');
  // A spoofed X-Real-IP is replaced.
  echo = (await request(port, '/', { headers: { 'x-real-ip': '6.6.6.6' } })).json();
  assert.equal(echo.headers['x-real-ip'], '127.0.0.1');
});

test('client IP from trusted CIDRs', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', clientIP: { xForwardedFor: { trustedCIDRs: ['127.0.0.0/8', '10.0.0.0/8'] } } }));
  let echo = (await request(port, '/', { headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.1, 10.9.9.9, 10.0.0.5' } })).json();
  assert.equal(echo.headers['x-real-ip'], '198.51.100.1');
  echo = (await request(port, '/', { headers: { 'x-forwarded-for': '10.0.0.1' } })).json();
  assert.equal(echo.headers['x-real-ip'], '10.0.0.1', 'all trusted: the leftmost');
  echo = (await request(port, '/', { headers: { 'x-forwarded-for': 'not-an-address, 10.0.0.1' } })).json();
  assert.equal(echo.headers['x-real-ip'], '127.0.0.1', 'a chain with garbage in it: the peer');
});

test('client IP from a custom header, fail closed', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', clientIP: { customHeader: { name: 'x-client-ip', failClosed: true } } }));
  const echo = (await request(port, '/', { headers: { 'x-client-ip': '192.0.2.9' } })).json();
  assert.equal(echo.headers['x-real-ip'], '192.0.2.9');
  assert.equal((await request(port, '/')).status, 403);
  assert.equal((await request(port, '/', { headers: { 'x-client-ip': 'nonsense' } })).status, 403);
});

test('client IP through a PROXY protocol v2 header, and v1', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', proxyProtocol: { optional: false } }));
  let reply = await rawWithPrefix(port, proxyV2('192.0.2.44'));
  assert.equal(statusOf(reply), 200, reply);
  let echo = echoOf(reply);
  assert.equal(echo.headers['x-forwarded-for'], '192.0.2.44');
  assert.equal(echo.headers['x-real-ip'], '192.0.2.44');
  reply = await rawWithPrefix(port, Buffer.from('PROXY TCP4 198.51.100.20 127.0.0.1 51000 80\r\n', 'latin1'));
  echo = echoOf(reply);
  assert.equal(echo.headers['x-real-ip'], '198.51.100.20');
  // v2 LOCAL (the balancer's own health check): the peer's address.
  const local = proxyV2('192.0.2.44');
  local[12] = 0x20;
  echo = echoOf(await rawWithPrefix(port, local));
  assert.equal(echo.headers['x-real-ip'], '127.0.0.1');
  // The header and the request in separate, small writes.
  const socket = net.connect(port, '127.0.0.1');
  const text = new Promise<string>((resolve) => {
    let s = '';
    socket.on('data', (d: Buffer) => (s += d.toString('latin1')));
    socket.on('close', () => resolve(s));
  });
  const bytes = Buffer.concat([proxyV2('192.0.2.45'), Buffer.from('GET / HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n')]);
  for (let i = 0; i < bytes.length; i += 7) {
    socket.write(bytes.subarray(i, i + 7));
    await sleep(2);
  }
  assert.equal(echoOf(await text).headers['x-real-ip'], '192.0.2.45');
});

test('a listener that requires the PROXY protocol closes a connection without one', async (t) => {
  const b = await startBackend(t, 'b');
  let reached = 0;
  b.server.on('request', () => reached++);
  const port = await freePort();
  const logs: string[] = [];
  const dp = await startDataPlane(t, { log: (level, msg, fields) => logs.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`) });
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', proxyProtocol: { optional: false } }));
  const reply = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n');
  assert.equal(reply.text, '', 'nothing is answered');
  assert.ok(reply.closed);
  assert.equal(reached, 0);
  assert.ok(logs.some((l) => l.includes('PROXY protocol header refused') && l.includes('no PROXY protocol header')), logs.join('\n'));
});

test('an optional PROXY protocol listener serves connections with and without the header', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', proxyProtocol: { optional: true } }));
  assert.equal((await request(port, '/')).json().headers['x-real-ip'], '127.0.0.1');
  assert.equal(echoOf(await rawWithPrefix(port, proxyV2('192.0.2.50'))).headers['x-real-ip'], '192.0.2.50');
  // An HTTP/1 request whose method starts like "PROXY" is still a request: POST, PUT, PATCH.
  const put = await rawWithPrefix(port, Buffer.alloc(0), 'PUT / HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(put), 200, put);
});

test('PROXY protocol v2 in front of TLS', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', proxyProtocol: { optional: false } }, selfSigned('example.com')));
  const raw = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => raw.once('connect', resolve));
  raw.write(proxyV2('192.0.2.60'));
  const socket = tls.connect({ socket: raw, servername: 'example.com', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  const text = await new Promise<string>((resolve, reject) => {
    let s = '';
    socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n'));
    socket.on('data', (d: Buffer) => (s += d.toString('latin1')));
    socket.on('close', () => resolve(s));
    socket.on('error', reject);
  });
  assert.equal(statusOf(text), 200, text);
  assert.equal(echoOf(text).headers['x-real-ip'], '192.0.2.60');
});

test('max request body size: 413 beyond, with a length or chunked; off lets a large body through', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, { policy: 'infra/uploads', maxRequestBodyBytes: 1024 }));
  assert.equal((await request(port, '/', { method: 'POST', body: Buffer.alloc(1024) })).status, 200);
  const before = b.seen.length;
  assert.equal((await request(port, '/', { method: 'POST', body: Buffer.alloc(1025) })).status, 413);
  assert.equal(b.seen.length, before, 'a body announced too large never reaches the backend');
  // Chunked: counted as it comes.
  const chunked = await rawExchange(port, `POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n${'800\r\n' + 'x'.repeat(0x800) + '\r\n'}0\r\n\r\n`);
  assert.equal(statusOf(chunked.text), 413, chunked.text.slice(0, 200));

  // Chunked, going past the limit after the request went to the backend: 413 all the same.
  const socket = net.connect(port, '127.0.0.1');
  const answered = new Promise<string>((resolve) => {
    let s = '';
    socket.on('data', (d: Buffer) => (s += d.toString('latin1')));
    socket.on('close', () => resolve(s));
    socket.on('error', () => resolve(s));
  });
  socket.write(`POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n${'y'.repeat(0x200)}\r\n`);
  await sleep(100);
  socket.write(`400\r\n${'y'.repeat(0x400)}\r\n`);
  await sleep(100);
  socket.write('0\r\n\r\n');
  assert.equal(statusOf(await answered), 413);

  // No limit (the policy leaves maxRequestBodySize out): 8 MiB goes through whole.
  await dp.apply(irWith(port, b.port, { policy: 'infra/uploads' }));
  const big = await request(port, '/', { method: 'POST', body: Buffer.alloc(8 * 1024 * 1024, 1) });
  assert.equal(big.status, 200);
  assert.equal(big.json().bodyBytes, 8 * 1024 * 1024);
});

test('connection limit per listener: connections beyond it are closed at accept', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t, { log: () => {} });
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', limits: { maxClientConnections: 2 } }));
  const open: net.Socket[] = [];
  t.after(() => open.forEach((s) => s.destroy()));
  for (let i = 0; i < 2; i++) {
    const s = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => s.once('connect', resolve));
    open.push(s);
  }
  await sleep(50);
  const third = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: e\r\n\r\n', 2_000);
  assert.equal(third.text, '');
  assert.ok(third.closed, 'the third connection is closed');
  open.forEach((s) => s.destroy());
  await sleep(100);
  assert.equal((await request(port, '/')).status, 200, 'served again once below the limit');
});

test('client timeouts of a policy: the request head timeout', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t, { log: () => {} });
  await dp.apply(irWith(port, b.port, { policy: 'infra/vip', limits: { headersTimeoutMs: 300 } }));
  const started = Date.now();
  const reply = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: e\r\n', 5_000);
  assert.ok(reply.closed);
  assert.ok(Date.now() - started < 2_000, `closed after ${Date.now() - started} ms, the default is 10 s`);
});

test('a listener without a policy: no X-Real-IP added, and a client X-Real-IP passes as before', async (t) => {
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, undefined));
  let echo = (await request(port, '/', { headers: { 'x-forwarded-for': '203.0.113.7' } })).json();
  assert.equal(echo.headers['x-real-ip'], undefined);
  assert.equal(echo.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  echo = (await request(port, '/', { headers: { 'x-real-ip': '1.2.3.4' } })).json();
  assert.equal(echo.headers['x-real-ip'], '1.2.3.4');
});

test('HTTP/2: body limit, stream limit and windows of a policy', async (t) => {
  const http2 = await import('node:http2');
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(irWith(port, b.port, {
    policy: 'infra/h2',
    maxRequestBodyBytes: 1024,
    limits: { http2MaxConcurrentStreams: 7 },
    http2: { initialStreamWindowSize: 1 << 20, initialConnectionWindowSize: 4 << 20 },
  }));
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.after(() => session.close());
  const settings = await new Promise<import('node:http2').Settings>((resolve) => session.once('remoteSettings', resolve));
  assert.equal(settings.maxConcurrentStreams, 7);
  assert.equal(settings.initialWindowSize, 1 << 20);
  const post = (size: number) => new Promise<number>((resolve, reject) => {
    // No content-length: the body is counted as it comes.
    const req = session.request({ ':method': 'POST', ':path': '/', ':authority': 'example.com' });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', reject);
    req.write(Buffer.alloc(size / 2));
    setTimeout(() => req.end(Buffer.alloc(size / 2)), 50);
  });
  assert.equal(await post(1024), 200);
  assert.equal(await post(4096), 413);
  // 4 MiB less what was sent (node grows it to the stream window, 1 MiB, without the setting).
  assert.ok(session.state.remoteWindowSize! > 2 << 20, `connection window ${session.state.remoteWindowSize}`);
});
