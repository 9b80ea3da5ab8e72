// BackendTLSPolicy (GEP-1897): which Service ports are reached over TLS,
// with which SNI, trust anchors and names to verify. A policy targets a
// Service, or one port of it by name (sectionName); a policy for the port
// wins over one for the whole Service. Two policies on the same target:
// the oldest (creationTimestamp, then namespace/name) wins, the other is
// Accepted=False/Conflicted, as the GEP asks.
//
// A policy none of whose CA certificates can be used is not Accepted
// (NoValidCACertificate) and its targets are failed closed: their clusters
// get no endpoints, so requests are answered 503 rather than sent in
// cleartext or to an unverified backend. Some bad references among good
// ones: the good ones are used and ResolvedRefs says which were not.
//
// Status goes to `status.ancestors`, one entry per Gateway whose routes
// send traffic to a targeted Service (the Gateway is the ancestor that
// applies the policy).
import { X509Certificate } from 'node:crypto';
import type { ConfigMap, KubeObject, Service } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import type { UpstreamTLS } from '../ir/types.ts';
import { condition, type PlainCondition } from './conditions.ts';
import { normGroup } from './referencegrant.ts';

interface PolicySpec {
  targetRefs?: { group?: string; kind?: string; name: string; sectionName?: string }[];
  validation?: {
    caCertificateRefs?: { group?: string; kind?: string; name: string }[];
    wellKnownCACertificates?: string;
    hostname?: string;
    subjectAltNames?: { type: 'Hostname' | 'URI'; hostname?: string; uri?: string }[];
  };
}

/** What one policy resolved to. */
interface Resolved {
  policy: KubeObject;
  /** null: the policy cannot be used (no valid CA); its targets fail closed. */
  tls: UpstreamTLS | null;
  /** ResolvedRefs=False: why. */
  refProblem: { reason: 'InvalidCACertificateRef' | 'InvalidKind'; message: string } | null;
  /** Accepted=False: why. */
  acceptProblem: { reason: string; message: string } | null;
}

/** The TLS a Service port is reached with: settings, or `invalid` (fail closed). */
export type BackendTLS = { tls: UpstreamTLS; policy: string } | { invalid: string; policy: string };

export interface BackendTLSPolicies {
  /** The TLS of Service `ns/name` port named `portName` ('' for an unnamed port), or undefined: plain. */
  forPort(serviceKey: string, portName: string): BackendTLS | undefined;
  /** The status of every policy, given the Gateways each Service port's traffic goes through. */
  statuses(gatewaysOf: (serviceKey: string, portName: string | null) => Set<string>): Map<KubeObject, unknown>;
  /** The policies, for the memo: a change to any of them or to a ConfigMap re-makes the clusters. */
  readonly objects: readonly KubeObject[];
}

