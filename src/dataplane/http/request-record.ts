// What is known of one request for its metrics and its access log line:
// the handler fills it in as it routes (Gateway listener, route, backend),
// the proxy adds the upstream side, and the response calls finish() once,
// when it ends or when the client goes before it did. finish() is the one
// place a request is counted: plain additions to series the route keeps
// for the (listener, backend) pairs it has seen, and, when access logs are
// on, one line handed to the thread's buffer (access-log.ts).

import type { CompiledGatewayListener, CompiledListener, CompiledRoute } from '../config.ts';
import type { AccessLog } from '../access-log.ts';
import { type DataPlaneMetrics, type RequestSeries, statusClass } from '../metrics.ts';
import type { UpstreamCluster } from '../upstream/balancer.ts';
import type { DownstreamRequest } from './downstream.ts';
import { plainAddress } from './client-address.ts';
import type { TraceContext, Tracer } from '../tracing.ts';

/** The TLS side of a connection, read once when its handshake completes. */
export interface TlsFacts {
  /** The SNI the client sent; null: none. */
  readonly serverName: string | null;
  /** `TLSv1.3`, `TLSv1.2`. */
  readonly version: string | null;
}

/** A route's series by the (Gateway listener, cluster) pairs its requests had; a few at most. */
export interface RouteSeriesEntry {
  readonly listener: CompiledGatewayListener | null;
  readonly cluster: UpstreamCluster | null;
  readonly series: RequestSeries;
}

/** Entries a route keeps before starting afresh (a reload makes new listener objects). */
const ROUTE_SERIES_CACHE = 16;

/** The data plane's side of finish(): one per data plane (thread). */
export class RequestObserver {
  readonly metrics: DataPlaneMetrics;
  /** Set when access logs are on. */
  accessLog: AccessLog | null;
  /** Set when tracing is on. */
  readonly tracer: Tracer | null;

  constructor(metrics: DataPlaneMetrics, accessLog: AccessLog | null, tracer: Tracer | null = null) {
    this.metrics = metrics;
    this.accessLog = accessLog;
    this.tracer = tracer;
  }

  finished(record: RequestRecord, status: number, bytesOut: number): void {
    const ms = performance.now() - record.startedAt;
    const series = this.#series(record);
    series.classes[statusClass(status)]++;
    series.duration.observe(ms);
    if (this.metrics.isOverflow(series)) this.metrics.overflow();
    if (this.accessLog !== null) this.accessLog.record(record, status, bytesOut, ms);
    const trace = record.trace;
    if (trace !== null && trace.sampled && this.tracer !== null) this.#span(record, trace, status, ms);
  }

  #span(record: RequestRecord, trace: TraceContext, status: number, ms: number): void {
    const startNs = BigInt(Math.round((performance.timeOrigin + record.startedAt) * 1e3)) * 1000n;
    const req = record.req;
    const attributes: Record<string, string | number> = {
      'http.request.method': req.method,
      'url.path': req.url,
      'server.address': record.host,
      'http.response.status_code': status,
      'network.protocol.version': req.http2 ? '2' : `${req.httpVersionMajor}.${req.httpVersionMinor}`,
      'gatehouse.listener': record.gatewayListener?.name ?? '',
      'gatehouse.route': record.route?.name ?? '',
    };
    if (record.cluster !== null) attributes['gatehouse.backend'] = record.cluster.name;
    if (record.upstreamAddress !== '') attributes['gatehouse.upstream.address'] = record.upstreamAddress;
    this.tracer!.finished({
      context: trace,
      name: req.method,
      startUnixNano: startNs,
      endUnixNano: startNs + BigInt(Math.round(ms * 1e6)),
      attributes,
      error: status >= 500 || status === 0,
    });
  }

  #series(record: RequestRecord): RequestSeries {
    const route = record.route;
    const listener = record.gatewayListener;
    if (route === null) return this.metrics.requestSeries(listener === null ? null : listener.name, null, null);
    const cluster = record.cluster;
    const cache = route.series;
    for (let i = 0; i < cache.length; i++) {
      const entry = cache[i];
      if (entry.listener === listener && entry.cluster === cluster) return entry.series;
    }
    const series = this.metrics.requestSeries(listener === null ? null : listener.name, route.name, cluster === null ? null : cluster.name);
    if (cache.length >= ROUTE_SERIES_CACHE) cache.length = 0;
    cache.push({ listener, cluster, series });
    return series;
  }
}

export class RequestRecord {
  readonly observer: RequestObserver;
  readonly req: DownstreamRequest;
  /** The listening socket's config. */
  readonly listener: CompiledListener;
  readonly tls: TlsFacts | null;
  /** performance.now() when the handler took the request. */
  readonly startedAt: number;
  gatewayListener: CompiledGatewayListener | null = null;
  route: CompiledRoute | null = null;
  cluster: UpstreamCluster | null = null;
  /** The request's host, once its target was read. */
  host = '';
  /** The client as a ClientTrafficPolicy resolved it (client-address.ts); null: the connection's address. */
  clientAddress: string | null = null;
  /** `http://10.0.0.5:8080`: the endpoint of the last try. */
  upstreamAddress = '';
  /** performance.now() when the last try was sent; 0: none was. */
  upstreamStartedAt = 0;
  /** How long the last try took, ms; -1 while none has ended. */
  upstreamMs = -1;
  /** Set when tracing is on and the request was routed. */
  trace: TraceContext | null = null;
  #done = false;

  /** The client's address for logs and traces: as resolved, else the connection's. */
  get client(): string {
    return this.clientAddress ?? plainAddress(this.req.remoteAddress);
  }

  constructor(observer: RequestObserver, req: DownstreamRequest, listener: CompiledListener, tls: TlsFacts | null) {
    this.observer = observer;
    this.req = req;
    this.listener = listener;
    this.tls = tls;
    this.startedAt = performance.now();
  }

  /** The response ended (status sent) or was cut (status 0 when none was sent). Counted once. */
  finish(status: number, bytesOut: number): void {
    if (this.#done) return;
    this.#done = true;
    this.observer.finished(this, status, bytesOut);
  }

  /** A try was sent to `cluster` at `origin`. */
  upstreamStart(cluster: UpstreamCluster, origin: string): void {
    this.cluster = cluster;
    this.upstreamAddress = origin;
    this.upstreamStartedAt = performance.now();
  }

  /** The try ended (response complete, or failed): its duration goes to its cluster's histogram. */
  upstreamEnd(cluster: UpstreamCluster): void {
    if (this.upstreamStartedAt === 0) return;
    const ms = performance.now() - this.upstreamStartedAt;
    this.upstreamMs = ms;
    cluster.stats.duration.observe(ms);
  }
}
