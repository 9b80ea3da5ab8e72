// The listening side of an HTTP/1.1 listener, plain or TLS, set up for
// hostile clients: at most maxClientConnections at once (node closes any
// beyond at accept), every accepted socket becomes a ClientConnection with
// bounded head size, and one sweep per listener enforces the head, request,
// body idle, response write and keep-alive deadlines of all its
// connections (a timer per request would cost more than the requests). TLS
// handshakes have their own timeout, and a failed one is logged and closed.

import net from 'node:net';
import tls from 'node:tls';
import type { RequestLimits } from '../limits.ts';
import type { LogFn } from '../log.ts';
import type { SniTable } from '../tls/sni.ts';
import { MIN_TLS_VERSION } from '../tls/sni.ts';
import { ClientConnection, type ConnectionSpec } from './connection.ts';

export type ServerSpec = ConnectionSpec;

export interface HttpsServerSpec extends ServerSpec {
  /** Read at each handshake, so a new config changes certificates without a rebind. */
  readonly sni: () => SniTable;
  readonly defaultCertificate: { cert: string; key: string };
}

/**
 * How often deadlines are checked: often enough that no client overstays
 * a limit by more than a quarter of it (and never by more than a second).
 */
function sweepInterval(limits: RequestLimits): number {
  const shortest = Math.min(
    limits.headersTimeoutMs,
    limits.requestTimeoutMs || Infinity,
    limits.requestBodyIdleTimeoutMs,
    limits.responseWriteTimeoutMs,
    limits.keepAliveTimeoutMs,
  );
  return Math.max(50, Math.min(1_000, Math.floor(shortest / 4)));
}

/** At most one "connection limit reached" line per listener this often; the count in between is summed. */
const DROP_LOG_INTERVAL_MS = 10_000;

const SOCKET_OPTIONS = {
  noDelay: true,
  // A client may finish sending (half-close) and still wait for its answers.
  allowHalfOpen: true,
};

export class ClientServer {
  /** The listening socket: listen(), close() and its events are node's. */
  readonly server: net.Server;
  readonly #connections = new Set<ClientConnection>();
  readonly #spec: ServerSpec;
  #sweep: NodeJS.Timeout | null = null;
  /** Connections closed at accept since the last log line, and when that line was written (ms). */
  #dropped = 0;
  #droppedLoggedAt = 0;

  constructor(server: net.Server, spec: ServerSpec, secure: boolean) {
    this.server = server;
    this.#spec = spec;
    // Counted by node on the raw sockets, TLS handshakes in progress included.
    server.maxConnections = spec.limits.maxClientConnections;
    server.on('drop', this.#onDrop);
    server.on(secure ? 'secureConnection' : 'connection', this.#accept);
    server.on('listening', () => {
      this.#sweep ??= setInterval(this.#checkDeadlines, sweepInterval(spec.limits));
      this.#sweep.unref();
    });
    server.on('close', () => {
      if (this.#sweep !== null) clearInterval(this.#sweep);
      this.#sweep = null;
    });
  }

  /** Stops accepting; `done` runs when every connection is gone. */
  close(done: () => void): void {
    this.server.close(() => done());
  }

  /** Closes connections with nothing in flight; the others close after their answers. */
  closeIdleConnections(): void {
    for (const conn of this.#connections) conn.closeWhenIdle();
  }

  closeAllConnections(): void {
    for (const conn of this.#connections) conn.destroy();
  }

  readonly #accept = (socket: net.Socket): void => {
    const conn = new ClientConnection(socket, this.#spec, Date.now());
    this.#connections.add(conn);
    socket.once('close', () => this.#connections.delete(conn));
  };

  /** Node closed a connection at accept: the listener holds maxClientConnections. */
  readonly #onDrop = (): void => {
    this.#dropped++;
    this.#logDrops(Date.now());
  };

  /** Logs the connections closed at accept, unless a line went out less than DROP_LOG_INTERVAL_MS ago (the sweep retries). */
  #logDrops(now: number): void {
    if (this.#dropped === 0 || now - this.#droppedLoggedAt < DROP_LOG_INTERVAL_MS) return;
    this.#spec.log('warn', 'client connection limit reached: new connections closed', {
      listener: this.#spec.key,
      limit: this.#spec.limits.maxClientConnections,
      closed: this.#dropped,
    });
    this.#dropped = 0;
    this.#droppedLoggedAt = now;
  }

  readonly #checkDeadlines = (): void => {
    const now = Date.now();
    this.#logDrops(now);
    for (const conn of this.#connections) conn.checkDeadlines(now);
  };
}

export function createPlainServer(spec: ServerSpec): ClientServer {
  return new ClientServer(net.createServer(SOCKET_OPTIONS), spec, false);
}

export function createTlsServer(spec: HttpsServerSpec): ClientServer {
  const server = tls.createServer({
    cert: spec.defaultCertificate.cert,
    key: spec.defaultCertificate.key,
    minVersion: MIN_TLS_VERSION,
    ALPNProtocols: ['http/1.1'],
    handshakeTimeout: spec.limits.tlsHandshakeTimeoutMs,
    ...SOCKET_OPTIONS,
    SNICallback: (serverName, callback) => {
      try {
        callback(null, spec.sni().contextFor(serverName));
      } catch (err) {
        callback(err as Error, undefined);
      }
    },
  });
  server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
    spec.log('info', 'TLS handshake failed', { listener: spec.key, error: err.message, remote: socket.remoteAddress });
    socket.destroy();
  });
  return new ClientServer(server, spec, true);
}
