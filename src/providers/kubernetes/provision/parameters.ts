// GatewayParameters (gatehouse.dev/v1alpha1): how the proxies of a Gateway
// are deployed. Referenced from GatewayClass.spec.parametersRef (defaults
// for every Gateway of the class) and Gateway.spec.infrastructure
// .parametersRef (that Gateway only). Here: the type, its validation (the
// same rules as the CRD's schema, for objects that reach us without the
// API server having checked them, and with a field path per error), the
// resolution of a parametersRef, and the merge of class and Gateway values.
//
// Merge rule: the Gateway's values win, field by field. Objects merge key
// by key, recursively (service, autoscaling, resources, affinity,
// nodeSelector, annotations); lists and scalars replace. Two exceptions,
// where merging keys would build something neither side asked for:
// - podDisruptionBudget is one choice (minAvailable or maxUnavailable):
//   the Gateway's replaces the class's whole;
// - replicas and autoscaling are one choice (how many proxies): a Gateway
//   that sets either one decides, and the class's other one is dropped
//   (a class that autoscales, a Gateway that asks for 3 replicas: 3).
import net from 'node:net';
import { fieldPath, indexPath, jsonType, keyPath, showValue } from '../../../api/errors.ts';
import type { FieldError } from '../../../api/errors.ts';
import type { Gateway, GatewayClass } from '../../../api/types.ts';

export const PARAMETERS_GROUP = 'gatehouse.dev';
export const PARAMETERS_KIND = 'GatewayParameters';
export const PARAMETERS_VERSION = 'v1alpha1';

export type ServiceType = 'LoadBalancer' | 'NodePort' | 'ClusterIP';
export const SERVICE_TYPES: readonly ServiceType[] = ['LoadBalancer', 'NodePort', 'ClusterIP'];
export type ExternalTrafficPolicy = 'Cluster' | 'Local';
export const EXTERNAL_TRAFFIC_POLICIES: readonly ExternalTrafficPolicy[] = ['Cluster', 'Local'];
export type ImagePullPolicy = 'Always' | 'IfNotPresent' | 'Never';
export const IMAGE_PULL_POLICIES: readonly ImagePullPolicy[] = ['Always', 'IfNotPresent', 'Never'];

/** The same bound as `gatehouse serve --workers`. */
export const MAX_WORKERS = 1024;

export interface AutoscalingParameters {
  minReplicas?: number;
  maxReplicas?: number;
  targetCPUUtilizationPercentage?: number;
  targetMemoryUtilizationPercentage?: number;
}

/** Exactly one of the two; an integer count or a percentage such as "50%". */
export interface PodDisruptionBudgetParameters {
  minAvailable?: number | string;
  maxUnavailable?: number | string;
}

export interface ServiceParameters {
  type?: ServiceType;
  externalTrafficPolicy?: ExternalTrafficPolicy;
  loadBalancerSourceRanges?: string[];
  annotations?: Record<string, string>;
  loadBalancerClass?: string;
}

/** `spec` of a GatewayParameters object. Core sub-objects are passed to the pod spec as given. */
export interface GatewayParametersSpec {
  replicas?: number;
  autoscaling?: AutoscalingParameters;
  podDisruptionBudget?: PodDisruptionBudgetParameters;
  nodeSelector?: Record<string, string>;
  affinity?: Record<string, unknown>;
  tolerations?: Record<string, unknown>[];
  topologySpreadConstraints?: Record<string, unknown>[];
  resources?: Record<string, unknown>;
  image?: string;
  imagePullPolicy?: ImagePullPolicy;
  service?: ServiceParameters;
  workers?: number;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------- validation

const SPEC_FIELDS = new Set([
  'replicas', 'autoscaling', 'podDisruptionBudget', 'nodeSelector', 'affinity', 'tolerations',
  'topologySpreadConstraints', 'resources', 'image', 'imagePullPolicy', 'service', 'workers',
]);
const AUTOSCALING_FIELDS = new Set(['minReplicas', 'maxReplicas', 'targetCPUUtilizationPercentage', 'targetMemoryUtilizationPercentage']);
const PDB_FIELDS = new Set(['minAvailable', 'maxUnavailable']);
const SERVICE_FIELDS = new Set(['type', 'externalTrafficPolicy', 'loadBalancerSourceRanges', 'annotations', 'loadBalancerClass']);

/** Kubernetes' int32, the type of every count here. */
const INT32_MAX = 2_147_483_647;

class Checker {
  readonly errors: FieldError[] = [];

  fail(field: string, reason: string): void {
    this.errors.push({ field, reason });
  }

