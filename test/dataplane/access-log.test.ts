// Access logs over real sockets: the fields of a line for HTTP/1.1,
// HTTP/2 and TLS, JSON and text, the status filter and sampling, and a
// sink nobody reads (a FIFO) that must not slow requests down: its lines
// are dropped, counted and said.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AccessLogOptions } from '../../src/dataplane/access-log.ts';
import { AccessLogWriter } from '../../src/dataplane/access-log-writer.ts';
import type { DataPlaneOptions } from '../../src/dataplane/dataplane.ts';
import {
  backend, cluster, freePort, gatewayListener, ir, listener, match, request, route, selfSigned, simpleIR, startBackend, startDataPlane, vhost,
} from './helpers.ts';
import { h2connect, h2request } from './h2-helpers.ts';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-accesslog-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function accessLogOptions(target: string, extra: Partial<AccessLogOptions> = {}): AccessLogOptions {
  return { target, format: 'json', sample: 1, statusClasses: [], ...extra };
}

/** A data plane whose access log goes to `target` through a writer thread. */
async function withAccessLog(t: Parameters<typeof startDataPlane>[0], options: AccessLogOptions, more: DataPlaneOptions = {}) {
  const writer = new AccessLogWriter(options);
  t.after(() => writer.close());
  const dp = await startDataPlane(t, { ...more, accessLog: { options, port: writer.connect() } });
  return { dp, writer };
}

/** The file's lines once it has `count` of them (lines are batched, then written by another thread). */
async function linesOf(file: string, count: number): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
    if (lines.length >= count) return lines;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${file}: fewer than ${count} lines`);
}

test('JSON lines: HTTP/1.1, HTTP/2 and TLS requests with the fields people grep for', async (t) => {
  const web = await startBackend(t, 'web');
  const file = path.join(tempDir(t), 'access.log');
  const plain = await freePort();
  const secure = await freePort();
  const cert = selfSigned('web.example');
  const routes = [route('ns/web/0/0', match('/'), [backend('ns/web/80')])];
  const { dp } = await withAccessLog(t, accessLogOptions(file));
  await dp.apply(ir([
    listener(plain, [gatewayListener('ns/gw/http', null, [vhost('*', routes)])]),
    listener(secure, [gatewayListener('ns/gw/https', 'web.example', [vhost('web.example', routes)])], [{ serverNames: ['web.example'], certChain: cert.cert, privateKey: cert.key }]),
  ], [cluster('ns/web/80', web)]));

  assert.equal((await request(plain, '/v2.1/servers?limit=1', { host: 'nova.example', method: 'POST', body: 'hello' })).status, 200);
  const h2 = await h2connect(plain);
  t.after(() => h2.close());
  assert.equal((await h2request(h2, '/h2', { authority: 'nova.example' })).status, 200);
  assert.equal((await request(secure, '/tls', { host: 'web.example', https: { servername: 'web.example' } })).status, 200);

  const lines = (await linesOf(file, 3)).map((l) => JSON.parse(l) as Record<string, unknown>);
  const byPath = new Map(lines.map((l) => [l.path, l]));
  const h1 = byPath.get('/v2.1/servers?limit=1')!;
  assert.equal(h1.method, 'POST');
  assert.equal(h1.authority, 'nova.example');
  assert.equal(h1.protocol, 'HTTP/1.1');
  assert.equal(h1.response_code, 200);
  assert.equal(h1.client_address, '127.0.0.1');
  assert.equal(h1.bytes_received, 5);
  assert.ok((h1.bytes_sent as number) > 0);
  assert.ok(typeof h1.duration === 'number' && h1.duration > 0);
  assert.equal(h1.upstream_host, `http://127.0.0.1:${web.port}`);
  assert.ok(typeof h1.upstream_service_time === 'number' && h1.upstream_service_time <= (h1.duration as number));
  assert.equal(h1.gateway, 'ns/gw');
  assert.equal(h1.listener, 'http');
  assert.equal(h1.route, 'ns/web');
  assert.equal(h1.rule, '0');
  assert.equal(h1.backend, 'ns/web/80');
  assert.ok(!Number.isNaN(Date.parse(h1.start_time as string)));
  assert.ok(!('requested_server_name' in h1), 'no TLS fields on plain HTTP');
  assert.equal(byPath.get('/h2')!.protocol, 'HTTP/2');
  const overTls = byPath.get('/tls')!;
  assert.equal(overTls.requested_server_name, 'web.example');
  assert.match(overTls.tls_version as string, /^TLSv1\.[23]$/);
  assert.equal(overTls.listener, 'https');
  const snap = dp.metricsSnapshot();
  assert.equal(snap.accessLogLines, 3);
  assert.equal(snap.accessLogDropped, 0);
});

