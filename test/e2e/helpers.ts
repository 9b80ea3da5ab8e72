// Shared pieces of the end-to-end tests: a real echo backend, a config
// directory in a temp folder, and a running standalone Gatehouse.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import pino from 'pino';
import { startStandalone, type Standalone } from '../../src/control/standalone.ts';

export interface EchoBackend { port: number; name: string; close(): Promise<void>; requests: number }

/** An HTTP server answering JSON {backend, method, path, headers}. */
export async function startEcho(name: string): Promise<EchoBackend> {
  const b: EchoBackend = { port: 0, name, requests: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    b.requests++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ backend: name, method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as AddressInfo).port;
  b.close = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return b;
}

export function tempConfigDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-e2e-'));
}

/** Writes a file the way editors and the conformance runner do: temp file, then rename. */
export function writeConfig(dir: string, file: string, text: string): void {
  const tmp = path.join(dir, `.${file}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, file));
}

export async function startGatehouse(configDir: string, addressPool: string): Promise<Standalone & { admin: string }> {
  const log = pino({ level: process.env.GATEHOUSE_TEST_LOG ?? 'silent' });
  const gw = await startStandalone({ configDir, adminAddress: '127.0.0.1:0', addressPool, log });
  return Object.assign(gw, { admin: `127.0.0.1:${gw.adminPort}` });
}

/** Service + EndpointSlice pointing at a local backend. */
export function serviceYAML(ns: string, name: string, port: number, backendPort: number): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}}
spec: {ports: [{name: http, port: ${port}}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: ${ns}, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: http, port: ${backendPort}}]
endpoints: [{addresses: [127.0.0.1]}]
`;
}

export const GATEWAY_CLASS = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
`;

/** Gateway default/gw of class gatehouse, with one HTTP listener named http on `port`. */
export function gatewayYAML(port: number): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: ${port}, protocol: HTTP}]
`;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

export interface ServeProcess {
  readonly pid: number;
  /** Everything the process printed so far. */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not drained and exited in time; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

export const BIN = path.join(import.meta.dirname, '../../bin/gatehouse.js');

/** `gatehouse serve ARGS` as a real process, the way users start it. */
export function spawnServe(args: string[], env: NodeJS.ProcessEnv = process.env): ServeProcess {
  const proc = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  proc.stdout.on('data', (c) => { output += c; });
  proc.stderr.on('data', (c) => { output += c; });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    pid: proc.pid!,
    output: () => output,
    async stop(graceMs = 15_000) {
      proc.kill('SIGTERM');
      // A process that does not drain and exit in time is a failure, not a hang of the suite.
      const killer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}
