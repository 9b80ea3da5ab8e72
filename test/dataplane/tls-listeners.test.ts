// HTTPS listeners sharing a port, as the conformance test for
// GatewayHTTPSListenerDetectMisdirectedRequests lays them out (one without
// hostname, an exact one, a wildcard, an exact name under the wildcard):
// a request whose Host belongs to another listener than the one the
// connection's SNI chose gets 421, over HTTP/1.1 and HTTP/2; a Host no
// listener has stays with the SNI's listener (404 there). Without a
// listener for any name, an unknown SNI and a missing SNI are refused
// with unrecognized_name. The ClientHello is read however it arrives:
// byte by byte, fragmented over records (a few, or too many), oversized,
// or not TLS at all.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import type { TLSCertificate } from '../../src/ir/types.ts';
import { MAX_CLIENT_HELLO_BYTES, MAX_CLIENT_HELLO_RECORDS, readClientHello } from '../../src/dataplane/tls/client-hello.ts';
import { h2connect, h2request } from './h2-helpers.ts';
import {
  backend,
  cluster,
  freePort,
  gatewayListener,
  ir,
  listener,
  match,
  request,
  route,
  selfSigned,
  startBackend,
  startDataPlane,
  vhost,
} from './helpers.ts';

/** One certificate for every listener, as in the conformance test: only the listener identity differs. */
const shared = selfSigned('shared', ['example.org', 'second-example.org', '*.wildcard.org']);
const cert = (names: string[]): TLSCertificate => ({ serverNames: names, certChain: shared.cert, privateKey: shared.key });

/** Handshake with `servername` ('' sends none); resolves once it completed, rejects with the client's error. */
function handshake(port: number, servername: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      socket.end();
      resolve();
    });
    socket.once('error', reject);
  });
}

/** The ClientHello node's TLS client sends for `servername`, as raw bytes. */
async function captureClientHello(servername: string): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      server.once('connection', (s) => {
        let got = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
            s.destroy();
            resolve(got);
          }
        });
      });
      const client = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
      client.on('error', () => {});
      setTimeout(() => reject(new Error('no ClientHello within 2 s')), 2_000).unref();
    });
  } finally {
    server.close();
  }
}

/** The same hello cut into handshake records of at most `size` bytes. */
function fragment(hello: Buffer, size: number): Buffer {
  const message = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const records: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) {
    const part = message.subarray(at, at + size);
    const header = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    header.writeUInt16BE(part.length, 3);
    records.push(header, part);
  }
  return Buffer.concat(records);
}

/**
 * Writes `bytes` (in pieces of `step` bytes, a tick apart) on a raw socket;
 * resolves with the first record the server answers (`alert` with its
 * description, or `handshake` for a ServerHello) or `closed`.
 */
function rawHello(port: number, bytes: Buffer, step = bytes.length): Promise<{ kind: 'alert'; description: number } | { kind: 'handshake' } | { kind: 'closed' }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const done = (r: { kind: 'alert'; description: number } | { kind: 'handshake' } | { kind: 'closed' }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ kind: 'closed' }), 5_000);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < 5) return;
      if (got[0] === 0x16) done({ kind: 'handshake' });
      else if (got[0] === 0x15 && got.length >= 7) done({ kind: 'alert', description: got[6] });
      else if (got[0] !== 0x15) done({ kind: 'closed' });
    });
    socket.on('close', () => done({ kind: 'closed' }));
    socket.on('error', () => done({ kind: 'closed' }));
    let at = 0;
    const next = () => {
      if (at >= bytes.length || socket.destroyed) return;
      socket.write(bytes.subarray(at, at + step));
      at += step;
      setImmediate(next);
    };
    next();
  });
}

const UNRECOGNIZED_NAME = 112;

