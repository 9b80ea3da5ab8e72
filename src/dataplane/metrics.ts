// The data plane's counters, kept as plain numbers in the thread that
// serves the traffic. A request adds to objects it already holds (its
// route's series, its cluster's, its listener's): no label strings are
// built and no map is searched per request once a route has seen a
// (listener, backend) pair. The admin API asks each thread for a snapshot
// when it is scraped (snapshot(), a plain object that crosses threads) and
// adds the snapshots up (mergeSnapshots); src/admin/metrics-text.ts writes
// them in Prometheus' text format.
//
// Label values are names from the configuration (Gateway, listener,
// HTTPRoute, rule, cluster, listening address), never anything a client
// sent, and the number of series a thread keeps is capped
// (DEFAULT_MAX_SERIES): past it, new label sets are all counted in one
// series whose every label is OVERFLOW_LABEL.

/** Upper bounds of the latency histograms, in seconds (+Inf is implied). */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const BUCKETS_MS: readonly number[] = DURATION_BUCKETS_SECONDS.map((s) => s * 1000);

/** Series a thread keeps, request, upstream and listener series together; beyond, the overflow series. */
export const DEFAULT_MAX_SERIES = 10_000;
/** Every label of the series that takes what the cap leaves out. */
export const OVERFLOW_LABEL = '_overflow_';

/** Status classes by index: 0 = no response (the client went first), 1..5 = 1xx..5xx. */
export const STATUS_CLASSES: readonly string[] = ['none', '1xx', '2xx', '3xx', '4xx', '5xx'];

/** A histogram of durations: counts per bucket (not cumulative; the last is +Inf), their sum in seconds. */
export class Histogram {
  readonly buckets: number[] = new Array<number>(BUCKETS_MS.length + 1).fill(0);
  sum = 0;

  observe(ms: number): void {
    let i = 0;
    while (i < BUCKETS_MS.length && ms > BUCKETS_MS[i]) i++;
    this.buckets[i]++;
    this.sum += ms / 1000;
  }
}

/** Requests of one (Gateway listener, route rule, backend): answers by status class and their durations. */
export class RequestSeries {
  readonly key: string;
  /** gateway, listener, route, rule, backend. */
  readonly labels: readonly string[];
  /** By STATUS_CLASSES index. */
  readonly classes: number[] = [0, 0, 0, 0, 0, 0];
  readonly duration = new Histogram();

  constructor(key: string, labels: readonly string[]) {
    this.key = key;
    this.labels = labels;
  }
}

/** One upstream cluster (a Service port): its tries' durations, failed connects, retries. */
export class UpstreamSeries {
  readonly key: string;
  /** backend. */
  readonly labels: readonly string[];
  /** Each try, from dispatch to the end of the response (or its failure). */
  readonly duration = new Histogram();
  /** Tries that got no connection: refused, unreachable, connect timeout. */
  connectFailures = 0;
  /** Tries made again after a failed one (HTTPRoute retry). */
  retries = 0;
  /** Requests answered 503 because a BackendTrafficPolicy's maxParallelRequests were in flight. */
  circuitOpen = 0;
  /** Retries not made because of maxParallelRetries or the retry budget. */
  retriesRefused = 0;
  /** Endpoints ejected by passive health (outlier detection). */
  ejections = 0;

  constructor(key: string, labels: readonly string[]) {
    this.key = key;
    this.labels = labels;
  }
}

/** One listening socket: client connections and TLS handshakes. */
export class ListenerSeries {
  readonly key: string;
  /** address (the IR listener key, `address:port`). */
  readonly labels: readonly string[];
  connectionsTotal = 0;
  connectionsActive = 0;
  tlsHandshakes = 0;
  tlsHandshakeErrors = 0;

  constructor(key: string, labels: readonly string[]) {
    this.key = key;
    this.labels = labels;
  }
}

