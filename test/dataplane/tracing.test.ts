// Tracing over real sockets: traceparent continued or started and sent to
// the backend, tracestate passed on, spans exported over OTLP/HTTP JSON to
// a collector (a real HTTP server here), the sampling rate and the
// caller's decision honoured, nothing added when tracing is off.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTraceparent } from '../../src/dataplane/tracing.ts';
import { AccessLogWriter } from '../../src/dataplane/access-log-writer.ts';
import { backend, cluster, freePort, match, request, route, simpleIR, startBackend, startDataPlane } from './helpers.ts';

interface Collector { port: number; spans: Record<string, unknown>[]; bodies: unknown[] }

async function startCollector(t: TestContext): Promise<Collector> {
  const c: Collector = { port: 0, spans: [], bodies: [] };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (x: Buffer) => chunks.push(x));
    req.on('end', () => {
      assert.equal(req.url, '/v1/traces');
      assert.equal(req.headers['content-type'], 'application/json');
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
      c.bodies.push(body);
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) c.spans.push(...ss.spans);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  c.port = (server.address() as net.AddressInfo).port;
  return c;
}

async function until<T>(what: string, fn: () => T | undefined, ms = 5_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

test('a caller\'s trace is continued: the backend gets the trace id with the gateway\'s span as parent, tracestate as sent; the span reaches the collector', async (t) => {
  const web = await startBackend(t, 'web');
  const collector = await startCollector(t);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-tracing-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const logFile = path.join(dir, 'access.log');
  const options = { target: logFile, format: 'json' as const, sample: 1, statusClasses: [] };
  const writer = new AccessLogWriter(options);
  t.after(() => writer.close());
  const dp = await startDataPlane(t, {
    tracing: { endpoint: `http://127.0.0.1:${collector.port}/v1/traces`, sample: 1, serviceName: 'gw-test' },
    accessLog: { options, port: writer.connect() },
  });
  await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/'), [backend('web')])], [cluster('web', web)]));
  const reply = await request(port, '/servers?x=1', { host: 'nova.example', headers: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=abc' } });
  assert.equal(reply.status, 200);
  const seen = reply.json();
  const sent = parseTraceparent(seen.headers.traceparent as string);
  assert.ok(sent !== null, String(seen.headers.traceparent));
  assert.equal(sent.traceId, TRACE);
  assert.notEqual(sent.parentSpanId, PARENT, 'the gateway\'s own span is the backend\'s parent');
  assert.equal(sent.sampled, true);
  assert.equal(seen.headers.tracestate, 'vendor=abc');

  const span = await until('the span', () => collector.spans[0]);
  assert.equal(span.traceId, TRACE);
  assert.equal(span.parentSpanId, PARENT);
  assert.equal(span.spanId, sent.parentSpanId);
  assert.equal(span.kind, 2);
  assert.equal(span.name, 'GET');
  assert.ok(BigInt(span.endTimeUnixNano as string) > BigInt(span.startTimeUnixNano as string));
  const attrs = Object.fromEntries((span.attributes as { key: string; value: Record<string, string> }[]).map((a) => [a.key, Object.values(a.value)[0]]));
  assert.equal(attrs['http.response.status_code'], '200');
  assert.equal(attrs['url.path'], '/servers?x=1');
  assert.equal(attrs['gatehouse.route'], 'ns/web/0/0');
  const resource = (collector.bodies[0] as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue: string } }[] } }[] }).resourceSpans[0].resource;
  assert.deepEqual(resource.attributes, [{ key: 'service.name', value: { stringValue: 'gw-test' } }]);
  // Counted when the collector's answer comes back, which is after it has the span.
  await until('the export counted', () => (dp.metricsSnapshot().spansExported === 1 ? true : undefined));
  // The access log line names the trace.
  const line = await until('the access log line', () => (fs.existsSync(logFile) && fs.readFileSync(logFile, 'utf8') !== '' ? fs.readFileSync(logFile, 'utf8') : undefined));
  assert.equal((JSON.parse(line) as { trace_id: string }).trace_id, TRACE);
});

test('without a traceparent a trace starts; sampling 0 exports nothing yet still propagates; a caller\'s "not sampled" is kept', async (t) => {
  const web = await startBackend(t, 'web');
  const collector = await startCollector(t);
  const [sampledPort, unsampledPort] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${collector.port}/v1/traces`;
  const sampled = await startDataPlane(t, { tracing: { endpoint, sample: 1, serviceName: 'gatehouse' } });
  const never = await startDataPlane(t, { tracing: { endpoint, sample: 0, serviceName: 'gatehouse' } });
  await sampled.apply(simpleIR(sampledPort, [route('ns/web/0/0', match('/'), [backend('web')])], [cluster('web', web)]));
  await never.apply(simpleIR(unsampledPort, [route('ns/web/0/0', match('/'), [backend('web')])], [cluster('web', web)]));

  const started = parseTraceparent((await request(sampledPort, '/new')).json().headers.traceparent as string)!;
  assert.ok(started !== null && started.sampled);
  const notSampled = parseTraceparent((await request(unsampledPort, '/none')).json().headers.traceparent as string)!;
  assert.ok(notSampled !== null && !notSampled.sampled);
  // The caller said not sampled: kept, though this gateway samples everything new.
  const kept = parseTraceparent((await request(sampledPort, '/kept', { headers: { traceparent: `00-${TRACE}-${PARENT}-00` } })).json().headers.traceparent as string)!;
  assert.equal(kept.traceId, TRACE);
  assert.equal(kept.sampled, false);
  // A malformed traceparent is replaced by a new trace.
  const fresh = parseTraceparent((await request(sampledPort, '/bad', { headers: { traceparent: `00-${'0'.repeat(32)}-${PARENT}-01` } })).json().headers.traceparent as string)!;
  assert.notEqual(fresh.traceId, '0'.repeat(32));

  await until('the sampled spans', () => (collector.spans.length >= 2 ? true : undefined));
  await new Promise((r) => setTimeout(r, 1_300));
  const ids = collector.spans.map((s) => s.traceId).sort();
  assert.deepEqual(ids, [started.traceId, fresh.traceId].sort(), 'only the two sampled requests were exported');
  assert.ok(!('parentSpanId' in collector.spans.find((s) => s.traceId === started.traceId)!), 'a new trace has no parent');
});

test('tracing off: no traceparent is added, one sent is passed on as it came', async (t) => {
  const web = await startBackend(t, 'web');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/'), [backend('web')])], [cluster('web', web)]));
  assert.equal((await request(port, '/')).json().headers.traceparent, undefined);
  const sent = `00-${TRACE}-${PARENT}-01`;
  assert.equal((await request(port, '/', { headers: { traceparent: sent } })).json().headers.traceparent, sent);
});

test('a collector that is down: spans are dropped and counted, requests unaffected', async (t) => {
  const web = await startBackend(t, 'web');
  const deadPort = await freePort();
  const port = await freePort();
  const dp = await startDataPlane(t, { tracing: { endpoint: `http://127.0.0.1:${deadPort}/v1/traces`, sample: 1, serviceName: 'gatehouse' } });
  await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/'), [backend('web')])], [cluster('web', web)]));
  for (let i = 0; i < 3; i++) assert.equal((await request(port, '/')).status, 200);
  await until('spans dropped', () => (dp.metricsSnapshot().spansDropped === 3 ? true : undefined));
});