  /** Fields the schema does not know: refused (the API server would have pruned them; a file would silently lose them). */
  knownFields(o: Obj, known: Set<string>, at: string): void {
    for (const k of Object.keys(o)) if (!known.has(k)) this.fail(fieldPath(at, k), 'unknown field');
  }

  int(v: unknown, at: string, min: number, max = INT32_MAX): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) { this.fail(at, `must be an integer, not ${jsonType(v)} ${showValue(v)}`); return undefined; }
    if (v < min) { this.fail(at, `must be at least ${min}, not ${v}`); return undefined; }
    if (v > max) { this.fail(at, `must be at most ${max}, not ${v}`); return undefined; }
    return v;
  }

  oneOf<T extends string>(v: unknown, at: string, allowed: readonly T[]): T | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.fail(at, `must be one of ${allowed.join(', ')}, not ${showValue(v)}`);
      return undefined;
    }
    return v as T;
  }

  object(v: unknown, at: string): Obj | undefined {
    if (v === undefined) return undefined;
    if (!isObj(v)) { this.fail(at, `must be an object, not ${jsonType(v)}`); return undefined; }
    return v;
  }

  stringMap(v: unknown, at: string): Record<string, string> | undefined {
    const o = this.object(v, at);
    if (!o) return undefined;
    let ok = true;
    for (const [k, val] of Object.entries(o)) {
      if (!k) { this.fail(at, 'keys must not be empty'); ok = false; }
      if (typeof val !== 'string') { this.fail(keyPath(at, k), `must be a string, not ${jsonType(val)}`); ok = false; }
    }
    return ok ? (o as Record<string, string>) : undefined;
  }

  objectList(v: unknown, at: string): Obj[] | undefined {
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) { this.fail(at, `must be a list, not ${jsonType(v)}`); return undefined; }
    let ok = true;
    v.forEach((item, i) => { if (!isObj(item)) { this.fail(indexPath(at, i), `must be an object, not ${jsonType(item)}`); ok = false; } });
    return ok ? (v as Obj[]) : undefined;
  }
}

/** An integer count, or a percentage from "0%" to "100%" (an IntOrString of policy/v1). */
function checkIntOrPercent(c: Checker, v: unknown, at: string): number | string | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') return c.int(v, at, 0);
  if (typeof v === 'string' && /^(100|[1-9]?[0-9])%$/.test(v)) return v;
  c.fail(at, `must be an integer or a percentage such as "50%", not ${showValue(v)}`);
  return undefined;
}

function isCIDR(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const ip = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  const family = net.isIP(ip);
  return family !== 0 && Number(bits) <= (family === 4 ? 32 : 128);
}

/** `example.com/name`: what Kubernetes accepts as a loadBalancerClass (a prefixed qualified name). */
const LOAD_BALANCER_CLASS = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;

function checkService(c: Checker, v: unknown, at: string): ServiceParameters | undefined {
  const o = c.object(v, at);
  if (!o) return undefined;
  c.knownFields(o, SERVICE_FIELDS, at);
  const out: ServiceParameters = {};
  const type = c.oneOf(o.type, fieldPath(at, 'type'), SERVICE_TYPES);
  if (type) out.type = type;
  const etp = c.oneOf(o.externalTrafficPolicy, fieldPath(at, 'externalTrafficPolicy'), EXTERNAL_TRAFFIC_POLICIES);
  if (etp) out.externalTrafficPolicy = etp;
  if (o.loadBalancerSourceRanges !== undefined) {
    const rangesAt = fieldPath(at, 'loadBalancerSourceRanges');
    if (!Array.isArray(o.loadBalancerSourceRanges)) c.fail(rangesAt, `must be a list, not ${jsonType(o.loadBalancerSourceRanges)}`);
    else {
      const ranges: string[] = [];
      o.loadBalancerSourceRanges.forEach((r, i) => {
        if (typeof r === 'string' && isCIDR(r)) ranges.push(r);
        else c.fail(indexPath(rangesAt, i), `must be a CIDR such as 192.0.2.0/24 or 2001:db8::/32, not ${showValue(r)}`);
      });
      out.loadBalancerSourceRanges = ranges;
    }
  }
  const annotations = c.stringMap(o.annotations, fieldPath(at, 'annotations'));
  if (annotations) out.annotations = annotations;
  if (o.loadBalancerClass !== undefined) {
    if (typeof o.loadBalancerClass === 'string' && o.loadBalancerClass.length <= 316 && LOAD_BALANCER_CLASS.test(o.loadBalancerClass)) out.loadBalancerClass = o.loadBalancerClass;
    else c.fail(fieldPath(at, 'loadBalancerClass'), `must be a prefixed name such as example.com/internal-vip, not ${showValue(o.loadBalancerClass)}`);
  }
  return out;
}

