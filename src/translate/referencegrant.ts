// ReferenceGrant: may an object of kind `from` in namespace `fromNamespace`
// refer to `to` in another namespace? Fail closed: no grant, no reference.
import type { ReferenceGrant } from '../api/types.ts';
import { namespaceOf } from '../api/snapshot.ts';

export interface Reference {
  from: { group: string; kind: string; namespace: string };
  to: { group: string; kind: string; namespace: string; name: string };
}

export function isReferenceAllowed(ref: Reference, grants: ReferenceGrant[]): boolean {
  if (ref.from.namespace === ref.to.namespace) return true;
  return grants.some((g) => namespaceOf(g) === ref.to.namespace
    && (g.spec.from || []).some((f) => normGroup(f.group) === normGroup(ref.from.group) && f.kind === ref.from.kind && f.namespace === ref.from.namespace)
    && (g.spec.to || []).some((t) => normGroup(t.group) === normGroup(ref.to.group) && t.kind === ref.to.kind && (!t.name || t.name === ref.to.name)));
}

/** The core API group is written both as "" and "core". */
export function normGroup(g: string | undefined): string {
  return !g || g === 'core' ? '' : g;
}
