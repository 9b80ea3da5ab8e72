// What the status writer writes, decided without I/O: translate()'s status
// for an object merged into the status the API server holds.
//
// - A GatewayClass, Gateway or ListenerSet of ours has one status owner,
//   us: translate's status replaces the whole of it.
// - A Route's `status.parents` (and a BackendTLSPolicy's
//   `status.ancestors`) is shared by every controller whose Gateway the
//   route names: only the entries carrying our controllerName are ours to
//   replace or remove; every other entry stays as it is, where it is.
// - Every condition keeps the lastTransitionTime it has while its status
//   (True/False/Unknown) does not change, so the time says when it last
//   really changed; a new or changed condition is stamped `now`.
// - Two statuses that differ only in lastTransitionTime are the same: no
//   write is needed.
import { GATEWAY_GROUP } from '../../api/types.ts';

/** Entries a Route's `status.parents` may hold (the CRD's maxItems). */
export const MAX_ROUTE_PARENTS = 32;
/** Entries a policy's `status.ancestors` may hold (the CRD's maxItems). */
export const MAX_POLICY_ANCESTORS = 16;

/** Kinds whose status lists one entry per parent, shared between controllers. */
export const ROUTE_KINDS: ReadonlySet<string> = new Set(['HTTPRoute', 'GRPCRoute', 'TLSRoute', 'TCPRoute', 'UDPRoute']);
/** Kinds whose status lists one entry per ancestor, shared between controllers. */
export const POLICY_KINDS: ReadonlySet<string> = new Set(['BackendTLSPolicy', 'ClientTrafficPolicy', 'BackendTrafficPolicy']);
/** Kinds whose whole status is ours once the object is ours. */
export const OWNED_KINDS: ReadonlySet<string> = new Set(['GatewayClass', 'Gateway', 'ListenerSet', 'XListenerSet']);

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A Kubernetes timestamp as the API server writes one: seconds, no fraction. */
export function kubeTime(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * Whether two statuses say the same, apart from the lastTransitionTime of
 * their conditions. A field holding `undefined` is the same as no field
 * (JSON drops it on the way to the API server). Arrays compare in order.
 */
export function sameStatus(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameStatus(a[i], b[i])) return false;
    return true;
  }
  if (!isObj(a) || !isObj(b)) return false;
  const condition = isCondition(a) || isCondition(b);
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (condition && k === 'lastTransitionTime') continue;
    if (a[k] === undefined && b[k] === undefined) continue;
    if (!sameStatus(a[k], b[k])) return false;
  }
  return true;
}

function isCondition(o: Obj): boolean {
  return typeof o.type === 'string' && typeof o.status === 'string';
}

/**
 * A parentRef (or ancestorRef) with its defaults filled in: two refs that
 * name the same parent are equal strings. `namespace` is the namespace of
 * the object holding the ref (a ref without one means that namespace).
 */
export function parentRefKey(ref: unknown, namespace?: string): string {
  const r = isObj(ref) ? ref : {};
  return JSON.stringify([
    r.group ?? GATEWAY_GROUP, r.kind ?? 'Gateway', r.namespace ?? namespace ?? null, r.name ?? null,
    r.sectionName ?? null, r.port ?? null,
  ]);
}

/**
 * `desired` with every condition given its lastTransitionTime: that of the
 * condition of the same type in `existing` when its status is the same,
 * `now` otherwise. Lists are matched item by item: listeners by name,
 * parents by parentRef, ancestors by ancestorRef, anything else by index.
 * `desired` is not modified.
 */
export function stampTransitionTimes(desired: unknown, existing: unknown, now: string, namespace?: string): unknown {
  if (Array.isArray(desired)) {
    const prev = Array.isArray(existing) ? existing : [];
    return desired.map((item, i) => stampTransitionTimes(item, counterpart(prev, item, i, namespace), now, namespace));
  }
  if (!isObj(desired)) return desired;
  const prev = isObj(existing) ? existing : {};
  const out: Obj = {};
  for (const [k, v] of Object.entries(desired)) {
    if (k === 'conditions' && Array.isArray(v)) {
      const old = Array.isArray(prev.conditions) ? prev.conditions.filter(isObj) : [];
      out.conditions = v.map((c) => {
        if (!isObj(c)) return c;
        const same = old.find((o) => o.type === c.type && o.status === c.status);
        const time = typeof same?.lastTransitionTime === 'string' ? same.lastTransitionTime
          : typeof c.lastTransitionTime === 'string' ? c.lastTransitionTime : now;
        return { ...c, lastTransitionTime: time };
      });
    } else {
      out[k] = stampTransitionTimes(v, prev[k], now, namespace);
    }
  }
  return out;
}

