// HTTP/2 clients that abuse the protocol, with raw frames (h2-frames.ts)
// where no client library would misbehave so: rapid reset, streams past
// the concurrent limit, CONTINUATION floods, header lists past the limits,
// PING/SETTINGS floods, a session that holds more memory than allowed, and
// the per-stream deadlines of HTTP/1.1. Each is bounded by a limit with a
// GOAWAY or a refused stream, the backend sees at most what the limit
// lets through, and the data plane goes on serving HTTP/2 and HTTP/1.1.

import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import type { RequestLimits } from '../../src/dataplane/limits.ts';
import { h2connect, h2request } from '../dataplane/h2-helpers.ts';
import { rawExchange, statusOf } from '../dataplane/helpers.ts';
import { connectRaw, startFixture, waitFor, sleep, type Fixture } from './client-helpers.ts';
import { ERROR, FLAG, FRAME, frame, ping, RawH2, requestHeaders, rstStream, settings } from './h2-frames.ts';

const LIMITS: Partial<RequestLimits> = {
  http2MaxConcurrentStreams: 10,
  http2MaxStreamResets: 20,
  http2MaxControlFrames: 50,
  headersTimeoutMs: 500,
  keepAliveTimeoutMs: 1_000,
  requestTimeoutMs: 3_000,
  requestBodyIdleTimeoutMs: 500,
  responseWriteTimeoutMs: 500,
};

/** The data plane still answers a fresh HTTP/2 and a fresh HTTP/1.1 client. */
async function stillServes(fx: Fixture, path: string): Promise<void> {
  const session = await h2connect(fx.port);
  try {
    assert.equal((await h2request(session, `${path}-h2`)).status, 200);
  } finally {
    session.destroy();
  }
  const h1 = await rawExchange(fx.port, `GET ${path}-h1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n`, 2_000);
  assert.equal(statusOf(h1.text), 200);
}

/** Waits for the SETTINGS acknowledgement: from then on our advertised settings hold. */
async function settled(raw: RawH2): Promise<void> {
  assert.ok(await raw.until((f) => f.some((x) => x.type === FRAME.SETTINGS && (x.flags & FLAG.ACK) !== 0), 2_000), 'SETTINGS acknowledged');
}

const seenUnder = (fx: Fixture, prefix: string) => fx.backend.seen.filter((r) => r.url.startsWith(prefix)).length;

