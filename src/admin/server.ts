// The admin HTTP API: health, readiness, the objects with their status,
// the configuration errors, and the current IR. Read-only, JSON.
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';

// require(), not import: importing node:http as an ES module loads node's
// bundled undici too (see src/dataplane/http/status-text.ts).
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export interface AdminServerOptions {
  /** `host:port`; `[::1]:port` for IPv6; port 0 picks a free one. */
  address: string;
  /** Every object held, with status (filtered here by ?kind, ?namespace, ?name). */
  resources(): unknown[];
  /** The configuration errors (ConfigError[] from the file provider). */
  errors(): unknown[];
  /** The current IR (or null before the first one). */
  config(): unknown;
  /** Whether the first load has been served. */
  ready(): boolean;
  /** The data-plane workers (pid, requests, applied config), when the data plane runs in workers. */
  workers?(): Promise<unknown[]>;
  /** Told about requests that failed (a callback threw). */
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface AdminServer {
  close(): Promise<void>;
  /** The port listened on (the one chosen, when the address asked for 0). */
  port: number;
}

/** `127.0.0.1:9000`, `[::1]:9000`, `:9000` (all interfaces), `localhost:0` -> host and port. */
export function parseAddress(address: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d+)$/.exec(address.trim());
  if (!m) throw new Error(`invalid admin address ${JSON.stringify(address)}: want host:port or [ipv6]:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`invalid admin address ${JSON.stringify(address)}: port out of range`);
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}

function sendJSON(res: ServerResponse, status: number, body: unknown, extraHeaders: Record<string, string> = {}): void {
  const text = JSON.stringify(body === undefined ? null : body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...extraHeaders,
  });
  res.end(text);
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function field(o: unknown, ...keys: string[]): unknown {
  let v: unknown = o;
  for (const k of keys) {
    if (!v || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** Objects filtered by the query: kind, namespace and name, each optional. */
export function filterResources(items: unknown[], query: URLSearchParams): unknown[] {
  const kind = query.get('kind');
  const namespace = query.get('namespace');
  const name = query.get('name');
  if (kind === null && namespace === null && name === null) return items;
  return items.filter((o) => (kind === null || field(o, 'kind') === kind)
    && (namespace === null || field(o, 'metadata', 'namespace') === namespace)
    && (name === null || field(o, 'metadata', 'name') === name));
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { host, port } = parseAddress(opts.address);
  const log = opts.log ?? (() => {});

  const server = http.createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      sendJSON(res, 400, { error: 'bad request URL' });
      return;
    }
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    const known = path === '/readyz' || path === '/healthz' || path === '/api/v1/resources' || path === '/api/v1/errors' || path === '/api/v1/config'
      || (path === '/api/v1/workers' && opts.workers !== undefined);
    if (!known) {
      sendJSON(res, 404, { error: `not found: ${path}` });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJSON(res, 405, { error: `method ${req.method} not allowed` }, { allow: 'GET, HEAD' });
      return;
    }
    try {
      switch (path) {
        case '/healthz':
          sendText(res, 200, 'ok');
          return;
        case '/readyz':
          if (opts.ready()) sendText(res, 200, 'ok');
          else sendText(res, 503, 'not ready');
          return;
        case '/api/v1/resources':
          sendJSON(res, 200, { items: filterResources(opts.resources(), url.searchParams) });
          return;
        case '/api/v1/errors':
          sendJSON(res, 200, { items: opts.errors() });
          return;
        case '/api/v1/config':
          sendJSON(res, 200, opts.config() ?? null);
          return;
        case '/api/v1/workers':
          opts.workers!().then(
            (items) => sendJSON(res, 200, { items }),
            (e: unknown) => sendJSON(res, 500, { error: String(e) }),
          );
          return;
      }
    } catch (e) {
      log('error', `admin ${req.method} ${path} failed`, { err: (e as Error)?.message ?? String(e) });
      if (!res.headersSent) sendJSON(res, 500, { error: (e as Error)?.message ?? String(e) });
      else res.destroy();
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (e) => log('error', `admin server error: ${e.message}`));

  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