test('text lines; only the status classes asked for; a request a client sends to break the line cannot', async (t) => {
  const web = await startBackend(t, 'web');
  const file = path.join(tempDir(t), 'access.log');
  const port = await freePort();
  const { dp } = await withAccessLog(t, accessLogOptions(file, { format: 'text', statusClasses: [4, 5] }));
  await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/api'), [backend('web')])], [cluster('web', web)]));
  assert.equal((await request(port, '/api/ok')).status, 200);
  assert.equal((await request(port, '/missing', { host: 'evil.example' })).status, 404);
  assert.equal((await request(port, '/api/x', { host: 'a"b' })).status, 400);
  const lines = await linesOf(file, 2);
  await new Promise((r) => setTimeout(r, 150));
  const all = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  assert.equal(all.length, 2, `the 200 is not logged: ${all.join('\n')}`);
  assert.match(lines[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z 127\.0\.0\.1 "GET \/missing HTTP\/1\.1" 404 0 \d+ [\d.]+ms host="evil\.example" gateway=ns\/gw listener=http$/);
  assert.match(lines[1], / 400 /);
  assert.equal(all.every((l) => !l.includes('\n')), true);
});

test('sampling 0 logs nothing; the flags parse and refuse what they should', async (t) => {
  const { parseObservabilityFlags } = await import('../../src/cli/observability-flags.ts');
  assert.deepEqual(parseObservabilityFlags({ 'access-log': 'stdout', 'access-log-status': '4xx,5xx', 'access-log-sample': '0.5', 'access-log-format': 'text' }), {
    accessLog: { target: 'stdout', format: 'text', sample: 0.5, statusClasses: [4, 5] },
  });
  assert.match(parseObservabilityFlags({ 'access-log': 'stdout', 'access-log-status': '6xx' }) as string, /--access-log-status: .*6xx/);
  assert.match(parseObservabilityFlags({ 'access-log': 'stdout', 'access-log-sample': '2' }) as string, /--access-log-sample/);
  assert.match(parseObservabilityFlags({ 'access-log': 'stdout', 'access-log-format': 'xml' }) as string, /--access-log-format/);
  assert.match(parseObservabilityFlags({ 'metrics-max-series': '0' }) as string, /--metrics-max-series/);

  const web = await startBackend(t, 'web');
  const file = path.join(tempDir(t), 'access.log');
  const port = await freePort();
  const { dp } = await withAccessLog(t, accessLogOptions(file, { sample: 0 }));
  await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/'), [backend('web')])], [cluster('web', web)]));
  for (let i = 0; i < 5; i++) assert.equal((await request(port, '/')).status, 200);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '', '');
});

test('a sink nobody reads (a FIFO): requests are not slowed, lines beyond the buffer are dropped, counted and said', { timeout: 60_000 }, async (t) => {
  const web = await startBackend(t, 'web');
  const dir = tempDir(t);
  const fifo = path.join(dir, 'access.fifo');
  execFileSync('mkfifo', [fifo]);
  // A reader that never reads: writes succeed until the pipe (64 KiB) is full, then block.
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const warnings: Record<string, unknown>[] = [];
  const port = await freePort();
  const { dp, writer } = await withAccessLog(t, accessLogOptions(fifo), {
    log: (level, msg, fields) => { if (level === 'warn' && msg.startsWith('access log')) warnings.push(fields ?? {}); },
  });
  // Closing the read end unblocks the writer thread (EPIPE), so that it can stop.
  t.after(async () => { fs.closeSync(reader); await writer.close(); });
  assert.equal(await writer.opened, null);
  await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/'), [backend('web')])], [cluster('web', web)]));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.after(() => agent.destroy());
  // 4 KiB paths: ~4.5 KiB lines; 1.5 MiB of them is more than the pipe, the writer's share and the buffer hold.
  const longPath = `/${'x'.repeat(4096)}`;
  const started = performance.now();
  let slowest = 0;
  for (let i = 0; i < 350; i++) {
    const t0 = performance.now();
    assert.equal((await request(port, longPath, { agent })).status, 200);
    slowest = Math.max(slowest, performance.now() - t0);
  }
  const elapsed = performance.now() - started;
  const snap = dp.metricsSnapshot();
  assert.ok(snap.accessLogDropped > 0, `lines dropped: ${JSON.stringify({ lines: snap.accessLogLines, dropped: snap.accessLogDropped })}`);
  assert.ok(snap.accessLogLines < 350 - snap.accessLogDropped + 1);
  assert.ok(warnings.length >= 1 && (warnings[0].dropped as number) > 0, `warned: ${JSON.stringify(warnings)}`);
  assert.equal(warnings.length, 1, 'one warning per interval, not one per line');
  // Not blocked: every request answered promptly while the sink was stuck.
  assert.ok(slowest < 1_000, `slowest request ${slowest.toFixed(0)} ms`);
  assert.ok(elapsed < 20_000, `350 requests took ${elapsed.toFixed(0)} ms`);
});

test('the client address in a line is the one a ClientTrafficPolicy resolved (two trusted X-Forwarded-For hops), else the peer', async (t) => {
  const web = await startBackend(t, 'web');
  const file = path.join(tempDir(t), 'access.log');
  const withPolicy = await freePort();
  const without = await freePort();
  const routes = [route('ns/web/0/0', match('/'), [backend('ns/web/80')])];
  const { dp } = await withAccessLog(t, accessLogOptions(file));
  const resolving = listener(withPolicy, [gatewayListener('ns/gw/vip', null, [vhost('*', routes)])]);
  resolving.client = { policy: 'ns/vip', clientIP: { xForwardedFor: { numTrustedHops: 2 } } };
  await dp.apply(ir([resolving, listener(without, [gatewayListener('ns/gw/plain', null, [vhost('*', routes)])])], [cluster('ns/web/80', web)]));
  const chain = { 'x-forwarded-for': '203.0.113.7, 10.0.0.5' };
  assert.equal((await request(withPolicy, '/a', { headers: chain })).status, 200);
  assert.equal((await request(without, '/b', { headers: chain })).status, 200);
  const lines = (await linesOf(file, 2)).map((l) => JSON.parse(l) as { path: string; client_address: string });
  assert.equal(lines.find((l) => l.path === '/a')?.client_address, '203.0.113.7');
  assert.equal(lines.find((l) => l.path === '/b')?.client_address, '127.0.0.1', 'no policy: nothing in the header is believed');
});
