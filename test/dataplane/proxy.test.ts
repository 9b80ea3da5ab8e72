// Forwarding over real sockets: Host and X-Forwarded-*, hop-by-hop headers
// removed both ways, bodies streamed (not buffered) in both directions.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { test } from 'node:test';
import {
  backend,
  cluster,
  freePort,
  match,
  rawExchange,
  request,
  route,
  simpleIR,
  sleep,
  startBackend,
  startDataPlane,
  statusOf,
  type EchoReply,
} from './helpers.ts';

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms).unref()),
  ]);
}

test('proxy', async (t) => {
  const a = await startBackend(t, 'a');

  // A backend for the streaming checks: it reports the first request chunk
  // as soon as it arrives, and holds its response body until released.
  const firstRequestChunk = deferred();
  const releaseResponse = deferred();
  const streamer = http.createServer((req, res) => {
    if (req.url === '/stream/request') {
      let total = 0;
      req.on('data', (chunk: Buffer) => {
        total += chunk.length;
        firstRequestChunk.resolve();
      });
      req.on('end', () => res.end(String(total)));
    } else if (req.url === '/stream/flood') {
      // Writes as fast as the proxy accepts, for as long as the client stays.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk)) flood.written += chunk.length;
        if (!res.destroyed) flood.written += chunk.length;
      };
      res.on('drain', pump);
      res.on('close', () => flood.closed.resolve(res.writableFinished));
      pump();
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part1;');
      void releaseResponse.promise.then(() => res.end('part2'));
    }
  });
  const flood = { written: 0, closed: deferred<boolean>() };
  await new Promise<void>((resolve) => streamer.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    streamer.closeAllConnections();
    return new Promise<void>((resolve) => streamer.close(() => resolve()));
  });

  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(
    simpleIR(
      port,
      [route('stream', match('/stream'), [backend('streamer')]), route('all', match('/'), [backend('a')])],
      [cluster('a', a), cluster('streamer', { port: (streamer.address() as AddressInfo).port })],
    ),
  );

  await t.test('Host is kept; X-Forwarded-For appended, -Proto and -Host set', async () => {
    const echo = (
      await request(port, '/xff', { host: 'Shop.Example.com:8080', headers: { 'x-forwarded-for': '203.0.113.9' } })
    ).json();
    assert.equal(echo.headers.host, 'Shop.Example.com:8080');
    assert.equal(echo.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(echo.headers['x-forwarded-proto'], 'http');
    assert.equal(echo.headers['x-forwarded-host'], 'Shop.Example.com:8080');
    const fresh = (await request(port, '/xff')).json();
    assert.equal(fresh.headers['x-forwarded-for'], '127.0.0.1');
  });

  await t.test('hop-by-hop request headers are not forwarded', async () => {
    // Raw, since node's client refuses to send Trailer without a chunked body.
    const raw = await rawExchange(
      port,
      'GET /hop HTTP/1.1\r\nHost: example.com\r\n' +
        'Connection: X-Private, Keep-Alive, close\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n' +
        'Proxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nUpgrade: websocket\r\n' +
        'Trailer: x-checksum\r\nX-End-To-End: kept\r\n\r\n',
    );
    assert.equal(statusOf(raw.text), 200);
    const echo = JSON.parse(raw.text.slice(raw.text.indexOf('\r\n\r\n') + 4)) as EchoReply;
    const names = echo.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const name of ['x-private', 'keep-alive', 'proxy-connection', 'upgrade', 'trailer']) {
      assert.ok(!names.includes(name), `${name} was forwarded`);
    }
    // The upstream connection's own Connection header is undici's, not the client's.
    assert.ok(!String(echo.headers.connection ?? '').toLowerCase().includes('x-private'));
    assert.equal(echo.headers.te, 'trailers');
    assert.equal(echo.headers['x-end-to-end'], 'kept');
  });

  await t.test('hop-by-hop response headers are not returned', async () => {
    const reply = await request(port, '/hop-response', {
      headers: {
        'x-test-response-headers': JSON.stringify({
          connection: 'X-Resp-Private',
          'x-resp-private': '1',
          'proxy-connection': 'keep-alive',
          upgrade: 'foo',
          'x-resp-public': '1',
        }),
      },
    });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-resp-private'], undefined);
    assert.equal(reply.headers['proxy-connection'], undefined);
    assert.equal(reply.headers.upgrade, undefined);
    assert.equal(reply.headers['x-resp-public'], '1');
  });

  await t.test('a 5 MiB body goes up and comes back intact', async () => {
    const body = randomBytes(5 * 1024 * 1024);
    const reply = await request(port, '/echo', {
      method: 'POST',
      body,
      headers: { 'x-test-echo-body': '1', 'content-type': 'application/octet-stream' },
    });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.length, body.length);
    assert.equal(createHash('sha256').update(reply.body).digest('hex'), createHash('sha256').update(body).digest('hex'));
  });

  await t.test('a chunked request body reaches the backend before the client finishes it', async () => {
    const reply = new Promise<string>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: '/stream/request', method: 'POST', headers: { host: 'example.com' }, agent: false },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c));
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.write('first-chunk;');
      within(firstRequestChunk.promise, 3_000, 'the first chunk upstream').then(
        () => req.end('second-chunk'),
        (err: Error) => {
          req.destroy();
          reject(err);
        },
      );
    });
    assert.equal(await reply, String('first-chunk;second-chunk'.length));
  });

  await t.test('the response body reaches the client before the backend finishes it', async () => {
    const firstResponseChunk = deferred<string>();
    const done = new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/stream/response', headers: { host: 'example.com' }, agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c;
          firstResponseChunk.resolve(text);
        });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(await within(firstResponseChunk.promise, 3_000, 'the first response chunk'), 'part1;');
    releaseResponse.resolve();
    assert.equal(await done, 'part1;part2');
  });

  await t.test('a client that stops reading stops the upstream (backpressure), and its disconnect aborts it', async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /stream/flood HTTP/1.1\r\nHost: example.com\r\n\r\n');
    const firstBytes = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    await within(firstBytes, 3_000, 'the first bytes');
    socket.pause();
    await sleep(500);
    const writtenWhilePaused = flood.written;
    await sleep(300);
    // Socket buffers on both hops hold a few MiB at most; without
    // backpressure the backend would write hundreds of MiB in that time.
    assert.ok(writtenWhilePaused < 64 * 1024 * 1024, `backend wrote ${writtenWhilePaused} bytes`);
    assert.ok(flood.written - writtenWhilePaused < 4 * 1024 * 1024, 'backend kept writing while the client was paused');
    socket.destroy();
    const finished = await within(flood.closed.promise, 3_000, 'the upstream response to be aborted');
    assert.equal(finished, false);
    assert.equal((await request(port, '/after-abort')).status, 200);
  });

  await t.test('a client that disconnects mid-upload aborts the upstream request', async () => {
    const arrived = new Promise<http.IncomingMessage>((resolve) => a.server.once('request', resolve));
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1000000\r\n\r\n' + 'x'.repeat(1000));
    const upstream = await within(arrived, 3_000, 'the upload upstream');
    const aborted = new Promise<boolean>((resolve) => upstream.once('close', () => resolve(!upstream.complete)));
    socket.destroy();
    assert.equal(await within(aborted, 3_000, 'the upstream request to end'), true);
    assert.equal((await request(port, '/after-upload-abort')).status, 200);
  });

  await t.test('HTTP/1.0 without Host is forwarded with the upstream as Host', async () => {
    const reply = await rawExchange(port, 'GET /http10 HTTP/1.0\r\n\r\n');
    assert.equal(statusOf(reply.text), 200);
    const echo = JSON.parse(reply.text.slice(reply.text.indexOf('\r\n\r\n') + 4)) as EchoReply;
    assert.equal(echo.headers.host, `127.0.0.1:${a.port}`);
    assert.equal(echo.headers['x-forwarded-host'], undefined);
  });

  await t.test('HEAD is forwarded and answered without a body', async () => {
    const reply = await request(port, '/head', { method: 'HEAD' });
    assert.equal(reply.status, 200);
    assert.ok(Number(reply.headers['content-length']) > 0);
    assert.equal(reply.body.length, 0);
    assert.equal(a.seen.at(-1)?.method, 'HEAD');
  });

  await t.test('Expect: 100-continue is answered by the proxy and not forwarded', async () => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('POST /expect HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n');
    for (let i = 0; i < 100 && !text.includes('100 Continue'); i++) await sleep(10);
    assert.match(text, /^HTTP\/1\.1 100 Continue/);
    socket.write('hello');
    await within(closed, 3_000, 'the response');
    const echo = JSON.parse(text.slice(text.lastIndexOf('\r\n\r\n') + 4)) as EchoReply;
    assert.equal(echo.bodyBytes, 5);
    assert.equal(echo.headers.expect, undefined);
  });

  await t.test('upstream connections are kept alive and reused', async () => {
    const sockets = new Set<string>();
    const onConnection = (s: import('node:net').Socket) => sockets.add(`${s.remotePort}`);
    a.server.on('connection', onConnection);
    for (let i = 0; i < 10; i++) assert.equal((await request(port, '/reuse')).status, 200);
    a.server.off('connection', onConnection);
    assert.ok(sockets.size <= 1, `opened ${sockets.size} upstream connections for 10 sequential requests`);
  });
});
