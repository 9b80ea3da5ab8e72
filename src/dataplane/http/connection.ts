// One client connection speaking HTTP/1.1: node's llhttp binding parses
// the requests (the parser node's own server uses, strict mode) straight
// from the socket (consume(): no Buffer and no stream event per read, as
// node's server does), and this class keeps their order. A request is
// handed to the pipeline when the one before it is answered, and never
// before the parser has taken the whole read its head came in: a framing
// error later in the same bytes (a malformed chunk size) refuses it with
// 400 before any backend sees it. Requests pipelined behind it wait with
// their heads parsed, and the socket stops reading until they are served.
//
// The deadlines are checked by the listener's sweep, not by a timer per
// request: the head, the whole request, the pause between two reads of a
// body (nginx's client_body_timeout), a response the client does not read
// (nginx's send_timeout), and the idle keep-alive. Progress is sampled
// from the socket's own byte counters at each sweep, so the hot path pays
// nothing for them; a deadline fires between its limit and one sweep
// interval later.
//
// A WebSocket handshake (HTTP/1.1 GET with Upgrade: websocket) ends the
// parsing: what the client sent after its head is held, reading stops, and
// the request goes through the pipeline like any other. If the backend
// answers 101, the connection becomes a tunnel (tunnel.ts) and the held
// bytes go to the backend first; if anything else answers, the answer is
// sent and the connection closes.

import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from './status-text.ts';
import type { RequestLimits } from '../limits.ts';
import { clientAddressOf } from '../proxy-protocol.ts';
import { consumableHandle, HTTPParser, METHODS, type Parser, type StreamHandle } from '../llhttp.ts';
import type { LogFn } from '../log.ts';
import { Http1Request, type DownstreamChannel, type DownstreamRequest, type DownstreamResponse } from './downstream.ts';
import { Tunnel } from './tunnel.ts';

export type RequestListener = (req: DownstreamRequest, res: DownstreamResponse) => void;

export interface ConnectionSpec {
  readonly key: string;
  readonly limits: RequestLimits;
  readonly log: LogFn;
  readonly onRequest: RequestListener;
}

/** How long a refused client gets to read our answer before the socket is cut. */
const LINGER_MS = 1_000;

/**
 * Requests held with their heads parsed while an earlier one is answered.
 * The parser reads a whole socket chunk ahead; past this many, the rest of
 * the chunk is not taken as requests and the connection closes after the
 * ones held (a pipelining client resends what was not answered).
 */
const MAX_PIPELINED = 32;

function statusForParseError(err: NodeJS.ErrnoException & { reason?: string }): number {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return 431;
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return 413;
    case 'HPE_INVALID_VERSION':
      // llhttp takes HTTP/0.9 (with a version, which 0.9 never sent), 1.0,
      // 1.1 and 2.0 (the head check answers the two that are not 1.x); a
      // well-formed other version, 1.2 or 3.0, it reports with this reason.
      // A malformed one (`HTTP/x.y`) is a bad request.
      return err.reason === 'Invalid HTTP version' ? 505 : 400;
    default:
      return 400;
  }
}

/**
 * A WebSocket opening handshake (RFC 6455 §4.1) this connection can turn
 * into a tunnel: HTTP/1.1 GET, `websocket` among the Upgrade tokens, and no
 * body. llhttp has already found `upgrade` in Connection. Only requests
 * llhttp flags as upgrades come here: the hot path pays nothing.
 */
function isWebSocketHandshake(method: string, major: number, minor: number, raw: string[]): boolean {
  if (method !== 'GET' || major !== 1 || minor !== 1) return false;
  let websocket = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name === 'upgrade') {
      for (const token of raw[i + 1].split(',')) if (token.trim().toLowerCase() === 'websocket') websocket = true;
    } else if (name === 'transfer-encoding' || (name === 'content-length' && raw[i + 1].trim() !== '0')) {
      return false;
    }
  }
  return websocket;
}

