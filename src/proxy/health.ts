// The proxy's probe endpoint, for the kubelet: /healthz answers 200 while
// the process lives, /readyz 200 once the first config is applied and
// until draining starts, 503 otherwise. The same small server, on a port
// of its own, serves /metrics for Prometheus. Nothing else is served
// here: no config, no status, no secrets; every other path is 404.
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseAddress } from '../admin/server.ts';
import { CONTENT_TYPE as METRICS_CONTENT_TYPE } from '../admin/metrics-text.ts';

// require(), not import: see src/dataplane/http/status-text.ts.
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

/** Probes are tiny and come from one kubelet: a handful of connections, each bounded in time. */
const MAX_CONNECTIONS = 32;
const TIMEOUT_MS = 5_000;

export interface HealthServerOptions {
  /** `host:port`; port 0 picks a free one. */
  address: string;
  /** Why the proxy is not ready (`no config yet`, `draining`), or null when it is; absent: no probes here. */
  notReady?(): string | null;
  /** /metrics (text exposition); absent: no metrics here. */
  metrics?(): Promise<string>;
}

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const { host, port } = parseAddress(opts.address);
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed');
    const notReady = opts.notReady;
    if (notReady !== undefined && path === '/healthz') return send(res, 200, 'ok');
    if (notReady !== undefined && path === '/readyz') {
      const reason = notReady();
      return reason === null ? send(res, 200, 'ok') : send(res, 503, reason);
    }
    if (opts.metrics !== undefined && path === '/metrics') {
      opts.metrics().then(
        (text) => send(res, 200, text, METRICS_CONTENT_TYPE),
        (err: unknown) => send(res, 500, String(err)),
      );
      return;
    }
    send(res, 404, 'not found');
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = TIMEOUT_MS;
  server.requestTimeout = TIMEOUT_MS;
  server.keepAliveTimeout = TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function send(res: ServerResponse, status: number, text: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
