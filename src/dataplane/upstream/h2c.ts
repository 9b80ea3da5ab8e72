// Cleartext HTTP/2 to a backend (a Service port with appProtocol
// kubernetes.io/h2c): prior knowledge, no Upgrade dance, as Envoy does for
// h2c. One node:http2 client session per endpoint carries its requests as
// streams; it speaks undici's DispatchHandler/DispatchController interface,
// as the lean HTTP/1.1 client does, so proxy.ts drives both alike.
//
// Bounds: streams per session are the backend's SETTINGS_MAX_CONCURRENT_STREAMS
// (node queues none past it: we do, up to maxPending, each waiting at most
// the connect timeout); the connect, response-head and body-pause limits are
// the same as the HTTP/1.1 client's; a session with no stream closes after
// the keep-alive timeout.

import http2 from 'node:http2';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HeaderTable } from '../http/headers.ts';
import type { UpstreamCluster } from './balancer.ts';

class ConnectError extends Error {
  readonly code = 'GATEHOUSE_CONNECT_FAILED';
}
class ConnectTimeoutError extends Error {
  readonly code = 'UND_ERR_CONNECT_TIMEOUT';
  readonly limit = 'upstreamConnectTimeoutMs';
}
class SocketError extends Error {
  readonly code = 'UND_ERR_SOCKET';
}
class ResponseTimeoutError extends Error {
  readonly code = 'UND_ERR_HEADERS_TIMEOUT';
  readonly limit = 'upstreamResponseTimeoutMs';
}
class IdleTimeoutError extends Error {
  readonly code = 'UND_ERR_BODY_TIMEOUT';
  readonly limit = 'upstreamIdleTimeoutMs';
}
class QueueFullError extends Error {
  readonly code = 'GATEHOUSE_UPSTREAM_QUEUE_FULL';
  readonly limit = 'maxPendingRequestsPerCluster';
}
class QueueTimeoutError extends Error {
  readonly code = 'GATEHOUSE_UPSTREAM_QUEUE_TIMEOUT';
  readonly limit = 'upstreamConnectTimeoutMs';
}
class InvalidRequestError extends Error {
  readonly code = 'UND_ERR_INVALID_ARG';
}

/** Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2); `host` becomes :authority. */
// `te` is not here: the table only ever keeps `TE: trailers`, the one value HTTP/2 allows (RFC 9113 §8.2.2), which gRPC servers look for.
const NOT_IN_H2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

export interface H2cPoolOptions {
  connectTimeout: number;
  /** Request sent to response head, unless a request brings its own (headersTimeout). */
  responseTimeout: number;
  /** Longest pause in a response body, unless a request brings its own (bodyTimeout). */
  idleTimeout: number;
  /** How long a session with no stream is kept. */
  keepAliveTimeout: number;
  /** Requests waiting for a stream while the session is at the backend's stream limit. */
  maxPending: number;
}

class Stream implements Dispatcher.DispatchController {
  readonly opts: Dispatcher.DispatchOptions;
  readonly handler: Dispatcher.DispatchHandler;
  readonly pool: H2cPool;
  h2: http2.ClientHttp2Stream | null = null;
  done = false;
  aborted = false;
  paused = false;
  reason: Error | null = null;
  /** While queued: when it gives up (ms). */
  queuedUntil = 0;
  #timer: NodeJS.Timeout | null = null;
  #detachBody: (() => void) | null = null;

  constructor(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler, pool: H2cPool) {
    this.opts = opts;
    this.handler = handler;
    this.pool = pool;
  }

  pause(): void {
    this.paused = true;
    this.h2?.pause();
  }
  resume(): void {
    this.paused = false;
    this.h2?.resume();
  }
  abort(reason: Error): void {
    if (this.done) return;
    this.aborted = true;
    this.reason = reason;
    this.pool.unqueue(this);
    this.fail(reason);
  }

  fail(err: Error): void {
    if (this.done) return;
    this.#finish();
    this.h2?.close(http2.constants.NGHTTP2_CANCEL);
    this.handler.onResponseError?.(this, err);
  }

