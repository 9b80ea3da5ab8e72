// How the upstream client reads responses a raw backend frames in every
// way HTTP/1.1 allows (and some it does not): Content-Length, chunked,
// close-delimited, interim 1xx, a body longer than its Content-Length, and
// bytes that are not HTTP at all.

import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { LeanPool } from '../../src/dataplane/upstream/lean.ts';
import { backend, cluster, freePort, match, rawExchange, request, route, simpleIR, startDataPlane } from './helpers.ts';

/** What the raw backend answers per path; `close` ends the connection after it. */
const ANSWERS: Record<string, { raw: string; close?: boolean }> = {
  '/cl': { raw: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello' },
  '/chunked': { raw: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n' },
  '/eof': { raw: 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited', close: true },
  '/interim': { raw: 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' },
  '/liar': { raw: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES' },
  '/garbage': { raw: 'NOT HTTP AT ALL\r\n\r\n' },
};

test('upstream response framing', async (t) => {
  const connections = { opened: 0 };
  const sockets = new Set<net.Socket>();
  const raw = net.createServer((socket) => {
    connections.opened++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) !== -1) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const path = head.split(' ')[1] ?? '';
        const answer = ANSWERS[path] ?? { raw: 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n' };
        if (answer.close) socket.end(answer.raw);
        else socket.write(answer.raw);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => raw.close(() => resolve()));
  });
  const rawPort = (raw.address() as AddressInfo).port;

  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(simpleIR(port, [route('all', match('/'), [backend('raw')])], [cluster('raw', { port: rawPort })]));

  await t.test('Content-Length body', async () => {
    const reply = await request(port, '/cl');
    assert.equal(reply.status, 200);
    assert.equal(reply.text, 'hello');
  });

  await t.test('chunked body, de-chunked and re-framed for the client', async () => {
    const reply = await request(port, '/chunked');
    assert.equal(reply.status, 200);
    assert.equal(reply.text, 'hello world');
  });

  await t.test('a body of unknown length to an HTTP/1.0 client: delimited by closing the connection', async () => {
    const reply = await rawExchange(port, 'GET /chunked HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n');
    assert.equal(reply.closed, true);
    const [head, body] = reply.text.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(head, /transfer-encoding|content-length/i);
    assert.match(head, /\r\nconnection: close/i);
    assert.equal(body, 'hello world');
  });

  await t.test('close-delimited body, and the next request gets a new connection', async () => {
    const reply = await request(port, '/eof');
    assert.equal(reply.status, 200);
    assert.equal(reply.text, 'close-delimited');
    assert.equal((await request(port, '/cl')).text, 'hello');
  });

  await t.test('an interim 103 is not relayed; the final answer is', async () => {
    const reply = await request(port, '/interim');
    assert.equal(reply.status, 200);
    assert.equal(reply.text, 'ok');
    assert.equal(reply.headers['link'], undefined);
  });

  await t.test('bytes past Content-Length are not taken for the next response', async () => {
    const reply = await request(port, '/liar');
    assert.equal(reply.status, 200);
    assert.equal(reply.text, 'ok');
    for (let i = 0; i < 3; i++) {
      const next = await request(port, '/cl');
      assert.equal(next.status, 200);
      assert.equal(next.text, 'hello');
    }
  });

  await t.test('a response that is not HTTP: 502', async () => {
    assert.equal((await request(port, '/garbage')).status, 502);
    assert.equal((await request(port, '/cl')).text, 'hello');
  });

  await t.test('a handler that throws ends its request with an error, not the process', async () => {
    const pool = new LeanPool(`http://127.0.0.1:${rawPort}`, { keepAliveTimeout: 1_000, connectTimeout: 1_000 });
    const outcome = await new Promise<string>((resolve) => {
      pool.dispatch(
        { origin: `http://127.0.0.1:${rawPort}`, path: '/cl', method: 'GET', headers: new Map([['host', 'example.com']]) },
        {
          onResponseStart: () => {
            throw new Error('handler bug');
          },
          onResponseEnd: () => resolve('end'),
          onResponseError: (_c, err) => resolve(`error: ${err.message}`),
        },
      );
    });
    assert.equal(outcome, 'error: handler bug');
    await pool.close();
  });

  await t.test('an idle upstream connection is closed after the pool keep-alive, a used one is kept', async () => {
    // A backend of its own, so no other test's connections are counted.
    let opened = 0;
    let closedAt = 0;
    const own = net.createServer((socket) => {
      opened++;
      socket.on('data', () => socket.write(ANSWERS['/cl'].raw));
      socket.on('close', () => (closedAt = Date.now()));
    });
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(own.address() as AddressInfo).port}`;
    const pool = new LeanPool(origin, { keepAliveTimeout: 300, connectTimeout: 1_000 });
    t.after(() => {
      void pool.destroy();
      own.close();
    });
    const get = (): Promise<number> =>
      new Promise((resolve, reject) => {
        pool.dispatch(
          { origin, path: '/cl', method: 'GET', headers: new Map([['host', 'example.com']]) },
          { onResponseEnd: () => resolve(Date.now()), onResponseError: (_c, err) => reject(err) },
        );
      });
    await get();
    await new Promise((r) => setTimeout(r, 150));
    const lastUsed = await get();
    assert.equal(opened, 1, 'used again within the keep-alive: the same connection');
    for (let i = 0; i < 100 && closedAt === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const idleFor = closedAt - lastUsed;
    assert.ok(idleFor >= 250 && idleFor < 1_000, `closed after ${idleFor} ms idle`);
    await get();
    assert.equal(opened, 2, 'the next request opens another');
  });

  await t.test('sequential requests share one upstream connection', async () => {
    const before = connections.opened;
    for (let i = 0; i < 5; i++) assert.equal((await request(port, '/cl')).status, 200);
    assert.ok(connections.opened - before <= 1, `opened ${connections.opened - before} connections for 5 requests`);
  });
});