function checkAutoscaling(c: Checker, v: unknown, at: string): AutoscalingParameters | undefined {
  const o = c.object(v, at);
  if (!o) return undefined;
  c.knownFields(o, AUTOSCALING_FIELDS, at);
  const out: AutoscalingParameters = {};
  const min = c.int(o.minReplicas, fieldPath(at, 'minReplicas'), 1);
  const max = c.int(o.maxReplicas, fieldPath(at, 'maxReplicas'), 1);
  const cpu = c.int(o.targetCPUUtilizationPercentage, fieldPath(at, 'targetCPUUtilizationPercentage'), 1);
  const mem = c.int(o.targetMemoryUtilizationPercentage, fieldPath(at, 'targetMemoryUtilizationPercentage'), 1);
  if (min !== undefined) out.minReplicas = min;
  if (max !== undefined) out.maxReplicas = max;
  if (cpu !== undefined) out.targetCPUUtilizationPercentage = cpu;
  if (mem !== undefined) out.targetMemoryUtilizationPercentage = mem;
  return out;
}

function checkPodDisruptionBudget(c: Checker, v: unknown, at: string): PodDisruptionBudgetParameters | undefined {
  const o = c.object(v, at);
  if (!o) return undefined;
  c.knownFields(o, PDB_FIELDS, at);
  const out: PodDisruptionBudgetParameters = {};
  const minAvailable = checkIntOrPercent(c, o.minAvailable, fieldPath(at, 'minAvailable'));
  const maxUnavailable = checkIntOrPercent(c, o.maxUnavailable, fieldPath(at, 'maxUnavailable'));
  if (minAvailable !== undefined) out.minAvailable = minAvailable;
  if (maxUnavailable !== undefined) out.maxUnavailable = maxUnavailable;
  return out;
}

function checkResources(c: Checker, v: unknown, at: string): Obj | undefined {
  const o = c.object(v, at);
  if (!o) return undefined;
  for (const part of ['requests', 'limits']) {
    const q = c.object(o[part], fieldPath(at, part));
    if (!q) continue;
    for (const [name, amount] of Object.entries(q)) {
      const ok = (typeof amount === 'string' && /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]i?|Ki)?$/.test(amount)) || (typeof amount === 'number' && amount >= 0);
      if (!ok) c.fail(keyPath(fieldPath(at, part), name), `must be a quantity such as 100m or 128Mi, not ${showValue(amount)}`);
    }
  }
  return o;
}

/**
 * Checks a spec (merged or as written) beyond the types of its fields:
 * the rules that span fields. Kept apart so that a merge of two valid
 * specs is checked again. `complete` is for the merged spec the proxies
 * are deployed with: a Gateway may set only autoscaling.minReplicas over
 * a class that sets maxReplicas, so maxReplicas is required only there.
 */
function checkCrossFieldRules(c: Checker, spec: GatewayParametersSpec, at: string, complete: boolean): void {
  const a = spec.autoscaling;
  if (a) {
    if (a.maxReplicas === undefined) {
      if (complete) c.fail(fieldPath(fieldPath(at, 'autoscaling'), 'maxReplicas'), 'is required when autoscaling is set (in the class\'s parameters or the Gateway\'s)');
    } else if (a.minReplicas !== undefined && a.minReplicas > a.maxReplicas) {
      c.fail(fieldPath(at, 'autoscaling'), `minReplicas (${a.minReplicas}) must not be more than maxReplicas (${a.maxReplicas})`);
    }
  }
  const p = spec.podDisruptionBudget;
  if (p) {
    const both = p.minAvailable !== undefined && p.maxUnavailable !== undefined;
    const none = p.minAvailable === undefined && p.maxUnavailable === undefined;
    if (both || none) c.fail(fieldPath(at, 'podDisruptionBudget'), 'must set exactly one of minAvailable and maxUnavailable');
  }
  // Within one object, a field that its own Service type ignores is a
  // mistake worth reporting. Merged, it is not: a Gateway that asks for
  // ClusterIP over a class with loadBalancerSourceRanges gets ClusterIP,
  // and render leaves out what that type cannot carry.
  const s = spec.service;
  if (!complete && s && s.type && s.type !== 'LoadBalancer') {
    const svcAt = fieldPath(at, 'service');
    if (s.loadBalancerClass !== undefined) c.fail(fieldPath(svcAt, 'loadBalancerClass'), `applies only to type LoadBalancer, not ${s.type}`);
    if (s.loadBalancerSourceRanges?.length) c.fail(fieldPath(svcAt, 'loadBalancerSourceRanges'), `applies only to type LoadBalancer, not ${s.type}`);
    if (s.type === 'ClusterIP' && s.externalTrafficPolicy !== undefined) c.fail(fieldPath(svcAt, 'externalTrafficPolicy'), 'applies only to types LoadBalancer and NodePort');
  }
}

