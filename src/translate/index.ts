// translate(): the one pure function from a Snapshot to the status of
// every object and the IR. All Gateway API semantics live below this file;
// it only orders the passes: classes, gateways and their listeners,
// addresses and port claims, routes and their attachment, then the IR.
import type { BackendTrafficPolicy, ClientTrafficPolicy, ConfigMap, Gateway, GRPCRoute, HTTPRoute, KubeObject, Namespace, ParentReference, Secret } from '../api/types.ts';
import { namespaceOf, nameOf, type Snapshot } from '../api/snapshot.ts';
import { sameElements } from '../ir/delta.ts';
import { IR_VERSION, type ClientSettings, type Cluster, type ClusterPolicy, type GatewayListenerIR, type IR, type IRListener } from '../ir/types.ts';
import { condition, type PlainCondition } from './conditions.ts';
import { gatewayClassStatus, NO_PARAMETERS, SUPPORTED_FEATURES, type ParametersJudge } from './gatewayclass.ts';
import { finishListener, gatewayConditions, listenerConditions, markConflicts, resolveListener, resolveListeners, type ResolvedGateway, type ResolvedListener } from './gateway.ts';
import { admission, judgeListenerSet, listenerSetsByGateway, listenerSetStatus, type ResolvedListenerSet } from './listenerset.ts';
import { assignAddresses, type AddressingInput } from './addresses.ts';
import type { LastGoodCertificates } from './certificates.ts';
import { listenerSetKey } from './attachment.ts';
import { AttachmentWorlds, routeOutcome, type RouteOutcome } from './route-outcome.ts';
import { RouteTable } from './route-table.ts';
import { VirtualHostBuilder, type VirtualHostMemo } from './virtual-hosts.ts';
import { indexBackends, type BackendIndex } from './backends.ts';
import { resolveBackendTLSPolicies, portNameOf, type BackendTLSPolicies } from './backendtlspolicy.ts';
import { ClientCertificateVariant, clientCertificateCondition, resolveBackendClientCertificate, type BackendClientCertificate } from './backend-client-certificate.ts';
import { compileEndpointPolicy, STANDALONE_ENDPOINT_DEFAULTS, type EndpointPolicy, type EndpointPolicyOptions, type OwnSocket } from '../net/endpoint-policy.ts';
import { newSharedParts, translateHTTPRoute, type TranslatedHTTPRoute } from './httproute.ts';
import { grpcAsHTTPRoute } from './grpcroute.ts';
import { bySpecificity } from './hostnames.ts';
import { translateL4Routes } from './l4route.ts';
import type { L4Route } from '../ir/types.ts';
import { attachPolicies, effectiveClientPolicy, markConflicted, type AttachedPolicies, type PolicyWorld } from './policy-attachment.ts';
import { clientSettings } from './client-policy.ts';
import { clusterSettings } from './backend-traffic-policy.ts';
import { BackendPolicyClusters, newBackendPolicyMemo, type BackendPolicyMemo } from './backend-policy-clusters.ts';

export interface TranslateInput {
  controllerName: string;
  addressing: AddressingInput;
  /**
   * Which backend endpoints may be used (src/net/endpoint-policy.ts): the
   * admin address, the host's addresses, whether loopback is allowed. The
   * gateway's own listeners are added here, from the Gateways translated.
   * Defaults to STANDALONE_ENDPOINT_DEFAULTS, without an admin address.
   */
  endpoints?: EndpointPolicyOptions;
  /**
   * Judges parametersRef on GatewayClasses and Gateways; defaults to
   * NO_PARAMETERS (standalone: every reference is refused).
   */
  parameters?: ParametersJudge;
  /** Features to advertise; defaults to everything Gatehouse supports. */
  features?: readonly string[];
  /**
   * The `lastGoodCertificates` of the previous call: a Secret whose content
   * went bad keeps serving what it held before (translate/certificates.ts).
   */
  lastGoodCertificates?: Readonly<LastGoodCertificates>;
  /** Reuse of earlier work between calls; the output is the same with or without it. */
  memo?: TranslateMemo;
}

/**
 * What translate() may reuse from one call to the next. A route's rules
 * translate the same while the route object and every object its backends
 * resolve against (Services, EndpointSlices, ReferenceGrants) are the same
 * instances; the file provider keeps unchanged objects as the same
 * instances, so a one-file change re-translates one route, not all.
 */
