// A backend for the end-to-end tests, run by the kubelet stand-in as a
// pod's container: answers every request with JSON naming its pod
// (POD_NAME, from the pod spec's fieldRef), the peer that connected (the
// proxy pod's address: which proxy carried the request) and the Host
// header. /healthz is its readiness probe. SIGTERM: stop accepting, let
// requests in flight finish, exit.
//
//   node echo-server.ts [--port 8080]
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' } } });
const pod = process.env.POD_NAME ?? 'unknown';

const server = http.createServer((req, res) => {
  // The request body is not needed: read and dropped, never buffered.
  req.resume();
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  const body = JSON.stringify({ pod, peer: req.socket.remoteAddress, host: req.headers.host ?? '', path: req.url });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
});
// Keep-alive connections from the proxies outlive any one request; the
// proxy's idle timeout is what ends them, so ours is longer.
server.keepAliveTimeout = 120_000;
server.listen({ host: '0.0.0.0', port: Number(values.port) }, () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', pod, port: Number(values.port), uid: process.getuid?.() })}\n`);
});

process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'SIGTERM: closing', pod })}\n`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  // Bounded: connections kept open by a client are cut after 10 s.
  setTimeout(() => process.exit(0), 10_000).unref();
});
