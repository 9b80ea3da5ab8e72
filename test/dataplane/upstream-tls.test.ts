// Backends over TLS (BackendTLSPolicy in the IR) and over cleartext HTTP/2
// (appProtocol kubernetes.io/h2c): real TLS backends with certificates from
// a test CA, real node:http2 backends.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type tls from 'node:tls';
import type { Cluster, UpstreamTLS } from '../../src/ir/types.ts';
import { backend, freePort, match, rawExchange, request, route, simpleIR, startDataPlane, statusOf } from './helpers.ts';

interface Pki { ca: string; otherCa: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string }

/** A CA, a server certificate it signed (DNS abc.example.com, URI spiffe://abc.example.com/id), a client certificate, and an unrelated CA. */
function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-upstream-tls-'));
  const ssl = (...args: string[]) => execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test-ca');
    ssl('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.crt', '-days', '1', '-subj', '/CN=other-ca');
    writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:abc.example.com,URI:spiffe://abc.example.com/id\n');
    ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=abc.example.com');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'server.ext');
    ssl('req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=gatehouse-client');
    ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '1');
    const r = (f: string) => readFileSync(join(dir, f), 'utf8');
    return { ca: r('ca.crt'), otherCa: r('other.crt'), serverCert: r('server.crt'), serverKey: r('server.key'), clientCert: r('client.crt'), clientKey: r('client.key') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface TLSBackend { port: number; seen: { sni: string; clientCN: string }[] }

/** An HTTPS backend that answers with the SNI it got and the client certificate's CN, if one was presented. */
async function startTLSBackend(t: TestContext, pki: Pki): Promise<TLSBackend> {
  const seen: TLSBackend['seen'] = [];
  const server = https.createServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const socket = req.socket as tls.TLSSocket & { servername?: string };
    const peer = socket.getPeerCertificate();
    const entry = { sni: String(socket.servername ?? ''), clientCN: socket.authorized ? String(peer.subject?.CN ?? '') : '' };
    seen.push(entry);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(entry));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => { server.closeAllConnections(); server.close(); });
  return { port: (server.address() as net.AddressInfo).port, seen };
}

function tlsCluster(name: string, port: number, spec: UpstreamTLS): Cluster {
  return { name, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port }], tls: spec };
}