test('HTTP/2 abuse', { timeout: 90_000 }, async (t) => {
  const fx = await startFixture(t, LIMITS);

  await t.test('rapid reset, one stream at a time: GOAWAY ENHANCE_YOUR_CALM past http2MaxStreamResets', async () => {
    const raw = await RawH2.connect(fx.port);
    await settled(raw);
    let id = 1;
    for (; id < 2 * 100; id += 2) {
      if (raw.closed || raw.goaway() !== undefined) break;
      const before = seenUnder(fx, '/rr-slow/');
      raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, requestHeaders(`/rr-slow/${id}/hang`)));
      // Reset only once the backend has the request: the work a reset wastes.
      await waitFor(() => seenUnder(fx, '/rr-slow/') > before || raw.closed, 2_000, 'the stream dispatched');
      raw.write(rstStream(id));
    }
    assert.ok(await raw.waitClosed(2_000), 'the connection closed');
    assert.equal(raw.goaway()?.code, ERROR.ENHANCE_YOUR_CALM);
    // Each reset stream cost one backend request, and no more got through than the limit lets.
    assert.ok(seenUnder(fx, '/rr-slow/') <= (LIMITS.http2MaxStreamResets as number) + 1, `${seenUnder(fx, '/rr-slow/')} requests reached the backend`);
    const line = fx.logs.find((l) => l.msg === 'HTTP/2 client over a limit: connection closed');
    assert.equal(line?.fields.limit, 'http2MaxStreamResets');
    await stillServes(fx, '/after-rr-slow');
  });

  await t.test('rapid reset, 5,000 streams opened and reset in one burst: GOAWAY, and hardly any reach the backend', async () => {
    const raw = await RawH2.connect(fx.port);
    await settled(raw);
    const burst: Buffer[] = [];
    for (let i = 0; i < 5_000; i++) {
      const id = 1 + 2 * i;
      burst.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, requestHeaders(`/rr-burst/${id}`)), rstStream(id));
    }
    raw.write(Buffer.concat(burst));
    assert.ok(await raw.waitClosed(3_000), 'the connection closed');
    // Ours (ENHANCE_YOUR_CALM) or nghttp2's reset-rate backstop (INTERNAL_ERROR), whichever the burst reaches first.
    assert.ok([ERROR.ENHANCE_YOUR_CALM, ERROR.INTERNAL_ERROR].includes(raw.goaway()?.code as 11 | 2), `GOAWAY ${JSON.stringify(raw.goaway())}`);
    await sleep(100);
    // Streams reset before we got to them are never dispatched.
    assert.ok(seenUnder(fx, '/rr-burst/') <= (LIMITS.http2MaxStreamResets as number), `${seenUnder(fx, '/rr-burst/')} requests reached the backend`);
    await stillServes(fx, '/after-rr-burst');
  });

  await t.test('a stream beyond http2MaxConcurrentStreams, once the client knows the limit: GOAWAY PROTOCOL_ERROR', async () => {
    const raw = await RawH2.connect(fx.port);
    await settled(raw);
    const limit = LIMITS.http2MaxConcurrentStreams as number;
    // Streams that stay open: the backend answers a head and never ends.
    for (let i = 0; i < limit; i++) raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, requestHeaders(`/cs/${i}/hang`)));
    await waitFor(() => seenUnder(fx, '/cs/') === limit, 2_000, 'the streams within the limit dispatched');
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * limit, requestHeaders('/cs/over')));
    assert.ok(await raw.waitClosed(2_000), 'the connection closed');
    // RFC 9113 §5.1.2 allows a stream error too; nghttp2 makes it the connection's.
    assert.deepEqual(raw.goaway(), { lastStreamId: 2 * limit - 1, code: ERROR.PROTOCOL_ERROR });
    assert.equal(seenUnder(fx, '/cs/'), limit, 'nothing past the limit reached the backend');
    await stillServes(fx, '/after-cs');
  });

  await t.test('streams beyond the limit before the client acknowledged it: each refused, then GOAWAY for a client that keeps on', async () => {
    const raw = await RawH2.connect(fx.port);
    raw.ackSettings = false;
    const limit = LIMITS.http2MaxConcurrentStreams as number;
    for (let i = 0; i < limit; i++) raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, requestHeaders(`/cs-early/${i}/hang`)));
    await waitFor(() => seenUnder(fx, '/cs-early/') === limit, 2_000, 'the streams within the limit dispatched');
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * limit, requestHeaders('/cs-early/over')));
    assert.ok(await raw.until(() => raw.resets().has(1 + 2 * limit), 1_000), 'the stream past the limit is reset');
    assert.equal(raw.resets().get(1 + 2 * limit), ERROR.REFUSED_STREAM);
    for (let i = limit + 1; i < limit + 2_000 && !raw.closed; i++) raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, requestHeaders('/cs-early/over')));
    assert.ok(await raw.waitClosed(3_000), 'the connection closed');
    assert.notEqual(raw.goaway(), undefined, 'GOAWAY before the close');
    assert.equal(seenUnder(fx, '/cs-early/'), limit, 'nothing past the limit reached the backend');
    await stillServes(fx, '/after-cs-early');
  });

  await t.test('a CONTINUATION flood: GOAWAY after nghttp2\'s bound on CONTINUATION frames, nothing dispatched', async () => {
    const raw = await RawH2.connect(fx.port);
    await settled(raw);
    raw.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, requestHeaders('/cont-flood')));
    const empties = Buffer.concat(Array.from({ length: 50_000 }, () => frame(FRAME.CONTINUATION, 0, 1)));
    raw.write(empties);
    assert.ok(await raw.waitClosed(3_000), 'the connection closed');
    assert.notEqual(raw.goaway(), undefined);
    assert.equal(seenUnder(fx, '/cont-flood'), 0);
    await stillServes(fx, '/after-cont');
  });

  await t.test('header lists past the limits: the stream is refused, the connection goes on', async () => {
    const raw = await RawH2.connect(fx.port);
    await settled(raw);
    // 20 KiB of header fields (maxHeaderBytes 16 KiB), in HEADERS and CONTINUATION frames.
    const big = requestHeaders('/hdr-big', 'example.com', 'GET', Array.from({ length: 20 }, (_, i) => [`x-big-${i}`, 'v'.repeat(1000)] as const));
    raw.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, big.subarray(0, 16_000)));
    raw.write(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, big.subarray(16_000)));
    // More fields than maxHeaderCount (100) allows.
    const many = requestHeaders('/hdr-many', 'example.com', 'GET', Array.from({ length: 120 }, (_, i) => [`x-${i}`, 'v'] as const));
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, many));
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 5, requestHeaders('/hdr-fine')));
    assert.ok(await raw.until(() => raw.resets().has(1) && raw.resets().has(3) && raw.frames.some((f) => f.streamId === 5 && f.type === FRAME.DATA && (f.flags & FLAG.END_STREAM) !== 0), 2_000));
    assert.equal(raw.resets().get(1), ERROR.ENHANCE_YOUR_CALM);
    assert.equal(raw.resets().get(3), ERROR.ENHANCE_YOUR_CALM);
    assert.equal(raw.closed, false);
    assert.equal(seenUnder(fx, '/hdr-big') + seenUnder(fx, '/hdr-many'), 0);
    assert.equal(seenUnder(fx, '/hdr-fine'), 1);
    raw.destroy();
  });

  await t.test('a header list sent before our SETTINGS are acknowledged is still held to maxHeaderBytes: 431', async () => {
    // nghttp2 applies the list size we advertise only once acknowledged; this client never does.
    const raw = await RawH2.connect(fx.port);
    raw.ackSettings = false;
    const big = requestHeaders('/hdr-early', 'example.com', 'GET', Array.from({ length: 20 }, (_, i) => [`x-big-${i}`, 'v'.repeat(1000)] as const));
    raw.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, big.subarray(0, 16_000)));
    raw.write(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, big.subarray(16_000)));
    assert.ok(await raw.until((f) => f.some((x) => x.streamId === 1 && x.type === FRAME.HEADERS), 2_000), 'answered');
    assert.ok(fx.logs.some((l) => l.msg === 'request refused' && l.fields.status === 431), 'refused with 431');
    assert.equal(seenUnder(fx, '/hdr-early'), 0);
    raw.destroy();
  });

  await t.test('a PING flood from a client that reads the answers: GOAWAY ENHANCE_YOUR_CALM past http2MaxControlFrames', async () => {
    const raw = await RawH2.connect(fx.port);
    await settled(raw);
    const started = Date.now();
    let sent = 0;
    // Ten PINGs a millisecond, for as long as the connection lasts (2 s at most).
    while (!raw.closed && Date.now() - started < 2_000) {
      for (let i = 0; i < 10; i++) raw.write(ping(sent++));
      await sleep(1);
    }
    assert.ok(raw.closed, 'the connection closed');
    assert.equal(raw.goaway()?.code, ERROR.ENHANCE_YOUR_CALM);
    const pongs = raw.frames.filter((f) => f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0).length;
    // PINGs already read when the limit was crossed are still answered (nghttp2
    // sends acknowledgements ahead of a GOAWAY), and for the short linger after it.
    assert.ok(pongs < sent, `${pongs} of ${sent} PINGs answered`);
    const line = fx.logs.find((l) => l.msg === 'HTTP/2 client over a limit: connection closed' && l.fields.limit === 'http2MaxControlFrames');
    assert.ok(line !== undefined, 'logged with the limit');
    await stillServes(fx, '/after-ping');
  });

  await t.test('a SETTINGS flood from a client that does not read: the connection is closed', async () => {
    const raw = await RawH2.connect(fx.port);
    await settled(raw);
    raw.socket.pause();
    for (let i = 0; i < 20_000; i++) raw.write(settings([[0x3, 100]]));
    raw.socket.resume();
    assert.ok(await raw.waitClosed(3_000), 'the connection closed');
    await stillServes(fx, '/after-settings');
  });

  await t.test('http2MaxSessionMemoryMiB: answers released all at once into a connection that is not read; new streams refused', async (tt) => {
    const small = await startFixture(tt, { ...LIMITS, http2MaxConcurrentStreams: 100, http2MaxSessionMemoryMiB: 1, responseWriteTimeoutMs: 60_000 });
    // No flow-control window for any answer yet: their bodies wait in their streams.
    const raw = await RawH2.connect(small.port, { settings: [[0x4, 0]] });
    await settled(raw);
    const n = 60;
    for (let i = 0; i < n; i++) raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, requestHeaders(`/mem/${i}/big/1048576`)));
    await raw.until((f) => f.filter((x) => x.type === FRAME.HEADERS).length === n, 3_000);
    await sleep(200);
    // Then a window for every stream at once, to a client that stops reading:
    // node queues what all of them have for the socket in one go.
    raw.socket.pause();
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(1 << 20);
    const updates = [frame(FRAME.WINDOW_UPDATE, 0, 0, increment)];
    for (let i = 0; i < n; i++) updates.push(frame(FRAME.WINDOW_UPDATE, 0, 1 + 2 * i, increment));
    raw.write(Buffer.concat(updates));
    await sleep(300);
    for (let i = n; i < n + 20; i++) raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, requestHeaders(`/mem/late/${i}`)));
    await sleep(300);
    raw.socket.resume();
    assert.ok(await raw.until(() => [...raw.resets().values()].includes(ERROR.ENHANCE_YOUR_CALM), 5_000), 'a stream refused for memory');
    raw.destroy();
    await stillServes(small, '/after-mem');
  });

  await t.test('a client that half-closes with answers waiting for window it can no longer grant: cut, and the connection closed', async (tt) => {
    const patient = await startFixture(tt, { ...LIMITS, responseWriteTimeoutMs: 20_000 });
    const raw = await RawH2.connect(patient.port, { settings: [[0x4, 0]] });
    await settled(raw);
    for (let i = 0; i < 3; i++) raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, requestHeaders(`/fin/${i}/big/1048576`)));
    await raw.until((f) => f.filter((x) => x.type === FRAME.HEADERS).length === 3, 2_000);
    raw.socket.end();
    // Long before the response write timeout would have done it.
    assert.ok(await raw.waitClosed(3_000), 'the connection closed');
    assert.ok(patient.logs.some((l) => l.msg === 'client stream cut' && String(l.fields.reason).startsWith('client half-closed')));
  });

  await t.test('an HTTP/2 connection with no stream is sent away at the headers timeout, an idle one at the keep-alive timeout', async () => {
    const fresh = await RawH2.connect(fx.port);
    const started = Date.now();
    assert.ok(await fresh.waitClosed(3_000), 'closed');
    assert.equal(fresh.goaway()?.code, ERROR.NO_ERROR);
    assert.ok(Date.now() - started >= (LIMITS.headersTimeoutMs as number), 'not before the headers timeout');
    const used = await h2connect(fx.port);
    const closed = new Promise<void>((resolve) => used.once('close', () => resolve()));
    assert.equal((await h2request(used, '/idle-after')).status, 200);
    const answered = Date.now();
    await closed;
    assert.ok(Date.now() - answered >= (LIMITS.keepAliveTimeoutMs as number), 'not before the keep-alive timeout');
  });

  await t.test('a plain connection that never says which protocol it speaks is closed at the headers timeout', async () => {
    for (const sent of ['', 'PRI * HTTP/2.0\r\n']) {
      const client = await connectRaw(fx.port);
      if (sent !== '') client.socket.write(sent);
      const started = Date.now();
      await client.closed(3_000);
      assert.ok(Date.now() - started >= (LIMITS.headersTimeoutMs as number) - 50, `closed too early after ${JSON.stringify(sent)}`);
      assert.equal(client.text(), '');
    }
  });

  await t.test('per stream, as HTTP/1.1: a body that stalls gets 408, the connection goes on', async () => {
    const session = await h2connect(fx.port);
    const stream = session.request({ ':method': 'POST', ':path': '/stall', ':authority': 'example.com', 'content-length': '100' });
    stream.write('only ten b');
    const started = Date.now();
    const status = await new Promise<number>((resolve, reject) => {
      stream.once('response', (h) => resolve(Number(h[':status'])));
      stream.once('error', reject);
    });
    assert.equal(status, 408);
    // The body idle timeout, not the (longer) request timeout.
    assert.ok(Date.now() - started < (LIMITS.requestTimeoutMs as number), 'answered at the body idle timeout');
    assert.ok(fx.logs.some((l) => l.msg === 'request refused' && l.fields.reason === 'request body idle timeout'));
    stream.on('error', () => {});
    assert.equal((await h2request(session, '/after-stall')).status, 200);
    session.destroy();
  });

  await t.test('per stream: a body trickled past the request timeout gets 408', async () => {
    const session = await h2connect(fx.port);
    const stream = session.request({ ':method': 'POST', ':path': '/trickle', ':authority': 'example.com' });
    stream.on('error', () => {});
    const started = Date.now();
    const timer = setInterval(() => stream.write('x'), 100);
    const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    clearInterval(timer);
    assert.equal(status, 408);
    assert.ok(Date.now() - started >= (LIMITS.requestTimeoutMs as number), 'not before the request timeout');
    session.destroy();
  });

  await t.test('per stream: an answer the client gives no window for is reset at the response write timeout', async () => {
    // The client grants the answer no flow-control window at all.
    const session = http2.connect(`http://127.0.0.1:${fx.port}`, { settings: { initialWindowSize: 0 } });
    session.on('error', () => {});
    const stream = session.request({ ':path': '/big/1000000', ':authority': 'example.com' });
    stream.on('error', () => {});
    const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    assert.equal(status, 200);
    await new Promise<void>((resolve) => stream.once('close', () => resolve()));
    assert.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL);
    assert.ok(fx.logs.some((l) => l.msg === 'client stream cut' && l.fields.reason === 'response write timeout'));
    session.destroy();
  });

  await t.test('headers after all that: one more header block of the maximum size is served', async () => {
    // The HPACK state and the process are fine after the floods.
    const session = await h2connect(fx.port);
    const reply = await h2request(session, '/final', { headers: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`x-fine-${i}`, 'v'.repeat(1000)])) });
    assert.equal(reply.status, 200);
    session.destroy();
  });
});
