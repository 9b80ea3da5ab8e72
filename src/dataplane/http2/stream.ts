// One HTTP/2 stream as the pipeline sees it: the DownstreamRequest and
// DownstreamResponse the HTTP/1.1 connection hands over, so that routing,
// filters, limits, timeouts and the upstream code are the same for both.
// What differs is framing (RFC 9113 §8): the head comes as pseudo-header
// fields (`:authority` becomes Host, cookie crumbs are joined back into one
// field, §8.2.3), there is no reason phrase and no connection-specific
// field in a response (§8.2.2), a response body is DATA frames under flow
// control, and "this response is incomplete" is RST_STREAM instead of a
// cut connection.
//
// The request body is read only once the pipeline opens it, and only as
// fast as it reads: until then, and while its buffer is full, the stream is
// not read, so node grants the client no more flow-control window and the
// memory one upload holds stays within the stream's window.

import http2 from 'node:http2';
import { Readable, type Duplex } from 'node:stream';
import type { DownstreamRequest, DownstreamResponse, ResponseHeaders } from '../http/downstream.ts';
import { UNSAFE_FIELD_VALUE } from '../http/headers.ts';
import { Tunnel } from '../http/tunnel.ts';
import type { RequestRecord } from '../http/request-record.ts';

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_CONNECT_ERROR } = http2.constants;

/** Fields RFC 9113 §8.2.2 forbids in HTTP/2; an upstream HTTP/1.1 response may carry them. */
const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'http2-settings',
]);

/** A field name node accepts in a header block (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/** What a stream tells its connection. */
export interface StreamOwner {
  /** The response ended. */
  answered(request: H2Request): void;
  /** The stream closed; `resetByClient` when the client reset it before its answer ended. */
  streamClosed(request: H2Request, resetByClient: boolean): void;
}

/** A request head as the connection read it from the stream's header block. */
export interface StreamHead {
  readonly method: string;
  readonly url: string;
  /** Regular fields, alternating names and values, Host first (from `:authority`). */
  readonly rawHeaders: string[];
  /** `websocket` for an extended CONNECT (RFC 8441) the pipeline handles as a WebSocket handshake. */
  readonly upgrade?: string | null;
  /** An extended CONNECT for a protocol this gateway does not tunnel (answered 501). */
  readonly unsupportedProtocol?: string;
}

export class H2Request implements DownstreamRequest {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly httpVersionMajor = 2;
  readonly httpVersionMinor = 0;
  readonly http2 = true;
  readonly remoteAddress: string | undefined;
  readonly response: H2Response;
  /** `websocket` for an RFC 8441 handshake (see DownstreamRequest). */
  readonly upgrade: string | null;
  /** The WebSocket this stream carries once the backend switched protocols. */
  tunnel: Tunnel | null = null;
  messageComplete: boolean;
  readonly startedAt: number;
  readonly stream: http2.ServerHttp2Stream;
  bytesReceived = 0;
  /** When the body last made progress (ms): a chunk arrived, or reading resumed. */
  lastReadAt: number;
  /** Reading is stopped because the body buffer is full (the pipeline's pause, not the client's). */
  pausedForBody = false;
  /** The body is being read (opened by the pipeline, not yet complete). */
  reading = false;
  /** We reset the stream (so its close is not the client's doing). */
  resetByUs = false;
  /** For the response write deadline: bytes node had taken at the last sweep, and since when none went out (ms; 0 while none wait). */
  flushedSeen = 0;
  writeStalledSince = 0;
  readonly #owner: StreamOwner;
  #body: Readable | null = null;
  /** 0: no limit. Counted from the first DATA frame read: none is read before the pipeline asks for the body. */
  #bodyLimit = 0;
  bodyTooLarge = false;
  #bodyBytes = 0;