  #finish(): void {
    this.done = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#detachBody?.();
    this.pool.streamEnded(this);
  }

  start(session: http2.ClientHttp2Session): void {
    const opts = this.opts;
    const headers: http2.OutgoingHttpHeaders = { ':method': opts.method, ':path': opts.path, ':scheme': 'http' };
    const table = opts.headers as HeaderTable;
    let authority = this.pool.authority;
    for (const name of table.keys()) {
      const value = table.get(name) as string | string[];
      if (name === 'host') authority = typeof value === 'string' ? value : value[0];
      else if (!NOT_IN_H2.has(name)) headers[name] = value;
    }
    headers[':authority'] = authority;
    const body = opts.body as Readable | null;
    let h2: http2.ClientHttp2Stream;
    try {
      h2 = session.request(headers, { endStream: body == null });
    } catch (err) {
      this.fail(new InvalidRequestError(`cannot send the request to ${this.pool.authority}: ${(err as Error).message}`));
      return;
    }
    this.h2 = h2;
    const responseTimeoutMs = opts.headersTimeout != null && opts.headersTimeout > 0 ? opts.headersTimeout : this.pool.opts.responseTimeout;
    const idleTimeoutMs = opts.bodyTimeout != null && opts.bodyTimeout > 0 ? opts.bodyTimeout : this.pool.opts.idleTimeout;
    // Counted from the start rather than from the body's end: a slow upload is bounded by the body-pause limit below too.
    this.#timer = setTimeout(() => this.fail(new ResponseTimeoutError(`no response head from ${this.pool.authority} within ${responseTimeoutMs} ms`)), responseTimeoutMs);
    this.#timer.unref();
    h2.on('response', (h) => {
      if (this.done) return;
      const status = Number(h[':status']);
      if (status < 200) return;
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
      // A pause we made ourselves (the client reads slowly) is the client side's to bound.
      h2.setTimeout(idleTimeoutMs, () => {
        if (!this.paused) this.fail(new IdleTimeoutError(`the response body paused for ${idleTimeoutMs} ms`));
      });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(h)) if (!k.startsWith(':') && v !== undefined) out[k] = v as string | string[];
      this.handler.onResponseStart?.(this, status, out, '');
    });
    h2.on('data', (chunk: Buffer) => {
      if (!this.done) this.handler.onResponseData?.(this, chunk);
    });
    // A trailing HEADERS frame (gRPC's grpc-status): node emits it before 'end'.
    let trailers: Record<string, string | string[]> = {};
    h2.on('trailers', (t) => {
      for (const [k, v] of Object.entries(t)) if (!k.startsWith(':') && v !== undefined) trailers[k] = v as string | string[];
    });
    h2.on('end', () => {
      if (this.done) return;
      this.#finish();
      this.handler.onResponseEnd?.(this, trailers);
      trailers = {};
    });
    h2.on('error', (err) => this.fail(new SocketError(`stream to ${this.pool.authority} failed: ${err.message}`)));
    h2.on('close', () => {
      if (!this.done) this.fail(new SocketError(`stream to ${this.pool.authority} closed (code ${h2.rstCode})`));
    });
    if (this.paused) h2.pause();
    if (body != null) this.#sendBody(body, h2);
  }

  #sendBody(body: Readable, h2: http2.ClientHttp2Stream): void {
    const onData = (chunk: Buffer) => {
      if (!h2.write(chunk)) body.pause();
    };
    const onDrain = () => body.resume();
    const onEnd = () => {
      detach();
      h2.end();
    };
    const onClose = () => {
      detach();
      // The client went away mid-upload: the upstream request cannot complete.
      this.fail(new SocketError('request body aborted'));
    };
    const detach = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('close', onClose);
      h2.off('drain', onDrain);
      this.#detachBody = null;
    };
    this.#detachBody = detach;
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('close', onClose);
    h2.on('drain', onDrain);
    if (body.isPaused()) body.resume();
  }
}

export class H2cPool {
  readonly opts: H2cPoolOptions;
  readonly authority: string;
  readonly #url: string;
  #session: http2.ClientHttp2Session | null = null;
  #connected = false;
  /** Streams open on the session. */
  #active = 0;
  /** Waiting for the session to connect or for a stream below the backend's limit. */
  readonly #queue: Stream[] = [];
  #connectTimer: NodeJS.Timeout | null = null;
  #idleTimer: NodeJS.Timeout | null = null;
  #queueSweep: NodeJS.Timeout | null = null;
  #closing = false;
  #closed: (() => void) | null = null;

  constructor(origin: string, opts: H2cPoolOptions) {
    const url = new URL(origin);
    this.authority = url.host;
    this.#url = `http://${url.host}`;
    this.opts = opts;
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler, cluster?: UpstreamCluster): boolean {
    if (!(opts.headers instanceof Map)) throw new InvalidRequestError('headers must be a header table (a Map)');
    const s = new Stream(opts, handler, this);
    handler.onRequestStart?.(s, {});
    if (s.done) return true;
    if (this.#closing) {
      s.fail(new SocketError('upstream pool closed'));
      return true;
    }
    if (opts.upgrade != null) {
      // An HTTP/1.1 Upgrade has no meaning on an HTTP/2 stream, and RFC 8441 (extended CONNECT) to backends is not done yet.
      s.fail(new InvalidRequestError(`${this.authority} is an h2c backend: an Upgrade (WebSocket) cannot be carried to it`));
      return true;
    }
    const session = this.#ready();
    if (session !== null && this.#active < this.#limit(session)) {
      this.#run(s, session);
      return true;
    }
    // A policy's circuitBreaker.maxPendingRequests bounds the queue of each endpoint here.
    if (this.#queue.length >= (cluster?.admission.maxPending ?? this.opts.maxPending)) {
      s.fail(new QueueFullError(`${this.authority} has ${this.#active} streams open and ${this.#queue.length} requests waiting, the most allowed`));
      return true;
    }
    s.queuedUntil = Date.now() + this.opts.connectTimeout;
    this.#queue.push(s);
    this.#sweepQueue();
    return true;
  }

