// Which address a request is from, as a listener's ClientTrafficPolicy
// says (IR ClientSettings.clientIP): the connection's (the peer, or the
// PROXY protocol source), or one read from X-Forwarded-For past the
// trusted proxies in front, or from a header such a proxy sets. Compiled
// once per config; a listener without a policy has no resolver and its
// requests pay nothing.
//
// X-Forwarded-For as Envoy reads it (use_remote_address with
// xff_num_trusted_hops): with N trusted hops the client is the Nth
// address from the right end of the header as received (the proxies in
// front each appended the address they saw); N = 0, or a header with
// fewer than N addresses, gives the connection's address: nothing in it
// can be trusted. With trusted CIDRs: when the connection comes from a
// trusted address, addresses are skipped from the right while they are
// trusted; the first that is not is the client (all trusted: the
// leftmost).
//
// The address found is the one every user of "the client" sees: the
// Exchange (source-IP matching, X-Real-IP), the access log and traces
// (RequestRecord.clientAddress).

import net from 'node:net';
import type { ClientSettings } from '../../ir/types.ts';
import { joinedValue, type HeaderTable } from './headers.ts';

/** The client's address, or null when the request must be refused (a custom header with failClosed). */
export type ClientAddressResolver = (connection: string, headers: HeaderTable) => string | null;

/** Headers longer than this are not searched: a legitimate chain of proxies is a few dozen addresses. */
const MAX_XFF_BYTES = 4096;

export function compileClientAddress(clientIP: NonNullable<ClientSettings['clientIP']>): ClientAddressResolver | null {
  const xff = clientIP.xForwardedFor;
  if (xff?.trustedCIDRs !== undefined) {
    const trusted = new net.BlockList();
    for (const cidr of xff.trustedCIDRs) {
      const slash = cidr.indexOf('/');
      const address = cidr.slice(0, slash);
      trusted.addSubnet(address, Number(cidr.slice(slash + 1)), net.isIPv6(address) ? 'ipv6' : 'ipv4');
    }
    const isTrusted = (a: string): boolean => {
      const family = net.isIP(a);
      return family !== 0 && trusted.check(a, family === 6 ? 'ipv6' : 'ipv4');
    };
    return (connection, headers) => {
      if (!isTrusted(connection)) return connection;
      const list = forwardedFor(headers);
      if (list === null) return connection;
      for (let i = list.length - 1; i >= 0; i--) {
        if (!isTrusted(list[i])) return list[i];
      }
      return list[0];
    };
  }
  if (xff !== undefined) {
    const hops = xff.numTrustedHops ?? 0;
    if (hops === 0) return null;
    return (connection, headers) => {
      const list = forwardedFor(headers);
      if (list === null || list.length < hops) return connection;
      return list[list.length - hops];
    };
  }
  const custom = clientIP.customHeader;
  if (custom !== undefined) {
    return (connection, headers) => {
      const value = headers.get(custom.name);
      const address = value === undefined ? null : addressIn(joinedValue(value).trim());
      if (address !== null) return address;
      return custom.failClosed ? null : connection;
    };
  }
  return null;
}

/** The addresses of X-Forwarded-For, left to right; null when it is absent, too long, or holds anything but addresses. */
function forwardedFor(headers: HeaderTable): string[] | null {
  const value = headers.get('x-forwarded-for');
  if (value === undefined) return null;
  const joined = joinedValue(value);
  if (joined.length > MAX_XFF_BYTES) return null;
  const out: string[] = [];
  for (const part of joined.split(',')) {
    const address = addressIn(part.trim());
    // A chain with garbage in it tells nothing reliable about its order.
    if (address === null) return null;
    out.push(address);
  }
  return out;
}

/** An IP address, IPv4 with or without a port, IPv6 bare or in brackets with or without a port; else null. */
function addressIn(s: string): string | null {
  if (net.isIP(s) !== 0) return s;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    const inner = end < 0 ? '' : s.slice(1, end);
    return net.isIPv6(inner) && (end === s.length - 1 || /^:[0-9]{1,5}$/.test(s.slice(end + 1))) ? inner : null;
  }
  const colon = s.lastIndexOf(':');
  if (colon > 0 && s.indexOf(':') === colon && net.isIPv4(s.slice(0, colon)) && /^[0-9]{1,5}$/.test(s.slice(colon + 1))) return s.slice(0, colon);
  return null;
}

/** Dual-stack sockets report IPv4 peers as IPv4-mapped IPv6; headers and logs show them as IPv4. */
export function plainAddress(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