function counterpart(prev: unknown[], item: unknown, index: number, namespace: string | undefined): unknown {
  if (!isObj(item)) return prev[index];
  if (typeof item.name === 'string') return prev.find((p) => isObj(p) && p.name === item.name);
  for (const refField of ['parentRef', 'ancestorRef']) {
    if (!isObj(item[refField])) continue;
    const key = parentRefKey(item[refField], namespace);
    return prev.find((p) => isObj(p) && p.controllerName === item.controllerName && parentRefKey(p[refField], namespace) === key);
  }
  return prev[index];
}

/**
 * A Route's `status.parents` after our part changed: entries of other
 * controllers stay, in their places; each entry of ours is replaced by the
 * entry of `ours` for the same parentRef, or removed when `ours` has none;
 * entries of `ours` new to the list go at its end. The list is kept within
 * `max` by leaving out entries of ours, never another controller's.
 *
 * Keeping places (rather than putting ours last) matters when another
 * controller writes the same list: two writers that each move their own
 * entries to the end would undo each other's order forever.
 */
export function mergeRouteParents(
  existing: unknown, ours: readonly unknown[], controllerName: string, namespace?: string, max = MAX_ROUTE_PARENTS,
): unknown[] {
  return mergeShared(existing, ours, controllerName, 'parentRef', namespace, max);
}

/** A policy's `status.ancestors`, merged as mergeRouteParents() merges parents. */
export function mergePolicyAncestors(
  existing: unknown, ours: readonly unknown[], controllerName: string, namespace?: string, max = MAX_POLICY_ANCESTORS,
): unknown[] {
  return mergeShared(existing, ours, controllerName, 'ancestorRef', namespace, max);
}

function mergeShared(
  existing: unknown, ours: readonly unknown[], controllerName: string, refField: string, namespace: string | undefined, max: number,
): unknown[] {
  const list = Array.isArray(existing) ? existing : [];
  // Only entries naming us are ours to write, whatever translate handed over.
  const mine = ours.filter((e) => isObj(e) && e.controllerName === controllerName) as Obj[];
  const byRef = new Map<string, Obj>();
  for (const e of mine) {
    const key = parentRefKey(e[refField], namespace);
    if (!byRef.has(key)) byRef.set(key, e);
  }
  const others = list.filter((e) => !(isObj(e) && e.controllerName === controllerName)).length;
  let room = Math.max(0, max - others);
  const out: unknown[] = [];
  for (const e of list) {
    if (!(isObj(e) && e.controllerName === controllerName)) { out.push(e); continue; }
    const key = parentRefKey(e[refField], namespace);
    const replacement = byRef.get(key);
    // Taken once: a second entry of ours for the same parent is a duplicate and goes.
    if (replacement === undefined || room === 0) continue;
    byRef.delete(key);
    out.push(replacement);
    room--;
  }
  for (const e of byRef.values()) {
    if (room === 0) break;
    out.push(e);
    room--;
  }
  return out;
}

/**
 * The status to write for an object of `kind` whose status on the API
 * server is `current`, given translate's `desired` status for it. Times
 * are stamped; lists shared with other controllers are merged.
 * `namespace` is the object's own (for refs that leave theirs out).
 */
export function mergeStatus(kind: string, current: unknown, desired: unknown, controllerName: string, namespace: string | undefined, now: string): unknown {
  const cur = isObj(current) ? current : {};
  const want = isObj(desired) ? desired : {};
  if (ROUTE_KINDS.has(kind)) {
    const parents = Array.isArray(want.parents) ? want.parents : [];
    const stamped = stampTransitionTimes(parents, cur.parents, now, namespace) as unknown[];
    const merged = mergeRouteParents(cur.parents, stamped, controllerName, namespace);
    // A route none of whose parents is ours, and never was, is left as it is, status-less or not.
    return sameStatus(merged, cur.parents ?? []) ? current : { ...cur, parents: merged };
  }
  if (POLICY_KINDS.has(kind)) {
    const ancestors = Array.isArray(want.ancestors) ? want.ancestors : [];
    const stamped = stampTransitionTimes(ancestors, cur.ancestors, now, namespace) as unknown[];
    const merged = mergePolicyAncestors(cur.ancestors, stamped, controllerName, namespace);
    return sameStatus(merged, cur.ancestors ?? []) ? current : { ...cur, ancestors: merged };
  }
  return stampTransitionTimes(want, cur, now, namespace);
}
