// The upstream HTTP/1.1 client: keep-alive connections per endpoint on
// net.Socket, each request head written in one write, responses parsed by
// node's own llhttp binding (the one node's http client uses: Content-Length,
// chunked, close-delimited, HEAD and 1xx), reading straight from the socket
// handle (consume(): no Buffer and no stream event per read). It speaks undici's
// DispatchHandler/DispatchController interface, so proxy.ts drives it and
// undici's Pool alike (GATEHOUSE_UPSTREAM=undici selects undici). Measured
// against undici on the bench: small body +15-25% req/s, 16 KiB +20%, p99
// about halved, ~110 MiB less RSS per process tree.
//
// A request with `upgrade` (a WebSocket handshake) that the backend answers
// 101 takes its connection out of the pool: the parser lets go of the
// socket, and the socket, with any bytes that came after the 101, goes to
// the handler's onRequestUpgrade, as undici does.

import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { appendField, UNSAFE_FIELD_VALUE, type HeaderTable } from '../http/headers.ts';
import type { RequestLimits } from '../limits.ts';
import { consumableHandle, HTTPParser, type Parser, type StreamHandle } from '../llhttp.ts';
import { ClusterAdmission } from './admission.ts';
import type { UpstreamCluster } from './balancer.ts';

const kOnHeaders = HTTPParser.kOnHeaders;
const kOnHeadersComplete = HTTPParser.kOnHeadersComplete;
const kOnBody = HTTPParser.kOnBody;
const kOnMessageComplete = HTTPParser.kOnMessageComplete;

// The errors a request can end with. Codes are undici's where the meaning
// is the same, so proxy.ts maps both clients' errors to one status table;
// `limit` names the limit (a RequestLimits field) that was hit, for the log.

/** The backend closed or reset a connection it had accepted. */
class SocketError extends Error {
  readonly code = 'UND_ERR_SOCKET';
}
/** The connection could not be opened (refused, unreachable, ...). */
class ConnectError extends Error {
  readonly code = 'GATEHOUSE_CONNECT_FAILED';
}
class ConnectTimeoutError extends Error {
  readonly code = 'UND_ERR_CONNECT_TIMEOUT';
  readonly limit: keyof RequestLimits = 'upstreamConnectTimeoutMs';
}
/** The whole request was sent, and no response head came in time. */
class ResponseTimeoutError extends Error {
  readonly code = 'UND_ERR_HEADERS_TIMEOUT';
  readonly limit: keyof RequestLimits = 'upstreamResponseTimeoutMs';
}
/** The response body paused for too long. */
class IdleTimeoutError extends Error {
  readonly code = 'UND_ERR_BODY_TIMEOUT';
  readonly limit: keyof RequestLimits = 'upstreamIdleTimeoutMs';
}
/** The backend stopped reading the request body. */
class SendTimeoutError extends Error {
  readonly code = 'GATEHOUSE_UPSTREAM_SEND_TIMEOUT';
  readonly limit: keyof RequestLimits = 'upstreamIdleTimeoutMs';
}
/** The cluster is at its connection cap and its queue is full. */
class QueueFullError extends Error {
  readonly code = 'GATEHOUSE_UPSTREAM_QUEUE_FULL';
  readonly limit: keyof RequestLimits = 'maxPendingRequestsPerCluster';
}
/** Waited in the cluster's queue as long as a connect may take. */
class QueueTimeoutError extends Error {
  readonly code = 'GATEHOUSE_UPSTREAM_QUEUE_TIMEOUT';
  readonly limit: keyof RequestLimits = 'upstreamConnectTimeoutMs';
}
class InvalidRequestError extends Error {
  readonly code = 'UND_ERR_INVALID_ARG';
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const PAYLOAD_METHODS = new Set(['POST', 'PUT', 'PATCH', 'QUERY']);

/**
 * A backend that announces `Keep-Alive: timeout=N` closes the connection
 * after N s idle; we stop using it this much earlier, so that our next
 * request and its close do not cross on the wire (undici keeps a margin
 * too: keepAliveTimeoutThreshold).
 */
const KEEP_ALIVE_HINT_MARGIN_MS = 1_000;
const KEEP_ALIVE_TIMEOUT = /(?:^|[\s,;])timeout\s*=\s*(\d{1,9})/i;

/** The connection cap and queue of a cluster, as this client uses them. */
type Admission = ClusterAdmission<Req>;

/** What dispatch reads besides undici's options. */
export interface LeanDispatchOptions extends Dispatcher.DispatchOptions {
  /**
   * false: a request that meets a keep-alive connection the backend closed
   * fails like any other try instead of being sent again on a new one; for
   * a caller that retries by its own policy and counts every try.
   */
  resendOnStale?: boolean;
}

/** Appends one header line, refusing one that would break the request's framing. */
function appendHeader(head: string, name: string, value: string): string {
  if (!TOKEN.test(name) || UNSAFE_FIELD_VALUE.test(value)) throw new InvalidRequestError(`invalid header ${JSON.stringify(name)}`);
  return appendField(head, name, value);
}


/** Response header lines as the handler reads them: lower-cased names, repeated lines as arrays. */
function headerRecord(raw: string[]): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const v = headers[name];
    if (v === undefined) headers[name] = raw[i + 1];
    else if (typeof v === 'string') headers[name] = [v, raw[i + 1]];
    else v.push(raw[i + 1]);
  }
  return headers;
}

