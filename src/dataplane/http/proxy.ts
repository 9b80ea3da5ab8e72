// Forwards an exchange to one upstream endpoint with undici's dispatch API:
// the request body is streamed from the client socket, the response body is
// written to the client as it arrives, and backpressure on the client pauses
// the upstream read. Headers going up get hop-by-hop removal and
// X-Forwarded-*; headers coming back get hop-by-hop removal and the route's
// response modifiers.
//
// A route that mirrors or retries keeps the request body as it streams
// (replay-body.ts), sends copies to its mirrors (mirror.ts), and makes its
// tries as retry.ts decides; every other request takes the plain path, with
// nothing kept.

import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { CompiledConfig, CompiledRoute } from '../config.ts';
import type { LogFn } from '../log.ts';
import { pickEndpoint, type UpstreamCluster, type UpstreamEndpoint } from '../upstream/balancer.ts';
import type { LeanDispatchOptions } from '../upstream/lean.ts';
import type { Exchange } from './exchange.ts';
import { modifyResponseHeaders } from './filters.ts';
import { stripHopByHopFromResponse, stripHopByHopFromTable, trailersToForward } from './headers.ts';
import { sendCopies } from './mirror.ts';
import { ReplayableBody } from './replay-body.ts';
import { backoffDelay, retriesStatus, retriesTryFailure, statusAfterTries, tryFailure, type CompiledRetry } from './retry.ts';
import { effectiveRetry, mayRetry, noteOutcome } from '../upstream/policy.ts';
import { sendLocalReply } from './responses.ts';
import { plainAddress } from './client-address.ts';

/** The route's deadline passed before the response completed. */
class RouteTimeoutError extends Error {
  readonly code = 'GATEHOUSE_ROUTE_TIMEOUT';
}

/** The client went away; nobody is left to answer. */
class ClientGoneError extends Error {
  readonly code = 'GATEHOUSE_CLIENT_GONE';
}

