// The upstream keep-alive timeout is the pools' own 4 s, shorter than the
// usual backend's (node's and Apache's 5 s), so that the gateway, not the
// backend, closes an idle connection and no request meets a connection
// the backend is closing. It is not the client keep-alive timeout
// (--keep-alive-timeout, 60 s), which once leaked into the pools through
// the data plane's limits.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { cluster, freePort, request, route, match, backend, simpleIR, startDataPlane } from '../dataplane/helpers.ts';

test('an idle backend connection is closed by the gateway after 4 s, whatever the client keep-alive timeout', { timeout: 30_000 }, async (t) => {
  // A backend that never announces a keep-alive timeout of its own.
  const closedAt: number[] = [];
  const server = net.createServer((socket) => {
    socket.on('data', () => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    socket.on('error', () => {});
    socket.on('close', () => closedAt.push(Date.now()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const dp = await startDataPlane(t);
  const port = await freePort();
  await dp.apply(simpleIR(port, [route('r', match('/'), [backend('b')])], [cluster('b', server.address() as net.AddressInfo)]));
  const reply = await request(port, '/');
  assert.equal(reply.status, 200);
  const answeredAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 6_000));
  assert.equal(closedAt.length, 1, 'the idle backend connection was closed');
  const idle = closedAt[0] - answeredAt;
  assert.ok(idle >= 3_900 && idle < 5_000, `closed after ${idle} ms idle`);
});
