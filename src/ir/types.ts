// The IR: what the data plane is told to do. Data-plane neutral, plain JSON
// (it crosses process boundaries to workers and remote proxies), versioned.
// The data plane never sees a Gateway API object, only this.

export const IR_VERSION = 1;

export interface IR {
  version: typeof IR_VERSION;
  /** One entry per socket to listen on. */
  listeners: IRListener[];
  /** Upstream clusters by name; rules refer to them by name. */
  clusters: Record<string, Cluster>;
}

/**
 * A socket: one address and port with one protocol. Several Gateway
 * listeners that share a port (different hostnames) become several
 * `gatewayListeners` of one IRListener.
 */
export interface IRListener {
  /**
   * Stable identity across configs, `address:port`, used to diff sockets;
   * in Kubernetes mode `namespace/gateway@address:port`, since each
   * Gateway has proxies of its own (irForGateway gives them `address:port`).
   */
  key: string;
  /** IP to bind; '0.0.0.0' or '::' for all interfaces. */
  address: string;
  port: number;
  protocol: 'HTTP' | 'HTTPS' | L4Protocol;
  /**
   * HTTPS: certificates chosen by SNI; clientValidation when clients must (or may) present a certificate.
   * TLS: the certificates of its Terminate listeners.
   */
  tls?: { certificates: TLSCertificate[]; clientValidation?: ClientValidation };
  /** TLS, TCP, UDP: where connections (datagrams) go; gatewayListeners then have no virtual hosts. */
  l4?: L4Routes;
  /**
   * The Gateway listeners on this socket, most specific hostname first
   * (exact, then wildcards longest first, then no hostname). A request is
   * handled by the first whose hostname matches its Host: listener
   * isolation, as the spec asks.
   */
  gatewayListeners: GatewayListenerIR[];
  /** Set when a ClientTrafficPolicy applies to the socket; absent, the data plane's defaults. */
  client?: ClientSettings;
}

/**
 * How a socket treats its clients (a ClientTrafficPolicy). A socket has one
 * set: the Gateway listeners sharing its port share it.
 */
export interface ClientSettings {
  /** `namespace/name` of the policy, for logs. */
  policy: string;
  /**
   * Where the client address comes from; absent: the peer (or the PROXY
   * protocol source). The X-Forwarded-For the gateway sends still ends with
   * the peer, as Envoy's does: the address found is sent as X-Real-IP.
   */
  clientIP?: {
    /** Skip numTrustedHops - 1 entries from the right of X-Forwarded-For, or the entries inside trustedCIDRs. */
    xForwardedFor?: { numTrustedHops?: number; trustedCIDRs?: string[] };
    /** A header (lower-cased name) a proxy in front sets; failClosed: 403 when it is missing or no address. */
    customHeader?: { name: string; failClosed: boolean };
  };
  /** Read a PROXY protocol v1/v2 header first; optional: connections without one are served too. */
  proxyProtocol?: { optional: boolean };
  /** Overrides of the data plane's limits (src/dataplane/limits.ts) for this socket. */
  limits?: {
    keepAliveTimeoutMs?: number;
    requestTimeoutMs?: number;
    headersTimeoutMs?: number;
    maxClientConnections?: number;
    maxReplayBodyBytes?: number;
    maxHeaderBytes?: number;
    maxHeaderCount?: number;
    http2MaxConcurrentStreams?: number;
  };
  /** Larger request bodies get 413; absent: no limit. */
  maxRequestBodyBytes?: number;
  /** HTTP/2 flow-control windows advertised to clients, bytes. */
  http2?: { initialStreamWindowSize?: number; initialConnectionWindowSize?: number };
}

export type L4Protocol = 'TLS' | 'TCP' | 'UDP';

/**
 * The routes of a TLS, TCP or UDP socket. TCP and UDP have one route
 * (the first attached, `hostname` '*'); TLS picks by SNI, most specific
 * hostname first, with the same wildcard rules as HTTPS.
 */
export interface L4Routes {
  /** Most specific hostname first. */
  routes: L4Route[];
}

export interface L4Route {
  /** `namespace/route/rule-index`, for logs. */
  name: string;
  /** Exact name, `*.suffix`, or `*` (any SNI, or none). */
  hostname: string;
  /** TLS only: Passthrough splices the client's TLS to the backend; Terminate ends it here (tls.certificates). */
  mode?: 'Passthrough' | 'Terminate';
  /** Weighted backends; a null cluster (invalid reference) gets its share of connections refused. */
  backends: { weight: number; cluster: string | null }[];
}

export interface TLSCertificate {
  /** SNI names this certificate serves: exact names, `*.suffix` wildcards, or `*` for any. */
  serverNames: string[];
  certChain: string;
  privateKey: string;
}

/**
 * Client certificates on an HTTPS socket (Gateway `tls.frontend`, GEP-91).
 * AllowValidOnly: the handshake fails without a certificate that chains to
 * `caCertificates`; AllowInsecureFallback: one is asked for, and any or
 * none is let through.
 */