/** `Keep-Alive: timeout=N` in ms, or 0 when the value names no timeout. */
function keepAliveHintMs(value: string): number {
  const m = KEEP_ALIVE_TIMEOUT.exec(value);
  return m === null ? 0 : Number(m[1]) * 1_000;
}

/** RFC 9110 §9.2.2 idempotent methods we resend, without a body or with one not read yet. */
function resendable(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}

/** A response without a trailer section (shared: handlers only read it). */
const NO_TRAILERS: Record<string, string | string[]> = Object.freeze({}) as Record<string, string | string[]>;

class Req implements Dispatcher.DispatchController {
  readonly opts: Dispatcher.DispatchOptions;
  readonly handler: Dispatcher.DispatchHandler;
  /** The endpoint it goes to. */
  readonly pool: LeanPool;
  conn: Conn | null = null;
  /** The cluster queue it waits in for a connection, else null. */
  waitingIn: Admission | null = null;
  /** While waiting: when it gives up (ms). */
  queuedUntil = 0;
  done = false;
  aborted = false;
  paused = false;
  reason: Error | null = null;
  bodyDone: boolean;
  /** A byte of the request body went out: the request cannot be sent again. */
  bodyStarted = false;
  interim = false;
  /** The final response head arrived. */
  responded = false;
  /** When the whole request had been written (ms); 0 before. The response timeout counts from here. */
  sentAt = 0;
  /** Sent again already, once, after meeting a stale connection. */
  resent = false;
  /** Request sent to response head (the route's timeout, else the pool's). */
  readonly responseTimeoutMs: number;
  /** Longest pause in the response body. */
  readonly idleTimeoutMs: number;
  /** Stops forwarding the request body (set while it is being sent). */
  detachBody: (() => void) | null = null;
  /** The protocol asked for (`Upgrade`), or null. */
  readonly upgrade: string | null;
  /** The request head, ready to write. */
  readonly head: string;
  /** Whether the body goes with Transfer-Encoding: chunked. */
  readonly chunked: boolean;
  constructor(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler, pool: LeanPool) {
    this.opts = opts;
    this.handler = handler;
    this.pool = pool;
    this.bodyDone = opts.body == null;
    this.responseTimeoutMs = opts.headersTimeout != null && opts.headersTimeout > 0 ? opts.headersTimeout : pool.responseTimeoutMs;
    this.idleTimeoutMs = opts.bodyTimeout != null && opts.bodyTimeout > 0 ? opts.bodyTimeout : pool.idleTimeoutMs;
    const method = opts.method;
    const path = opts.path;
    if (!TOKEN.test(method) || UNSAFE_FIELD_VALUE.test(path) || path.includes(' ')) throw new InvalidRequestError('invalid method or path');
    let head = `${method} ${path} HTTP/1.1\r\n`;
    // The proxy's header table: lower-cased names, repeated lines as arrays.
    const headers = opts.headers;
    if (!(headers instanceof Map)) throw new InvalidRequestError('headers must be a header table (a Map)');
    const table = headers as HeaderTable;
    for (const name of table.keys()) {
      const value = table.get(name) as string | string[];
      if (typeof value === 'string') head = appendHeader(head, name, value);
      else for (let i = 0; i < value.length; i++) head = appendHeader(head, name, value[i]);
    }
    const hasLength = table.has('content-length');
    if (!table.has('host')) head += `host: ${pool.hostHeader}\r\n`;
    const upgrade = typeof opts.upgrade === 'string' ? opts.upgrade : null;
    this.upgrade = upgrade;
    if (upgrade !== null) {
      if (!TOKEN.test(upgrade)) throw new InvalidRequestError('invalid upgrade protocol');
      head += `connection: upgrade\r\nupgrade: ${upgrade}\r\n`;
    }
    this.chunked = false;
    if (opts.body == null) {
      if (!hasLength && PAYLOAD_METHODS.has(method)) head += 'content-length: 0\r\n';
    } else if (!hasLength) {
      this.chunked = true;
      head += 'transfer-encoding: chunked\r\n';
    }
    this.head = head + '\r\n';
  }
  pause(): void {
    this.paused = true;
    this.conn?.pauseReading();
  }
  resume(): void {
    this.paused = false;
    this.conn?.resumeReading();
  }
  abort(reason: Error): void {
    if (this.done) return;
    this.aborted = true;
    this.reason = reason;
    // A client that goes away leaves the queue.
    if (this.waitingIn !== null) {
      this.waitingIn.remove(this);
      this.waitingIn = null;
    }
    const conn = this.conn;
    this.fail(reason);
    if (conn !== null) conn.destroy();
  }
  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.detachBody?.();
    this.handler.onResponseError?.(this, err);
  }
  /** Its wait in the cluster queue is over; the queue has let it go. */
  expire(): void {
    this.waitingIn = null;
    this.fail(new QueueTimeoutError(`no connection to ${this.pool.hostHeader} within ${this.pool.connectTimeoutMs} ms: the cluster is at its connection cap`));
  }
  /**
   * Whether it may go again on a new connection after the one it was sent
   * on turned out to be closed by the backend: only the idempotent methods
   * that are safe to repeat, only once, and only while its body (if any)
   * has not been read, since what was read cannot be sent twice.
   */
  mayResend(): boolean {
    if (this.resent || this.done || !resendable(this.opts.method)) return false;
    if ((this.opts as LeanDispatchOptions).resendOnStale === false) return false;
    return this.opts.body == null || (!this.bodyStarted && !this.bodyDone);
  }
}

