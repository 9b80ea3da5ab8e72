// Policy attachment (GEP-713) for Gatehouse's own policies, generic over
// the policy kind: which objects each policy's targetRefs name, which
// policy is in effect for each target, and the status of every policy per
// ancestor. Pure: the caller says what exists (PolicyWorld) and reads the
// winners back through effectiveClientPolicy / effectiveBackendPolicy.
//
// - A targetRef names an object in the policy's own namespace: a Gateway
//   (with sectionName, one of its listeners), an HTTPRoute or GRPCRoute
//   (with sectionName, one of its rules by name), or a Service.
// - The more specific target wins, whole policy against whole policy (as
//   Envoy Gateway, no field-by-field merge): a listener's over its
//   Gateway's, a rule's over its route's; for backends a rule's or
//   route's over a Service's, and any of those over the Gateway's.
// - Among policies on the same target the oldest (creationTimestamp, then
//   namespace/name) wins; the others are Accepted=False, Conflicted, for
//   that target's ancestors.
// - A target that does not exist: Accepted=False, TargetNotFound, with the
//   target itself as the ancestor (nothing else relates the policy to a
//   Gateway). A Gateway of another controller is not ours to report on.
// - Ancestors are Gateways: the target's own Gateway, or for a route the
//   Gateways it is attached to, for a Service the Gateways whose routes
//   send to it. At most MAX_ANCESTORS per policy, as the CRD allows.

import type { KubeObject, PolicyTargetReference } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import { condition, type PlainCondition } from './conditions.ts';

export const MAX_ANCESTORS = 16;

/** What exists, as translate resolved it; keys are `namespace/name`. */
export interface PolicyWorld {
  controllerName: string;
  /** Gateways of our classes, with the names of their listeners. */
  gateways: ReadonlyMap<string, { listeners: ReadonlySet<string> }>;
  /** Gateways of other controllers: a policy on one is not ours to report on. */
  otherGateways: ReadonlySet<string>;
  /** Routes by `Kind|namespace/name`, with their rule names and the Gateways (ours) they are attached to. */
  routes: ReadonlyMap<string, { ruleNames: ReadonlySet<string>; gateways: readonly string[] }>;
  /** Services, with the Gateways (ours) whose routes send to them. */
  services: ReadonlyMap<string, { gateways: readonly string[] }>;
}

/** The target kinds a policy kind may name. */
export type TargetKind = 'Gateway' | 'HTTPRoute' | 'GRPCRoute' | 'Service';

export interface PolicyAncestorRef {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  sectionName?: string;
}

export interface PolicyAncestorStatus {
  ancestorRef: PolicyAncestorRef;
  controllerName: string;
  conditions: PlainCondition[];
}

/** What a target key names: `Gateway|ns/name`, `Gateway|ns/name|listener`, `HTTPRoute|ns/name|rule`, `Service|ns/name`. */
export type TargetKey = string;

export interface AttachedPolicies<P extends KubeObject> {
  /** Every policy ours to report on, with its `status` ({ ancestors }). */
  statuses: Map<P, { ancestors: PolicyAncestorStatus[] }>;
  /** The policy in effect on each target named by some policy. */
  winners: Map<TargetKey, P>;
}

/** Outcome of one targetRef, before it is folded into its ancestors. */
type Outcome = 'Accepted' | 'Conflicted' | 'TargetNotFound' | 'Invalid';

/** Worse outcomes lose to better ones when several targets share an ancestor. */
const RANK: Record<Outcome, number> = { Accepted: 0, Conflicted: 1, Invalid: 2, TargetNotFound: 3 };

export function targetKey(kind: string, namespace: string, name: string, sectionName?: string): TargetKey {
  return sectionName === undefined ? `${kind}|${namespace}/${name}` : `${kind}|${namespace}/${name}|${sectionName}`;
}

/**
 * Oldest first: creationTimestamp, then namespace/name (GEP-713's tie
 * breaker), so that the winner does not change with file or list order.
 */
export function byAge(a: KubeObject, b: KubeObject): number {
  const ta = Date.parse(a.metadata.creationTimestamp ?? '') || 0;
  const tb = Date.parse(b.metadata.creationTimestamp ?? '') || 0;
  if (ta !== tb) return ta - tb;
  const na = nameOf(a);
  const nb = nameOf(b);
  return na < nb ? -1 : na > nb ? 1 : 0;
}

