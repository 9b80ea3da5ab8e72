// The data plane: apply(IR) compiles a config, swaps it in, and diffs the
// listening sockets; requests are served from whatever config their
// listener pointed at when they arrived. applies are serialised, so each
// one sees the sockets the previous one left.

import type { IR } from '../ir/types.ts';
import { CompileCache, compileConfig, type CompiledConfig } from './config.ts';
import { IRDeltaEncoder, type IRDelta } from '../ir/delta.ts';
import { HttpRequestHandler } from './http/handler.ts';
import { resolveLimits, type RequestLimits } from './limits.ts';
import { ListenerSet } from './listeners.ts';
import { silentLog, type LogFn } from './log.ts';
import { SecureContextCache } from './tls/sni.ts';
import { UpstreamPools } from './upstream/pools.ts';
import { L4ListenerSet } from './l4/listeners.ts';
import { compileL4Listener, type CompiledL4Listener } from './l4/routes.ts';
import type { Cluster } from '../ir/types.ts';
import { EndpointStates } from './upstream/endpoint-state.ts';
import { ActiveHealthChecks } from './upstream/health-check.ts';
import type { MessagePort } from 'node:worker_threads';
import { AccessLog, type AccessLogOptions } from './access-log.ts';
import { RequestObserver } from './http/request-record.ts';
import { DataPlaneMetrics, type MetricsSnapshot } from './metrics.ts';
import { Tracer, type TracingOptions } from './tracing.ts';

export type { RequestLimits } from './limits.ts';
export { DEFAULT_LIMITS } from './limits.ts';

export interface DataPlaneOptions {
  log?: LogFn;
  limits?: Partial<RequestLimits>;
  /**
   * Bind listeners with SO_REUSEPORT, so that several data planes (worker
   * threads) each accept on the same ports. Off for a data plane alone,
   * which then also learns when another process holds its port.
   */
  reusePort?: boolean;
  /**
   * Run the active health checks the IR's clusters ask for (apply(IR),
   * or applyDelta() given the clusters). Off in worker threads: the
   * worker pool runs them once for all and sends each verdict
   * (setEndpointHealth).
   */
  activeHealthChecks?: boolean;
  /** Series this data plane's metrics keep before the overflow series (metrics.ts: DEFAULT_MAX_SERIES). */
  maxMetricSeries?: number;
  /** Access logs: the options, and this thread's port to the writer thread (access-log-writer.ts). */
  accessLog?: { options: AccessLogOptions; port: MessagePort };
  /** Tracing; absent: off. */
  tracing?: TracingOptions;
}

export interface ApplyResult {
  /** By IRListener.key: why the listener is not serving (bind failure, no loadable certificate, ...). */
  listenerErrors: Record<string, string>;
  /** By IRListener.key: certificates that could not be loaded on a listener that serves with the rest. */
  certificateErrors: Record<string, string>;
  /** By RouteEntry.name: routes left out (bad match) or answering 500 (bad filter, unknown cluster). */
  routeErrors: Record<string, string>;
}

/** What a cluster with a BackendTrafficPolicy refused or did, and its endpoints now. */
export interface ClusterPolicyStats {
  /** Requests answered 503 because maxParallelRequests were in flight. */
  circuitOpen: number;
  /** Retries not made because of maxParallelRetries or the retry budget. */
  retriesRefused: number;
  /** Endpoints ejected by passive health, since the cluster's series began. */
  ejections: number;
  /** Requests in flight. */
  active: number;
  /** Endpoints ejected now. */
  ejected: number;
  /** Endpoints an active health check marks unhealthy now. */
  unhealthy: number;
}

