// Where BackendTrafficPolicies take effect: each backend of a route entry
// is sent to a copy of its cluster (a Service port) that carries the
// policy in effect for it (effectiveBackendPolicy(): the rule's, else the
// route's, else the Service's, else the Gateway's). Clusters are per
// Service port and shared by every route, so a policy on one route must
// not change how another route's requests to the same Service are
// handled: the copy is named `namespace/service:port~namespace/policy` and
// is shared only by the backends the same policy reaches.
//
// A route attached to several Gateways can be reached by different
// Gateway-level policies, so the rewrite is per (route, Gateway). Both the
// rewritten routes and the copies are memoized by identity (what the IR
// delta encoder compares), so an unchanged route and policy give the data
// plane the very objects it compiled before, and endpoint state (passive
// health, slow start) carries on.

import type { BackendTrafficPolicy } from '../api/types.ts';
import { nameOf } from '../api/snapshot.ts';
import type { Cluster, ClusterPolicy, RouteEntry, WeightedBackend } from '../ir/types.ts';
import type { TranslatedHTTPRoute } from './httproute.ts';
import { effectiveBackendPolicy, type AttachedPolicies } from './policy-attachment.ts';

/** Kept across translations with the TranslateMemo. */
export interface BackendPolicyMemo {
  /** A route's rewrite, by the policies that reach its backends. */
  routes: WeakMap<TranslatedHTTPRoute, Map<string, TranslatedHTTPRoute>>;
  /** A base cluster's copy, by policy name and settings. */
  clusters: WeakMap<Cluster, Map<string, Cluster>>;
}

export function newBackendPolicyMemo(): BackendPolicyMemo {
  return { routes: new WeakMap(), clusters: new WeakMap() };
}

/** The separator of a copy's name: base cluster names (`ns/svc:port`) never hold it. */
export const POLICY_COPY_SEPARATOR = '~';

interface InEffect {
  policy: BackendTrafficPolicy;
  settings: ClusterPolicy;
  /** Name and settings: a changed policy is another copy. */
  key: string;
}

export class BackendPolicyClusters {
  readonly #attached: AttachedPolicies<BackendTrafficPolicy>;
  readonly #inEffect = new Map<BackendTrafficPolicy, InEffect>();
  /** The IR's clusters: base clusters are read from it and copies added to it. */
  readonly #clusters: Record<string, Cluster>;
  readonly #memo: BackendPolicyMemo;
  /** Rewritten host route lists by (list, Gateway), so that listeners of one Gateway share them as before. */
  readonly #lists = new Map<readonly TranslatedHTTPRoute[], Map<string, readonly TranslatedHTTPRoute[]>>();

  constructor(
    attached: AttachedPolicies<BackendTrafficPolicy>, settings: Map<BackendTrafficPolicy, ClusterPolicy>,
    clusters: Record<string, Cluster>, memo: BackendPolicyMemo,
  ) {
    this.#attached = attached;
    for (const [policy, s] of settings) this.#inEffect.set(policy, { policy, settings: s, key: `${nameOf(policy)}\u0000${JSON.stringify(s)}` });
    this.#clusters = clusters;
    this.#memo = memo;
  }

  /** Whether any policy is in effect: hostRoutes() may then give a list other than the one it is given. */
  get rewrites(): boolean {
    return this.#attached.winners.size !== 0;
  }

  /** The routes of one host of a listener of `gateway`, with policies in effect; the list itself when none reaches them. */
  hostRoutes(routes: readonly TranslatedHTTPRoute[], gateway: string): readonly TranslatedHTTPRoute[] {
    if (!this.rewrites) return routes;
    let byGateway = this.#lists.get(routes);
    if (byGateway === undefined) this.#lists.set(routes, byGateway = new Map());
    let out = byGateway.get(gateway);
    if (out === undefined) {
      const mapped = routes.map((t) => this.route(t, gateway));
      out = mapped.every((t, i) => t === routes[i]) ? routes : mapped;
      byGateway.set(gateway, out);
    }
    return out;
  }

  /** `t` with each backend sent to its policy's copy; `t` itself when no policy reaches it. */
  route(t: TranslatedHTTPRoute, gateway: string): TranslatedHTTPRoute {
    // Per entry, per backend: the policy in effect, or null.
    const found: (InEffect | null)[][] = [];
    let any = false;
    const keys: string[] = [];
    t.entries.forEach((e, i) => {
      const row = e.backends.map((b) => {
        if (b.cluster === null) return null;
        const colon = b.cluster.lastIndexOf(':');
        const policy = effectiveBackendPolicy(this.#attached, { gateway, route: t.routeName, routeKind: t.routeKind, rule: t.entryRules[i], service: b.cluster.slice(0, colon) });
        const inEffect = policy === null ? undefined : this.#inEffect.get(policy);
        keys.push(inEffect?.key ?? '');
        if (inEffect === undefined) return null;
        any = true;
        return inEffect;
      });
      found.push(row);
    });
    if (!any) return t;
    const key = keys.join('\u0001');
    let byKey = this.#memo.routes.get(t);
    if (byKey === undefined) this.#memo.routes.set(t, byKey = new Map());
    let out = byKey.get(key);
    if (out === undefined) {
      const entries = t.entries.map((e, i): RouteEntry => {
        const row = found[i];
        if (row.every((x) => x === null)) return e;
        const backends = e.backends.map((b, j): WeightedBackend => (row[j] === null ? b : { ...b, cluster: copyName(b.cluster!, row[j]!.policy) }));
        return { ...e, backends };
      });
      out = { ...t, entries };
      byKey.set(key, out);
    }
    // The copies are made from this translation's base clusters (endpoints change without the route changing).
    t.entries.forEach((e, i) => e.backends.forEach((b, j) => {
      const inEffect = found[i][j];
      if (inEffect !== null) this.#copy(b.cluster!, inEffect);
    }));
    return out;
  }

  #copy(base: string, inEffect: InEffect): void {
    const name = copyName(base, inEffect.policy);
    if (this.#clusters[name] !== undefined) return;
    const cluster = this.#clusters[base];
    if (cluster === undefined) return;
    let byKey = this.#memo.clusters.get(cluster);
    if (byKey === undefined) this.#memo.clusters.set(cluster, byKey = new Map());
    let copy = byKey.get(inEffect.key);
    if (copy === undefined) byKey.set(inEffect.key, copy = { ...cluster, name, policy: inEffect.settings });
    this.#clusters[name] = copy;
  }
}

function copyName(base: string, policy: BackendTrafficPolicy): string {
  return `${base}${POLICY_COPY_SEPARATOR}${nameOf(policy)}`;
}
