// The request pipeline: vet the head, find the Gateway listener, virtual
// host and route, run filters, choose a backend and an endpoint, forward.
// Each stage either hands on or answers; nothing here throws to node.

import type { CompiledGatewayListener, CompiledListener } from '../config.ts';
import type { DownstreamRequest, DownstreamResponse } from './downstream.ts';
import { hostFromAuthority } from '../hostnames.ts';
import type { LogFn } from '../log.ts';
import { pickEndpoint } from '../upstream/balancer.ts';
import { Exchange, type ServingState } from './exchange.ts';
import { applyFilters } from './filters.ts';
import { FORWARDED_METHODS, isRejection, readRequestHead, refusedRequestLine, type Rejection } from './framing.ts';
import { forward, prepareUpstreamHeaders } from './proxy.ts';
import { sendLocalReply } from './responses.ts';
import { normalizePath, type PathRefusal } from './path.ts';
import { plainAddress } from './client-address.ts';
import { forwardUpgrade } from './websocket.ts';
import { RequestRecord, type RequestObserver, type TlsFacts } from './request-record.ts';
import { Tracer } from '../tracing.ts';

// reg-name / IP-literal characters and a port; anything else is not a host.
const AUTHORITY = /^[A-Za-z0-9\-._~%!$&'()*+,;=:[\]]*$/;

interface RequestTarget {
  path: string;
  query: string;
  authority: string;
}

const NOT_A_TARGET: PathRefusal = { refused: 'request target neither origin-form nor absolute-form' };

/**
 * Origin-form (`/path?query`) with the Host header, or absolute-form
 * (`http://authority/path`), where RFC 9112 §3.2.2 says the URL's
 * authority wins over Host. Anything else (`*`, authority-form) is refused,
 * and so is a path normalizePath refuses.
 */
function parseTarget(url: string, host: string | undefined): RequestTarget | PathRefusal {
  let authority = host ?? '';
  let pathAndQuery = url;
  if (url.charCodeAt(0) !== 0x2f /* / */) {
    const schemeEnd = url.indexOf('://');
    if (schemeEnd === -1) return NOT_A_TARGET;
    const scheme = url.slice(0, schemeEnd).toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') return NOT_A_TARGET;
    const rest = url.slice(schemeEnd + 3);
    let end = rest.length;
    for (let i = 0; i < rest.length; i++) {
      const c = rest.charCodeAt(i);
      if (c === 0x2f || c === 0x3f) {
        end = i;
        break;
      }
    }
    authority = rest.slice(0, end);
    pathAndQuery = rest.slice(end);
    if (pathAndQuery === '' || pathAndQuery.charCodeAt(0) === 0x3f /* ? */) pathAndQuery = `/${pathAndQuery}`;
  }
  const q = pathAndQuery.indexOf('?');
  const path = normalizePath(q === -1 ? pathAndQuery : pathAndQuery.slice(0, q));
  if (typeof path !== 'string') return path;
  return { path, query: q === -1 ? '' : pathAndQuery.slice(q), authority };
}

/**
 * The Gateway listener a TLS connection's certificate was chosen for: the
 * one whose hostname matches its SNI, most specific first, as the SNI
 * table chose (the same patterns, ../tls/sni.ts); without SNI, the
 * listener without hostname (the only one such clients are served by).
 */
function negotiatedListener(listener: CompiledListener, serverName: string | null): CompiledGatewayListener | undefined {
  // '' matches no exact name nor wildcard: only the listener without hostname.
  return listener.gatewayListeners.match(serverName === null ? '' : hostFromAuthority(serverName));
}

export class HttpRequestHandler {
  readonly #log: LogFn;
  readonly #observer: RequestObserver;
  /** Requests received, for the admin API's per-worker view. */
  requests = 0;

  /** Limits are each listener's (CompiledListener.limits: the data plane's, or its ClientTrafficPolicy's). */
  constructor(log: LogFn, observer: RequestObserver) {
    this.#log = log;
    this.#observer = observer;
  }

  /**
   * `tls`: on a TLS connection, what its handshake settled (the SNI its
   * client sent, the version); undefined for plain HTTP.
   */
  handle(state: ServingState, req: DownstreamRequest, res: DownstreamResponse, tls?: TlsFacts): void {
    // The one read of the config reference: this request lives on it to the end.
    const listener = state.current;
    this.requests++;
    const record = new RequestRecord(this.#observer, req, listener, tls ?? null);
    res.record = record;
    try {
      this.#handle(state, listener, record, req, res, tls === undefined ? undefined : tls.serverName);
    } catch (err) {
      this.#log('error', 'request handling failed', { listener: listener.key, error: String(err) });
      sendLocalReply(res, 500, { close: true });
    }
  }

  #handle(state: ServingState, listener: CompiledListener, record: RequestRecord, req: DownstreamRequest, res: DownstreamResponse, serverName: string | null | undefined): void {
    const draining = state.draining;
    const line = refusedRequestLine(req);
    if (line !== null) {
      this.#refuse(listener, res, line);
      return;
    }
    const head = readRequestHead(req, listener.limits.maxHeaderCount);
    if (isRejection(head)) {
      this.#refuse(listener, res, head);
      return;
    }
    // A listener without a ClientTrafficPolicy does none of this.
    let clientAddress: string | undefined;
    const client = listener.client;
    if (client !== null) {
      if (client.maxRequestBodyBytes !== 0 && head.hasBody) {
        const length = head.headers.get('content-length');
        if (typeof length === 'string' && Number(length) > client.maxRequestBodyBytes) {
          this.#refuse(listener, res, { status: 413, reason: `request body of ${length} bytes, more than maxRequestBodySize ${client.maxRequestBodyBytes} of ClientTrafficPolicy ${client.policy}` });
          return;
        }
        // A body of unknown length is counted as it comes (downstream.ts, http2/stream.ts).
        req.limitBody(client.maxRequestBodyBytes);
        if (req.bodyTooLarge) {
          this.#refuse(listener, res, { status: 413, reason: `request body past maxRequestBodySize ${client.maxRequestBodyBytes} of ClientTrafficPolicy ${client.policy}` });
          return;
        }
      }
      if (client.resolveAddress !== null) {
        const resolved = client.resolveAddress(plainAddress(req.remoteAddress), head.headers);
        if (resolved === null) {
          this.#refuse(listener, res, { status: 403, reason: `no client address in the header ClientTrafficPolicy ${client.policy} names (failClosed)` });
          return;
        }
        clientAddress = resolved;
        record.clientAddress = resolved;
      }
    }
    const expect = head.headers.get('expect');
    if (expect !== undefined) {
      // RFC 9110 §10.1.1: 100-continue is the only expectation there is.
      if (typeof expect !== 'string' || expect.toLowerCase() !== '100-continue') {
        sendLocalReply(res, 417, { close: true });
        return;
      }
      req.sendContinue();
    }
    const target = parseTarget(req.url, head.host);
    if ('refused' in target) {
      this.#refuse(listener, res, { status: 400, reason: target.refused });
      return;
    }
    if (!AUTHORITY.test(target.authority)) {
      this.#refuse(listener, res, { status: 400, reason: 'invalid authority' });
      return;
    }
    const host = hostFromAuthority(target.authority);
    record.host = host;
    const gatewayListener = listener.gatewayListeners.match(host);
    if (gatewayListener !== undefined) record.gatewayListener = gatewayListener;
    if (serverName !== undefined && gatewayListener !== undefined && gatewayListener !== negotiatedListener(listener, serverName)) {
      // The Host belongs to another listener than the one whose certificate
      // this connection negotiated (a reused HTTP/1.1 connection, HTTP/2
      // coalescing): RFC 9110 §15.5.20, the client retries on a connection
      // of its own. GEP-3567.
      sendLocalReply(res, 421, { draining });
      return;
    }
    const virtualHost = gatewayListener?.virtualHosts.match(host);
    if (virtualHost === undefined) {
      sendLocalReply(res, 404, { draining });
      return;
    }
    const ex = new Exchange(
      req,
      res,
      state,
      listener,
      { path: target.path, query: target.query, host, authority: target.authority },
      head.headers,
      head.hasBody,
      clientAddress,
      record,
    );
    const route = virtualHost.routes.find(ex);
    if (route === undefined) {
      sendLocalReply(res, 404, { draining });
      return;
    }
    ex.routeName = route.name;
    record.route = route;
    if (route.invalid !== null) {
      sendLocalReply(res, 500, { draining });
      return;
    }

    prepareUpstreamHeaders(ex);
    const tracer = this.#observer.tracer;
    if (tracer !== null) {
      // Before filters, so that a RequestHeaderModifier still has the last word.
      const trace = tracer.contextFor(ex.requestHeaders.get('traceparent'));
      record.trace = trace;
      ex.requestHeaders.set('traceparent', Tracer.traceparent(trace));
    }
    let answer = applyFilters(route.filters, ex);
    if (answer !== null) {
      sendLocalReply(res, answer.statusCode, { location: answer.location, empty: true, modifiers: ex.responseModifiers, draining });
      return;
    }
    // A session's endpoint, when the request brings a valid token for one the route still has.
    const session = route.session;
    const sticky = session === null ? null : session.find(ex.requestHeaders, route.backends, Date.now());
    const backend = sticky !== null ? sticky.backend : route.backends.pick();
    if (backend === undefined) {
      sendLocalReply(res, 500, { modifiers: ex.responseModifiers, draining });
      return;
    }
    if (backend.filters.length !== 0) {
      answer = applyFilters(backend.filters, ex);
      if (answer !== null) {
        sendLocalReply(res, answer.statusCode, { location: answer.location, empty: true, modifiers: ex.responseModifiers, draining });
        return;
      }
    }
    if (backend.cluster === null) {
      sendLocalReply(res, 500, { modifiers: ex.responseModifiers, draining });
      return;
    }
    record.cluster = backend.cluster;
    const endpoint = sticky !== null ? sticky.endpoint : pickEndpoint(backend.cluster, ex);
    if (endpoint === undefined) {
      sendLocalReply(res, 503, { modifiers: ex.responseModifiers, draining });
      return;
    }
    if (session !== null) {
      const mod = session.responseModifier(sticky, endpoint, Date.now(), listener.scheme === 'https');
      if (mod !== null) (ex.responseModifiers ??= []).push(mod);
    }
    if (req.upgrade) {
      forwardUpgrade(ex, endpoint, route.timeoutMs, this.#log);
      return;
    }
    forward(ex, route, endpoint, this.#log);
  }

  /** A request not served whatever its route: answered, logged, and the connection closed (its framing is suspect). */
  #refuse(listener: CompiledListener, res: DownstreamResponse, rejection: Rejection): void {
    this.#log('info', 'request refused', { listener: listener.key, status: rejection.status, reason: rejection.reason });
    sendLocalReply(res, rejection.status, { close: true, ...(rejection.status === 405 ? { allow: FORWARDED_METHODS } : {}) });
  }
}
