// Regex safety on every launch path: a route whose regex backtracks
// catastrophically on a client's path must not stall the data plane,
// however Gatehouse was started. Without V8's linear-time fallback the
// request below takes about a minute; with it, milliseconds. Each path
// serves a route with `/(a+)+$` and must answer a 31-character path that
// does not match within two seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freePort, GATEWAY_CLASS, waitFor } from '../e2e/helpers.ts';

const ROOT = path.join(import.meta.dirname, '../..');
const EVIL_PATH = `/${'a'.repeat(30)}!`;
const BOUND_MS = 2_000;

function regexConfig(port: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-regex-'));
  fs.writeFileSync(path.join(dir, 'config.yaml'), `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: ${port}, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: regex, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/(a+)+$"}}]
    backendRefs: [{name: nowhere, port: 80}]
`);
  return dir;
}

function get(port: number, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => { res.resume(); resolve(res.statusCode!); });
    req.on('error', reject);
  });
}

/** Starts `command`, waits until `port` answers a harmless request, then times the evil one. */
async function assertFastOn(command: string[], port: number, cwd = ROOT): Promise<void> {
  // Its own process group, so that npm and the node it starts are stopped together.
  const proc: ChildProcess = spawn(command[0], command.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  proc.stdout!.on('data', (c) => { output += c; });
  proc.stderr!.on('data', (c) => { output += c; });
  try {
    await waitFor(`${command.join(' ')} to serve`, async () => (await get(port, '/b')) === 404, 15_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${output}`);
    });
    const started = performance.now();
    const status = await get(port, EVIL_PATH);
    const took = performance.now() - started;
    assert.equal(status, 404, 'the path does not match the regex');
    assert.ok(took < BOUND_MS, `answered in ${Math.round(took)} ms; the regex ran without the linear-time fallback`);
  } finally {
    try { process.kill(-proc.pid!, 'SIGKILL'); } catch { /* already gone */ }
  }
}

test('bin/gatehouse.js serve, data plane on the main thread', { timeout: 30_000 }, async () => {
  const port = await freePort();
  await assertFastOn([process.execPath, 'bin/gatehouse.js', 'serve', '--config-dir', regexConfig(port), '--admin-address', '127.0.0.1:0', '--workers', '0'], port);
});

test('bin/gatehouse.js serve, data plane in a worker thread', { timeout: 30_000 }, async () => {
  const port = await freePort();
  await assertFastOn([process.execPath, 'bin/gatehouse.js', 'serve', '--config-dir', regexConfig(port), '--admin-address', '127.0.0.1:0', '--workers', '1'], port);
});

test('npm start (node src/cli/main.ts, no launch shim)', { timeout: 30_000 }, async () => {
  const port = await freePort();
  await assertFastOn(['npm', 'start', '--silent', '--', 'serve', '--config-dir', regexConfig(port), '--admin-address', '127.0.0.1:0', '--workers', '0'], port);
});

test('a DataPlane built directly by a program', { timeout: 30_000 }, async () => {
  const port = await freePort();
  await assertFastOn([process.execPath, path.join(import.meta.dirname, 'fixtures/dataplane-regex.ts'), String(port)], port);
});
