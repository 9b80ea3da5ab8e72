// backendRefs -> clusters. A reference that cannot be used (unknown kind,
// cross-namespace without a ReferenceGrant, missing Service or port) gets
// no cluster, so its share of traffic is answered with a 500, and the
// route's ResolvedRefs condition says why.
//
// Endpoints the endpoint policy refuses (the gateway itself, link-local,
// loopback where not allowed, anything not an IP address: see
// src/net/endpoint-policy.ts) are left out of their cluster; the others
// serve. The reference still resolves, so the route carries traffic, but
// its ResolvedRefs is False with reason EndpointNotPermitted, naming the
// endpoints and why. No reason in the spec fits: RefNotPermitted means a
// missing ReferenceGrant (and would send the reader looking for one),
// BackendNotFound a Service that does not exist. The CRD allows
// implementation-specific reasons; Envoy Gateway has its own for the same
// refusal on its Backend kind.
import net from 'node:net';
import type { BackendObjectReference, EndpointSlice, KubeObject, ReferenceGrant, Service } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { namespaceOf } from '../api/snapshot.ts';
import type { Cluster, Endpoint } from '../ir/types.ts';
import { checkEndpoint, checkHostname, hostPort, type EndpointPolicy, type EndpointRefusal } from '../net/endpoint-policy.ts';
import { isReferenceAllowed, normGroup } from './referencegrant.ts';
import type { BackendTLSPolicies } from './backendtlspolicy.ts';

/** The appProtocol of a Service port reached with cleartext HTTP/2 (prior knowledge). */
const H2C_APP_PROTOCOL = 'kubernetes.io/h2c';

export type BackendProblemReason = 'InvalidKind' | 'RefNotPermitted' | 'BackendNotFound' | 'UnsupportedProtocol' | 'EndpointNotPermitted';

export type BackendResult =
  /** `problem`: the cluster serves, but some of the Service's endpoints were refused. */
  | { ok: true; cluster: Cluster; problem?: { reason: 'EndpointNotPermitted'; message: string } }
  | { ok: false; reason: BackendProblemReason; message: string };

/** Refused endpoints listed by address in a message; the rest are counted. */
const REFUSALS_SHOWN = 3;

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
  /** Cluster name -> why endpoints were left out of it, for the clusters that lost any. */
  refusals: Map<string, string>;
  /** The endpoint policy the clusters were made under. */
  policy: EndpointPolicy;
  /** Which Service ports are reached over TLS (BackendTLSPolicy); null: none. */
  tlsPolicies: BackendTLSPolicies | null;
}

export function indexBackends(
  services: Service[], slices: EndpointSlice[], grants: ReferenceGrant[], policy: EndpointPolicy, tlsPolicies: BackendTLSPolicies | null = null,
): BackendIndex {
  const byService = new Map<string, EndpointSlice[]>();
  for (const s of slices) {
    const svc = s.metadata.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const key = `${namespaceOf(s)}/${svc}`;
    if (!byService.has(key)) byService.set(key, []);
    byService.get(key)!.push(s);
  }
  return { services: new Map(services.map((s) => [`${namespaceOf(s)}/${s.metadata.name}`, s])), slices: byService, grants, clusters: new Map(), refusals: new Map(), policy, tlsPolicies };
}

/**
 * The cluster of a backendRef, or why there is none. GRPCRoutes' backends
 * speak HTTP/2: a Service port not marked `kubernetes.io/h2c` gets a copy
 * of its cluster that does (`namespace/service:port~h2c`), as Envoy Gateway
 * speaks HTTP/2 to every GRPCRoute backend. Over TLS (BackendTLSPolicy) the
 * data plane's client speaks HTTP/1.1 only, so such a backend stays as it is.
 */
export function resolveBackend(route: KubeObject, ref: BackendObjectReference, index: BackendIndex): BackendResult {
  const res = resolvePlainBackend(route, ref, index);
  if (!res.ok || route.kind !== 'GRPCRoute' || res.cluster.protocol === 'h2c' || res.cluster.tls !== undefined) return res;
  const name = `${res.cluster.name}${H2C_COPY_SUFFIX}`;
  let copy = index.clusters.get(name);
  if (copy === undefined || copy.endpoints !== res.cluster.endpoints) index.clusters.set(name, copy = { ...res.cluster, name, protocol: 'h2c' });
  return { ...res, cluster: copy };
}

