// The client's address as the gateway uses it: in X-Forwarded-For, in the
// access log, in metrics. One accessor, so that when the address comes
// from somewhere else than the peer (trusted proxies, the PROXY protocol)
// every user of it changes at once.

import type { DownstreamRequest } from './downstream.ts';

/** The peer's address, IPv4-mapped IPv6 shown as IPv4; `unknown` when the socket no longer says. */
export function clientAddress(req: DownstreamRequest): string {
  const address = req.remoteAddress;
  if (address === undefined) return 'unknown';
  // Dual-stack sockets report IPv4 clients as IPv4-mapped IPv6.
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