export interface ClientValidation {
  /** PEM, one or more CA certificates. */
  caCertificates: string;
  mode: 'AllowValidOnly' | 'AllowInsecureFallback';
}

export interface GatewayListenerIR {
  /** `namespace/gateway/listener`, for logs and metrics. */
  name: string;
  /** The listener's hostname (`foo.example.com`, `*.example.com`), or null for any. */
  hostname: string | null;
  /**
   * Virtual hosts, most specific first: exact hostnames, then wildcards
   * longest first, then `*`. The first whose hostname matches the request
   * host is used.
   */
  virtualHosts: VirtualHost[];
}

export interface VirtualHost {
  /** Exact name, `*.suffix`, or `*`. */
  hostname: string;
  /** In Gateway API precedence order: the first whose match holds wins. */
  routes: RouteEntry[];
}

export interface RouteEntry {
  /** `namespace/route/rule-index/match-index` (rule name when set), for logs and metrics. */
  name: string;
  match: RouteMatch;
  /** Filters applied before the backend is chosen, in spec order. */
  filters: Filter[];
  /** Weighted backends; empty means no backends: 500. */
  backends: WeightedBackend[];
  timeouts?: { requestMs?: number; backendRequestMs?: number };
  /** Set when the rule asks for retries (HTTPRoute `retry`). */
  retry?: RetryPolicy;
  /** Set when the rule asks for session persistence (HTTPRoute `sessionPersistence`). */
  sessionPersistence?: SessionPersistence;
}

/**
 * HTTPRoute `sessionPersistence` (GEP-1619). The data plane hands the
 * client an opaque token naming the endpoint it chose, in a cookie or a
 * response header, and sends requests that bring it back to that endpoint
 * while the endpoint is still in the cluster and the token has not timed
 * out (src/dataplane/upstream/sticky.ts).
 */
export interface SessionPersistence {
  type: 'Cookie' | 'Header';
  /** The cookie's or header's name. */
  name: string;
  /** Tokens of one scope are not honoured in another: `namespace/route/rule`. */
  scope: string;
  /** Cookie: its Path attribute. */
  path?: string;
  /** Cookie: Permanent sends Max-Age (absoluteTimeoutMs); Session sends none. */
  lifetime?: 'Session' | 'Permanent';
  /** A session ends this long after it began, ms. */
  absoluteTimeoutMs?: number;
  /** A session ends after this long without a request, ms. */
  idleTimeoutMs?: number;
}

/**
 * HTTPRoute `retry`. A try that fails this way is made again, up to
 * `attempts` more times: a response with one of `codes`, a backend that
 * cannot be reached or drops the connection, a try that times out
 * (`timeouts.backendRequest`). What may be retried for which method, and
 * how much of a request body is kept to send again, is the data plane's
 * (src/dataplane/http/retry.ts).
 */
export interface RetryPolicy {
  /** Response status codes (400-599) that are retried; may be empty. */
  codes: number[];
  /** Retries after the first try. */
  attempts: number;
  /** The least wait before the first retry, ms; later ones wait longer. Absent: the data plane's default. */
  backoffMs?: number;
}