interface Resolved {
  ref: PolicyTargetReference;
  key: TargetKey;
  /** Ancestors of this target; for a target not found, the target itself. */
  ancestors: PolicyAncestorRef[];
  found: boolean;
}

function gatewayAncestor(key: string, sectionName?: string): PolicyAncestorRef {
  const slash = key.indexOf('/');
  const ref: PolicyAncestorRef = { group: GATEWAY_GROUP, kind: 'Gateway', namespace: key.slice(0, slash), name: key.slice(slash + 1) };
  if (sectionName !== undefined) ref.sectionName = sectionName;
  return ref;
}

/** Resolves one targetRef; null when it names a Gateway of another controller (not ours to report). */
function resolve(ref: PolicyTargetReference, namespace: string, world: PolicyWorld): Resolved | null {
  const objectKey = `${namespace}/${ref.name}`;
  const key = targetKey(ref.kind, namespace, ref.name, ref.sectionName);
  const self: PolicyAncestorRef = { group: ref.group, kind: ref.kind, namespace, name: ref.name };
  if (ref.sectionName !== undefined) self.sectionName = ref.sectionName;
  switch (ref.kind) {
    case 'Gateway': {
      if (world.otherGateways.has(objectKey)) return null;
      const gw = world.gateways.get(objectKey);
      const found = gw !== undefined && (ref.sectionName === undefined || gw.listeners.has(ref.sectionName));
      return { ref, key, ancestors: [gatewayAncestor(objectKey, ref.sectionName)], found };
    }
    case 'HTTPRoute':
    case 'GRPCRoute': {
      const route = world.routes.get(`${ref.kind}|${objectKey}`);
      const found = route !== undefined && (ref.sectionName === undefined || route.ruleNames.has(ref.sectionName));
      if (!found) return { ref, key, ancestors: [self], found };
      return { ref, key, ancestors: route.gateways.map((g) => gatewayAncestor(g)), found };
    }
    case 'Service': {
      const svc = world.services.get(objectKey);
      if (svc === undefined) return { ref, key, ancestors: [self], found: false };
      return { ref, key, ancestors: svc.gateways.map((g) => gatewayAncestor(g)), found: true };
    }
    default:
      return { ref, key, ancestors: [self], found: false };
  }
}

function ancestorKey(a: PolicyAncestorRef): string {
  return `${a.kind}|${a.namespace}/${a.name}|${a.sectionName ?? ''}`;
}

/**
 * Attaches `policies` (one kind). `invalid` says why a policy's spec
 * cannot be used (null: it can); an invalid policy wins nothing and is
 * Accepted=False, Invalid, on each ancestor.
 */
export function attachPolicies<P extends KubeObject & { spec: { targetRefs: PolicyTargetReference[] } }>(
  policies: readonly P[], world: PolicyWorld, invalid: (policy: P) => string | null,
): AttachedPolicies<P> {
  const ordered = [...policies].sort(byAge);
  const winners = new Map<TargetKey, P>();
  const resolved = new Map<P, { targets: Resolved[]; problem: string | null }>();
  for (const policy of ordered) {
    const namespace = namespaceOf(policy);
    const targets: Resolved[] = [];
    const seen = new Set<TargetKey>();
    for (const ref of policy.spec.targetRefs ?? []) {
      const r = resolve(ref, namespace, world);
      if (r === null || seen.has(r.key)) continue;
      seen.add(r.key);
      targets.push(r);
    }
    const problem = targets.length === 0 ? null : invalid(policy);
    resolved.set(policy, { targets, problem });
    if (problem !== null) continue;
    // Oldest first: the first policy to claim a target keeps it.
    for (const t of targets) if (t.found && !winners.has(t.key)) winners.set(t.key, policy);
  }

  const statuses = new Map<P, { ancestors: PolicyAncestorStatus[] }>();
  for (const policy of ordered) {
    const { targets, problem } = resolved.get(policy)!;
    if (targets.length === 0) continue;
    const gen = policy.metadata.generation;
    const byAncestor = new Map<string, { ref: PolicyAncestorRef; outcome: Outcome; message: string }>();
    for (const t of targets) {
      let outcome: Outcome;
      let message: string;
      if (!t.found) {
        outcome = 'TargetNotFound';
        message = `${describeRef(t.ref, namespaceOf(policy))} does not exist`;
      } else if (problem !== null) {
        outcome = 'Invalid';
        message = problem;
      } else if (winners.get(t.key) !== policy) {
        outcome = 'Conflicted';
        message = `${describeRef(t.ref, namespaceOf(policy))} already has ${policy.kind} ${nameOf(winners.get(t.key)!)}, which is older`;
      } else {
        outcome = 'Accepted';
        message = 'Policy has been accepted';
      }
      for (const ref of t.ancestors) {
        const k = ancestorKey(ref);
        const before = byAncestor.get(k);
        if (before === undefined || RANK[outcome] < RANK[before.outcome]) byAncestor.set(k, { ref, outcome, message });
      }
    }
    const ancestors: PolicyAncestorStatus[] = [];
    for (const { ref, outcome, message } of byAncestor.values()) {
      if (ancestors.length === MAX_ANCESTORS) break;
      const accepted = outcome === 'Accepted';
      ancestors.push({ ancestorRef: ref, controllerName: world.controllerName, conditions: [condition('Accepted', accepted, outcome, message, gen)] });
    }
    statuses.set(policy, { ancestors });
  }
  return { statuses, winners };
}

