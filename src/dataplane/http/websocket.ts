// WebSocket handshakes on their way to a backend. The handler routes and
// filters the handshake like any GET and picks the endpoint; here it is
// sent with `Connection: upgrade` and `Upgrade: websocket` put back (they
// are hop-by-hop, dropped with the rest), through the endpoint's pool, so
// the cluster's connect timeout, connection cap and queue apply to it. Any
// backend gets WebSockets: nothing needs to mark it (Envoy Gateway does the
// same; appProtocol kubernetes.io/ws changes nothing).
//
// A 101 from the backend is relayed with the route's response header
// modifiers, and the two connections become one tunnel (tunnel.ts). The
// backend connection then leaves its pool and stops counting against the
// cluster's connection cap: a console open for hours must not starve the
// cluster's requests. What bounds open WebSockets is maxClientConnections
// (one backend connection each) and websocketIdleTimeoutMs. Any other
// answer is relayed as it is, and the client connection closes after it.
//
// Mirrors and retries do not apply: a copy of a conversation means
// nothing, and nothing can replay one. The route's timeouts bound the
// handshake, not the WebSocket's life (Envoy's route timeout would cut
// it; its users set it to 0 for WebSockets).

import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { CompiledConfig } from '../config.ts';
import type { LogFn } from '../log.ts';
import type { UpstreamEndpoint } from '../upstream/balancer.ts';
import type { ResponseHeaders } from './downstream.ts';
import type { Exchange } from './exchange.ts';
import { modifyResponseHeaders } from './filters.ts';
import { stripHopByHopFromResponse } from './headers.ts';
import { statusForUpstreamError } from './proxy.ts';
import { sendLocalReply } from './responses.ts';

/** The route's deadline for the handshake passed. */
class HandshakeTimeoutError extends Error {
  readonly code = 'GATEHOUSE_ROUTE_TIMEOUT';
}

class ClientGoneError extends Error {
  readonly code = 'GATEHOUSE_CLIENT_GONE';
}

/** Whether an Upgrade field value names the WebSocket protocol. */
function namesWebSocket(value: string | string[] | undefined): boolean {
  if (value === undefined) return false;
  for (const part of typeof value === 'string' ? [value] : value) {
    for (const token of part.split(',')) if (token.trim().toLowerCase() === 'websocket') return true;
  }
  return false;
}

/**
 * Sends a WebSocket handshake (ex.req.upgrade is set) to `endpoint`.
 * `timeoutMs`: the route's deadline (0: none), here for the backend's
 * answer to the handshake.
 */
export function forwardUpgrade(ex: Exchange, endpoint: UpstreamEndpoint, timeoutMs: number, log: LogFn): void {
  const headers = ex.requestHeaders;
  if (ex.upstreamHost !== null) headers.set('host', ex.upstreamHost);
  if (ex.req.http2) {
    // RFC 8441 §5: an HTTP/2 client sends no key (it has no handshake to
    // prove); the HTTP/1.1 backend needs one (RFC 6455 §4.1), so the
    // gateway makes it, as the client of that hop.
    if (!headers.has('sec-websocket-key')) headers.set('sec-websocket-key', randomBytes(16).toString('base64'));
    if (!headers.has('sec-websocket-version')) headers.set('sec-websocket-version', '13');
  }
  const options: Dispatcher.DispatchOptions = {
    origin: endpoint.origin,
    path: ex.upstreamTarget,
    method: 'GET',
    headers,
    body: null,
    // Both clients (lean.ts, undici) write `connection: upgrade` and this.
    upgrade: 'websocket',
  };
  if (timeoutMs > 0) options.headersTimeout = timeoutMs;
  new UpgradeExchange(ex, endpoint, ex.listener.config, log).start(timeoutMs, options);
}

/**
 * One handshake. The client calls exactly one of onRequestUpgrade,
 * onResponseEnd or onResponseError at the end; the config is let go
 * there: a tunnel holds none.
 */