export function resolveBackendTLSPolicies(policies: KubeObject[], configMaps: ConfigMap[], controllerName: string): BackendTLSPolicies {
  const cms = new Map(configMaps.map((c) => [nameOf(c), c]));
  const resolved = new Map<KubeObject, Resolved>();
  for (const p of policies) resolved.set(p, resolvePolicy(p, cms));

  // Target `ns/service#section` -> the policies on it, oldest first.
  const byTarget = new Map<string, KubeObject[]>();
  for (const p of [...policies].sort(byAge)) {
    const seen = new Set<string>();
    for (const t of (p.spec as PolicySpec).targetRefs ?? []) {
      if (normGroup(t.group) !== '' || t.kind !== 'Service') continue;
      const key = `${namespaceOf(p)}/${t.name}#${t.sectionName ?? ''}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const list = byTarget.get(key);
      if (list === undefined) byTarget.set(key, [p]);
      else list.push(p);
    }
  }
  for (const [key, list] of byTarget) {
    for (const loser of list.slice(1)) {
      const r = resolved.get(loser)!;
      r.acceptProblem ??= { reason: 'Conflicted', message: `BackendTLSPolicy ${nameOf(list[0])} is older and targets the same Service${key.endsWith('#') ? '' : ' port'}` };
    }
  }

  const winner = (key: string): BackendTLS | undefined => {
    const list = byTarget.get(key);
    if (list === undefined) return undefined;
    const r = resolved.get(list[0])!;
    const policy = nameOf(r.policy);
    return r.tls === null ? { invalid: `BackendTLSPolicy ${policy}: ${r.acceptProblem?.message ?? 'not usable'}`, policy } : { tls: r.tls, policy };
  };

  return {
    objects: policies,
    forPort: (serviceKey, portName) => (portName !== '' ? winner(`${serviceKey}#${portName}`) : undefined) ?? winner(`${serviceKey}#`),
    statuses(gatewaysOf) {
      const out = new Map<KubeObject, unknown>();
      for (const [p, r] of resolved) {
        const gen = p.metadata.generation;
        const gateways = new Set<string>();
        for (const t of (p.spec as PolicySpec).targetRefs ?? []) {
          if (normGroup(t.group) !== '' || t.kind !== 'Service') continue;
          for (const g of gatewaysOf(`${namespaceOf(p)}/${t.name}`, t.sectionName ?? null)) gateways.add(g);
        }
        const conditions: PlainCondition[] = [
          r.acceptProblem
            ? condition('Accepted', false, r.acceptProblem.reason, r.acceptProblem.message, gen)
            : condition('Accepted', true, 'Accepted', 'Policy is accepted', gen),
          r.refProblem
            ? condition('ResolvedRefs', false, r.refProblem.reason, r.refProblem.message, gen)
            : condition('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved', gen),
        ];
        const ancestors = [...gateways].sort().map((g) => {
          const slash = g.indexOf('/');
          return {
            ancestorRef: { group: GATEWAY_GROUP, kind: 'Gateway', namespace: g.slice(0, slash), name: g.slice(slash + 1) },
            controllerName,
            conditions,
          };
        });
        out.set(p, { ancestors });
      }
      return out;
    },
  };
}

function resolvePolicy(p: KubeObject, cms: Map<string, ConfigMap>): Resolved {
  const v = (p.spec as PolicySpec).validation ?? {};
  const ns = namespaceOf(p);
  const r: Resolved = { policy: p, tls: null, refProblem: null, acceptProblem: null };
  const bad: string[] = [];
  let badKind = false;
  const pems: string[] = [];
  for (const ref of v.caCertificateRefs ?? []) {
    const where = `caCertificateRef ${ns}/${ref.name}`;
    if (normGroup(ref.group) !== '' || ref.kind !== 'ConfigMap') {
      badKind = true;
      bad.push(`${where}: kind ${normGroup(ref.group) || 'core'}/${ref.kind} is not supported; use a core ConfigMap`);
      continue;
    }
    const cm = cms.get(`${ns}/${ref.name}`);
    const pem = cm?.data?.['ca.crt'];
    if (cm === undefined) bad.push(`${where}: ConfigMap not found`);
    else if (pem === undefined) bad.push(`${where}: ConfigMap has no ca.crt`);
    else if (caCount(pem) === 0) bad.push(`${where}: ca.crt holds no PEM certificate that can be parsed`);
    else pems.push(pem);
  }
  if (bad.length) r.refProblem = { reason: badKind ? 'InvalidKind' : 'InvalidCACertificateRef', message: bad.join('; ') };
  const system = v.wellKnownCACertificates === 'System';
  if (v.wellKnownCACertificates !== undefined && !system) {
    r.acceptProblem = { reason: 'Invalid', message: `spec.validation.wellKnownCACertificates: ${JSON.stringify(v.wellKnownCACertificates)} is not supported; use System` };
    return r;
  }
  if (!system && pems.length === 0) {
    r.acceptProblem = { reason: 'NoValidCACertificate', message: bad.length ? `no usable CA certificate: ${bad.join('; ')}` : 'spec.validation names no CA certificate' };
    return r;
  }
  const tls: UpstreamTLS = {
    serverName: v.hostname ?? '',
    subjectAltNames: (v.subjectAltNames ?? []).map((s) => (s.type === 'URI' ? { type: 'URI', value: s.uri ?? '' } : { type: 'Hostname', value: s.hostname ?? '' })),
  };
  if (!system) tls.caCertificates = pems.join('\n');
  r.tls = tls;
  return r;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** Certificates in a PEM bundle that parse. */
function caCount(pem: string): number {
  let n = 0;
  for (const m of pem.matchAll(PEM_CERT)) {
    try { new X509Certificate(m[0]); n++; } catch { /* not a certificate */ }
  }
  return n;
}

function byAge(a: KubeObject, b: KubeObject): number {
  const ta = Date.parse(a.metadata.creationTimestamp ?? '') || 0;
  const tb = Date.parse(b.metadata.creationTimestamp ?? '') || 0;
  return ta - tb || (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0);
}

/** The Service port name of port `port` ('' when unnamed), or null when the Service has no such port. */
export function portNameOf(svc: Service, port: number): string | null {
  const p = (svc.spec.ports ?? []).find((x) => x.port === port);
  return p === undefined ? null : p.name ?? '';
}
