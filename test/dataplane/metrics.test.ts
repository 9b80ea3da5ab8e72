// The data plane's metrics after known traffic over real sockets: requests
// by route, rule, backend and status class, histograms, connect failures,
// retries, connections and TLS handshakes; rendered as /metrics renders
// them, and the series cap.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { renderMetrics } from '../../src/admin/metrics-text.ts';
import { DataPlaneMetrics, OVERFLOW_LABEL } from '../../src/dataplane/metrics.ts';
import type { DataPlane } from '../../src/dataplane/dataplane.ts';
import {
  backend, cluster, freePort, gatewayListener, ir, listener, match, request, route, selfSigned, simpleIR, startBackend, startDataPlane, vhost,
} from './helpers.ts';
import { h2connect, h2request } from './h2-helpers.ts';
import { sampleValue } from './prom-text.ts';

async function scrape(dp: DataPlane): Promise<string> {
  return renderMetrics(dp.metricsSnapshot(), null);
}

/** A backend answering every request with `status`. */
async function failingBackend(t: TestContext, status: number): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((_req, res) => {
    hits++;
    res.writeHead(status, { 'content-length': '4' });
    res.end('fail');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return { port: (server.address() as net.AddressInfo).port, hits: () => hits };
}

const ROUTE = { gateway: 'ns/gw', listener: 'http', route: 'ns/web', rule: '0', backend: 'ns/web/80' };

test('N requests to a route: counted N as 2xx with its gateway, listener, route, rule and backend, and in the duration histograms', async (t) => {
  const web = await startBackend(t, 'web');
  const bad = await failingBackend(t, 503);
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(simpleIR(port, [
    route('ns/fails/rule-a/0', match('/fail'), [backend('ns/fails/80')]),
    route('ns/web/0/0', match('/'), [backend('ns/web/80')]),
  ], [cluster('ns/web/80', web), cluster('ns/fails/80', bad)]));
  for (let i = 0; i < 7; i++) assert.equal((await request(port, `/item/${i}`)).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await request(port, '/fail')).status, 503);

  const text = await scrape(dp);
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { ...ROUTE, code_class: '2xx' }), 7, text);
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { ...ROUTE, code_class: '5xx' }), undefined, 'no 5xx on the good route');
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { route: 'ns/fails', rule: 'rule-a', backend: 'ns/fails/80', code_class: '5xx' }), 3);
  assert.equal(sampleValue(text, 'gatehouse_http_request_duration_seconds_count', ROUTE), 7);
  assert.equal(sampleValue(text, 'gatehouse_http_request_duration_seconds_bucket', { ...ROUTE, le: '+Inf' }), 7);
  assert.ok(sampleValue(text, 'gatehouse_http_request_duration_seconds_sum', ROUTE)! > 0);
  assert.equal(sampleValue(text, 'gatehouse_upstream_request_duration_seconds_count', { backend: 'ns/web/80' }), 7);
  assert.equal(sampleValue(text, 'gatehouse_upstream_request_duration_seconds_count', { backend: 'ns/fails/80' }), 3);
  // No path or host from a request becomes a label.
  assert.ok(!text.includes('/item/'), 'paths are never labels');
  // Each request on a connection of its own (agent: false).
  assert.equal(sampleValue(text, 'gatehouse_downstream_connections_total', { address: `127.0.0.1:${port}` }), 10);
});

test('a request no route takes is counted with the listener and empty route labels; one with no listener with all empty', async (t) => {
  const web = await startBackend(t, 'web');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(ir([listener(port, [gatewayListener('ns/gw/web', 'web.example', [vhost('web.example', [route('ns/web/0/0', match('/api'), [backend('web')])])])])], [cluster('web', web)]));
  assert.equal((await request(port, '/other', { host: 'web.example' })).status, 404);
  assert.equal((await request(port, '/api', { host: 'elsewhere.example' })).status, 404);
  const text = await scrape(dp);
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { gateway: 'ns/gw', listener: 'web', route: '', rule: '', backend: '', code_class: '4xx' }), 1);
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { gateway: '', listener: '', route: '', code_class: '4xx' }), 1);
});