export type ParametersCheck = { ok: true; spec: GatewayParametersSpec } | { ok: false; errors: FieldError[] };

/**
 * Validates the `spec` of a GatewayParameters object (field paths start at
 * `spec`). Everything the CRD schema checks is checked here too, so the
 * two agree; sub-objects of the core API (affinity, tolerations,
 * topologySpreadConstraints) are only checked to be objects: the API
 * server checks them when the Deployment is applied.
 */
export function validateParametersSpec(raw: unknown): ParametersCheck {
  const c = new Checker();
  const at = 'spec';
  if (raw === undefined || raw === null) return { ok: true, spec: {} };
  const o = c.object(raw, at);
  if (!o) return { ok: false, errors: c.errors };
  c.knownFields(o, SPEC_FIELDS, at);
  const spec: GatewayParametersSpec = {};
  const replicas = c.int(o.replicas, fieldPath(at, 'replicas'), 0);
  if (replicas !== undefined) spec.replicas = replicas;
  const autoscaling = checkAutoscaling(c, o.autoscaling, fieldPath(at, 'autoscaling'));
  if (autoscaling) spec.autoscaling = autoscaling;
  const pdb = checkPodDisruptionBudget(c, o.podDisruptionBudget, fieldPath(at, 'podDisruptionBudget'));
  if (pdb) spec.podDisruptionBudget = pdb;
  const nodeSelector = c.stringMap(o.nodeSelector, fieldPath(at, 'nodeSelector'));
  if (nodeSelector) spec.nodeSelector = nodeSelector;
  const affinity = c.object(o.affinity, fieldPath(at, 'affinity'));
  if (affinity) spec.affinity = affinity;
  const tolerations = c.objectList(o.tolerations, fieldPath(at, 'tolerations'));
  if (tolerations) spec.tolerations = tolerations;
  const spread = c.objectList(o.topologySpreadConstraints, fieldPath(at, 'topologySpreadConstraints'));
  if (spread) spec.topologySpreadConstraints = spread;
  const resources = checkResources(c, o.resources, fieldPath(at, 'resources'));
  if (resources) spec.resources = resources;
  if (o.image !== undefined) {
    if (typeof o.image === 'string' && o.image.length > 0 && !/\s/.test(o.image)) spec.image = o.image;
    else c.fail(fieldPath(at, 'image'), `must be an image reference without spaces, not ${showValue(o.image)}`);
  }
  const pull = c.oneOf(o.imagePullPolicy, fieldPath(at, 'imagePullPolicy'), IMAGE_PULL_POLICIES);
  if (pull) spec.imagePullPolicy = pull;
  const service = checkService(c, o.service, fieldPath(at, 'service'));
  if (service) spec.service = service;
  const workers = c.int(o.workers, fieldPath(at, 'workers'), 0, MAX_WORKERS);
  if (workers !== undefined) spec.workers = workers;
  if (c.errors.length === 0) checkCrossFieldRules(c, spec, at, false);
  return c.errors.length ? { ok: false, errors: c.errors } : { ok: true, spec };
}

// ---------------------------------------------------------------- merge

