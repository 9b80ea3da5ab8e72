// Gateway listeners: protocol and route-kind support, TLS certificate
// references, conflicts between listeners on the same port, and the
// Gateway's own Accepted/Programmed conditions. A ListenerSet's listeners
// are resolved here too (translate/listenerset.ts decides which join a
// Gateway): the same checks, with the ListenerSet as their owner.
import type { ConfigMap, Gateway, Listener, ListenerSet, ReferenceGrant, RouteGroupKind, Secret } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import type { ClientValidation, TLSCertificate } from '../ir/types.ts';
import { condition, type PlainCondition } from './conditions.ts';
import { describeCertificate, resolveCertificateRef, type GoodCertificate, type LastGoodCertificates } from './certificates.ts';
import type { GatewayAddressing } from './addresses.ts';
import { allowsInsecureFallback, validationForPort } from './frontend-tls.ts';
import type { ResolvedListenerSet } from './listenerset.ts';

/** Route kinds each listener protocol can carry. */
const KINDS_BY_PROTOCOL: Record<string, string[]> = {
  HTTP: ['HTTPRoute', 'GRPCRoute'],
  HTTPS: ['HTTPRoute', 'GRPCRoute'],
  TLS: ['TLSRoute'],
  TCP: ['TCPRoute'],
  UDP: ['UDPRoute'],
};

/** The object a listener is written in: its Gateway, or a ListenerSet attached to it. */
export type ListenerOwner = Gateway | ListenerSet;

/** The transport a protocol listens on: a TCP and a UDP listener may share a port number. */
function transportOf(protocol: string): 'udp' | 'tcp' {
  return protocol === 'UDP' ? 'udp' : 'tcp';
}

export interface ResolvedListener {
  gateway: Gateway;
  /**
   * Where the listener is written: allowedRoutes `Same` and certificate
   * references without a namespace are relative to its namespace, and
   * ReferenceGrants are asked for its kind.
   */
  owner: ListenerOwner;
  spec: Listener;
  /**
   * Unique per Gateway, the name the IR and the data plane know it by:
   * `namespace/gateway/listener`, or for a ListenerSet's
   * `namespace/gateway/Kind/namespace/listenerset/listener` (listener
   * names are unique within their owner only).
   */
  name: string;
  hostname: string | null;
  supportedKinds: RouteGroupKind[];
  /** Accepted and not conflicted: it gets a socket and carries routes. */
  serving: boolean;
  certificates: TLSCertificate[];
  /** HTTPS: client certificate validation of its port (Gateway tls.frontend), or null. */
  clientValidation: ClientValidation | null;
  attachedRoutes: number;
  // The facts from which the conditions are written at the end.
  acceptedProblem: { reason: string; message: string } | null;
  conflict: { reason: 'HostnameConflict' | 'ProtocolConflict'; message: string } | null;
  refsProblem: { reason: string; message: string } | null;
  programmedProblem: { reason: string; message: string } | null;
}

export interface ResolvedGateway {
  gateway: Gateway;
  key: string;
  addressing: GatewayAddressing;
  /** Why its infrastructure.parametersRef cannot be used, or null (also when it has none). */
  parametersProblem: string | null;
  /** Its own listeners (spec.listeners), in spec order: what its status reports. */
  listeners: ResolvedListener[];
  /** Its own listeners, then those of the ListenerSets it took in, in precedence order: what it serves. */
  allListeners: ResolvedListener[];
  /** The ListenerSets naming it, in precedence order, taken in or not. */
  listenerSets: ResolvedListenerSet[];
}

/**
 * The certificates of earlier translations: `previous` is read, and every
 * Secret that serves now, with good content or its last good, is written
 * to `current`, which the caller hands to the next translation.
 */
export interface CertificateHistory {
  previous: Readonly<LastGoodCertificates>;
  current: LastGoodCertificates;
}

/**
 * The listener checks that need nothing beyond the Gateway itself, its
 * Secrets, the ConfigMaps of its CA certificates and the grants.
 */
export function resolveListeners(
  gateway: Gateway, secrets: Map<string, Secret>, grants: ReferenceGrant[], history: CertificateHistory,
  configMaps: Map<string, ConfigMap> = new Map(),
): ResolvedListener[] {
  const out = gateway.spec.listeners.map((l) => resolveListener(gateway, gateway, l, secrets, grants, history, configMaps));
  markConflicts(out);
  return out;
}

