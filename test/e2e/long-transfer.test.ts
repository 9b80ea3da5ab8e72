// Long transfers through a real `gatehouse serve`, as glance streams
// images: a 2 GiB response and a 2 GiB request body go through with the
// gateway's memory flat (its RSS sampled from /proc while they run, bound:
// idle RSS + 200 MiB), every byte checked; and a slow download lasting
// over 60 s on a route with `timeouts.request: 120s` completes: no default
// timeout cuts a transfer that keeps moving. The same slow download on a
// route with a 3 s request timeout is cut at 3 s: timeouts.request covers
// the whole exchange, body included.
//
// Bodies come from one random 1 MiB block repeated, so nothing is held or
// read from disk, and each side checks every byte against the block with
// memcmp.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { freePort, GATEWAY_CLASS, gatewayYAML, serviceYAML, spawnServe, tempConfigDir, waitFor, writeConfig, type ServeProcess } from './helpers.ts';

const MiB = 1024 * 1024;
const BLOCK = crypto.randomBytes(MiB);
const TOTAL = 2 * 1024 * MiB;
/** What the gateway may grow by during a transfer, over its idle RSS. */
const RSS_GROWTH_BOUND = 200 * MiB;

/** Checks `chunk`, found at `offset` of a body made of BLOCK repeated; returns the offset after it. */
function verify(chunk: Buffer, offset: number): number {
  let i = 0;
  while (i < chunk.length) {
    const at = (offset + i) % BLOCK.length;
    const n = Math.min(chunk.length - i, BLOCK.length - at);
    if (chunk.compare(BLOCK, at, at + n, i, i + n) !== 0) throw new Error(`byte mismatch within ${offset + i}..${offset + i + n}`);
    i += n;
  }
  return offset + chunk.length;
}

function* blocks(total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += BLOCK.length) yield sent + BLOCK.length <= total ? BLOCK : BLOCK.subarray(0, total - sent);
}

/** The gateway process's resident set (kB in /proc, returned in bytes). */
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Samples `pid`'s RSS every 50 ms until stopped; the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssOf(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssOf(pid));
    },
  };
}

/**
 * A backend: GET /download streams TOTAL bytes (Content-Length);
 * POST /upload checks and counts the body it gets and answers
 * {bytes, ok}; GET /trickle?ms=N sends 16 KiB every 250 ms for N ms (chunked).
 */
async function startBackend(t: TestContext): Promise<number> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://backend');
    if (url.pathname === '/download') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) });
      Readable.from(blocks(TOTAL)).pipe(res);
      return;
    }
    if (url.pathname === '/upload') {
      let offset = 0;
      let error: string | null = null;
      req.on('data', (chunk: Buffer) => {
        if (error !== null) return;
        try {
          offset = verify(chunk, offset);
        } catch (err) {
          error = (err as Error).message;
        }
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes: offset, ok: error === null, error }));
      });
      return;
    }
    if (url.pathname === '/trickle') {
      const until = Date.now() + Number(url.searchParams.get('ms'));
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let offset = 0;
      const timer = setInterval(() => {
        if (Date.now() >= until) {
          clearInterval(timer);
          res.end();
          return;
        }
        const at = offset % BLOCK.length;
        const piece = BLOCK.subarray(at, Math.min(at + 16 * 1024, BLOCK.length));
        offset += piece.length;
        res.write(piece);
      }, 250);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(404).end();
  });
  server.keepAliveTimeout = 30_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return (server.address() as AddressInfo).port;
}

/** A route for `path` to the backend; `lines`: more fields of its rule. */
function route(name: string, path: string, ...lines: string[]): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${path}}}]
    backendRefs: [{name: store, port: 80}]
${lines.map((l) => `    ${l}\n`).join('')}`;
}

interface Gateway {
  port: number;
  serve: ServeProcess;
}

async function startGateway(t: TestContext, backendPort: number): Promise<Gateway> {
  const dir = tempConfigDir();
  const port = await freePort();
  const adminPort = await freePort();
  writeConfig(dir, 'all.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(port)}---
${serviceYAML('default', 'store', 80, backendPort)}---
${route('images', '/download')}---
${route('uploads', '/upload')}---
${route('slow', '/trickle', 'timeouts: {request: 120s}')}---
${route('hurried', '/hurried', 'timeouts: {request: 3s}',
    'filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /trickle}}}]')}`);
  const serve = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '2', '--log-level', 'warn', '--shutdown-delay', '0s']);
  t.after(async () => {
    const code = await serve.stop(20_000);
    assert.equal(code, 0, `exit code; output:\n${serve.output()}`);
  });
  await waitFor('readyz', async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 30_000);
  return { port, serve };
}

