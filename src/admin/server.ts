// The admin HTTP API: health, readiness, the objects with their status,
// the configuration errors, the current IR and the workers. Read-only,
// JSON. It serves no secret (redact.ts), answers only to its own names and
// never to another site's page (access.ts), asks for a bearer token when it
// listens beyond loopback, and writes listings piece by piece, a few at a
// time (json-stream.ts, paging.ts).
import dns from 'node:dns';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import type { IR } from '../ir/types.ts';
import { BearerToken, crossSiteReason, hostAllowed, isLoopbackAddress } from './access.ts';
import { ChunkedBody, ClientGone, jsonPieces, safeStringify, writePieces } from './json-stream.ts';
import { pageOf, parsePageRequest } from './paging.ts';
import { redactedConfig } from './redact.ts';
import { PAGE_FILES } from './page.ts';
import type { ExplainOptions } from '../explain/request.ts';
import { CONTENT_TYPE as METRICS_CONTENT_TYPE } from './metrics-text.ts';

// require(), not import: importing node:http as an ES module loads node's
// bundled undici too (see src/dataplane/http/status-text.ts).
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

/** Listing requests (resources, errors, config) served at once; beyond it: 503 with Retry-After. */
export const DEFAULT_MAX_CONCURRENT_LISTINGS = 4;
/** Longest wait on a client that does not read a listing; then it is cut off. */
export const DEFAULT_WRITE_TIMEOUT_MS = 10_000;
/** Connections the admin server holds at once; node closes further ones at accept. */
const MAX_CONNECTIONS = 128;
/**
 * How deep /api/v1/config is split into pieces: root, listeners, a
 * listener, its gatewayListeners, one of them, its virtualHosts, a virtual
 * host, its routes; each route (and anything as deep) is one piece.
 */
const CONFIG_SPLIT_DEPTH = 8;

export interface AdminServerOptions {
  /** `host:port`; `[::1]:port` for IPv6; port 0 picks a free one. A name is resolved once and its first address bound. */
  address: string;
  /** Every object held, with status; the same array until it changes (paging sorts each array once). */
  resources(): readonly unknown[];
  /** The configuration errors (ConfigError[] from the file provider). */
  errors(): readonly unknown[];
  /** The current IR (or null before the first one); served with its secrets redacted. */
  config(): IR | null;
  /** Whether the first load has been served. */
  ready(): boolean;
  /**
   * Explains one request (`METHOD URL -H ...`) against the live config:
   * the result, or a string saying what is wrong with the request.
   */
  explain?(request: string, opts: ExplainOptions): unknown | Promise<unknown>;
  /** Gateways, listeners and the routes naming them, with status, for the page. */
  overview?(): unknown | Promise<unknown>;
  /** Whether the gateway is shutting down: /readyz then answers 503 `draining`. */
  draining?(): boolean;
  /** /metrics: the text exposition (src/admin/metrics-text.ts). Absent: 404. */
  metrics?(): Promise<string>;
  /** The data-plane workers (pid, requests, applied config), when the data plane runs in workers. */
  workers?(): Promise<unknown[]>;
  /**
   * Bearer token every request but /healthz and /readyz must carry
   * (`Authorization: Bearer <token>`). Required when the address is not
   * loopback; used if given otherwise.
   */
  token?: string;
  /** Host names answered besides IP literals and `localhost` (see access.ts: DNS rebinding). */
  allowedHosts?: readonly string[];
  /** Default DEFAULT_MAX_CONCURRENT_LISTINGS. */
  maxConcurrentListings?: number;
  /** Default DEFAULT_WRITE_TIMEOUT_MS. */
  writeTimeoutMs?: number;
  /** Told about refused requests and requests that failed. */
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface AdminServer {
  close(): Promise<void>;
  /** The port listened on (the one chosen, when the address asked for 0). */
  port: number;
  /** The address bound: an IP literal, or '::' when it listens on every interface. */
  address: string;
  /** Whether the address bound is loopback (127.0.0.0/8, ::1); when not, a token was required. */
  loopback: boolean;
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

const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

function sendJSON(res: ServerResponse, status: number, body: unknown, extraHeaders: Record<string, string> = {}): void {
  const text = safeStringify(body === undefined ? null : body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...COMMON_HEADERS,
    ...extraHeaders,
  });
  res.end(text);
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...COMMON_HEADERS,
  });
  res.end(text);
}

type Path = '/healthz' | '/readyz' | '/api/v1/resources' | '/api/v1/errors' | '/api/v1/config' | '/api/v1/workers' | '/api/v1/explain' | '/api/v1/overview'
  | '/metrics';

/** Largest POST /api/v1/explain body; a request line is at most MAX_REQUEST_TEXT characters. */
export const MAX_EXPLAIN_BODY_BYTES = 16 * 1024;
/** The page's own files may load nothing from elsewhere, and nothing may frame it. */
const PAGE_CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** Probes answer without a token: a load balancer or kubelet has none, and they reveal nothing. */
const PROBES: ReadonlySet<string> = new Set(['/healthz', '/readyz']);
/**
 * The page's static files carry no data (it fetches it from the API, with
 * the token the user gives it when there is one), so they need no token;
 * the Host and cross-site checks still apply.
 */