export interface TranslateMemo {
  routes: WeakMap<HTTPRoute | GRPCRoute, TranslatedHTTPRoute>;
  backendObjects: KubeObject[];
  /** The index of backendObjects, with the clusters made from it, which memoized routes share. */
  backendIndex: BackendIndex | null;
  /**
   * Each serving listener's virtual hosts, with the routes they were made
   * from: a host whose routes are the same translations in the same order
   * is the same VirtualHost (and the data plane sees the very object it
   * compiled before); see virtual-hosts.ts.
   */
  virtualHosts: VirtualHostMemo;
  /** Routes and clusters as BackendTrafficPolicies rewrote them (backend-policy-clusters.ts). */
  backendPolicies: BackendPolicyMemo;
  /** Each route's attachment outcome, reused while its world and translation are the same (route-outcome.ts). */
  outcomes: WeakMap<HTTPRoute | GRPCRoute, RouteOutcome>;
  worlds: AttachmentWorlds;
  /** What the HTTP and GRPC routes brought to the last translation, changed by what changed since (route-table.ts). */
  routeTable: RouteTable;
}

export function newTranslateMemo(): TranslateMemo {
  return {
    routes: new WeakMap(), backendObjects: [], backendIndex: null, virtualHosts: new Map(), backendPolicies: newBackendPolicyMemo(),
    outcomes: new WeakMap(), worlds: new AttachmentWorlds(), routeTable: new RouteTable(),
  };
}

export interface TranslateResult {
  ir: IR;
  /** `Kind|namespace|name` -> the status a controller writes for it. */
  statuses: Map<string, unknown>;
  /** Gateway key -> automatically assigned address, to keep them sticky. */
  assignedAddresses: Record<string, string>;
  /**
   * Secret `namespace/name` -> the certificate it serves (its content, or
   * its last good one while its content is bad): pass it to the next call.
   * It holds private keys: keep it in memory, never show it.
   */
  lastGoodCertificates: LastGoodCertificates;
  /**
   * The policies in effect per target; read them with
   * effectiveClientPolicy() / effectiveBackendPolicy() (policy-attachment.ts).
   */
  policies: TranslatedPolicies;
}

export interface TranslatedPolicies {
  client: AttachedPolicies<ClientTrafficPolicy>;
  backend: AttachedPolicies<BackendTrafficPolicy>;
}

/** Objects are not changed once read, so each one's key is made once: translate asks for every object's on every reload. */
const statusKeys = new WeakMap<KubeObject, string>();

export function statusKey(o: KubeObject): string {
  let key = statusKeys.get(o);
  if (key === undefined) {
    // join() makes one flat string; the key is kept per object by the status store.
    key = [o.kind, o.kind === 'GatewayClass' ? '' : namespaceOf(o), o.metadata.name].join('|');
    statusKeys.set(o, key);
  }
  return key;
}