export function resolveListener(
  gateway: Gateway, owner: ListenerOwner, l: Listener, secrets: Map<string, Secret>, grants: ReferenceGrant[], history: CertificateHistory,
  configMaps: Map<string, ConfigMap>,
): ResolvedListener {
  const name = owner === gateway ? `${nameOf(gateway)}/${l.name}` : `${nameOf(gateway)}/${owner.kind}/${namespaceOf(owner)}/${owner.metadata.name}/${l.name}`;
  const r: ResolvedListener = {
    gateway, owner, spec: l, name, hostname: l.hostname ? l.hostname.toLowerCase() : null,
    supportedKinds: [], serving: false, certificates: [], clientValidation: null, attachedRoutes: 0,
    acceptedProblem: null, conflict: null, refsProblem: null, programmedProblem: null,
  };
  const carried = KINDS_BY_PROTOCOL[l.protocol];
  if (!carried) {
    r.acceptedProblem = { reason: 'UnsupportedProtocol', message: `protocol ${l.protocol} is not supported; supported: ${Object.keys(KINDS_BY_PROTOCOL).join(', ')}` };
    // Kinds asked for are still judged: none can be carried.
    const kinds = l.allowedRoutes?.kinds ?? [];
    if (kinds.length) r.refsProblem = { reason: 'InvalidRouteKinds', message: `route kinds ${kinds.map((k) => `${k.group ?? GATEWAY_GROUP}/${k.kind}`).join(', ')} cannot be attached to a ${l.protocol} listener` };
    return r;
  }
  if (!(l.port >= 1)) {
    // An XListenerSet (v1.4) may leave the port for the implementation to choose: Gatehouse does not.
    r.acceptedProblem = { reason: 'UnsupportedPort', message: 'port is not set (or 0): Gatehouse does not assign listener ports; set port' };
    return r;
  }

  if (l.allowedRoutes?.kinds?.length) {
    const bad: string[] = [];
    for (const k of l.allowedRoutes.kinds) {
      const group = k.group ?? GATEWAY_GROUP;
      if (group === GATEWAY_GROUP && carried.includes(k.kind)) {
        if (!r.supportedKinds.some((s) => s.kind === k.kind)) r.supportedKinds.push({ group, kind: k.kind });
      } else bad.push(`${group || 'core'}/${k.kind}`);
    }
    if (bad.length) {
      r.refsProblem = { reason: 'InvalidRouteKinds', message: `route kinds ${bad.join(', ')} cannot be attached to a ${l.protocol} listener` };
    }
  } else {
    r.supportedKinds = carried.map((kind) => ({ group: GATEWAY_GROUP, kind }));
  }

  if (l.protocol === 'TLS' && (l.tls?.mode ?? 'Terminate') === 'Passthrough') return r;
  if (l.protocol === 'HTTPS' || l.protocol === 'TLS') {
    const mode = l.tls?.mode ?? 'Terminate';
    if (mode !== 'Terminate') {
      r.acceptedProblem = { reason: 'UnsupportedValue', message: `tls.mode ${mode} is not valid on an HTTPS listener; use a TLS listener for passthrough` };
      return r;
    }
    const refs = l.tls?.certificateRefs ?? [];
    if (refs.length === 0) {
      r.refsProblem = { reason: 'InvalidCertificateRef', message: `a terminating ${l.protocol} listener needs at least one tls.certificateRefs entry` };
    }
    const serve = (c: GoodCertificate) => r.certificates.push({ serverNames: [r.hostname ?? '*'], certChain: c.certChain, privateKey: c.privateKey });
    let unserved: string | null = null;
    for (const ref of refs) {
      const res = resolveCertificateRef(owner, ref, secrets, grants);
      if (res.ok) {
        serve(res.certificate);
        history.current[res.secret] = res.certificate;
        continue;
      }
      let problem = { reason: res.reason, message: res.message };
      const secret = res.badContentOf;
      const kept = secret !== undefined && Object.hasOwn(history.previous, secret) ? history.previous[secret] : undefined;
      if (kept) {
        serve(kept);
        history.current[secret!] = kept;
        problem = { reason: res.reason, message: `${res.message}; the last good certificate (${describeCertificate(kept)}) keeps serving` };
      } else if (secret !== undefined) {
        unserved ??= `no valid certificate has been seen for Secret ${secret}: ${res.message}`;
      } else {
        unserved ??= `no valid certificate to serve: ${res.message}`;
      }
      if (!r.refsProblem || r.refsProblem.reason === 'InvalidRouteKinds') r.refsProblem = problem;
    }
    if (r.certificates.length === 0) {
      r.programmedProblem = { reason: 'Invalid', message: unserved ?? 'no valid certificate to serve' };
    }
    if (l.protocol === 'TLS') return r;
    const frontend = validationForPort(gateway, l.port, { configMaps, secrets, grants });
    if (frontend !== null) {
      r.clientValidation = frontend.validation;
      if (frontend.problem && (!r.refsProblem || r.refsProblem.reason === 'InvalidRouteKinds')) r.refsProblem = frontend.problem;
      if (frontend.validation === null) {
        // Fail closed: serving without the validation asked for would let any client in.
        r.acceptedProblem = { reason: 'NoValidCACertificate', message: `no usable CA certificate for client certificate validation on port ${l.port}: ${frontend.problem?.message ?? 'none given'}` };
      }
    }
  }
  return r;
}

