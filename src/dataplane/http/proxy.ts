// Forwards an exchange to one upstream endpoint with undici's dispatch API:
// the request body is streamed from the client socket, the response body is
// written to the client as it arrives, and backpressure on the client pauses
// the upstream read. Headers going up get hop-by-hop removal and
// X-Forwarded-*; headers coming back get hop-by-hop removal and the route's
// response modifiers.

import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { CompiledConfig } from '../config.ts';
import type { LogFn } from '../log.ts';
import type { UpstreamEndpoint } from '../upstream/balancer.ts';
import type { Exchange } from './exchange.ts';
import { modifyResponseHeaders } from './filters.ts';
import { stripHopByHopFromResponse, stripHopByHopFromTable } from './headers.ts';
import { sendLocalReply } from './responses.ts';

/** The route's deadline passed before the response completed. */
class RouteTimeoutError extends Error {
  readonly code = 'GATEHOUSE_ROUTE_TIMEOUT';
}

/** The client went away; nobody is left to answer. */
class ClientGoneError extends Error {
  readonly code = 'GATEHOUSE_CLIENT_GONE';
}

/**
 * No connection to be had: the backend cannot be reached, or its cluster
 * is at its connection cap and the queue is full or took too long. As
 * Envoy does, 503: the request never reached a backend, so a client may
 * safely try again.
 */
const UNAVAILABLE_CODES: ReadonlySet<string> = new Set([
  'GATEHOUSE_CONNECT_FAILED',
  'UND_ERR_CONNECT_TIMEOUT',
  'GATEHOUSE_UPSTREAM_QUEUE_FULL',
  'GATEHOUSE_UPSTREAM_QUEUE_TIMEOUT',
  // undici reports a failed connect with the system's code.
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** The backend took the request and was too slow to answer it. */
const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'GATEHOUSE_ROUTE_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'GATEHOUSE_UPSTREAM_SEND_TIMEOUT',
  'ETIMEDOUT',
]);

/** Which limit (a RequestLimits field, or the route's) an error code means was hit, for the log. */
const LIMIT_OF_CODE: Readonly<Record<string, string>> = {
  GATEHOUSE_ROUTE_TIMEOUT: 'route timeouts (HTTPRoute timeouts.request / backendRequest)',
  UND_ERR_CONNECT_TIMEOUT: 'upstreamConnectTimeoutMs',
  UND_ERR_HEADERS_TIMEOUT: 'upstreamResponseTimeoutMs',
  UND_ERR_BODY_TIMEOUT: 'upstreamIdleTimeoutMs',
  GATEHOUSE_UPSTREAM_SEND_TIMEOUT: 'upstreamIdleTimeoutMs',
  GATEHOUSE_UPSTREAM_QUEUE_FULL: 'maxPendingRequestsPerCluster',
  GATEHOUSE_UPSTREAM_QUEUE_TIMEOUT: 'upstreamConnectTimeoutMs',
};

function codeOf(err: Error): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** 503 when no connection could be had, 504 when the upstream was too slow, 502 for anything else it did wrong. */
export function statusForUpstreamError(err: Error): 502 | 503 | 504 {
  const code = codeOf(err);
  if (code === undefined) return 502;
  if (UNAVAILABLE_CODES.has(code)) return 503;
  return TIMEOUT_CODES.has(code) ? 504 : 502;
}

/**
 * Sets the headers that go upstream on the exchange's table: hop-by-hop
 * removed, X-Forwarded-* added. Done before filters run, so a
 * RequestHeaderModifier can still override them.
 */
export function prepareUpstreamHeaders(ex: Exchange): void {
  const headers = ex.requestHeaders;
  stripHopByHopFromTable(headers);
  // We answered `Expect: 100-continue` ourselves (the handler does); the upstream
  // gets the body without waiting.
  headers.delete('expect');
  const client = clientAddress(ex.req.remoteAddress);
  const xff = headers.get('x-forwarded-for');
  headers.set(
    'x-forwarded-for',
    xff === undefined ? client : `${typeof xff === 'string' ? xff : xff.join(', ')}, ${client}`,
  );
  headers.set('x-forwarded-proto', ex.scheme);
  if (ex.authority !== '') {
    headers.set('x-forwarded-host', ex.authority);
    headers.set('host', ex.authority);
  } else {
    // HTTP/1.0 without Host: undici names the upstream instead.
    headers.delete('x-forwarded-host');
    headers.delete('host');
  }
}