export function translate(snap: Snapshot, input: TranslateInput): TranslateResult {
  const statuses = new Map<string, unknown>();

  // 1. GatewayClasses naming our controller.
  const acceptedClasses = new Set<string>();
  const ourClasses = new Set<string>();
  for (const gc of snap.gatewayClasses) {
    if (gc.spec.controllerName !== input.controllerName) continue;
    ourClasses.add(gc.metadata.name);
    const { accepted, status } = gatewayClassStatus(gc, input.features ?? SUPPORTED_FEATURES, input.parameters);
    if (accepted) acceptedClasses.add(gc.metadata.name);
    statuses.set(statusKey(gc), status);
  }

  // 2. Gateways of accepted classes, oldest first: an older Gateway keeps a contested port.
  const ourGateways = snap.gateways.filter((g) => ourClasses.has(g.spec.gatewayClassName)).sort(byAge);
  const addressing = assignAddresses(ourGateways.map((g) => ({ key: nameOf(g), addresses: g.spec.addresses ?? [] })), input.addressing);
  const secrets = new Map<string, Secret>(snap.secrets.map((s) => [nameOf(s), s]));
  const configMaps = new Map<string, ConfigMap>(snap.configMaps.map((c) => [nameOf(c), c]));
  const gateways = new Map<string, ResolvedGateway>();
  /** Gateway key -> its spec.tls.backend client certificate (null: none named). */
  const clientCerts = new Map<string, BackendClientCertificate | null>();
  const portClaims = new Map<number, { address: string; gateway: string }[]>();
  const assignedAddresses: Record<string, string> = {};
  const certificates = { previous: input.lastGoodCertificates ?? {}, current: {} as LastGoodCertificates };
  const namespaces = new Map<string, Namespace>(snap.namespaces.map((n) => [n.metadata.name, n]));
  // ListenerSets naming our Gateways, in the order their listeners follow each Gateway's.
  const setsByGateway = listenerSetsByGateway(snap.listenerSets, new Set(ourGateways.map(nameOf)));
  const listenerSets = new Map<string, ResolvedListenerSet>();
  for (const gw of ourGateways) {
    const key = nameOf(gw);
    const sets: ResolvedListenerSet[] = (setsByGateway.get(key) ?? []).map((object) => {
      const rls: ResolvedListenerSet = { object, parent: gw, problem: null, listeners: [], accepted: false };
      listenerSets.set(listenerSetKey(object.kind, namespaceOf(object), object.metadata.name), rls);
      return rls;
    });
    if (!acceptedClasses.has(gw.spec.gatewayClassName)) {
      statuses.set(statusKey(gw), pendingGatewayStatus(gw));
      for (const ls of sets) {
        ls.problem = { reason: 'ParentNotAccepted', message: `Gateway ${key} is not accepted: its GatewayClass ${gw.spec.gatewayClassName} is not accepted` };
        statuses.set(statusKey(ls.object), listenerSetStatus(ls, null, undefined));
      }
      continue;
    }
    const a = addressing.get(key)!;
    if (a.bind && !(gw.spec.addresses ?? []).some((x) => x.value === a.bind)) assignedAddresses[key] = a.bind;
    const listeners = resolveListeners(gw, secrets, snap.referenceGrants, certificates, configMaps);
    const parametersProblem = (input.parameters ?? NO_PARAMETERS).gateway(gw);
    const all = [...listeners];
    for (const ls of sets) {
      const refused = admission(gw, namespaceOf(ls.object), namespaces);
      if (refused !== null) ls.problem = { reason: 'NotAllowed', message: refused };
      else if (parametersProblem !== null || a.unsupported.length) {
        ls.problem = { reason: 'ParentNotAccepted', message: `Gateway ${key} is not accepted: ${parametersProblem ?? `address types not supported: ${a.unsupported.join(', ')}`}` };
      } else {
        ls.listeners = ls.object.spec.listeners.map((l) => resolveListener(gw, ls.object, l, secrets, snap.referenceGrants, certificates, configMaps));
        all.push(...ls.listeners);
      }
    }
    // The Gateway's own listeners first, then each ListenerSet's: the earlier keeps a contested port or hostname.
    if (all.length > listeners.length) markConflicts(all);
    const resolved: ResolvedGateway = { gateway: gw, key, addressing: a, listeners, allListeners: all, parametersProblem, listenerSets: sets };
    gateways.set(key, resolved);
    clientCerts.set(key, resolveBackendClientCertificate(gw, secrets, snap.referenceGrants));
    if (parametersProblem !== null) {
      // Parameters that cannot be used are refused rather than ignored: the Gateway is not served.
      for (const l of listeners) finishListener(l, false);
      continue;
    }
    const bindable = a.bind !== null && a.unsupported.length === 0;
    for (const l of all) {
      // Provisioned Gateways have proxies of their own: no port is shared with another Gateway.
      if (bindable && !l.acceptedProblem && !l.conflict && !a.provisioned) claimPort(l, a.bind!, key, portClaims);
      finishListener(l, bindable);
    }
    for (const ls of sets) judgeListenerSet(ls);
  }

  // 3. Routes: attach each parentRef, translate the rules once.
  const memo = input.memo;
  const endpointPolicy = compileEndpointPolicy(input.endpoints ?? STANDALONE_ENDPOINT_DEFAULTS, ownSockets(gateways));
  const tlsPolicies = resolveBackendTLSPolicies(snap.other.filter((o) => o.kind === 'BackendTLSPolicy'), snap.configMaps, input.controllerName);
  const backendIndex = backendIndexFor(snap, endpointPolicy, memo, tlsPolicies);
  const shared = newSharedParts();
  // Every listener routes can attach to, by its unique name (outcomes name them so); L4 routes too.
  const listenersByName = new Map<string, ResolvedListener>();
  for (const g of gateways.values()) for (const l of g.allListeners) listenersByName.set(l.name, l);
  const attachmentWorld = memo === undefined ? 0 : memo.worlds.id(gateways, listenerSets, namespaces);
  const table = memo?.routeTable ?? new RouteTable();
  table.begin(attachmentWorld, listenersByName);
  for (const source of [...snap.httpRoutes, ...snap.grpcRoutes]) {
    let t = memo?.routes.get(source);
    if (!t) {
      t = translateHTTPRoute(source.kind === 'GRPCRoute' ? grpcAsHTTPRoute(source) : source, backendIndex, shared);
      memo?.routes.set(source, t);
    }
    let outcome = memo?.outcomes.get(source);
    if (outcome === undefined || outcome.world !== attachmentWorld || outcome.translated !== t) {
      outcome = routeOutcome(source, t, attachmentWorld, gateways, namespaces, listenerSets, input.controllerName);
      memo?.outcomes.set(source, outcome);
    }
    table.put(source, t, outcome);
    statuses.set(statusKey(source), outcome.status);
  }
  table.end();
  for (const [name, l] of listenersByName) l.attachedRoutes += table.attachedTo(name);
  /** Cluster name -> the Gateways whose routes send to it: the ancestors of the policies on its Service. */
  const clusterGateways = table.clusterGateways();
  const clusters = table.clusters();

  // TLSRoutes, TCPRoutes, UDPRoutes.
  const l4 = translateL4Routes(snap.other, gateways, namespaces, backendIndex, input.controllerName, listenerSets, listenersByName);
  for (const [route, status] of l4.statuses) statuses.set(statusKey(route), status);
  for (const c of l4.clusters) clusters[c.name] = c;
  for (const [name, gws] of l4.clusterGateways) {
    const set = clusterGateways.get(name);
    if (set === undefined) clusterGateways.set(name, new Set(gws));
    else for (const g of gws) set.add(g);
  }

  // 4. BackendTLSPolicy status, per Gateway its Services are reached through.
  for (const [policy, status] of tlsPolicies.statuses((serviceKey, section) => {
    const out = new Set<string>();
    for (const [name, gws] of clusterGateways) {
      const colon = name.lastIndexOf(':');
      if (name.slice(0, colon) !== serviceKey) continue;
      if (section !== null) {
        const svc = backendIndex.services.get(serviceKey);
        if (svc === undefined || portNameOf(svc, Number(name.slice(colon + 1))) !== section) continue;
      }
      for (const g of gws) out.add(g);
    }
    return out;
  })) statuses.set(statusKey(policy), status);

  // 5. Gateway and ListenerSet status, now that attachedRoutes are counted.
  for (const g of gateways.values()) {
    const status = gatewayStatus(g, clientCerts.get(g.key) ?? null);
    statuses.set(statusKey(g.gateway), status);
    const programmed = status.conditions.find((c) => c.type === 'Programmed');
    for (const ls of g.listenerSets) statuses.set(statusKey(ls.object), listenerSetStatus(ls, g, programmed));
  }

  // 6. Policies (GEP-713): targets, precedence, conflicts; their status is written after the IR, which may find more conflicts.
  // Without policies nothing reads the world: a reload does not walk every route and Service for it.
  const world = snap.clientTrafficPolicies.length + snap.backendTrafficPolicies.length === 0 ? EMPTY_WORLD
    : policyWorld(snap, ourGateways, routeGateways(table.accepted()), clusterGateways, input.controllerName);
  const settings = new Map<ClientTrafficPolicy, ClientSettings>();
  const client = attachPolicies(snap.clientTrafficPolicies, world, (p) => {
    const r = clientSettings(p);
    if ('error' in r) return r.error;
    settings.set(p, r.settings);
    return null;
  });
  const backendSettings = new Map<BackendTrafficPolicy, ClusterPolicy>();
  const backend = attachPolicies(snap.backendTrafficPolicies, world, (p) => {
    const r = clusterSettings(p.spec);
    if (!r.ok) return r.problems.map((x) => `${x.field}: ${x.reason}`).join('; ');
    backendSettings.set(p, r.settings);
    return null;
  });
  const policyClusters = new BackendPolicyClusters(backend, backendSettings, clusters, memo?.backendPolicies ?? newBackendPolicyMemo());
  const ir = buildIR(gateways, table, clusters, memo, clientCerts, l4.routes, client, settings, policyClusters);
  for (const [p, status] of client.statuses) statuses.set(statusKey(p), status);
  for (const [p, status] of backend.statuses) statuses.set(statusKey(p), status);

  return { ir, statuses, assignedAddresses, lastGoodCertificates: certificates.current, policies: { client, backend } };
}