class Conn {
  readonly pool: LeanPool;
  /** The cluster this connection is counted against. */
  readonly admission: Admission;
  readonly socket: net.Socket;
  readonly parser: Parser;
  req: Req | null = null;
  keepAlive = false;
  connected = false;
  dead = false;
  /** Responses completed on it; above 0, a request on it meets a reused connection. */
  served = 0;
  /** When it was opened (ms): the connect timeout counts from here. */
  readonly openedAt = Date.now();
  /** Last read, request sent or return to the pool (ms), for the pool's deadlines. */
  activeAt = this.openedAt;
  /** While idle: when the pool closes it (ms). */
  idleUntil = 0;
  /** The backend's `Keep-Alive: timeout` from the last response, ms; 0 when it gave none. */
  keepAliveHintMs = 0;
  /** The handle the parser reads from directly (set once connected), else null. */
  #handle: StreamHandle | null = null;
  /** A response ended within the read being parsed. */
  #completedInRead = false;
  /** A byte arrived since the current request was given to this connection. */
  #readSinceRun = false;
  /** Since when (ms) the request body waits for the backend to read what was written; 0 when it does not. */
  #blockedSince = 0;
  #headers: string[] = [];
  /** The backend answered 101 to an upgrade: set from its head until the socket is handed over. */
  #upgraded: { statusCode: number; headers: Record<string, string | string[]> } | null = null;

