// The client connection's own HTTP/1.1 duties, on raw sockets against a
// real data plane and backend: answers in request order when requests are
// pipelined, keep-alive by version and Connection, response framing the
// client can rely on, and the rest of a request read past an early answer.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { backend, cluster, freePort, match, rawExchange, route, simpleIR, startBackend, startDataPlane } from './helpers.ts';

/**
 * The complete responses at the start of a raw byte stream, each with its
 * head and body, framed by Content-Length or chunked (or by the end of the
 * stream). A response still arriving is not counted.
 */
function responses(text: string): { status: number; head: string; body: string }[] {
  const out: { status: number; head: string; body: string }[] = [];
  let rest = text;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const head = rest.slice(0, end);
    rest = rest.slice(end + 4);
    const status = Number(head.slice(9, 12));
    if (status === 100) continue;
    const length = /\r\ncontent-length: (\d+)/i.exec(head);
    let body = '';
    if (length !== null) {
      const n = Number(length[1]);
      if (rest.length < n) break;
      body = rest.slice(0, n);
      rest = rest.slice(n);
    } else if (/\r\ntransfer-encoding: chunked/i.test(head)) {
      let complete = false;
      for (;;) {
        const line = rest.indexOf('\r\n');
        if (line === -1) break;
        const size = parseInt(rest.slice(0, line), 16);
        if (rest.length < line + 2 + size + 2) break;
        rest = rest.slice(line + 2);
        if (size === 0) {
          rest = rest.slice(2);
          complete = true;
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
      if (!complete) break;
    } else {
      body = rest;
      rest = '';
    }
    out.push({ status, head, body });
  }
  return out;
}

/**
 * Writes `pieces` one by one (a pause between them, so they tend to arrive
 * as separate reads) and resolves with what came back once `count`
 * responses are complete.
 */
function exchangeInPieces(port: number, pieces: Buffer[], count: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${responses(text).length} of ${count} responses after 5 s: ${JSON.stringify(text.slice(0, 300))}`));
    }, 5_000);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (responses(text).length === count) {
        clearTimeout(timer);
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('error', reject);
    void (async () => {
      for (const piece of pieces) {
        socket.write(piece);
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
  });
}

/** Sends `raw` and ends our side at once; resolves with all that came back when the server closes. */
function sendAndHalfClose(port: number, raw: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => (received += d));
    socket.on('close', () => resolve(received));
    socket.on('error', () => {});
    socket.end(raw);
  });
}

test('client connections', async (t) => {
  const a = await startBackend(t, 'a');
  const port = await freePort();
  const dp = await startDataPlane(t, { limits: { keepAliveTimeoutMs: 300, headersTimeoutMs: 500 } });
  await dp.apply(
    simpleIR(port, [route('known', match('/known'), [backend('a')]), route('moved', match('/moved'), [backend('a')], {
      filters: [{ type: 'RequestRedirect', statusCode: 301, hostname: 'elsewhere.example' }],
    })], [cluster('a', a)]),
  );
  const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: example.com\r\n${extra}\r\n`;

  await t.test('pipelined requests are answered in order, on one connection', async () => {
    // The first is slow at the backend, so the later ones wait their turn.
    const reply = await rawExchange(port, get('/known/1', 'X-Test-Delay-Ms: 150\r\n') + get('/known/2') + get('/unknown') + get('/known/3'), 1_500);
    const answers = responses(reply.text);
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 404, 200]);
    assert.deepEqual(answers.filter((r) => r.status === 200).map((r) => JSON.parse(r.body).path), ['/known/1', '/known/2', '/known/3']);
  });

  await t.test('a client that pipelines without end gets a bounded number answered, then a close', async () => {
    const burst = get('/known/first', 'X-Test-Delay-Ms: 100\r\n') + Array.from({ length: 99 }, (_, i) => get(`/known/${i}`)).join('');
    const reply = await rawExchange(port, burst, 2_000);
    const answers = responses(reply.text);
    assert.ok(answers.length > 1 && answers.length < 100, `${answers.length} answered`);
    assert.ok(answers.every((r) => r.status === 200));
    assert.equal(reply.closed, true);
  });

  await t.test('a client that half-closes after its request still gets the answer', async () => {
    const text = await sendAndHalfClose(port, get('/known/half', 'X-Test-Delay-Ms: 50\r\n'));
    assert.equal(responses(text)[0]?.status, 200);
    assert.equal(JSON.parse(responses(text)[0].body).path, '/known/half');
  });

  await t.test('a request answered before its body arrived: the body is read past, and the next request is served', async () => {
    const body = 'x'.repeat(20_000);
    const reply = await rawExchange(
      port,
      `POST /unknown HTTP/1.1\r\nHost: example.com\r\nContent-Length: ${body.length}\r\n\r\n${body}${get('/known/after')}`,
      1_000,
    );
    const answers = responses(reply.text);
    assert.deepEqual(answers.map((r) => r.status), [404, 200]);
    assert.equal(JSON.parse(answers[1].body).path, '/known/after');
  });

  await t.test('HTTP/1.0: keep-alive only when asked, and said so', async () => {
    const asked = await rawExchange(port, 'GET /known HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n', 200);
    assert.match(asked.text, /\r\nconnection: keep-alive\r\n/i);
    assert.equal(asked.closed, false);
    const plain = await rawExchange(port, 'GET /known HTTP/1.0\r\nHost: example.com\r\n\r\n', 1_000);
    assert.match(plain.text, /\r\nconnection: close\r\n/i);
    assert.equal(plain.closed, true);
  });

  await t.test('Connection: close from the client: answered, then closed', async () => {
    const reply = await rawExchange(port, get('/known', 'Connection: close\r\n') + get('/known/never'), 1_000);
    const answers = responses(reply.text);
    assert.deepEqual(answers.map((r) => r.status), [200]);
    assert.match(answers[0].head, /\r\nconnection: close/i);
    assert.equal(reply.closed, true);
  });

  await t.test('local answers carry Date and Content-Length; redirects too', async () => {
    const reply = await rawExchange(port, get('/unknown') + get('/moved'), 300);
    const [missing, moved] = responses(reply.text);
    assert.equal(missing.status, 404);
    assert.match(missing.head, /\r\ndate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT/i);
    assert.match(missing.head, /\r\ncontent-length: \d+/i);
    assert.equal(moved.status, 301);
    assert.match(moved.head, /\r\nlocation: http:\/\/elsewhere\.example(:\d+)?\/moved/i);
  });

  await t.test('an Upgrade to anything but websocket is served as a plain request, and the connection goes on', async () => {
    const reply = await rawExchange(port, get('/known/h2c', 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n') + get('/known/next'), 500);
    const answers = responses(reply.text);
    assert.deepEqual(answers.map((r) => r.status), [200, 200]);
    const first = JSON.parse(answers[0].body) as { headers: Record<string, string> };
    assert.equal(first.headers.upgrade, undefined);
    assert.equal(JSON.parse(answers[1].body).path, '/known/next');
  });

  await t.test('a WebSocket handshake the backend answers as a plain request: relayed, then the connection closes', async () => {
    // What follows a handshake is the WebSocket's, not HTTP: it is not parsed.
    const reply = await rawExchange(port, get('/known/ws', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n') + get('/known/next'), 3_000);
    const answers = responses(reply.text);
    assert.deepEqual(answers.map((r) => r.status), [200]);
    assert.match(answers[0].head, /\r\nconnection: close/i);
    const first = JSON.parse(answers[0].body) as { headers: Record<string, string> };
    assert.equal(first.headers.upgrade, 'websocket');
    assert.equal(reply.closed, true);
  });

  await t.test('an expectation other than 100-continue: 417', async () => {
    const reply = await rawExchange(port, get('/known', 'Expect: something-else\r\n'), 1_000);
    assert.equal(responses(reply.text)[0]?.status, 417);
    assert.equal(reply.closed, true);
  });

  await t.test('a connection that never sends a request is closed after the headers timeout', async () => {
    const started = Date.now();
    const reply = await rawExchange(port, '', 3_000);
    assert.equal(reply.closed, true);
    assert.equal(reply.text, '');
    assert.ok(Date.now() - started >= 450, `closed after ${Date.now() - started} ms`);
  });

  await t.test('any split of a pipelined stream of requests gets the same answers, in order', async () => {
    // A request: a GET, or a POST whose body (by length or chunked) the backend echoes.
    const request = fc.oneof(
      fc.constant({ kind: 'get' as const }),
      fc.record({
        kind: fc.constant('post' as const),
        body: fc.uint8Array({ maxLength: 3_000 }),
        chunks: fc.option(fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 5 }), { nil: null }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 12 }), async (requests, cuts) => {
        const parts: Buffer[] = [];
        requests.forEach((r, i) => {
          if (r.kind === 'get') {
            parts.push(Buffer.from(get(`/known/${i}`)));
            return;
          }
          const head = `POST /known/${i} HTTP/1.1\r\nHost: example.com\r\nX-Test-Echo-Body: 1\r\n`;
          const body = Buffer.from(r.body);
          if (r.chunks === null) {
            parts.push(Buffer.from(`${head}Content-Length: ${body.length}\r\n\r\n`), body);
            return;
          }
          parts.push(Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n`));
          let at = 0;
          for (let c = 0; at < body.length; c = (c + 1) % r.chunks.length) {
            const piece = body.subarray(at, at + r.chunks[c]);
            parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
            at += piece.length;
          }
          parts.push(Buffer.from('0\r\n\r\n'));
        });
        const stream = Buffer.concat(parts);
        const pieces: Buffer[] = [];
        let at = 0;
        for (const cut of cuts) {
          if (at >= stream.length) break;
          pieces.push(stream.subarray(at, at + cut));
          at += cut;
        }
        if (at < stream.length) pieces.push(stream.subarray(at));
        const answers = responses(await exchangeInPieces(port, pieces, requests.length));
        assert.deepEqual(answers.map((r) => r.status), requests.map(() => 200));
        requests.forEach((r, i) => {
          if (r.kind === 'get') assert.equal(JSON.parse(answers[i].body).path, `/known/${i}`);
          else assert.equal(answers[i].body, Buffer.from(r.body).toString('latin1'));
        });
      }),
      { numRuns: 40 },
    );
  });

  await t.test('a client that closes its side mid-head is cut without an answer', async () => {
    const text = await sendAndHalfClose(port, 'GET /known HTTP/1.1\r\nHost: exa');
    assert.equal(text, '');
    assert.equal(a.seen.some((r) => r.path === '/known' && r.headers.host === 'exa'), false);
  });
});