const EMPTY_WORLD: PolicyWorld = { controllerName: '', gateways: new Map(), otherGateways: new Set(), routes: new Map(), services: new Map() };

interface AcceptedRoute {
  route: KubeObject;
  gateways: readonly string[];
}

/** Route key (`Kind|namespace/name`) -> the Gateways that accept it. */
function routeGateways(accepted: Iterable<AcceptedRoute>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const { route, gateways } of accepted) {
    const key = `${route.kind}|${nameOf(route)}`;
    const set = out.get(key);
    if (set === undefined) out.set(key, new Set(gateways));
    else for (const g of gateways) set.add(g);
  }
  return out;
}

/** What exists for policies to target, as this translation resolved it. */
function policyWorld(
  snap: Snapshot, ourGateways: Gateway[], routeGateways: Map<string, Set<string>>, clusterGateways: Map<string, Set<string>>, controllerName: string,
): PolicyWorld {
  const ours = new Set(ourGateways);
  const world: PolicyWorld = { controllerName, gateways: new Map(), otherGateways: new Set(), routes: new Map(), services: new Map() };
  for (const g of snap.gateways) {
    if (ours.has(g)) (world.gateways as Map<string, { listeners: Set<string> }>).set(nameOf(g), { listeners: new Set(g.spec.listeners.map((l) => l.name)) });
    else (world.otherGateways as Set<string>).add(nameOf(g));
  }
  const routes = world.routes as Map<string, { ruleNames: Set<string>; gateways: string[] }>;
  for (const r of [...snap.httpRoutes, ...snap.grpcRoutes]) {
    const ruleNames = new Set<string>();
    for (const rule of r.spec.rules ?? []) if (rule.name !== undefined) ruleNames.add(rule.name);
    const key = `${r.kind}|${nameOf(r)}`;
    routes.set(key, { ruleNames, gateways: [...(routeGateways.get(key) ?? [])].sort() });
  }
  const byService = new Map<string, Set<string>>();
  for (const [cluster, gws] of clusterGateways) {
    const service = cluster.slice(0, cluster.lastIndexOf(':'));
    const set = byService.get(service) ?? new Set<string>();
    for (const g of gws) set.add(g);
    byService.set(service, set);
  }
  const services = world.services as Map<string, { gateways: string[] }>;
  for (const s of snap.services) services.set(nameOf(s), { gateways: [...(byService.get(nameOf(s)) ?? [])].sort() });
  return world;
}

