// Which backend endpoint addresses the gateway may connect to. A route
// author controls where traffic goes (an EndpointSlice, an ExternalName
// Service): without a check, one could point the gateway at itself (its
// admin API serves configuration) or at a cloud metadata service.
//
// Pure address classification, shared by translate (endpoints written in
// EndpointSlices) and the data plane (addresses that a hostname resolved
// to, which translate cannot know). Nothing here does I/O.
//
// The rules, in the order they are applied to an endpoint address:port:
//  1. The unspecified address (0.0.0.0/8, ::) is always refused: connecting
//     to it reaches the gateway's own host, and no real backend has it.
//  2. The gateway itself is always refused, whatever the options: an
//     endpoint whose port is the admin port or the port of one of the
//     gateway's listeners, on an address where that socket answers. A
//     socket bound to all interfaces (0.0.0.0, ::) answers on every
//     loopback address, on the host's interface addresses (given as
//     `localAddresses`), on every address another socket of the gateway
//     is bound to, and on the address its Gateway reports; a socket
//     bound to one address answers there only, so a backend on another
//     loopback address with the same port (the conformance runner's
//     127.21.x.y:8443 next to a Gateway on 127.20.x.y:8443) is not the
//     gateway. Proxying to itself would expose the admin API to any route
//     author, or loop requests until the connection limits are hit.
//  3. Link-local (169.254.0.0/16, fe80::/10) is refused unless
//     `allowLinkLocal` (default false): cloud metadata services answer
//     there (169.254.169.254) and hand out credentials.
//  4. Loopback (127.0.0.0/8, ::1) is refused unless `allowLoopback`. There
//     is no single default: the caller chooses per mode, and the presets
//     below say what each mode uses. Standalone allows it (one host runs
//     its own services, and the conformance runner's backends listen on
//     127.21.x.y); Kubernetes refuses it, since an EndpointSlice there is
//     written by a tenant and loopback is the gateway pod's own.
// Kubernetes' own validation refuses loopback and link-local endpoint
// addresses in EndpointSlices for the same reasons; this holds wherever
// the slice comes from (a file, an older API server).
//
// Addresses are parsed, not pattern-matched: IPv6 with an embedded IPv4
// address (IPv4-mapped ::ffff:a.b.c.d in any spelling, the deprecated
// IPv4-compatible ::a.b.c.d, NAT64's 64:ff9b::/96) is judged by that IPv4
// address, and a zone (%eth0) is ignored. Anything node:net does not take
// as an IP literal ("127.1", "0x7f.0.0.1", "[::1]", a hostname) is not an
// address: it is refused where an address is required, because a resolver
// may well turn it into 127.0.0.1.
import net from 'node:net';

export interface EndpointPolicyOptions {
  /** Allow 127.0.0.0/8 and ::1 endpoints (other than the gateway itself). No default: see the presets. */
  allowLoopback: boolean;
  /** Allow 169.254.0.0/16 and fe80::/10 endpoints. Default false. */
  allowLinkLocal?: boolean;
  /** Addresses of the host's interfaces: where a listener bound to all interfaces answers. Default none. */
  localAddresses?: readonly string[];
  /** The admin API's bound address (0.0.0.0 or :: for all interfaces) and port: never a backend. Default none. */
  admin?: { address: string; port: number } | null;
}

/** Standalone mode: backends on the same host are how it is used. */
export const STANDALONE_ENDPOINT_DEFAULTS: EndpointPolicyOptions = Object.freeze({ allowLoopback: true, allowLinkLocal: false });
/** Kubernetes mode: EndpointSlices are written by tenants. */
export const KUBERNETES_ENDPOINT_DEFAULTS: EndpointPolicyOptions = Object.freeze({ allowLoopback: false, allowLinkLocal: false });

/** A socket the gateway listens on. */
export interface OwnSocket {
  /** The bound address; 0.0.0.0 or :: for all interfaces. */
  address: string;
  port: number;
  /** What listens there, for messages (`namespace/gateway/listener`). */
  name?: string;
}