  constructor(pool: LeanPool, admission: Admission) {
    this.pool = pool;
    this.admission = admission;
    const tlsOptions = pool.tls;
    // Over TLS the connection counts as open once the handshake (and the certificate checks) passed.
    const socket = tlsOptions === undefined
      ? net.connect({ host: pool.host, port: pool.port, noDelay: true })
      : tls.connect({ ...tlsOptions, host: pool.host, port: pool.port });
    if (tlsOptions !== undefined) socket.setNoDelay(true);
    this.socket = socket;
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    parser[kOnHeaders] = this.#onHeaders;
    parser[kOnHeadersComplete] = this.#onHeadersComplete;
    parser[kOnBody] = this.#onBody;
    parser[kOnMessageComplete] = this.#onMessageComplete;
    this.parser = parser;
    socket.once(tlsOptions === undefined ? 'connect' : 'secureConnect', () => {
      this.connected = true;
      const handle = consumableHandle(socket);
      if (handle !== null) {
        socket.off('data', this.#onData);
        parser[HTTPParser.kOnExecute] = this.#onExecute;
        parser.consume(handle);
        this.#handle = handle;
      }
      if (this.req !== null) this.#send(this.req, Date.now());
    });
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
  }

  /**
   * The pool's sweep: ends a connect, a response or a body upload that has
   * waited longer than its limit. One sweep per pool instead of a timer
   * per request (setting and clearing those cost ~10% of req/s).
   */
  check(now: number): void {
    if (!this.connected) {
      if (now - this.openedAt >= this.pool.connectTimeoutMs) {
        this.#fatal(new ConnectTimeoutError(`no connection to ${this.pool.hostHeader} within ${this.pool.connectTimeoutMs} ms`));
      }
      return;
    }
    const req = this.req;
    if (req === null) return;
    if (req.responded) {
      // A pause we made ourselves (the client reads slowly) is the client side's to bound.
      if (!req.paused && now - this.activeAt >= req.idleTimeoutMs) {
        this.#fatal(new IdleTimeoutError(`the response body paused for ${req.idleTimeoutMs} ms`));
      }
    } else if (req.sentAt !== 0) {
      if (now - req.sentAt >= req.responseTimeoutMs) {
        this.#fatal(new ResponseTimeoutError(`no response head within ${req.responseTimeoutMs} ms of the request`));
      }
    } else if (this.#blockedSince !== 0 && now - this.#blockedSince >= req.idleTimeoutMs) {
      this.#fatal(new SendTimeoutError(`the backend read none of the request body for ${req.idleTimeoutMs} ms`));
    }
  }

  pauseReading(): void {
    if (this.#handle !== null) this.#handle.readStop();
    else this.socket.pause();
  }

  resumeReading(): void {
    // The idle timeout counts the backend's pauses, not ours.
    this.activeAt = Date.now();
    if (this.#handle !== null) this.#handle.readStart();
    else this.socket.resume();
  }

  run(req: Req, now: number): void {
    this.req = req;
    req.conn = this;
    this.#readSinceRun = false;
    this.#blockedSince = 0;
    this.activeAt = now;
    if (this.connected) this.#send(req, now);
  }

  #send(req: Req, now: number): void {
    const body = req.opts.body as Readable | null;
    this.socket.write(req.head, 'latin1');
    if (body == null) {
      req.sentAt = now;
      return;
    }
    const chunked = req.chunked;
    const socket = this.socket;
    let waiting = false;
    const onDrain = () => {
      waiting = false;
      this.#blockedSince = 0;
      body.resume();
    };
    const onData = (chunk: Buffer) => {
      if (chunk.length === 0) return;
      req.bodyStarted = true;
      let ok: boolean;
      if (chunked) {
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        socket.write(chunk);
        ok = socket.write('\r\n', 'latin1');
      } else {
        ok = socket.write(chunk);
      }
      if (!ok && !waiting) {
        waiting = true;
        this.#blockedSince = Date.now();
        body.pause();
        socket.once('drain', onDrain);
      }
    };
    const detach = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('close', onClose);
      socket.off('drain', onDrain);
      this.#blockedSince = 0;
      req.detachBody = null;
    };
    const onEnd = () => {
      detach();
      if (chunked) socket.write('0\r\n\r\n', 'latin1');
      req.bodyDone = true;
      req.sentAt = Date.now();
    };
    const onClose = () => {
      detach();
      if (!req.bodyDone) {
        // The client went away mid-upload: the upstream request cannot complete.
        req.fail(new SocketError('request body aborted'));
        this.destroy();
      }
    };
    req.detachBody = detach;
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('close', onClose);
    // A body held back when its first connection turned out stale.
    if (body.isPaused()) body.resume();
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.dead) return;
    this.activeAt = Date.now();
    if (this.req === null) {
      // Bytes nobody asked for: the connection's framing is lost.
      this.destroy();
      return;
    }
    this.#readSinceRun = true;
    // A handler callback that throws unwinds through execute(): it must end
    // this request, not escape the 'data' listener and take the worker down.
    let r: number | Error;
    try {
      r = this.parser.execute(chunk);
    } catch (err) {
      r = err instanceof Error ? err : new Error(String(err));
    }
    if (r instanceof Error) this.#fatal(r);
    else if (this.#upgraded !== null) this.#handOver(chunk.subarray(r));
  };

  readonly #onError = (err: Error): void => {
    this.#socketFailed(err);
  };

