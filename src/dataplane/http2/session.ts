// One client connection speaking HTTP/2 (h2 by ALPN, or h2c with prior
// knowledge): node's http2 session (nghttp2) does the framing, flow control
// and header compression; this class turns each stream into a request for
// the same pipeline as HTTP/1.1 (stream.ts) and bounds what one client can
// make the proxy do:
//
// - nghttp2 itself: streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are
//   refused (and a client that keeps opening them gets GOAWAY once node's
//   count of invalid frames passes the same number), a header block is
//   followed by at most 8 CONTINUATION frames (CVE-2024-27316 and kin),
//   header lists beyond SETTINGS_MAX_HEADER_LIST_SIZE or the pair count
//   reset their stream, a client that does not read what it asks for
//   (PING and SETTINGS acknowledgements) is cut when its outbound queue
//   floods, and nghttp2's own reset-rate limit backs ours;
// - this class: streams reset by the client before their answer
//   (rapid reset) and PING/SETTINGS frames are counted per 10 s window;
//   beyond their limits: GOAWAY ENHANCE_YOUR_CALM and the connection
//   closes. A stream the client reset before we read it is never
//   dispatched, so a flood of them costs no backend anything. The header
//   bytes of a stream are checked again here (431, as HTTP/1.1), since
//   node applies our advertised list size only after the client has
//   acknowledged our SETTINGS.
// - the listener's sweep (checkDeadlines): per stream the request, body
//   idle and response write deadlines of HTTP/1.1; per connection the
//   first request within the headers timeout, the idle keep-alive, and
//   a GOAWAY'd connection that does not finish within LINGER_MS of its
//   last stream.

import http2 from 'node:http2';
import type net from 'node:net';
import type { ServerSpec } from '../http/server.ts';
import { sendLocalReply } from '../http/responses.ts';
import type { RequestLimits } from '../limits.ts';
import { clientAddressOf } from '../proxy-protocol.ts';
import { H2Request, RESET_CANCEL, type StreamHead, type StreamOwner } from './stream.ts';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_PROTOCOL_ERROR } = http2.constants;

/** The counting window of http2MaxStreamResets and http2MaxControlFrames. */
export const ABUSE_WINDOW_MS = 10_000;

/**
 * Connection-level receive window: Envoy's edge recommendation (1 MiB).
 * Streams keep nghttp2's 64 KiB, so one stalled upload holds at most that.
 */
const CONNECTION_WINDOW_BYTES = 1024 * 1024;

/** How long a connection that was sent GOAWAY may take to close after its streams are done. */
const LINGER_MS = 1_000;

/** How long a client sent GOAWAY ENHANCE_YOUR_CALM has to read it before its connection is cut. */
const CALM_LINGER_MS = 100;

/** Pseudo-header fields a request may carry besides its regular ones (RFC 9113 §8.3.1, RFC 8441). */
const PSEUDO_HEADERS = 5;

/** Options for the node http2 server whose sessions serve one listener. */
export function sessionOptions(limits: RequestLimits): http2.ServerOptions {
  return {
    settings: {
      maxConcurrentStreams: limits.http2MaxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderBytes,
      enablePush: false,
      // Extended CONNECT (RFC 8441): WebSockets over HTTP/2.
      enableConnectProtocol: true,
    },
    // Node counts pseudo-headers and each cookie crumb as pairs.
    maxHeaderListPairs: limits.maxHeaderCount + PSEUDO_HEADERS,
    maxSessionMemory: limits.http2MaxSessionMemoryMiB,
    // A client that keeps opening streams past the limit is sent GOAWAY
    // after as many refusals as streams it may have.
    maxSessionInvalidFrames: limits.http2MaxConcurrentStreams,
    maxSessionRejectedStreams: limits.http2MaxConcurrentStreams,
    // nghttp2's token bucket for RST_STREAM (it ends the session with
    // INTERNAL_ERROR when empty): a backstop at twice our own limit, for
    // a flood that arrives faster than this class sees it.
    streamResetBurst: 2 * limits.http2MaxStreamResets,
    streamResetRate: Math.max(1, Math.ceil((2 * limits.http2MaxStreamResets * 1000) / ABUSE_WINDOW_MS)),
  };
}

