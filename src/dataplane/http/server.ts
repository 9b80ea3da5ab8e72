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
// logged and closed. Before node's TLS sees a connection, its ClientHello
// is read (../tls/client-hello.ts) so that a server name no listener on
// the socket serves is refused with the unrecognized_name alert.

import type http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { RequestLimits } from '../limits.ts';
import type { LogFn } from '../log.ts';
import type { SniTable } from '../tls/sni.ts';
import { MIN_TLS_VERSION } from '../tls/sni.ts';
import { readClientHello, UNRECOGNIZED_NAME_ALERT } from '../tls/client-hello.ts';
import { sniff, type FrontProtocol } from '../http2/preface.ts';
import { createSessionFactory, H2Connection, type H2Windows } from '../http2/session.ts';
import { readProxyHeader } from '../proxy-protocol.ts';
import { ClientConnection, type ConnectionSpec } from './connection.ts';
import type { DownstreamRequest, DownstreamResponse } from './downstream.ts';
import type { TlsFacts } from './request-record.ts';
import type { ListenerSeries } from '../metrics.ts';

export interface ServerSpec extends ConnectionSpec {
  /** The listener's connection and TLS counters (metrics.ts). */
  readonly stats: ListenerSeries;
  /**
   * Read a PROXY protocol header first (./proxy-protocol.ts), within the
   * headers timeout; optional: connections without one are served too.
   */
  readonly proxyProtocol?: { readonly optional: boolean } | null;
  /** HTTP/2 flow-control windows advertised to clients; null: node's (65535). */
  readonly http2Windows?: H2Windows | null;
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
  readonly defaultCertificate: { cert: string; key: string; ca?: string };
  /**
   * Takes the requests of a TLS connection instead of onRequest, with the
   * server name its client sent (null: none): the Gateway listener whose
   * certificate the connection negotiated, for the misdirected request
   * check (421).
   */
  readonly onSecureRequest: (req: DownstreamRequest, res: DownstreamResponse, tls: TlsFacts) => void;
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
  /** Set for TLS listeners. */
  readonly #secure: HttpsServerSpec | null;
  /** Turns sockets into HTTP/2 sessions; made at the first HTTP/2 client. */
  #h2: http2.Http2Server | null = null;
  #sweep: NodeJS.Timeout | null = null;
  /** Connections closed at accept since the last log line, and when that line was written (ms). */
  #dropped = 0;
  #droppedLoggedAt = 0;

