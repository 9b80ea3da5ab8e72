// One request as the pipeline sees the client side of it: the head and
// body that came in (DownstreamRequest) and the answer going out
// (DownstreamResponse). The pipeline (handler, filters, proxy) sees only
// these two interfaces, so that one request is routed, filtered, limited
// and forwarded the same whether it came over HTTP/1.1 or as an HTTP/2
// stream (../http2/stream.ts). This file also holds their HTTP/1.1 form:
// Http1Request and Http1Response live on a ClientConnection, which owns
// the socket, the parser and the order of answers; they only hold the
// request's own state and ask the connection to write.
//
// They replace node's IncomingMessage and ServerResponse on the hot path:
// no stream objects unless a body is read, no per-request event emitters,
// the response head and a small body leave in one write.

import { Readable, type Duplex } from 'node:stream';
import { acceptsTrailers, appendField, UNSAFE_FIELD_VALUE } from './headers.ts';
import { STATUS_CODES } from './status-text.ts';
import type { RequestRecord } from './request-record.ts';

/** Response header fields by lower-cased name, as the proxy assembles them. */
export type ResponseHeaders = Record<string, string | string[] | number | undefined>;

/** A request as the pipeline reads it, whatever the protocol it came in. */
export interface DownstreamRequest {
  readonly method: string;
  /** The request target as sent (HTTP/2: `:path`, or `:authority` for CONNECT). */
  readonly url: string;
  /** Header names and values as received, alternating; HTTP/2's `:authority` appears as Host. */
  readonly rawHeaders: string[];
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  /** The request is a stream of an HTTP/2 connection (and its version 2.0 is no error). */
  readonly http2: boolean;
  readonly remoteAddress: string | undefined;
  readonly response: DownstreamResponse;
  /** The whole message, body included, has been received. */
  readonly messageComplete: boolean;
  /** When the request's first byte arrived (ms), for the request timeout. */
  readonly startedAt: number;
  /** The client is gone: nothing more arrives and nothing can be answered. */
  readonly destroyed: boolean;
  /** The request body as a stream, opened on first use; reading it lets the client send more. */
  readonly body: Readable;
  /** Request body bytes received so far, for the access log. */
  readonly bytesReceived: number;
  /** `Expect: 100-continue`: tell the client to send the body (where its protocol has 1xx answers). */
  sendContinue(): void;
  /**
   * Sets the largest body this request may bring (a ClientTrafficPolicy's
   * maxRequestBodySize), before the pipeline reads the body. Past it the
   * body stream is destroyed and bodyTooLarge is set (at once, when the
   * bytes already received are past it).
   */
  limitBody(maxBytes: number): void;
  /** The body went past bodyLimit: the answer is 413 (or, if one has started, the connection is cut). */
  readonly bodyTooLarge: boolean;
  /**
   * `websocket` when the request is a WebSocket handshake this connection
   * can turn into a tunnel (HTTP/1.1 GET with `Connection: upgrade` and
   * `Upgrade: websocket`, no body); otherwise null or absent, and any
   * Upgrade header is dropped as hop-by-hop.
   */
  readonly upgrade?: string | null;
}

/** The answer to a DownstreamRequest, framed by its protocol. */
export interface DownstreamResponse {
  /**
   * Keep the connection for more requests once this one is answered. Set
   * false to ask the client to close: HTTP/1.1 says `Connection: close`.
   * An HTTP/2 stream ignores it (its framing is never in doubt); its
   * connection is sent GOAWAY when the listener drains.
   */
  shouldKeepAlive: boolean;
  readonly headersSent: boolean;
  /** end() was called. */
  readonly writableEnded: boolean;
  /** The client is gone (or this stream was reset): nothing more can be written. */
  readonly destroyed: boolean;
  /** Called when the client can take more after write() returned false. */
  onDrain: (() => void) | null;
  /** Called when the connection (or stream) closes before this response ended. */
  onClose: (() => void) | null;
  /** Told once when the response ends or is cut (metrics, access log); set by the handler. */
  record: RequestRecord | null;
  /** Throws for a header that would break the framing, before anything is written. */
  writeHead(status: number, reason: string | undefined, headers: ResponseHeaders): void;
  /** False asks the writer to wait for onDrain. */
  write(chunk: Buffer): boolean;
  /**
   * Ends the response; `trailers`, a trailer section from the backend
   * (already vetted: trailersToForward), goes to the client where its
   * protocol carries one: an HTTP/2 trailing HEADERS frame, an HTTP/1.1
   * chunked trailer section when the client sent `TE: trailers`
   * (RFC 9110 §6.5); otherwise it is dropped.
   */
  end(chunk?: Buffer | null, trailers?: ResponseHeaders | null): void;
  /** Tells the client this response is incomplete: HTTP/1.1 cuts the connection, HTTP/2 resets the stream. */
  destroy(): void;
  /**
   * For a request whose `upgrade` is set: answers 101 with `headers` and
   * from then on joins the client's connection to `upstream` (the
   * backend's, after its own 101), bytes both ways, until either closes.
   * False when the client is gone; `upstream` is then the caller's to close.
   */
  switchProtocols?(headers: ResponseHeaders, upstream: Duplex): boolean;
}