/** The suffix of an HTTP/1.1 cluster's HTTP/2 copy, for GRPCRoutes. */
export const H2C_COPY_SUFFIX = '~h2c';

function resolvePlainBackend(route: KubeObject, ref: BackendObjectReference, index: BackendIndex): BackendResult {
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
  const refused = index.refusals.get(name);
  if (refused !== undefined) return { ok: true, cluster, problem: { reason: 'EndpointNotPermitted', message: `${where}: ${refused}` } };
  return { ok: true, cluster };
}

interface Refused { endpoint: string; refusal: EndpointRefusal }

/** The cluster of a Service port that exists (checked by resolveBackend), without the endpoints the policy refuses. */
function makeCluster(name: string, svc: Service, serviceKey: string, port: number, index: BackendIndex): Cluster {
  const refused: Refused[] = [];
  let endpoints: Endpoint[];
  if (svc.spec.type === 'ExternalName') {
    // A name is judged here only when it is an IP literal or localhost; the data plane judges what it resolves to.
    const host = svc.spec.externalName!;
    const refusal = checkHostname(index.policy, host, port);
    if (refusal) refused.push({ endpoint: hostPort(host, port), refusal });
    endpoints = refusal ? [] : [{ address: host, port }];
  } else {
    const svcPort = (svc.spec.ports ?? []).find((p) => p.port === port)!;
    endpoints = endpointsOf(index.slices.get(serviceKey) ?? [], svcPort.name ?? '', index.policy, refused);
  }
  if (refused.length) index.refusals.set(name, refusalMessage(refused, endpoints.length));
  const svcPort = (svc.spec.ports ?? []).find((p) => p.port === port);
  const cluster: Cluster = { name, protocol: svcPort?.appProtocol === H2C_APP_PROTOCOL ? 'h2c' : 'http1', endpoints };
  const tls = index.tlsPolicies?.forPort(serviceKey, svcPort?.name ?? '');
  if (tls !== undefined) {
    // Over TLS the lean client speaks HTTP/1.1 (ALPN http/1.1), whatever the appProtocol.
    cluster.protocol = 'http1';
    // A policy that cannot be used fails closed: no endpoint, so a 503, never cleartext.
    if ('invalid' in tls) cluster.endpoints = [];
    else cluster.tls = tls.tls;
  }
  return cluster;
}

/**
 * Ready endpoints of a Service port, from its EndpointSlices; ports are
 * matched by name, as kube-proxy does. Endpoints the policy refuses are
 * added to `refused` instead.
 */
function endpointsOf(slices: EndpointSlice[], portName: string, policy: EndpointPolicy, refused: Refused[]): Endpoint[] {
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
        const refusal = sliceAddressProblem(s, address) ?? checkEndpoint(policy, address, port.port);
        if (refusal) refused.push({ endpoint: hostPort(address, port.port), refusal });
        else out.push({ address, port: port.port });
      }
    }
  }
  return out;
}

/**
 * An address that does not match its slice's addressType. FQDN slices are
 * deprecated in Kubernetes and never resolved by kube-proxy; a name here
 * could resolve to anything, so they are refused like any non-address.
 */
function sliceAddressProblem(s: EndpointSlice, address: string): EndpointRefusal | null {
  const at = `EndpointSlice ${namespaceOf(s)}/${s.metadata.name}`;
  if (s.addressType === 'FQDN') {
    return { kind: 'notAnAddress', why: `${at} has addressType FQDN, which is not supported (deprecated in Kubernetes); use IPv4 or IPv6` };
  }
  const family = s.addressType === 'IPv4' ? 4 : s.addressType === 'IPv6' ? 6 : 0;
  if (family !== 0 && net.isIP(address) !== family) {
    return { kind: 'notAnAddress', why: `${JSON.stringify(address)} in ${at} is not an ${s.addressType} address` };
  }
  return null;
}

function refusalMessage(refused: Refused[], serving: number): string {
  const shown = refused.slice(0, REFUSALS_SHOWN).map((r) => `${r.endpoint} (${r.refusal.why})`);
  if (refused.length > REFUSALS_SHOWN) shown.push(`${refused.length - REFUSALS_SHOWN} more`);
  const rest = serving === 0 ? 'no endpoint is left to serve' : `the other ${serving} endpoint(s) serve`;
  return `endpoint(s) not permitted, left out: ${shown.join('; ')}; ${rest}`;
}
