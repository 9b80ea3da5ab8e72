// Compiles an IR into the immutable structure requests are served from:
// host tables, route indexes, compiled matches and filters, weighted
// backends bound to upstream pools, SNI contexts. Done once per apply(),
// from an IR delta: the virtual hosts and clusters it keeps are reused as
// compiled before, so a one-route change compiles one virtual host. A
// request only reads the result.

import type { ClientSettings, Cluster, Filter, RouteEntry, RouteMatch, VirtualHost, WeightedBackend } from '../ir/types.ts';
import { IR_VERSION } from '../ir/types.ts';
import type { IRDelta, ListenerShape } from '../ir/delta.ts';
import { HostTable, normalizePattern, type HostPattern } from './hostnames.ts';
import { compileClientAddress, type ClientAddressResolver } from './http/client-address.ts';
import { compileFilter, type CompiledFilter, type MirrorResolver } from './http/filters.ts';
import { compileMatch, type CompiledMatch } from './http/match.ts';
import { MirrorGate } from './http/mirror.ts';
import { compileRetry, type CompiledRetry } from './http/retry.ts';
import { DEFAULT_LIMITS, type RequestLimits } from './limits.ts';
import { RouteTable } from './http/router.ts';
import { SniTable, type SecureContextCache } from './tls/sni.ts';
import { upstreamCluster, WeightedBackends, type PooledOrigin, type UpstreamCluster } from './upstream/balancer.ts';
import { SessionAffinity } from './upstream/sticky.ts';
import { EndpointStates, type EndpointState } from './upstream/endpoint-state.ts';
import { balancerFor } from './upstream/load-balancing.ts';
import { compileBehaviour } from './upstream/policy.ts';
import { endpointOrigin, type UpstreamPools, type UpstreamTransport } from './upstream/pools.ts';
import { DataPlaneMetrics } from './metrics.ts';
import type { RouteSeriesEntry } from './http/request-record.ts';

export interface CompiledRoute {
  readonly name: string;
  readonly match: CompiledMatch;
  readonly filters: readonly CompiledFilter[];
  readonly backends: WeightedBackends;
  /** Deadline for the whole exchange in ms, the tighter of the route's timeouts; 0 for none. */
  readonly timeoutMs: number;
  /** The rule's retries, with its timeouts split per try and overall; null: one try. */
  readonly retry: CompiledRetry | null;
  /** Why the route cannot be served (bad filter); such a route answers 500. */
  readonly invalid: string | null;
  /** The rule's session persistence; null: every request balanced afresh. */
  readonly session: SessionAffinity | null;
  /** Its request series by (Gateway listener, cluster), filled as requests end (request-record.ts). */
  readonly series: RouteSeriesEntry[];
}

export interface CompiledVirtualHost {
  readonly hostname: string;
  readonly routes: RouteTable<CompiledRoute>;
}

export interface CompiledGatewayListener {
  readonly name: string;
  readonly virtualHosts: HostTable<CompiledVirtualHost>;
}

export interface CompiledListener {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS';
  readonly scheme: 'http' | 'https';
  readonly gatewayListeners: HostTable<CompiledGatewayListener>;
  /** Set for HTTPS. */
  readonly sni: SniTable | null;
  /** The config this listener belongs to, to hold it while a request uses it. */
  readonly config: CompiledConfig;
  /** The data plane's limits, with the listener's ClientTrafficPolicy's over them (the same object when it has none). */
  readonly limits: RequestLimits;
  /** How the listener treats its clients (a ClientTrafficPolicy); null: the defaults, and no work per request. */
  readonly client: CompiledClient | null;
  /**
   * What of the client settings the listening socket is made with (PROXY
   * protocol, limits, HTTP/2 windows), as one string: a change rebinds it.
   */
  readonly socketSettings: string;
}

/** ClientSettings, compiled. */
export interface CompiledClient {
  /** `namespace/name` of the policy, for logs. */
  readonly policy: string;
  /** Reads the client address from the request; null: the connection's address is the client's. */
  readonly resolveAddress: ClientAddressResolver | null;
  /** Larger request bodies get 413; 0: no limit. */
  readonly maxRequestBodyBytes: number;
  readonly proxyProtocol: { readonly optional: boolean } | null;
  readonly http2: { readonly initialStreamWindowSize?: number; readonly initialConnectionWindowSize?: number } | null;
}

