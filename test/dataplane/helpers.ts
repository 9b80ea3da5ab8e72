// Shared fixtures for the data plane tests: real echo backends, free ports,
// IR builders, a plain HTTP client and a raw-socket client.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { DataPlane, type DataPlaneOptions } from '../../src/dataplane/dataplane.ts';
import type {
  Cluster,
  Filter,
  GatewayListenerIR,
  IR,
  IRListener,
  RouteEntry,
  RouteMatch,
  TLSCertificate,
  VirtualHost,
  WeightedBackend,
} from '../../src/ir/types.ts';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface EchoReply {
  backend: string;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  rawHeaders: string[];
  bodyBytes: number;
}

export interface Backend {
  readonly name: string;
  readonly port: number;
  readonly server: http.Server;
  /** Requests received, in order. */
  readonly seen: EchoReply[];
  close(): Promise<void>;
}

/**
 * An echo backend. Request headers steer it:
 * `x-test-delay-ms` waits before answering, `x-test-echo-body` streams the
 * request body back, `x-test-response-headers` (JSON) adds response headers.
 */
export async function startBackend(t: TestContext, name: string): Promise<Backend> {
  const seen: EchoReply[] = [];
  const server = http.createServer((req, res) => {
    const delay = Number(req.headers['x-test-delay-ms'] ?? 0);
    const extra = req.headers['x-test-response-headers'];
    const reply = (): void => {
      if (typeof extra === 'string') {
        for (const [k, v] of Object.entries(JSON.parse(extra) as Record<string, string | string[]>)) res.setHeader(k, v);
      }
      res.setHeader('x-backend', name);
      if (req.headers['x-test-echo-body'] !== undefined) {
        res.setHeader('content-type', 'application/octet-stream');
        req.pipe(res);
        return;
      }
      let bodyBytes = 0;
      req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
      req.on('end', () => {
        const echo: EchoReply = {
          backend: name,
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers as Record<string, string | string[]>,
          rawHeaders: req.rawHeaders,
          bodyBytes,
        };
        seen.push(echo);
        const json = JSON.stringify(echo);
        res.setHeader('content-type', 'application/json');
        // Explicit, so a HEAD answer says how long the GET body would be.
        res.setHeader('content-length', Buffer.byteLength(json));
        res.end(json);
      });
    };
    if (delay > 0) setTimeout(reply, delay).unref();
    else reply();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const close = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(() => (server.listening ? close() : undefined));
  return { name, port, server, seen, close };
}

export async function startDataPlane(t: TestContext, opts: DataPlaneOptions = {}): Promise<DataPlane> {
  const dp = new DataPlane(opts);
  t.after(() => dp.close());
  return dp;
}

// ---- IR builders -------------------------------------------------------

export function match(path: string, type: RouteMatch['path']['type'] = 'PathPrefix', extra: Partial<RouteMatch> = {}): RouteMatch {
  return { path: { type, value: path }, headers: [], queryParams: [], ...extra };
}

export function backend(cluster: string | null, weight = 1, filters: Filter[] = []): WeightedBackend {
  return { cluster, weight, filters };
}

export function route(name: string, m: RouteMatch, backends: WeightedBackend[], extra: Partial<RouteEntry> = {}): RouteEntry {
  return { name, match: m, filters: [], backends, ...extra };
}

export function vhost(hostname: string, routes: RouteEntry[]): VirtualHost {
  return { hostname, routes };
}

export function gatewayListener(name: string, hostname: string | null, virtualHosts: VirtualHost[]): GatewayListenerIR {
  return { name, hostname, virtualHosts };
}

export function listener(port: number, gatewayListeners: GatewayListenerIR[], tls?: TLSCertificate[]): IRListener {
  return {
    key: `127.0.0.1:${port}`,
    address: '127.0.0.1',
    port,
    protocol: tls ? 'HTTPS' : 'HTTP',
    ...(tls ? { tls: { certificates: tls } } : {}),
    gatewayListeners,
  };
}

export function cluster(name: string, ...backends: { port: number }[]): Cluster {
  return { name, protocol: 'http1', endpoints: backends.map((b) => ({ address: '127.0.0.1', port: b.port })) };
}

export function ir(listeners: IRListener[], clusters: Cluster[]): IR {
  return { version: 1, listeners, clusters: Object.fromEntries(clusters.map((c) => [c.name, c])) };
}

/** One HTTP listener with one Gateway listener (any host) and one virtual host (`*`). */
export function simpleIR(port: number, routes: RouteEntry[], clusters: Cluster[]): IR {
  return ir([listener(port, [gatewayListener('ns/gw/http', null, [vhost('*', routes)])])], clusters);
}

// ---- clients -----------------------------------------------------------

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
  json<T = EchoReply>(): T;
}

export interface RequestOptions {
  host?: string;
  method?: string;
  headers?: http.OutgoingHttpHeaders | string[];
  body?: Buffer | string;
  agent?: http.Agent | false;
  https?: { servername?: string };
}

export function request(port: number, path: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const mod = options.https ? https : http;
    const headers = Array.isArray(options.headers)
      ? ['Host', options.host ?? 'example.com', ...options.headers]
      : { host: options.host ?? 'example.com', ...options.headers };
    const req = mod.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers,
        setHost: false,
        agent: options.agent ?? false,
        ...(options.https ? { servername: options.https.servername, rejectUnauthorized: false } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const text = body.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body,
            text,
            json: <T>() => JSON.parse(text) as T,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Writes `raw` bytes on a fresh socket and returns everything read until
 * the server closes (or `waitMs` passes: then `closed` is false).
 */
export function rawExchange(port: number, raw: string | Buffer, waitMs = 3_000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let finished = false;
    const finish = (closed: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('close', () => finish(true));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') finish(true);
      else reject(err);
    });
    socket.write(raw);
  });
}

/** Status line code of the first response in a raw exchange. */
export function statusOf(raw: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}

// ---- TLS material -------------------------------------------------------

const certDirs: string[] = [];
process.on('exit', () => {
  for (const dir of certDirs) rmSync(dir, { recursive: true, force: true });
});

/** A self-signed certificate for `cn`, also valid for `altNames`. */
export function selfSigned(cn: string, altNames: string[] = [cn]): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cert-'));
  certDirs.push(dir);
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync(
    '/usr/bin/openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', `/CN=${cn}`,
      '-addext', `subjectAltName=${altNames.map((n) => `DNS:${n}`).join(',')}`,
    ],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