class UpgradeExchange implements Dispatcher.DispatchHandler {
  readonly #ex: Exchange;
  readonly #endpoint: UpstreamEndpoint;
  readonly #config: CompiledConfig;
  readonly #log: LogFn;
  #controller: Dispatcher.DispatchController | null = null;
  #pendingAbort: Error | null = null;
  #timer: NodeJS.Timeout | null = null;
  #done = false;

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
      this.#finish();
      this.#log('error', 'upstream dispatch rejected', { route: this.#ex.routeName, error: String(err) });
      sendLocalReply(res, 500, { modifiers: this.#ex.responseModifiers, close: true });
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#pendingAbort !== null) controller.abort(this.#pendingAbort);
  }

  onRequestUpgrade(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#finish();
    const ex = this.#ex;
    const res = ex.res;
    if (res.destroyed || res.switchProtocols === undefined) {
      socket.destroy();
      return;
    }
    if (statusCode !== 101 || !namesWebSocket(headers['upgrade'])) {
      socket.destroy();
      this.#log('warn', 'upstream request failed', {
        route: ex.routeName,
        cluster: this.#endpoint.cluster.name,
        upstream: this.#endpoint.origin,
        status: 502,
        error: `switched to ${JSON.stringify(headers['upgrade'] ?? '')} with status ${statusCode}, not to websocket with 101`,
      });
      sendLocalReply(res, 502, { modifiers: ex.responseModifiers, close: true });
      return;
    }
    stripHopByHopFromResponse(headers);
    if (ex.responseModifiers !== null) modifyResponseHeaders(headers, ex.responseModifiers);
    headers['connection'] = 'upgrade';
    headers['upgrade'] = 'websocket';
    let tunnelled: boolean;
    try {
      tunnelled = res.switchProtocols(headers as ResponseHeaders, socket);
    } catch (err) {
      // A header the client connection refuses to write (CR/LF in a value).
      socket.destroy();
      this.#log('warn', 'upstream response refused', { route: ex.routeName, upstream: this.#endpoint.origin, error: String(err) });
      sendLocalReply(res, 502, { modifiers: ex.responseModifiers, close: true });
      return;
    }
    if (!tunnelled) socket.destroy();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return;
    const ex = this.#ex;
    const res = ex.res;
    if (res.destroyed) return;
    // The backend refused the upgrade: its answer goes to the client as it is.
    stripHopByHopFromResponse(headers);
    if (ex.responseModifiers !== null) modifyResponseHeaders(headers, ex.responseModifiers);
    res.writeHead(statusCode, statusMessage || undefined, headers);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.#ex.res;
    if (res.destroyed) return;
    if (!res.write(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.#finish();
    const res = this.#ex.res;
    if (!res.destroyed) res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#finish();
    const ex = this.#ex;
    const res = ex.res;
    if (err instanceof ClientGoneError || res.writableEnded || res.destroyed) return;
    const code = (err as { code?: unknown }).code;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = statusForUpstreamError(err);
    this.#log('warn', 'upstream request failed', {
      route: ex.routeName,
      cluster: this.#endpoint.cluster.name,
      upstream: this.#endpoint.origin,
      status,
      error: `${typeof code === 'string' ? code : err.name}: ${err.message}`,
    });
    sendLocalReply(res, status, { modifiers: ex.responseModifiers, close: true });
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const res = this.#ex.res;
    if (res.onClose === this.#onClientClose) res.onClose = null;
    if (res.onDrain === this.#onClientDrain) res.onDrain = null;
    this.#config.release();
  }

  #abort(reason: Error): void {
    if (this.#done) return;
    if (this.#controller !== null) this.#controller.abort(reason);
    else this.#pendingAbort ??= reason;
  }

  readonly #onTimeout = (): void => {
    this.#timer = null;
    const ex = this.#ex;
    if (this.#controller === null && !ex.res.headersSent) {
      // Still waiting for a connection: answer now, abort once the client starts.
      sendLocalReply(ex.res, 504, { modifiers: ex.responseModifiers, close: true });
    }
    this.#abort(new HandshakeTimeoutError('route timeout'));
  };

  readonly #onClientClose = (): void => {
    this.#abort(new ClientGoneError('client closed the connection'));
  };

  readonly #onClientDrain = (): void => {
    this.#controller?.resume();
  };
}