  constructor(
    stream: http2.ServerHttp2Stream,
    head: StreamHead,
    endStream: boolean,
    remoteAddress: string | undefined,
    now: number,
    owner: StreamOwner,
  ) {
    this.stream = stream;
    this.method = head.method;
    this.url = head.url;
    this.rawHeaders = head.rawHeaders;
    this.upgrade = head.upgrade ?? null;
    this.remoteAddress = remoteAddress;
    this.startedAt = now;
    this.lastReadAt = now;
    this.messageComplete = endStream;
    this.#owner = owner;
    this.response = new H2Response(this, owner);
    stream.on('close', this.#onClose);
    // Without a listener a stream error (a client's RST_STREAM with an
    // error code, a session torn down) would throw; 'close' follows.
    stream.on('error', noop);
  }

  get destroyed(): boolean {
    return this.stream.destroyed;
  }

  get body(): Readable {
    if (this.#body !== null) return this.#body;
    const stream = this.stream;
    const body = new Readable({ read: this.#resume });
    this.#body = body;
    if (this.messageComplete) {
      body.push(null);
      return body;
    }
    if (stream.destroyed) {
      body.destroy();
      return body;
    }
    this.reading = true;
    this.lastReadAt = Date.now();
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    return body;
  }

  limitBody(maxBytes: number): void {
    this.#bodyLimit = maxBytes;
  }

  sendContinue(): void {
    const stream = this.stream;
    if (this.response.headersSent || stream.destroyed || stream.headersSent) return;
    try {
      stream.additionalHeaders({ ':status': 100 });
    } catch {
      // The stream closed under us: its 'close' does the rest.
    }
  }

  /** Resets the stream with `code` (RST_STREAM), e.g. CANCEL at a deadline. */
  reset(code: number): void {
    if (this.stream.destroyed) return;
    this.resetByUs = true;
    this.stream.close(code);
  }

  /**
   * The answer is complete and the body is not: RFC 9113 §8.1 lets the
   * server ask the client to stop sending it with RST_STREAM NO_ERROR
   * (node sends it once the answer's frames are out).
   */
  stopReceiving(): void {
    if (this.messageComplete) return;
    this.#finishBody(false);
    this.reset(NGHTTP2_NO_ERROR);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.lastReadAt = Date.now();
    this.bytesReceived += chunk.length;
    if (this.#bodyLimit !== 0 && (this.#bodyBytes += chunk.length) > this.#bodyLimit) {
      this.bodyTooLarge = true;
      this.stream.off('data', this.#onData);
      this.#finishBody(false);
      return;
    }
    const body = this.#body;
    if (body !== null && !body.push(chunk)) {
      this.pausedForBody = true;
      this.stream.pause();
    }
  };

  readonly #resume = (): void => {
    if (!this.pausedForBody) return;
    this.pausedForBody = false;
    // The body idle clock restarts: the pause was ours.
    this.lastReadAt = Date.now();
    this.stream.resume();
  };

  readonly #onEnd = (): void => {
    this.messageComplete = true;
    this.reading = false;
    this.#body?.push(null);
  };

  /** The body ends short: whoever reads it sees the stream destroyed (without an error nobody would listen for). */
  #finishBody(complete: boolean): void {
    this.reading = false;
    const body = this.#body;
    if (body !== null && !complete && !body.readableEnded) body.destroy();
  }

  readonly #onClose = (): void => {
    const response = this.response;
    const answered = response.writableEnded;
    if (!this.messageComplete) this.#finishBody(false);
    const resetByClient = !answered && !this.resetByUs && this.stream.rstCode !== NGHTTP2_NO_ERROR;
    if (!answered) response.onClose?.();
    this.tunnel?.close();
    response.record?.finish(response.statusCode, response.written);
    this.#owner.streamClosed(this, resetByClient);
  };
}

export class H2Response implements DownstreamResponse {
  /** Read by nobody: the connection asks its listener whether it drains (session.ts). */
  shouldKeepAlive = true;
  headersSent = false;
  writableEnded = false;
  onDrain: (() => void) | null = null;
  onClose: (() => void) | null = null;
  record: RequestRecord | null = null;
  /** The status sent; 0 until the head is. */
  statusCode = 0;
  readonly #request: H2Request;
  readonly #owner: StreamOwner;
  /** HEAD, 1xx, 204 and 304: the HEADERS frame ends the stream; body bytes are dropped. */
  #noBody = false;
  /** Bytes handed to the stream, for the write deadline's progress. */
  written = 0;
  /** A head held back until it is known whether it ends the stream (mayCarryTrailers). */
  #pendingHead: http2.OutgoingHttpHeaders | null = null;
  /** The HEADERS frame went with waitForTrailers: a trailing HEADERS frame ends the stream. */
  #waitsForTrailers = false;

