// The controller's config service: each `gatehouse proxy` holds one
// HTTP/2 stream open to it and receives its own Gateway's IR, a snapshot
// and then deltas as translations change it (the protocol is described in
// config-protocol.ts). Every controller replica runs one, leader or not,
// so proxies keep getting config from any of them.
//
// Who may read what: a stream is opened only for a bearer token that
// authenticate() accepts for the Gateway asked for (in Kubernetes, a
// TokenReview of the pod's projected ServiceAccount token: token-review.ts);
// a proxy is sent only irForGateway() of its Gateway, never another's keys.
// The token is never logged.
//
// Bounds: connections (maxConnections), streams per connection, reviews in
// flight (beyond them 503), the time a review may take, the time a
// connection may stay without a stream, one frame buffered per stream and
// the time a frame may wait for a proxy that does not read, frame size.
import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { parseAddress } from '../../admin/server.ts';
import type { LogFn } from '../../dataplane/log.ts';
import { asText, IRDeltaEncoder, type IRDelta } from '../../ir/delta.ts';
import type { IR } from '../../ir/types.ts';
import {
  CONFIG_PATH, CONFIG_PROTOCOL_VERSION, DEFAULT_HEARTBEAT_INTERVAL_MS, MAX_FRAME_BYTES, parseGatewayRef, type ConfigFrame,
} from './config-protocol.ts';

export type Authentication =
  | { allowed: true; /** Who the token is, for logs: `system:serviceaccount:ns:name`. */ identity: string }
  | { allowed: false; /** 401 bad token, 403 another identity, 503 could not tell. */ status: 401 | 403 | 503; reason: string };

export interface ConfigServiceOptions {
  /** `host:port` to listen on; port 0 picks a free one (see `port`). */
  address: string;
  /** The serving certificate (PEM) and its key; the proxies check it against the CA they are given. */
  tls: { cert: string; key: string };
  /** Whether `token` may read the config of `gateway` (`namespace/name`). Must not throw for a bad token. */
  authenticate(token: string, gateway: string): Promise<Authentication>;
  /**
   * The IR for the proxies of `gateway`, normally irForGateway(current IR,
   * gateway); null while there is none to give (the controller has not
   * translated yet, or the Gateway is gone), and the proxy keeps what it
   * has. Called once per publish() per Gateway with open streams: return
   * the same objects for what did not change, as irForGateway does.
   */
  irFor(gateway: string): IR | null;
  log: LogFn;
  /** Heartbeat frames and PINGs; default DEFAULT_HEARTBEAT_INTERVAL_MS. */
  heartbeatIntervalMs?: number;
  /** How long a frame may wait on a proxy that does not read before its stream is reset; default 30 s. */
  writeTimeoutMs?: number;
  /** How long authenticate() may take before the proxy is told 503; default 10 s. */
  authenticateTimeoutMs?: number;
  /** Reviews in flight at once; beyond it: 503. Default 64. */
  maxPendingAuthentications?: number;
  /** TLS connections held at once; beyond it new ones are closed at accept. Default 4096. */
  maxConnections?: number;
  /** How long a connection may stay without a config stream (or a handshake take); default 10 s. */
  idleConnectionTimeoutMs?: number;
  /** Largest frame sent; default MAX_FRAME_BYTES. */
  maxFrameBytes?: number;
}

export interface ConfigStreamInfo {
  gateway: string;
  identity: string;
  peer: string;
  /** Frames of config sent so far (1 after the snapshot). */
  seq: number;
}

export interface ConfigService {
  /** The port listened on (the one chosen, when the address asked for 0). */
  readonly port: number;
  /** The IR changed: every stream is sent its Gateway's delta (streams whose Gateway did not change are sent nothing). */
  publish(): void;
  /** The open config streams. */
  streams(): ConfigStreamInfo[];
  /** Ends every stream (the proxies keep their config and reconnect elsewhere) and stops listening. */
  close(): Promise<void>;
}