  readonly #onClose = (): void => {
    this.#socketFailed(new SocketError('other side closed'));
  };

  /** After each read the parser took from the handle. */
  readonly #onExecute = (r: number | Error): void => {
    if (this.dead) return;
    if (this.#upgraded !== null && typeof r === 'number') {
      this.#handOver(this.parser.getCurrentBuffer().subarray(r));
      return;
    }
    this.activeAt = Date.now();
    const completed = this.#completedInRead;
    this.#completedInRead = false;
    if (r instanceof Error) this.#fatal(r);
    // Bytes nobody asked for: the connection's framing is lost.
    else if (this.req === null && !completed) this.destroy();
    // A read that ended a response belongs to that one, not to a request
    // the connection was handed to within it.
    else if (!completed) this.#readSinceRun = true;
  };

  readonly #onEnd = (): void => {
    let r: number | Error | undefined;
    try {
      r = this.parser.finish();
    } catch (err) {
      r = err instanceof Error ? err : new Error(String(err));
    }
    if (r instanceof Error) this.#fatal(r);
    else this.#socketFailed(new SocketError('other side closed'));
  };

  /**
   * The socket failed or the backend closed it. A request that met a
   * reused connection closed before any byte of its response came (the
   * backend's keep-alive ended as the request went out) is sent again on a
   * new connection when that is safe; anything else fails.
   */
  #socketFailed(err: Error): void {
    if (this.dead) return;
    if (!this.connected) {
      const code = (err as NodeJS.ErrnoException).code;
      // A refused certificate says why (issuer unknown, name mismatch); no key material is in these messages.
      const why = this.pool.tls !== undefined ? `${code ?? 'TLS'}: ${err.message}` : code ?? err.message;
      this.#fatal(new ConnectError(`cannot connect to ${this.pool.hostHeader}: ${why}`));
      return;
    }
    const req = this.req;
    if (req !== null && this.served !== 0 && !this.#readSinceRun && req.mayResend()) {
      this.req = null;
      req.conn = null;
      if (req.detachBody !== null) {
        req.detachBody();
        // Nothing was read from it yet: keep it so for the next connection.
        (req.opts.body as Readable).pause();
      }
      // The new connection is counted before this one is let go, so the
      // request keeps its place ahead of any queue.
      this.pool.resend(req, this.admission);
      this.destroy();
      return;
    }
    this.#fatal(err);
  }

  readonly #onHeaders = (headers: string[]): void => {
    for (let i = 0; i < headers.length; i++) this.#headers.push(headers[i]);
  };

  readonly #onHeadersComplete = (
    _maj: number,
    _min: number,
    raw: string[] | undefined,
    _method: unknown,
    _url: unknown,
    statusCode: number,
    statusMessage: string,
    _upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number => {
    const req = this.req;
    if (raw === undefined) {
      raw = this.#headers;
      this.#headers = [];
    }
    if (req === null) {
      this.destroy();
      return 1;
    }
    if (req.done) return 1;
    if (statusCode === 101) {
      // llhttp takes whatever follows a 101 as another protocol and stops.
      if (req.upgrade === null) {
        this.#fatal(new SocketError('the backend switched protocols unasked'));
        return 1;
      }
      req.responded = true;
      this.#upgraded = { statusCode, headers: headerRecord(raw) };
      return 2;
    }
    if (statusCode < 200) {
      req.interim = true;
      return 1;
    }
    req.responded = true;
    this.keepAlive = shouldKeepAlive;
    const headers = headerRecord(raw);
    // Read before the handler strips it (hop-by-hop).
    const keepAlive = headers['keep-alive'];
    this.keepAliveHintMs = keepAlive === undefined ? 0 : this.pool.keepAliveHint(typeof keepAlive === 'string' ? keepAlive : keepAlive[0]);
    try {
      req.handler.onResponseStart?.(req, statusCode, headers, statusMessage);
    } catch (err) {
      this.#handlerFailed(err);
      return 1;
    }
    return req.opts.method === 'HEAD' ? 1 : 0;
  };

  readonly #onBody = (b: Buffer): void => {
    const req = this.req;
    if (req === null || req.done) return;
    try {
      req.handler.onResponseData?.(req, b);
    } catch (err) {
      this.#handlerFailed(err);
    }
  };

  readonly #onMessageComplete = (): void => {
    const req = this.req;
    // A 101's head "completes" it: the socket is handed over once execute() returns.
    if (req === null || this.#upgraded !== null) return;
    this.#completedInRead = true;
    if (req.interim) {
      req.interim = false;
      return;
    }
    // Fields after the last chunk (the parser hands them over as late headers): the trailer section.
    let trailers: Record<string, string | string[]> = NO_TRAILERS;
    if (this.#headers.length !== 0) {
      trailers = headerRecord(this.#headers);
      this.#headers = [];
    }
    this.req = null;
    req.conn = null;
    this.served++;
    // Answered before the upload finished: the rest of it is not sent.
    if (!req.bodyDone) req.detachBody?.();
    const reusable = this.keepAlive && req.bodyDone && !this.pool.closing;
    if (!req.done) {
      req.done = true;
      if (req.paused) this.resumeReading();
      try {
        req.handler.onResponseEnd?.(req, trailers);
      } catch (err) {
        this.#handlerFailed(err);
        return;
      }
    }
    if (reusable && !this.dead) this.pool.release(this);
    else this.destroy();
  };

  /**
   * The backend switched protocols: the socket leaves the pool and goes to
   * the handler, with `rest` (what followed the 101 in the same read) put
   * back to be read first.
   */
  #handOver(rest: Buffer): void {
    const upgraded = this.#upgraded as { statusCode: number; headers: Record<string, string | string[]> };
    const req = this.req as Req;
    const socket = this.socket;
    this.#upgraded = null;
    this.req = null;
    req.conn = null;
    req.done = true;
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('error', this.#onError);
    socket.off('close', this.#onClose);
    const handle = this.#handle;
    if (handle !== null) {
      this.parser.unconsume();
      // Node still counts the handle as reading (the parser stopped and
      // started it behind its back): start it for the stream's own reads.
      handle.readStart();
    }
    // Read again only once the new owner asks (node's server does the same).
    socket.pause();
    if (rest.length !== 0) socket.unshift(rest);
    this.dead = true;
    const parser = this.parser;
    setImmediate(() => parser.close());
    this.pool.remove(this);
    try {
      req.handler.onRequestUpgrade?.(req, upgraded.statusCode, upgraded.headers, socket);
    } catch {
      socket.destroy();
    }
  }

  /**
   * A handler callback threw. It runs under the parser, which the socket
   * drives directly: nothing above would catch it, so it ends this request
   * and connection here instead of the worker.
   */
  #handlerFailed(err: unknown): void {
    this.#fatal(err instanceof Error ? err : new Error(String(err)));
  }

  #fatal(err: Error): void {
    const req = this.req;
    this.req = null;
    if (req !== null) {
      req.conn = null;
      req.fail(err);
    }
    this.destroy();
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    // Not while it may be executing: llhttp must not be freed under itself.
    const parser = this.parser;
    setImmediate(() => parser.close());
    this.pool.remove(this);
  }
}

