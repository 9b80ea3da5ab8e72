// Active health checks against targets that misbehave: one that accepts
// and never answers, one that sends response headers without end, one
// that answers with a body without end. Each check must fail within its
// timeout, read a bounded amount, and let go of its socket; the endpoint
// turns unhealthy and the checker goes on checking.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { ActiveHealthChecks, MAX_HEAD_BYTES } from '../../src/dataplane/upstream/health-check.ts';
import type { ActiveHealthCheckIR, Cluster } from '../../src/ir/types.ts';

interface Target {
  port: number;
  /** Connections accepted, and those we saw closed. */
  accepted: number;
  closed: number;
  /** Bytes the target managed to write. */
  written: number;
}

/** A raw TCP target: `behave` gets each connection. */
async function target(t: TestContext, behave: (socket: net.Socket, self: Target) => void): Promise<Target> {
  const self: Target = { port: 0, accepted: 0, closed: 0, written: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    self.accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => {
      self.closed++;
      sockets.delete(socket);
    });
    behave(socket, self);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self.port = (server.address() as net.AddressInfo).port;
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return self;
}

/** Writes `chunk` again and again while the peer reads, until the socket closes. */
function flood(socket: net.Socket, self: Target, head: string, chunk: string): void {
  socket.once('data', () => {
    socket.write(head);
    const pump = (): void => {
      while (!socket.destroyed && socket.write(chunk)) {
        self.written += chunk.length;
        if (self.written > 64 * 1024 * 1024) return; // the test's own bound, far past the checker's
      }
      if (!socket.destroyed) socket.once('drain', pump);
    };
    pump();
  });
}

const CHECK: ActiveHealthCheckIR = {
  type: 'HTTP', intervalMs: 100, timeoutMs: 300, unhealthyThreshold: 1, healthyThreshold: 1, path: '/healthz', method: 'GET', expectedStatuses: [200],
};

function clusterOf(name: string, port: number): Cluster {
  return { name, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port }], policy: { healthCheck: CHECK } };
}

test('health checks fail, boundedly, against a target that hangs, one with endless headers and one with an endless body', async (t) => {
  // Reads (so it sees the checker close) and never answers.
  const hang = await target(t, (socket) => socket.resume());
  const headers = await target(t, (socket, self) => flood(socket, self, 'HTTP/1.1 200 OK\r\n', 'x-filler: ' + 'a'.repeat(1000) + '\r\n'));
  const body = await target(t, (socket, self) => flood(socket, self, 'HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n', '400\r\n' + 'b'.repeat(1024) + '\r\n'));
  const verdicts = new Map<string, boolean>();
  const checks = new ActiveHealthChecks((key, healthy) => verdicts.set(key.split('\u0000')[0], healthy), () => {});
  t.after(() => checks.close());
  const started = Date.now();
  checks.update({ hang: clusterOf('hang', hang.port), headers: clusterOf('headers', headers.port), body: clusterOf('body', body.port) });
  assert.equal(checks.size, 3);
  while (verdicts.size < 3 && Date.now() - started < 3_000) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(Object.fromEntries(verdicts), { hang: false, headers: false, body: false });
  // The hanging target's check gave up at its timeout, not later.
  assert.ok(Date.now() - started < 1_500, `${Date.now() - started} ms`);

  // Checks go on, each connection closed by the checker: none piles up.
  await new Promise((r) => setTimeout(r, 900));
  for (const [name, tg] of Object.entries({ hang, headers, body })) {
    assert.ok(tg.accepted >= 2, `${name}: checked again (${tg.accepted})`);
    assert.ok(tg.accepted - tg.closed <= 1, `${name}: ${tg.accepted - tg.closed} connections left open`);
  }
  // Header flood: the parser stops at MAX_HEAD_BYTES; what the target got to
  // write is bounded by that and the socket buffers, per check.
  const perCheck = headers.written / headers.accepted;
  assert.ok(perCheck < MAX_HEAD_BYTES + 8 * 1024 * 1024, `${perCheck} bytes written per check`);
  assert.ok(body.written / body.accepted < 8 * 1024 * 1024, `${body.written / body.accepted} body bytes written per check`);

  // Stopping the checks closes what is under way and checks no more.
  checks.update({});
  assert.equal(checks.size, 0);
  await new Promise((r) => setTimeout(r, 100));
  const accepted = hang.accepted;
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(hang.accepted, accepted);
  assert.equal(hang.accepted, hang.closed);
});