/**
 * The backend index for this snapshot. With a memo it is kept while the
 * Services, EndpointSlices and ReferenceGrants are the same instances and
 * the endpoint policy is the same (it changes when a listener port does),
 * so routes translated now get the very cluster objects the memoized ones
 * hold; when any of them changes, the memoized routes are dropped with it.
 */
function backendIndexFor(snap: Snapshot, policy: EndpointPolicy, memo: TranslateMemo | undefined, tls: BackendTLSPolicies): BackendIndex {
  if (!memo) return indexBackends(snap.services, snap.endpointSlices, snap.referenceGrants, policy, tls);
  // BackendTLSPolicies and the ConfigMaps holding their CAs shape clusters too.
  const backendObjects = [...snap.services, ...snap.endpointSlices, ...snap.referenceGrants, ...tls.objects, ...snap.configMaps];
  if (memo.backendIndex === null || memo.backendIndex.policy.key !== policy.key || !sameElements(backendObjects, memo.backendObjects)) {
    memo.routes = new WeakMap();
    memo.backendObjects = backendObjects;
    memo.backendIndex = indexBackends(snap.services, snap.endpointSlices, snap.referenceGrants, policy, tls);
  }
  return memo.backendIndex;
}

/** The sockets of the listeners that will be served (the IR's), with every address their Gateway reports. */
function ownSockets(gateways: Map<string, ResolvedGateway>): OwnSocket[] {
  const out: OwnSocket[] = [];
  for (const g of gateways.values()) {
    for (const l of g.allListeners) {
      if (!l.serving) continue;
      for (const address of [g.addressing.bind!, ...g.addressing.reported]) out.push({ address, port: l.spec.port, name: l.name });
    }
  }
  return out;
}