export interface LeanPoolOptions {
  /** How long an idle connection is kept. */
  keepAliveTimeout: number;
  connectTimeout: number;
  /** Request sent to response head, unless a request brings its own (headersTimeout). */
  responseTimeout?: number;
  /** Longest pause in a response body, unless a request brings its own (bodyTimeout). */
  idleTimeout?: number;
  /** Connections per cluster (per pool for requests dispatched without one). */
  maxConnections?: number;
  /** Requests waiting for a connection, per cluster. */
  maxPending?: number;
  /** Connect with TLS (BackendTLSPolicy): tls.connect() options without host and port. */
  tls?: tls.ConnectionOptions;
}

export class LeanPool {
  readonly host: string;
  readonly port: number;
  readonly hostHeader: string;
  readonly keepAliveTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxPending: number;
  readonly tls: tls.ConnectionOptions | undefined;
  /** Idle connections; used from the end, so the longest idle are at the front. */
  readonly #idle: Conn[] = [];
  readonly #all = new Set<Conn>();
  /** For requests dispatched without a cluster (tools, tests): the pool is its own cluster. */
  readonly #ownAdmission: Admission;
  /**
   * One timer per pool for every deadline (connect, response, body pauses,
   * idle connections), instead of a socket timer set and cleared per
   * request. It runs while there are connections.
   */
  #sweep: NodeJS.Timeout | null = null;
  readonly #sweepEveryMs: number;
  /** The last Keep-Alive header value parsed, and its timeout: backends repeat the same one. */
  #hintText = '';
  #hintMs = 0;
  closing = false;
  #destroyed = false;
  #closed: (() => void) | null = null;

