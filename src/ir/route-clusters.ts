// The clusters a route entry sends to: its weighted backends, and the
// mirrors among its filters and its backends' filters. Whoever needs the
// clusters a route uses (a Gateway's share of the IR, the delta encoder
// deciding what to send again) asks here, so a new way of naming a cluster
// is added once.
import type { Filter, RouteEntry } from './types.ts';

/** Adds the name of every cluster `route` uses to `into`. */
export function addRouteClusters(route: RouteEntry, into: Set<string>): void {
  for (const backend of route.backends) {
    if (backend.cluster !== null) into.add(backend.cluster);
    addMirrorClusters(backend.filters, into);
  }
  addMirrorClusters(route.filters, into);
}

/** Whether `route` uses any cluster in `clusters`. */
export function usesAnyCluster(route: RouteEntry, clusters: ReadonlySet<string>): boolean {
  for (const backend of route.backends) {
    if (backend.cluster !== null && clusters.has(backend.cluster)) return true;
    if (mirrorsAny(backend.filters, clusters)) return true;
  }
  return mirrorsAny(route.filters, clusters);
}

function addMirrorClusters(filters: readonly Filter[], into: Set<string>): void {
  for (const f of filters) if (f.type === 'RequestMirror') into.add(f.cluster);
}

function mirrorsAny(filters: readonly Filter[], clusters: ReadonlySet<string>): boolean {
  for (const f of filters) if (f.type === 'RequestMirror' && clusters.has(f.cluster)) return true;
  return false;
}
