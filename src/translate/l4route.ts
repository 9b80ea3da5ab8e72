// TLSRoute, TCPRoute and UDPRoute: attachment to TLS, TCP and UDP
// listeners, their backends, their status, and the routes of each L4
// socket in the IR. All three kinds are one weighted backend set per route
// (the backendRefs of every rule together, as Envoy Gateway does); a TLS
// socket picks the route by SNI, a TCP or UDP socket has one route: when
// several attach to one listener, all are Accepted and counted, and the
// oldest (creationTimestamp, then namespace/name) carries the traffic, as
// the conformance test TCPRouteMultipleRoutesAttachment asks.
import type { BackendObjectReference, KubeObject, Namespace, ParentReference } from '../api/types.ts';
import { nameOf } from '../api/snapshot.ts';
import type { Cluster, L4Route } from '../ir/types.ts';
import { routeOutcome } from './route-outcome.ts';
import { resolveBackend, type BackendIndex } from './backends.ts';
import type { ResolvedGateway, ResolvedListener } from './gateway.ts';
import type { ResolvedListenerSet } from './listenerset.ts';
import { bySpecificity } from './hostnames.ts';

export const L4_ROUTE_KINDS: ReadonlySet<string> = new Set(['TLSRoute', 'TCPRoute', 'UDPRoute']);

export interface L4RouteObject extends KubeObject {
  spec: {
    parentRefs?: ParentReference[];
    hostnames?: string[];
    rules?: { name?: string; backendRefs?: (BackendObjectReference & { weight?: number })[] }[];
  };
}

interface TranslatedL4Route {
  backends: L4Route['backends'];
  clusters: Cluster[];
  refProblem: { reason: string; message: string } | null;
}

/** What the L4 routes of a snapshot give: per serving listener its routes (IR), the clusters used, and every route's status. */
export interface L4Translation {
  routes: Map<ResolvedListener, L4Route[]>;
  clusters: Cluster[];
  /** Cluster name -> Gateways whose routes send to it (for BackendTLSPolicy ancestors). */
  clusterGateways: Map<string, Set<string>>;
  statuses: Map<KubeObject, unknown>;
}

export function translateL4Routes(
  objects: readonly KubeObject[], gateways: Map<string, ResolvedGateway>, namespaces: Map<string, Namespace>,
  index: BackendIndex, controllerName: string, listenerSets: ReadonlyMap<string, ResolvedListenerSet>,
  listenersByName: ReadonlyMap<string, ResolvedListener>,
): L4Translation {
  const out: L4Translation = { routes: new Map(), clusters: [], clusterGateways: new Map(), statuses: new Map() };
  const routes = (objects.filter((o) => L4_ROUTE_KINDS.has(o.kind)) as L4RouteObject[]).sort(byAge);
  /** Per listener, the hostnames taken (TCP/UDP: '*'): the oldest route keeps one. */
  const taken = new Map<ResolvedListener, Set<string>>();
  for (const route of routes) {
    const t = translateBackends(route, index);
    const outcome = routeOutcome(route, t, 0, gateways, namespaces, listenerSets, controllerName);
    let used = false;
    for (const att of outcome.attachments) {
      const l = listenersByName.get(att.listener)!;
      l.attachedRoutes++;
      if (!l.serving) continue;
      let hosts = taken.get(l);
      if (hosts === undefined) taken.set(l, hosts = new Set());
      let list = out.routes.get(l);
      if (list === undefined) out.routes.set(l, list = []);
      const hostnames = l.spec.protocol === 'TLS' ? att.hostnames : ['*'];
      for (const hostname of hostnames) {
        if (hosts.has(hostname)) continue;
        hosts.add(hostname);
        used = true;
        const entry: L4Route = { name: `${nameOf(route)}`, hostname, backends: t.backends };
        if (l.spec.protocol === 'TLS') entry.mode = (l.spec.tls?.mode ?? 'Terminate') === 'Passthrough' ? 'Passthrough' : 'Terminate';
        list.push(entry);
      }
      for (const c of t.clusters) {
        const set = out.clusterGateways.get(c.name);
        if (set === undefined) out.clusterGateways.set(c.name, new Set([nameOf(l.gateway)]));
        else set.add(nameOf(l.gateway));
      }
    }
    if (used) out.clusters.push(...t.clusters);
    out.statuses.set(route, outcome.status);
  }
  for (const list of out.routes.values()) list.sort((a, b) => bySpecificity(a.hostname, b.hostname));
  return out;
}

function translateBackends(route: L4RouteObject, index: BackendIndex): TranslatedL4Route {
  const out: TranslatedL4Route = { backends: [], clusters: [], refProblem: null };
  for (const rule of route.spec.rules ?? []) {
    for (const ref of rule.backendRefs ?? []) {
      const weight = ref.weight ?? 1;
      const res = resolveBackend(route, ref, index);
      if (res.ok) {
        if (weight > 0) out.backends.push({ weight, cluster: res.cluster.name });
        if (!out.clusters.includes(res.cluster)) out.clusters.push(res.cluster);
        if (res.problem && out.refProblem === null) out.refProblem = res.problem;
      } else {
        if (weight > 0) out.backends.push({ weight, cluster: null });
        if (out.refProblem === null || out.refProblem.reason === 'EndpointNotPermitted') out.refProblem = { reason: res.reason, message: res.message };
      }
    }
  }
  return out;
}

function byAge(a: KubeObject, b: KubeObject): number {
  const ta = Date.parse(a.metadata.creationTimestamp ?? '') || 0;
  const tb = Date.parse(b.metadata.creationTimestamp ?? '') || 0;
  return ta - tb || (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0);
}