  constructor(request: H2Request, owner: StreamOwner) {
    this.#request = request;
    this.#owner = owner;
  }

  get destroyed(): boolean {
    return this.#request.stream.destroyed;
  }

  writeHead(status: number, _reason: string | undefined, headers: ResponseHeaders): void {
    if (this.headersSent) throw new Error('response head already sent');
    const out: http2.OutgoingHttpHeaders = { ':status': status };
    this.statusCode = status;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      if (CONNECTION_SPECIFIC.has(lower)) continue;
      if (!TOKEN.test(lower)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
      if (typeof value === 'string') {
        if (UNSAFE_FIELD_VALUE.test(value)) throw new TypeError(`invalid value for header ${JSON.stringify(name)}`);
      } else if (typeof value !== 'number') {
        for (const v of value) if (UNSAFE_FIELD_VALUE.test(v)) throw new TypeError(`invalid value for header ${JSON.stringify(name)}`);
      }
      out[lower] = value;
    }
    const request = this.#request;
    this.#noBody = request.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    this.headersSent = true;
    const stream = request.stream;
    if (stream.destroyed) return;
    stream.on('drain', this.#onDrain);
    if (!this.#noBody && mayCarryTrailers(out)) {
      // Whether trailers follow must be told node when the HEADERS frame
      // goes (waitForTrailers), and a gRPC "trailers-only" answer is a
      // HEADERS frame that ends the stream: the head waits for the first
      // body bytes or the end (as HTTP/1.1's does), at most until the
      // event loop turns.
      this.#pendingHead = out;
      setImmediate(this.#flushPendingHead);
      return;
    }
    this.#respond(out, { endStream: this.#noBody });
  }

  #respond(out: http2.OutgoingHttpHeaders, options: http2.ServerStreamResponseOptions): void {
    const request = this.#request;
    try {
      // Node ends the stream itself when the status or method forbids a body.
      request.stream.respond(out, options);
    } catch (err) {
      // Checked in writeHead what node checks; what is left is a stream closed under us.
      request.reset(NGHTTP2_INTERNAL_ERROR);
      throw err;
    }
  }

  readonly #flushPendingHead = (): void => {
    const out = this.#pendingHead;
    if (out === null) return;
    this.#pendingHead = null;
    if (this.#request.stream.destroyed) return;
    this.#waitsForTrailers = true;
    this.#respond(out, { waitForTrailers: true });
  };

  write(chunk: Buffer): boolean {
    if (this.writableEnded || this.destroyed) return false;
    if (!this.headersSent) throw new Error('write() before writeHead()');
    if (this.#noBody || chunk.length === 0) return true;
    if (this.#pendingHead !== null) this.#flushPendingHead();
    this.written += chunk.length;
    return this.#request.stream.write(chunk);
  }

  end(chunk?: Buffer | null, trailers?: ResponseHeaders | null): void {
    if (this.writableEnded || this.destroyed) return;
    if (!this.headersSent) throw new Error('end() before writeHead()');
    this.writableEnded = true;
    const stream = this.#request.stream;
    const pending = this.#pendingHead;
    if (pending !== null && (chunk == null || chunk.length === 0) && trailers == null) {
      // Nothing but the head: it ends the stream (gRPC's trailers-only answer).
      this.#pendingHead = null;
      this.#respond(pending, { endStream: true });
      this.#owner.answered(this.#request);
      return;
    }
    if (pending !== null) this.#flushPendingHead();
    if (this.#waitsForTrailers) {
      // Node asks for them once the last DATA frame is out; without a
      // section it sends an empty one (an empty HEADERS frame that ends the stream).
      const fields = trailers == null ? {} : trailerFields(trailers);
      stream.once('wantTrailers', () => {
        try {
          stream.sendTrailers(fields);
        } catch {
          // The stream closed under us: its 'close' does the rest.
        }
      });
    }
    // Else a trailer section has no frame to go in: HEADERS said the stream ends with its DATA.
    if (!this.#noBody && !stream.writableEnded) {
      if (chunk != null && chunk.length !== 0) {
        this.written += chunk.length;
        stream.end(chunk);
      } else {
        stream.end();
      }
    }
    this.#owner.answered(this.#request);
  }

  /**
   * RFC 8441 §5: the backend's 101 becomes a 200 on the stream (no
   * Upgrade, Connection or Sec-WebSocket-Accept: HTTP/2 has no handshake
   * to prove), and from then on the stream's DATA and the backend's
   * connection are one tunnel (tunnel.ts), with its deadlines checked by
   * the connection's sweep. A backend connection that fails resets the
   * stream with CONNECT_ERROR (RFC 9113 §8.5).
   */
  switchProtocols(headers: ResponseHeaders, upstream: Duplex): boolean {
    const request = this.#request;
    const stream = request.stream;
    if (this.headersSent || request.upgrade === null || stream.destroyed) return false;
    const out: http2.OutgoingHttpHeaders = { ':status': 200 };
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      if (CONNECTION_SPECIFIC.has(lower) || lower === 'sec-websocket-accept') continue;
      if (!TOKEN.test(lower)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
      if (typeof value === 'string') {
        if (UNSAFE_FIELD_VALUE.test(value)) throw new TypeError(`invalid value for header ${JSON.stringify(name)}`);
      } else if (typeof value !== 'number') {
        for (const v of value) if (UNSAFE_FIELD_VALUE.test(v)) throw new TypeError(`invalid value for header ${JSON.stringify(name)}`);
      }
      out[lower] = value;
    }
    this.headersSent = true;
    this.#respond(out, {});
    this.writableEnded = true;
    request.tunnel = new Tunnel(stream, upstream, null, Date.now(), () => request.reset(NGHTTP2_CONNECT_ERROR));
    return true;
  }

  /** The response cannot be completed: RST_STREAM INTERNAL_ERROR tells the client it is short. */
  destroy(): void {
    this.#request.reset(NGHTTP2_INTERNAL_ERROR);
  }

  /** Bytes of the answer node has not yet sent (waiting for flow-control window or the socket). */
  get pendingBytes(): number {
    return this.#request.stream.writableLength;
  }

  readonly #onDrain = (): void => {
    this.onDrain?.();
  };
}

/**
 * Whether a response may end with a trailer section: it announces one
 * (`Trailer`), or it is gRPC, whose status always comes last. Only these
 * pay for a trailing HEADERS frame; a section arriving on any other
 * response is dropped (it cannot be announced after the HEADERS frame).
 */
function mayCarryTrailers(out: http2.OutgoingHttpHeaders): boolean {
  if (out['trailer'] !== undefined) return true;
  const type = out['content-type'];
  return typeof type === 'string' && type.startsWith('application/grpc');
}

/** The trailer section as node takes it: lower-case names, strings. */
function trailerFields(trailers: ResponseHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (CONNECTION_SPECIFIC.has(lower) || !TOKEN.test(lower)) continue;
    out[lower] = typeof value === 'number' ? String(value) : value;
  }
  return out;
}

/** CANCEL: what a deadline resets a stream with (RFC 9113 §7: the stream is no longer needed). */
export const RESET_CANCEL = NGHTTP2_CANCEL;

function noop(): void {}