function describeRef(ref: PolicyTargetReference, namespace: string): string {
  const base = `${ref.kind} ${namespace}/${ref.name}`;
  if (ref.sectionName === undefined) return base;
  return ref.kind === 'Gateway' ? `listener ${ref.sectionName} of ${base}` : `rule ${ref.sectionName} of ${base}`;
}

/**
 * Marks one ancestor of an accepted policy Conflicted after the fact: two
 * listeners of one port with different client policies (the port has one
 * set of socket settings: the older policy keeps it).
 */
export function markConflicted<P extends KubeObject>(att: AttachedPolicies<P>, policy: P, ancestor: PolicyAncestorRef, message: string): void {
  const status = att.statuses.get(policy);
  if (status === undefined) return;
  const k = ancestorKey(ancestor);
  for (const a of status.ancestors) {
    if (ancestorKey(a.ancestorRef) !== k) continue;
    a.conditions = [condition('Accepted', false, 'Conflicted', message, policy.metadata.generation)];
  }
}

// ---------------------------------------------------------------- lookups

/** The client policy in effect on one listener of a Gateway (`namespace/name`): the listener's, else the Gateway's. */
export function effectiveClientPolicy<P extends KubeObject>(att: AttachedPolicies<P>, gateway: string, listener: string): P | null {
  const slash = gateway.indexOf('/');
  const ns = gateway.slice(0, slash);
  const name = gateway.slice(slash + 1);
  return att.winners.get(targetKey('Gateway', ns, name, listener)) ?? att.winners.get(targetKey('Gateway', ns, name)) ?? null;
}

/** Where a request's backend policy is looked up: the rule that routed it and the Service it goes to. */
export interface BackendPolicyTarget {
  /** The Gateway (`namespace/name`) the request came through. */
  gateway?: string;
  /** The route (`namespace/name`) and its kind; HTTPRoute when absent. */
  route?: string;
  routeKind?: 'HTTPRoute' | 'GRPCRoute';
  /** The rule's name (HTTPRoute `rules[].name`), when it has one. */
  rule?: string;
  /** The Service (`namespace/name`) of the backend. */
  service?: string;
}

/**
 * The backend policy in effect for a request of `target`: a rule's, else
 * its route's, else the Service's, else the Gateway's; null for none.
 * Call it with what is known: `{ service }` alone gives a Service's
 * policy, `{ route, rule }` a rule's.
 */
export function effectiveBackendPolicy<P extends KubeObject>(att: AttachedPolicies<P>, target: BackendPolicyTarget): P | null {
  const w = att.winners;
  if (target.route !== undefined) {
    const [ns, name] = split(target.route);
    const kind = target.routeKind ?? 'HTTPRoute';
    if (target.rule !== undefined) {
      const p = w.get(targetKey(kind, ns, name, target.rule));
      if (p !== undefined) return p;
    }
    const p = w.get(targetKey(kind, ns, name));
    if (p !== undefined) return p;
  }
  if (target.service !== undefined) {
    const [ns, name] = split(target.service);
    const p = w.get(targetKey('Service', ns, name));
    if (p !== undefined) return p;
  }
  if (target.gateway !== undefined) {
    const [ns, name] = split(target.gateway);
    const p = w.get(targetKey('Gateway', ns, name));
    if (p !== undefined) return p;
  }
  return null;
}

function split(key: string): [string, string] {
  const slash = key.indexOf('/');
  return [key.slice(0, slash), key.slice(slash + 1)];
}
