// Hostile clients of the L4 listeners: a ClientHello that never finishes,
// bytes that are no ClientHello, a hello larger than the bound, and a flood
// of UDP clients. Each must end within its bound without reaching a backend.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { test } from 'node:test';
import { DataPlane } from '../../src/dataplane/dataplane.ts';
import { UdpListener } from '../../src/dataplane/l4/udp.ts';
import { compileL4Listener } from '../../src/dataplane/l4/routes.ts';
import { SecureContextCache } from '../../src/dataplane/tls/sni.ts';
import { MAX_CLIENT_HELLO_BYTES } from '../../src/dataplane/tls/client-hello.ts';
import { freePort, ir, selfSigned } from '../dataplane/helpers.ts';
import { closed, freeUdpPort, l4cluster, l4listener, tlsBackend, udpBackend } from '../dataplane/l4-helpers.ts';
import type { ListenerShape } from '../../src/ir/delta.ts';

const HELLO_TIMEOUT = 500;

test('passthrough listener: slow, garbage and oversized ClientHellos', { timeout: 30_000 }, async (t) => {
  const cert = selfSigned('a.example.com');
  const backend = await tlsBackend(t, 'a', cert);
  const port = await freePort();
  const dp = new DataPlane({ limits: { tlsHandshakeTimeoutMs: HELLO_TIMEOUT } });
  t.after(() => dp.close());
  await dp.apply(ir([l4listener('TLS', port, [{ name: 'ns/a', hostname: '*', mode: 'Passthrough', backends: [{ weight: 1, cluster: 'a' }] }])], [l4cluster('a', backend.port)]));

  await t.test('a hello never finished is closed at the handshake timeout', async () => {
    const s = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => s.once('connect', resolve));
    const started = Date.now();
    s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a record header promising 512 bytes, and one
    assert.equal(await closed(s, HELLO_TIMEOUT * 4), true);
    const took = Date.now() - started;
    assert.ok(took >= HELLO_TIMEOUT - 50, `closed after ${took} ms, before the timeout`);
  });

  await t.test('bytes that are not a ClientHello are closed at once', async () => {
    const s = net.connect(port, '127.0.0.1');
    s.write('GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n');
    assert.equal(await closed(s, HELLO_TIMEOUT / 2), true);
  });

  await t.test('a hello beyond the bound is closed without waiting', async () => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    // Records of handshake bytes, more than MAX_CLIENT_HELLO_BYTES in all, announcing a longer message.
    const body = Buffer.alloc(4 + 1000);
    body[0] = 1; body.writeUIntBE(1 << 20, 1, 3);
    const records: Buffer[] = [];
    for (let sent = 0; sent <= MAX_CLIENT_HELLO_BYTES; sent += 1000) {
      const payload = sent === 0 ? body.subarray(0, 1000) : Buffer.alloc(1000);
      records.push(Buffer.from([0x16, 0x03, 0x01, payload.length >> 8, payload.length & 0xff]), payload);
    }
    s.write(Buffer.concat(records));
    assert.equal(await closed(s, HELLO_TIMEOUT / 2), true);
  });

  assert.equal(backend.connections, 0, 'no hostile client reached the backend');
});

test('UDP: a flood of clients is bounded by the session limit, and existing sessions keep working', { timeout: 20_000 }, async (t) => {
  const backend = await udpBackend(t, 'echo');
  const port = await freeUdpPort();
  const shape = l4listener('UDP', port, [{ name: 'ns/u', hostname: '*', backends: [{ weight: 1, cluster: 'u' }] }]) as unknown as ListenerShape;
  const compiled = compileL4Listener(shape, new Map([['u', l4cluster('u', backend.port)]]), new SecureContextCache(), {});
  const max = 8;
  const udp = new UdpListener(compiled, () => {}, false, { maxSessions: max, idleMs: 60_000 });
  t.after(() => udp.close());
  assert.equal(await udp.bind(), null);

  const first = dgram.createSocket('udp4');
  t.after(() => first.close());
  const reply = new Promise<string>((resolve) => first.once('message', (m) => resolve(m.toString())));
  first.send('hi', port, '127.0.0.1');
  assert.equal(await reply, 'echo:hi');

  const flood: dgram.Socket[] = [];
  t.after(() => { for (const c of flood) c.close(); });
  for (let i = 0; i < 40; i++) {
    const c = dgram.createSocket('udp4');
    flood.push(c);
    c.send(`flood ${i}`, port, '127.0.0.1');
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(udp.sessions, max);
  assert.ok(udp.dropped >= 40 - (max - 1), `dropped ${udp.dropped}`);
  assert.ok(backend.peers.size <= max);

  const again = new Promise<string>((resolve) => first.once('message', (m) => resolve(m.toString())));
  first.send('again', port, '127.0.0.1');
  assert.equal(await again, 'echo:again');
});
