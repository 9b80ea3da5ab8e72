// Types of the Kubernetes objects Gatehouse reads, in their JSON form as the
// API server (or a YAML file) holds them. Only the fields Gatehouse acts on
// are typed; everything else is carried along untouched in `spec`.

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  creationTimestamp?: string;
  uid?: string;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** Any object as read from a file or the API server. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

// ---------------------------------------------------------------- core/v1

export interface Namespace extends KubeObject { kind: 'Namespace' }

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}

export interface Service extends KubeObject {
  kind: 'Service';
  spec: {
    type?: string;
    clusterIP?: string;
    externalName?: string;
    selector?: Record<string, string>;
    ports?: ServicePort[];
  };
}

export interface EndpointSlice extends KubeObject {
  kind: 'EndpointSlice';
  addressType?: string;
  ports?: { name?: string; port?: number; protocol?: string; appProtocol?: string }[] | null;
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean } }[];
}

export interface Secret extends KubeObject {
  kind: 'Secret';
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export interface ConfigMap extends KubeObject {
  kind: 'ConfigMap';
  data?: Record<string, string>;
}

// ---------------------------------------------------------------- references

export interface ParentReference {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface BackendObjectReference {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
}

export interface SecretObjectReference {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
}

export interface LocalObjectReference {
  group: string;
  kind: string;
  name: string;
}

// ---------------------------------------------------------------- GatewayClass

export interface GatewayClass extends KubeObject {
  kind: 'GatewayClass';
  spec: {
    controllerName: string;
    parametersRef?: { group: string; kind: string; name: string; namespace?: string };
    description?: string;
  };
}

// ---------------------------------------------------------------- Gateway

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

export interface RouteGroupKind { group?: string; kind: string }

export interface AllowedRoutes {
  namespaces?: { from?: 'All' | 'Same' | 'Selector' | 'None'; selector?: LabelSelector };
  kinds?: RouteGroupKind[];
}

export interface GatewayTLSConfig {
  mode?: 'Terminate' | 'Passthrough';
  certificateRefs?: SecretObjectReference[];
  options?: Record<string, string>;
}

export interface Listener {
  name: string;
  hostname?: string;
  port: number;
  protocol: string;
  tls?: GatewayTLSConfig;
  allowedRoutes?: AllowedRoutes;
}

export interface GatewayAddress { type?: string; value?: string }

export interface Gateway extends KubeObject {
  kind: 'Gateway';
  spec: {
    gatewayClassName: string;
    listeners: Listener[];
    addresses?: GatewayAddress[];
    infrastructure?: {
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
      parametersRef?: LocalObjectReference;
    };
    allowedListeners?: AllowedListeners;
    tls?: unknown;
  };
}

/** Which namespaces' ListenerSets a Gateway takes in (the CRD defaults `from` to None). */
export interface AllowedListeners {
  namespaces?: { from?: 'All' | 'Same' | 'Selector' | 'None'; selector?: LabelSelector };
}

// ---------------------------------------------------------------- ListenerSet

/** The experimental group of the Gateway API v1.4 XListenerSet. */
export const EXPERIMENTAL_GROUP = 'gateway.networking.x-k8s.io';

/**
 * Listeners added to a Gateway from another object (GEP-1713): ListenerSet
 * (gateway.networking.k8s.io/v1) or the same under its Gateway API v1.4
 * name, XListenerSet (gateway.networking.x-k8s.io/v1alpha1), whose
 * listeners may leave `port` at 0.
 */
export interface ListenerSet extends KubeObject {
  kind: 'ListenerSet' | 'XListenerSet';
  spec: {
    parentRef: { group?: string; kind?: string; name: string; namespace?: string };
    listeners: Listener[];
  };
}

// ---------------------------------------------------------------- HTTPRoute

export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';
export type StringMatchType = 'Exact' | 'RegularExpression';

export interface HTTPPathMatch { type?: PathMatchType; value?: string }
export interface HTTPHeaderMatch { type?: StringMatchType; name: string; value: string }
export interface HTTPQueryParamMatch { type?: StringMatchType; name: string; value: string }

export interface HTTPRouteMatch {
  path?: HTTPPathMatch;
  headers?: HTTPHeaderMatch[];
  queryParams?: HTTPQueryParamMatch[];
  method?: string;
}

export interface HTTPHeader { name: string; value: string }

export interface HTTPHeaderFilter {
  set?: HTTPHeader[];
  add?: HTTPHeader[];
  remove?: string[];
}

export interface HTTPPathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface HTTPRequestRedirectFilter {
  scheme?: 'http' | 'https';
  hostname?: string;
  path?: HTTPPathModifier;
  port?: number;
  statusCode?: number;
}

export interface HTTPURLRewriteFilter {
  hostname?: string;
  path?: HTTPPathModifier;
}

export interface HTTPRouteFilter {
  type: string;
  requestHeaderModifier?: HTTPHeaderFilter;
  responseHeaderModifier?: HTTPHeaderFilter;
  requestRedirect?: HTTPRequestRedirectFilter;
  urlRewrite?: HTTPURLRewriteFilter;
  requestMirror?: { backendRef: BackendObjectReference; percent?: number; fraction?: { numerator: number; denominator?: number } };
  extensionRef?: LocalObjectReference;
  cors?: HTTPCORSFilter;
}

/** The CORS filter (GEP-1767); names as in the CRD. */
export interface HTTPCORSFilter {
  allowOrigins?: string[];
  allowMethods?: string[];
  allowHeaders?: string[];
  exposeHeaders?: string[];
  /** Seconds; the CRD defaults it to 5. */
  maxAge?: number;
  allowCredentials?: boolean;
}

/** A rule's retry policy (GEP-1731). */
export interface HTTPRouteRetry {
  codes?: number[];
  attempts?: number;
  /** A Gateway API duration. */
  backoff?: string;
}

export interface HTTPBackendRef extends BackendObjectReference {
  weight?: number;
  filters?: HTTPRouteFilter[];
}

export interface HTTPRouteRule {
  name?: string;
  matches?: HTTPRouteMatch[];
  filters?: HTTPRouteFilter[];
  backendRefs?: HTTPBackendRef[];
  timeouts?: { request?: string; backendRequest?: string };
  retry?: HTTPRouteRetry;
  sessionPersistence?: unknown;
}

export interface HTTPRoute extends KubeObject {
  kind: 'HTTPRoute';
  spec: {
    parentRefs?: ParentReference[];
    hostnames?: string[];
    rules?: HTTPRouteRule[];
  };
}

// ---------------------------------------------------------------- GRPCRoute

export interface GRPCMethodMatch {
  type?: 'Exact' | 'RegularExpression';
  service?: string;
  method?: string;
}

export interface GRPCRouteMatch {
  method?: GRPCMethodMatch;
  headers?: HTTPHeaderMatch[];
}

export interface GRPCRouteRule {
  name?: string;
  matches?: GRPCRouteMatch[];
  /** RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, ExtensionRef: HTTPRoute's filters of those types. */
  filters?: HTTPRouteFilter[];
  backendRefs?: HTTPBackendRef[];
  sessionPersistence?: unknown;
}

export interface GRPCRoute extends KubeObject {
  kind: 'GRPCRoute';
  spec: {
    parentRefs?: ParentReference[];
    hostnames?: string[];
    rules?: GRPCRouteRule[];
  };
}

// ---------------------------------------------------------------- ReferenceGrant

export interface ReferenceGrant extends KubeObject {
  kind: 'ReferenceGrant';
  spec: {
    from: { group: string; kind: string; namespace: string }[];
    to: { group: string; kind: string; name?: string }[];
  };
}

// ---------------------------------------------------------------- status shapes

export interface RouteParentStatus {
  parentRef: ParentReference;
  controllerName: string;
  conditions: Condition[];
}

export interface ListenerStatus {
  name: string;
  supportedKinds: RouteGroupKind[];
  attachedRoutes: number;
  conditions: Condition[];
}

export interface GatewayStatus {
  addresses?: { type: string; value: string }[];
  conditions: Condition[];
  listeners: ListenerStatus[];
}

// ---------------------------------------------------------------- Gatehouse policies (gatehouse.dev)

export const GATEHOUSE_GROUP = 'gatehouse.dev';

/** A policy's reference to what it applies to (GEP-713 LocalPolicyTargetReferenceWithSectionName). */
export interface PolicyTargetReference {
  group: string;
  kind: string;
  name: string;
  sectionName?: string;
}

/** A Kubernetes quantity as the CRDs take it: a count, or `64Ki`, `10Mi`, `1G`. */
export type Quantity = number | string;

export interface ClientTrafficPolicySpec {
  targetRefs: PolicyTargetReference[];
  clientIPDetection?: {
    xForwardedFor?: { numTrustedHops?: number; trustedCIDRs?: string[] };
    customHeader?: { name: string; failClosed?: boolean };
  };
  proxyProtocol?: { optional?: boolean };
  timeout?: { http?: { idleTimeout?: string; requestReceivedTimeout?: string; requestHeaderTimeout?: string } };
  connection?: { connectionLimit?: { value: number }; bufferLimit?: Quantity };
  maxRequestBodySize?: Quantity;
  http1?: { maxHeaderBytes?: number; maxHeaderCount?: number };
  http2?: { maxConcurrentStreams?: number; initialStreamWindowSize?: Quantity; initialConnectionWindowSize?: Quantity };
}

export interface ClientTrafficPolicy extends KubeObject {
  kind: 'ClientTrafficPolicy';
  spec: ClientTrafficPolicySpec;
}

/** Durations are Gateway API duration strings (`5s`, `1m30s`, `250ms`). */
export interface BackendTrafficPolicySpec {
  targetRefs: PolicyTargetReference[];
  loadBalancer?: {
    type: 'RoundRobin' | 'LeastRequest' | 'Random' | 'ConsistentHash';
    consistentHash?: {
      type: 'Header' | 'Cookie' | 'SourceIP';
      header?: { name: string };
      cookie?: { name: string; ttl?: string };
    };
    slowStart?: { window: string };
  };
  timeout?: { tcp?: { connectTimeout?: string }; http?: { requestTimeout?: string; connectionIdleTimeout?: string } };
  retry?: {
    numRetries?: number;
    perRetry?: { timeout?: string; backOff?: { baseInterval?: string; maxInterval?: string } };
    retryOn?: { httpStatusCodes?: number[]; triggers?: string[] };
    budget?: { percent?: number; minRetryConcurrency?: number };
  };
  circuitBreaker?: { maxConnections?: number; maxPendingRequests?: number; maxParallelRequests?: number; maxParallelRetries?: number };
  healthCheck?: {
    passive?: {
      consecutive5XxErrors?: number;
      consecutiveGatewayErrors?: number;
      consecutiveLocalOriginFailures?: number;
      interval?: string;
      baseEjectionTime?: string;
      maxEjectionPercent?: number;
    };
    active?: {
      type: 'HTTP';
      interval?: string;
      timeout?: string;
      unhealthyThreshold?: number;
      healthyThreshold?: number;
      http?: { path: string; method?: string; expectedStatuses?: number[] };
    };
  };
}

export interface BackendTrafficPolicy extends KubeObject {
  kind: 'BackendTrafficPolicy';
  spec: BackendTrafficPolicySpec;
}

/** Either of Gatehouse's policy kinds. */
export type TrafficPolicy = ClientTrafficPolicy | BackendTrafficPolicy;
