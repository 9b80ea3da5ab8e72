// ListenerSets (GEP-1713): listeners written outside a Gateway, in any
// namespace the Gateway's `allowedListeners` admits, that join the
// Gateway's own. This file decides which ListenerSets a Gateway takes in,
// in what order their listeners follow the Gateway's, and each
// ListenerSet's own status; the listeners themselves are resolved and
// checked for conflicts like the Gateway's (translate/gateway.ts), and
// routes reach them with a parentRef of kind ListenerSet
// (translate/attachment.ts).
//
// XListenerSet, the Gateway API v1.4 name (gateway.networking.x-k8s.io/
// v1alpha1), is translated the same way, under its own kind: routes name
// it as such, and its status goes back to it.
import type { Gateway, ListenerSet, Namespace } from '../api/types.ts';
import { EXPERIMENTAL_GROUP, GATEWAY_GROUP } from '../api/types.ts';
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import { matchesSelector } from './attachment.ts';
import { condition, type PlainCondition } from './conditions.ts';
import { listenerConditions, type ResolvedGateway, type ResolvedListener } from './gateway.ts';

/** The group each ListenerSet kind belongs to. */
export const LISTENER_SET_GROUPS: Readonly<Record<ListenerSet['kind'], string>> = {
  ListenerSet: GATEWAY_GROUP,
  XListenerSet: EXPERIMENTAL_GROUP,
};

export interface ResolvedListenerSet {
  object: ListenerSet;
  /** The Gateway its parentRef names, one of ours. */
  parent: Gateway;
  /** Why its listeners are not taken in at all (NotAllowed, ParentNotAccepted), or null. */
  problem: { reason: 'NotAllowed' | 'ParentNotAccepted'; message: string } | null;
  /** Its listeners, resolved, in spec order; empty while `problem` is set. */
  listeners: ResolvedListener[];
  /** Taken in, with at least one valid listener: it counts in the Gateway's attachedListenerSets. */
  accepted: boolean;
}

/** `namespace/name` of the Gateway a ListenerSet's parentRef names, or null when it names something else. */
export function parentGatewayKey(ls: ListenerSet): string | null {
  const ref = ls.spec.parentRef;
  if ((ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? 'Gateway') !== 'Gateway') return null;
  return `${ref.namespace ?? namespaceOf(ls)}/${ref.name}`;
}

/**
 * The ListenerSets naming each of `gatewayKeys`, in the order their
 * listeners follow the Gateway's: oldest first, then by
 * `namespace/name` (the CRD's precedence).
 */
export function listenerSetsByGateway(sets: readonly ListenerSet[], gatewayKeys: ReadonlySet<string>): Map<string, ListenerSet[]> {
  const out = new Map<string, ListenerSet[]>();
  for (const ls of sets) {
    const key = parentGatewayKey(ls);
    if (key === null || !gatewayKeys.has(key)) continue;
    const list = out.get(key);
    if (list) list.push(ls);
    else out.set(key, [ls]);
  }
  for (const list of out.values()) list.sort(byPrecedence);
  return out;
}

function byPrecedence(a: ListenerSet, b: ListenerSet): number {
  const ta = Date.parse(a.metadata.creationTimestamp ?? '') || 0;
  const tb = Date.parse(b.metadata.creationTimestamp ?? '') || 0;
  if (ta !== tb) return ta - tb;
  const na = `${namespaceOf(a)}/${a.metadata.name}`;
  const nb = `${namespaceOf(b)}/${b.metadata.name}`;
  // The two kinds of one name are two objects: ListenerSet first.
  return na < nb ? -1 : na > nb ? 1 : a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0;
}

/**
 * Whether the Gateway's `spec.allowedListeners` admits ListenerSets of
 * namespace `ns`, and if not, why (for the NotAllowed message). None is
 * the default: a Gateway takes in no ListenerSet unless it says so.
 */
