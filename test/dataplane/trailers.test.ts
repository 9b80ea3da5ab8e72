// Trailer sections through the gateway, over real sockets: from an h2c
// backend (node's http2 server: a trailing HEADERS frame, gRPC's
// grpc-status) and from an HTTP/1.1 backend (a chunked trailer section),
// to HTTP/2 clients (h2c and h2 over TLS: a trailing HEADERS frame with
// END_STREAM) and to HTTP/1.1 clients (a chunked trailer section, only for
// one that sent `TE: trailers`, RFC 9110 §6.5). A gRPC trailers-only
// answer (a HEADERS frame that ends the stream) stays one; a trailer
// section over the header limits cuts the response.

import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { test, type TestContext } from 'node:test';
import type { Cluster } from '../../src/ir/types.ts';
import { h2connect } from './h2-helpers.ts';
import { backend, freePort, gatewayListener, ir, listener, match, rawExchange, route, selfSigned, startDataPlane, vhost } from './helpers.ts';

interface TrailerReply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  /** Whether the response HEADERS frame ended the stream. */
  headersEnded: boolean;
  trailers: http2.IncomingHttpHeaders | null;
  body: string;
}

function h2get(session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<TrailerReply> {
  const stream = session.request({ ':path': path, ':authority': 'example.com', ...headers });
  return new Promise((resolve, reject) => {
    const reply: TrailerReply = { status: 0, headers: {}, headersEnded: false, trailers: null, body: '' };
    stream.on('response', (h, flags) => {
      reply.status = Number(h[':status']);
      reply.headers = h;
      reply.headersEnded = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    stream.on('trailers', (h) => (reply.trailers = h));
    stream.setEncoding('utf8');
    stream.on('data', (c: string) => (reply.body += c));
    stream.on('end', () => resolve(reply));
    stream.on('error', reject);
    stream.on('close', () => {
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) reject(new Error(`stream reset with code ${stream.rstCode}`));
    });
  });
}

/** An h2c backend answering as gRPC servers do: body, then status in trailers; or status alone. */
async function startH2cBackend(t: TestContext): Promise<number> {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const path = headers[':path'];
    if (path === '/trailers-only') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not found' }, { endStream: true });
      return;
    }
    if (path === '/huge-trailers') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => {
        const big: http2.OutgoingHttpHeaders = {};
        for (let i = 0; i < 8; i++) big[`x-big-${i}`] = 'v'.repeat(4000);
        stream.sendTrailers(big);
      });
      stream.end('partial');
      return;
    }
    if (path === '/plain') {
      // No announcement: the section has no frame to go in at the front.
      stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-unannounced': '1' }));
      stream.end('plain body');
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-te-seen': String(headers['te'] ?? '') }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'all good' }));
    stream.end('grpc body');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  t.after(() => {
    for (const s of sessions) s.destroy();
  });
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP/1.1 backend ending a chunked body with a trailer section. */
async function startChunkedBackend(t: TestContext): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.setHeader('trailer', 'x-checksum');
    res.setHeader('x-te-seen', String(req.headers['te'] ?? ''));
    res.write('chunk one,');
    res.addTrailers({ 'x-checksum': 'abc123' });
    res.end('chunk two');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as net.AddressInfo).port;
}

test('trailer sections reach the client over HTTP/2 and HTTP/1.1', { timeout: 30_000 }, async (t) => {
  const [h2cPort, chunkedPort] = await Promise.all([startH2cBackend(t), startChunkedBackend(t)]);
  const plainPort = await freePort();
  const tlsPort = await freePort();
  const { cert, key } = selfSigned('example.com');
  const routes = [route('chunked', match('/chunked'), [backend('h1')]), route('grpc', match('/'), [backend('h2c')])];
  const gw = [gatewayListener('ns/gw/l', null, [vhost('example.com', routes)])];
  const clusters: Cluster[] = [
    { name: 'h2c', protocol: 'h2c', endpoints: [{ address: '127.0.0.1', port: h2cPort }] },
    { name: 'h1', protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: chunkedPort }] },
  ];
  const dp = await startDataPlane(t);
  const result = await dp.apply(ir([listener(plainPort, gw), listener(tlsPort, gw, [{ serverNames: ['*'], certChain: cert, privateKey: key }])], clusters));
  assert.deepEqual(result.listenerErrors, {});
  const h2c = await h2connect(plainPort);
  const h2tls = await h2connect(tlsPort, { tls: true });
  t.after(() => {
    h2c.destroy();
    h2tls.destroy();
  });

  for (const [name, session] of [['h2c', h2c], ['h2 over TLS', h2tls]] as const) {
    await t.test(`${name}: an h2c backend's trailing HEADERS frame arrives as one`, async () => {
      const reply = await h2get(session, '/svc/Method', { te: 'trailers', 'content-type': 'application/grpc' });
      assert.equal(reply.status, 200);
      assert.equal(reply.body, 'grpc body');
      assert.equal(reply.headers['x-te-seen'], 'trailers', 'TE: trailers reaches the backend');
      assert.ok(reply.trailers !== null, 'trailers arrive');
      assert.equal(reply.trailers['grpc-status'], '0');
      assert.equal(reply.trailers['grpc-message'], 'all good');
    });
    await t.test(`${name}: a trailers-only answer stays a HEADERS frame that ends the stream`, async () => {
      const reply = await h2get(session, '/trailers-only');
      assert.equal(reply.headersEnded, true);
      assert.equal(reply.headers['grpc-status'], '5');
      assert.equal(reply.headers['grpc-message'], 'not found');
      assert.equal(reply.trailers, null);
    });
    await t.test(`${name}: an HTTP/1.1 chunked trailer section arrives as a trailing HEADERS frame`, async () => {
      const reply = await h2get(session, '/chunked', { te: 'trailers' });
      assert.equal(reply.body, 'chunk one,chunk two');
      assert.equal(reply.trailers?.['x-checksum'], 'abc123');
    });
    await t.test(`${name}: an unannounced section on a plain response is dropped, the body intact`, async () => {
      const reply = await h2get(session, '/plain');
      assert.equal(reply.body, 'plain body');
      assert.equal(reply.trailers, null);
    });
    await t.test(`${name}: a trailer section over the header limit cuts the response`, async () => {
      await assert.rejects(h2get(session, '/huge-trailers'), /INTERNAL_ERROR|code 2\b/);
    });
  }

  await t.test('HTTP/1.1 client with TE: trailers gets the chunked trailer section', async () => {
    for (const path of ['/chunked', '/svc/Method']) {
      const { text } = await rawExchange(plainPort, `GET ${path} HTTP/1.1\r\nHost: example.com\r\nTE: trailers\r\nConnection: close\r\n\r\n`);
      assert.match(text, /^HTTP\/1\.1 200/);
      assert.match(text, /transfer-encoding: chunked/i);
      const tail = text.slice(text.lastIndexOf('\r\n0\r\n'));
      if (path === '/chunked') assert.match(tail, /\r\n0\r\nx-checksum: abc123\r\n\r\n$/);
      else assert.match(tail, /\r\n0\r\ngrpc-status: 0\r\ngrpc-message: all good\r\n\r\n$/);
    }
  });
  await t.test('HTTP/1.1 client without TE: trailers gets none', async () => {
    const { text } = await rawExchange(plainPort, 'GET /chunked HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.ok(text.endsWith('\r\n0\r\n\r\n'), text);
    assert.doesNotMatch(text, /abc123/);
  });
});
