// Extended CONNECT (RFC 8441) misused, with raw frames: CONNECT with a
// :path but no :protocol, :protocol on a method other than CONNECT, an
// extended CONNECT from a client that has not acknowledged the SETTINGS
// that enabled it, and DATA frames on a WebSocket stream larger than the
// frame size we allow or than the window we granted. Each is refused by
// stream or by connection, nothing malformed reaches the backend, open
// WebSockets of other connections are untouched, and the data plane goes
// on serving.

import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test, type TestContext } from 'node:test';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, route, startDataPlane, vhost } from '../dataplane/helpers.ts';
import { encodeFrame, OP_TEXT, startWsBackend, type WsBackend } from '../e2e/websocket-helpers.ts';
import { ERROR, FLAG, FRAME, frame, headerBlock, RawH2 } from './h2-frames.ts';

const FRAME_SIZE_ERROR = 0x6;
const FLOW_CONTROL_ERROR = 0x3;

function extendedConnect(path: string, extra: readonly (readonly [string, string])[] = []): Buffer {
  return headerBlock([[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'http'], [':path', path], [':authority', 'example.com'], ['sec-websocket-version', '13'], ...extra]);
}

function headers(streamId: number, block: Buffer, endStream = false): Buffer {
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), streamId, block);
}

/** The :status of the first HEADERS frame on `streamId` (literal, not Huffman, as node's nghttp2 sends small ones: read loosely). */
function answered(raw: RawH2, streamId: number): boolean {
  return raw.frames.some((f) => f.type === FRAME.HEADERS && f.streamId === streamId);
}

async function setup(t: TestContext): Promise<{ port: number; ws: WsBackend }> {
  const ws = await startWsBackend('ws');
  t.after(() => ws.close());
  const port = await freePort();
  // A short drain: the teardown of the last case waits for it (see the report on branch h2-extras).
  const dp = await startDataPlane(t, { limits: { drainTimeoutMs: 2_000 } });
  const routes = [route('ws', match('/'), [backend('ws')])];
  const result = await dp.apply(ir([listener(port, [gatewayListener('ns/gw/l', null, [vhost('example.com', routes)])])], [cluster('ws', ws)]));
  assert.deepEqual(result.listenerErrors, {});
  return { port, ws };
}

/** A well-behaved WebSocket over HTTP/2 still opens and echoes. */
async function stillServes(port: number): Promise<void> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
    const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/ok', ':scheme': 'http', ':authority': 'example.com' });
    const status = await new Promise<number>((resolve, reject) => {
      stream.once('response', (h) => resolve(Number(h[':status'])));
      stream.once('error', reject);
    });
    assert.equal(status, 200);
    stream.write(encodeFrame(OP_TEXT, Buffer.from('still'), true));
    const echo = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
    assert.ok(echo.includes(Buffer.from('ws:still')));
    stream.close();
  } finally {
    session.destroy();
  }
}

test('extended CONNECT misuse is refused cleanly', { timeout: 60_000 }, async (t) => {
  const { port, ws } = await setup(t);

  await t.test('CONNECT with :path but no :protocol: the stream is refused, nothing goes upstream', async (st) => {
    const raw = await RawH2.connect(port);
    st.after(() => raw.destroy());
    const before = ws.handshakes.length;
    raw.write(headers(1, headerBlock([[':method', 'CONNECT'], [':scheme', 'http'], [':path', '/'], [':authority', 'example.com']])));
    assert.ok(await raw.until(() => raw.resets().has(1) || raw.goaway() !== undefined, 3_000), 'refused');
    const code = raw.resets().get(1) ?? raw.goaway()?.code;
    assert.equal(code, ERROR.PROTOCOL_ERROR);
    assert.equal(ws.handshakes.length, before);
  });

  await t.test(':protocol on a GET: refused, nothing goes upstream', async (st) => {
    const raw = await RawH2.connect(port);
    st.after(() => raw.destroy());
    const before = ws.handshakes.length;
    raw.write(headers(1, headerBlock([[':method', 'GET'], [':protocol', 'websocket'], [':scheme', 'http'], [':path', '/'], [':authority', 'example.com']]), true));
    assert.ok(await raw.until(() => raw.resets().has(1) || raw.goaway() !== undefined, 3_000), 'refused');
    assert.equal(raw.resets().get(1) ?? raw.goaway()?.code, ERROR.PROTOCOL_ERROR);
    assert.equal(ws.handshakes.length, before);
  });

  await t.test('a plain CONNECT (authority-form) is answered, not tunnelled', async (st) => {
    const raw = await RawH2.connect(port);
    st.after(() => raw.destroy());
    const before = ws.handshakes.length;
    raw.write(headers(1, headerBlock([[':method', 'CONNECT'], [':authority', 'example.com:443']])));
    assert.ok(await raw.until(() => answered(raw, 1) || raw.resets().has(1), 3_000), 'refused');
    assert.equal(ws.handshakes.length, before);
  });

  await t.test('extended CONNECT before the client acknowledged our SETTINGS: no crash, one clean outcome', async (st) => {
    const raw = await RawH2.connect(port);
    raw.ackSettings = false;
    st.after(() => raw.destroy());
    raw.write(headers(1, extendedConnect('/early')));
    // nghttp2 decides from the SETTINGS it sent: either the stream is
    // refused or it is served; never a hang or a dead worker.
    assert.ok(await raw.until(() => answered(raw, 1) || raw.resets().has(1) || raw.goaway() !== undefined, 3_000));
  });

  await t.test('a DATA frame over SETTINGS_MAX_FRAME_SIZE on a WebSocket: GOAWAY FRAME_SIZE_ERROR, its backend side closed', async (st) => {
    const raw = await RawH2.connect(port);
    st.after(() => raw.destroy());
    raw.write(headers(1, extendedConnect('/big-frame')));
    assert.ok(await raw.until(() => answered(raw, 1), 3_000), 'the WebSocket opened');
    const openBefore = ws.open.size;
    assert.ok(openBefore >= 1);
    raw.write(frame(FRAME.DATA, 0, 1, Buffer.alloc(16_385, 1)));
    assert.ok(await raw.until(() => raw.goaway() !== undefined, 3_000), 'GOAWAY');
    assert.equal(raw.goaway()?.code, FRAME_SIZE_ERROR);
    assert.ok(await raw.waitClosed(3_000), 'connection closed');
    const deadline = Date.now() + 3_000;
    while (ws.open.size >= openBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(ws.open.size < openBefore, "the tunnel's backend connection closed");
  });

  await t.test('DATA past the stream window on a WebSocket: the stream or connection is refused, memory bounded', async (st) => {
    const raw = await RawH2.connect(port);
    st.after(() => raw.destroy());
    raw.write(headers(1, extendedConnect('/flood')));
    assert.ok(await raw.until(() => answered(raw, 1), 3_000), 'the WebSocket opened');
    // 64 KiB is the window granted per stream; a client that sends past it
    // without WINDOW_UPDATE breaks flow control. The backend does not read
    // here (its echo stalls once our frames are no whole WebSocket frame).
    const chunk = frame(FRAME.DATA, 0, 1, Buffer.alloc(16_384, 2));
    for (let i = 0; i < 200; i++) raw.write(chunk);
    assert.ok(await raw.until(() => raw.resets().get(1) === FLOW_CONTROL_ERROR || raw.goaway()?.code === FLOW_CONTROL_ERROR, 5_000), 'FLOW_CONTROL_ERROR');
  });

  await t.test('the data plane still serves WebSockets over HTTP/2', async () => {
    await stillServes(port);
  });
});