/**
 * Listeners on one port must agree on the protocol, and listeners with the
 * same protocol and port must differ in hostname. The first listener in
 * spec order keeps the port; the later ones are Conflicted.
 */
export function markConflicts(listeners: ResolvedListener[]): void {
  const kept: ResolvedListener[] = [];
  for (const l of listeners) {
    if (l.acceptedProblem?.reason === 'UnsupportedProtocol') {
      // A port another protocol already holds is the more specific reason (a ListenerSet's TCP listener on the Gateway's HTTP port).
      const holder = kept.find((k) => k.spec.port === l.spec.port);
      if (holder) l.conflict = { reason: 'ProtocolConflict', message: `port ${l.spec.port} is already used by ${describeListener(holder, l)} with protocol ${holder.spec.protocol}` };
      continue;
    }
    if (l.acceptedProblem) continue;
    const samePort = kept.filter((k) => k.spec.port === l.spec.port && transportOf(k.spec.protocol) === transportOf(l.spec.protocol));
    const otherProtocol = samePort.find((k) => k.spec.protocol !== l.spec.protocol);
    if (otherProtocol) {
      l.conflict = { reason: 'ProtocolConflict', message: `port ${l.spec.port} is already used by ${describeListener(otherProtocol, l)} with protocol ${otherProtocol.spec.protocol}` };
      continue;
    }
    const sameHost = samePort.find((k) => k.hostname === l.hostname);
    if (sameHost) {
      l.conflict = { reason: 'HostnameConflict', message: `${describeListener(sameHost, l)} already serves ${l.hostname ?? 'every hostname'} on port ${l.spec.port}` };
      continue;
    }
    kept.push(l);
  }
}

/**
 * How a conflict message names the listener that won, as seen from the
 * one that lost: by name within the same owner, else with its owner. A
 * ListenerSet learns no more of its Gateway or siblings than that name.
 */
function describeListener(winner: ResolvedListener, seenFrom: ResolvedListener): string {
  if (winner.owner === seenFrom.owner) return `listener ${winner.spec.name}`;
  return `listener ${winner.spec.name} of ${winner.owner.kind} ${nameOf(winner.owner)}`;
}

/** Call after addresses and cross-Gateway port claims are decided. */
export function finishListener(l: ResolvedListener, bound: boolean): void {
  l.serving = !l.acceptedProblem && !l.conflict && !l.programmedProblem && bound && l.supportedKinds.length > 0;
}

export function listenerConditions(l: ResolvedListener, gen: number | undefined): PlainCondition[] {
  const out: PlainCondition[] = [];
  if (l.conflict) {
    out.push(condition('Accepted', false, l.conflict.reason, l.conflict.message, gen));
  } else if (l.acceptedProblem) {
    out.push(condition('Accepted', false, l.acceptedProblem.reason, l.acceptedProblem.message, gen));
  } else {
    out.push(condition('Accepted', true, 'Accepted', 'Listener is valid', gen));
  }
  out.push(l.refsProblem
    ? condition('ResolvedRefs', false, l.refsProblem.reason, l.refsProblem.message, gen)
    : condition('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved', gen));
  if (l.serving) out.push(condition('Programmed', true, 'Programmed', 'Listener is serving', gen));
  else if (l.conflict) out.push(condition('Programmed', false, l.conflict.reason, l.conflict.message, gen));
  else if (l.acceptedProblem?.reason === 'PortUnavailable') out.push(condition('Programmed', false, 'PortUnavailable', l.acceptedProblem.message, gen));
  else {
    const why = l.acceptedProblem?.message ?? l.programmedProblem?.message ?? l.refsProblem?.message ?? 'the Gateway has no address';
    out.push(condition('Programmed', false, 'Invalid', why, gen));
  }
  out.push(l.conflict
    ? condition('Conflicted', true, l.conflict.reason, l.conflict.message, gen)
    : condition('Conflicted', false, 'NoConflicts', 'No conflicts', gen));
  return out;
}

