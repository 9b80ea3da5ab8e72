// The client connection's own HTTP/1.1 duties, on raw sockets against a
// real data plane and backend: answers in request order when requests are
// pipelined, keep-alive by version and Connection, response framing the
// client can rely on, and the rest of a request read past an early answer.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { backend, cluster, freePort, match, rawExchange, route, simpleIR, startBackend, startDataPlane } from './helpers.ts';

/** The responses in a raw byte stream, each with its head and body, framed by Content-Length or chunked. */
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
      body = rest.slice(0, Number(length[1]));
      rest = rest.slice(Number(length[1]));
    } else if (/\r\ntransfer-encoding: chunked/i.test(head)) {
      for (;;) {
        const line = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, line), 16);
        rest = rest.slice(line + 2);
        if (size === 0) {
          rest = rest.slice(2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    } else {
      body = rest;
      rest = '';
    }
    out.push({ status, head, body });
  }
  return out;
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

  await t.test('an Upgrade request is served as a plain one, and the connection goes on', async () => {
    const reply = await rawExchange(port, get('/known/ws', 'Connection: Upgrade\r\nUpgrade: websocket\r\n') + get('/known/next'), 500);
    const answers = responses(reply.text);
    assert.deepEqual(answers.map((r) => r.status), [200, 200]);
    const first = JSON.parse(answers[0].body) as { headers: Record<string, string> };
    assert.equal(first.headers.upgrade, undefined);
    assert.equal(JSON.parse(answers[1].body).path, '/known/next');
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

  await t.test('a client that closes its side mid-head is cut without an answer', async () => {
    const text = await sendAndHalfClose(port, 'GET /known HTTP/1.1\r\nHost: exa');
    assert.equal(text, '');
    assert.equal(a.seen.some((r) => r.path === '/known' && r.headers.host === 'exa'), false);
  });
});