  constructor(origin: string, opts: LeanPoolOptions) {
    const url = new URL(origin);
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    this.tls = opts.tls;
    this.hostHeader = url.host;
    this.keepAliveTimeoutMs = opts.keepAliveTimeout;
    this.connectTimeoutMs = opts.connectTimeout;
    this.responseTimeoutMs = opts.responseTimeout ?? 60_000;
    this.idleTimeoutMs = opts.idleTimeout ?? 60_000;
    this.maxConnections = opts.maxConnections ?? 1024;
    this.maxPending = opts.maxPending ?? 1024;
    this.#ownAdmission = new ClusterAdmission(origin);
    // An eighth of the shortest limit: a deadline is met at most 12.5% late
    // (e.g. a 60 s timeout within 60.5 s), and an idle connection closes
    // well before a backend with a slightly longer keep-alive closes it
    // under a request. Routes with shorter timeouts keep their own timer
    // (proxy.ts).
    const shortest = Math.min(this.keepAliveTimeoutMs, this.connectTimeoutMs, this.responseTimeoutMs, this.idleTimeoutMs);
    this.#sweepEveryMs = Math.max(25, Math.min(500, Math.floor(shortest / 8)));
  }

  /**
   * `cluster` is the endpoint's cluster: its connections are counted
   * together, and requests beyond its cap wait in its queue.
   */
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler, cluster?: UpstreamCluster): boolean {
    // Throws for a head that cannot be sent, before any callback (as undici does).
    const req = new Req(opts, handler, this);
    handler.onRequestStart?.(req, {});
    if (req.done) return true;
    const now = Date.now();
    const idle = this.#idle;
    while (idle.length !== 0) {
      const conn = idle.pop() as Conn;
      // Past its idle deadline, and the sweep has not come by yet: the
      // backend may be closing it (its Keep-Alive timeout) right now.
      if (conn.idleUntil > now) {
        conn.run(req, now);
        return true;
      }
      conn.destroy();
    }
    this.#admit(req, cluster, now);
    return true;
  }

  /** A request that needs a new connection: open one, wait for one, or be refused. */
  #admit(req: Req, cluster: UpstreamCluster | undefined, now: number): void {
    const admission = (cluster?.admission ?? this.#ownAdmission) as Admission;
    if (admission.open < (admission.maxConnections ?? this.maxConnections)) {
      this.#open(req, admission, now);
    } else if (admission.waiting === 0 && cluster !== undefined && this.#closeIdleOf(cluster, admission)) {
      // At the cap, with a connection of this cluster idle at another endpoint: that one makes room.
      this.#open(req, admission, now);
    } else if (admission.waiting < (admission.maxPending ?? this.maxPending)) {
      req.queuedUntil = now + this.connectTimeoutMs;
      req.waitingIn = admission;
      admission.enqueue(req);
    } else {
      req.fail(new QueueFullError(
        `cluster ${admission.cluster} has ${admission.open} connections and ${admission.waiting} requests waiting, the most allowed`,
      ));
    }
  }

  #open(req: Req, admission: Admission, now: number): void {
    if (this.#destroyed) {
      req.fail(new SocketError('upstream pool closed'));
      return;
    }
    const conn = new Conn(this, admission);
    admission.open++;
    this.#all.add(conn);
    this.#startSweep();
    conn.run(req, now);
  }

  /** Closes one idle connection of `admission` at any endpoint of `cluster`; false if there is none. */
  #closeIdleOf(cluster: UpstreamCluster, admission: Admission): boolean {
    for (const endpoint of cluster.endpoints) {
      const pool = endpoint.pool;
      if (!(pool instanceof LeanPool)) continue;
      const idle = pool.#idle;
      for (let i = 0; i < idle.length; i++) {
        if (idle[i].admission === admission) {
          idle[i].destroy();
          return true;
        }
      }
    }
    return false;
  }

  /** A request whose connection went stale: once more, on a new connection. */
  resend(req: Req, admission: Admission): void {
    req.resent = true;
    this.#open(req, admission, Date.now());
  }

  /** The Keep-Alive header's timeout in ms (0 for none). */
  keepAliveHint(value: string): number {
    if (value !== this.#hintText) {
      this.#hintText = value;
      this.#hintMs = keepAliveHintMs(value);
    }
    return this.#hintMs;
  }

  /** A connection finished a response and may serve another. */
  release(conn: Conn): void {
    const admission = conn.admission;
    const now = Date.now();
    if (admission.waiting !== 0) {
      // The cluster is at its cap: the oldest waiter gets this connection,
      // or, when it waits for another endpoint, this connection's place.
      const next = admission.peek() as Req;
      if (next.pool === this) {
        admission.shift();
        next.waitingIn = null;
        conn.run(next, now);
      } else {
        conn.destroy();
      }
      return;
    }
    const hint = conn.keepAliveHintMs;
    const life = hint === 0 ? this.keepAliveTimeoutMs : Math.min(this.keepAliveTimeoutMs, hint - KEEP_ALIVE_HINT_MARGIN_MS);
    if (life <= 0) {
      conn.destroy();
      return;
    }
    conn.activeAt = now;
    conn.idleUntil = now + life;
    this.#idle.push(conn);
  }

  remove(conn: Conn): void {
    this.#all.delete(conn);
    const i = this.#idle.indexOf(conn);
    if (i !== -1) this.#idle.splice(i, 1);
    if (this.#all.size === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
    const admission = conn.admission;
    admission.open--;
    // A place is free: the oldest waiters get it, each on its own endpoint.
    while (admission.waiting !== 0 && admission.open < (admission.maxConnections ?? this.maxConnections)) {
      const next = admission.shift() as Req;
      next.waitingIn = null;
      next.pool.#open(next, admission, Date.now());
    }
    if (this.closing && this.#all.size === 0) this.#closed?.();
  }

  #startSweep(): void {
    if (this.#sweep !== null) return;
    this.#sweep = setInterval(this.#checkDeadlines, this.#sweepEveryMs);
    this.#sweep.unref();
  }

  readonly #checkDeadlines = (): void => {
    const now = Date.now();
    const idle = this.#idle;
    // From the end: destroy() takes the connection out of the list.
    for (let i = idle.length - 1; i >= 0; i--) if (idle[i].idleUntil <= now) idle[i].destroy();
    for (const conn of this.#all) conn.check(now);
  };

  close(): Promise<void> {
    this.closing = true;
    for (const c of [...this.#idle]) c.destroy();
    if (this.#all.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#closed = resolve;
    });
  }

  destroy(): Promise<void> {
    this.closing = true;
    this.#destroyed = true;
    for (const c of [...this.#all]) c.destroy();
    return Promise.resolve();
  }
}
