// node:http and node:https servers set up for hostile clients: bounded
// header size and count, slowloris and idle timeouts, TLS handshake
// timeout, and a clientError handler so a malformed request ends in an
// answer or a closed socket, never in an exception.

import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { RequestLimits } from '../limits.ts';
import type { LogFn } from '../log.ts';
import type { SniTable } from '../tls/sni.ts';
import { MIN_TLS_VERSION } from '../tls/sni.ts';

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export interface ServerSpec {
  readonly key: string;
  readonly limits: RequestLimits;
  readonly log: LogFn;
  readonly onRequest: RequestListener;
}

export interface HttpsServerSpec extends ServerSpec {
  /** Read at each handshake, so a new config changes certificates without a rebind. */
  readonly sni: () => SniTable;
  readonly defaultCertificate: { cert: string; key: string };
}

function serverOptions(limits: RequestLimits) {
  const shortest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs || Infinity);
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // node checks header and request deadlines on this interval (30 s by
    // default), which would let a slow client overstay its timeout.
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(shortest / 4))),
    requireHostHeader: true,
    noDelay: true,
  };
}

export function createPlainServer(spec: ServerSpec): HttpServer {
  const server = createHttpServer(serverOptions(spec.limits), spec.onRequest);
  harden(server, spec);
  return server;
}

export function createTlsServer(spec: HttpsServerSpec): HttpServer {
  const server = createHttpsServer(
    {
      ...serverOptions(spec.limits),
      cert: spec.defaultCertificate.cert,
      key: spec.defaultCertificate.key,
      minVersion: MIN_TLS_VERSION,
      ALPNProtocols: ['http/1.1'],
      handshakeTimeout: spec.limits.tlsHandshakeTimeoutMs,
      SNICallback: (serverName, callback) => {
        try {
          callback(null, spec.sni().contextFor(serverName));
        } catch (err) {
          callback(err as Error, undefined);
        }
      },
    },
    spec.onRequest,
  );
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    spec.log('info', 'TLS handshake failed', { listener: spec.key, error: err.message, remote: socket.remoteAddress });
    socket.destroy();
  });
  harden(server, spec);
  return server;
}

function harden(server: HttpServer, spec: ServerSpec): void {
  // One more than allowed, so the handler can see the excess and refuse
  // (node truncates silently at this count).
  server.maxHeadersCount = spec.limits.maxHeaderCount + 1;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => onClientError(err, socket, spec));
  // WebSocket and other upgrades: a later task adds server.on('upgrade').
  // Without that listener node hands Upgrade requests to 'request' as plain
  // requests, and the proxy strips Upgrade/Connection as hop-by-hop.
}

/** node's in-flight response on a socket (internal, stable since node 0.x). */
interface SocketWithResponse {
  _httpMessage?: { headersSent?: boolean } | null;
}

function statusForParseError(code: string | undefined): number {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return 431;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 408;
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return 413;
    default:
      return 400;
  }
}

const LINGER_MS = 1_000;

function onClientError(err: NodeJS.ErrnoException, socket: Duplex, spec: ServerSpec): void {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = statusForParseError(err.code);
  spec.log('info', 'malformed request', { listener: spec.key, status, error: err.code ?? err.message });
  const inFlight = (socket as unknown as SocketWithResponse)._httpMessage;
  // An answer already under way owns the bytes on the wire: writing ours
  // would corrupt it, so only close.
  const raw = inFlight?.headersSent
    ? ''
    : `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`;
  // end() flushes the answer before closing; the timer covers a client that
  // stops reading.
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.end(raw, () => socket.destroy());
}
