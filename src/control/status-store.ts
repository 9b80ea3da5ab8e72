// Holds the objects with the status translate() gave them, in the shape a
// Kubernetes controller would write: conditions keep their
// lastTransitionTime for as long as their status does not change.
import type { KubeObject } from '../api/types.ts';
import { statusKey } from '../translate/index.ts';

/** Kinds whose status Gatehouse owns and reports. */
export const REPORTED_KINDS = new Set([
  'GatewayClass', 'Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'TLSRoute', 'TCPRoute', 'UDPRoute',
  'ReferenceGrant', 'BackendTLSPolicy',
]);

export class StatusStore {
  private items: KubeObject[] = [];
  private previous = new Map<string, unknown>();

  update(objects: KubeObject[], statuses: Map<string, unknown>, now = new Date()): void {
    const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
    const next = new Map<string, unknown>();
    const items: KubeObject[] = [];
    for (const o of objects) {
      if (!REPORTED_KINDS.has(o.kind)) continue;
      const key = statusKey(o);
      const computed = statuses.get(key);
      const status = computed === undefined ? undefined : withTransitionTimes(computed, this.previous.get(key), stamp);
      if (status !== undefined) next.set(key, status);
      const item: KubeObject = { apiVersion: o.apiVersion, kind: o.kind, metadata: o.metadata, spec: o.spec };
      if (status !== undefined) item.status = status;
      items.push(item);
    }
    this.previous = next;
    this.items = items;
  }

  resources(): KubeObject[] {
    return this.items;
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