export function gatewayConditions(g: ResolvedGateway): PlainCondition[] {
  const out = baseGatewayConditions(g);
  if (allowsInsecureFallback(g.gateway)) {
    out.push(condition('InsecureFrontendValidationMode', true, 'ConfigurationChanged',
      'tls.frontend allows clients without a valid certificate (mode AllowInsecureFallback): authorising them is left to the backends', g.gateway.metadata.generation));
  }
  return out;
}

function baseGatewayConditions(g: ResolvedGateway): PlainCondition[] {
  const gen = g.gateway.metadata.generation;
  const a = g.addressing;
  if (a.unsupported.length) {
    const msg = `address types not supported: ${a.unsupported.join(', ')}; Gatehouse supports IPAddress`;
    return [condition('Accepted', false, 'UnsupportedAddress', msg, gen), condition('Programmed', false, 'Invalid', msg, gen)];
  }
  const invalid = g.listeners.filter((l) => l.acceptedProblem || l.conflict || l.refsProblem || l.programmedProblem);
  const anyAccepted = g.listeners.some((l) => !l.acceptedProblem && !l.conflict);
  const out: PlainCondition[] = [];
  if (!anyAccepted) {
    out.push(condition('Accepted', false, 'ListenersNotValid', `no valid listener: ${invalid.map((l) => l.spec.name).join(', ')}`, gen));
    out.push(condition('Programmed', false, 'Invalid', 'no valid listener', gen));
    return out;
  }
  out.push(invalid.length
    ? condition('Accepted', true, 'ListenersNotValid', `listeners not valid: ${invalid.map((l) => l.spec.name).join(', ')}`, gen)
    : condition('Accepted', true, 'Accepted', 'Gateway is valid', gen));
  if (a.provisioned) {
    out.push(provisionedProgrammed(a, gen));
  } else if (a.unusable.length) {
    out.push(condition('Programmed', false, 'AddressNotUsable', `addresses ${a.unusable.join(', ')} cannot be used: not in the address pool; use an address inside it or leave spec.addresses empty`, gen));
  } else if (a.exhausted || !a.bind) {
    out.push(condition('Programmed', false, 'AddressNotAssigned', 'the address pool has no free address left; widen --address-pool or remove unused Gateways', gen));
  } else {
    out.push(condition('Programmed', true, 'Programmed', `serving on ${a.bind}`, gen));
  }
  return out;
}

/**
 * Kubernetes mode: Programmed once the load balancer gave the Gateway's
 * Service an address and at least one proxy is ready.
 */
function provisionedProgrammed(a: GatewayAddressing, gen: number | undefined): PlainCondition {
  const p = a.provisioned!;
  if (a.unusable.length) {
    return condition('Programmed', false, 'AddressNotUsable', `spec.addresses ${a.unusable.join(', ')} cannot be used: the load balancer is asked for IP addresses only (Service loadBalancerIP and metallb.io/loadBalancerIPs); give IPAddress values or leave spec.addresses empty`, gen);
  }
  if (p.addressProblems.length) return condition('Programmed', false, 'AddressNotUsable', p.addressProblems.join('; '), gen);
  const service = p.service ?? 'of this Gateway';
  if (a.reported.length === 0 && p.hostnames.length === 0) {
    return condition('Programmed', false, 'AddressNotAssigned', `waiting for the load balancer to assign an address to Service ${service} (status.loadBalancer.ingress is empty); check that a load balancer such as MetalLB serves this cluster and has a free address`, gen);
  }
  const proxies = `${p.readyProxies}/${p.desiredProxies} proxies ready`;
  if (p.readyProxies === 0) return condition('Programmed', false, 'Pending', proxies, gen);
  return condition('Programmed', true, 'Programmed', proxies, gen);
}