/** The node server object whose 'connection' event turns a socket into a session; it never listens. */
/** HTTP/2 flow-control windows a listener advertises (ClientTrafficPolicy http2), bytes. */
export interface H2Windows {
  readonly initialStreamWindowSize?: number;
  readonly initialConnectionWindowSize?: number;
}

export function createSessionFactory(limits: RequestLimits, windows: H2Windows | null = null): http2.Http2Server {
  const options = sessionOptions(limits);
  if (windows?.initialStreamWindowSize !== undefined) options.settings!.initialWindowSize = windows.initialStreamWindowSize;
  const server = http2.createServer(options);
  if (windows?.initialConnectionWindowSize !== undefined) {
    const size = windows.initialConnectionWindowSize;
    // The connection window is not a SETTINGS value: each session grows its own with WINDOW_UPDATE.
    server.on('session', (session: http2.ServerHttp2Session) => session.setLocalWindowSize(size));
  }
  // Sessions are taken over in H2Connection; a server-level 'stream' is ignored.
  server.on('sessionError', noop);
  return server;
}

/** The session node just created for `socket` on `factory`. */
function openSession(factory: http2.Http2Server, socket: net.Socket): http2.ServerHttp2Session {
  let session: http2.ServerHttp2Session | null = null;
  const take = (s: http2.ServerHttp2Session): void => {
    session = s;
  };
  factory.once('session', take);
  factory.emit('connection', socket);
  factory.off('session', take);
  if (session === null) throw new Error('http2: no session for the connection');
  return session;
}

/** How the stream's head reads, or why it is refused. */
type HeadResult = StreamHead | { refused: string };

/**
 * Reads a request's header block (raw: alternating names and values, as
 * node received them): pseudo-headers out, `:authority` in as Host,
 * cookie crumbs joined with `; ` (RFC 9113 §8.2.3). nghttp2 has already
 * refused a malformed block (missing or repeated pseudo-headers,
 * upper-case or connection-specific fields, a TE other than trailers).
 * `bodyFollows` without a Content-Length adds `Transfer-Encoding: chunked`,
 * which is how the HTTP/1.1 pipeline knows a body of unknown length comes
 * (it is hop-by-hop, so it goes no further).
 */
export function readStreamHead(raw: readonly string[], bodyFollows: boolean): HeadResult {
  let method = '';
  let path: string | undefined;
  let authority: string | undefined;
  let host: string | undefined;
  let cookie: string | undefined;
  let protocol: string | undefined;
  let hasLength = false;
  const fields: string[] = ['host', ''];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = raw[i + 1];
    if (name.charCodeAt(0) === 0x3a /* : */) {
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      else if (name === ':protocol') protocol = value;
      continue;
    }
    if (name === 'host') {
      host = value;
      continue;
    }
    if (name === 'cookie') {
      cookie = cookie === undefined ? value : `${cookie}; ${value}`;
      continue;
    }
    if (name === 'content-length') hasLength = true;
    fields.push(name, value);
  }
  // RFC 9113 §8.3.1: a Host that names another entity than :authority makes the request malformed.
  if (authority !== undefined && host !== undefined && host !== authority) return { refused: 'Host differs from :authority' };
  const target = authority ?? host;
  if (target === undefined) fields.splice(0, 2);
  else fields[1] = target;
  if (cookie !== undefined) fields.push('cookie', cookie);
  if (protocol !== undefined) {
    // Extended CONNECT (RFC 8441 §4; nghttp2 has checked :path and :scheme
    // are there, and that we enabled it). A WebSocket is routed as the
    // HTTP/1.1 handshake it becomes upstream (a GET, as Envoy does), with
    // the stream's bytes both ways as its tunnel, not a body.
    if (method !== 'CONNECT') return { refused: ':protocol on a method other than CONNECT' };
    if (protocol.toLowerCase() !== 'websocket') return { method, url: path ?? '', rawHeaders: fields, upgrade: null, unsupportedProtocol: protocol };
    if (hasLength) return { refused: 'content-length on an extended CONNECT' };
    return { method: 'GET', url: path ?? '', rawHeaders: fields, upgrade: 'websocket' };
  }
  if (bodyFollows && !hasLength) fields.push('transfer-encoding', 'chunked');
  // CONNECT names its target in :authority and has no :path (RFC 9113 §8.5).
  const url = path ?? (method === 'CONNECT' ? (authority ?? '') : '');
  return { method, url, rawHeaders: fields };
}

