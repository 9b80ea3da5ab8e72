// What attaching a route to its parents comes to: its
// status and the listeners (with hostnames) it serves on. It depends on
// the route, its translation and the listeners it could attach to, so an
// outcome is kept per route and reused while all three are the same: with
// thousands of routes, one changed route no longer re-attaches every other
// one and gives each a new status object to compare (the status store
// keeps a stamped status while translate hands back the same object).
import type { KubeObject, Namespace, ParentReference } from '../api/types.ts';
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import { condition, type PlainCondition } from './conditions.ts';
import { attachToParent } from './attachment.ts';
import type { ResolvedGateway } from './gateway.ts';
import type { ResolvedListenerSet } from './listenerset.ts';

/** What a route's status says of its translation: TranslatedHTTPRoute has all of it, an L4 route only refProblem. */
export interface RouteFacts {
  refProblem: { reason: string; message: string } | null;
  droppedRules?: readonly { index: number; message: string }[];
  ruleCount?: number;
}

export interface RouteOutcome {
  /** The attachment world it was computed in (AttachmentWorlds.id). */
  world: number;
  /** The translation it was computed from. */
  translated: RouteFacts;
  status: { parents: unknown[] };
  /** Keys of the Gateways that accepted it, through a listener of their own or of a ListenerSet. */
  acceptedBy: string[];
  /** Each listener it attached to once (by ResolvedListener.name), with the hostnames it serves there. */
  attachments: { listener: string; hostnames: string[] }[];
}

type Route = KubeObject & { spec: { parentRefs?: ParentReference[]; hostnames?: string[] } };

export function routeOutcome(
  route: Route,
  t: RouteFacts,
  world: number,
  gateways: Map<string, ResolvedGateway>,
  namespaces: Map<string, Namespace>,
  listenerSets: ReadonlyMap<string, ResolvedListenerSet>,
  controllerName: string,
): RouteOutcome {
  const gen = route.metadata.generation;
  const parents: unknown[] = [];
  const acceptedBy = new Set<string>();
  const attachments: RouteOutcome['attachments'] = [];
  // A route may select the same listener through several parentRefs; it attaches once.
  const attachedTo = new Set<string>();
  const dropped = t.droppedRules ?? [];
  const allDropped = t.droppedRules !== undefined && dropped.length === t.ruleCount;
  for (const ref of route.spec.parentRefs ?? []) {
    const res = attachToParent(route, ref, gateways, namespaces, listenerSets);
    if (res.kind === 'notOurs') continue;
    const conditions: PlainCondition[] = [];
    if (res.kind === 'rejected') {
      conditions.push(condition('Accepted', false, res.reason, res.message, gen));
    } else if (allDropped) {
      conditions.push(condition('Accepted', false, 'UnsupportedValue', droppedMessage(dropped), gen));
    } else {
      conditions.push(condition('Accepted', true, 'Accepted', 'Route is accepted', gen));
      for (const att of res.attachments) {
        acceptedBy.add(nameOf(att.listener.gateway));
        if (attachedTo.has(att.listener.name)) continue;
        attachedTo.add(att.listener.name);
        attachments.push({ listener: att.listener.name, hostnames: att.hostnames });
      }
    }
    conditions.push(t.refProblem
      ? condition('ResolvedRefs', false, t.refProblem.reason, t.refProblem.message, gen)
      : condition('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved', gen));
    if (dropped.length && !allDropped) {
      conditions.push(condition('PartiallyInvalid', true, 'UnsupportedValue', droppedMessage(dropped), gen));
    }
    parents.push({ parentRef: ref, controllerName, conditions });
  }
  return { world, translated: t, status: { parents }, acceptedBy: [...acceptedBy], attachments };
}

function droppedMessage(dropped: readonly { index: number; message: string }[]): string {
  return `Dropped Rule(s): ${dropped.map((d) => `rule ${d.index}: ${d.message}`).join('; ')}`;
}

/**
 * Numbers the attachment worlds translate meets: everything attachToParent
 * and the route loop read of Gateways, their listeners, ListenerSets and
 * namespaces. Two translations whose fingerprints are equal get the same
 * number, so a kept RouteOutcome is valid while its number is current.
 */
export class AttachmentWorlds {
  #fingerprint = '';
  #id = 0;

  id(gateways: Map<string, ResolvedGateway>, listenerSets: ReadonlyMap<string, ResolvedListenerSet>, namespaces: Map<string, Namespace>): number {
    const fp = fingerprint(gateways, listenerSets, namespaces);
    if (fp !== this.#fingerprint) {
      this.#fingerprint = fp;
      this.#id++;
    }
    return this.#id;
  }
}

function fingerprint(gateways: Map<string, ResolvedGateway>, listenerSets: ReadonlyMap<string, ResolvedListenerSet>, namespaces: Map<string, Namespace>): string {
  const gws = [...gateways.values()].map((g) => [
    g.key,
    g.listeners.length,
    g.allListeners.map((l) => [l.name, nameOf(l.gateway), namespaceOf(l.owner), l.spec.name, l.spec.port, l.hostname, l.serving, l.supportedKinds, l.spec.allowedRoutes ?? null]),
  ]);
  const sets = [...listenerSets].map(([key, ls]) => [key, ls.accepted, ls.problem?.message ?? null, nameOf(ls.parent), ls.listeners.map((l) => l.name)]);
  const nss = [...namespaces.values()].map((n) => [n.metadata.name, n.metadata.labels ?? null]);
  return JSON.stringify([gws, sets, nss]);
}
