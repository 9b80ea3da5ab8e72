// WebSockets over HTTP/2 (RFC 8441) through the data plane, on real
// sockets: node's http2 client sends the extended CONNECT (h2c with prior
// knowledge and h2 over TLS), the gateway advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL, routes the stream as a WebSocket
// handshake and sends it to an HTTP/1.1 backend as an Upgrade (key and
// version made by the gateway); the 101 comes back as a 200 and frames go
// both ways on the stream. Also: the close handshake, a reload of another
// route with the socket open, the idle timeout, and other :protocol values
// refused with 501.

import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test, type TestContext } from 'node:test';
import type { Filter } from '../../src/ir/types.ts';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, route, selfSigned, sleep, startDataPlane, vhost } from '../dataplane/helpers.ts';
import { encodeFrame, FrameReader, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, startWsBackend, type Frame } from './websocket-helpers.ts';

/** A session that has our SETTINGS (RFC 8441 §3: extended CONNECT only after the server enabled it). */
async function connectH2(t: TestContext, port: number, secure: boolean): Promise<http2.ClientHttp2Session> {
  const session = secure
    ? http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, servername: 'example.com' })
    : http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  t.after(() => session.destroy());
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', () => resolve());
    session.once('error', reject);
  });
  return session;
}

interface H2Socket {
  status: number;
  headers: http2.IncomingHttpHeaders;
  stream: http2.ClientHttp2Stream;
  next(): Promise<Frame>;
  send(opcode: number, payload: string | Buffer): void;
  ended: Promise<void>;
}

function openWebSocket(session: http2.ClientHttp2Session, path: string, protocol = 'websocket', extra: http2.OutgoingHttpHeaders = {}): Promise<H2Socket> {
  const stream = session.request({
    ':method': 'CONNECT',
    ':protocol': protocol,
    ':path': path,
    ':scheme': 'https',
    ':authority': 'example.com',
    'sec-websocket-version': '13',
    ...extra,
  });
  const reader = new FrameReader();
  const queue: Frame[] = [];
  const waiters: ((f: Frame) => void)[] = [];
  let upgraded = false;
  stream.once('response', (headers) => (upgraded = headers[':status'] === 200));
  stream.on('data', (chunk: Buffer) => {
    // Only a 200 makes the stream a WebSocket; a refusal's body is text.
    if (!upgraded) return;
    for (const f of reader.push(chunk)) {
      const w = waiters.shift();
      if (w !== undefined) w(f);
      else queue.push(f);
    }
  });
  stream.on('error', () => {});
  const ended = new Promise<void>((resolve) => stream.on('close', () => resolve()));
  return new Promise((resolve, reject) => {
    stream.once('response', (headers) => {
      resolve({
        status: Number(headers[':status']),
        headers,
        stream,
        next: () => {
          const f = queue.shift();
          if (f !== undefined) return Promise.resolve(f);
          return new Promise((r, j) => {
            const timer = setTimeout(() => j(new Error('no frame within 3 s')), 3_000);
            waiters.push((frame) => {
              clearTimeout(timer);
              r(frame);
            });
          });
        },
        send: (opcode, payload) => stream.write(encodeFrame(opcode, Buffer.isBuffer(payload) ? payload : Buffer.from(payload), true)),
        ended,
      });
    });
    stream.once('close', () => reject(new Error(`stream closed before a response (code ${stream.rstCode})`)));
  });
}