  constructor(server: net.Server, spec: ServerSpec, secure: HttpsServerSpec | null) {
    this.server = server;
    this.#spec = spec;
    this.#secure = secure;
    // Counted by node on the raw sockets, TLS handshakes in progress included.
    server.maxConnections = spec.limits.maxClientConnections;
    server.on('drop', this.#onDrop);
    // Raw sockets, TLS or not: 'connection' comes before any handshake.
    server.on('connection', this.#count);
    server.on(secure !== null ? 'secureConnection' : 'connection', this.#accept);
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

  readonly #count = (socket: net.Socket): void => {
    const stats = this.#spec.stats;
    stats.connectionsTotal++;
    stats.connectionsActive++;
    socket.once('close', () => { stats.connectionsActive--; });
  };

  readonly #accept = (socket: net.Socket): void => {
    const now = Date.now();
    const secure = this.#secure;
    if (secure !== null) {
      const tlsSocket = socket as tls.TLSSocket;
      secure.stats.tlsHandshakes++;
      // `servername` is false without SNI.
      const facts: TlsFacts = { serverName: typeof tlsSocket.servername === 'string' ? tlsSocket.servername : null, version: tlsSocket.getProtocol() };
      const spec = { ...secure, onRequest: (req: DownstreamRequest, res: DownstreamResponse) => secure.onSecureRequest(req, res, facts) };
      this.#serve(socket, tlsSocket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1', null, now, spec);
      return;
    }
    this.#sniffing.set(socket, now);
    // Until a connection takes it: a reset while we wait must not throw.
    socket.on('error', noop);
    socket.once('close', () => this.#sniffing.delete(socket));
    const proxy = this.#spec.proxyProtocol;
    if (proxy == null) this.#sniff(socket, null);
    else readProxyHeader(socket, { optional: proxy.optional, timeoutMs: this.#spec.limits.headersTimeoutMs }, (rest) => this.#sniff(socket, rest), this.#proxyRefused(socket));
  };

  #sniff(socket: net.Socket, initial: Buffer | null): void {
    sniff(socket, (protocol, head) => {
      this.#sniffing.delete(socket);
      this.#serve(socket, protocol, head, Date.now());
    }, initial);
  }

  #proxyRefused(socket: net.Socket): (reason: string) => void {
    return (reason) => this.#spec.log('info', 'PROXY protocol header refused: connection closed', { listener: this.#spec.key, reason, remote: socket.remoteAddress });
  }

  /** `head`: bytes already read from the socket, to be parsed first. */
  #serve(socket: net.Socket, protocol: FrontProtocol, head: Buffer | null, now: number, spec: ServerSpec = this.#spec): void {
    let conn: ClientSide;
    if (protocol === 'h2') {
      // The session reads the preface from the socket again.
      if (head !== null) {
        socket.pause();
        socket.unshift(head);
      }
      try {
        conn = new H2Connection((this.#h2 ??= createSessionFactory(spec.limits, spec.http2Windows ?? null)), socket, spec, now);
      } catch (err) {
        this.#spec.log('error', 'HTTP/2 session failed to start', { listener: this.#spec.key, error: String(err) });
        socket.destroy();
        return;
      }
    } else {
      const http1 = new ClientConnection(socket, spec, now);
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
  return new ClientServer(net.createServer(SOCKET_OPTIONS), spec, null);
}

export function createTlsServer(spec: HttpsServerSpec): ClientServer {
  const server = tls.createServer({
    cert: spec.defaultCertificate.cert,
    key: spec.defaultCertificate.key,
    ca: spec.defaultCertificate.ca,
    minVersion: MIN_TLS_VERSION,
    ALPNProtocols: ALPN_PROTOCOLS,
    handshakeTimeout: spec.limits.tlsHandshakeTimeoutMs,
    ...SOCKET_OPTIONS,
    SNICallback: (serverName, callback) => {
      // The hello was screened already; a config applied since may have dropped the name.
      const context = spec.sni().contextFor(serverName);
      if (context === undefined) callback(new Error(`no listener serves server name ${JSON.stringify(serverName.slice(0, 253))}`), undefined);
      else callback(null, context);
    },
  });
  server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
    spec.stats.tlsHandshakeErrors++;
    spec.log('info', 'TLS handshake failed', { listener: spec.key, error: err.message, remote: socket.remoteAddress });
    socket.destroy();
  });
  // node's TLS takes each accepted socket through the server's own
  // 'connection' listener; the hello is screened before it gets there.
  const [startTls] = server.listeners('connection') as ((socket: net.Socket) => void)[];
  server.removeListener('connection', startTls);
  const proxy = spec.proxyProtocol;
  const screen = (socket: net.Socket, initial: Buffer | null) =>
    screenClientHello(socket, spec, () => {
      // node reads both when it wraps the socket: set from the config of
      // this moment, so a change of tls.frontend needs no rebind.
      // (Both are node's own fields of tls.Server, missing from its types.)
      const validation = spec.sni().clientValidation;
      const options = server as tls.Server & { requestCert: boolean; rejectUnauthorized: boolean };
      options.requestCert = validation !== null;
      options.rejectUnauthorized = validation === 'AllowValidOnly';
      startTls.call(server, socket);
    }, initial);
  server.on('connection', (socket: net.Socket) => {
    if (proxy == null) {
      screen(socket, null);
      return;
    }
    socket.on('error', noop);
    // The PROXY header comes before the ClientHello; both within the handshake timeout.
    readProxyHeader(socket, { optional: proxy.optional, timeoutMs: spec.limits.tlsHandshakeTimeoutMs }, (rest) => screen(socket, rest), (reason) =>
      spec.log('info', 'PROXY protocol header refused: connection closed', { listener: spec.key, reason, remote: socket.remoteAddress }));
  });
  return new ClientServer(server, spec, spec);
}

/** How long a refused client is given to read the alert before its socket is cut. */
const ALERT_LINGER_MS = 1_000;

/**
 * Reads the ClientHello (bounded by MAX_CLIENT_HELLO_BYTES and the TLS
 * handshake timeout), refuses a server name no listener serves with the
 * unrecognized_name alert, and otherwise puts the bytes back and calls
 * `startTls`. What is not a well-formed hello goes to node's TLS, which
 * answers it with its own alert.
 */
function screenClientHello(socket: net.Socket, spec: HttpsServerSpec, startTls: () => void, initial: Buffer | null): void {
  // Chunks are joined and parsed only once enough has arrived to make
  // progress (`need`): a client sending a byte at a time costs no more.
  const chunks: Buffer[] = [];
  let length = 0;
  let need = 1;
  const onTimeout = () => {
    spec.stats.tlsHandshakeErrors++;
    socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    length += chunk.length;
    if (length < need) return;
    const received = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length);
    chunks.length = 0;
    chunks.push(received);
    const hello = readClientHello(received);
    if (hello.kind === 'partial') {
      need = hello.need;
      return;
    }
    socket.off('data', onData);
    socket.pause();
    if (hello.kind === 'too-long') {
      spec.stats.tlsHandshakeErrors++;
      spec.log('info', 'TLS ClientHello too long: connection closed', { listener: spec.key, remote: socket.remoteAddress });
      socket.destroy();
      return;
    }
    if (hello.kind === 'hello' && !spec.sni().serves(hello.serverName)) {
      spec.stats.tlsHandshakeErrors++;
      spec.log('info', 'TLS handshake refused: unrecognized server name', {
        listener: spec.key,
        // The client's bytes: a DNS name is at most 253 characters.
        serverName: hello.serverName === null ? '(none)' : JSON.stringify(hello.serverName.slice(0, 253)),
        remote: socket.remoteAddress,
      });
      socket.setTimeout(ALERT_LINGER_MS);
      socket.end(UNRECOGNIZED_NAME_ALERT);
      // Read (and drop) until the client closes, so the socket goes then rather than at the linger timeout.
      socket.resume();
      return;
    }
    socket.setTimeout(0);
    socket.off('timeout', onTimeout);
    socket.off('error', noop);
    // node's TLS reads what is buffered on the socket before the socket itself.
    socket.unshift(received);
    startTls();
  };
  socket.setTimeout(spec.limits.tlsHandshakeTimeoutMs);
  socket.once('timeout', onTimeout);
  // Until TLS takes it: a reset while we read must not throw.
  socket.on('error', noop);
  socket.on('data', onData);
  // Bytes read past a PROXY header: the hello begins there.
  if (initial !== null && initial.length !== 0) onData(initial);
}