function errorReply(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`;
}

export class ClientConnection implements DownstreamChannel {
  readonly socket: net.Socket;
  readonly #spec: ConnectionSpec;
  readonly #parser: Parser;
  readonly #remoteAddress: string | undefined;
  /** The request being answered (or whose body is still arriving after its answer). */
  #current: Http1Request | null = null;
  /** Requests whose heads arrived while #current was being answered. */
  readonly #waiting: Http1Request[] = [];
  /** The request whose body the parser is in. */
  #receiving: Http1Request | null = null;
  /**
   * #current, when its head came in the read the parser is still taking:
   * it goes to the pipeline once that read is parsed without error.
   */
  #undispatched: Http1Request | null = null;
  /** When the head now arriving began (ms); 0 when no head is arriving. */
  #headStartedAt = 0;
  /** When the connection last went idle (ms). */
  #idleSince: number;
  /** No request has arrived yet: the first one is owed within the headers timeout. */
  #fresh = true;
  #headers: string[] = [];
  #url = '';
  #pausedForBody = false;
  #pausedForQueue = false;
  #corked = false;
  /** No more requests are taken: the connection closes after its answers. */
  #ending = false;
  /** The parser failed: nothing more is read. */
  #parseFailed = false;
  /** socket.bytesRead at the last sweep, and when the sweep last saw it grow (ms). */
  #readSeen = 0;
  #readProgressAt: number;
  /**
   * Bytes the socket has finished writing at the last sweep, and since when
   * (ms) its write buffer has held bytes without any of them going out; 0
   * while the buffer is empty.
   */
  #flushedSeen = 0;
  #writeStalledSince = 0;
  /** The handle the parser reads from directly, when it could take it. */
  readonly #handle: StreamHandle | null;
  /** llhttp stopped after an Upgrade (or CONNECT) head: the rest of that read is still to parse. */
  #afterUpgrade = false;
  /** The WebSocket handshake whose head ended the parsing, until it is answered or tunnelled. */
  #handshake: Http1Request | null = null;
  /**
   * What the client sent after the handshake's head in the same read (at
   * most one socket read), for the backend once tunnelled; null until the
   * read is parsed.
   */
  #handshakeRest: Buffer | null = null;
  /** Set once the connection carries a WebSocket: HTTP is over on it. */
  #tunnel: Tunnel | null = null;
  #parserFreed = false;
  closed = false;

  constructor(socket: net.Socket, spec: ConnectionSpec, now: number) {
    this.socket = socket;
    this.#spec = spec;
    this.#remoteAddress = clientAddressOf(socket);
    this.#idleSince = now;
    this.#readProgressAt = now;
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, spec.limits.maxHeaderBytes, 0);
    parser[HTTPParser.kOnMessageBegin] = this.#onMessageBegin;
    parser[HTTPParser.kOnHeaders] = this.#onHeaders;
    parser[HTTPParser.kOnHeadersComplete] = this.#onHeadersComplete;
    parser[HTTPParser.kOnBody] = this.#onBody;
    parser[HTTPParser.kOnMessageComplete] = this.#onMessageComplete;
    this.#parser = parser;
    socket.setNoDelay(true);
    const handle = consumableHandle(socket);
    if (handle !== null) {
      this.#handle = handle;
      parser[HTTPParser.kOnExecute] = this.#onExecute;
      parser.consume(handle);
    } else {
      this.#handle = null;
      socket.on('data', this.#onData);
    }
    socket.on('end', this.#onEnd);
    socket.on('drain', this.#onDrain);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
  }

  /** Between requests, with nothing in flight: safe to close. */
  get idle(): boolean {
    return this.#current === null && this.#receiving === null && this.#headStartedAt === 0 && this.#tunnel === null && !this.closed;
  }

  /** Enforces the deadlines; called by the listener's sweep. */
  checkDeadlines(now: number): void {
    if (this.closed) return;
    const limits = this.#spec.limits;
    const bytesRead = this.socket.bytesRead;
    if (bytesRead !== this.#readSeen) {
      this.#readSeen = bytesRead;
      this.#readProgressAt = now;
    }
    if (this.#writeStalled(now, limits.responseWriteTimeoutMs)) {
      // The client stopped reading: what is queued for it (bounded by the
      // proxy's backpressure) and its backend exchange are let go.
      this.#cut('response write timeout');
      return;
    }
    const tunnel = this.#tunnel;
    if (tunnel !== null) {
      const reason = tunnel.expired(now, limits.websocketIdleTimeoutMs, limits.upstreamIdleTimeoutMs);
      if (reason !== null) this.#cut(reason);
      return;
    }
    if (this.#headStartedAt !== 0 && now - this.#headStartedAt > limits.headersTimeoutMs) {
      this.#refuse(408, 'request head timeout');
      return;
    }
    const receiving = this.#receiving;
    if (receiving !== null) {
      if (limits.requestTimeoutMs > 0 && now - receiving.startedAt > limits.requestTimeoutMs) {
        this.#refuseOrCut('request timeout');
        return;
      }
      // Only while we read: a body paused because its backend is slow to
      // take it, or behind a pipelined request, is not the client's pause.
      if (!this.#pausedForBody && !this.#pausedForQueue && now - this.#readProgressAt > limits.requestBodyIdleTimeoutMs) {
        this.#refuseOrCut('request body idle timeout');
        return;
      }
    }
    if (this.idle && now - this.#idleSince > (this.#fresh ? limits.headersTimeoutMs : limits.keepAliveTimeoutMs)) this.destroy();
  }

  /**
   * Bytes read from the socket before this connection took it (the
   * listener read them to tell HTTP/1.1 from HTTP/2): parsed before what
   * the socket reads next.
   */
  receive(head: Buffer): void {
    this.#onData(head);
  }

  /** Closes now if idle, else after the answers in flight. */
  closeWhenIdle(): void {
    this.#ending = true;
    if (this.idle) this.destroy();
  }

  // --- DownstreamChannel: what requests and responses ask of the connection.

  writeResponse(data: string | Buffer, flush: boolean): boolean {
    if (this.closed) return false;
    const socket = this.socket;
    // Head, chunk framing and body written in one tick leave in one writev.
    if (!this.#corked && !flush) {
      this.#corked = true;
      socket.cork();
      process.nextTick(this.#uncork);
    }
    const ok = data.length === 0 ? true : typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data);
    if (flush && this.#corked) this.#uncork();
    return ok;
  }

  responseFinished(request: Http1Request): void {
    if (request !== this.#current) return;
    if (!request.response.shouldKeepAlive) {
      this.#ending = true;
      request.discardBody();
      this.#endSocket();
      return;
    }
    if (!request.messageComplete) {
      // Answered before the body arrived (a refusal, a redirect): read and
      // drop the rest so the next request can follow.
      request.discardBody();
      return;
    }
    this.#next();
  }

  pauseReading(reason: 'body' | 'queue'): void {
    if (reason === 'body') this.#pausedForBody = true;
    else this.#pausedForQueue = true;
    // A consumed handle is paused at the handle: the socket's own pause()
    // only stops its stream, which no longer sees the reads.
    if (this.#handle !== null) this.#handle.readStop();
    else this.socket.pause();
  }

  resumeReading(reason: 'body' | 'queue'): void {
    const wasPaused = this.#pausedForBody || this.#pausedForQueue;
    if (reason === 'body') this.#pausedForBody = false;
    else this.#pausedForQueue = false;
    // After a WebSocket handshake nothing more is read as HTTP.
    if (!wasPaused || this.#pausedForBody || this.#pausedForQueue || this.closed || this.#handshake !== null) return;
    // The body idle clock restarts: the pause was ours.
    this.#readProgressAt = Date.now();
    if (this.#handle !== null) this.#handle.readStart();
    else this.socket.resume();
  }

  tunnel(request: Http1Request, head: string, upstream: Duplex): boolean {
    if (this.closed || request !== this.#current || request !== this.#handshake || this.#handshakeRest === null) return false;
    const socket = this.socket;
    this.#uncork();
    socket.write(head, 'latin1');
    const rest = this.#handshakeRest;
    this.#current = null;
    this.#handshake = null;
    this.#handshakeRest = null;
    socket.off('end', this.#onEnd);
    socket.off('drain', this.#onDrain);
    if (this.#handle !== null) {
      // The socket's stream takes the reads again. Node still counts the
      // handle as reading (the parser stopped it behind its back), so the
      // stream would not start it: start it here, before any other tick.
      this.#parser.unconsume();
      this.#handle.readStart();
    } else {
      socket.off('data', this.#onData);
    }
    this.#freeParser();
    this.#tunnel = new Tunnel(socket, upstream, rest, Date.now());
    return true;
  }

  destroy(): void {
    this.socket.destroy();
    this.#onClose();
  }

  // --- Parser callbacks.

  readonly #onMessageBegin = (): void => {
    this.#headStartedAt = Date.now();
  };

  readonly #onHeaders = (headers: string[], url: string): void => {
    for (let i = 0; i < headers.length; i++) this.#headers.push(headers[i]);
    this.#url += url;
  };

  readonly #onHeadersComplete = (
    major: number,
    minor: number,
    raw: string[] | undefined,
    method: number,
    url: string | undefined,
    _statusCode: unknown,
    _statusMessage: unknown,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number => {
    if (upgrade) this.#afterUpgrade = true;
    if (raw === undefined) {
      raw = this.#headers;
      this.#headers = [];
    }
    const handshake = upgrade && isWebSocketHandshake(METHODS[method], major, minor, raw);
    if (url === undefined) {
      url = this.#url;
      this.#url = '';
    }
    // The request timeout counts from the request's first byte, head included.
    const startedAt = this.#headStartedAt !== 0 ? this.#headStartedAt : Date.now();
    this.#headStartedAt = 0;
    this.#fresh = false;
    if (this.#ending || (this.#current !== null && this.#waiting.length >= MAX_PIPELINED)) {
      // Not taken: its body, if any, is parsed and dropped.
      this.#ending = true;
      this.#receiving = null;
      return 0;
    }
    const request = new Http1Request(
      this,
      METHODS[method],
      url,
      raw,
      major,
      minor,
      shouldKeepAlive,
      this.#remoteAddress,
      startedAt,
      handshake ? 'websocket' : null,
    );
    if (handshake) this.#handshake = request;
    this.#receiving = request;
    if (this.#current === null) {
      this.#current = request;
      this.#undispatched = request;
    } else {
      this.#waiting.push(request);
      this.pauseReading('queue');
    }
    // Other upgrade requests are served as plain requests (Upgrade is
    // hop-by-hop and not forwarded); 0 lets llhttp frame the body as usual.
    return 0;
  };

  readonly #onBody = (chunk: Buffer): void => {
    this.#receiving?.receiveBody(chunk);
  };

  readonly #onMessageComplete = (): void => {
    const request = this.#receiving;
    if (request === null) return;
    this.#receiving = null;
    request.completeMessage();
    if (request === this.#current && request.response.writableEnded && !this.closed) this.#next();
  };

  // --- Socket events.

  /** After each read the parser took from the handle. */
  readonly #onExecute = (r: number | Error): void => {
    if (this.closed || this.#parseFailed) return;
    if (r instanceof Error) {
      this.#onParseError(r as NodeJS.ErrnoException);
      return;
    }
    if (this.#afterUpgrade) {
      this.#afterUpgrade = false;
      const read = this.#parser.getCurrentBuffer();
      if (this.#handshake !== null) this.#holdAfterHandshake(read.subarray(r));
      else if (r < read.length) this.#onData(read.subarray(r));
    }
    this.#dispatchParsed();
  };

  readonly #onData = (chunk: Buffer): void => {
    if (this.closed || this.#parseFailed) return;
    let offset = 0;
    // llhttp stops after a request that asks for an upgrade (or CONNECT):
    // what follows is parsed as the next request, since none is granted.
    while (offset < chunk.length) {
      let r: number | Error;
      try {
        r = this.#parser.execute(offset === 0 ? chunk : chunk.subarray(offset));
      } catch (err) {
        // A pipeline callback that throws must end this connection, not the worker.
        this.#spec.log('error', 'request handling failed', { listener: this.#spec.key, error: String(err) });
        this.destroy();
        return;
      }
      if (r instanceof Error) {
        this.#onParseError(r as NodeJS.ErrnoException);
        return;
      }
      if (r === 0 || this.closed) break;
      if (this.#afterUpgrade) {
        this.#afterUpgrade = false;
        if (this.#handshake !== null) {
          this.#holdAfterHandshake(chunk.subarray(offset + r));
          break;
        }
      }
      offset += r;
    }
    this.#dispatchParsed();
  };

  readonly #onEnd = (): void => {
    // The client finished sending. A request cut off mid-head or mid-body
    // cannot be served; answers to complete requests still go out.
    if (this.#receiving !== null || (this.#headStartedAt !== 0 && this.#current === null)) {
      this.destroy();
      return;
    }
    this.#ending = true;
    if (this.#current === null) this.#endSocket();
  };

  readonly #onDrain = (): void => {
    this.#current?.response.onDrain?.();
  };

  readonly #onError = (): void => {
    // ECONNRESET and the like: 'close' follows and does the cleanup.
  };

  readonly #onClose = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.#tunnel?.close();
    this.#handshake = null;
    this.#handshakeRest = null;
    const current = this.#current;
    this.#current = null;
    if (current !== null) {
      current.discardBody();
      if (!current.response.writableEnded) {
        current.response.onClose?.();
        current.response.abandoned();
      }
    }
    for (const request of this.#waiting) {
      request.discardBody();
      request.response.abandoned();
    }
    this.#waiting.length = 0;
    this.#receiving = null;
    this.#freeParser();
  };

  readonly #uncork = (): void => {
    if (!this.#corked) return;
    this.#corked = false;
    this.socket.uncork();
  };

  // --- Internals.

  #freeParser(): void {
    if (this.#parserFreed) return;
    this.#parserFreed = true;
    // Not while it may be executing: llhttp must not be freed under itself.
    const parser = this.#parser;
    setImmediate(() => parser.close());
  }

  /**
   * The read that held a WebSocket handshake's head is parsed: the rest of
   * it is not HTTP (or not ours to parse), and nothing more is read until
   * the handshake is answered.
   */
  #holdAfterHandshake(rest: Buffer): void {
    this.#handshakeRest = rest;
    if (this.#handle !== null) this.#handle.readStop();
    else this.socket.pause();
  }

  /** The read is parsed without error: the request whose head it held goes to the pipeline. */
  #dispatchParsed(): void {
    const request = this.#undispatched;
    if (request === null) return;
    this.#undispatched = null;
    if (this.closed || this.#current !== request) return;
    try {
      this.#spec.onRequest(request, request.response);
    } catch (err) {
      // A pipeline that throws must end this connection, not the worker.
      this.#spec.log('error', 'request handling failed', { listener: this.#spec.key, error: String(err) });
      this.destroy();
    }
  }

  /**
   * Since when the socket's write buffer has held bytes none of which went
   * out, checked against `limitMs`. Progress is a write completing
   * (bytesWritten counts bytes handed to the socket, writableLength those
   * not yet written), so a client that reads anything at all within the
   * limit keeps its connection, as with nginx's send_timeout.
   */
  #writeStalled(now: number, limitMs: number): boolean {
    const socket = this.socket;
    const pending = socket.writableLength;
    if (pending === 0) {
      this.#writeStalledSince = 0;
      return false;
    }
    const flushed = socket.bytesWritten - pending;
    if (this.#writeStalledSince === 0 || flushed !== this.#flushedSeen) {
      this.#flushedSeen = flushed;
      this.#writeStalledSince = now;
      return false;
    }
    return now - this.#writeStalledSince > limitMs;
  }

  /** A deadline passed: 408 if nothing was answered yet, else the connection is cut. */
  #refuseOrCut(reason: string): void {
    const current = this.#current;
    if (current !== null && current !== this.#undispatched && current.response.headersSent) this.#cut(reason);
    else this.#refuse(408, reason);
  }

  /** Cuts the connection: an answer is already on the wire, or the client does not read. */
  #cut(reason: string): void {
    this.#spec.log('info', 'client connection cut', {
      listener: this.#spec.key,
      reason,
      remote: this.#remoteAddress,
      unsentBytes: this.socket.writableLength,
    });
    this.destroy();
  }

  /** The current request is answered and received in full: on to the next. */
  #next(): void {
    this.#current = null;
    const next = this.#waiting.shift();
    if (next !== undefined) {
      // Not from inside the answer that just ended (an upstream callback,
      // whose connection is not yet free for the next request).
      this.#current = next;
      process.nextTick(() => {
        if (this.closed || this.#current !== next) return;
        if (this.#waiting.length === 0) this.resumeReading('queue');
        this.#spec.onRequest(next, next.response);
      });
      return;
    }
    if (this.#ending) {
      this.#endSocket();
      return;
    }
    this.#idleSince = Date.now();
  }

  #onParseError(err: NodeJS.ErrnoException): void {
    this.#parseFailed = true;
    if (err.code === 'HPE_CLOSED_CONNECTION') {
      // Bytes after a request that said `Connection: close`: that request
      // is served, and nothing after it (RFC 9112 §9.6).
      this.#ending = true;
      if (this.#handle !== null) this.#handle.readStop();
      else this.socket.pause();
      this.#dispatchParsed();
      return;
    }
    const status = statusForParseError(err);
    this.#spec.log('info', 'malformed request', { listener: this.#spec.key, status, error: err.code ?? err.message });
    this.#refuse(status, null);
  }

  /**
   * Stops reading and answers `status` unless an answer is already on the
   * wire (its bytes own the connection then), and closes.
   */
  #refuse(status: number, reason: string | null): void {
    if (reason !== null) this.#spec.log('info', 'request refused', { listener: this.#spec.key, status, reason });
    this.#ending = true;
    const current = this.#current;
    const receiving = this.#receiving;
    receiving?.discardBody();
    // A request never handed to the pipeline: this refusal is its answer.
    const dispatched = current !== null && current !== this.#undispatched;
    this.#undispatched = null;
    if (dispatched && current !== receiving && !current.response.writableEnded) {
      // An earlier request is still being answered; ours would come out of order.
      this.#waiting.length = 0;
      return;
    }
    if (dispatched && current.response.headersSent) {
      this.destroy();
      return;
    }
    // The pipeline may still be forwarding this request: it hears the
    // connection close, and nothing it does afterwards is written.
    const socket = this.socket;
    this.#uncork();
    socket.end(errorReply(status), 'latin1');
    this.#lingerThenDestroy();
    this.#onClose();
  }

  /** Ends our side once the answers are out, and cuts a client that never closes its side. */
  #endSocket(): void {
    this.#uncork();
    this.socket.end();
    this.#lingerThenDestroy();
  }

  #lingerThenDestroy(): void {
    const socket = this.socket;
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }
}
