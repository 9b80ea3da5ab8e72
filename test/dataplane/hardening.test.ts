// Hostile clients on raw sockets: ambiguous framing (request smuggling),
// header size and count limits, slowloris and idle timeouts, malformed
// requests. Each case must end in an answer or a closed socket, never reach
// a backend, and leave the data plane serving.

import assert from 'node:assert/strict';
import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { isRejection, readRequestHead } from '../../src/dataplane/http/framing.ts';
import { backend, cluster, freePort, match, rawExchange, request, route, simpleIR, startBackend, startDataPlane, statusOf } from './helpers.ts';

test('hardening', async (t) => {
  const a = await startBackend(t, 'a');
  let reached = 0;
  a.server.on('request', () => reached++);
  const port = await freePort();
  const logs: string[] = [];
  const dp = await startDataPlane(t, {
    log: (level, msg) => logs.push(`${level} ${msg}`),
    limits: { maxHeaderBytes: 4096, maxHeaderCount: 20, headersTimeoutMs: 500, requestTimeoutMs: 1_000, keepAliveTimeoutMs: 500 },
  });
  await dp.apply(simpleIR(port, [route('all', match('/'), [backend('a')])], [cluster('a', a)]));

  /** Sends `raw`, expects `status` and a closed connection, and no backend request. */
  const refused = async (raw: string, status: number): Promise<void> => {
    const before = reached;
    const reply = await rawExchange(port, raw);
    assert.equal(statusOf(reply.text), status, `got: ${JSON.stringify(reply.text.slice(0, 80))}`);
    assert.ok(reply.closed, 'connection closed');
    // Only one response: nothing smuggled behind it was answered.
    assert.equal(reply.text.match(/HTTP\/1\.1 \d{3}/g)?.length, 1, reply.text);
    assert.equal(reached, before, 'the request reached a backend');
  };

  const head = 'POST / HTTP/1.1\r\nHost: example.com\r\n';

  await t.test('Content-Length with Transfer-Encoding (CL.TE smuggling): 400', () =>
    refused(`${head}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n`, 400));

  await t.test('Transfer-Encoding with Content-Length (TE.CL order): 400', () =>
    refused(`${head}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`, 400));

  await t.test('duplicate equal Content-Length: 400', () =>
    refused(`${head}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`, 400));

  await t.test('conflicting Content-Length: 400', () =>
    refused(`${head}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400));

  await t.test('Content-Length as a list: 400', () => refused(`${head}Content-Length: 5, 5\r\n\r\nhello`, 400));

  await t.test('final transfer coding not chunked: 400', async () => {
    await refused(`${head}Transfer-Encoding: gzip\r\n\r\nhello`, 400);
    // node's parser only objects once body bytes arrive, after the request
    // has been handed over: the head alone must already be refused.
    await refused(`${head}Transfer-Encoding: gzip\r\n\r\n`, 400);
  });

  await t.test('chunked not last: 400', () => refused(`${head}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, 400));

  await t.test('chunked twice: 400', () => {
    return refused(`${head}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400);
  });

  await t.test('an unknown coding before chunked: 501', () =>
    refused(`${head}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501));

  await t.test('Transfer-Encoding in HTTP/1.0: 400', () =>
    refused('POST / HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400));

  await t.test('whitespace before the colon of Transfer-Encoding: 400', () =>
    refused(`${head}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, 400));

  await t.test('two Host headers: 400', () =>
    refused('GET / HTTP/1.1\r\nHost: example.com\r\nHost: evil.example\r\n\r\n', 400));

  await t.test('no Host in HTTP/1.1: 400', () => refused('GET / HTTP/1.1\r\n\r\n', 400));

  await t.test('an invalid Host: 400', () => refused('GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n', 400));

  await t.test('malformed request line: 400', () => refused('GARBAGE\r\n\r\n', 400));

  await t.test('obs-fold header continuation: 400', () =>
    refused('GET / HTTP/1.1\r\nHost: example.com\r\nX-A: a\r\n b\r\n\r\n', 400));

  await t.test('more header fields than allowed: 431', async () => {
    let raw = 'GET / HTTP/1.1\r\nHost: example.com\r\n';
    for (let i = 0; i < 20; i++) raw += `X-H${i}: v\r\n`;
    await refused(`${raw}\r\n`, 431);
    // Exactly at the limit is fine.
    let ok = 'GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n';
    for (let i = 0; i < 18; i++) ok += `X-H${i}: v\r\n`;
    assert.equal(statusOf((await rawExchange(port, `${ok}\r\n`)).text), 200);
  });

  await t.test('more header bytes than allowed: 431', () =>
    refused(`GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: ${'x'.repeat(5000)}\r\n\r\n`, 431));

  await t.test('slowloris: a head never finished gets 408 and a close', async () => {
    const started = Date.now();
    const reply = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: ', 4_000);
    assert.equal(statusOf(reply.text), 408);
    assert.ok(reply.closed);
    assert.ok(Date.now() - started < 2_500, `took ${Date.now() - started} ms`);
  });

  await t.test('a body never finished gets 408 at the request timeout', async () => {
    const started = Date.now();
    const reply = await rawExchange(port, `${head}Content-Length: 100\r\nX-Test-Delay-Ms: 5000\r\n\r\npartial`, 5_000);
    assert.equal(statusOf(reply.text), 408);
    assert.ok(reply.closed, 'connection closed');
    assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms`);
  });

  await t.test('a malformed chunked body: 400 and a close', async () => {
    const reply = await rawExchange(port, `${head}Transfer-Encoding: chunked\r\n\r\nzz\r\n`);
    assert.equal(statusOf(reply.text), 400);
    assert.ok(reply.closed);
  });

  await t.test('an idle keep-alive connection is closed after keepAliveTimeout', async () => {
    const socket = net.connect(port, '127.0.0.1');
    const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
    socket.on('error', () => {});
    let text = '';
    const answered = new Promise<number>((resolve) =>
      socket.on('data', (d: Buffer) => {
        text += d;
        if (text.includes('"backend"')) resolve(Date.now());
      }),
    );
    socket.write('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n');
    const answeredAt = await answered;
    const idle = (await closed) - answeredAt;
    assert.ok(idle >= 400 && idle < 2_500, `closed after ${idle} ms idle`);
  });

  await t.test('the data plane still serves, and logged what it refused', async () => {
    assert.equal((await request(port, '/')).status, 200);
    assert.ok(logs.some((l) => l.includes('request refused')));
    assert.ok(logs.some((l) => l.includes('malformed request')));
  });
});

// What node lets through, or rejects only after emitting the request, is
// refused by the head check itself; checked without a socket so that
// node's own checks cannot hide a gap in ours.
test('readRequestHead refuses what node lets through', () => {
  const head = (rawHeaders: string[], version = '1.1') => {
    const [major, minor] = version.split('.').map(Number);
    const result = readRequestHead({ rawHeaders, httpVersionMajor: major, httpVersionMinor: minor } as IncomingMessage, 4);
    return isRejection(result) ? result.status : result;
  };
  assert.equal(head(['Host', 'a', 'Transfer-Encoding', 'gzip']), 400);
  assert.equal(head(['Host', 'a', 'Transfer-Encoding', 'gzip, chunked']), 501);
  assert.equal(head(['Host', 'a', 'Transfer-Encoding', 'gzip', 'Transfer-Encoding', 'chunked']), 501);
  assert.equal(head(['Host', 'a', 'Transfer-Encoding', 'chunked'], '1.0'), 400);
  assert.equal(head(['Host', 'a', 'host', 'b']), 400);
  assert.equal(head(['Host', 'a', 'A', '1', 'B', '2', 'C', '3', 'D', '4']), 431);
  const ok = head(['Host', 'a', 'Transfer-Encoding', 'Chunked', 'X-A', '1', 'x-a', '2']);
  assert.ok(typeof ok === 'object');
  assert.equal(ok.hasBody, true);
  assert.equal(ok.host, 'a');
  assert.deepEqual(ok.headers.get('x-a'), ['1', '2']);
  const noBody = head(['Host', 'a', 'Content-Length', '0']);
  assert.ok(typeof noBody === 'object' && noBody.hasBody === false);
});