/** What an Http1Request and its response need from their connection. */
export interface DownstreamChannel {
  readonly closed: boolean;
  /**
   * Writes bytes of the current response; false asks the writer to wait
   * for onDrain. Without `flush`, writes in the same tick are corked into
   * one; with it, they leave now.
   */
  writeResponse(data: string | Buffer, flush: boolean): boolean;
  /** The response ended: its request may still be receiving a body. */
  responseFinished(request: Http1Request): void;
  /** Cuts the connection: a response that cannot be completed. */
  destroy(): void;
  pauseReading(reason: 'body'): void;
  resumeReading(reason: 'body'): void;
  /** Writes `head` (a 101) and hands the connection to a tunnel to `upstream`; false if it cannot (closed, not the current request). */
  tunnel(request: Http1Request, head: string, upstream: Duplex): boolean;
}

/**
 * A first body chunk up to this size leaves in one string with the head:
 * one plain write instead of a corked writev of two pieces.
 */
const SMALL_BODY_BYTES = 2048;


/** `Date` for responses without one (RFC 9110 §6.6.1), computed once a second. */
let dateValue = '';
let dateExpires = 0;
function currentDate(): string {
  const now = Date.now();
  if (now >= dateExpires) {
    dateValue = new Date(now).toUTCString();
    dateExpires = now - (now % 1000) + 1000;
  }
  return dateValue;
}

/** Appends one response header line, refusing a value that would break the framing. */
function appendResponseField(head: string, name: string, value: string): string {
  if (UNSAFE_FIELD_VALUE.test(value)) throw new TypeError(`invalid value for header ${JSON.stringify(name)}`);
  return appendField(head, name, value);
}

/**
 * The last chunk with a trailer section, for a client that said it takes
 * one (`TE: trailers`); without, the fields are dropped (RFC 9110 §6.5.1:
 * a client may not expect them; Envoy drops them on HTTP/1.1 by default).
 */
function lastChunk(trailers: ResponseHeaders, requestHeaders: readonly string[]): string {
  if (!acceptsTrailers(requestHeaders)) return '0\r\n\r\n';
  let out = '0\r\n';
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined) continue;
    if (typeof value === 'string') out = appendResponseField(out, name, value);
    else if (typeof value === 'number') out = appendField(out, name, String(value));
    else for (let i = 0; i < value.length; i++) out = appendResponseField(out, name, value[i]);
  }
  return out + '\r\n';
}

export class Http1Request implements DownstreamRequest {
  readonly method: string;
  /** The request target as sent. */
  readonly url: string;
  /** Header names and values as received, alternating. */
  readonly rawHeaders: string[];
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  readonly http2 = false;
  readonly remoteAddress: string | undefined;
  readonly response: Http1Response;
  /** `websocket` for a handshake the connection can tunnel (see DownstreamRequest). */
  readonly upgrade: string | null;
  /** The whole message, body included, has been received. */
  messageComplete = false;
  /** When the request's first byte arrived (ms), for the request timeout. */
  readonly startedAt: number;
  bytesReceived = 0;
  readonly #channel: DownstreamChannel;
  /** Opened when the pipeline reads the body; until then chunks wait here. */
  #body: Readable | null = null;
  #early: Buffer[] | null = null;
  /** Nobody will read the rest of the body (answered already, or the connection failed). */
  #discarding = false;
  /** 0: no limit. */
  #bodyLimit = 0;
  bodyTooLarge = false;
  /** Body bytes received, those that came in the head's read included. */
  #bodyBytes = 0;

