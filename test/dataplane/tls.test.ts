// HTTPS listeners: certificate selection by SNI (exact, longest wildcard,
// `*`; a name nothing covers refused with unrecognized_name, and so is a
// client without SNI unless `*` exists), ALPN (h2 and http/1.1), certificate changes without a rebind, a
// listener switching protocol, and certificates that cannot be loaded.

import assert from 'node:assert/strict';
import https from 'node:https';
import { test } from 'node:test';
import tls from 'node:tls';
import type { TLSCertificate } from '../../src/ir/types.ts';
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

function certificate(cn: string, serverNames: string[]): TLSCertificate {
  const { cert, key } = selfSigned(cn);
  return { serverNames, certChain: cert, privateKey: key };
}

/** CN of the certificate the server presents for `servername` ('' sends no SNI). */
function handshake(port: number, servername: string, alpn?: string[]): Promise<{ cn: string; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      rejectUnauthorized: false,
      ...(alpn ? { ALPNProtocols: alpn } : {}),
    });
    socket.once('secureConnect', () => {
      const cn = String(socket.getPeerCertificate().subject?.CN ?? '');
      const negotiated = socket.alpnProtocol;
      socket.end();
      resolve({ cn, alpn: negotiated ?? false });
    });
    socket.once('error', reject);
  });
}

const cn = async (port: number, servername: string) => (await handshake(port, servername)).cn;

test('tls', async (t) => {
  const a = await startBackend(t, 'a');
  const port = await freePort();
  const plainPort = await freePort();
  const certs = {
    first: certificate('first', ['first.example.com']),
    wild: certificate('wild', ['*.example.com']),
    deeper: certificate('deeper', ['*.b.example.com']),
    exact: certificate('exact', ['a.example.com', 'A2.Example.com']),
    any: certificate('any', ['*']),
  };
  const routes = [route('all', match('/'), [backend('a')])];
  const httpsListener = (certificates: TLSCertificate[], p = port) =>
    listener(p, [gatewayListener('ns/gw/https', null, [vhost('*', routes)])], certificates);
  const noAny = [certs.first, certs.wild, certs.deeper, certs.exact];
  const dp = await startDataPlane(t);
  const result = await dp.apply(ir([httpsListener([...noAny, certs.any])], [cluster('a', a)]));
  assert.deepEqual(result.listenerErrors, {});

  await t.test('SNI: exact name first, even when listed after a wildcard', async () => {
    assert.equal(await cn(port, 'a.example.com'), 'exact');
    assert.equal(await cn(port, 'A2.EXAMPLE.COM'), 'exact');
  });

  await t.test('SNI: the wildcard with the longest suffix', async () => {
    assert.equal(await cn(port, 'x.b.example.com'), 'deeper');
    assert.equal(await cn(port, 'x.y.b.example.com'), 'deeper');
    assert.equal(await cn(port, 'x.example.com'), 'wild');
    // `*.b.example.com` does not cover b.example.com itself.
    assert.equal(await cn(port, 'b.example.com'), 'wild');
  });

  await t.test('SNI: `*` for any other name, and for clients without SNI', async () => {
    assert.equal(await cn(port, 'other.test'), 'any');
    assert.equal(await cn(port, ''), 'any');
  });

  await t.test('ALPN: h2 preferred, http/1.1 for clients that offer only it (HTTP/2 itself: http2.test.ts)', async () => {
    assert.equal((await handshake(port, 'a.example.com', ['http/1.1', 'h2'])).alpn, 'h2');
    assert.equal((await handshake(port, 'a.example.com', ['http/1.1'])).alpn, 'http/1.1');
  });

  await t.test('requests are proxied with X-Forwarded-Proto https', async () => {
    const reply = await request(port, '/tls', { host: 'a.example.com', https: { servername: 'a.example.com' } });
    assert.equal(reply.status, 200);
    assert.equal(reply.json().headers['x-forwarded-proto'], 'https');
  });

  await t.test('certificate changes need no rebind and keep open connections', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const opts = { host: 'a.example.com', agent, https: { servername: 'a.example.com' } };
    const before = await request(port, '/keep', opts);
    assert.equal(before.status, 200);

    const rotated = certificate('exact-rotated', ['a.example.com']);
    const newFirst = certificate('first-rotated', ['first.example.com']);
    const again = await dp.apply(
      ir([httpsListener([newFirst, certs.wild, certs.deeper, rotated])], [cluster('a', a)]),
    );
    assert.deepEqual(again.listenerErrors, {});
    assert.equal(await cn(port, 'a.example.com'), 'exact-rotated');
    assert.equal(await cn(port, 'first.example.com'), 'first-rotated');
    // No `*` any more: an unknown name is refused, as is no SNI.
    await assert.rejects(handshake(port, 'other.test'), { code: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME' });
    await assert.rejects(handshake(port, ''), { code: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME' });

    let reused = false;
    const after = await new Promise<number>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, path: '/keep', headers: { host: 'a.example.com' }, servername: 'a.example.com', rejectUnauthorized: false, agent },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('socket', (s) => (reused = (s as tls.TLSSocket).getPeerCertificate().subject?.CN === 'exact'));
      req.on('error', reject);
      req.end();
    });
    assert.equal(after, 200);
    assert.ok(reused, 'the request went over the connection opened before the change');
  });

  await t.test('a certificate that cannot be loaded is reported; the others serve', async () => {
    const broken: TLSCertificate = { serverNames: ['broken.test'], certChain: 'not a cert', privateKey: 'nope' };
    const res = await dp.apply(ir([httpsListener([broken, certs.exact, certs.wild])], [cluster('a', a)]));
    assert.deepEqual(res.listenerErrors, {});
    assert.match(res.certificateErrors[`127.0.0.1:${port}`] ?? '', /certificate 0 \(broken\.test\)/);
    assert.equal(await cn(port, 'a.example.com'), 'exact');
    // Its name is not served by another certificate.
    await assert.rejects(handshake(port, 'broken.test'), { code: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME' });
  });

  await t.test('an HTTPS listener with no loadable certificate is not served', async () => {
    const broken: TLSCertificate = { serverNames: ['*'], certChain: 'x', privateKey: 'y' };
    const res = await dp.apply(ir([httpsListener([broken], plainPort), httpsListener(noAny)], [cluster('a', a)]));
    assert.match(res.listenerErrors[`127.0.0.1:${plainPort}`] ?? '', /certificate 0/);
    await assert.rejects(handshake(plainPort, 'a.example.com'), /ECONNREFUSED/);
  });

  await t.test('HTTP <-> HTTPS on the same key rebuilds the listener', async () => {
    const plain = listener(port, [gatewayListener('ns/gw/http', null, [vhost('*', routes)])]);
    let res = await dp.apply(ir([plain], [cluster('a', a)]));
    assert.deepEqual(res.listenerErrors, {});
    assert.equal((await request(port, '/plain')).status, 200);
    await assert.rejects(handshake(port, 'a.example.com'));
    res = await dp.apply(ir([httpsListener(noAny)], [cluster('a', a)]));
    assert.deepEqual(res.listenerErrors, {});
    assert.equal(await cn(port, 'a.example.com'), 'exact');
    await assert.rejects(request(port, '/plain'));
  });
});