export class DataPlane {
  readonly #log: LogFn;
  readonly #limits: RequestLimits;
  readonly #pools: UpstreamPools;
  readonly #secureContexts = new SecureContextCache();
  readonly #listeners: ListenerSet;
  readonly #handler: HttpRequestHandler;
  readonly #l4: L4ListenerSet;
  /** Cluster specs by delta id, for the L4 sockets (which connect to endpoints directly, not through pools). */
  #l4Clusters = new Map<number, Cluster>();
  readonly #metrics: DataPlaneMetrics;
  readonly #accessLog: AccessLog | null;
  readonly #tracer: Tracer | null;
  #current: CompiledConfig | null = null;
  #cache = new CompileCache();
  /** For apply(IR): the delta from the IR applied before. */
  #encoder = new IRDeltaEncoder();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Endpoint state of clusters with a BackendTrafficPolicy, across configs. */
  readonly #states = new EndpointStates();
  readonly #health: ActiveHealthChecks | null;

  constructor(opts: DataPlaneOptions = {}) {
    this.#log = opts.log ?? silentLog;
    this.#health = opts.activeHealthChecks === false
      ? null
      : new ActiveHealthChecks((key, healthy) => this.setEndpointHealth(key, healthy), this.#log);
    this.#limits = resolveLimits(opts.limits);
    this.#pools = new UpstreamPools(this.#log, this.#limits);
    this.#metrics = new DataPlaneMetrics(opts.maxMetricSeries);
    this.#accessLog = opts.accessLog === undefined ? null : new AccessLog(opts.accessLog.options, opts.accessLog.port, this.#metrics, this.#log);
    this.#tracer = opts.tracing === undefined ? null : new Tracer(opts.tracing, this.#log);
    this.#handler = new HttpRequestHandler(this.#log, new RequestObserver(this.#metrics, this.#accessLog, this.#tracer));
    this.#listeners = new ListenerSet(this.#limits, this.#log, this.#handler, opts.reusePort ?? false, this.#metrics);
    this.#l4 = new L4ListenerSet(this.#log, opts.reusePort ?? false, this.#limits);
  }

  /** This data plane's counters as they are now (see metrics.ts). */
  metricsSnapshot(): MetricsSnapshot {
    const snapshot = this.#metrics.snapshot();
    if (this.#tracer !== null) {
      snapshot.spansExported = this.#tracer.exported;
      snapshot.spansDropped = this.#tracer.dropped;
    }
    return snapshot;
  }

  /** Requests received on every listener since start. */
  get requestCount(): number {
    return this.#handler.requests;
  }

  /**
   * Rejects only for an IR this data plane cannot read (wrong version) or
   * after close(); the previous config then stays in force. Everything
   * narrower is reported in the result and the rest is served.
   */
  apply(ir: IR): Promise<ApplyResult> {
    return this.#serialised(() => this.#apply(this.#encoder.encode(ir)).then((result) => {
      this.#health?.update(ir.clusters);
      return result;
    }, (err: unknown) => {
      // The encoder now takes this IR as known: start both sides afresh.
      this.#encoder = new IRDeltaEncoder();
      this.#cache = new CompileCache();
      throw err;
    }));
  }

  /** An active health check's verdict on an endpoint (`key`: EndpointStates.key). */
  setEndpointHealth(key: string, healthy: boolean): void {
    this.#states.setHealthy(key, healthy, Date.now());
  }

  /** What clusters with a policy refused or did, by cluster name (this data plane's, since each cluster was compiled). */
  clusterStats(): Record<string, ClusterPolicyStats> {
    const out: Record<string, ClusterPolicyStats> = {};
    const now = Date.now();
    for (const { cluster } of this.#cache.clusters.values()) {
      if (cluster.behaviour === null) continue;
      let ejected = 0;
      let unhealthy = 0;
      for (const e of cluster.endpoints) {
        if (e.state!.ejectedUntil > now) ejected++;
        if (!e.state!.healthy) unhealthy++;
      }
      const { circuitOpen, retriesRefused, ejections } = cluster.stats;
      out[cluster.name] = { circuitOpen, retriesRefused, ejections, active: cluster.active, ejected, unhealthy };
    }
    return out;
  }

  /**
   * The same, for a data plane fed by a DeltaSource elsewhere (a worker;
   * on the main thread, serve's encoder or gatehouse proxy's relay, see
   * control/data-plane-handle.ts): every delta of that source, in order,
   * full() first. After a rejection the next delta must be a full() one.
   * `clusters`, the config's clusters by name, are for the active health
   * checks, which a worker leaves to its pool.
   */
  applyDelta(delta: IRDelta, clusters?: Record<string, Cluster>): Promise<ApplyResult> {
    return this.#serialised(() => this.#apply(delta).then((result) => {
      if (clusters !== undefined) this.#health?.update(clusters);
      return result;
    }));
  }

  /**
   * Shutdown, first step: answers ask clients to close their connections
   * while the listeners keep accepting (see ListenerSet.markDraining).
   * Not queued behind applies: it must take effect at once.
   */
  beginDrain(): void {
    this.#listeners.markDraining();
  }

  /** Stops accepting, lets requests in flight finish up to the drain timeout, then closes the upstream pools. */
  close(): Promise<void> {
    return this.#serialised(() => this.#close());
  }

  /** Runs `step` after every step queued before it, whether that one failed or not. */
  #serialised<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(step);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #apply(delta: IRDelta): Promise<ApplyResult> {
    if (this.#closed) throw new Error('data plane is closed');
    const next = compileConfig(delta, { pools: this.#pools, secureContexts: this.#secureContexts, limits: this.#limits, states: this.#states, metrics: this.#metrics }, this.#cache);
    const previous = this.#current;
    this.#current = next;
    const l4 = this.#compileL4(delta, next.listenerErrors, next.routeErrors);
    const [reconciled, l4BindErrors] = await Promise.all([this.#listeners.reconcile(next), this.#l4.reconcile(l4)]);
    // Requests and draining servers still on the previous config hold their
    // own references; this only drops the data plane's.
    previous?.release();
    const listenerErrors = { ...next.listenerErrors, ...reconciled.bindErrors, ...l4BindErrors };
    const certificateErrors = { ...next.certificateErrors, ...reconciled.certificateErrors };
    for (const [key, error] of Object.entries(next.listenerErrors)) {
      this.#log('warn', 'listener not served', { listener: key, error });
    }
    for (const [key, error] of Object.entries(certificateErrors)) {
      this.#log('warn', 'certificate left out', { listener: key, error });
    }
    for (const [route, error] of Object.entries(next.routeErrors)) {
      this.#log('warn', 'route not served as configured', { route, error });
    }
    for (const [cluster, error] of Object.entries(next.clusterErrors)) {
      this.#log('warn', 'cluster endpoint left out', { cluster, error });
    }
    return { listenerErrors, certificateErrors, routeErrors: { ...next.routeErrors } };
  }

  /** The TLS, TCP and UDP listeners of `delta`, with the cluster specs they use. */
  #compileL4(delta: IRDelta, listenerErrors: Record<string, string>, routeErrors: Record<string, string>): Map<string, CompiledL4Listener> {
    const defined = new Map(delta.define.clusters);
    const byId = new Map<number, Cluster>();
    const byName = new Map<string, Cluster>();
    for (const [name, id] of Object.entries(delta.clusters)) {
      const spec = defined.get(id) ?? this.#l4Clusters.get(id);
      if (spec === undefined) continue;
      byId.set(id, spec);
      byName.set(name, spec);
    }
    this.#l4Clusters = byId;
    const out = new Map<string, CompiledL4Listener>();
    for (const listener of delta.listeners) {
      if (listener.l4 === undefined) continue;
      out.set(listener.key, compileL4Listener(listener, byName, this.#secureContexts, routeErrors));
      void listenerErrors;
    }
    return out;
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#health?.close();
    const deadline = Date.now() + this.#limits.drainTimeoutMs;
    await Promise.all([this.#listeners.closeAll(), this.#l4.closeAll()]);
    this.#current?.release();
    this.#current = null;
    // With every client gone little is left upstream (idle connections,
    // mirrors): it gets what remains of the drain timeout, and at least a
    // second, so that the whole close stays within the drain timeout plus
    // that second.
    await this.#pools.closeAll(Math.max(deadline - Date.now(), Math.min(1_000, this.#limits.drainTimeoutMs)));
    this.#accessLog?.flushNow();
    this.#tracer?.flushNow();
  }
}