export function admission(gw: Gateway, ns: string, namespaces: ReadonlyMap<string, Namespace>): string | null {
  const allowed = gw.spec.allowedListeners?.namespaces;
  const from = allowed?.from ?? 'None';
  switch (from) {
    case 'All': return null;
    case 'Same': return ns === namespaceOf(gw) ? null : `Gateway ${nameOf(gw)} allows ListenerSets from its own namespace only (allowedListeners.namespaces.from: Same)`;
    case 'Selector': {
      const sel = allowed?.selector;
      // A namespace the provider has no object for has only its implicit name label.
      const labels = { ...namespaces.get(ns)?.metadata.labels, 'kubernetes.io/metadata.name': ns };
      if (sel && matchesSelector(sel, labels)) return null;
      return `namespace ${ns} does not match the allowedListeners.namespaces.selector of Gateway ${nameOf(gw)}`;
    }
    default: return `Gateway ${nameOf(gw)} allows no ListenerSets (allowedListeners.namespaces.from: ${from}); set it to Same, Selector or All`;
  }
}

/**
 * The listeners a provisioned Gateway serves beyond its own: those of the
 * ListenerSets it admits (their Service needs the ports). Validity is left
 * to translate; a port is only a port.
 */
export function admittedListeners(gw: Gateway, sets: readonly ListenerSet[], namespaces: ReadonlyMap<string, Namespace>): ListenerSet['spec']['listeners'] {
  const key = nameOf(gw);
  return (listenerSetsByGateway(sets, new Set([key])).get(key) ?? [])
    .filter((ls) => admission(gw, namespaceOf(ls), namespaces) === null)
    .flatMap((ls) => ls.spec.listeners ?? []);
}

/** A listener that can serve once bound: accepted, not conflicted, with something to serve and some route kind to carry. */
export function isValidListener(l: ResolvedListener): boolean {
  return !l.acceptedProblem && !l.conflict && !l.programmedProblem && l.supportedKinds.length > 0;
}

/** Call once the listeners' conflicts and port claims are decided. */
export function judgeListenerSet(ls: ResolvedListenerSet): void {
  ls.accepted = ls.problem === null && ls.listeners.some(isValidListener);
}

/**
 * The status of a ListenerSet of one of our Gateways. `parentProgrammed`
 * says whether the Gateway itself is programmed (has its address, its
 * proxies): a ListenerSet cannot be programmed before its Gateway.
 */
export function listenerSetStatus(ls: ResolvedListenerSet, parent: ResolvedGateway | null, parentProgrammed: PlainCondition | undefined): unknown {
  const gen = ls.object.metadata.generation;
  const conditions: PlainCondition[] = [];
  if (ls.problem !== null) {
    const programmedReason = ls.problem.reason === 'NotAllowed' ? 'NotAllowed' : 'ParentNotProgrammed';
    conditions.push(condition('Accepted', false, ls.problem.reason, ls.problem.message, gen));
    conditions.push(condition('Programmed', false, programmedReason, ls.problem.message, gen));
  } else {
    const invalid = ls.listeners.filter((l) => !isValidListener(l) || l.refsProblem);
    const names = invalid.map((l) => l.spec.name).join(', ');
    if (!ls.accepted) {
      conditions.push(condition('Accepted', false, 'ListenersNotValid', `no valid listener: ${names}`, gen));
      conditions.push(condition('Programmed', false, 'ListenersNotValid', 'no valid listener', gen));
    } else {
      conditions.push(invalid.length
        ? condition('Accepted', true, 'ListenersNotValid', `listeners not valid: ${names}`, gen)
        : condition('Accepted', true, 'Accepted', 'ListenerSet is attached to its Gateway', gen));
      if (parentProgrammed?.status !== 'True') {
        conditions.push(condition('Programmed', false, 'ParentNotProgrammed', `Gateway ${nameOf(ls.parent)} is not programmed${parentProgrammed ? `: ${parentProgrammed.message}` : ''}`, gen));
      } else if (!ls.listeners.some((l) => l.serving)) {
        conditions.push(condition('Programmed', false, 'Invalid', 'no listener is serving', gen));
      } else {
        conditions.push(condition('Programmed', true, 'Programmed', parent ? `serving on ${parent.addressing.bind ?? 'the Gateway\'s addresses'}` : 'serving', gen));
      }
    }
  }
  const xkind = ls.object.kind === 'XListenerSet';
  return {
    conditions,
    listeners: ls.listeners.map((l) => ({
      name: l.spec.name,
      // The v1.4 XListenerSet status requires each listener's port.
      ...(xkind ? { port: l.spec.port } : {}),
      supportedKinds: l.supportedKinds,
      attachedRoutes: l.attachedRoutes,
      conditions: listenerConditions(l, gen),
    })),
  };
}