/** Where the gateway answers on one port. */
interface OwnPort {
  /** What listens there, for messages. */
  use: string;
  /** Some socket on the port is bound to all interfaces. */
  everyLocalAddress: boolean;
  /** Canonical addresses sockets on the port are bound to. */
  addresses: Set<string>;
}

export interface EndpointPolicy {
  readonly allowLoopback: boolean;
  readonly allowLinkLocal: boolean;
  /** Canonical addresses of the host's interfaces: where an all-interfaces socket answers besides loopback. */
  readonly localAddresses: ReadonlySet<string>;
  /** The gateway's ports and where it answers on each. */
  readonly ownPorts: ReadonlyMap<number, Readonly<OwnPort>>;
  /** Equal for two policies that judge every endpoint the same: what memos compare. */
  readonly key: string;
}

export type RefusalKind = 'unspecified' | 'self' | 'linkLocal' | 'loopback' | 'notAnAddress';

export interface EndpointRefusal {
  kind: RefusalKind;
  /** Why, naming the address: for a route's status and the log. */
  why: string;
}

/**
 * The policy for `options` and the sockets the gateway listens on (the
 * IR's listeners; translate adds each Gateway's reported addresses too).
 */
export function compileEndpointPolicy(options: EndpointPolicyOptions, listeners: readonly OwnSocket[]): EndpointPolicy {
  const localAddresses = new Set<string>();
  for (const a of options.localAddresses ?? []) {
    const ip = parseAddress(a);
    if (ip !== null) localAddresses.add(ip.canonical);
  }
  const ownPorts = new Map<number, OwnPort>();
  const own = (address: string, port: number, use: string) => {
    let p = ownPorts.get(port);
    if (p === undefined) ownPorts.set(port, p = { use, everyLocalAddress: false, addresses: new Set() });
    const ip = parseAddress(address);
    // A name (`localhost`) may be bound to any local address: count it as all of them.
    if (ip === null || ip.scope === 'unspecified') p.everyLocalAddress = true;
    else {
      p.addresses.add(ip.canonical);
      // Only a local address can be bound: sockets on all interfaces answer there too.
      localAddresses.add(ip.canonical);
    }
  };
  if (options.admin) own(options.admin.address, options.admin.port, 'the admin API port');
  for (const l of listeners) own(l.address, l.port, l.name ? `the port of listener ${l.name}` : 'a listener port');
  const allowLoopback = options.allowLoopback;
  const allowLinkLocal = options.allowLinkLocal ?? false;
  const ports = [...ownPorts.entries()].sort(([a], [b]) => a - b)
    .map(([port, p]) => `${port}=${p.everyLocalAddress ? '*' : ''}${[...p.addresses].sort().join('+')}`);
  const key = [allowLoopback, allowLinkLocal, [...localAddresses].sort().join(','), ports.join(',')].join('|');
  return { allowLoopback, allowLinkLocal, localAddresses, ownPorts, key };
}

/**
 * The verdict on connecting to `address`:`port`, where address must be an
 * IP literal: an EndpointSlice address, or what the data plane resolved a
 * hostname to before it connects. null means allowed.
 */
export function checkEndpoint(policy: EndpointPolicy, address: string, port: number): EndpointRefusal | null {
  const ip = parseAddress(address);
  if (ip === null) return { kind: 'notAnAddress', why: `${JSON.stringify(address)} is not an IP address` };
  return checkParsed(policy, ip, address, port);
}

/**
 * The verdict on a hostname endpoint (an ExternalName Service) before it
 * is resolved: an IP literal is judged as one, `localhost` and names under
 * `.localhost` as loopback (they never resolve elsewhere, RFC 6761). Any
 * other name is allowed here; the data plane must judge the address it
 * resolves to with checkEndpoint.
 */
export function checkHostname(policy: EndpointPolicy, hostname: string, port: number): EndpointRefusal | null {
  if (net.isIP(hostname) !== 0) return checkEndpoint(policy, hostname, port);
  const name = hostname.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) {
    return checkParsed(policy, LOOPBACK_V4, hostname, port) ?? checkParsed(policy, LOOPBACK_V6, hostname, port);
  }
  return null;
}