  #limit(session: http2.ClientHttp2Session): number {
    return session.remoteSettings.maxConcurrentStreams ?? 100;
  }

  #run(s: Stream, session: http2.ClientHttp2Session): void {
    this.#active++;
    if (this.#idleTimer !== null) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = null;
    }
    s.start(session);
  }

  /** The connected session, or null while connecting (a connect is started if none is). */
  #ready(): http2.ClientHttp2Session | null {
    if (this.#session !== null) return this.#connected ? this.#session : null;
    const session = http2.connect(this.#url, { settings: { enablePush: false } });
    this.#session = session;
    this.#connected = false;
    this.#connectTimer = setTimeout(() => {
      this.#sessionFailed(session, new ConnectTimeoutError(`no connection to ${this.authority} within ${this.opts.connectTimeout} ms`));
    }, this.opts.connectTimeout);
    this.#connectTimer.unref();
    session.once('remoteSettings', () => {
      if (this.#session !== session) return;
      this.#connected = true;
      if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
      this.#connectTimer = null;
      this.#drainQueue();
      this.#idleIfUnused();
    });
    session.on('error', (err: NodeJS.ErrnoException) => {
      const e = this.#connected
        ? new SocketError(`session to ${this.authority} failed: ${err.code ?? err.message}`)
        : new ConnectError(`cannot connect to ${this.authority}: ${err.code ?? err.message}`);
      this.#sessionFailed(session, e);
    });
    session.on('goaway', () => this.#forget(session));
    session.on('close', () => this.#sessionFailed(session, new SocketError(`session to ${this.authority} closed`)));
    session.unref();
    return null;
  }

  /** Takes the session out of use: new requests open another; its open streams finish or fail on their own. */
  #forget(session: http2.ClientHttp2Session): void {
    if (this.#session !== session) return;
    this.#session = null;
    this.#connected = false;
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
    this.#active = 0;
  }

  #sessionFailed(session: http2.ClientHttp2Session, err: Error): void {
    const wasCurrent = this.#session === session;
    const connected = this.#connected;
    this.#forget(session);
    session.destroy();
    // Requests still waiting for this session's connect fail with it; waiting for room, they try a new one.
    if (wasCurrent && !connected) for (const s of this.#queue.splice(0)) s.fail(err);
    else this.#drainQueue();
    this.#checkClosed();
  }

  #drainQueue(): void {
    while (this.#queue.length !== 0) {
      const session = this.#ready();
      if (session === null || this.#active >= this.#limit(session)) return;
      this.#run(this.#queue.shift()!, session);
    }
  }

  unqueue(s: Stream): void {
    const i = this.#queue.indexOf(s);
    if (i !== -1) this.#queue.splice(i, 1);
  }

  streamEnded(s: Stream): void {
    if (s.h2 === null) return;
    if (this.#active > 0) this.#active--;
    this.#drainQueue();
    this.#idleIfUnused();
    this.#checkClosed();
  }

  #idleIfUnused(): void {
    if (this.#active !== 0 || this.#session === null || !this.#connected || this.#idleTimer !== null) return;
    const session = this.#session;
    if (this.#closing) {
      this.#forget(session);
      session.close();
      return;
    }
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      if (this.#session !== session || this.#active !== 0) return;
      this.#forget(session);
      session.close();
    }, this.opts.keepAliveTimeout);
    this.#idleTimer.unref();
  }

  /** One timer while anything waits: a queued request gives up after the connect timeout. */
  #sweepQueue(): void {
    if (this.#queueSweep !== null) return;
    this.#queueSweep = setInterval(() => {
      const now = Date.now();
      for (const s of [...this.#queue]) {
        if (s.queuedUntil <= now) {
          this.unqueue(s);
          s.fail(new QueueTimeoutError(`no stream to ${this.authority} within ${this.opts.connectTimeout} ms`));
        }
      }
      if (this.#queue.length === 0 && this.#queueSweep !== null) {
        clearInterval(this.#queueSweep);
        this.#queueSweep = null;
      }
    }, Math.max(25, Math.min(500, Math.floor(this.opts.connectTimeout / 8))));
    this.#queueSweep.unref();
  }

  #checkClosed(): void {
    if (this.#closing && this.#active === 0 && this.#queue.length === 0) {
      const session = this.#session;
      if (session !== null) {
        this.#forget(session);
        session.close();
      }
      this.#closed?.();
      this.#closed = null;
    }
  }

  close(): Promise<void> {
    this.#closing = true;
    if (this.#active === 0 && this.#queue.length === 0) {
      this.#checkClosed();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#closed = resolve;
    });
  }

  destroy(): Promise<void> {
    this.#closing = true;
    for (const s of this.#queue.splice(0)) s.fail(new SocketError('upstream pool destroyed'));
    const session = this.#session;
    if (session !== null) {
      this.#forget(session);
      session.destroy();
    }
    this.#closed?.();
    this.#closed = null;
    return Promise.resolve();
  }
}
