// Envoy Gateway's ClientTrafficPolicy and BackendTrafficPolicy
// (gateway.envoyproxy.io/v1alpha1) rewritten as Gatehouse's
// (gatehouse.dev/v1alpha1). Pure: one object in, the converted object and
// every field that could not be carried out, each named with why
// (docs/policies.md has the same table for people). A field is carried
// only when Gatehouse means the same by it; nothing is dropped silently.

import type { KubeObject } from '../api/types.ts';

export const ENVOY_GATEWAY_API_VERSION = 'gateway.envoyproxy.io/v1alpha1';
export const GATEHOUSE_API_VERSION = 'gatehouse.dev/v1alpha1';

export interface NotCarried {
  /** `spec.`-rooted path of the field, as written in the object. */
  field: string;
  reason: string;
}

export interface Conversion {
  object: KubeObject;
  notCarried: NotCarried[];
}

/** Spec paths carried as they are, a whole subtree each (array indices ignored). */
const CARRIED: Record<string, readonly string[]> = {
  ClientTrafficPolicy: [
    'targetRefs',
    'clientIPDetection.xForwardedFor.numTrustedHops', 'clientIPDetection.xForwardedFor.trustedCIDRs',
    'clientIPDetection.customHeader.name', 'clientIPDetection.customHeader.failClosed',
    'proxyProtocol.optional',
    'timeout.http.idleTimeout', 'timeout.http.requestReceivedTimeout',
    'connection.connectionLimit.value', 'connection.bufferLimit',
    'http2.maxConcurrentStreams', 'http2.initialStreamWindowSize', 'http2.initialConnectionWindowSize',
  ],
  BackendTrafficPolicy: [
    'targetRefs',
    'loadBalancer.type', 'loadBalancer.consistentHash.type', 'loadBalancer.consistentHash.header.name',
    'loadBalancer.consistentHash.cookie.name', 'loadBalancer.consistentHash.cookie.ttl', 'loadBalancer.slowStart.window',
    'timeout.tcp.connectTimeout', 'timeout.http.requestTimeout', 'timeout.http.connectionIdleTimeout',
    'retry.numRetries', 'retry.perRetry.timeout', 'retry.perRetry.backOff.baseInterval', 'retry.perRetry.backOff.maxInterval',
    'retry.retryOn.httpStatusCodes', 'retry.retryOn.triggers',
    'circuitBreaker.maxConnections', 'circuitBreaker.maxPendingRequests', 'circuitBreaker.maxParallelRequests', 'circuitBreaker.maxParallelRetries',
    'healthCheck.passive.consecutive5XxErrors', 'healthCheck.passive.consecutiveGatewayErrors',
    'healthCheck.passive.consecutiveLocalOriginFailures', 'healthCheck.passive.interval',
    'healthCheck.passive.baseEjectionTime', 'healthCheck.passive.maxEjectionPercent',
    'healthCheck.active.type', 'healthCheck.active.interval', 'healthCheck.active.timeout',
    'healthCheck.active.unhealthyThreshold', 'healthCheck.active.healthyThreshold',
    'healthCheck.active.http.path', 'healthCheck.active.http.method', 'healthCheck.active.http.expectedStatuses',
  ],
};

/** Why a field is not carried, by its first path elements; the longest match speaks. */
const REASONS: Record<string, string> = {
  targetSelectors: 'Gatehouse attaches by name only: list the targets in targetRefs',
  'timeout.http.streamIdleTimeout': 'not per listener: the --request-body-idle-timeout flag',
  'timeout.tcp': 'TCP listeners are not served',
  'connection.connectionLimit.closeDelay': 'connections beyond the limit are closed at accept',
  http1: 'no counterpart (Gatehouse http1 options are maxHeaderBytes and maxHeaderCount)',
  http3: 'HTTP/3 is not served',
  headers: 'no counterpart: header changes belong in HTTPRoute filters',
  tls: 'no counterpart: client certificates are the Gateway\'s spec.tls.frontend',
  path: 'paths are normalised one way (SECURITY.md)',
  tcpKeepalive: 'no counterpart',
  healthCheck: 'no counterpart',
  'healthCheck.active': 'only HTTP active health checks',
  'loadBalancer.consistentHash': 'one header or one cookie only',
  'loadBalancer.consistentHash.tableSize': 'the hash ring is sized by Gatehouse',
  rateLimit: 'no counterpart',
  faultInjection: 'no counterpart',
  compression: 'no counterpart',
  responseOverride: 'no counterpart',
  mergeType: 'policies are not merged: the more specific one wins whole',
};