/** `tlsHandshakeTimeoutMs`: raw clients that stop after the ServerHello hold a handshake until it. */
async function misdirectedSetup(t: TestContext, tlsHandshakeTimeoutMs = 10_000) {
  const [v1, v2, v3] = await Promise.all([startBackend(t, 'v1'), startBackend(t, 'v2'), startBackend(t, 'v3')]);
  const port = await freePort();
  const vh = (host: string, name: string, to: string) => vhost(host, [route(name, match('/'), [backend(to)])]);
  // Most specific first, as the translator orders them.
  const listeners = [
    gatewayListener('ns/gw/exact', 'second-example.org', [vh('second-example.org', 'r2', 'v2')]),
    gatewayListener('ns/gw/under-wildcard', 'fourth-example.wildcard.org', [vh('fourth-example.wildcard.org', 'r4', 'v1')]),
    gatewayListener('ns/gw/wildcard', '*.wildcard.org', [vh('*.wildcard.org', 'r3', 'v3')]),
    gatewayListener('ns/gw/any', null, [vh('example.org', 'r1', 'v1')]),
  ];
  const certificates = [
    cert(['second-example.org']), cert(['fourth-example.wildcard.org']), cert(['*.wildcard.org']), cert(['*']),
  ];
  const dp = await startDataPlane(t, { limits: { tlsHandshakeTimeoutMs } });
  const res = await dp.apply(ir([listener(port, listeners, certificates)], [cluster('v1', v1), cluster('v2', v2), cluster('v3', v3)]));
  assert.deepEqual(res.listenerErrors, {});
  return { port, dp, listeners, certificates, backends: { v1, v2, v3 } };
}

/** [SNI, Host, expected status, backend] from the conformance test. */
const CASES: [string, string, number, string | null][] = [
  ['example.org', 'example.org', 200, 'v1'],
  ['example.org', 'second-example.org', 421, null],
  ['example.org', 'unknown-example.org', 404, null],
  ['second-example.org', 'second-example.org', 200, 'v2'],
  ['second-example.org', 'example.org', 421, null],
  ['second-example.org', 'unknown-example.org', 421, null],
  ['third-example.wildcard.org', 'third-example.wildcard.org', 200, 'v3'],
  ['third-example.wildcard.org', 'fith-example.wildcard.org', 200, 'v3'],
  ['third-example.wildcard.org', 'fourth-example.wildcard.org', 421, null],
  ['third-example.wildcard.org', 'second-example.org', 421, null],
  ['third-example.wildcard.org', 'unknown-example.org', 421, null],
  ['fourth-example.wildcard.org', 'fourth-example.wildcard.org', 200, 'v1'],
  ['fourth-example.wildcard.org', 'fith-example.wildcard.org', 421, null],
  ['unknown-example.org', 'example.org', 200, 'v1'],
  ['unknown-example.org', 'unknown-example.org', 404, null],
  // Case and a trailing dot do not make a name another listener's.
  ['Second-Example.ORG', 'second-example.org.', 200, 'v2'],
];

test('misdirected requests: 421 when the Host is another listener\'s than the SNI\'s', async (t) => {
  const { port } = await misdirectedSetup(t);

  await t.test('HTTP/1.1', async () => {
    for (const [sni, host, status, to] of CASES) {
      const reply = await request(port, '/misdirected', { host, https: { servername: sni } });
      assert.equal(reply.status, status, `SNI ${sni}, Host ${host}`);
      if (to !== null) assert.equal(reply.json().backend, to, `SNI ${sni}, Host ${host}`);
    }
  });

  await t.test('HTTP/2: one connection per SNI, every authority on it (coalescing)', async () => {
    const sessions = new Map<string, Awaited<ReturnType<typeof h2connect>>>();
    t.after(() => {
      for (const s of sessions.values()) s.destroy();
    });
    for (const [sni, host, status, to] of CASES) {
      let session = sessions.get(sni);
      if (session === undefined) sessions.set(sni, (session = await h2connect(port, { tls: true, servername: sni })));
      const reply = await h2request(session, '/misdirected', { authority: host });
      assert.equal(reply.status, status, `SNI ${sni}, :authority ${host}`);
      if (to !== null) assert.equal(reply.json().backend, to, `SNI ${sni}, :authority ${host}`);
    }
  });

  await t.test('a 421 leaves the HTTP/1.1 connection open for the next request', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'second-example.org', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    t.after(() => socket.destroy());
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    socket.write('GET /a HTTP/1.1\r\nHost: example.org\r\n\r\nGET /b HTTP/1.1\r\nHost: second-example.org\r\n\r\n');
    let text = '';
    await new Promise<void>((resolve) => {
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if ((text.match(/HTTP\/1\.1 \d{3}/g) ?? []).length === 2) resolve();
      });
    });
    assert.deepEqual(text.match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 421', 'HTTP/1.1 200']);
  });

  await t.test('no SNI: the listener without hostname', async () => {
    const ok = await request(port, '/x', { host: 'example.org', https: { servername: '' } });
    assert.equal(ok.status, 200);
    const other = await request(port, '/x', { host: 'second-example.org', https: { servername: '' } });
    assert.equal(other.status, 421);
  });
});