export interface SeriesSnapshot {
  key: string;
  labels: readonly string[];
  values: number[];
}

/** What a thread's counters hold at one moment; plain data, to cross threads and be added up. */
export interface MetricsSnapshot {
  /** values: the six status-class counts, then the duration buckets, then the duration sum. */
  requests: SeriesSnapshot[];
  /** values: duration buckets, sum, connect failures, retries. */
  upstreams: SeriesSnapshot[];
  /** values: connections total, active, TLS handshakes, TLS handshake errors. */
  listeners: SeriesSnapshot[];
  /** Observations counted in the overflow series. */
  overflowed: number;
  /** Access log lines written, and dropped because the sink was behind. */
  accessLogLines: number;
  accessLogDropped: number;
  /** Trace spans exported, and dropped (buffer full, export failed). */
  spansExported: number;
  spansDropped: number;
}

export function emptySnapshot(): MetricsSnapshot {
  return { requests: [], upstreams: [], listeners: [], overflowed: 0, accessLogLines: 0, accessLogDropped: 0, spansExported: 0, spansDropped: 0 };
}

/** `namespace/gateway/listener` -> gateway `namespace/gateway`, listener `listener`. */
function splitListenerName(name: string | null): [string, string] {
  if (name === null) return ['', ''];
  const slash = name.lastIndexOf('/');
  return slash === -1 ? ['', name] : [name.slice(0, slash), name.slice(slash + 1)];
}

/** `namespace/route/rule/match` -> route `namespace/route`, rule `rule` (its index, or its name). */
function splitRouteName(name: string | null): [string, string] {
  if (name === null) return ['', ''];
  const parts = name.split('/');
  if (parts.length < 3) return [name, ''];
  return [`${parts[0]}/${parts[1]}`, parts[2]];
}

export class DataPlaneMetrics {
  readonly maxSeries: number;
  readonly #requests = new Map<string, RequestSeries>();
  readonly #upstreams = new Map<string, UpstreamSeries>();
  readonly #listeners = new Map<string, ListenerSeries>();
  #series = 0;
  #overflowed = 0;
  readonly #overflowRequests = new RequestSeries('\u0000overflow', [OVERFLOW_LABEL, OVERFLOW_LABEL, OVERFLOW_LABEL, OVERFLOW_LABEL, OVERFLOW_LABEL]);
  readonly #overflowUpstream = new UpstreamSeries('\u0000overflow', [OVERFLOW_LABEL]);
  readonly #overflowListener = new ListenerSeries('\u0000overflow', [OVERFLOW_LABEL]);
  accessLogLines = 0;
  accessLogDropped = 0;

  constructor(maxSeries = DEFAULT_MAX_SERIES) {
    this.maxSeries = maxSeries;
  }

  /** Counts one observation that went to an overflow series. */
  overflow(): void {
    this.#overflowed++;
  }

  #room(): boolean {
    if (this.#series >= this.maxSeries) return false;
    this.#series++;
    return true;
  }