/** A try given up for another (its status is one to retry). */
class RetryingError extends Error {
  readonly code = 'GATEHOUSE_RETRYING';
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

/** Tries that got no connection to the backend at all (metric gatehouse_upstream_connect_failures_total). */
const CONNECT_FAILURE_CODES: ReadonlySet<string> = new Set([
  'GATEHOUSE_CONNECT_FAILED',
  'UND_ERR_CONNECT_TIMEOUT',
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
  // The connection's address is appended (the peer, or the PROXY protocol
  // source), as Envoy does: the next proxy counts hops from it. The client
  // as resolved by a ClientTrafficPolicy goes in X-Real-IP.
  // Without a policy the two are the same, computed once (exchange.ts).
  const client = ex.listener.client === null ? ex.clientAddress : plainAddress(ex.req.remoteAddress);
  const xff = headers.get('x-forwarded-for');
  headers.set(
    'x-forwarded-for',
    xff === undefined ? client : `${typeof xff === 'string' ? xff : xff.join(', ')}, ${client}`,
  );
  if (ex.listener.client !== null) headers.set('x-real-ip', ex.clientAddress);
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

/**
 * Sends the exchange to `endpoint`, of `route`'s chosen backend. The
 * route's deadline (route.timeoutMs, 0: none) covers the whole exchange; a
 * route with one also waits that long for the response head, instead of
 * the data plane's per-try upstreamResponseTimeoutMs: the route said how
 * long this backend may take. With retries, timeouts.backendRequest is
 * each try's and timeouts.request all tries' (retry.ts).
 */
export function forward(ex: Exchange, route: CompiledRoute, endpoint: UpstreamEndpoint, log: LogFn): void {
  const headers = ex.requestHeaders;
  if (ex.upstreamHost !== null) headers.set('host', ex.upstreamHost);
  if (endpoint.cluster.behaviour !== null) {
    forwardWithPolicy(ex, route, endpoint, log);
    return;
  }
  if (route.retry !== null || ex.mirrors !== null) {
    forwardKept(ex, route, route.retry, endpoint, log, route.timeoutMs);
    return;
  }
  const timeoutMs = route.timeoutMs;
  const exchange = new UpstreamExchange(ex, endpoint, ex.listener.config, log, null);
  exchange.start(timeoutMs, dispatchOptions(ex, endpoint, ex.hasBody ? ex.req.body : null, timeoutMs));
}

function dispatchOptions(ex: Exchange, endpoint: UpstreamEndpoint, body: Readable | null, headersTimeoutMs: number): LeanDispatchOptions {
  const options: LeanDispatchOptions = {
    origin: endpoint.origin,
    path: ex.upstreamTarget,
    method: ex.method,
    headers: ex.requestHeaders,
    body,
  };
  if (headersTimeoutMs > 0) options.headersTimeout = headersTimeoutMs;
  return options;
}

const OVERLOADED = { 'x-gatehouse-overloaded': 'true' } as const;

/**
 * A cluster with a BackendTrafficPolicy: refused at once while
 * maxParallelRequests are in flight (the circuit is open), else sent with
 * the policy's retries and request timeout where the route has none.
 */
function forwardWithPolicy(ex: Exchange, route: CompiledRoute, endpoint: UpstreamEndpoint, log: LogFn): void {
  const cluster = endpoint.cluster;
  const behaviour = cluster.behaviour!;
  if (cluster.active >= behaviour.maxParallelRequests) {
    cluster.stats.circuitOpen++;
    const refused = cluster.admission.noteRefused(Date.now());
    if (refused !== 0) {
      log('warn', 'upstream cluster at its limit of requests in flight: requests refused', {
        route: ex.routeName, cluster: cluster.name, status: 503, limit: 'circuitBreaker.maxParallelRequests', refused,
      });
    }
    sendLocalReply(ex.res, 503, {
      modifiers: ex.responseModifiers, draining: ex.state.draining, close: ex.hasBody,
      reason: 'the backend has as many requests in flight as it may (circuit breaker open)', headers: OVERLOADED,
    });
    return;
  }
  const retry = effectiveRetry(route.retry, cluster);
  const timeoutMs = route.timeoutMs > 0 ? route.timeoutMs : behaviour.requestTimeoutMs;
  if (retry !== null || ex.mirrors !== null) {
    forwardKept(ex, route, retry, endpoint, log, timeoutMs);
    return;
  }
  const exchange = new UpstreamExchange(ex, endpoint, ex.listener.config, log, null);
  exchange.start(timeoutMs, dispatchOptions(ex, endpoint, ex.hasBody ? ex.req.body : null, timeoutMs));
}

/** A route that mirrors or retries: its body is kept while it streams (up to the limit), for copies and tries. */
function forwardKept(ex: Exchange, route: CompiledRoute, retry: CompiledRetry | null, endpoint: UpstreamEndpoint, log: LogFn, timeoutMs: number): void {
  const config = ex.listener.config;
  const body = ex.hasBody ? new ReplayableBody(ex.req.body, ex.listener.limits.maxReplayBodyBytes) : null;
  if (ex.mirrors !== null) sendCopies(ex.mirrors, ex, body, route.timeoutMs, config, log);
  if (retry === null) {
    const exchange = new UpstreamExchange(ex, endpoint, config, log, null);
    exchange.start(timeoutMs, dispatchOptions(ex, endpoint, body === null ? null : body.attempt(), timeoutMs));
    return;
  }
  new RetryRun(ex, retry, body, endpoint.cluster, config, log).start(endpoint);
}

/**
 * The tries of one request on a route with retries. Each try is an
 * UpstreamExchange; it asks the run, when it fails before anything went to
 * the client, whether to try again. The run holds what lasts across tries:
 * the count, the overall deadline (timeouts.request), the wait between
 * tries, and the config.
 */
class RetryRun {
  readonly #ex: Exchange;
  readonly #retry: CompiledRetry;
  readonly #body: ReplayableBody | null;
  readonly #cluster: UpstreamCluster;
  readonly #config: CompiledConfig;
  readonly #log: LogFn;
  /** Tries started. */
  tries = 0;
  #deadlineAt = 0;
  #deadline: NodeJS.Timeout | null = null;
  #backoff: NodeJS.Timeout | null = null;
  #current: UpstreamExchange | null = null;
  /** timeouts.request has passed: no more tries. */
  #expired = false;
  #over = false;
  /** Counted in its cluster's retriesActive (a cluster with a policy), from its first retry to its end. */
  #retrying = false;

  constructor(ex: Exchange, retry: CompiledRetry, body: ReplayableBody | null, cluster: UpstreamCluster, config: CompiledConfig, log: LogFn) {
    this.#ex = ex;
    this.#retry = retry;
    this.#body = body;
    this.#cluster = cluster;
    this.#config = config;
    this.#log = log;
  }

  start(endpoint: UpstreamEndpoint): void {
    this.#config.retain();
    const total = this.#retry.totalMs;
    if (total > 0) {
      this.#deadlineAt = Date.now() + total;
      this.#deadline = setTimeout(this.#onDeadline, total);
    }
    this.#try(endpoint);
  }

  #try(endpoint: UpstreamEndpoint): void {
    this.tries++;
    const ex = this.#ex;
    const perTry = this.#retry.perTryMs;
    // The response head is waited for as long as this try may take: its
    // own deadline, else what is left of the request's.
    const headersTimeout = perTry > 0 ? perTry : this.#deadlineAt > 0 ? Math.max(1, this.#deadlineAt - Date.now()) : 0;
    const options = dispatchOptions(ex, endpoint, this.#body === null ? null : this.#body.attempt(), headersTimeout);
    // A reset on a stale keep-alive connection is a failed try like any
    // other here, counted against the attempts, not sent again unseen.
    options.resendOnStale = false;
    const attempt = new UpstreamExchange(ex, endpoint, this.#config, this.#log, this);
    this.#current = attempt;
    attempt.start(perTry, options);
  }

  /** Whether a new try may be made at all now (whatever the failure); counts it as a retry in flight when so. */
  #mayTryAgain(): boolean {
    if (this.#over || this.#expired || this.tries > this.#retry.retries) return false;
    const res = this.#ex.res;
    if (res.headersSent || res.destroyed) return false;
    if (this.#body !== null && !this.#body.replayable) return false;
    const cluster = this.#cluster;
    if (cluster.behaviour === null || this.#retrying) return true;
    if (!mayRetry(cluster, this.#retry)) return false;
    this.#retrying = true;
    cluster.retriesActive++;
    return true;
  }

  /** A try got `status`: true when it is given up for another, which is then scheduled. */
  retryStatus(status: number): boolean {
    if (!retriesStatus(this.#retry, status) || !this.#mayTryAgain()) return false;
    this.#scheduleNext();
    return true;
  }

  /** A try failed before a response head: true when another is scheduled. */
  retryError(err: Error): boolean {
    if (CONNECT_FAILURE_CODES.has(codeOf(err) ?? '')) this.#cluster.stats.connectFailures++;
    if (!retriesTryFailure(this.#retry, tryFailure(err), this.#ex.method) || !this.#mayTryAgain()) return false;
    this.#scheduleNext();
    return true;
  }

  /** The request is over (answered, or its client gone): let go of everything. */
  end(): void {
    if (this.#over) return;
    this.#over = true;
    this.#current = null;
    if (this.#retrying) {
      this.#retrying = false;
      this.#cluster.retriesActive--;
    }
    if (this.#deadline !== null) clearTimeout(this.#deadline);
    if (this.#backoff !== null) clearTimeout(this.#backoff);
    this.#deadline = this.#backoff = null;
    if (this.#ex.res.onClose === this.#onClientClose) this.#ex.res.onClose = null;
    this.#config.release();
  }

  #scheduleNext(): void {
    this.#current = null;
    this.#cluster.stats.retries++;
    // While nobody is sending, a client that goes away ends the run.
    this.#ex.res.onClose = this.#onClientClose;
    this.#backoff = setTimeout(this.#next, backoffDelay(this.#retry, this.tries));
  }

  readonly #next = (): void => {
    this.#backoff = null;
    const ex = this.#ex;
    if (ex.res.onClose === this.#onClientClose) ex.res.onClose = null;
    const endpoint = pickEndpoint(this.#cluster, ex);
    if (endpoint === undefined) {
      sendLocalReply(ex.res, 503, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: ex.hasBody });
      this.end();
      return;
    }
    this.#try(endpoint);
  };

  readonly #onDeadline = (): void => {
    this.#deadline = null;
    this.#expired = true;
    const ex = this.#ex;
    if (this.#current !== null) {
      // The try answers 504 (or cuts a response under way) and ends the run.
      this.#current.expire();
    } else if (this.#backoff !== null) {
      this.#log('warn', 'upstream request failed', {
        route: ex.routeName, cluster: this.#cluster.name, status: 504, tries: this.tries,
        limit: LIMIT_OF_CODE.GATEHOUSE_ROUTE_TIMEOUT, error: 'route timeout while waiting to retry',
      });
      sendLocalReply(ex.res, 504, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: ex.hasBody });
      this.end();
    }
  };

  readonly #onClientClose = (): void => {
    this.end();
  };
}

/**
 * One upstream request. undici calls exactly one of onResponseEnd or
 * onResponseError at the end, also after an abort; that is where the config
 * (and so the pool) is let go. With a RetryRun it is one try of several.
 */
class UpstreamExchange implements Dispatcher.DispatchHandler {
  readonly #ex: Exchange;
  readonly #endpoint: UpstreamEndpoint;
  readonly #config: CompiledConfig;
  readonly #log: LogFn;
  readonly #run: RetryRun | null;
  #controller: Dispatcher.DispatchController | null = null;
  /** Abort asked for before undici handed over a controller. */
  #pendingAbort: Error | null = null;
  #timer: NodeJS.Timeout | null = null;
  #upstreamDone = false;
  /** Given up for another try: whatever undici still reports is not the client's. */
  #abandoned = false;
  /** Counted in flight on its endpoint and cluster (a cluster with a policy) until it ends. */
  #counted = false;
  /** Its outcome went to passive health already (a response head, or a failure). */
  #judged = false;

  constructor(ex: Exchange, endpoint: UpstreamEndpoint, config: CompiledConfig, log: LogFn, run: RetryRun | null) {
    this.#ex = ex;
    this.#endpoint = endpoint;
    this.#config = config;
    this.#log = log;
    this.#run = run;
  }

  start(timeoutMs: number, options: Dispatcher.DispatchOptions): void {
    this.#config.retain();
    this.#ex.record.upstreamStart(this.#endpoint.cluster, this.#endpoint.origin);
    const res = this.#ex.res;
    res.onClose = this.#onClientClose;
    res.onDrain = this.#onClientDrain;
    if (timeoutMs > 0) this.#timer = setTimeout(this.#onTimeout, timeoutMs);
    const state = this.#endpoint.state;
    if (state !== null) {
      state.active++;
      this.#endpoint.cluster.active++;
      this.#counted = true;
    }
    try {
      this.#endpoint.pool.dispatch(options, this, this.#endpoint.cluster);
    } catch (err) {
      // dispatch throws only for invalid options; undici will not call back.
      this.#upstreamDone = true;
      this.#uncount();
      this.#cleanup();
      this.#config.release();
      this.#log('error', 'upstream dispatch rejected', { route: this.#ex.routeName, error: String(err) });
      sendLocalReply(res, 500, { modifiers: this.#ex.responseModifiers, draining: this.#ex.state.draining });
      this.#run?.end();
    }
  }

  /** The request's deadline (timeouts.request) passed during this try. */
  expire(): void {
    this.#timeOut();
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
    if (this.#abandoned) return;
    const ex = this.#ex;
    sendLocalReply(ex.res, 502, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: true });
    this.#run?.end();
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    // Interim responses (100, 103) are not relayed.
    if (statusCode < 200 || this.#abandoned) return;
    if (this.#endpoint.state !== null) this.#judge(statusCode);
    const ex = this.#ex;
    const res = ex.res;
    if (res.destroyed) return;
    if (this.#run !== null && this.#run.retryStatus(statusCode)) {
      // Its body is not wanted: the connection goes rather than be read to the end.
      this.#abandoned = true;
      controller.abort(new RetryingError(`status ${statusCode}, retrying`));
      return;
    }
    stripHopByHopFromResponse(headers);
    if (ex.responseModifiers !== null) modifyResponseHeaders(headers, ex.responseModifiers);
    if (ex.state.draining) res.shouldKeepAlive = false;
    res.writeHead(statusCode, statusMessage || undefined, headers);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.#ex.res;
    if (res.destroyed || this.#abandoned) return;
    if (!res.write(chunk)) controller.pause();
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers?: IncomingHttpHeaders): void {
    this.#finishUpstream();
    if (this.#abandoned) return;
    const ex = this.#ex;
    const res = ex.res;
    if (!res.destroyed) {
      // Most responses have no trailer section: the clients pass an empty record.
      let section: ReturnType<typeof trailersToForward> = null;
      if (trailers !== undefined) for (const _ in trailers) {
        const limits = ex.listener.config.limits;
        section = trailersToForward(trailers, limits.maxHeaderCount, limits.maxHeaderBytes);
        break;
      }
      if (typeof section === 'string') {
        this.#log('warn', 'upstream response cut', { route: ex.routeName, upstream: this.#endpoint.origin, limit: 'maxHeaderBytes / maxHeaderCount', error: section });
        res.destroy();
      } else {
        res.end(null, section);
      }
    }
    this.#run?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#finishUpstream();
    if (this.#abandoned) return;
    if (this.#endpoint.state !== null && !(err instanceof ClientGoneError)) {
      const failure = tryFailure(err);
      // Passive health: a failed connect is the endpoint's local-origin failure; a reset or a
      // timeout counts as the 502 or 504 it is answered with; overload is ours, not the endpoint's.
      if (failure === 'connect') this.#judge('local-failure');
      else if (failure !== 'overload') this.#judge(failure === 'timeout' ? 504 : 502);
    }
    const ex = this.#ex;
    const res = ex.res;
    const run = this.#run;
    if (err instanceof ClientGoneError || res.writableEnded || res.destroyed || ex.req.destroyed) {
      // Nobody to answer: the client went away; or answered already (route
      // timeout while still connecting); or the client side failed first
      // (aborted upload, malformed body, cut connection), and undici only
      // reports that its request body broke.
      run?.end();
      return;
    }
    if (run !== null && !res.headersSent && run.retryError(err)) {
      this.#abandoned = true;
      return;
    }
    run?.end();
    const code = codeOf(err);
    // A run counted it already when it asked whether to try again.
    if (run === null && code !== undefined && CONNECT_FAILURE_CODES.has(code)) this.#endpoint.cluster.stats.connectFailures++;
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
    // The client's body went past its listener's maxRequestBodySize: that, not the backend, ended the exchange.
    const status = ex.req.bodyTooLarge ? 413 : run === null ? statusForUpstreamError(err) : statusAfterTries(tryFailure(err));
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
        ...(run === null ? {} : { tries: run.tries }),
        ...(limit === undefined ? {} : { limit }),
        error: `${code ?? err.name}: ${err.message}`,
      });
    }
    sendLocalReply(res, status, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: ex.hasBody });
  }

  #finishUpstream(): void {
    if (this.#upstreamDone) return;
    this.#upstreamDone = true;
    this.#uncount();
    this.#ex.record.upstreamEnd(this.#endpoint.cluster);
    this.#cleanup();
    this.#config.release();
  }

  #uncount(): void {
    if (!this.#counted) return;
    this.#counted = false;
    this.#endpoint.state!.active--;
    this.#endpoint.cluster.active--;
  }

  /** Tells passive health how this request ended at its endpoint (once). */
  #judge(outcome: number | 'local-failure'): void {
    if (this.#judged) return;
    this.#judged = true;
    if (noteOutcome(this.#endpoint, outcome)) {
      const od = this.#endpoint.cluster.behaviour!.outlier!;
      this.#log('warn', 'upstream endpoint ejected (passive health)', {
        cluster: this.#endpoint.cluster.name,
        upstream: this.#endpoint.origin,
        until: new Date(this.#endpoint.state!.ejectedUntil).toISOString(),
        ...(outcome === 'local-failure' ? { consecutiveLocalOriginFailures: od.consecutiveLocalOriginFailures } : { lastStatus: outcome }),
      });
    }
  }

  #cleanup(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    // Only if still ours: a retry run may have taken over the client's close.
    const res = this.#ex.res;
    if (res.onClose === this.#onClientClose) res.onClose = null;
    if (res.onDrain === this.#onClientDrain) res.onDrain = null;
  }

  #abort(reason: Error): void {
    if (this.#upstreamDone) return;
    if (this.#controller !== null) this.#controller.abort(reason);
    else this.#pendingAbort ??= reason;
  }

  readonly #onTimeout = (): void => {
    this.#timer = null;
    // A try's own deadline: the try fails as timed out, and its run may try again.
    if (this.#run !== null) this.#abort(new RouteTimeoutError('backend request timeout'));
    else this.#timeOut();
  };

  #timeOut(): void {
    if (this.#upstreamDone) return;
    const err = new RouteTimeoutError('route timeout');
    const ex = this.#ex;
    if (this.#controller === null && !ex.res.headersSent) {
      // Still waiting for a connection: answer now, abort once undici starts.
      sendLocalReply(ex.res, 504, { modifiers: ex.responseModifiers, draining: ex.state.draining, close: ex.hasBody });
    }
    this.#abort(err);
  }

  readonly #onClientClose = (): void => {
    this.#abort(new ClientGoneError('client closed the connection'));
  };

  readonly #onClientDrain = (): void => {
    this.#controller?.resume();
  };
}