function clientAddress(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  // Dual-stack sockets report IPv4 clients as IPv4-mapped IPv6.
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * `timeoutMs` is the route's deadline for the whole exchange (0: none).
 * A route with one also waits that long for the response head, instead of
 * the data plane's per-try upstreamResponseTimeoutMs: the route said how
 * long this backend may take.
 */
export function forward(ex: Exchange, endpoint: UpstreamEndpoint, timeoutMs: number, log: LogFn): void {
  const headers = ex.requestHeaders;
  if (ex.upstreamHost !== null) headers.set('host', ex.upstreamHost);
  const exchange = new UpstreamExchange(ex, endpoint, ex.listener.config, log);
  const options: Dispatcher.DispatchOptions = {
    origin: endpoint.origin,
    path: ex.upstreamTarget,
    method: ex.method,
    headers,
    body: ex.hasBody ? ex.req.body : null,
  };
  if (timeoutMs > 0) options.headersTimeout = timeoutMs;
  exchange.start(timeoutMs, options);
}

/**
 * One upstream request. undici calls exactly one of onResponseEnd or
 * onResponseError at the end, also after an abort; that is where the config
 * (and so the pool) is let go.
 */
class UpstreamExchange implements Dispatcher.DispatchHandler {
  readonly #ex: Exchange;
  readonly #endpoint: UpstreamEndpoint;
  readonly #config: CompiledConfig;
  readonly #log: LogFn;
  #controller: Dispatcher.DispatchController | null = null;
  /** Abort asked for before undici handed over a controller. */
  #pendingAbort: Error | null = null;
  #timer: NodeJS.Timeout | null = null;
  #upstreamDone = false;

  constructor(ex: Exchange, endpoint: UpstreamEndpoint, config: CompiledConfig, log: LogFn) {
    this.#ex = ex;
    this.#endpoint = endpoint;
    this.#config = config;
    this.#log = log;
  }

  start(timeoutMs: number, options: Dispatcher.DispatchOptions): void {
    this.#config.retain();
    const res = this.#ex.res;
    res.onClose = this.#onClientClose;
    res.onDrain = this.#onClientDrain;
    if (timeoutMs > 0) this.#timer = setTimeout(this.#onTimeout, timeoutMs);
    try {
      this.#endpoint.pool.dispatch(options, this, this.#endpoint.cluster);
    } catch (err) {
      // dispatch throws only for invalid options; undici will not call back.
      this.#upstreamDone = true;
      this.#cleanup();
      this.#config.release();
      this.#log('error', 'upstream dispatch rejected', { route: this.#ex.routeName, error: String(err) });
      sendLocalReply(res, 500, { modifiers: this.#ex.responseModifiers, draining: this.#ex.state.draining });
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#pendingAbort !== null) controller.abort(this.#pendingAbort);
  }

  onRequestUpgrade(_controller: Dispatcher.DispatchController, _status: number, _headers: IncomingHttpHeaders, socket: Duplex): void {
    // undici only upgrades when asked to, and nothing asks yet (Upgrade is
    // stripped as hop-by-hop): the WebSocket task takes over here.
    socket.destroy();
    this.#finishUpstream();
    const ex = this.#ex;
    sendLocalReply(ex.res, 502, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: true });
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    // Interim responses (100, 103) are not relayed.
    if (statusCode < 200) return;
    const ex = this.#ex;
    const res = ex.res;
    if (res.destroyed) return;
    stripHopByHopFromResponse(headers);
    if (ex.responseModifiers !== null) modifyResponseHeaders(headers, ex.responseModifiers);
    if (ex.state.draining) res.shouldKeepAlive = false;
    res.writeHead(statusCode, statusMessage || undefined, headers);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.#ex.res;
    if (res.destroyed) return;
    if (!res.write(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.#finishUpstream();
    const res = this.#ex.res;
    if (!res.destroyed) res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#finishUpstream();
    const ex = this.#ex;
    const res = ex.res;
    if (err instanceof ClientGoneError) return;
    // Answered already (route timeout while still connecting).
    if (res.writableEnded) return;
    if (res.destroyed || ex.req.destroyed) {
      // The client side failed first (aborted upload, malformed body, cut
      // connection): undici only reports that its request body broke.
      return;
    }
    const code = codeOf(err);
    const limit = code === undefined ? undefined : LIMIT_OF_CODE[code];
    const cluster = this.#endpoint.cluster;
    if (res.headersSent) {
      this.#log('warn', 'upstream response cut', {
        route: ex.routeName,
        cluster: cluster.name,
        upstream: this.#endpoint.origin,
        ...(limit === undefined ? {} : { limit }),
        error: `${code ?? err.name}: ${err.message}`,
      });
      // Too late for a status: cutting the connection is the only way to
      // tell the client the response is incomplete.
      res.destroy();
      return;
    }
    const status = statusForUpstreamError(err);
    if (code === 'GATEHOUSE_UPSTREAM_QUEUE_FULL') {
      // Refusals come in floods: one line a second per cluster, with a count.
      const refused = cluster.admission.noteRefused(Date.now());
      if (refused !== 0) {
        this.#log('warn', 'upstream cluster at its connection cap and queue: requests refused', {
          route: ex.routeName,
          cluster: cluster.name,
          status,
          limit,
          refused,
          error: err.message,
        });
      }
    } else {
      this.#log('warn', 'upstream request failed', {
        route: ex.routeName,
        cluster: cluster.name,
        upstream: this.#endpoint.origin,
        status,
        ...(limit === undefined ? {} : { limit }),
        error: `${code ?? err.name}: ${err.message}`,
      });
    }
    sendLocalReply(res, status, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: ex.hasBody });
  }

  #finishUpstream(): void {
    if (this.#upstreamDone) return;
    this.#upstreamDone = true;
    this.#cleanup();
    this.#config.release();
  }

  #cleanup(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const res = this.#ex.res;
    res.onClose = null;
    res.onDrain = null;
  }

  #abort(reason: Error): void {
    if (this.#upstreamDone) return;
    if (this.#controller !== null) this.#controller.abort(reason);
    else this.#pendingAbort ??= reason;
  }

  readonly #onTimeout = (): void => {
    this.#timer = null;
    const err = new RouteTimeoutError('route timeout');
    const ex = this.#ex;
    if (this.#controller === null && !ex.res.headersSent) {
      // Still waiting for a connection: answer now, abort once undici starts.
      sendLocalReply(ex.res, 504, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: ex.hasBody });
    }
    this.#abort(err);
  };

  readonly #onClientClose = (): void => {
    this.#abort(new ClientGoneError('client closed the connection'));
  };

  readonly #onClientDrain = (): void => {
    this.#controller?.resume();
  };
}