function reasonFor(path: string): string {
  let best = '';
  for (const key of Object.keys(REASONS)) {
    if ((path === key || path.startsWith(`${key}.`)) && key.length > best.length) best = key;
  }
  return best === '' ? 'no counterpart in Gatehouse' : REASONS[best];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function setPath(target: Obj, path: string[], value: unknown): void {
  let o = target;
  for (const k of path.slice(0, -1)) {
    if (!isObj(o[k])) o[k] = {};
    o = o[k] as Obj;
  }
  o[path[path.length - 1]] = structuredClone(value);
}

/** True for an object Envoy Gateway's converter handles. */
export function isEnvoyGatewayPolicy(o: unknown): o is KubeObject {
  return isObj(o) && o.apiVersion === ENVOY_GATEWAY_API_VERSION && (o.kind === 'ClientTrafficPolicy' || o.kind === 'BackendTrafficPolicy');
}

export function convertEnvoyGatewayPolicy(o: KubeObject): Conversion {
  const kind = o.kind as 'ClientTrafficPolicy' | 'BackendTrafficPolicy';
  const carried = new Set(CARRIED[kind]);
  const spec: Obj = isObj(o.spec) ? structuredClone(o.spec) : {};
  const notCarried: NotCarried[] = [];
  const out: Obj = {};

  // Renamed on the way.
  if (isObj(spec.targetRef)) {
    spec.targetRefs = [...(Array.isArray(spec.targetRefs) ? spec.targetRefs : []), spec.targetRef];
    delete spec.targetRef;
  }
  if (kind === 'ClientTrafficPolicy' && spec.enableProxyProtocol !== undefined) {
    if (spec.enableProxyProtocol === true && !isObj(spec.proxyProtocol)) out.proxyProtocol = {};
    delete spec.enableProxyProtocol;
  }
  if (kind === 'ClientTrafficPolicy' && isObj(spec.proxyProtocol) && Object.keys(spec.proxyProtocol).length === 0) out.proxyProtocol = {};
  const active = isObj(spec.healthCheck) && isObj(spec.healthCheck.active) ? spec.healthCheck.active : null;
  if (active !== null && active.type !== 'HTTP') {
    notCarried.push({ field: 'spec.healthCheck.active', reason: `type ${String(active.type)}: only HTTP active health checks` });
    delete (spec.healthCheck as Obj).active;
  }

  const walk = (v: unknown, path: string[]): void => {
    const dotted = path.join('.');
    if (carried.has(dotted)) {
      setPath(out, path, v);
      return;
    }
    const under = [...carried].some((c) => c.startsWith(`${dotted}.`));
    if (isObj(v) && under) {
      for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
      return;
    }
    notCarried.push({ field: `spec.${dotted}`, reason: reasonFor(dotted) });
  };
  for (const [k, v] of Object.entries(spec)) walk(v, [k]);

  const metadata: Obj = { name: o.metadata.name };
  if (o.metadata.namespace !== undefined) metadata.namespace = o.metadata.namespace;
  if (o.metadata.labels !== undefined) metadata.labels = { ...o.metadata.labels };
  if (o.metadata.annotations !== undefined) metadata.annotations = { ...o.metadata.annotations };
  return { object: { apiVersion: GATEHOUSE_API_VERSION, kind, metadata: metadata as unknown as KubeObject['metadata'], spec: out }, notCarried };
}