/** Bytes of a header block as HTTP/1.1's maxHeaderBytes counts them: names and values. */
function headerBytes(raw: readonly string[]): number {
  let bytes = 0;
  for (let i = 0; i < raw.length; i++) bytes += raw[i].length;
  return bytes;
}

export class H2Connection implements StreamOwner {
  readonly socket: net.Socket;
  readonly session: http2.ServerHttp2Session;
  readonly #spec: ServerSpec;
  readonly #limits: RequestLimits;
  readonly #remoteAddress: string | undefined;
  readonly #streams = new Set<H2Request>();
  /** When the connection last had no open stream (ms). */
  #idleSince: number;
  /** No stream yet: the first one is owed within the headers timeout. */
  #fresh = true;
  /** GOAWAY sent (graceful): when the last stream closed, or 0 while streams remain. */
  #closingSince = 0;
  #goawaySent = false;
  /** The client half-closed: it can grant no more flow-control window. */
  #peerEnded = false;
  /** Sent GOAWAY ENHANCE_YOUR_CALM: nothing more is counted or logged. */
  #calmed = false;
  #windowStart: number;
  #resets = 0;
  #controlFrames = 0;
  closed = false;

  constructor(factory: http2.Http2Server, socket: net.Socket, spec: ServerSpec, now: number) {
    this.socket = socket;
    this.#spec = spec;
    this.#limits = spec.limits;
    this.#remoteAddress = clientAddressOf(socket);
    this.#idleSince = now;
    this.#windowStart = now;
    socket.setNoDelay(true);
    const session = openSession(factory, socket);
    this.session = session;
    session.on('stream', this.#onStream);
    session.on('ping', this.#onControlFrame);
    session.on('remoteSettings', this.#onControlFrame);
    session.on('error', this.#onSessionError);
    session.on('close', this.#onSessionClose);
    socket.once('close', this.#onSessionClose);
    socket.once('end', this.#onPeerEnd);
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    } catch {
      // The client already went away; 'close' follows.
    }
  }

  /** No stream open: safe to close. */
  get idle(): boolean {
    return this.#streams.size === 0 && !this.closed;
  }

  /** Enforces the deadlines; called by the listener's sweep. */
  checkDeadlines(now: number): void {
    if (this.closed) return;
    const limits = this.#limits;
    for (const request of this.#streams) this.#checkStream(request, now, limits);
    if (this.#streams.size !== 0) return;
    if (this.#goawaySent) {
      if (this.#closingSince === 0) this.#closingSince = now;
      else if (now - this.#closingSince > LINGER_MS) this.destroy();
      return;
    }
    if (now - this.#idleSince > (this.#fresh ? limits.headersTimeoutMs : limits.keepAliveTimeoutMs)) this.#goaway();
  }

  /** GOAWAY now: the streams open finish, no new one is taken, and the connection closes after them. */
  closeWhenIdle(): void {
    this.#goaway();
  }

  destroy(): void {
    if (!this.session.destroyed) this.session.destroy();
    this.socket.destroy();
    this.#onSessionClose();
  }

  // --- StreamOwner

  answered(request: H2Request): void {
    // The answer is all there is: a body still arriving is not wanted.
    if (!request.messageComplete) request.stopReceiving();
    // An HTTP/1.1 answer's `Connection: close` mostly says its framing
    // cannot be trusted, which is no concern of a stream: only a draining
    // listener sends its HTTP/2 clients away.
    if (this.#spec.draining?.() === true) this.#goaway();
  }

  streamClosed(request: H2Request, resetByClient: boolean): void {
    this.#streams.delete(request);
    if (this.#streams.size === 0) this.#idleSince = Date.now();
    if (resetByClient && !this.session.destroyed) this.#countReset();
  }

  // --- Session events

  readonly #onStream = (
    stream: http2.ServerHttp2Stream,
    _headers: http2.IncomingHttpHeaders,
    flags: number,
    rawHeaders: string[],
  ): void => {
    this.#fresh = false;
    if (this.#calmed) {
      // Came in the same read as the frame that went past a limit.
      stream.on('error', noop);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (stream.destroyed || stream.closed) {
      // Reset before we got to it (HEADERS and RST_STREAM in one read):
      // nothing was dispatched, but it counts against the client.
      this.#countReset();
      return;
    }
    const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    const head = readStreamHead(rawHeaders, !endStream);
    if ('refused' in head) {
      this.#spec.log('info', 'request refused', { listener: this.#spec.key, status: 'RST_STREAM PROTOCOL_ERROR', reason: head.refused });
      stream.on('error', noop);
      stream.close(NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    const now = Date.now();
    const request = new H2Request(stream, head, endStream, this.#remoteAddress, now, this);
    this.#streams.add(request);
    if (headerBytes(rawHeaders) > this.#limits.maxHeaderBytes) {
      this.#spec.log('info', 'request refused', { listener: this.#spec.key, status: 431, reason: `header fields over ${this.#limits.maxHeaderBytes} bytes` });
      sendLocalReply(request.response, 431);
      return;
    }
    if (head.unsupportedProtocol !== undefined) {
      // RFC 8441 leaves the answer open: 501, the protocol is one this gateway does not tunnel.
      this.#spec.log('info', 'request refused', { listener: this.#spec.key, status: 501, reason: `extended CONNECT for ${JSON.stringify(head.unsupportedProtocol.slice(0, 64))}, only websocket is served` });
      sendLocalReply(request.response, 501);
      return;
    }
    try {
      this.#spec.onRequest(request, request.response);
    } catch (err) {
      // A pipeline that throws ends this stream, not the worker.
      this.#spec.log('error', 'request handling failed', { listener: this.#spec.key, error: String(err) });
      request.reset(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  };

  readonly #onControlFrame = (): void => {
    if (this.#rollWindow() && ++this.#controlFrames > this.#limits.http2MaxControlFrames) {
      this.#calm('PING and SETTINGS flood', 'http2MaxControlFrames', this.#controlFrames);
    }
  };

  readonly #onSessionError = (err: NodeJS.ErrnoException): void => {
    if (this.#calmed) return;
    // nghttp2's own bounds (floods, too many CONTINUATIONs or invalid
    // frames) end here, after it sent GOAWAY; 'close' follows.
    this.#spec.log('info', 'HTTP/2 connection error', { listener: this.#spec.key, remote: this.#remoteAddress, error: err.code ?? err.message });
  };

  /**
   * The client half-closed (or went away with a FIN): it sends nothing
   * more, no frame and no flow-control window. The listener allows half-open
   * sockets, for HTTP/1.1's sake, so this is ours to handle: a stream still
   * receiving a body cannot complete; answers already allowed to go out
   * still do, and one that waits for window waits for nothing: it is reset
   * at the first sweep that sees it make no progress. Then the connection
   * closes (GOAWAY).
   */
  readonly #onPeerEnd = (): void => {
    this.#peerEnded = true;
    for (const request of this.#streams) if (!request.messageComplete) request.reset(RESET_CANCEL);
    this.#goaway();
  };

  readonly #onSessionClose = (): void => {
    if (this.closed) return;
    this.closed = true;
    // Streams still open hear their own 'close' from node.
    if (!this.socket.destroyed) this.socket.destroy();
  };

  // --- Internals

  #checkStream(request: H2Request, now: number, limits: RequestLimits): void {
    if (writeStalled(request, now, this.#peerEnded ? 0 : limits.responseWriteTimeoutMs)) {
      const reason = this.#peerEnded ? 'client half-closed with an answer waiting for window' : 'response write timeout';
      this.#spec.log('info', 'client stream cut', { listener: this.#spec.key, reason, remote: this.#remoteAddress, unsentBytes: request.response.pendingBytes });
      request.reset(RESET_CANCEL);
      return;
    }
    const tunnel = request.tunnel;
    if (tunnel !== null) {
      // A WebSocket (RFC 8441): its own deadlines, as an HTTP/1.1 one's.
      const reason = tunnel.expired(now, limits.websocketIdleTimeoutMs, limits.upstreamIdleTimeoutMs);
      if (reason !== null) {
        this.#spec.log('info', 'websocket closed', { listener: this.#spec.key, reason, remote: this.#remoteAddress });
        request.reset(RESET_CANCEL);
      }
      return;
    }
    if (request.messageComplete) return;
    if (limits.requestTimeoutMs > 0 && now - request.startedAt > limits.requestTimeoutMs) {
      this.#timeOut(request, 'request timeout');
      return;
    }
    // Only while we read: a body paused because its backend is slow to take it is not the client's pause.
    if (request.reading && !request.pausedForBody && now - request.lastReadAt > limits.requestBodyIdleTimeoutMs) {
      this.#timeOut(request, 'request body idle timeout');
    }
  }

  /** A request deadline passed: 408 if nothing was answered yet, else the stream is reset. */
  #timeOut(request: H2Request, reason: string): void {
    this.#spec.log('info', 'request refused', { listener: this.#spec.key, status: 408, reason });
    if (request.response.headersSent) request.reset(RESET_CANCEL);
    // The pipeline hears the stream close when the 408 ends it (stopReceiving).
    else sendLocalReply(request.response, 408);
  }

  /** Starts a new window when the current one is over; true (the caller counts). */
  #rollWindow(): boolean {
    const now = Date.now();
    if (now - this.#windowStart >= ABUSE_WINDOW_MS) {
      this.#windowStart = now;
      this.#resets = 0;
      this.#controlFrames = 0;
    }
    return !this.closed && !this.#calmed;
  }

  #countReset(): void {
    if (this.#rollWindow() && ++this.#resets > this.#limits.http2MaxStreamResets) {
      this.#calm('streams reset by the client (rapid reset)', 'http2MaxStreamResets', this.#resets);
    }
  }

  /**
   * GOAWAY ENHANCE_YOUR_CALM and close: the client went past an abuse
   * limit. No stream after the GOAWAY is taken; the connection is cut
   * CALM_LINGER_MS later, so that a client still writing reads the GOAWAY
   * before the close (closing a socket with unread input resets it, and a
   * reset makes the client's stack drop what it had not read yet).
   */
  #calm(what: string, limit: string, count: number): void {
    if (this.closed || this.#calmed) return;
    this.#calmed = true;
    this.#goawaySent = true;
    this.#spec.log('warn', 'HTTP/2 client over a limit: connection closed', { listener: this.#spec.key, remote: this.#remoteAddress, what, limit, count, windowMs: ABUSE_WINDOW_MS });
    const session = this.session;
    try {
      session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    } catch {
      // Already torn down.
    }
    for (const request of this.#streams) request.reset(RESET_CANCEL);
    const timer = setTimeout(() => {
      // The error is only what the session's 'error' event carries, ignored once calmed.
      if (!session.destroyed) session.destroy(new Error(what), NGHTTP2_ENHANCE_YOUR_CALM);
      this.destroy();
    }, CALM_LINGER_MS);
    timer.unref();
  }

  /** Graceful GOAWAY (NO_ERROR, the last stream taken): open streams finish, then the connection closes. */
  #goaway(): void {
    if (this.closed || this.#goawaySent) return;
    this.#goawaySent = true;
    this.#closingSince = 0;
    const session = this.session;
    if (session.closed || session.destroyed) return;
    session.close();
  }
}

/**
 * Whether the stream's answer has had bytes waiting with none of them
 * going out for longer than `limitMs` (as HTTP/1.1's send timeout: a
 * client that reads anything at all keeps its stream). Progress is what
 * node took from the stream: bytes written less those still queued.
 */
function writeStalled(request: H2Request, now: number, limitMs: number): boolean {
  const response = request.response;
  const pending = response.pendingBytes;
  if (pending === 0) {
    request.writeStalledSince = 0;
    return false;
  }
  const flushed = response.written - pending;
  if (request.writeStalledSince === 0 || flushed !== request.flushedSeen) {
    request.flushedSeen = flushed;
    request.writeStalledSince = now;
    return false;
  }
  return now - request.writeStalledSince > limitMs;
}

function noop(): void {}