function claimPort(l: ResolvedListener, address: string, gateway: string, claims: Map<number, { address: string; gateway: string }[]>): void {
  const port = l.spec.port;
  const list = claims.get(port) ?? [];
  // All-interfaces and a specific address on the same port collide in bind().
  const other = list.find((c) => c.gateway !== gateway && (c.address === address || c.address === '0.0.0.0' || address === '0.0.0.0'));
  if (other) {
    l.acceptedProblem = { reason: 'PortUnavailable', message: `port ${port} on ${address} is already used by Gateway ${other.gateway}` };
    return;
  }
  if (!list.some((c) => c.gateway === gateway)) list.push({ address, gateway });
  claims.set(port, list);
}

function gatewayStatus(g: ResolvedGateway, clientCert: BackendClientCertificate | null): { conditions: PlainCondition[]; [field: string]: unknown } {
  const gen = g.gateway.metadata.generation;
  let conditions = gatewayConditions(g);
  if (g.parametersProblem !== null) {
    const msg = g.parametersProblem;
    conditions = [condition('Accepted', false, 'InvalidParameters', msg, gen), condition('Programmed', false, 'Invalid', msg, gen)];
  } else {
    const refs = clientCertificateCondition(clientCert, gen);
    // Another reference's ResolvedRefs=False (if any) stands; a bad client certificate overrides a True one.
    const existing = conditions.find((c) => c.type === 'ResolvedRefs');
    if (refs !== null && existing === undefined) conditions = [...conditions, refs];
    else if (refs !== null && refs.status === 'False' && existing!.status === 'True') conditions = conditions.map((c) => (c === existing ? refs : c));
  }
  return {
    addresses: [
      ...g.addressing.reported.map((value) => ({ type: 'IPAddress', value })),
      ...(g.addressing.provisioned?.hostnames ?? []).map((value) => ({ type: 'Hostname', value })),
    ],
    conditions,
    // The ListenerSets taken in with at least one valid listener (CRD: Accepted True).
    attachedListenerSets: g.listenerSets.filter((ls) => ls.accepted).length,
    listeners: g.listeners.map((l) => ({
      name: l.spec.name,
      supportedKinds: l.supportedKinds,
      attachedRoutes: l.attachedRoutes,
      conditions: listenerConditions(l, gen),
    })),
  };
}

function pendingGatewayStatus(gw: Gateway): unknown {
  const gen = gw.metadata.generation;
  const msg = `GatewayClass ${gw.spec.gatewayClassName} is not accepted`;
  return {
    conditions: [condition('Accepted', false, 'Invalid', msg, gen), condition('Programmed', false, 'Invalid', msg, gen)],
    listeners: [],
  };
}

