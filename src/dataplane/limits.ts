// Limits that bound what one client, one backend or one shutdown can make
// the proxy hold or wait for: header memory, slow senders (slowloris) and
// slow readers, idle sockets, stuck TLS handshakes, backends that never
// answer, connection and queue sizes. Every wait the data plane makes is
// bounded by one of these; each has a default a production edge proxy
// would choose (Envoy's edge recommendations and nginx's defaults are the
// reference, cited per field) and a `serve` flag to override it.

export interface RequestLimits {
  /** Total bytes of the request line and headers (node's `maxHeaderSize`); beyond it: 431. */
  maxHeaderBytes: number;
  /** Header lines per request; beyond it: 431. */
  maxHeaderCount: number;
  /** Time allowed to receive the complete request head; then 408 and close. */
  headersTimeoutMs: number;
  /**
   * Time allowed to receive the complete request, body included; 0
   * disables. Long, because uploads of multi-gigabyte images are the norm
   * here: the body idle timeout is what catches a stalled client.
   */
  requestTimeoutMs: number;
  /**
   * Longest pause between two reads of a request body (nginx's
   * `client_body_timeout`); then 408 if nothing was answered yet, else the
   * connection is cut, and the backend connection is released.
   */
  requestBodyIdleTimeoutMs: number;
  /**
   * Longest time a response write may wait on a client that does not read
   * (nginx's `send_timeout`); then the client connection is cut and the
   * backend connection released.
   */
  responseWriteTimeoutMs: number;
  /** How long an idle keep-alive connection is kept open. */
  keepAliveTimeoutMs: number;
  /** Time allowed for a TLS handshake. */
  tlsHandshakeTimeoutMs: number;
  /**
   * Client connections one listener of one data plane (worker thread)
   * holds at once (net.Server.maxConnections); beyond it new ones are
   * closed at accept, logged at most once per 10 s.
   */
  maxClientConnections: number;
  /**
   * Time allowed to open a TCP connection to a backend (Envoy's cluster
   * default); then 503. It also bounds how long a request waits in its
   * cluster's queue for a connection.
   */
  upstreamConnectTimeoutMs: number;
  /**
   * Per try: time from the request being sent to the backend to the
   * response head (nginx's `proxy_read_timeout`); then 504. A route's
   * `timeouts.backendRequest`, or else its `timeouts.request`, replaces it
   * for that route.
   */
  upstreamResponseTimeoutMs: number;
  /**
   * Longest pause of a backend: between two reads of its response body
   * (then the response is cut), or in reading an upload it was sent
   * (then 504 if nothing was answered yet).
   */
  upstreamIdleTimeoutMs: number;
  /**
   * Request body bytes kept in memory, per request on a route that mirrors
   * or retries, so that the body can be sent again (Envoy buffers such
   * bodies too, up to its per-request buffer limit). A longer body is not
   * mirrored (the copy is dropped and counted) and not retried once any of
   * it went to the backend; the request itself is streamed as ever. 0 keeps
   * none. Requests without a body are not affected.
   */
  maxReplayBodyBytes: number;
  /**
   * Mirror copies in flight to one cluster, per worker thread; as many
   * more wait, each no longer than upstreamConnectTimeoutMs. Beyond, a
   * copy is dropped and counted (logged at most once a second per
   * cluster): a slow or dead mirror never holds the requests it copies.
   * Each copy is bounded by the route's timeouts, else by
   * upstreamResponseTimeoutMs for the whole exchange.
   */
  maxMirrorRequestsPerCluster: number;
  /**
   * Open connections to the endpoints of one cluster, counted per worker
   * thread (Envoy's circuit-breaker default, which Envoy counts per
   * process); beyond it requests wait in the cluster's queue.
   */
  maxUpstreamConnectionsPerCluster: number;
  /**
   * Requests waiting for a connection to one cluster, per worker thread
   * (Envoy's default); beyond it: 503 at once, logged at most once a second.
   */
  maxPendingRequestsPerCluster: number;
  /**
   * How long a removed listener, or the whole gateway at shutdown, waits
   * for in-flight requests before its remaining connections are cut.
   */
  drainTimeoutMs: number;
  /**
   * Streams one HTTP/2 connection may have open at once
   * (SETTINGS_MAX_CONCURRENT_STREAMS; Envoy's edge recommendation is 100,
   * nginx's default 128); a stream beyond is refused (RST_STREAM
   * REFUSED_STREAM), and a client that keeps opening them is sent GOAWAY.
   * The HTTP/1 limits apply to each stream as to a request: header bytes
   * (also advertised as SETTINGS_MAX_HEADER_LIST_SIZE) and count, and the
   * request, body idle and response write timeouts.
   */
  http2MaxConcurrentStreams: number;
  /**
   * Streams one HTTP/2 connection may reset (RST_STREAM from the client)
   * before their answer ended, per 10 s; beyond: GOAWAY
   * ENHANCE_YOUR_CALM and the connection closes. Bounds the "rapid reset"
   * attack (CVE-2023-44487), where each stream costs the proxy a backend
   * request and the client nothing. A browser cancels a few streams when
   * the user navigates away; 200 in 10 s is no browser.
   */
  http2MaxStreamResets: number;
  /**
   * PING and SETTINGS frames one HTTP/2 connection may send per 10 s;
   * beyond: GOAWAY ENHANCE_YOUR_CALM. Each one owes an acknowledgement;
   * a client that does not read them is also cut by nghttp2's own
   * flood detection (its outbound queue), this bounds one that does.
   */
  http2MaxControlFrames: number;
  /**
   * Memory nghttp2 may hold for one HTTP/2 connection, MiB (node's
   * maxSessionMemory: header compression tables, frames queued in and
   * out); beyond it new streams are refused with ENHANCE_YOUR_CALM.
   */
  http2MaxSessionMemoryMiB: number;
  /**
   * Longest time a WebSocket (an HTTP/1.1 connection upgraded to a tunnel
   * between client and backend) may carry no byte either way; then both
   * sides are closed. 0: none, the tunnel lasts until either side closes
   * it. Long by default, as nginx's proxy_read_timeout is often raised
   * for consoles: a browser tab left open on a VNC console or a log stream
   * may be quiet for many minutes. An open WebSocket counts against
   * maxClientConnections; at shutdown, or when its listener is removed, it
   * gets drainTimeoutMs like any connection and is then cut.
   */
  websocketIdleTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<RequestLimits> = Object.freeze({
  maxHeaderBytes: 16 * 1024,
  maxHeaderCount: 100,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 3_600_000,
  requestBodyIdleTimeoutMs: 60_000,
  responseWriteTimeoutMs: 60_000,
  keepAliveTimeoutMs: 60_000,
  tlsHandshakeTimeoutMs: 10_000,
  maxClientConnections: 50_000,
  upstreamConnectTimeoutMs: 5_000,
  upstreamResponseTimeoutMs: 60_000,
  upstreamIdleTimeoutMs: 60_000,
  maxReplayBodyBytes: 64 * 1024,
  maxMirrorRequestsPerCluster: 64,
  maxUpstreamConnectionsPerCluster: 1024,
  maxPendingRequestsPerCluster: 1024,
  drainTimeoutMs: 30_000,
  http2MaxConcurrentStreams: 100,
  http2MaxStreamResets: 200,
  http2MaxControlFrames: 1000,
  http2MaxSessionMemoryMiB: 10,
  websocketIdleTimeoutMs: 3_600_000,
});

/** How a limit is written on the command line: a duration (`10s`, `1m30s`, `500ms`) or a count. */
export type LimitKind = 'duration' | 'count';

/** The `serve` flag of each limit; the CLI's options and usage text are made from this table. */
export const LIMIT_FLAGS: readonly { flag: string; field: keyof RequestLimits; kind: LimitKind; help: string }[] = [
  { flag: 'max-header-bytes', field: 'maxHeaderBytes', kind: 'count', help: 'request line and headers, bytes (431 beyond)' },
  { flag: 'max-header-count', field: 'maxHeaderCount', kind: 'count', help: 'header lines per request (431 beyond)' },
  { flag: 'headers-timeout', field: 'headersTimeoutMs', kind: 'duration', help: 'to receive a request head (408)' },
  { flag: 'request-timeout', field: 'requestTimeoutMs', kind: 'duration', help: 'to receive a whole request, body included; 0 disables' },
  { flag: 'request-body-idle-timeout', field: 'requestBodyIdleTimeoutMs', kind: 'duration', help: 'longest pause in a request body (408)' },
  { flag: 'response-write-timeout', field: 'responseWriteTimeoutMs', kind: 'duration', help: 'longest wait on a client that does not read' },
  { flag: 'keep-alive-timeout', field: 'keepAliveTimeoutMs', kind: 'duration', help: 'idle client connection' },
  { flag: 'tls-handshake-timeout', field: 'tlsHandshakeTimeoutMs', kind: 'duration', help: 'TLS handshake' },
  { flag: 'max-client-connections', field: 'maxClientConnections', kind: 'count', help: 'client connections per listener per worker' },
  { flag: 'upstream-connect-timeout', field: 'upstreamConnectTimeoutMs', kind: 'duration', help: 'TCP connect to a backend (503)' },
  { flag: 'upstream-response-timeout', field: 'upstreamResponseTimeoutMs', kind: 'duration', help: 'per try, request sent to response head (504)' },
  { flag: 'upstream-idle-timeout', field: 'upstreamIdleTimeoutMs', kind: 'duration', help: 'longest pause in a response body' },
  { flag: 'max-replay-body-bytes', field: 'maxReplayBodyBytes', kind: 'count', help: 'request body kept to mirror or retry it, bytes (not mirrored or retried beyond)' },
  { flag: 'max-mirror-requests', field: 'maxMirrorRequestsPerCluster', kind: 'count', help: 'mirror copies in flight per cluster per worker, as many waiting (dropped beyond)' },
  { flag: 'max-upstream-connections', field: 'maxUpstreamConnectionsPerCluster', kind: 'count', help: 'connections per backend cluster per worker' },
  { flag: 'max-pending-requests', field: 'maxPendingRequestsPerCluster', kind: 'count', help: 'requests queued per backend cluster per worker (503 beyond)' },
  { flag: 'drain-timeout', field: 'drainTimeoutMs', kind: 'duration', help: 'in-flight requests of a removed listener or at shutdown' },
  { flag: 'http2-max-streams', field: 'http2MaxConcurrentStreams', kind: 'count', help: 'concurrent streams per HTTP/2 connection (refused beyond)' },
  { flag: 'http2-max-stream-resets', field: 'http2MaxStreamResets', kind: 'count', help: 'streams a client may reset per HTTP/2 connection per 10 s (GOAWAY beyond)' },
  { flag: 'http2-max-control-frames', field: 'http2MaxControlFrames', kind: 'count', help: 'PING and SETTINGS frames per HTTP/2 connection per 10 s (GOAWAY beyond)' },
  { flag: 'http2-max-session-memory', field: 'http2MaxSessionMemoryMiB', kind: 'count', help: 'MiB nghttp2 may hold per HTTP/2 connection (new streams refused beyond)' },
  { flag: 'websocket-idle-timeout', field: 'websocketIdleTimeoutMs', kind: 'duration', help: 'an open WebSocket with no byte either way; 0 disables' },
];

/** Limits that may be 0 to switch them off; the others must be positive. */
const MAY_BE_ZERO: ReadonlySet<keyof RequestLimits> = new Set(['requestTimeoutMs', 'drainTimeoutMs', 'maxReplayBodyBytes', 'websocketIdleTimeoutMs']);

export function resolveLimits(overrides: Partial<RequestLimits> | undefined): RequestLimits {
  const limits: RequestLimits = { ...DEFAULT_LIMITS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`limits.${name} must be a non-negative integer, got ${String(value)}`);
    }
    if (value === 0 && !MAY_BE_ZERO.has(name as keyof RequestLimits)) {
      throw new RangeError(`limits.${name} must be positive: every wait and every queue has a bound`);
    }
  }
  if (limits.requestTimeoutMs !== 0 && limits.requestTimeoutMs < limits.headersTimeoutMs) {
    throw new RangeError('limits.requestTimeoutMs must be 0 or at least headersTimeoutMs');
  }
  return limits;
}