test('backends over TLS: SNI, CA, hostname and SAN checks, client certificate', async (t) => {
  const pki = makePki();
  const be = await startTLSBackend(t, pki);
  const port = await freePort();
  const logs: string[] = [];
  const dp = await startDataPlane(t, { log: (level, msg, fields) => logs.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`) });
  const base: UpstreamTLS = { serverName: 'abc.example.com', caCertificates: pki.ca, subjectAltNames: [] };
  const clusters: Cluster[] = [
    tlsCluster('ok', be.port, base),
    tlsCluster('wrong-host', be.port, { ...base, serverName: 'nope.example.com' }),
    tlsCluster('wrong-ca', be.port, { ...base, caCertificates: pki.otherCa }),
    tlsCluster('system-roots', be.port, { serverName: 'abc.example.com', subjectAltNames: [] }),
    tlsCluster('san-dns', be.port, { ...base, serverName: 'other.example.com', subjectAltNames: [{ type: 'Hostname', value: 'abc.example.com' }] }),
    tlsCluster('san-dns-wrong', be.port, { ...base, subjectAltNames: [{ type: 'Hostname', value: 'xyz.example.com' }] }),
    tlsCluster('san-wildcard', be.port, { ...base, subjectAltNames: [{ type: 'Hostname', value: '*.example.com' }] }),
    tlsCluster('san-wildcard-wrong', be.port, { ...base, subjectAltNames: [{ type: 'Hostname', value: '*.example.org' }] }),
    tlsCluster('san-uri', be.port, { ...base, subjectAltNames: [{ type: 'URI', value: 'spiffe://abc.example.com/id' }] }),
    tlsCluster('san-uri-wrong', be.port, { ...base, subjectAltNames: [{ type: 'URI', value: 'spiffe://abc.example.com/other' }] }),
    tlsCluster('client-cert', be.port, { ...base, clientCertificate: { certChain: pki.clientCert, privateKey: pki.clientKey } }),
    tlsCluster('bad-pem', be.port, { ...base, caCertificates: 'not a certificate' }),
  ];
  await dp.apply(simpleIR(port, clusters.map((c) => route(c.name, match(`/${c.name}`, 'Exact'), [backend(c.name)])), clusters));

  const ok = await request(port, '/ok');
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(JSON.parse(ok.text), { sni: 'abc.example.com', clientCN: '' });

  // The name checked is the SNI sent: a certificate for another name is refused; so is one from another CA.
  for (const name of ['wrong-host', 'wrong-ca', 'system-roots', 'san-dns-wrong', 'san-wildcard-wrong', 'san-uri-wrong']) {
    const r = await request(port, `/${name}`);
    assert.equal(r.status, 503, `${name}: ${r.text}`);
  }
  assert.ok(logs.some((l) => l.includes('ERR_TLS_CERT_ALTNAME_INVALID')), logs.join('\n'));
  assert.ok(logs.some((l) => /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN/i.test(l)), logs.join('\n'));

  // With subjectAltNames the hostname is only the SNI; the certificate must carry one of the SANs.
  const sanDns = await request(port, '/san-dns');
  assert.equal(sanDns.status, 200, sanDns.text);
  assert.equal(JSON.parse(sanDns.text).sni, 'other.example.com');
  assert.equal((await request(port, '/san-uri')).status, 200);
  assert.equal((await request(port, '/san-wildcard')).status, 200);

  const withCert = await request(port, '/client-cert');
  assert.equal(withCert.status, 200);
  assert.equal(JSON.parse(withCert.text).clientCN, 'gatehouse-client');

  // TLS material that cannot be loaded: the cluster serves nothing, and says why.
  assert.equal((await request(port, '/bad-pem')).status, 503);
  assert.ok(logs.some((l) => l.includes('bad-pem') && l.includes('TLS settings cannot be used')), logs.join('\n'));
  // No certificate or key material is logged.
  assert.ok(!logs.some((l) => l.includes('PRIVATE KEY') || l.includes('BEGIN CERTIFICATE')));
});

test('h2c backends: cleartext HTTP/2 with prior knowledge, bodies both ways, concurrent streams on one session', async (t) => {
  let sessions = 0;
  let maxOpen = 0;
  let open = 0;
  const server = http2.createServer({ settings: { maxConcurrentStreams: 4 } }, (req, res) => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      setTimeout(() => {
        open--;
        res.setHeader('x-proto', `h${req.httpVersion}`);
        res.setHeader('x-authority', String(req.headers[':authority']));
        res.end(JSON.stringify({ path: req.url, method: req.method, body: Buffer.concat(chunks).toString() }));
      }, 20);
    });
  });
  server.on('session', () => sessions++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const bePort = (server.address() as net.AddressInfo).port;
  const port = await freePort();
  const dp = await startDataPlane(t);
  const c: Cluster = { name: 'h2c', protocol: 'h2c', endpoints: [{ address: '127.0.0.1', port: bePort }] };
  await dp.apply(simpleIR(port, [route('r', match('/'), [backend('h2c')])], [c]));

  const r = await request(port, '/hello?x=1', { host: 'app.example.com', method: 'POST', body: 'payload' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-proto'], 'h2.0');
  assert.equal(r.headers['x-authority'], 'app.example.com');
  assert.deepEqual(JSON.parse(r.text), { path: '/hello?x=1', method: 'POST', body: 'payload' });

  // Twenty at once: one session, never more streams than the backend allows.
  const all = await Promise.all(Array.from({ length: 20 }, (_, i) => request(port, `/n${i}`)));
  assert.deepEqual(all.map((x) => x.status), Array(20).fill(200));
  assert.equal(sessions, 1);
  assert.ok(maxOpen <= 4, `at most 4 streams open at once, saw ${maxOpen}`);

  // A backend that is gone: 503, not a hang.
  server.close();
  const closedPort = await freePort();
  const gone: Cluster = { name: 'gone', protocol: 'h2c', endpoints: [{ address: '127.0.0.1', port: closedPort }] };
  await dp.apply(simpleIR(port, [route('r', match('/'), [backend('gone')])], [gone]));
  assert.equal((await request(port, '/')).status, 503);
});

test('h2c backends: a backend that never answers meets the response timeout (504); a reset stream is a 502', async (t) => {
  const server = http2.createServer((req, res) => {
    if (req.url === '/reset') req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else if (req.url !== '/hang') res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => { server.close(); });
  const port = await freePort();
  const dp = await startDataPlane(t, { limits: { upstreamResponseTimeoutMs: 300 } });
  const c: Cluster = { name: 'h2c', protocol: 'h2c', endpoints: [{ address: '127.0.0.1', port: (server.address() as net.AddressInfo).port }] };
  await dp.apply(simpleIR(port, [route('r', match('/'), [backend('h2c')])], [c]));
  const started = Date.now();
  assert.equal((await request(port, '/hang')).status, 504);
  assert.ok(Date.now() - started < 2_000, 'bounded by the response timeout');
  assert.equal((await request(port, '/reset')).status, 502);
  // The session survives a reset stream.
  assert.equal((await request(port, '/ok')).text, 'ok');
  // A WebSocket handshake cannot be carried over h2c: refused with a 502, not sent as a plain GET.
  const ws = await rawExchange(port, 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  assert.equal(statusOf(ws.text), 502);
});
