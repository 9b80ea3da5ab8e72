// Compiles an IR into the immutable structure requests are served from:
// host tables, route indexes, compiled matches and filters, weighted
// backends bound to upstream pools, SNI contexts. Done once per apply();
// a request only reads it.

import type { Cluster, IR, IRListener, RouteEntry, VirtualHost } from '../ir/types.ts';
import { IR_VERSION } from '../ir/types.ts';
import { HostTable, normalizePattern } from './hostnames.ts';
import { compileFilter, type CompiledFilter } from './http/filters.ts';
import { compileMatch, type CompiledMatch } from './http/match.ts';
import { RouteTable } from './http/router.ts';
import { SniTable, type SecureContextCache } from './tls/sni.ts';
import { WeightedBackends, type CompiledBackend, type UpstreamCluster, type UpstreamEndpoint } from './upstream/balancer.ts';
import { endpointOrigin, type UpstreamPools } from './upstream/pools.ts';

export interface CompiledRoute {
  readonly name: string;
  readonly match: CompiledMatch;
  readonly filters: readonly CompiledFilter[];
  readonly backends: WeightedBackends;
  /** Deadline for the whole exchange in ms, the tighter of the route's timeouts; 0 for none. */
  readonly timeoutMs: number;
  /** Why the route cannot be served (bad filter); such a route answers 500. */
  readonly invalid: string | null;
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
}

export interface CompileDeps {
  readonly pools: UpstreamPools;
  readonly secureContexts: SecureContextCache;
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
  readonly #origins: string[] = [];
  readonly #pools: UpstreamPools;
  #refs = 1;

  constructor(pools: UpstreamPools) {
    this.#pools = pools;
  }

  /** Called only while compiling. */
  useOrigin(origin: string): UpstreamEndpoint {
    this.#origins.push(origin);
    return { origin, pool: this.#pools.acquire(origin) };
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

export function compileConfig(ir: IR, deps: CompileDeps): CompiledConfig {
  if (ir.version !== IR_VERSION) {
    throw new Error(`unsupported IR version ${String(ir.version)}, expected ${IR_VERSION}`);
  }
  const config = new CompiledConfig(deps.pools);
  try {
    new ConfigCompiler(ir, config, deps).run();
  } catch (err) {
    config.release();
    throw err;
  }
  return config;
}

class ConfigCompiler {
  readonly #ir: IR;
  readonly #config: CompiledConfig;
  readonly #deps: CompileDeps;
  readonly #clusters = new Map<string, UpstreamCluster | null>();

  constructor(ir: IR, config: CompiledConfig, deps: CompileDeps) {
    this.#ir = ir;
    this.#config = config;
    this.#deps = deps;
  }

  run(): void {
    this.#deps.secureContexts.beginGeneration();
    for (const listener of this.#ir.listeners) {
      if (this.#config.listeners.has(listener.key) || this.#config.listenerErrors[listener.key] !== undefined) {
        this.#config.listenerErrors[listener.key] = 'duplicate listener key';
        this.#config.listeners.delete(listener.key);
        continue;
      }
      const compiled = this.#listener(listener);
      if (compiled !== null) this.#config.listeners.set(listener.key, compiled);
    }
  }

  #listener(listener: IRListener): CompiledListener | null {
    const errors = this.#config.listenerErrors;
    if (!Number.isInteger(listener.port) || listener.port < 1 || listener.port > 65535) {
      errors[listener.key] = `invalid port ${listener.port}`;
      return null;
    }
    let sni: SniTable | null = null;
    if (listener.protocol === 'HTTPS') {
      const result = SniTable.compile(listener.tls?.certificates ?? [], this.#deps.secureContexts);
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
            virtualHosts: new HostTable(
              gl.virtualHosts.map((vh) => ({ pattern: normalizePattern(vh.hostname), value: this.#virtualHost(vh) })),
            ),
          },
        })),
      ),
      sni,
      config: this.#config,
    };
  }

  #virtualHost(vh: VirtualHost): CompiledVirtualHost {
    const routes: CompiledRoute[] = [];
    for (const entry of vh.routes) {
      const route = this.#route(entry);
      if (route !== null) routes.push(route);
    }
    return { hostname: vh.hostname, routes: new RouteTable(routes) };
  }

  #route(entry: RouteEntry): CompiledRoute | null {
    let match: CompiledMatch;
    try {
      match = compileMatch(entry.match);
    } catch (err) {
      // A match that cannot be evaluated matches nothing.
      this.#config.routeErrors[entry.name] = `match: ${(err as Error).message}`;
      return null;
    }
    let invalid: string | null = null;
    let filters: CompiledFilter[] = [];
    const backends: { weight: number; backend: CompiledBackend }[] = [];
    try {
      filters = entry.filters.map(compileFilter);
      for (const wb of entry.backends) {
        const cluster = this.#cluster(wb.cluster);
        if (wb.cluster !== null && cluster === null) {
          // Served like an invalid reference (500 for its share), but said.
          this.#config.routeErrors[entry.name] = `backend cluster ${JSON.stringify(wb.cluster)} is not defined`;
        }
        backends.push({ weight: wb.weight, backend: { cluster, filters: wb.filters.map(compileFilter) } });
      }
    } catch (err) {
      // The route still claims its traffic, so a broken filter never lets a
      // request fall through to a route it was not meant for.
      invalid = `filter: ${(err as Error).message}`;
      this.#config.routeErrors[entry.name] = invalid;
    }
    return {
      name: entry.name,
      match,
      filters,
      backends: new WeightedBackends(invalid === null ? backends : []),
      timeoutMs: tightest(entry.timeouts?.requestMs, entry.timeouts?.backendRequestMs),
      invalid,
    };
  }

  #cluster(name: string | null): UpstreamCluster | null {
    if (name === null) return null;
    let cluster = this.#clusters.get(name);
    if (cluster !== undefined) return cluster;
    const spec: Cluster | undefined = Object.hasOwn(this.#ir.clusters, name) ? this.#ir.clusters[name] : undefined;
    cluster = spec === undefined ? null : this.#upstreamCluster(name, spec);
    this.#clusters.set(name, cluster);
    return cluster;
  }

  #upstreamCluster(name: string, spec: Cluster): UpstreamCluster {
    const endpoints: UpstreamEndpoint[] = [];
    for (const endpoint of spec.endpoints) {
      if (!endpoint.address || !Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535) {
        this.#config.clusterErrors[name] = `invalid endpoint ${JSON.stringify(endpoint)}`;
        continue;
      }
      endpoints.push(this.#config.useOrigin(endpointOrigin(endpoint)));
    }
    return { name, endpoints, next: 0 };
  }
}

function tightest(a: number | undefined, b: number | undefined): number {
  const x = a !== undefined && a > 0 ? a : 0;
  const y = b !== undefined && b > 0 ? b : 0;
  if (x === 0) return y;
  if (y === 0) return x;
  return Math.min(x, y);
}