test('a backend that refuses connections: a connect failure on its cluster, the 503 counted; retries counted per try', async (t) => {
  const closedPort = await freePort();
  const bad = await failingBackend(t, 500);
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(simpleIR(port, [
    route('ns/retry/0/0', match('/retry'), [backend('flaky')], { retry: { codes: [500], attempts: 2, backoffMs: 1 } }),
    route('ns/down/0/0', match('/'), [backend('down')]),
  ], [cluster('down', { port: closedPort }), cluster('flaky', bad)]));
  assert.equal((await request(port, '/')).status, 503);
  assert.equal((await request(port, '/retry')).status, 500);
  assert.equal(bad.hits(), 3);
  const text = await scrape(dp);
  assert.equal(sampleValue(text, 'gatehouse_upstream_connect_failures_total', { backend: 'down' }), 1);
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { route: 'ns/down', backend: 'down', code_class: '5xx' }), 1);
  assert.equal(sampleValue(text, 'gatehouse_upstream_retries_total', { backend: 'flaky' }), 2);
  assert.equal(sampleValue(text, 'gatehouse_upstream_connect_failures_total', { backend: 'flaky' }), 0);
  assert.equal(sampleValue(text, 'gatehouse_upstream_request_duration_seconds_count', { backend: 'flaky' }), 3, 'each try timed');
});

test('TLS: handshakes and refused handshakes counted on the listener; HTTP/2 over TLS requests counted like HTTP/1.1', async (t) => {
  const web = await startBackend(t, 'web');
  const port = await freePort();
  const dp = await startDataPlane(t);
  const cert = selfSigned('web.example');
  await dp.apply(ir([listener(port, [gatewayListener('ns/gw/https', 'web.example', [vhost('web.example', [route('ns/web/0/0', match('/'), [backend('web')])])])],
    [{ serverNames: ['web.example'], certChain: cert.cert, privateKey: cert.key }])], [cluster('web', web)]));
  assert.equal((await request(port, '/', { host: 'web.example', https: { servername: 'web.example' } })).status, 200);
  const session = await h2connect(port, { tls: true, servername: 'web.example' });
  t.after(() => session.close());
  assert.equal((await h2request(session, '/h2', { authority: 'web.example' })).status, 200);
  // A server name no listener serves: refused at the hello.
  await new Promise<void>((resolve) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'other.example', rejectUnauthorized: false });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
  const address = { address: `127.0.0.1:${port}` };
  // The server sees the other two connections close a moment after their clients do.
  let text = await scrape(dp);
  for (let i = 0; i < 100 && sampleValue(text, 'gatehouse_downstream_connections_active', address) !== 1; i++) {
    await new Promise((r) => setTimeout(r, 20));
    text = await scrape(dp);
  }
  assert.equal(sampleValue(text, 'gatehouse_tls_handshakes_total', address), 2);
  assert.equal(sampleValue(text, 'gatehouse_tls_handshake_errors_total', address), 1);
  assert.equal(sampleValue(text, 'gatehouse_downstream_connections_total', address), 3);
  assert.equal(sampleValue(text, 'gatehouse_downstream_connections_active', address), 1, 'the HTTP/2 session is still open');
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { gateway: 'ns/gw', listener: 'https', route: 'ns/web', backend: 'web', code_class: '2xx' }), 2);
});

test('the series cap: label sets beyond it are counted in the overflow series, and said', () => {
  const m = new DataPlaneMetrics(2);
  const a = m.requestSeries('ns/gw/l', 'ns/r/0/0', 'c');
  const b = m.requestSeries('ns/gw/l', 'ns/r/1/0', 'c');
  const c = m.requestSeries('ns/gw/l', 'ns/r/2/0', 'c');
  assert.notEqual(a, b);
  assert.equal(m.requestSeries('ns/gw/l', 'ns/r/0/0', 'c'), a, 'the same labels, the same series');
  assert.ok(m.isOverflow(c));
  c.classes[2]++;
  m.overflow();
  const text = renderMetrics(m.snapshot(), null);
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', { gateway: OVERFLOW_LABEL, route: OVERFLOW_LABEL, code_class: '2xx' }), 1);
  assert.equal(sampleValue(text, 'gatehouse_metrics_overflow_total'), 1);
  // The cap covers every kind of series.
  assert.equal(m.upstream('x').labels[0], OVERFLOW_LABEL);
});

test('label values are escaped as the text format asks', () => {
  const m = new DataPlaneMetrics();
  m.requestSeries('ns/gw/l', 'ns/r"x\\y/0/0', null).classes[2]++;
  const text = renderMetrics(m.snapshot(), null);
  assert.ok(text.includes('route="ns/r\\"x\\\\y"'), text);
});