function compileClient(settings: ClientSettings): CompiledClient {
  return {
    policy: settings.policy,
    resolveAddress: settings.clientIP === undefined ? null : compileClientAddress(settings.clientIP),
    maxRequestBodyBytes: settings.maxRequestBodyBytes ?? 0,
    proxyProtocol: settings.proxyProtocol ?? null,
    http2: settings.http2 ?? null,
  };
}

export interface CompileDeps {
  readonly pools: UpstreamPools;
  readonly secureContexts: SecureContextCache;
  /** The data plane's limits (mirror gates, replay buffers); DEFAULT_LIMITS when not given. */
  readonly limits?: RequestLimits;
  /** What the data plane knows of endpoints of clusters with a policy, across configs; a fresh set when not given. */
  readonly states?: EndpointStates;
  /** Where clusters find their counters; counted nowhere when not given. */
  readonly metrics?: DataPlaneMetrics;
}

/**
 * Reference counted: the data plane holds the current config, and each
 * upstream exchange and each draining server holds the config it started
 * on. When the last holder lets go, the config's upstream pools are
 * released.
 */
export class CompiledConfig {
  readonly listeners = new Map<string, CompiledListener>();
  /** Listeners that will not be served, by IRListener.key. */
  readonly listenerErrors: Record<string, string> = {};
  /** Certificates left out of listeners that are served with the others, by IRListener.key. */
  readonly certificateErrors: Record<string, string> = {};
  /** Routes dropped or answering 500 because of a bad match, filter or backend, by RouteEntry.name. */
  readonly routeErrors: Record<string, string> = {};
  /** Endpoints left out of a cluster, by cluster name. */
  readonly clusterErrors: Record<string, string> = {};
  /** What requests served from this config read of the data plane's limits (replay buffers). */
  readonly limits: RequestLimits;
  readonly #origins: string[] = [];
  readonly #pools: UpstreamPools;
  #refs = 1;

  constructor(pools: UpstreamPools, limits: RequestLimits = DEFAULT_LIMITS) {
    this.#pools = pools;
    this.limits = limits;
  }

  /** Called only while compiling. */
  useOrigin(origin: string, transport?: UpstreamTransport): PooledOrigin {
    const pool = this.#pools.acquire(origin, transport);
    this.#origins.push(origin);
    return { origin, pool };
  }

  retain(): void {
    this.#refs++;
  }