const DEFAULT_WRITE_TIMEOUT_MS = 30_000;
const DEFAULT_AUTHENTICATE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_PENDING_AUTHENTICATIONS = 64;
const DEFAULT_MAX_CONNECTIONS = 4096;
const DEFAULT_IDLE_CONNECTION_TIMEOUT_MS = 10_000;
/** A proxy needs one stream; a few more allow a reconnect on the same connection. */
const MAX_STREAMS_PER_CONNECTION = 4;
/** How long close() lets connections end by themselves before cutting them. */
const CLOSE_GRACE_MS = 1_000;

export async function startConfigService(opts: ConfigServiceOptions): Promise<ConfigService> {
  const service = new ConfigServer(opts);
  await service.listen();
  return service;
}

class ConfigServer implements ConfigService {
  readonly #opts: ConfigServiceOptions;
  readonly #log: LogFn;
  readonly #heartbeatMs: number;
  readonly #writeTimeoutMs: number;
  readonly #authTimeoutMs: number;
  readonly #maxPendingAuth: number;
  readonly #idleMs: number;
  readonly #maxFrameBytes: number;
  readonly #server: http2.Http2SecureServer;
  readonly #streams = new Set<ConfigStream>();
  readonly #sessions = new Map<Http2Session, SessionState>();
  /**
   * irFor() results during one publish(), so that the streams of one
   * Gateway share one computation; none outside it, so a stream opened
   * later never gets an answer from before a change.
   */
  #irCache: Map<string, IR | null> | null = null;
  #pendingAuth = 0;
  #ticker: NodeJS.Timeout | null = null;
  #closed = false;
  port = 0;