  /**
   * The series of requests answered on Gateway listener `listener`
   * (`ns/gateway/listener`), by route rule `route` (RouteEntry.name), sent
   * to cluster `backend`; null where the request got no further. Looked up
   * by name: callers keep what it returns (see RequestRecord).
   */
  requestSeries(listener: string | null, route: string | null, backend: string | null): RequestSeries {
    const key = `${listener ?? ''}\u0000${route ?? ''}\u0000${backend ?? ''}`;
    let series = this.#requests.get(key);
    if (series !== undefined) return series;
    if (!this.#room()) return this.#overflowRequests;
    const [gateway, gwListener] = splitListenerName(listener);
    const [routeName, rule] = splitRouteName(route);
    series = new RequestSeries(key, [gateway, gwListener, routeName, rule, backend ?? '']);
    this.#requests.set(key, series);
    return series;
  }

  isOverflow(series: RequestSeries): boolean {
    return series === this.#overflowRequests;
  }

  /** The series of cluster `name`; called when a config is compiled, kept on the cluster. */
  upstream(name: string): UpstreamSeries {
    let series = this.#upstreams.get(name);
    if (series !== undefined) return series;
    if (!this.#room()) return this.#overflowUpstream;
    series = new UpstreamSeries(name, [name]);
    this.#upstreams.set(name, series);
    return series;
  }

  /** The series of listening socket `key`; called when it is bound, kept by its server. */
  listener(key: string): ListenerSeries {
    let series = this.#listeners.get(key);
    if (series !== undefined) return series;
    if (!this.#room()) return this.#overflowListener;
    series = new ListenerSeries(key, [key]);
    this.#listeners.set(key, series);
    return series;
  }

  snapshot(): MetricsSnapshot {
    const requests: SeriesSnapshot[] = [];
    for (const s of [...this.#requests.values(), this.#overflowRequests]) {
      if (s === this.#overflowRequests && s.duration.buckets.every((b) => b === 0) && s.classes.every((c) => c === 0)) continue;
      requests.push({ key: s.key, labels: s.labels, values: [...s.classes, ...s.duration.buckets, s.duration.sum] });
    }
    const upstreams: SeriesSnapshot[] = [];
    for (const s of [...this.#upstreams.values(), this.#overflowUpstream]) {
      if (s === this.#overflowUpstream && s.connectFailures === 0 && s.retries === 0 && s.circuitOpen === 0 && s.retriesRefused === 0
        && s.ejections === 0 && s.duration.buckets.every((b) => b === 0)) continue;
      upstreams.push({
        key: s.key, labels: s.labels,
        values: [...s.duration.buckets, s.duration.sum, s.connectFailures, s.retries, s.circuitOpen, s.retriesRefused, s.ejections],
      });
    }
    const listeners: SeriesSnapshot[] = [];
    for (const s of [...this.#listeners.values(), this.#overflowListener]) {
      if (s === this.#overflowListener && s.connectionsTotal === 0) continue;
      listeners.push({ key: s.key, labels: s.labels, values: [s.connectionsTotal, s.connectionsActive, s.tlsHandshakes, s.tlsHandshakeErrors] });
    }
    return {
      requests, upstreams, listeners, overflowed: this.#overflowed, accessLogLines: this.accessLogLines, accessLogDropped: this.accessLogDropped,
      spansExported: 0, spansDropped: 0,
    };
  }
}

/** The sum of several threads' snapshots, series with the same key added up. */
export function mergeSnapshots(snapshots: readonly MetricsSnapshot[]): MetricsSnapshot {
  const merged = emptySnapshot();
  const maps = { requests: new Map<string, SeriesSnapshot>(), upstreams: new Map<string, SeriesSnapshot>(), listeners: new Map<string, SeriesSnapshot>() };
  for (const snap of snapshots) {
    for (const kind of ['requests', 'upstreams', 'listeners'] as const) {
      const map = maps[kind];
      for (const s of snap[kind]) {
        const have = map.get(s.key);
        if (have === undefined) map.set(s.key, { key: s.key, labels: s.labels, values: [...s.values] });
        else for (let i = 0; i < s.values.length; i++) have.values[i] += s.values[i];
      }
    }
    merged.overflowed += snap.overflowed;
    merged.accessLogLines += snap.accessLogLines;
    merged.accessLogDropped += snap.accessLogDropped;
    merged.spansExported += snap.spansExported;
    merged.spansDropped += snap.spansDropped;
  }
  merged.requests = [...maps.requests.values()];
  merged.upstreams = [...maps.upstreams.values()];
  merged.listeners = [...maps.listeners.values()];
  return merged;
}

/** The index in STATUS_CLASSES of an HTTP status (0: none was sent). */
export function statusClass(status: number): number {
  if (status < 100 || status > 599) return 0;
  return (status / 100) | 0;
}
