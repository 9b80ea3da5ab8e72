// The compiled routes of one L4 socket: by SNI (TLS) or the one route (TCP,
// UDP), each with its weighted backends resolved to endpoints, and for TLS
// Terminate the secure context of the hostname. Compiled afresh on every
// apply (L4 sockets are few and their routes small).
import type { Cluster, Endpoint, L4Route } from '../../ir/types.ts';
import type { ListenerShape } from '../../ir/delta.ts';
import { HostTable, normalizePattern } from '../hostnames.ts';
import { SniTable, type SecureContextCache } from '../tls/sni.ts';
import { upstreamTLSOptions, type UpstreamTLSOptions } from '../upstream/tls.ts';

export interface L4Target {
  endpoint: Endpoint;
  /** Set when the backend is reached over TLS (BackendTLSPolicy). */
  tls: UpstreamTLSOptions | null;
}

export interface CompiledL4Route {
  name: string;
  mode: 'Passthrough' | 'Terminate' | null;
  /** What decides whether a connection opened on an earlier config may stay open: same route, same backends. */
  identity: string;
  /** A weighted pick, then an endpoint of that backend; null: refuse (invalid reference, no endpoint). */
  pick(): L4Target | null;
}

export interface CompiledL4Listener {
  key: string;
  address: string;
  port: number;
  protocol: 'TLS' | 'TCP' | 'UDP';
  routes: HostTable<CompiledL4Route>;
  /** The route of a TLS client without SNI, or of any TCP/UDP client. */
  any: CompiledL4Route | null;
  /** Every route, for reloads. */
  all: CompiledL4Route[];
  /** TLS with Terminate routes: the certificates by SNI. */
  sni: SniTable | null;
}

export function compileL4Listener(
  listener: ListenerShape, clusters: ReadonlyMap<string, Cluster>, secureContexts: SecureContextCache, errors: Record<string, string>,
): CompiledL4Listener {
  const protocol = listener.protocol as CompiledL4Listener['protocol'];
  const routes = listener.l4?.routes ?? [];
  const entries: { pattern: string | null; value: CompiledL4Route }[] = [];
  let any: CompiledL4Route | null = null;
  let sni: SniTable | null = null;
  if (routes.some((r) => r.mode === 'Terminate')) {
    const result = SniTable.compile(listener.tls?.certificates ?? [], secureContexts);
    sni = result.table;
    if (result.errors.length) errors[listener.key] = result.errors.join('; ');
  }
  for (const route of routes) {
    const compiled = compileRoute(route, clusters, errors);
    const pattern = route.hostname === '*' ? null : normalizePattern(route.hostname);
    if (pattern === null) any ??= compiled;
    entries.push({ pattern, value: compiled });
  }
  return { key: listener.key, address: listener.address, port: listener.port, protocol, routes: new HostTable(entries), any, sni, all: entries.map((e) => e.value) };
}

function compileRoute(route: L4Route, clusters: ReadonlyMap<string, Cluster>, errors: Record<string, string>): CompiledL4Route {
  const sets: { weight: number; targets: L4Target[] }[] = [];
  let total = 0;
  for (const b of route.backends) {
    const cluster = b.cluster === null ? undefined : clusters.get(b.cluster);
    let targets: L4Target[] = [];
    if (cluster !== undefined) {
      let tls: UpstreamTLSOptions | null = null;
      try {
        if (cluster.tls !== undefined) tls = { ...upstreamTLSOptions(cluster.tls), ALPNProtocols: undefined };
        targets = cluster.endpoints.map((endpoint) => ({ endpoint, tls }));
      } catch (err) {
        errors[route.name] = `cluster ${cluster.name}: ${(err as Error).message}`;
      }
    }
    sets.push({ weight: b.weight, targets });
    total += b.weight;
  }
  const identity = JSON.stringify([route.name, route.mode ?? null, route.backends.map((b) => [b.weight, b.cluster === null ? null : clusters.get(b.cluster) ?? null])]);
  return {
    name: route.name,
    mode: route.mode ?? null,
    identity,
    pick() {
      if (total <= 0) return null;
      let r = Math.random() * total;
      for (const s of sets) {
        r -= s.weight;
        if (r < 0) return s.targets.length === 0 ? null : s.targets[Math.floor(Math.random() * s.targets.length)];
      }
      return null;
    },
  };
}

/** The route for a TLS server name (null: no SNI), or the one route of a TCP/UDP socket. */
export function routeFor(listener: CompiledL4Listener, serverName: string | null): CompiledL4Route | null {
  if (serverName === null) return listener.any;
  let name = serverName.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  return listener.routes.match(name) ?? null;
}