function buildIR(
  gateways: Map<string, ResolvedGateway>, table: RouteTable, clusters: Record<string, Cluster>,
  memo: TranslateMemo | undefined, clientCerts: Map<string, BackendClientCertificate | null>,
  l4Routes: Map<ResolvedListener, L4Route[]>,
  clientPolicies: AttachedPolicies<ClientTrafficPolicy>, clientSettingsOf: Map<ClientTrafficPolicy, ClientSettings>,
  policyClusters: BackendPolicyClusters,
): IR {
  /** Socket key -> the client policy its settings came from, and the listener that brought it. */
  const socketPolicy = new Map<string, { policy: ClientTrafficPolicy; listener: string }>();
  /** Copies of TLS clusters that present a Gateway's client certificate, added to the IR's. */
  const copies: Record<string, Cluster> = {};
  const sockets = new Map<string, IRListener>();
  const virtualHosts = new VirtualHostBuilder(memo?.virtualHosts, table, policyClusters);
  for (const g of gateways.values()) {
    const cert = clientCerts.get(g.key);
    const variant = cert?.ok ? new ClientCertificateVariant(g.key, cert.certificate, clusters, copies) : null;
    for (const l of g.allListeners) {
      if (!l.serving) continue;
      const address = g.addressing.bind!;
      // Provisioned Gateways each have sockets of their own: their keys name the Gateway.
      // A UDP socket may share its port number with a TCP one: its key says udp.
      const udp = l.spec.protocol === 'UDP' ? '/udp' : '';
      const key = g.addressing.provisioned ? `${g.key}@${address}:${l.spec.port}${udp}` : `${address}:${l.spec.port}${udp}`;
      let sock = sockets.get(key);
      if (!sock) {
        sock = { key, address, port: l.spec.port, protocol: l.spec.protocol as IRListener['protocol'], gatewayListeners: [] };
        if (sock.protocol === 'HTTPS' || sock.protocol === 'TLS') sock.tls = { certificates: [] };
        if (sock.protocol === 'TLS' || sock.protocol === 'TCP' || sock.protocol === 'UDP') sock.l4 = { routes: [] };
        sockets.set(key, sock);
      }
      if (sock.l4 !== undefined) sock.l4.routes.push(...(l4Routes.get(l) ?? []));
      if (l.certificates.length) sock.tls!.certificates.push(...l.certificates);
      // Per port and Gateway (tls.frontend), so every listener of the socket has the same.
      if (l.clientValidation !== null) sock.tls!.clientValidation = l.clientValidation;
      const gl: GatewayListenerIR = { name: l.name, hostname: l.hostname, virtualHosts: virtualHosts.forListener(l.name, g.key, variant) };
      sock.gatewayListeners.push(gl);
      const policy = effectiveClientPolicy(clientPolicies, g.key, l.spec.name);
      if (policy !== null) applyClientPolicy(sock, l, g.key, policy, socketPolicy, clientPolicies, clientSettingsOf);
    }
  }
  virtualHosts.finish();
  for (const s of sockets.values()) {
    s.gatewayListeners.sort((a, b) => bySpecificity(a.hostname, b.hostname));
    s.l4?.routes.sort((a, b) => bySpecificity(a.hostname, b.hostname));
  }
  Object.assign(clusters, copies);
  return { version: IR_VERSION, listeners: [...sockets.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port)), clusters };
}

/**
 * A socket has one set of client settings (PROXY protocol and client
 * address are read before a request says which listener it is for): the
 * first policy to reach a socket keeps it unless an older one comes; a
 * different policy on another listener of the port is Conflicted there.
 */
function applyClientPolicy(
  sock: IRListener, l: ResolvedListener, gateway: string, policy: ClientTrafficPolicy,
  socketPolicy: Map<string, { policy: ClientTrafficPolicy; listener: string }>,
  clientPolicies: AttachedPolicies<ClientTrafficPolicy>, settingsOf: Map<ClientTrafficPolicy, ClientSettings>,
): void {
  const held = socketPolicy.get(sock.key);
  const ancestorOf = (p: ClientTrafficPolicy, listener: string) => {
    // The ancestor entry the policy has for this listener: with sectionName when it targets the listener.
    const slash = gateway.indexOf('/');
    const targetsListener = p.spec.targetRefs.some((r) => r.name === gateway.slice(slash + 1) && r.sectionName === listener);
    return { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: gateway.slice(0, slash), name: gateway.slice(slash + 1), ...(targetsListener ? { sectionName: listener } : {}) };
  };
  if (held === undefined) {
    socketPolicy.set(sock.key, { policy, listener: l.spec.name });
    sock.client = settingsOf.get(policy);
    return;
  }
  if (held.policy === policy) return;
  const [winner, loser, loserListener] = byAge(held.policy, policy) <= 0 ? [held.policy, policy, l.spec.name] : [policy, held.policy, held.listener];
  markConflicted(clientPolicies, loser, ancestorOf(loser, loserListener),
    `listener ${loserListener} shares port ${sock.port} with other listeners, and ${winner.kind} ${nameOf(winner)} (older) sets that port's client settings`);
  if (winner === policy) {
    socketPolicy.set(sock.key, { policy, listener: l.spec.name });
    sock.client = settingsOf.get(policy);
  }
}

function byAge(a: KubeObject, b: KubeObject): number {
  const ta = Date.parse(a.metadata.creationTimestamp ?? '') || 0;
  const tb = Date.parse(b.metadata.creationTimestamp ?? '') || 0;
  return ta - tb || (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0);
}

