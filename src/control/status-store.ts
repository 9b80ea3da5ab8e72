// Holds the objects with the status translate() gave them, in the shape a
// Kubernetes controller would write: conditions keep their
// lastTransitionTime for as long as their status does not change.
import type { KubeObject } from '../api/types.ts';
import { statusKey } from '../translate/index.ts';

/** Kinds whose status Gatehouse owns and reports. */
export const REPORTED_KINDS = new Set([
  'GatewayClass', 'Gateway', 'ListenerSet', 'XListenerSet', 'HTTPRoute', 'GRPCRoute', 'TLSRoute', 'TCPRoute', 'UDPRoute',
  'ReferenceGrant', 'BackendTLSPolicy', 'ClientTrafficPolicy', 'BackendTrafficPolicy',
]);

export class StatusStore {
  /** What the last update was given; the items served are made from it when asked for. */
  private objects: KubeObject[] = [];
  private items: KubeObject[] | null = [];
  /**
   * By key, the status translate gave last time and the stamped one served:
   * a status handed back as the same object is unchanged. `pass` is the
   * last update that gave it.
   */
  private previous = new Map<string, { computed: unknown; stamped: unknown; pass: number }>();
  private pass = 0;
  /** The item last served for a loaded object, reused while its status is too. */
  private itemOf = new WeakMap<KubeObject, KubeObject>();

  /**
   * Takes a reload's statuses. Only those not handed back as the same
   * object as last time are looked at (translate keeps a route's status
   * object while its outcome holds, route-outcome.ts); the list served is
   * made when it is next asked for, not on every reload.
   */
  update(objects: KubeObject[], statuses: Map<string, unknown>, now = new Date()): void {
    const pass = ++this.pass;
    let stamp: string | undefined;
    let kept = 0;
    for (const [key, computed] of statuses) {
      const last = this.previous.get(key);
      if (last !== undefined && last.computed === computed) {
        last.pass = pass;
        kept++;
        continue;
      }
      // Most statuses are the same from one reload to the next: keep the
      // stamped one rather than building a copy of it per object per reload.
      const stamped = last !== undefined && sameApartFromTimes(computed, last.stamped) ? last.stamped
        : withTransitionTimes(computed, last?.stamped, stamp ??= now.toISOString().replace(/\.\d{3}Z$/, 'Z'));
      this.previous.set(key, { computed, stamped, pass });
      kept++;
    }
    if (kept !== this.previous.size) {
      for (const [key, entry] of this.previous) if (entry.pass !== pass) this.previous.delete(key);
    }
    this.objects = objects;
    this.items = null;
  }

  resources(): KubeObject[] {
    if (this.items !== null) return this.items;
    const items: KubeObject[] = [];
    for (const o of this.objects) {
      if (!REPORTED_KINDS.has(o.kind)) continue;
      const status = this.previous.get(statusKey(o))?.stamped;
      let item = this.itemOf.get(o);
      if (item === undefined || item.status !== status) {
        item = { apiVersion: o.apiVersion, kind: o.kind, metadata: o.metadata, spec: o.spec };
        if (status !== undefined) item.status = status;
        this.itemOf.set(o, item);
      }
      items.push(item);
    }
    this.items = items;
    return items;
  }
}

/**
 * Copies `next`, giving every condition the lastTransitionTime of the same
 * condition in `prev` when its status is unchanged, and `stamp` otherwise.
 * Arrays of listeners and parents are matched by name / parentRef.
 */
function withTransitionTimes(next: unknown, prev: unknown, stamp: string): unknown {
  if (Array.isArray(next)) {
    const prevList = Array.isArray(prev) ? prev : [];
    return next.map((item, i) => withTransitionTimes(item, matchIn(prevList, item, i), stamp));
  }
  if (next === null || typeof next !== 'object') return next;
  const out: Record<string, unknown> = {};
  const p = (prev && typeof prev === 'object' ? prev : {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(next)) {
    if (k === 'conditions' && Array.isArray(v)) {
      const old = Array.isArray(p.conditions) ? p.conditions as { type: string; status: string; lastTransitionTime: string }[] : [];
      out.conditions = v.map((c: { type: string; status: string }) => {
        const same = old.find((o) => o.type === c.type && o.status === c.status);
        return { ...c, lastTransitionTime: same?.lastTransitionTime ?? stamp };
      });
    } else {
      out[k] = withTransitionTimes(v, p[k], stamp);
    }
  }
  return out;
}

/** Whether `stamped` is `computed` with lastTransitionTime added to its conditions, and nothing else. */
export function sameApartFromTimes(computed: unknown, stamped: unknown): boolean {
  if (computed === stamped) return true;
  if (computed === null || stamped === null || typeof computed !== 'object' || typeof stamped !== 'object') return false;
  if (Array.isArray(computed) !== Array.isArray(stamped)) return false;
  if (Array.isArray(computed)) {
    const other = stamped as unknown[];
    return computed.length === other.length && computed.every((v, i) => sameApartFromTimes(v, other[i]));
  }
  const a = computed as Record<string, unknown>;
  const b = stamped as Record<string, unknown>;
  for (const k in a) {
    if (!Object.hasOwn(a, k)) continue;
    if (!Object.hasOwn(b, k) || !sameApartFromTimes(a[k], b[k])) return false;
  }
  for (const k in b) {
    if (Object.hasOwn(b, k) && !Object.hasOwn(a, k) && !(k === 'lastTransitionTime' && 'type' in b && 'status' in b)) return false;
  }
  return true;
}

function matchIn(prevList: unknown[], item: unknown, index: number): unknown {
  if (item && typeof item === 'object') {
    const o = item as Record<string, unknown>;
    if (typeof o.name === 'string') return prevList.find((p) => (p as Record<string, unknown>)?.name === o.name);
    if (o.parentRef) {
      const ref = JSON.stringify(o.parentRef);
      return prevList.find((p) => JSON.stringify((p as Record<string, unknown>)?.parentRef) === ref);
    }
  }
  return prevList[index];
}