test('WebSockets over HTTP/2 (RFC 8441)', { timeout: 60_000 }, async (t) => {
  const ws = await startWsBackend('ws');
  t.after(() => ws.close());
  const plainPort = await freePort();
  const tlsPort = await freePort();
  const { cert, key } = selfSigned('example.com');
  const tag: Filter = { type: 'RequestHeaderModifier', set: [{ name: 'x-via', value: 'gatehouse' }], add: [], remove: [] };
  const build = (otherPath: string) => {
    const routes = [route('ws', match('/ws'), [backend('ws')], { filters: [tag] }), route('other', match(otherPath), [backend('ws')])];
    const gw = [gatewayListener('ns/gw/l', null, [vhost('example.com', routes)])];
    return ir([listener(plainPort, gw), listener(tlsPort, gw, [{ serverNames: ['*'], certChain: cert, privateKey: key }])], [cluster('ws', ws)]);
  };
  const dp = await startDataPlane(t);
  assert.deepEqual((await dp.apply(build('/other'))).listenerErrors, {});

  for (const [name, port, secure] of [['h2c', plainPort, false], ['h2 over TLS', tlsPort, true]] as const) {
    await t.test(`${name}: echo, ping and the close handshake`, async () => {
      const session = await connectH2(t, port, secure);
      assert.equal(session.remoteSettings.enableConnectProtocol, true, 'SETTINGS_ENABLE_CONNECT_PROTOCOL advertised');
      const socket = await openWebSocket(session, '/ws/chat?room=1');
      assert.equal(socket.status, 200);
      assert.equal(socket.headers['sec-websocket-accept'], undefined, 'no handshake proof over HTTP/2');
      const seen = ws.handshakes.at(-1);
      assert.ok(seen !== undefined);
      assert.equal(seen.url, '/ws/chat?room=1');
      assert.equal(seen.headers['upgrade'], 'websocket');
      assert.equal(seen.headers['sec-websocket-version'], '13');
      assert.match(String(seen.headers['sec-websocket-key']), /^[A-Za-z0-9+/]{22}==$/, 'the gateway makes the key');
      assert.equal(seen.headers['x-via'], 'gatehouse', "the route's filters apply");
      socket.send(OP_TEXT, 'hello');
      assert.deepEqual(await socket.next(), { opcode: OP_TEXT, payload: Buffer.from('ws:hello') });
      const big = Buffer.alloc(200_000, 'x');
      socket.send(OP_TEXT, big);
      const echoed = await socket.next();
      assert.equal(echoed.payload.length, big.length + 3, 'a message larger than a stream window comes back whole');
      socket.send(OP_PING, 'p');
      assert.deepEqual(await socket.next(), { opcode: OP_PONG, payload: Buffer.from('p') });
      const code = Buffer.alloc(2);
      code.writeUInt16BE(1000);
      socket.send(OP_CLOSE, code);
      const closing = await socket.next();
      assert.equal(closing.opcode, OP_CLOSE);
      socket.stream.end();
      await socket.ended;
      assert.equal(socket.stream.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'closed in order, not reset');
    });
  }

  await t.test('an open socket survives reloads that change other routes', async () => {
    const session = await connectH2(t, plainPort, false);
    const socket = await openWebSocket(session, '/ws');
    assert.equal(socket.status, 200);
    for (let i = 0; i < 5; i++) {
      assert.deepEqual((await dp.apply(build(`/other-${i}`))).listenerErrors, {});
      socket.send(OP_TEXT, `after reload ${i}`);
      assert.deepEqual(await socket.next(), { opcode: OP_TEXT, payload: Buffer.from(`ws:after reload ${i}`) });
    }
    assert.equal(socket.stream.closed, false);
    socket.stream.close();
  });

  await t.test('an extended CONNECT for another protocol is refused with 501', async () => {
    const session = await connectH2(t, plainPort, false);
    const before = ws.handshakes.length;
    const socket = await openWebSocket(session, '/ws', 'connect-udp');
    assert.equal(socket.status, 501);
    await socket.ended;
    assert.equal(ws.handshakes.length, before, 'nothing reached the backend');
  });

  await t.test('no route: 404 on the stream', async () => {
    const session = await connectH2(t, plainPort, false);
    const socket = await openWebSocket(session, '/nowhere');
    assert.equal(socket.status, 404);
  });
});

test('an idle WebSocket over HTTP/2 is closed at --websocket-idle-timeout; traffic keeps it open', { timeout: 30_000 }, async (t) => {
  const ws = await startWsBackend('ws');
  t.after(() => ws.close());
  const port = await freePort();
  const dp = await startDataPlane(t, { limits: { websocketIdleTimeoutMs: 1_000 } });
  const routes = [route('ws', match('/'), [backend('ws')])];
  await dp.apply(ir([listener(port, [gatewayListener('ns/gw/l', null, [vhost('example.com', routes)])])], [cluster('ws', ws)]));
  const session = await connectH2(t, port, false);
  const busy = await openWebSocket(session, '/busy');
  const idle = await openWebSocket(session, '/idle');
  for (let i = 0; i < 8; i++) {
    await sleep(250);
    busy.send(OP_TEXT, 'tick');
    await busy.next();
  }
  await idle.ended;
  assert.equal(idle.stream.rstCode, http2.constants.NGHTTP2_CANCEL, 'the idle one is reset');
  assert.equal(busy.stream.closed, false, 'the busy one stays open');
  await sleep(100);
  assert.equal(ws.open.size, 1, "the idle one's backend connection is closed");
});