/** A GET through the gateway; every byte of the body goes to `onChunk`. */
function download(port: number, path: string, onChunk: (chunk: Buffer) => void): Promise<{ status: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.on('data', onChunk);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, complete: res.complete }));
      // A response cut short ends with 'aborted' then 'close', not 'end'.
      res.on('close', () => resolve({ status: res.statusCode ?? 0, complete: res.complete }));
      res.on('error', () => {});
    });
    req.on('error', reject);
  });
}

/** The idle RSS: after a warm-up exchange, with the collector done. */
async function idleRss(gw: Gateway): Promise<number> {
  const warm = await download(gw.port, '/trickle?ms=300', () => {});
  assert.equal(warm.status, 200);
  await new Promise((resolve) => setTimeout(resolve, 500));
  return rssOf(gw.serve.pid);
}

test('a 2 GiB response streams through with the gateway\'s memory flat', { timeout: 300_000 }, async (t) => {
  const gw = await startGateway(t, await startBackend(t));
  const idle = await idleRss(gw);
  const sampler = sampleRss(gw.serve.pid);
  const started = Date.now();
  let offset = 0;
  const result = await download(gw.port, '/download', (chunk) => {
    offset = verify(chunk, offset);
  });
  const peak = sampler.stop();
  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(`2 GiB down in ${seconds.toFixed(1)} s (${(TOTAL / MiB / seconds).toFixed(0)} MiB/s); gateway RSS idle ${(idle / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB`);
  assert.equal(result.status, 200);
  assert.equal(result.complete, true);
  assert.equal(offset, TOTAL);
  assert.ok(peak - idle < RSS_GROWTH_BOUND, `gateway RSS grew by ${((peak - idle) / MiB).toFixed(0)} MiB (idle ${(idle / MiB).toFixed(0)} MiB)`);
});

test('a 2 GiB request body streams through with the gateway\'s memory flat', { timeout: 300_000 }, async (t) => {
  const gw = await startGateway(t, await startBackend(t));
  const idle = await idleRss(gw);
  const sampler = sampleRss(gw.serve.pid);
  const started = Date.now();
  // Chunked: an upload of unknown length, the harder case for a proxy.
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/upload', method: 'PUT', agent: false, headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    Readable.from(blocks(TOTAL)).pipe(req);
  });
  const peak = sampler.stop();
  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(`2 GiB up in ${seconds.toFixed(1)} s (${(TOTAL / MiB / seconds).toFixed(0)} MiB/s); gateway RSS idle ${(idle / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB`);
  assert.equal(answer.status, 200, answer.body);
  assert.deepEqual(JSON.parse(answer.body), { bytes: TOTAL, ok: true, error: null });
  assert.ok(peak - idle < RSS_GROWTH_BOUND, `gateway RSS grew by ${((peak - idle) / MiB).toFixed(0)} MiB (idle ${(idle / MiB).toFixed(0)} MiB)`);
});

test('a slow download of over 60 s completes on a route with timeouts.request 120s; with 3s it is cut at 3 s', { timeout: 180_000 }, async (t) => {
  const gw = await startGateway(t, await startBackend(t));
  // Both at once: the cut one does not have to wait for the long one.
  const cut = (async () => {
    const started = Date.now();
    let offset = 0;
    const result = await download(gw.port, '/hurried?ms=10000', (chunk) => {
      offset = verify(chunk, offset);
    });
    return { ...result, ms: Date.now() - started, bytes: offset };
  })();
  const started = Date.now();
  let offset = 0;
  // 16 KiB every 250 ms for 61 s: past the 60 s defaults of the upstream
  // response and idle timeouts and of the response write timeout, none of
  // which may end a transfer that keeps moving.
  const slow = await download(gw.port, '/trickle?ms=61000', (chunk) => {
    offset = verify(chunk, offset);
  });
  const ms = Date.now() - started;
  t.diagnostic(`slow download: ${offset} bytes in ${(ms / 1000).toFixed(1)} s`);
  assert.equal(slow.status, 200);
  assert.equal(slow.complete, true, 'the slow download completed');
  assert.ok(ms >= 60_000, `took ${ms} ms`);
  assert.ok(offset >= 230 * 16 * 1024, `${offset} bytes`);

  const hurried = await cut;
  t.diagnostic(`3 s route: cut after ${hurried.ms} ms with ${hurried.bytes} bytes`);
  assert.equal(hurried.status, 200, 'the head came before the deadline');
  assert.equal(hurried.complete, false, 'cut: the body is incomplete');
  assert.ok(hurried.ms >= 2_900 && hurried.ms < 6_000, `cut after ${hurried.ms} ms`);
});
