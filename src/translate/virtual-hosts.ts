// Each serving listener's virtual hosts, most specific hostname first, made
// from the route table's hostname lists (route-table.ts). Kept from one
// translation to the next: a host whose routes are the same translations
// is the same VirtualHost object (the delta encoder and the data plane
// then skip it), and a listener of which a few hostnames changed since the
// last translation gets those taken out and put back in their places,
// instead of every host looked up and the whole list sorted again (~10 ms
// per reload with 5,000 hosts on two listeners).
import type { RouteEntry, VirtualHost } from '../ir/types.ts';
import { sameElements } from '../ir/delta.ts';
import type { ClientCertificateVariant } from './backend-client-certificate.ts';
import type { BackendPolicyClusters } from './backend-policy-clusters.ts';
import { bySpecificity } from './hostnames.ts';
import { comparePrecedence, type RankedEntry } from './precedence.ts';
import type { HostRoutes, RouteTable } from './route-table.ts';

/** By listener name, with the client-certificate variant's key when there is one. */
export type VirtualHostMemo = Map<string, ListenerHosts>;

interface HostRecord {
  /** The routes the host was made from, as policies rewrote them. */
  routes: HostRoutes;
  vh: VirtualHost;
}

interface ListenerHosts {
  byHost: Map<string, HostRecord>;
  /** The hosts in order, as the last IR has them (never changed: a patch works on a copy). */
  sorted: VirtualHost[];
  /** The table's pass they were made in. */
  pass: number;
  /** Made without policy rewrites or a client-certificate variant, whose changes the table does not see. */
  patchable: boolean;
}

const NO_HOSTS: ReadonlyMap<string, HostRoutes> = new Map();

export class VirtualHostBuilder {
  readonly #memo: VirtualHostMemo | undefined;
  readonly #table: RouteTable;
  readonly #policyClusters: BackendPolicyClusters;
  readonly #seen = new Set<string>();
  // The listeners a route attaches to (HTTP and HTTPS, say) are given the
  // same route list for a host, and then share one VirtualHost.
  readonly #byRoutes = new Map<HostRoutes, VirtualHost[]>();

  constructor(memo: VirtualHostMemo | undefined, table: RouteTable, policyClusters: BackendPolicyClusters) {
    this.#memo = memo;
    this.#table = table;
    this.#policyClusters = policyClusters;
  }

  /** The virtual hosts of serving listener `listener` of Gateway `gateway`, most specific hostname first. */
  forListener(listener: string, gateway: string, variant: ClientCertificateVariant | null): VirtualHost[] {
    // A Gateway's client certificate gives its hosts entries of their own: never shared with another Gateway's.
    const key = variant === null ? listener : `${listener}\u0000${variant.key}`;
    this.#seen.add(key);
    const routesByHost = this.#table.hostsOf(listener) ?? NO_HOSTS;
    const before = this.#memo?.get(key);
    const patchable = variant === null && !this.#policyClusters.rewrites;
    const changed = before !== undefined && before.patchable && patchable ? this.#table.changedHosts(listener, before.pass) : null;
    // Past one in eight changed, sorting afresh is about as cheap as moving the list for each.
    if (changed !== null && changed.size <= before!.sorted.length / 8) return this.#patch(before!, routesByHost, changed);
    const byHost = new Map<string, HostRecord>();
    const sorted = [...routesByHost.keys()].sort(bySpecificity).map((hostname) => {
      const record = this.#host(hostname, this.#policyClusters.hostRoutes(routesByHost.get(hostname)!, gateway), variant, before?.byHost.get(hostname));
      byHost.set(hostname, record);
      return record.vh;
    });
    this.#memo?.set(key, { byHost, sorted, pass: this.#table.pass, patchable });
    return sorted;
  }

  /** Forgets the listeners this translation did not ask for. */
  finish(): void {
    if (this.#memo === undefined) return;
    for (const key of this.#memo.keys()) if (!this.#seen.has(key)) this.#memo.delete(key);
  }

  #patch(hosts: ListenerHosts, routesByHost: ReadonlyMap<string, HostRoutes>, changed: ReadonlySet<string>): VirtualHost[] {
    const sorted = [...hosts.sorted];
    for (const hostname of changed) {
      const at = placeOf(sorted, hostname);
      if (sorted[at]?.hostname === hostname) sorted.splice(at, 1);
      const routes = routesByHost.get(hostname);
      if (routes === undefined) {
        hosts.byHost.delete(hostname);
        continue;
      }
      const record = this.#host(hostname, routes, null, hosts.byHost.get(hostname));
      hosts.byHost.set(hostname, record);
      sorted.splice(at, 0, record.vh);
    }
    hosts.sorted = sorted;
    hosts.pass = this.#table.pass;
    return sorted;
  }

  #host(hostname: string, routes: HostRoutes, variant: ClientCertificateVariant | null, before: HostRecord | undefined): HostRecord {
    const kept = before !== undefined && sameElements(before.routes, routes) ? before : undefined;
    let vh = kept?.vh ?? (variant === null ? this.#byRoutes.get(routes)?.find((v) => v.hostname === hostname) : undefined);
    if (variant !== null) {
      vh ??= { hostname, routes: byPrecedence(routes).map((e) => variant.entry(e)) };
      // A kept host still needs its copies in this IR.
      for (const e of vh.routes) variant.entry(e);
    } else {
      vh ??= { hostname, routes: byPrecedence(routes) };
      const same = this.#byRoutes.get(routes);
      if (same === undefined) this.#byRoutes.set(routes, [vh]);
      else if (!same.includes(vh)) same.push(vh);
    }
    return kept ?? { routes, vh };
  }
}

/** Where `hostname` is, or would go, in `hosts` (most specific first; bySpecificity orders hostnames totally). */
function placeOf(hosts: readonly VirtualHost[], hostname: string): number {
  let lo = 0;
  let hi = hosts.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bySpecificity(hosts[mid].hostname, hostname) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The entries of `routes` in Gateway API precedence order. */
function byPrecedence(routes: HostRoutes): RouteEntry[] {
  const ranked: RankedEntry[] = [];
  for (const route of routes) route.entries.forEach((entry, position) => ranked.push({ entry, route, position }));
  return ranked.sort(comparePrecedence).map((r) => r.entry);
}