function checkParsed(policy: EndpointPolicy, ip: ParsedAddress, shown: string, port: number): EndpointRefusal | null {
  if (ip.scope === 'unspecified') {
    return { kind: 'unspecified', why: `${shown} is the unspecified address, which reaches the gateway's own host` };
  }
  const own = policy.ownPorts.get(port);
  if (own !== undefined && answersOn(policy, own, ip)) {
    return { kind: 'self', why: `${hostPort(shown, port)} is the gateway itself (${port} is ${own.use}, on an address the gateway answers on)` };
  }
  if (ip.scope === 'linkLocal' && !policy.allowLinkLocal) {
    return { kind: 'linkLocal', why: `${shown} is link-local (169.254.0.0/16, fe80::/10), where cloud metadata services answer; link-local endpoints are not allowed` };
  }
  if (ip.scope === 'loopback' && !policy.allowLoopback) {
    return { kind: 'loopback', why: `${shown} is a loopback address, the gateway's own host; loopback endpoints are not allowed in this mode` };
  }
  return null;
}

/** `address:port`, with an IPv6 address in brackets. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function answersOn(policy: EndpointPolicy, own: Readonly<OwnPort>, ip: ParsedAddress): boolean {
  if (own.addresses.has(ip.canonical)) return true;
  return own.everyLocalAddress && (ip.scope === 'loopback' || policy.localAddresses.has(ip.canonical));
}

// ------------------------------------------------------------ addresses

type Scope = 'unspecified' | 'loopback' | 'linkLocal' | 'other';

interface ParsedAddress {
  /** IPv4 dotted quad, or IPv6 as eight lower-case hex groups; an embedded IPv4 address as IPv4. */
  canonical: string;
  scope: Scope;
}

/** What `localhost` resolves to. */
const LOOPBACK_V4: ParsedAddress = { canonical: '127.0.0.1', scope: 'loopback' };
const LOOPBACK_V6: ParsedAddress = { canonical: '0:0:0:0:0:0:0:1', scope: 'loopback' };

/** The address, or null when node:net does not take it as an IP literal. */
export function parseAddress(address: string): ParsedAddress | null {
  const family = net.isIP(address);
  if (family === 4) return ipv4(address.split('.').map(Number));
  if (family === 6) return ipv6(address);
  return null;
}

function ipv4(octets: number[]): ParsedAddress {
  const [a, b] = octets;
  const scope: Scope = a === 0 ? 'unspecified' : a === 127 ? 'loopback' : a === 169 && b === 254 ? 'linkLocal' : 'other';
  return { canonical: octets.join('.'), scope };
}

function ipv6(address: string): ParsedAddress {
  const g = ipv6Groups(address);
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  // Prefixes whose last 32 bits are an IPv4 address that the packet reaches.
  const mapped = zeros(0, 5) && g[5] === 0xffff;
  const compatible = zeros(0, 6) && (g[6] !== 0 || g[7] > 1);
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6);
  if (mapped || compatible || nat64) return ipv4([g[6] >> 8, g[6] & 0xff, g[7] >> 8, g[7] & 0xff]);
  const canonical = g.map((x) => x.toString(16)).join(':');
  let scope: Scope = 'other';
  if (zeros(0, 8)) scope = 'unspecified';
  else if (zeros(0, 7) && g[7] === 1) scope = 'loopback';
  else if ((g[0] & 0xffc0) === 0xfe80) scope = 'linkLocal';
  return { canonical, scope };
}

/** Eight 16-bit groups of an address node:net accepted as IPv6. */
function ipv6Groups(address: string): number[] {
  const text = address.replace(/%.*$/, '').toLowerCase();
  const words = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const w of part.split(':')) {
      if (w.includes('.')) {
        const [a, b, c, d] = w.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else out.push(parseInt(w, 16));
    }
    return out;
  };
  const gap = text.indexOf('::');
  if (gap === -1) return words(text);
  const head = words(text.slice(0, gap));
  const tail = words(text.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}
