// Objects (already validated) -> Snapshot, each kind in its list, in a
// deterministic order so translate() output does not depend on file order.
import type { KubeObject } from './types.ts';
import { emptySnapshot, type Snapshot } from './snapshot.ts';

const LISTS: Record<string, keyof Omit<Snapshot, 'other'>> = {
  Namespace: 'namespaces',
  GatewayClass: 'gatewayClasses',
  Gateway: 'gateways',
  ListenerSet: 'listenerSets',
  XListenerSet: 'listenerSets',
  HTTPRoute: 'httpRoutes',
  GRPCRoute: 'grpcRoutes',
  ReferenceGrant: 'referenceGrants',
  Service: 'services',
  EndpointSlice: 'endpointSlices',
  Secret: 'secrets',
  ConfigMap: 'configMaps',
  ClientTrafficPolicy: 'clientTrafficPolicies',
  BackendTrafficPolicy: 'backendTrafficPolicies',
};

/** Gateway API kinds held and reported, not yet translated. */
const HELD = new Set(['TLSRoute', 'TCPRoute', 'UDPRoute', 'BackendTLSPolicy']);

export function buildSnapshot(objects: KubeObject[]): Snapshot {
  const snap = emptySnapshot();
  const sorted = [...objects].sort(compareObjects);
  for (const o of sorted) {
    const list = LISTS[o.kind];
    if (list) (snap[list] as KubeObject[]).push(o);
    else if (HELD.has(o.kind)) snap.other.push(o);
  }
  return snap;
}

function compareObjects(a: KubeObject, b: KubeObject): number {
  return cmp(a.kind, b.kind) || cmp(a.metadata.namespace ?? '', b.metadata.namespace ?? '') || cmp(a.metadata.name, b.metadata.name);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