/** Objects merge key by key, recursively; anything else (lists, scalars) from `over` replaces. */
function deepMerge(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (!isObj(base) || !isObj(over)) return over;
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

/**
 * The Gateway's parameters over the class's (see the rule at the top of
 * this file). Either may be undefined. The result is validated again:
 * two valid halves can make an invalid whole (class minReplicas 5,
 * Gateway maxReplicas 3); such errors belong to the Gateway.
 */
export function mergeParameters(classSpec: GatewayParametersSpec | undefined, gatewaySpec: GatewayParametersSpec | undefined): ParametersCheck {
  const base: GatewayParametersSpec = { ...(classSpec ?? {}) };
  const over: GatewayParametersSpec = gatewaySpec ?? {};
  if (over.replicas !== undefined || over.autoscaling !== undefined) {
    // How many proxies is one choice: the Gateway made it.
    if (over.replicas !== undefined) delete base.autoscaling;
    if (over.autoscaling !== undefined) delete base.replicas;
  }
  if (over.podDisruptionBudget !== undefined) delete base.podDisruptionBudget;
  const merged = deepMerge(base, over) as GatewayParametersSpec;
  const c = new Checker();
  checkCrossFieldRules(c, merged, 'spec', true);
  return c.errors.length ? { ok: false, errors: c.errors } : { ok: true, spec: merged };
}

// ---------------------------------------------------------------- resolution

/**
 * Finds a GatewayParameters object (as read: raw, unvalidated) by
 * namespace and name; undefined when there is none.
 */
export type ParametersLookup = (namespace: string, name: string) => unknown;

export type ParametersResolution =
  | { ok: true; spec: GatewayParametersSpec | undefined }
  | { ok: false; reason: 'InvalidParameters'; message: string };

function formatErrors(errors: FieldError[]): string {
  const shown = errors.slice(0, 5).map((e) => `${e.field}: ${e.reason}`);
  if (errors.length > 5) shown.push(`and ${errors.length - 5} more`);
  return shown.join('; ');
}

function resolve(ref: { group: string; kind: string; name: string }, namespace: string, where: string, lookup: ParametersLookup): ParametersResolution {
  if (ref.group !== PARAMETERS_GROUP || ref.kind !== PARAMETERS_KIND) {
    return {
      ok: false,
      reason: 'InvalidParameters',
      message: `${where} names ${ref.group || 'core'}/${ref.kind} ${ref.name}; Gatehouse takes only ${PARAMETERS_GROUP}/${PARAMETERS_KIND}`,
    };
  }
  const raw = lookup(namespace, ref.name);
  if (raw === undefined || raw === null) {
    return { ok: false, reason: 'InvalidParameters', message: `${where}: ${PARAMETERS_KIND} ${namespace}/${ref.name} not found` };
  }
  const spec = isObj(raw) ? raw.spec : undefined;
  const check = validateParametersSpec(spec);
  if (!check.ok) {
    return { ok: false, reason: 'InvalidParameters', message: `${PARAMETERS_KIND} ${namespace}/${ref.name}: ${formatErrors(check.errors)}` };
  }
  return { ok: true, spec: check.spec };
}

/**
 * The parameters a GatewayClass names. GatewayParameters are namespaced,
 * so the reference must say the namespace (the Gateway API: a namespaced
 * referent without a namespace is InvalidParameters). A failure is for the
 * class's Accepted condition (False, reason InvalidParameters).
 */
export function classParameters(gc: GatewayClass, lookup: ParametersLookup): ParametersResolution {
  const ref = gc.spec.parametersRef;
  if (!ref) return { ok: true, spec: undefined };
  const where = `GatewayClass ${gc.metadata.name} spec.parametersRef`;
  if (!ref.namespace) {
    if (ref.group === PARAMETERS_GROUP && ref.kind === PARAMETERS_KIND) {
      return { ok: false, reason: 'InvalidParameters', message: `${where}: ${PARAMETERS_KIND} is namespaced; set spec.parametersRef.namespace` };
    }
    return resolve(ref, '', where, lookup);
  }
  return resolve(ref, ref.namespace, where, lookup);
}

/**
 * The parameters a Gateway names in spec.infrastructure.parametersRef (a
 * local reference: the Gateway's own namespace). A failure is for the
 * Gateway's Accepted condition (False, reason InvalidParameters).
 */
export function gatewayParameters(gw: Gateway, lookup: ParametersLookup): ParametersResolution {
  const ref = gw.spec.infrastructure?.parametersRef;
  if (!ref) return { ok: true, spec: undefined };
  const namespace = gw.metadata.namespace ?? 'default';
  return resolve(ref, namespace, `Gateway ${namespace}/${gw.metadata.name} spec.infrastructure.parametersRef`, lookup);
}

export type EffectiveParameters =
  | { ok: true; spec: GatewayParametersSpec }
  | { ok: false; reason: 'InvalidParameters'; message: string };

/**
 * What a Gateway's proxies are deployed with: its class's parameters
 * (already resolved with classParameters, which must have succeeded: a
 * class that is not Accepted provisions nothing) under its own. A failure
 * is for the Gateway's Accepted condition (False, InvalidParameters).
 */
export function effectiveParameters(classSpec: GatewayParametersSpec | undefined, gw: Gateway, lookup: ParametersLookup): EffectiveParameters {
  const own = gatewayParameters(gw, lookup);
  if (!own.ok) return own;
  const merged = mergeParameters(classSpec, own.spec);
  if (!merged.ok) {
    const namespace = gw.metadata.namespace ?? 'default';
    return {
      ok: false,
      reason: 'InvalidParameters',
      message: `Gateway ${namespace}/${gw.metadata.name}: its parameters merged over its class's are invalid: ${formatErrors(merged.errors)}`,
    };
  }
  return merged;
}
