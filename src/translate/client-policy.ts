// ClientTrafficPolicy spec -> the IR's ClientSettings of a listener socket.
// The schema has checked types and patterns; what is left is what it
// cannot say: quantities in range, CIDRs that parse, timeouts that may
// not be zero. A spec that fails is Invalid (the reason names the field).

import net from 'node:net';
import { parseDuration } from '../api/durations.ts';
import type { ClientTrafficPolicy, Quantity } from '../api/types.ts';
import { nameOf } from '../api/snapshot.ts';
import type { ClientSettings } from '../ir/types.ts';

const SUFFIX: Record<string, number> = {
  '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4,
};

/** A Kubernetes quantity (`64Ki`, `10M`, 32768) in bytes, or null. */
export function parseQuantity(q: Quantity): number | null {
  if (typeof q === 'number') return Number.isSafeInteger(q) && q >= 0 ? q : null;
  const m = /^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (m === null) return null;
  const n = Number(m[1]) * SUFFIX[m[2] ?? ''];
  return Number.isSafeInteger(n) ? n : null;
}

/** `address/prefix`, both valid for the family; the address is the network's (bits past the prefix ignored). */
export function parseCIDR(s: string): { family: 4 | 6; address: string; prefix: number } | null {
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const address = s.slice(0, slash);
  const prefix = Number(s.slice(slash + 1));
  const family = net.isIPv4(address) ? 4 : net.isIPv6(address) ? 6 : 0;
  if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) return null;
  return { family, address, prefix };
}

class Invalid extends Error {}

function duration(field: string, value: string | undefined, zeroAllowed: boolean): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === null) throw new Invalid(`${field}: ${JSON.stringify(value)} is not a duration`);
  if (ms === 0 && !zeroAllowed) throw new Invalid(`${field}: must be more than 0`);
  return ms;
}

function bytes(field: string, value: Quantity | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = parseQuantity(value);
  if (n === null || n < min || n > max) throw new Invalid(`${field}: ${JSON.stringify(value)} must be a quantity from ${min} to ${max} bytes`);
  return n;
}

/** The settings a policy gives its listeners, or why it cannot be used. */
export function clientSettings(policy: ClientTrafficPolicy): { settings: ClientSettings } | { error: string } {
  try {
    return { settings: build(policy) };
  } catch (err) {
    if (err instanceof Invalid) return { error: err.message };
    throw err;
  }
}

function build(policy: ClientTrafficPolicy): ClientSettings {
  const spec = policy.spec;
  const out: ClientSettings = { policy: nameOf(policy) };
  const detect = spec.clientIPDetection;
  if (detect?.xForwardedFor !== undefined) {
    const xff = detect.xForwardedFor;
    if (xff.trustedCIDRs !== undefined) {
      for (const [i, c] of xff.trustedCIDRs.entries()) {
        if (parseCIDR(c) === null) throw new Invalid(`spec.clientIPDetection.xForwardedFor.trustedCIDRs[${i}]: ${JSON.stringify(c)} is not a CIDR`);
      }
      out.clientIP = { xForwardedFor: { trustedCIDRs: [...xff.trustedCIDRs] } };
    } else {
      out.clientIP = { xForwardedFor: { numTrustedHops: xff.numTrustedHops ?? 0 } };
    }
  } else if (detect?.customHeader !== undefined) {
    out.clientIP = { customHeader: { name: detect.customHeader.name.toLowerCase(), failClosed: detect.customHeader.failClosed ?? false } };
  }
  if (spec.proxyProtocol !== undefined) out.proxyProtocol = { optional: spec.proxyProtocol.optional ?? false };

  const limits: NonNullable<ClientSettings['limits']> = {};
  const http = spec.timeout?.http;
  const idle = duration('spec.timeout.http.idleTimeout', http?.idleTimeout, false);
  if (idle !== undefined) limits.keepAliveTimeoutMs = idle;
  const received = duration('spec.timeout.http.requestReceivedTimeout', http?.requestReceivedTimeout, true);
  if (received !== undefined) limits.requestTimeoutMs = received;
  const head = duration('spec.timeout.http.requestHeaderTimeout', http?.requestHeaderTimeout, false);
  if (head !== undefined) limits.headersTimeoutMs = head;
  const conn = spec.connection;
  if (conn?.connectionLimit !== undefined) limits.maxClientConnections = conn.connectionLimit.value;
  const buffer = bytes('spec.connection.bufferLimit', conn?.bufferLimit, 0, 2 ** 31 - 1);
  if (buffer !== undefined) limits.maxReplayBodyBytes = buffer;
  if (spec.http1?.maxHeaderBytes !== undefined) limits.maxHeaderBytes = spec.http1.maxHeaderBytes;
  if (spec.http1?.maxHeaderCount !== undefined) limits.maxHeaderCount = spec.http1.maxHeaderCount;
  if (spec.http2?.maxConcurrentStreams !== undefined) limits.http2MaxConcurrentStreams = spec.http2.maxConcurrentStreams;
  if (Object.keys(limits).length !== 0) out.limits = limits;

  const body = bytes('spec.maxRequestBodySize', spec.maxRequestBodySize, 0, Number.MAX_SAFE_INTEGER);
  if (body !== undefined && body > 0) out.maxRequestBodyBytes = body;

  const stream = bytes('spec.http2.initialStreamWindowSize', spec.http2?.initialStreamWindowSize, 65_535, 2 ** 31 - 1);
  const connection = bytes('spec.http2.initialConnectionWindowSize', spec.http2?.initialConnectionWindowSize, 65_535, 2 ** 31 - 1);
  if (stream !== undefined || connection !== undefined) {
    out.http2 = {};
    if (stream !== undefined) out.http2.initialStreamWindowSize = stream;
    if (connection !== undefined) out.http2.initialConnectionWindowSize = connection;
  }
  return out;
}