  constructor(opts: ConfigServiceOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#heartbeatMs = opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.#writeTimeoutMs = opts.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.#authTimeoutMs = opts.authenticateTimeoutMs ?? DEFAULT_AUTHENTICATE_TIMEOUT_MS;
    this.#maxPendingAuth = opts.maxPendingAuthentications ?? DEFAULT_MAX_PENDING_AUTHENTICATIONS;
    this.#idleMs = opts.idleConnectionTimeoutMs ?? DEFAULT_IDLE_CONNECTION_TIMEOUT_MS;
    this.#maxFrameBytes = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.#server = http2.createSecureServer({
      cert: opts.tls.cert,
      key: opts.tls.key,
      minVersion: 'TLSv1.3',
      allowHTTP1: false,
      handshakeTimeout: this.#idleMs,
      settings: { maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION },
    });
    this.#server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#server.on('session', (session) => this.#onSession(session));
    this.#server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    // A failed handshake or a client that is not HTTP/2 is the client's problem, and logged as such.
    this.#server.on('tlsClientError', (err, socket) => this.#log('info', 'config service: TLS handshake failed', { peer: socket.remoteAddress, error: err.message }));
    this.#server.on('unknownProtocol', (socket) => socket.destroy());
  }

  async listen(): Promise<void> {
    const { host, port } = parseAddress(this.#opts.address);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#server.on('error', (err) => this.#log('error', `config service error: ${err.message}`));
    this.port = (this.#server.address() as AddressInfo).port;
    this.#ticker = setInterval(() => this.#tick(), this.#heartbeatMs);
    this.#ticker.unref();
    this.#log('info', 'config service listening', { address: this.#opts.address, port: this.port });
  }

  publish(): void {
    this.#irCache = new Map();
    try {
      for (const stream of this.#streams) stream.configChanged();
    } finally {
      this.#irCache = null;
    }
  }

  streams(): ConfigStreamInfo[] {
    return [...this.#streams].map((s) => s.info());
  }

  irFor(gateway: string): IR | null {
    if (this.#irCache === null) return this.#opts.irFor(gateway);
    let ir = this.#irCache.get(gateway);
    if (ir === undefined) {
      ir = this.#opts.irFor(gateway);
      this.#irCache.set(gateway, ir);
    }
    return ir;
  }

  get heartbeatIntervalMs(): number {
    return this.#heartbeatMs;
  }

  get writeTimeoutMs(): number {
    return this.#writeTimeoutMs;
  }

  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  get log(): LogFn {
    return this.#log;
  }

  removeStream(stream: ConfigStream, session: Http2Session): void {
    this.#streams.delete(stream);
    const state = this.#sessions.get(session);
    if (state !== undefined && --state.streams === 0) this.#armIdle(session, state);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const stream of this.#streams) stream.end('the controller is shutting down');
    for (const session of this.#sessions.keys()) session.close();
    const cut = setTimeout(() => { for (const session of this.#sessions.keys()) session.destroy(); }, CLOSE_GRACE_MS);
    await closed;
    clearTimeout(cut);
    this.#log('info', 'config service closed');
  }

  #onSession(session: Http2Session): void {
    const state: SessionState = { streams: 0, idleTimer: null, pingOutstanding: false };
    this.#sessions.set(session, state);
    this.#armIdle(session, state);
    session.on('close', () => {
      if (state.idleTimer !== null) clearTimeout(state.idleTimer);
      this.#sessions.delete(session);
    });
    session.on('error', (err) => this.#log('info', 'config connection failed', { peer: session.socket?.remoteAddress, error: err.message }));
    if (this.#closed) session.close();
  }

  /** A connection without a config stream is closed after the idle timeout: a review in flight counts as a stream. */
  #armIdle(session: Http2Session, state: SessionState): void {
    if (state.idleTimer !== null) clearTimeout(state.idleTimer);
    state.idleTimer = setTimeout(() => {
      state.idleTimer = null;
      if (state.streams === 0 && !session.destroyed) session.close();
    }, this.#idleMs);
    state.idleTimer.unref();
  }

  /** Every heartbeat interval: a heartbeat on every stream, a PING on every connection; a PING still unanswered closes its connection. */
  #tick(): void {
    for (const stream of this.#streams) stream.heartbeat();
    for (const [session, state] of this.#sessions) {
      if (session.destroyed || session.closed) continue;
      if (state.pingOutstanding) {
        this.#log('warn', 'config connection closed: PING not answered within the heartbeat interval', { peer: session.socket?.remoteAddress, waitedMs: this.#heartbeatMs });
        session.destroy();
        continue;
      }
      try {
        session.ping((err) => { if (err === null) state.pingOutstanding = false; });
        state.pingOutstanding = true;
      } catch {
        // A session between its handshake and its SETTINGS, or closing: the next tick sees it again.
      }
    }
  }

  #onStream(h2: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const session = h2.session!;
    const peer = `${session.socket?.remoteAddress}:${session.socket?.remotePort}`;
    const state = this.#sessions.get(session);
    if (state === undefined || this.#closed) {
      h2.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    h2.on('error', () => {}); // a reset stream: its 'close' cleans up
    let url: URL;
    try {
      url = new URL(headers[':path'] ?? '/', 'https://config');
    } catch {
      h2.respond({ ':status': 400, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      h2.end('malformed path\n');
      return;
    }
    const refuse = (status: number, message: string, extra: Record<string, string> = {}) => {
      if (h2.destroyed || h2.closed) return;
      h2.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra });
      h2.end(`${message}\n`);
    };
    if (url.pathname !== CONFIG_PATH) return refuse(404, `not found: ${url.pathname}`);
    if (headers[':method'] !== 'GET') return refuse(405, `method ${headers[':method']} not allowed`, { allow: 'GET' });
    const gateway = url.searchParams.get('gateway') ?? '';
    if (parseGatewayRef(gateway) === null) return refuse(400, 'gateway must be namespace/name');
    const token = /^Bearer ([^\s]+)$/i.exec(headers.authorization ?? '')?.[1];
    if (token === undefined) {
      this.#log('warn', 'config stream refused: no bearer token', { gateway, peer, status: 401 });
      return refuse(401, 'a bearer token is required', { 'www-authenticate': 'Bearer' });
    }
    if (this.#pendingAuth >= this.#maxPendingAuth) {
      this.#log('warn', 'config stream refused: too many token reviews in flight', { gateway, peer, status: 503, limit: this.#maxPendingAuth });
      return refuse(503, 'busy; retry shortly', { 'retry-after': '1' });
    }

    state.streams++;
    if (state.idleTimer !== null) { clearTimeout(state.idleTimer); state.idleTimer = null; }
    // Counted until the review itself settles, not until the proxy is
    // answered or goes: a client that opens and resets streams must not
    // get more reviews running than the limit.
    this.#pendingAuth++;
    const review = Promise.resolve().then(() => this.#opts.authenticate(token, gateway));
    review.then(() => this.#pendingAuth--, () => this.#pendingAuth--);
    // Until the stream is handed to a ConfigStream, its end gives the connection back its idle clock here.
    let handedOver = false;
    h2.once('close', () => { if (!handedOver && --state.streams === 0) this.#armIdle(session, state); });
    withTimeout(review, this.#authTimeoutMs).then((auth) => {
      if (h2.destroyed || h2.closed || this.#closed) return;
      if (auth === null) {
        this.#log('warn', 'config stream refused: token review timed out', { gateway, peer, status: 503, waitedMs: this.#authTimeoutMs });
        return refuse(503, 'could not review the token; retry shortly', { 'retry-after': '5' });
      }
      if (!auth.allowed) {
        this.#log('warn', 'config stream refused', { gateway, peer, status: auth.status, reason: auth.reason });
        const message = auth.status === 401 ? 'token not accepted' : auth.status === 403 ? `this token may not read the config of ${gateway}` : 'could not review the token; retry shortly';
        return refuse(auth.status, message, auth.status === 401 ? { 'www-authenticate': 'Bearer' } : auth.status === 503 ? { 'retry-after': '5' } : {});
      }
      const ir = this.irFor(gateway);
      if (ir === null) {
        this.#log('info', 'config stream refused: no configuration for the Gateway yet', { gateway, peer, status: 503 });
        return refuse(503, `no configuration for ${gateway} yet; retry shortly`, { 'retry-after': '2' });
      }
      handedOver = true;
      const stream = new ConfigStream(this, h2, { gateway, identity: auth.identity, peer });
      this.#streams.add(stream);
      h2.once('close', () => this.removeStream(stream, session));
      stream.start(ir);
    }, (err: unknown) => {
      this.#log('error', 'config stream refused: authentication failed', { gateway, peer, status: 503, error: (err as Error)?.message ?? String(err) });
      refuse(503, 'could not review the token; retry shortly', { 'retry-after': '5' });
    });
  }
}

interface SessionState {
  /** Config streams and reviews in flight on the connection. */
  streams: number;
  idleTimer: NodeJS.Timeout | null;
  pingOutstanding: boolean;
}

/**
 * One proxy's stream: its own delta encoder, and at most one frame
 * waiting to be read; changes made meanwhile are folded into the next
 * delta, sent when the proxy has read that one.
 */
class ConfigStream {
  readonly #server: ConfigServer;
  readonly #h2: ServerHttp2Stream;
  readonly #who: { gateway: string; identity: string; peer: string };
  readonly #encoder = new IRDeltaEncoder();
  #seq = 0;
  /** The listeners and clusters last sent, as JSON: a delta that defines nothing and matches them is not sent. */
  #lastShape = '';
  #writeTimer: NodeJS.Timeout | null = null;
  #changedWhileBusy = false;

  constructor(server: ConfigServer, h2: ServerHttp2Stream, who: { gateway: string; identity: string; peer: string }) {
    this.#server = server;
    this.#h2 = h2;
    this.#who = who;
    h2.once('close', () => {
      if (this.#writeTimer !== null) clearTimeout(this.#writeTimer);
      this.#server.log('info', 'config stream closed', { ...this.#who, seq: this.#seq });
    });
  }

  info(): ConfigStreamInfo {
    return { ...this.#who, seq: this.#seq };
  }

  start(ir: IR): void {
    this.#h2.respond({ ':status': 200, 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    this.#server.log('info', 'config stream opened', this.#who);
    this.#send(ir);
  }

  configChanged(): void {
    if (this.#h2.closed || this.#h2.destroyed) return;
    if (this.#writeTimer !== null) {
      this.#changedWhileBusy = true;
      return;
    }
    const ir = this.#server.irFor(this.#who.gateway);
    if (ir === null) return this.end('the Gateway has no configuration any more');
    this.#send(ir);
  }

  heartbeat(): void {
    if (this.#writeTimer === null && !this.#h2.closed) this.#write({ type: 'heartbeat' });
  }

  /** Ends the stream cleanly; the proxy keeps its config and reconnects. */
  end(reason: string): void {
    if (this.#h2.closed || this.#h2.destroyed) return;
    this.#server.log('info', 'config stream ended', { ...this.#who, reason });
    this.#h2.end();
  }

  #send(ir: IR): void {
    // Virtual hosts as JSON text: the proxy forwards them to its workers as
    // they are (proxy/delta-relay.ts), so its frame parse makes strings,
    // not the whole IR as objects.
    const delta = asText(this.#encoder.encode(ir));
    const shape = shapeOf(delta);
    if (this.#seq > 0 && delta.define.virtualHosts.length === 0 && delta.define.clusters.length === 0 && shape === this.#lastShape) return;
    this.#lastShape = shape;
    const seq = ++this.#seq;
    const frame: ConfigFrame = seq === 1
      ? { type: 'snapshot', protocol: CONFIG_PROTOCOL_VERSION, gateway: this.#who.gateway, heartbeatIntervalMs: this.#server.heartbeatIntervalMs, seq, delta }
      : { type: 'delta', seq, delta };
    this.#write(frame);
  }

  #write(frame: ConfigFrame): void {
    if (this.#h2.closed || this.#h2.destroyed) return;
    const text = `${JSON.stringify(frame)}\n`;
    const bytes = Buffer.byteLength(text);
    if (bytes > this.#server.maxFrameBytes) {
      this.#server.log('error', 'config stream reset: a frame is larger than the protocol allows', { ...this.#who, bytes, maxBytes: this.#server.maxFrameBytes });
      // destroy(), not close(code): with nothing queued, close() ends the stream cleanly before its RST_STREAM.
      this.#h2.destroy(new Error('config frame too large'));
      return;
    }
    if (this.#h2.write(text)) return;
    // The proxy has not taken it all yet: nothing more is queued until it has.
    this.#writeTimer = setTimeout(() => {
      this.#server.log('warn', 'config stream reset: the proxy did not read a frame within the write timeout', { ...this.#who, waitedMs: this.#server.writeTimeoutMs });
      this.#h2.close(http2.constants.NGHTTP2_CANCEL);
    }, this.#server.writeTimeoutMs);
    this.#writeTimer.unref();
    this.#h2.once('drain', () => {
      if (this.#writeTimer !== null) clearTimeout(this.#writeTimer);
      this.#writeTimer = null;
      if (this.#changedWhileBusy) {
        this.#changedWhileBusy = false;
        this.configChanged();
      }
    });
  }
}

function shapeOf(delta: IRDelta): string {
  return JSON.stringify([delta.listeners, delta.clusters]);
}

/** `promise`'s value, or null once `ms` have passed. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(null), ms);
    timer.unref();
    promise.then((v) => { clearTimeout(timer); resolve(v); }, (e: unknown) => { clearTimeout(timer); reject(e); });
  });
}