const STATIC: ReadonlySet<string> = new Set(Object.keys(PAGE_FILES));
const LISTINGS: ReadonlySet<string> = new Set(['/api/v1/resources', '/api/v1/errors', '/api/v1/config']);

/** The address to bind: an IP literal as given, a name resolved once (as listen() would), undefined for all interfaces. */
async function bindAddress(host: string | undefined): Promise<string | undefined> {
  if (host === undefined || net.isIP(host) !== 0) return host;
  try {
    return (await dns.promises.lookup(host)).address;
  } catch (e) {
    throw new Error(`admin address host ${JSON.stringify(host)} does not resolve: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { host, port } = parseAddress(opts.address);
  const log = opts.log ?? (() => {});
  const bind = await bindAddress(host);
  const loopback = bind !== undefined && isLoopbackAddress(bind);
  if (!loopback && opts.token === undefined) {
    throw new Error(`admin address ${opts.address} is not loopback (it binds ${bind ?? 'every interface'}): the admin API shows the gateway's whole configuration, so beyond loopback it needs a bearer token (--admin-token-file)`);
  }
  const token = opts.token === undefined ? null : new BearerToken(opts.token);
  const allowedHosts = new Set((opts.allowedHosts ?? []).map((h) => h.toLowerCase().replace(/\.$/, '')));
  const maxListings = opts.maxConcurrentListings ?? DEFAULT_MAX_CONCURRENT_LISTINGS;
  const writeTimeoutMs = opts.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
  let listings = 0;

  /** Refuses, with the answer sent, what the checks in access.ts do not let through; true when the request may go on. */
  function admitted(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    const hostHeader = req.headers.host;
    if (!hostAllowed(hostHeader, allowedHosts)) {
      log('warn', 'admin request refused: Host not allowed', { host: hostHeader, remote: req.socket.remoteAddress });
      sendJSON(res, 403, { error: `Host ${JSON.stringify(hostHeader)} is not allowed: use an IP address, localhost, or a name given with --admin-allowed-host` });
      return false;
    }
    const crossSite = crossSiteReason(header(req, 'origin'), header(req, 'sec-fetch-site'), hostHeader);
    if (crossSite !== null) {
      log('warn', 'admin request refused: cross-site browser request', { reason: crossSite, remote: req.socket.remoteAddress });
      sendJSON(res, 403, { error: `${crossSite}; the admin API does not answer other sites' pages` });
      return false;
    }
    if (token !== null && !PROBES.has(path) && !STATIC.has(path) && !token.accepts(req.headers.authorization)) {
      log('warn', 'admin request refused: missing or wrong bearer token', { path, remote: req.socket.remoteAddress });
      sendJSON(res, 401, { error: 'this admin API needs Authorization: Bearer <token>' }, { 'www-authenticate': 'Bearer realm="gatehouse-admin"' });
      return false;
    }
    return true;
  }

  async function list(req: IncomingMessage, res: ServerResponse, path: Path, url: URL): Promise<void> {
    let redactions = 0;
    const onRedacted = () => { redactions++; };
    const headers = { 'content-type': 'application/json; charset=utf-8', ...COMMON_HEADERS };
    let pieces: Iterable<string>;
    switch (path) {
      case '/api/v1/resources': {
        const pageReq = parsePageRequest(url.searchParams);
        if ('error' in pageReq) {
          sendJSON(res, 400, { error: pageReq.error });
          return;
        }
        const page = pageOf(opts.resources(), pageReq);
        const metadata = page.continueToken === undefined ? {} : { continue: page.continueToken };
        pieces = listPieces(`{"metadata":${JSON.stringify(metadata)},"items":[`, page.items, onRedacted);
        break;
      }
      case '/api/v1/errors':
        pieces = listPieces('{"items":[', opts.errors(), onRedacted);
        break;
      default: {
        const ir = opts.config();
        pieces = ir === null ? ['null'] : jsonPieces(redactedConfig(ir), CONFIG_SPLIT_DEPTH, onRedacted);
      }
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const body = new ChunkedBody(res, writeTimeoutMs);
    try {
      await writePieces(body, pieces);
      await body.end();
    } catch (e) {
      if (!(e instanceof ClientGone)) throw e;
      log('info', 'admin listing abandoned', { path, reason: e.message });
    } finally {
      if (redactions > 0) log('error', 'admin: private key material found outside the known fields was redacted', { path, values: redactions });
    }
  }

  const server = http.createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      sendJSON(res, 400, { error: 'bad request URL' });
      return;
    }
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    if (!admitted(req, res, path)) return;
    const known = PROBES.has(path) || LISTINGS.has(path) || (path === '/api/v1/workers' && opts.workers !== undefined)
      || (STATIC.has(path) && opts.overview !== undefined)
      || (path === '/api/v1/overview' && opts.overview !== undefined) || (path === '/api/v1/explain' && opts.explain !== undefined)
      || (path === '/metrics' && opts.metrics !== undefined);
    if (!known) {
      sendJSON(res, 404, { error: `not found: ${path}` });
      return;
    }
    if (path === '/api/v1/explain' && req.method === 'POST') {
      explainPost(req, res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJSON(res, 405, { error: `method ${req.method} not allowed` }, { allow: path === '/api/v1/explain' ? 'GET, HEAD, POST' : 'GET, HEAD' });
      return;
    }
    const failed = (e: unknown) => {
      log('error', `admin ${req.method} ${path} failed`, { err: (e as Error)?.message ?? String(e) });
      if (!res.headersSent) sendJSON(res, 500, { error: (e as Error)?.message ?? String(e) });
      else res.destroy();
    };
    try {
      const file = PAGE_FILES[path];
      if (file !== undefined) {
        res.writeHead(200, {
          'content-type': file.type, 'content-length': Buffer.byteLength(file.body), ...COMMON_HEADERS,
          'content-security-policy': PAGE_CSP, 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer',
        });
        res.end(req.method === 'HEAD' ? undefined : file.body);
        return;
      }
      switch (path as Path) {
        case '/healthz':
          sendText(res, 200, 'ok');
          return;
        case '/readyz':
          if (opts.draining?.()) sendText(res, 503, 'draining');
          else if (opts.ready()) sendText(res, 200, 'ok');
          else sendText(res, 503, 'not ready');
          return;
        case '/api/v1/workers':
          opts.workers!().then((items) => sendJSON(res, 200, { items }), failed);
          return;
        case '/api/v1/overview':
          Promise.resolve(opts.overview!()).then((v) => sendJSON(res, 200, v), failed);
          return;
        case '/api/v1/explain': {
          const q = url.searchParams;
          answerExplain(res, { request: q.get('request'), gateway: q.get('gateway'), listener: q.get('listener'), address: q.get('address'), sni: q.get('sni') });
          return;
        }
        case '/metrics':
          opts.metrics!().then((text) => {
            res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text), ...COMMON_HEADERS });
            res.end(req.method === 'HEAD' ? undefined : text);
          }, failed);
          return;
        default:
          if (listings >= maxListings) {
            sendJSON(res, 503, { error: `${maxListings} listings are being served already; retry shortly` }, { 'retry-after': '1' });
            return;
          }
          listings++;
          res.once('close', () => { listings--; });
          list(req, res, path as Path, url).catch(failed);
      }
    } catch (e) {
      failed(e);
    }
  });
  /** The answer for a request given as fields (query parameters or a JSON body). */
  function answerExplain(res: ServerResponse, fields: Record<string, unknown>): void {
    const text = fields.request;
    if (typeof text !== 'string' || text === '') {
      sendJSON(res, 400, { error: 'request wanted: METHOD URL [-H "Name: value"]..., e.g. GET https://nova.example/v2.1/servers' });
      return;
    }
    const o: ExplainOptions = {};
    for (const k of ['gateway', 'listener', 'address', 'sni'] as const) {
      const v = fields[k];
      if (v === undefined || v === null || v === '') continue;
      if (typeof v !== 'string') {
        sendJSON(res, 400, { error: `${k} must be a string` });
        return;
      }
      o[k] = v;
    }
    new Promise<unknown>((resolve) => resolve(opts.explain!(text, o))).then((result) => {
      if (typeof result === 'string') sendJSON(res, 400, { error: result });
      else sendJSON(res, 200, result);
    }, (e: unknown) => {
      log('error', 'admin explain failed', { err: (e as Error)?.message ?? String(e) });
      if (!res.headersSent) sendJSON(res, 500, { error: (e as Error)?.message ?? String(e) });
    });
  }

  /** Reads at most MAX_EXPLAIN_BODY_BYTES of JSON (the server's requestTimeout bounds the wait), then answers. */
  function explainPost(req: IncomingMessage, res: ServerResponse): void {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_EXPLAIN_BODY_BYTES) {
      sendJSON(res, 413, { error: `body larger than ${MAX_EXPLAIN_BODY_BYTES} bytes` }, { connection: 'close' });
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > MAX_EXPLAIN_BODY_BYTES) {
        done = true;
        sendJSON(res, 413, { error: `body larger than ${MAX_EXPLAIN_BODY_BYTES} bytes` }, { connection: 'close' });
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        sendJSON(res, 400, { error: 'body must be JSON: {"request": "GET https://host/path"}' });
        return;
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        sendJSON(res, 400, { error: 'body must be a JSON object with a "request" field' });
        return;
      }
      answerExplain(res, body as Record<string, unknown>);
    });
  }

  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = MAX_CONNECTIONS;

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen({ host: bind, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (e) => log('error', `admin server error: ${e.message}`));

  return {
    port: (server.address() as AddressInfo).port,
    address: (server.address() as AddressInfo).address,
    loopback,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** `open`, then each item (one JSON.stringify each), then `]}`. */
function* listPieces(open: string, items: readonly unknown[], onRedacted: () => void): Generator<string> {
  yield open;
  for (let i = 0; i < items.length; i++) yield (i === 0 ? '' : ',') + safeStringify(items[i], onRedacted);
  yield ']}';
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}