test('SNI that no listener serves is refused at the handshake', async (t) => {
  const { port, dp, listeners, certificates, backends } = await misdirectedSetup(t, 1_000);
  const clusters = [cluster('v1', backends.v1), cluster('v2', backends.v2), cluster('v3', backends.v3)];
  const serverHello = { kind: 'handshake' };
  const refused = { kind: 'alert', description: UNRECOGNIZED_NAME };

  await t.test('with a listener without hostname every name is served', async () => {
    await handshake(port, 'unknown.test');
    await handshake(port, '');
  });

  // The listener without hostname goes: names of the others only.
  const res = await dp.apply(ir([listener(port, listeners.slice(0, 3), certificates.slice(0, 3))], clusters));
  assert.deepEqual(res.listenerErrors, {});

  await t.test('without one, an unknown name and no name are refused with unrecognized_name', async () => {
    await handshake(port, 'second-example.org');
    await handshake(port, 'x.wildcard.org');
    await assert.rejects(handshake(port, 'unknown.test'), { code: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME' });
    await assert.rejects(handshake(port, 'wildcard.org'), { code: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME' });
    await assert.rejects(handshake(port, ''), { code: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME' });
  });

  await t.test('the hello is read byte by byte and over fragmented records', async () => {
    const known = await captureClientHello('second-example.org');
    const unknown = await captureClientHello('unknown.test');
    assert.deepEqual(await rawHello(port, known, 1), serverHello);
    assert.deepEqual(await rawHello(port, unknown, 1), refused);
    const records = (hello: Buffer, size: number) => Math.ceil((hello.length - 5) / size);
    const size = Math.ceil((known.length - 5) / 4);
    assert.equal(records(known, size), 4);
    assert.deepEqual(await rawHello(port, fragment(known, size)), serverHello);
    assert.deepEqual(await rawHello(port, fragment(unknown, size), 7), refused);
    // Cut into more records than MAX_CLIENT_HELLO_RECORDS: closed without an answer.
    assert.ok(records(known, 8) > MAX_CLIENT_HELLO_RECORDS);
    assert.deepEqual(await rawHello(port, fragment(known, 8)), { kind: 'closed' });
  });

  await t.test('a hello past the bound is closed; bytes that are not TLS are left to node\'s TLS', async () => {
    const huge = Buffer.alloc(MAX_CLIENT_HELLO_BYTES + 100, 0);
    huge.set([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xff, 0xff]);
    assert.deepEqual(await rawHello(port, huge), { kind: 'closed' });
    // OpenSSL's own answer to a plaintext request: the connection goes.
    const plain = await rawHello(port, Buffer.from('GET / HTTP/1.1\r\nHost: example.org\r\n\r\n'));
    assert.notDeepEqual(plain, serverHello);
    await handshake(port, 'second-example.org');
  });

  await t.test('a client that never finishes its hello is cut at the handshake timeout', async (t) => {
    const dp2 = await startDataPlane(t, { limits: { tlsHandshakeTimeoutMs: 300 } });
    const port2 = await freePort();
    await dp2.apply(ir([listener(port2, listeners.slice(0, 1), certificates.slice(0, 1))], clusters));
    const started = Date.now();
    const hello = await captureClientHello('second-example.org');
    assert.deepEqual(await rawHello(port2, hello.subarray(0, 20)), { kind: 'closed' });
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 3_000, `closed after ${took} ms`);
  });
});

test('readClientHello', () => {
  assert.deepEqual(readClientHello(Buffer.from([0x16, 0x03])), { kind: 'partial', need: 5 });
  assert.deepEqual(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])), { kind: 'partial', need: 5 + 512 });
  assert.deepEqual(readClientHello(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'not-a-hello' });
  // A handshake record that holds a ServerHello (type 2), not a ClientHello.
  assert.deepEqual(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])), { kind: 'not-a-hello' });
  // A ClientHello whose body is cut short inside its declared length.
  assert.deepEqual(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03])), { kind: 'not-a-hello' });
});