export interface RouteMatch {
  path: { type: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
  method?: string;
  headers: StringMatch[];
  queryParams: StringMatch[];
}

export interface StringMatch {
  /** Header names lower-cased; query parameter names exact. */
  name: string;
  type: 'Exact' | 'RegularExpression';
  value: string;
}

export type Filter =
  | { type: 'RequestHeaderModifier'; set: Header[]; add: Header[]; remove: string[] }
  | { type: 'ResponseHeaderModifier'; set: Header[]; add: Header[]; remove: string[] }
  | { type: 'RequestRedirect'; scheme?: string; hostname?: string; port?: number; path?: PathModifier; statusCode: number }
  | { type: 'URLRewrite'; hostname?: string; path?: PathModifier }
  /**
   * A copy of `numerator` out of every `denominator` requests also goes to
   * one endpoint of `cluster`; its answers are thrown away.
   */
  | { type: 'RequestMirror'; cluster: string; numerator: number; denominator: number }
  | CORSFilter;

/**
 * Cross-origin resource sharing, answered by the gateway (GEP-1767).
 * Origins are as written (`https://a.example`, `https://*.example:8443`,
 * `*`); names and methods as written; `'*'` alone means any.
 */
export interface CORSFilter {
  type: 'CORS';
  allowOrigins: string[];
  allowMethods: string[];
  allowHeaders: string[];
  exposeHeaders: string[];
  maxAgeSeconds: number;
  allowCredentials: boolean;
}

export interface Header { name: string; value: string }

export type PathModifier =
  | { type: 'ReplaceFullPath'; value: string }
  /** `prefix` is the route's matched PathPrefix, the part to be replaced. */
  | { type: 'ReplacePrefixMatch'; value: string; prefix: string };

export interface WeightedBackend {
  weight: number;
  /** Cluster name, or null when the reference is invalid: its share of requests gets a 500. */
  cluster: string | null;
  /** Filters of this backendRef only (HTTPBackendRef.filters). */
  filters: Filter[];
}

export interface Cluster {
  name: string;
  /**
   * `http1`: HTTP/1.1; `h2c`: cleartext HTTP/2 with prior knowledge (a
   * Service port with appProtocol `kubernetes.io/h2c`).
   */
  protocol: 'http1' | 'h2c';
  endpoints: Endpoint[];
  /** Set when the backend is reached over TLS (a BackendTLSPolicy targets it). */
  tls?: UpstreamTLS;
  /**
   * How requests are spread and guarded (a BackendTrafficPolicy, made by
   * src/translate/backend-traffic-policy.ts). Absent: round robin, the
   * data plane's limits, no health checks: today's fast path.
   */
  policy?: ClusterPolicy;
}

/** What a BackendTrafficPolicy asks of a cluster; every part optional, absent meaning the default. */
export interface ClusterPolicy {
  loadBalancer?: LoadBalancerIR;
  /** A new endpoint's share ramps from 10% to full over this long, ms (round robin, random, least request). */
  slowStartWindowMs?: number;
  /** Replaces the data plane's upstreamConnectTimeoutMs for this cluster. */
  connectTimeoutMs?: number;
  /** A request's deadline when its route sets none (timeout.http.requestTimeout), ms. */
  requestTimeoutMs?: number;
  /** How long an idle upstream connection is kept (timeout.http.connectionIdleTimeout), ms. */
  connectionIdleTimeoutMs?: number;
  circuitBreaker?: CircuitBreakerIR;
  outlierDetection?: OutlierDetectionIR;
  healthCheck?: ActiveHealthCheckIR;
  retry?: ClusterRetryIR;
}

export type LoadBalancerIR =
  | { type: 'RoundRobin' | 'LeastRequest' | 'Random' }
  | { type: 'ConsistentHash'; hashOn: HashOnIR };

/** What a consistent-hash balancer hashes. */
export type HashOnIR =
  | { type: 'Header'; name: string }
  /** The gateway sets the cookie (with Max-Age `ttlMs` when given) on a request that lacks it. */
  | { type: 'Cookie'; name: string; ttlMs?: number }
  | { type: 'SourceIP' };

/** Per cluster and data plane (worker thread); absent fields: no limit beyond the data plane's own. */
export interface CircuitBreakerIR {
  maxConnections?: number;
  maxPendingRequests?: number;
  maxParallelRequests?: number;
  maxParallelRetries?: number;
}

/** Passive health: endpoints that fail in a row are left out for a while. A zero count turns that check off. */
export interface OutlierDetectionIR {
  consecutive5xx: number;
  consecutiveGatewayErrors: number;
  consecutiveLocalOriginFailures: number;
  /** How often ejections are reviewed (Envoy's interval); ends of ejection are also noticed on use. */
  intervalMs: number;
  /** An ejection lasts this times the number of times the endpoint was ejected before, plus one (at most 300 s). */
  baseEjectionTimeMs: number;
  /** At most this share of the cluster's endpoints is ejected at once (at least one may be). */
  maxEjectionPercent: number;
}

export interface ActiveHealthCheckIR {
  type: 'HTTP';
  intervalMs: number;
  /** Each check's deadline: connect, send, and the response head. */
  timeoutMs: number;
  unhealthyThreshold: number;
  healthyThreshold: number;
  path: string;
  method: string;
  /** Statuses that count as healthy; empty: 200-399. */
  expectedStatuses: number[];
}

/**
 * The policy's retries. A route with its own `retry` keeps its codes,
 * attempts and backoff, and takes from here what it does not say (per-try
 * timeout, the most backoff, the budget); a route without one retries as
 * this says.
 */
export interface ClusterRetryIR {
  numRetries: number;
  perTryTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  triggers: RetryTrigger[];
  /** With the `retriable-status-codes` trigger. */
  statusCodes: number[];
  /** Retries in flight at most `percent`% of the cluster's active requests, and never fewer than minRetryConcurrency allowed. */
  budget?: { percent: number; minRetryConcurrency: number };
}

export type RetryTrigger = '5xx' | 'gateway-error' | 'reset' | 'connect-failure' | 'retriable-4xx' | 'refused-stream' | 'retriable-status-codes';

/**
 * TLS to a backend (BackendTLSPolicy, GEP-1897). The data plane sends
 * `serverName` as SNI and verifies the backend's certificate chain against
 * `caCertificates` (or the system's roots when absent); the name verified
 * is `serverName` unless `subjectAltNames` is given, then any one of those.
 */
export interface UpstreamTLS {
  serverName: string;
  /** PEM bundle of trusted CA certificates; absent: the system's roots. */
  caCertificates?: string;
  /** Hostname: a DNS name (`*.` wildcards allowed as in RFC 6125); URI: an exact URI SAN. */
  subjectAltNames: { type: 'Hostname' | 'URI'; value: string }[];
  /** Presented to the backend when it asks (Gateway `spec.tls.backend.clientCertificateRef`). */
  clientCertificate?: { certChain: string; privateKey: string };
}

export interface Endpoint { address: string; port: number }