  release(): void {
    if (--this.#refs !== 0) return;
    for (const origin of this.#origins) this.#pools.release(origin);
    this.#origins.length = 0;
  }
}

/**
 * What a data plane keeps between applies: the compiled form of every
 * virtual host and cluster of the current config, by the ids of the delta
 * that defined them. A delta that keeps an id reuses its compiled form.
 */
export class CompileCache {
  virtualHosts = new Map<number, CachedVirtualHost>();
  clusters = new Map<number, CachedCluster>();
}

interface CachedVirtualHost {
  readonly compiled: CompiledVirtualHost;
  /** normalizePattern(hostname), made once: every config that uses the host puts it in a HostTable. */
  readonly pattern: HostPattern;
  /** The routeErrors compiling it gave, reported again by every config that uses it. */
  readonly routeErrors: Readonly<Record<string, string>>;
}

interface CachedCluster {
  readonly cluster: UpstreamCluster;
  readonly error: string | undefined;
}

/**
 * Compiles `delta` against `cache`, which must hold every id the delta
 * uses without defining it; on success the cache holds exactly the ids of
 * the new config. Throws (leaving the cache as it was) for an IR version
 * this data plane cannot read or an id it does not know.
 */
export function compileConfig(delta: IRDelta, deps: CompileDeps, cache: CompileCache): CompiledConfig {
  if (delta.version !== IR_VERSION) {
    throw new Error(`unsupported IR version ${String(delta.version)}, expected ${IR_VERSION}`);
  }
  const config = new CompiledConfig(deps.pools, deps.limits);
  try {
    const next = new ConfigCompiler(delta, config, deps, cache).run();
    cache.virtualHosts = next.virtualHosts;
    cache.clusters = next.clusters;
    if (deps.states !== undefined) {
      const keys: string[] = [];
      const names: string[] = [];
      for (const { cluster } of next.clusters.values()) {
        names.push(cluster.name);
        for (const e of cluster.endpoints) if (e.state !== null) keys.push(e.state.key);
      }
      deps.states.retain(keys, names);
    }
  } catch (err) {
    config.release();
    throw err;
  }
  return config;
}

const NO_FILTERS: readonly CompiledFilter[] = Object.freeze([]);

class ConfigCompiler {
  readonly #delta: IRDelta;
  readonly #config: CompiledConfig;
  readonly #deps: CompileDeps;
  readonly #cache: CompileCache;
  readonly #next = new CompileCache();
  readonly #clusters = new Map<string, UpstreamCluster>();
  readonly #definedHosts: Map<number, VirtualHost | string>;
  /**
   * Compiled parts many routes have in common, shared within one compile:
   * most rules differ only in their path and send to one of a few backend
   * sets, and 50,000 copies of the same weighted backends cost megabytes.
   */
  readonly #sharedMatches = new Map<string, CompiledMatch>();
  readonly #sharedBackends = new Map<string, WeightedBackends>();
  readonly #metrics: DataPlaneMetrics;
  /** RequestMirror clusters -> their gates (kept on the cluster, so they last as it does). */
  readonly #mirrors: MirrorResolver = (name, numerator, denominator) => {
    const cluster = this.#clusters.get(name);
    return cluster === undefined ? null : { gate: MirrorGate.of(cluster, this.#config.limits), numerator, denominator };
  };

  constructor(delta: IRDelta, config: CompiledConfig, deps: CompileDeps, cache: CompileCache) {
    this.#delta = delta;
    this.#config = config;
    this.#deps = deps;
    this.#cache = cache;
    this.#definedHosts = new Map(delta.define.virtualHosts);
    this.#metrics = deps.metrics ?? new DataPlaneMetrics();
  }

  run(): CompileCache {
    this.#compileClusters();
    this.#deps.secureContexts.beginGeneration();
    for (const listener of this.#delta.listeners) {
      // TLS, TCP and UDP sockets are the L4 data plane's (l4/).
      if (listener.l4 !== undefined) continue;
      if (this.#config.listeners.has(listener.key) || this.#config.listenerErrors[listener.key] !== undefined) {
        this.#config.listenerErrors[listener.key] = 'duplicate listener key';
        this.#config.listeners.delete(listener.key);
        continue;
      }
      const compiled = this.#listener(listener);
      if (compiled !== null) this.#config.listeners.set(listener.key, compiled);
    }
    return this.#next;
  }

  #compileClusters(): void {
    const defined = new Map(this.#delta.define.clusters);
    for (const [name, id] of Object.entries(this.#delta.clusters)) {
      const cached = this.#cache.clusters.get(id);
      let entry: CachedCluster;
      if (cached !== undefined) {
        entry = this.#reuse(cached);
      } else {
        const spec = defined.get(id);
        if (spec === undefined) throw new Error(`cluster ${JSON.stringify(name)}: unknown id ${id}`);
        entry = this.#upstreamCluster(name, spec);
      }
      if (entry.error !== undefined) this.#config.clusterErrors[name] = entry.error;
      this.#next.clusters.set(id, entry);
      this.#clusters.set(name, entry.cluster);
    }
  }

  /**
   * A cluster compiled for an earlier config is kept as it is (with its
   * round-robin position) when this config gets the same pools for its
   * endpoints, which it does while the current config still holds them.
   */
  #reuse(cached: CachedCluster): CachedCluster {
    const old = cached.cluster.endpoints;
    const endpoints = old.map((e) => this.#config.useOrigin(e.origin));
    if (endpoints.every((e, i) => e.pool === old[i].pool)) return cached;
    const c = cached.cluster;
    return { cluster: upstreamCluster(c.name, endpoints, c.behaviour, old.map((e) => e.state!), c.balancer, c.stats), error: cached.error };
  }

  #listener(listener: ListenerShape): CompiledListener | null {
    const errors = this.#config.listenerErrors;
    if (!Number.isInteger(listener.port) || listener.port < 1 || listener.port > 65535) {
      errors[listener.key] = `invalid port ${listener.port}`;
      return null;
    }
    let sni: SniTable | null = null;
    if (listener.protocol === 'HTTPS') {
      const result = SniTable.compile(listener.tls?.certificates ?? [], this.#deps.secureContexts, listener.tls?.clientValidation);
      if (result.table === null) {
        errors[listener.key] = result.errors.length === 0 ? 'no certificates' : result.errors.join('; ');
        return null;
      }
      if (result.errors.length !== 0) this.#config.certificateErrors[listener.key] = result.errors.join('; ');
      sni = result.table;
    } else if (listener.protocol !== 'HTTP') {
      errors[listener.key] = `unsupported protocol ${String(listener.protocol)}`;
      return null;
    }
    const settings = listener.client;
    const base = this.#config.limits;
    const limits = settings?.limits === undefined ? base : Object.freeze({ ...base, ...settings.limits });
    return {
      key: listener.key,
      address: listener.address,
      port: listener.port,
      protocol: listener.protocol,
      scheme: listener.protocol === 'HTTPS' ? 'https' : 'http',
      gatewayListeners: new HostTable(
        listener.gatewayListeners.map((gl) => ({
          pattern: normalizePattern(gl.hostname),
          value: {
            name: gl.name,
            virtualHosts: new HostTable(gl.virtualHosts.map((id) => {
              const vh = this.#virtualHost(id);
              return { pattern: vh.pattern, value: vh.compiled };
            })),
          },
        })),
      ),
      sni,
      config: this.#config,
      limits,
      client: settings === undefined ? null : compileClient(settings),
      socketSettings: settings === undefined ? '' : JSON.stringify([settings.proxyProtocol ?? null, settings.limits ?? null, settings.http2 ?? null]),
    };
  }

  #virtualHost(id: number): CachedVirtualHost {
    let entry = this.#next.virtualHosts.get(id) ?? this.#cache.virtualHosts.get(id);
    if (entry === undefined) {
      const vh = this.#definedHosts.get(id);
      if (vh === undefined) throw new Error(`virtual host: unknown id ${id}`);
      entry = this.#compileVirtualHost(typeof vh === 'string' ? JSON.parse(vh) as VirtualHost : vh);
    }
    Object.assign(this.#config.routeErrors, entry.routeErrors);
    this.#next.virtualHosts.set(id, entry);
    return entry;
  }

  #compileVirtualHost(vh: VirtualHost): CachedVirtualHost {
    const routeErrors: Record<string, string> = {};
    const routes: CompiledRoute[] = [];
    for (const entry of vh.routes) {
      const route = this.#route(entry, routeErrors);
      if (route !== null) routes.push(route);
    }
    return { compiled: { hostname: vh.hostname, routes: new RouteTable(routes) }, pattern: normalizePattern(vh.hostname), routeErrors };
  }

  #route(entry: RouteEntry, routeErrors: Record<string, string>): CompiledRoute | null {
    let match: CompiledMatch;
    try {
      match = this.#match(entry.match);
    } catch (err) {
      // A match that cannot be evaluated matches nothing.
      routeErrors[entry.name] = `match: ${(err as Error).message}`;
      return null;
    }
    for (const wb of entry.backends) {
      if (wb.cluster !== null && !this.#clusters.has(wb.cluster)) {
        // Served like an invalid reference (500 for its share), but said.
        routeErrors[entry.name] = `backend cluster ${JSON.stringify(wb.cluster)} is not defined`;
      }
    }
    this.#checkMirrors(entry.filters, entry.name, routeErrors);
    for (const wb of entry.backends) this.#checkMirrors(wb.filters, entry.name, routeErrors);
    let invalid: string | null = null;
    let filters = NO_FILTERS;
    let backends: WeightedBackends;
    let retry: CompiledRetry | null = null;
    try {
      if (entry.filters.length !== 0) filters = entry.filters.map((f) => compileFilter(f, this.#mirrors));
      backends = this.#backends(entry.backends);
    } catch (err) {
      // The route still claims its traffic, so a broken filter never lets a
      // request fall through to a route it was not meant for.
      invalid = `filter: ${(err as Error).message}`;
      routeErrors[entry.name] = invalid;
      backends = new WeightedBackends([]);
    }
    if (entry.retry !== undefined && invalid === null) {
      try {
        retry = compileRetry(entry.retry, entry.timeouts?.requestMs, entry.timeouts?.backendRequestMs);
      } catch (err) {
        invalid = `retry: ${(err as Error).message}`;
        routeErrors[entry.name] = invalid;
        backends = new WeightedBackends([]);
      }
    }
    return {
      name: entry.name,
      match,
      filters,
      backends,
      timeoutMs: tightest(entry.timeouts?.requestMs, entry.timeouts?.backendRequestMs),
      retry,
      invalid,
      session: entry.sessionPersistence === undefined ? null : new SessionAffinity(entry.sessionPersistence),
      series: [],
    };
  }

  /** Mirrors to clusters this config lacks: the request is served, only its copies are not made; said. */
  #checkMirrors(filters: readonly Filter[], route: string, routeErrors: Record<string, string>): void {
    for (const f of filters) {
      if (f.type === 'RequestMirror' && !this.#clusters.has(f.cluster)) {
        routeErrors[route] = `mirror cluster ${JSON.stringify(f.cluster)} is not defined`;
      }
    }
  }

  /** Throws (SyntaxError) for a regular expression that does not compile. */
  #match(match: RouteMatch): CompiledMatch {
    // Only path-only matches are shared: they are most of them, and their key is short.
    if (match.method !== undefined || match.headers.length !== 0 || match.queryParams.length !== 0) return compileMatch(match);
    const key = `${match.path.type}\u0000${match.path.value}`;
    let compiled = this.#sharedMatches.get(key);
    if (compiled === undefined) this.#sharedMatches.set(key, compiled = compileMatch(match));
    return compiled;
  }

  /** Throws for a backend filter that cannot be compiled. */
  #backends(refs: readonly WeightedBackend[]): WeightedBackends {
    if (refs.some((wb) => wb.filters.length !== 0)) return this.#weighted(refs);
    const key = refs.map((wb) => `${wb.weight}\u0000${wb.cluster ?? ''}\u0000${wb.cluster === null ? 0 : 1}`).join('\u0001');
    let backends = this.#sharedBackends.get(key);
    if (backends === undefined) this.#sharedBackends.set(key, backends = this.#weighted(refs));
    return backends;
  }

  #weighted(refs: readonly WeightedBackend[]): WeightedBackends {
    return new WeightedBackends(refs.map((wb) => ({
      weight: wb.weight,
      backend: {
        cluster: wb.cluster === null ? null : this.#clusters.get(wb.cluster) ?? null,
        filters: wb.filters.length === 0 ? NO_FILTERS : wb.filters.map((f) => compileFilter(f, this.#mirrors)),
      },
    })));
  }

  #upstreamCluster(name: string, spec: Cluster): CachedCluster {
    const endpoints: PooledOrigin[] = [];
    const valid: Cluster['endpoints'] = [];
    let error: string | undefined;
    for (const endpoint of spec.endpoints) {
      if (!endpoint.address || !Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535) {
        error = `invalid endpoint ${JSON.stringify(endpoint)}`;
        continue;
      }
      try {
        endpoints.push(this.#config.useOrigin(endpointOrigin(endpoint, spec), spec));
        valid.push(endpoint);
      } catch (err) {
        // Unusable TLS material: the cluster serves nothing rather than talk to the backend without it.
        error = `TLS settings cannot be used: ${(err as Error).message}`;
        endpoints.length = 0;
        valid.length = 0;
        break;
      }
    }
    const policy = spec.policy;
    const stats = this.#metrics.upstream(name);
    if (policy === undefined) return { cluster: upstreamCluster(name, endpoints, null, [], null, stats), error };
    const states = this.#deps.states ?? (this.#ownStates ??= new EndpointStates());
    const slowStart = (policy.slowStartWindowMs ?? 0) > 0;
    const now = Date.now();
    const endpointStates: EndpointState[] = valid.map((e) => states.get(name, e.address, e.port, slowStart, now));
    const balancer = balancerFor(policy.loadBalancer, policy.slowStartWindowMs ?? 0, valid.map((e) => `${e.address}:${e.port}`));
    return { cluster: upstreamCluster(name, endpoints, compileBehaviour(policy), endpointStates, balancer, stats), error };
  }

  /** For a compile without a data plane's states (tools, tests): states of this compile only. */
  #ownStates: EndpointStates | undefined;
}

function tightest(a: number | undefined, b: number | undefined): number {
  const x = a !== undefined && a > 0 ? a : 0;
  const y = b !== undefined && b > 0 ? b : 0;
  if (x === 0) return y;
  if (y === 0) return x;
  return Math.min(x, y);
}
