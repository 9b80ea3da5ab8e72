// The listening side of an HTTP listener, plain or TLS, set up for hostile
// clients: at most maxClientConnections at once (node closes any beyond at
// accept), every accepted socket becomes a ClientConnection (HTTP/1.1,
// bounded head size) or an H2Connection (HTTP/2), and one sweep per
// listener enforces the head, request, body idle, response write and
// keep-alive deadlines of all its connections (a timer per request would
// cost more than the requests). TLS listeners offer h2 and http/1.1 by
// ALPN (a client that names neither gets HTTP/1.1); plain ones read the
// first bytes of a connection to tell cleartext HTTP/2 with prior
// knowledge from HTTP/1.1 (../http2/preface.ts), within the headers
// timeout. TLS handshakes have their own timeout, and a failed one is
// logged and closed.

import type http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { RequestLimits } from '../limits.ts';
import type { LogFn } from '../log.ts';
import type { SniTable } from '../tls/sni.ts';
import { MIN_TLS_VERSION } from '../tls/sni.ts';
import { sniff, type FrontProtocol } from '../http2/preface.ts';
import { createSessionFactory, H2Connection } from '../http2/session.ts';
import { ClientConnection, type ConnectionSpec } from './connection.ts';

export interface ServerSpec extends ConnectionSpec {
  /**
   * Whether the listener is draining. HTTP/1.1 answers learn it from the
   * pipeline (`Connection: close`); an HTTP/2 connection is then sent
   * GOAWAY after its next answer, so that its client moves on while the
   * other streams finish.
   */
  readonly draining?: () => boolean;
}

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

/** What the sweep and the drain ask of a client connection, HTTP/1.1 or HTTP/2. */
interface ClientSide {
  checkDeadlines(now: number): void;
  /** Closes now if idle, else after the answers in flight (HTTP/2: GOAWAY). */
  closeWhenIdle(): void;
  destroy(): void;
}

/** ALPN protocols a TLS listener offers, in its order of preference (RFC 7301). */
const ALPN_PROTOCOLS = ['h2', 'http/1.1'];

const SOCKET_OPTIONS = {
  noDelay: true,
  // A client may finish sending (half-close) and still wait for its answers.
  allowHalfOpen: true,
};

export class ClientServer {
  /** The listening socket: listen(), close() and its events are node's. */
  readonly server: net.Server;
  readonly #connections = new Set<ClientSide>();
  /** Plain connections whose first bytes have not yet told HTTP/1.1 from HTTP/2, with when they were accepted (ms). */
  readonly #sniffing = new Map<net.Socket, number>();
  readonly #spec: ServerSpec;
  readonly #secure: boolean;
  /** Turns sockets into HTTP/2 sessions; made at the first HTTP/2 client. */
  #h2: http2.Http2Server | null = null;
  #sweep: NodeJS.Timeout | null = null;
  /** Connections closed at accept since the last log line, and when that line was written (ms). */
  #dropped = 0;
  #droppedLoggedAt = 0;

  constructor(server: net.Server, spec: ServerSpec, secure: boolean) {
    this.server = server;
    this.#spec = spec;
    this.#secure = secure;
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
    for (const socket of this.#sniffing.keys()) socket.destroy();
  }

  readonly #accept = (socket: net.Socket): void => {
    const now = Date.now();
    if (this.#secure) {
      this.#serve(socket, (socket as tls.TLSSocket).alpnProtocol === 'h2' ? 'h2' : 'http/1.1', null, now);
      return;
    }
    this.#sniffing.set(socket, now);
    // Until a connection takes it: a reset while we wait must not throw.
    socket.on('error', noop);
    socket.once('close', () => this.#sniffing.delete(socket));
    sniff(socket, (protocol, head) => {
      this.#sniffing.delete(socket);
      this.#serve(socket, protocol, head, Date.now());
    });
  };

  /** `head`: bytes already read from the socket, to be parsed first. */
  #serve(socket: net.Socket, protocol: FrontProtocol, head: Buffer | null, now: number): void {
    let conn: ClientSide;
    if (protocol === 'h2') {
      // The session reads the preface from the socket again.
      if (head !== null) {
        socket.pause();
        socket.unshift(head);
      }
      try {
        conn = new H2Connection((this.#h2 ??= createSessionFactory(this.#spec.limits)), socket, this.#spec, now);
      } catch (err) {
        this.#spec.log('error', 'HTTP/2 session failed to start', { listener: this.#spec.key, error: String(err) });
        socket.destroy();
        return;
      }
    } else {
      const http1 = new ClientConnection(socket, this.#spec, now);
      conn = http1;
      if (head !== null) http1.receive(head);
    }
    this.#connections.add(conn);
    socket.once('close', () => this.#connections.delete(conn));
  }

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
    // A connection that never says which protocol it speaks gets the headers timeout.
    for (const [socket, acceptedAt] of this.#sniffing) {
      if (now - acceptedAt > this.#spec.limits.headersTimeoutMs) socket.destroy();
    }
  };
}

function noop(): void {}

export function createPlainServer(spec: ServerSpec): ClientServer {
  return new ClientServer(net.createServer(SOCKET_OPTIONS), spec, false);
}

export function createTlsServer(spec: HttpsServerSpec): ClientServer {
  const server = tls.createServer({
    cert: spec.defaultCertificate.cert,
    key: spec.defaultCertificate.key,
    minVersion: MIN_TLS_VERSION,
    ALPNProtocols: ALPN_PROTOCOLS,
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
