// Route attachment: which listeners of which Gateway (or ListenerSet) a
// route's parentRef selects, and why not when none does. Shared by every
// route kind. A Gateway parentRef selects the Gateway's own listeners
// only; a ListenerSet's are reached through the ListenerSet.
import type { KubeObject, LabelSelector, Namespace, ParentReference } from '../api/types.ts';
import { EXPERIMENTAL_GROUP, GATEWAY_GROUP } from '../api/types.ts';
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import type { ResolvedGateway, ResolvedListener } from './gateway.ts';
import type { ResolvedListenerSet } from './listenerset.ts';
import { intersect } from './hostnames.ts';

export interface Attachment {
  listener: ResolvedListener;
  /** The hostnames the route serves on this listener. */
  hostnames: string[];
}

export type ParentResult =
  | { kind: 'notOurs' }
  | { kind: 'rejected'; reason: 'NoMatchingParent' | 'NotAllowedByListeners' | 'NoMatchingListenerHostname'; message: string }
  | { kind: 'attached'; attachments: Attachment[] };

/** `Kind|namespace/name` of a ListenerSet or XListenerSet, as `listenerSets` is keyed. */
export function listenerSetKey(kind: string, namespace: string, name: string): string {
  return `${kind}|${namespace}/${name}`;
}

export function attachToParent(
  route: KubeObject & { spec: { hostnames?: string[] } },
  ref: ParentReference,
  gateways: Map<string, ResolvedGateway>,
  namespaces: Map<string, Namespace>,
  listenerSets: ReadonlyMap<string, ResolvedListenerSet> = new Map(),
): ParentResult {
  const group = ref.group ?? GATEWAY_GROUP;
  const kind = ref.kind ?? 'Gateway';
  const ns = ref.namespace ?? namespaceOf(route);
  let listeners: ResolvedListener[];
  let parent: string;
  if (group === GATEWAY_GROUP && kind === 'Gateway') {
    const gw = gateways.get(`${ns}/${ref.name}`);
    if (!gw) return { kind: 'notOurs' };
    listeners = gw.listeners;
    parent = `Gateway ${ns}/${ref.name}`;
  } else if ((group === GATEWAY_GROUP && kind === 'ListenerSet') || (group === EXPERIMENTAL_GROUP && kind === 'XListenerSet')) {
    const ls = listenerSets.get(listenerSetKey(kind, ns, ref.name));
    if (!ls) return { kind: 'notOurs' };
    parent = `${kind} ${ns}/${ref.name}`;
    if (!ls.accepted) {
      const why = ls.problem?.message ?? 'none of its listeners is valid';
      return { kind: 'rejected', reason: 'NoMatchingParent', message: `${parent} is not accepted by Gateway ${nameOf(ls.parent)}: ${why}` };
    }
    listeners = ls.listeners;
  } else {
    return { kind: 'notOurs' };
  }

  const selected = listeners.filter((l) => (ref.sectionName === undefined || l.spec.name === ref.sectionName)
    && (ref.port === undefined || l.spec.port === ref.port));
  if (selected.length === 0) {
    const what = [ref.sectionName !== undefined ? `sectionName ${ref.sectionName}` : '', ref.port !== undefined ? `port ${ref.port}` : ''].filter(Boolean).join(' and ');
    return { kind: 'rejected', reason: 'NoMatchingParent', message: `${parent} has no listener with ${what || 'any name'}` };
  }

  const routeNs = namespaceOf(route);
  const allowed = selected.filter((l) => kindAllowed(l, route.kind) && namespaceAllowed(l, routeNs, namespaces));
  if (allowed.length === 0) {
    return { kind: 'rejected', reason: 'NotAllowedByListeners', message: `no listener of ${parent} allows ${route.kind}s from namespace ${routeNs}` };
  }

  const routeHostnames = (route.spec.hostnames ?? []).map((h) => h.toLowerCase());
  const attachments: Attachment[] = [];
  for (const l of allowed) {
    const hostnames = intersect(l.hostname, routeHostnames);
    if (hostnames.length) attachments.push({ listener: l, hostnames });
  }
  if (attachments.length === 0) {
    return { kind: 'rejected', reason: 'NoMatchingListenerHostname', message: `route hostnames ${routeHostnames.join(', ')} match no listener hostname of ${parent}` };
  }
  return { kind: 'attached', attachments };
}

function kindAllowed(l: ResolvedListener, kind: string): boolean {
  return l.supportedKinds.some((k) => k.kind === kind && (k.group ?? GATEWAY_GROUP) === GATEWAY_GROUP);
}

function namespaceAllowed(l: ResolvedListener, routeNs: string, namespaces: Map<string, Namespace>): boolean {
  const from = l.spec.allowedRoutes?.namespaces?.from ?? 'Same';
  switch (from) {
    case 'All': return true;
    // Relative to where the listener is written: a ListenerSet's namespace for its listeners.
    case 'Same': return routeNs === namespaceOf(l.owner);
    case 'None': return false;
    case 'Selector': {
      const sel = l.spec.allowedRoutes?.namespaces?.selector;
      if (!sel) return false;
      // A namespace the provider has no object for has only its implicit name label.
      const labels = namespaces.get(routeNs)?.metadata.labels ?? {};
      return matchesSelector(sel, { ...labels, 'kubernetes.io/metadata.name': routeNs });
    }
    default: return false;
  }
}

export function matchesSelector(sel: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In': if (!has || !values.includes(labels[e.key])) return false; break;
      case 'NotIn': if (has && values.includes(labels[e.key])) return false; break;
      case 'Exists': if (!has) return false; break;
      case 'DoesNotExist': if (has) return false; break;
      default: return false;
    }
  }
  return true;
}
