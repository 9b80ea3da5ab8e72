// The config service's hand-written X.509: node's own parser reads what it
// makes, and real TLS handshakes accept a serving certificate by its DNS
// and IP names when the client trusts the CA, and refuse it otherwise.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { createCertificateAuthority, issueServingCertificate } from '../../../src/providers/kubernetes/certificate-authority.ts';

const HOUR_MS = 60 * 60 * 1000;

async function handshake(t: TestContext, serving: { cert: string; key: string }, client: tls.ConnectionOptions): Promise<string | null> {
  const server = tls.createServer({ cert: serving.cert, key: serving.key }, (s) => s.end());
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, client.host ?? '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  return new Promise((resolve) => {
    const socket = tls.connect({ port, ...client });
    socket.once('secureConnect', () => { socket.destroy(); resolve(null); });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

test('the CA and a serving certificate read back as what was asked for', () => {
  const now = Date.now();
  const ca = createCertificateAuthority('gatehouse config CA ns', 10 * HOUR_MS, now);
  const caCert = new crypto.X509Certificate(ca.cert);
  assert.equal(caCert.ca, true);
  assert.equal(caCert.subject, 'CN=gatehouse config CA ns');
  assert.equal(caCert.issuer, caCert.subject);
  assert.ok(caCert.verify(caCert.publicKey), 'self-signed');
  assert.ok(caCert.checkPrivateKey(crypto.createPrivateKey(ca.key)));
  assert.ok(Math.abs(Date.parse(caCert.validTo) - (now + 10 * HOUR_MS)) < 2_000);
  assert.ok(Date.parse(caCert.validFrom) < now - HOUR_MS / 2, 'backdated for clocks behind');

  const serving = issueServingCertificate(ca, {
    commonName: 'gatehouse', dnsNames: ['gatehouse.gatehouse-system.svc', 'localhost'], ipAddresses: ['127.0.0.1', '::1', 'fd00::1:2'], validForMs: HOUR_MS,
  }, now);
  const cert = new crypto.X509Certificate(serving.cert);
  assert.equal(cert.ca, false);
  assert.equal(cert.subject, 'CN=gatehouse');
  assert.ok(cert.checkIssued(caCert) && cert.verify(caCert.publicKey));
  assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(serving.key)));
  assert.equal(cert.subjectAltName, 'DNS:gatehouse.gatehouse-system.svc, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:FD00:0:0:0:0:0:1:2');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.notEqual(cert.serialNumber, new crypto.X509Certificate(issueServingCertificate(ca, { commonName: 'x', dnsNames: ['x'], ipAddresses: [], validForMs: HOUR_MS }).cert).serialNumber);
  assert.throws(() => issueServingCertificate(ca, { commonName: 'x', dnsNames: [], ipAddresses: [], validForMs: HOUR_MS }), /at least one/);
  assert.throws(() => issueServingCertificate(ca, { commonName: 'x', dnsNames: [], ipAddresses: ['not-an-ip'], validForMs: HOUR_MS }), /not an IP/);
});

test('TLS: a client trusting the CA accepts the certificate by DNS name and by IP; others refuse it', async (t) => {
  const ca = createCertificateAuthority('test CA', HOUR_MS);
  const serving = issueServingCertificate(ca, { commonName: 'gatehouse', dnsNames: ['gatehouse.test'], ipAddresses: ['127.0.0.1'], validForMs: HOUR_MS });
  assert.equal(await handshake(t, serving, { host: '127.0.0.1', ca: ca.cert, servername: 'gatehouse.test' }), null);
  assert.equal(await handshake(t, serving, { host: '127.0.0.1', ca: ca.cert }), null, 'by IP SAN');
  assert.equal(await handshake(t, serving, { host: '127.0.0.1', ca: ca.cert, servername: 'other.test' }), 'ERR_TLS_CERT_ALTNAME_INVALID');
  const stranger = createCertificateAuthority('another CA', HOUR_MS);
  assert.equal(await handshake(t, serving, { host: '127.0.0.1', ca: stranger.cert }), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  // The CA cannot be used as a serving certificate in its place: it names nothing.
  assert.equal(await handshake(t, ca, { host: '127.0.0.1', ca: ca.cert }), 'ERR_TLS_CERT_ALTNAME_INVALID');
});

test('an expired serving certificate is refused', async (t) => {
  const ca = createCertificateAuthority('test CA', 48 * HOUR_MS, Date.now() - 24 * HOUR_MS);
  const expired = issueServingCertificate(ca, { commonName: 'g', dnsNames: [], ipAddresses: ['127.0.0.1'], validForMs: 2 * HOUR_MS }, Date.now() - 24 * HOUR_MS);
  assert.equal(await handshake(t, expired, { host: '127.0.0.1', ca: ca.cert }), 'CERT_HAS_EXPIRED');
});