  constructor(
    channel: DownstreamChannel,
    method: string,
    url: string,
    rawHeaders: string[],
    versionMajor: number,
    versionMinor: number,
    keepAlive: boolean,
    remoteAddress: string | undefined,
    startedAt: number,
    upgrade: string | null = null,
  ) {
    this.#channel = channel;
    this.method = method;
    this.url = url;
    this.rawHeaders = rawHeaders;
    this.httpVersionMajor = versionMajor;
    this.httpVersionMinor = versionMinor;
    this.remoteAddress = remoteAddress;
    this.startedAt = startedAt;
    this.upgrade = upgrade;
    // A handshake the backend refuses is answered as any request, and the
    // connection then closes: what the client sent after it was not parsed.
    this.response = new Http1Response(channel, this, keepAlive && upgrade === null);
  }

  /** The connection is gone: nothing more arrives and nothing can be answered. */
  get destroyed(): boolean {
    return this.#channel.closed;
  }

  /**
   * The request body as a stream, opened on first use. Reading it is what
   * lets the client send more (the connection pauses while it is full).
   */
  get body(): Readable {
    if (this.#body !== null) return this.#body;
    const channel = this.#channel;
    const body = new Readable({ read: () => channel.resumeReading('body') });
    this.#body = body;
    if (this.#early !== null) {
      for (const chunk of this.#early) body.push(chunk);
      this.#early = null;
    }
    if (this.messageComplete) body.push(null);
    else if (this.#discarding || channel.closed) body.destroy();
    return body;
  }

  /** A piece of the body from the parser. */
  receiveBody(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    if (this.#discarding) return;
    this.#bodyBytes += chunk.length;
    if (this.#bodyLimit !== 0 && this.#bodyBytes > this.#bodyLimit) {
      this.bodyTooLarge = true;
      this.discardBody();
      return;
    }
    const body = this.#body;
    if (body === null) {
      (this.#early ??= []).push(chunk);
    } else if (!body.push(chunk)) {
      this.#channel.pauseReading('body');
    }
  }

  limitBody(maxBytes: number): void {
    this.#bodyLimit = maxBytes;
    if (this.#bodyBytes > maxBytes) {
      this.bodyTooLarge = true;
      this.discardBody();
    }
  }

  completeMessage(): void {
    this.messageComplete = true;
    this.#body?.push(null);
  }

  /** The rest of the body goes nowhere; a reader sees the stream end early. */
  discardBody(): void {
    if (this.#discarding) return;
    this.#discarding = true;
    this.#early = null;
    const body = this.#body;
    // Without an error: a body stream nobody listens to for 'error' must not throw.
    if (body !== null && !this.messageComplete) body.destroy();
    this.#channel.resumeReading('body');
  }

  /** HTTP/1.1 `Expect: 100-continue`: tell the client to send the body (HTTP/1.0 has no 1xx). */
  sendContinue(): void {
    if (this.httpVersionMinor !== 0 && !this.response.headersSent && !this.#channel.closed) this.#channel.writeResponse('HTTP/1.1 100 Continue\r\n\r\n', false);
  }
}

export class Http1Response implements DownstreamResponse {
  /** Keep the connection for another request once this one is answered. */
  shouldKeepAlive: boolean;
  headersSent = false;
  /** end() was called. */
  writableEnded = false;
  /** Called when the client can take more after write() returned false. */
  onDrain: (() => void) | null = null;
  /** Called when the connection closes before this response ended. */
  onClose: (() => void) | null = null;
  record: RequestRecord | null = null;
  /** The status sent (0 until the head is), and body bytes handed to the connection. */
  statusCode = 0;
  bytesSent = 0;
  readonly #channel: DownstreamChannel;
  readonly #request: Http1Request;
  /** The head, held back so that it leaves with the first body bytes. */
  #head = '';
  #chunked = false;
  #noBody = false;

  constructor(channel: DownstreamChannel, request: Http1Request, keepAlive: boolean) {
    this.#channel = channel;
    this.#request = request;
    this.shouldKeepAlive = keepAlive;
  }

  get destroyed(): boolean {
    return this.#channel.closed;
  }

  /**
   * Frames the response: Content-Length when the headers carry one, no body
   * for HEAD, 1xx, 204 and 304, otherwise chunked (HTTP/1.1) or delimited
   * by closing the connection (HTTP/1.0). Throws for a header that would
   * break the framing, before anything is written.
   */
  writeHead(status: number, reason: string | undefined, headers: ResponseHeaders): void {
    if (this.headersSent) throw new Error('response head already sent');
    const request = this.#request;
    const statusText = reason ?? STATUS_CODES[status] ?? '';
    if (UNSAFE_FIELD_VALUE.test(statusText)) throw new TypeError('invalid status message');
    let head = `HTTP/1.1 ${status} ${statusText}\r\n`;
    let hasLength = false;
    let hasDate = false;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (name === 'content-length') hasLength = true;
      else if (name === 'date') hasDate = true;
      if (typeof value === 'string') head = appendResponseField(head, name, value);
      else if (typeof value === 'number') head = appendField(head, name, String(value));
      else for (let i = 0; i < value.length; i++) head = appendResponseField(head, name, value[i]);
    }
    if (!hasDate) head += `date: ${currentDate()}\r\n`;
    this.#noBody = request.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    const http10 = request.httpVersionMajor === 1 && request.httpVersionMinor === 0;
    if (!hasLength && !this.#noBody) {
      if (http10) this.shouldKeepAlive = false;
      else {
        this.#chunked = true;
        head += 'transfer-encoding: chunked\r\n';
      }
    }
    if (!this.shouldKeepAlive) head += 'connection: close\r\n';
    else if (http10) head += 'connection: keep-alive\r\n';
    this.#head = head + '\r\n';
    this.headersSent = true;
    this.statusCode = status;
  }

  write(chunk: Buffer): boolean {
    if (this.writableEnded || this.#channel.closed) return false;
    if (!this.headersSent) throw new Error('write() before writeHead()');
    if (this.#noBody || chunk.length === 0) return this.#flushHead(false);
    this.bytesSent += chunk.length;
    const channel = this.#channel;
    if (this.#head !== '') {
      const head = this.#head;
      this.#head = '';
      if (chunk.length <= SMALL_BODY_BYTES) {
        // latin1 maps each byte to one char and back: the body is unchanged.
        const body = chunk.toString('latin1');
        return channel.writeResponse(
          this.#chunked ? `${head}${chunk.length.toString(16)}\r\n${body}\r\n` : head + body,
          true,
        );
      }
      channel.writeResponse(head, false);
    }
    if (this.#chunked) channel.writeResponse(`${chunk.length.toString(16)}\r\n`, false);
    const ok = channel.writeResponse(chunk, false);
    return this.#chunked ? channel.writeResponse('\r\n', false) : ok;
  }

  end(chunk?: Buffer | null, trailers?: ResponseHeaders | null): void {
    if (this.writableEnded || this.#channel.closed) return;
    if (!this.headersSent) throw new Error('end() before writeHead()');
    if (chunk != null && chunk.length !== 0) this.write(chunk);
    this.writableEnded = true;
    const channel = this.#channel;
    if (this.#chunked) {
      const last = trailers == null ? '0\r\n\r\n' : lastChunk(trailers, this.#request.rawHeaders);
      channel.writeResponse(this.#head === '' ? last : this.#head + last, true);
    } else {
      channel.writeResponse(this.#head, true);
    }
    this.#head = '';
    channel.responseFinished(this.#request);
    this.record?.finish(this.statusCode, this.bytesSent);
  }

  /** The connection closed before this response ended: counted with what was sent. */
  abandoned(): void {
    this.record?.finish(this.statusCode, this.bytesSent);
  }

  /** Cuts the connection: the only way to tell the client this response is incomplete. */
  destroy(): void {
    this.#channel.destroy();
  }

  switchProtocols(headers: ResponseHeaders, upstream: Duplex): boolean {
    if (this.headersSent || this.#request.upgrade === null || this.#channel.closed) return false;
    let head = 'HTTP/1.1 101 Switching Protocols\r\n';
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (typeof value === 'string') head = appendResponseField(head, name, value);
      else if (typeof value === 'number') head = appendField(head, name, String(value));
      else for (let i = 0; i < value.length; i++) head = appendResponseField(head, name, value[i]);
    }
    this.headersSent = true;
    this.writableEnded = true;
    this.statusCode = 101;
    this.record?.finish(101, 0);
    return this.#channel.tunnel(this.#request, head + '\r\n', upstream);
  }

  #flushHead(flush: boolean): boolean {
    if (this.#head === '') return true;
    const head = this.#head;
    this.#head = '';
    return this.#channel.writeResponse(head, flush);
  }
}
