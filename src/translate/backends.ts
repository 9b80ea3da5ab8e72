// backendRefs -> clusters. A reference that cannot be used (unknown kind,
// cross-namespace without a ReferenceGrant, missing Service or port) gets
// no cluster, so its share of traffic is answered with a 500, and the
// route's ResolvedRefs condition says why.
import type { BackendObjectReference, EndpointSlice, KubeObject, ReferenceGrant, Service } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { namespaceOf } from '../api/snapshot.ts';
import type { Cluster, Endpoint } from '../ir/types.ts';
import { isReferenceAllowed, normGroup } from './referencegrant.ts';

export type BackendProblemReason = 'InvalidKind' | 'RefNotPermitted' | 'BackendNotFound' | 'UnsupportedProtocol';

export type BackendResult =
  | { ok: true; cluster: Cluster }
  | { ok: false; reason: BackendProblemReason; message: string };

export interface BackendIndex {
  services: Map<string, Service>;
  /** Service `ns/name` -> its EndpointSlices. */
  slices: Map<string, EndpointSlice[]>;
  grants: ReferenceGrant[];
  /**
   * Clusters made so far, by name. A cluster depends only on the Service
   * and its EndpointSlices, so every backendRef to one Service port gets
   * the same object: with thousands of rules sending to one backend, one
   * cluster instead of one per rule.
   */
  clusters: Map<string, Cluster>;
}

export function indexBackends(services: Service[], slices: EndpointSlice[], grants: ReferenceGrant[]): BackendIndex {
  const byService = new Map<string, EndpointSlice[]>();
  for (const s of slices) {
    const svc = s.metadata.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const key = `${namespaceOf(s)}/${svc}`;
    if (!byService.has(key)) byService.set(key, []);
    byService.get(key)!.push(s);
  }
  return { services: new Map(services.map((s) => [`${namespaceOf(s)}/${s.metadata.name}`, s])), slices: byService, grants, clusters: new Map() };
}

export function resolveBackend(route: KubeObject, ref: BackendObjectReference, index: BackendIndex): BackendResult {
  const ns = ref.namespace ?? namespaceOf(route);
  const group = normGroup(ref.group);
  const kind = ref.kind ?? 'Service';
  const where = `backendRef ${ns}/${ref.name}`;
  if (group !== '' || kind !== 'Service') {
    return { ok: false, reason: 'InvalidKind', message: `${where}: kind ${group || 'core'}/${kind} is not supported; use a core Service` };
  }
  const allowed = isReferenceAllowed({
    from: { group: GATEWAY_GROUP, kind: route.kind, namespace: namespaceOf(route) },
    to: { group: '', kind: 'Service', namespace: ns, name: ref.name },
  }, index.grants);
  if (!allowed) {
    return { ok: false, reason: 'RefNotPermitted', message: `${where}: no ReferenceGrant in ${ns} allows ${route.kind}s in ${namespaceOf(route)} to refer to this Service` };
  }
  const serviceKey = `${ns}/${ref.name}`;
  const svc = index.services.get(serviceKey);
  if (!svc) return { ok: false, reason: 'BackendNotFound', message: `${where}: Service not found` };
  if (ref.port === undefined) return { ok: false, reason: 'BackendNotFound', message: `${where}: port is required for a Service` };

  if (svc.spec.type === 'ExternalName') {
    if (!svc.spec.externalName) return { ok: false, reason: 'BackendNotFound', message: `${where}: ExternalName Service has no externalName` };
  } else if (!(svc.spec.ports ?? []).some((p) => p.port === ref.port)) {
    return { ok: false, reason: 'BackendNotFound', message: `${where}: Service has no port ${ref.port}` };
  }
  const name = `${ns}/${ref.name}:${ref.port}`;
  let cluster = index.clusters.get(name);
  if (!cluster) index.clusters.set(name, cluster = makeCluster(name, svc, serviceKey, ref.port, index));
  return { ok: true, cluster };
}

/** The cluster of a Service port that exists (checked by resolveBackend). */
function makeCluster(name: string, svc: Service, serviceKey: string, port: number, index: BackendIndex): Cluster {
  if (svc.spec.type === 'ExternalName') {
    return { name, protocol: 'http1', endpoints: [{ address: svc.spec.externalName!, port }] };
  }
  const svcPort = (svc.spec.ports ?? []).find((p) => p.port === port)!;
  return { name, protocol: 'http1', endpoints: endpointsOf(index.slices.get(serviceKey) ?? [], svcPort.name ?? '') };
}

/** Ready endpoints of a Service port, from its EndpointSlices; ports are matched by name, as kube-proxy does. */
function endpointsOf(slices: EndpointSlice[], portName: string): Endpoint[] {
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  for (const s of slices) {
    const port = (s.ports ?? []).find((p) => (p.name ?? '') === portName);
    if (!port || port.port === undefined) continue;
    for (const e of s.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const address of e.addresses ?? []) {
        const key = `${address}:${port.port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({ address, port: port.port });
      }
    }
  }
  return out;
}
