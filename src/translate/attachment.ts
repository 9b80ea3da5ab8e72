// Route attachment: which listeners of which Gateway a route's parentRef
// selects, and why not when none does. Shared by every route kind.
import type { KubeObject, LabelSelector, Namespace, ParentReference } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { namespaceOf } from '../api/snapshot.ts';
import type { ResolvedGateway, ResolvedListener } from './gateway.ts';
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

export function attachToParent(
  route: KubeObject & { spec: { hostnames?: string[] } },
  ref: ParentReference,
  gateways: Map<string, ResolvedGateway>,
  namespaces: Map<string, Namespace>,
): ParentResult {
  if ((ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? 'Gateway') !== 'Gateway') return { kind: 'notOurs' };
  const gwNs = ref.namespace ?? namespaceOf(route);
  const gw = gateways.get(`${gwNs}/${ref.name}`);
  if (!gw) return { kind: 'notOurs' };

  const selected = gw.listeners.filter((l) => (ref.sectionName === undefined || l.spec.name === ref.sectionName)
    && (ref.port === undefined || l.spec.port === ref.port));
  if (selected.length === 0) {
    const what = [ref.sectionName !== undefined ? `sectionName ${ref.sectionName}` : '', ref.port !== undefined ? `port ${ref.port}` : ''].filter(Boolean).join(' and ');
    return { kind: 'rejected', reason: 'NoMatchingParent', message: `Gateway ${gwNs}/${ref.name} has no listener with ${what || 'any name'}` };
  }

  const routeNs = namespaceOf(route);
  const allowed = selected.filter((l) => kindAllowed(l, route.kind) && namespaceAllowed(l, routeNs, namespaces));
  if (allowed.length === 0) {
    return { kind: 'rejected', reason: 'NotAllowedByListeners', message: `no listener of Gateway ${gwNs}/${ref.name} allows ${route.kind}s from namespace ${routeNs}` };
  }

  const routeHostnames = (route.spec.hostnames ?? []).map((h) => h.toLowerCase());
  const attachments: Attachment[] = [];
  for (const l of allowed) {
    const hostnames = intersect(l.hostname, routeHostnames);
    if (hostnames.length) attachments.push({ listener: l, hostnames });
  }
  if (attachments.length === 0) {
    return { kind: 'rejected', reason: 'NoMatchingListenerHostname', message: `route hostnames ${routeHostnames.join(', ')} match no listener hostname of Gateway ${gwNs}/${ref.name}` };
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
    case 'Same': return routeNs === namespaceOf(l.gateway);
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
