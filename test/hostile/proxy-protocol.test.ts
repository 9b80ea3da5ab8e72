// Hostile PROXY protocol headers on a listener that requires one: each
// malformed header, one too long, one that never ends, one dripped slower
// than the headers timeout, and a flood of silent connections. Each must
// end in a closed connection with nothing answered and nothing sent to the
// backend, be logged with its reason, and leave the listener serving.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, route, sleep, startBackend, startDataPlane, vhost } from '../dataplane/helpers.ts';
import { proxyV2 } from '../dataplane/proxy-protocol-helpers.ts';

const HEAD_TIMEOUT = 400;

/** Writes `bytes` (in pieces `every` ms apart when given), resolves with what came back and when the socket closed. */
function exchange(port: number, pieces: Buffer[], everyMs = 0, waitMs = 3_000): Promise<{ text: string; closed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', async () => {
      for (const p of pieces) {
        if (socket.destroyed) return;
        socket.write(p);
        if (everyMs > 0) await sleep(everyMs);
      }
    });
  });
}

test('hostile PROXY protocol headers', { timeout: 30_000 }, async (t) => {
  const b = await startBackend(t, 'b');
  let reached = 0;
  b.server.on('request', () => reached++);
  const port = await freePort();
  const logs: { msg: string; fields: Record<string, unknown> }[] = [];
  const dp = await startDataPlane(t, {
    log: (_level, msg, fields) => logs.push({ msg, fields: fields ?? {} }),
    limits: { headersTimeoutMs: HEAD_TIMEOUT },
  });
  const l = listener(port, [gatewayListener('ns/gw/l', null, [vhost('*', [route('all', match('/'), [backend('b')])])])]);
  l.client = { policy: 'infra/vip', proxyProtocol: { optional: false } };
  await dp.apply(ir([l], [cluster('b', b)]));
  const request = Buffer.from('GET / HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n');

  const refused = async (what: string, bytes: Buffer, reason: RegExp) => {
    const before = logs.length;
    const r = await exchange(port, [bytes, request]);
    assert.equal(r.text, '', `${what}: nothing is answered`);
    assert.ok(r.closed, `${what}: closed`);
    assert.equal(reached, 0, `${what}: no backend request`);
    const line = logs.slice(before).find((x) => x.msg.includes('PROXY protocol header refused'));
    assert.ok(line && reason.test(String(line.fields.reason)), `${what}: logged ${JSON.stringify(logs.slice(before))}`);
  };

  const v2 = proxyV2('192.0.2.1');
  await t.test('v2 with another version', async () => {
    const bad = Buffer.from(v2);
    bad[12] = 0x31;
    await refused('version 3', bad, /version 3/);
  });
  await t.test('v2 with an unknown command', async () => {
    const bad = Buffer.from(v2);
    bad[12] = 0x2f;
    await refused('command 15', bad, /command/);
  });
  await t.test('v2 with IPv4 addresses cut short', async () => {
    const bad = Buffer.from(v2.subarray(0, 20));
    bad.writeUInt16BE(4, 14);
    await refused('short addresses', bad, /truncated/);
  });
  await t.test('v2 announcing 64 KiB of TLVs', async () => {
    const bad = Buffer.from(v2);
    bad.writeUInt16BE(65_535, 14);
    await refused('too long', bad, /at most/);
  });
  await t.test('v1 with a bad protocol, bad addresses, a bad port', async () => {
    await refused('v1 protocol', Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), /protocol/);
    await refused('v1 address', Buffer.from('PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n'), /address/);
    await refused('v1 family', Buffer.from('PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n'), /address/);
    await refused('v1 port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n'), /port/);
    await refused('v1 fields', Buffer.from('PROXY TCP4 1.2.3.4\r\n'), /expected/);
  });
  await t.test('v1 line without CRLF within 107 bytes', () => refused('v1 long', Buffer.from(`PROXY TCP4 ${'1'.repeat(200)}`), /107/));
  await t.test('a TLS ClientHello where the header should be', () => refused('tls', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05]), /no PROXY/));

  await t.test('slow header: dripped a byte at a time, cut at the headers timeout', async () => {
    const before = logs.length;
    const drip = [...v2].map((x) => Buffer.from([x]));
    const r = await exchange(port, drip, 50);
    assert.equal(r.text, '');
    assert.ok(r.closed);
    assert.ok(r.ms >= HEAD_TIMEOUT - 50 && r.ms < HEAD_TIMEOUT + 1_000, `closed after ${r.ms} ms`);
    assert.ok(logs.slice(before).some((x) => /within 400 ms/.test(String(x.fields.reason))), JSON.stringify(logs.slice(before)));
  });

  await t.test('silent connections are closed at the headers timeout, not held', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => exchange(port, [], 0, 3_000)));
    for (const r of results) {
      assert.ok(r.closed, 'closed');
      assert.ok(r.ms < HEAD_TIMEOUT + 1_000, `closed after ${r.ms} ms`);
    }
  });

  await t.test('the listener still serves a well-formed header', async () => {
    const r = await exchange(port, [Buffer.concat([v2, request])]);
    assert.match(r.text, /^HTTP\/1\.1 200/);
    assert.equal(reached, 1);
  });
});
