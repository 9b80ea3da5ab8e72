// Limits that bound what one client can make the proxy hold: header memory,
// slow senders (slowloris), idle keep-alive sockets, stuck TLS handshakes.

export interface RequestLimits {
  /** Total bytes of the request line and headers (node's `maxHeaderSize`); beyond it: 431. */
  maxHeaderBytes: number;
  /** Header lines per request; beyond it: 431. */
  maxHeaderCount: number;
  /** Time allowed to receive the complete request head; then 408 and close. */
  headersTimeoutMs: number;
  /** Time allowed to receive the complete request, body included; 0 disables. */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection is kept open. */
  keepAliveTimeoutMs: number;
  /** Time allowed for a TLS handshake. */
  tlsHandshakeTimeoutMs: number;
  /**
   * How long a removed listener waits for in-flight requests before its
   * remaining connections are cut.
   */
  drainTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<RequestLimits> = Object.freeze({
  maxHeaderBytes: 16 * 1024,
  maxHeaderCount: 100,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 60_000,
  tlsHandshakeTimeoutMs: 10_000,
  drainTimeoutMs: 30_000,
});

export function resolveLimits(overrides: Partial<RequestLimits> | undefined): RequestLimits {
  const limits: RequestLimits = { ...DEFAULT_LIMITS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`limits.${name} must be a non-negative integer, got ${String(value)}`);
    }
  }
  if (limits.maxHeaderBytes === 0 || limits.maxHeaderCount === 0 || limits.headersTimeoutMs === 0) {
    throw new RangeError('limits.maxHeaderBytes, maxHeaderCount and headersTimeoutMs must be positive');
  }
  // node refuses a request timeout shorter than the headers timeout.
  if (limits.requestTimeoutMs !== 0 && limits.requestTimeoutMs < limits.headersTimeoutMs) {
    throw new RangeError('limits.requestTimeoutMs must be 0 or at least headersTimeoutMs');
  }
  return limits;
}
