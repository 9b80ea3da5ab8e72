// Gateway addresses. With an address pool (the standalone stand-in for
// MetalLB), a Gateway without spec.addresses gets one IPv4 address from
// the low end of the pool, kept for as long as the Gateway lives; static
// IPAddress values are used where they lie in the pool. Without a pool,
// Gateways listen on all interfaces and report the host's address.
//
// In Kubernetes mode every Gateway has proxies and a Service of its own
// (provisioned), so Gateways never contend for a port: each listens on
// all interfaces of its own pods, and reports what its Service's load
// balancer assigned. spec.addresses are requests to that load balancer;
// an IP literal can be asked for, anything else cannot be used.
import net from 'node:net';

export interface AddressPool { base: number; size: number; cidr: string }

export interface AddressingInput {
  pool: AddressPool | null;
  /** What to report when there is no pool: the host's own address. */
  hostAddress: string;
  /** Gateway key -> address handed out earlier, so addresses are sticky. */
  previous: Record<string, string>;
  /**
   * Kubernetes mode: Gateway key -> the state of its provisioned Service
   * and proxies. Given, pool and hostAddress are not used; a Gateway
   * missing from it has nothing provisioned yet.
   */
  provisioned?: Readonly<Record<string, ProvisionedGateway>>;
}

/** What a Gateway's own infrastructure reports. */
export interface ProvisionedGateway {
  /** The Service's status.loadBalancer.ingress: IP addresses and hostnames. */
  addresses: { type: 'IPAddress' | 'Hostname'; value: string }[];
  /** Proxy pods ready, and wanted (the Deployment's status.readyReplicas and spec.replicas). */
  readyProxies: number;
  desiredProxies: number;
  /** The Service, `namespace/name`, for messages. */
  service: string;
  /**
   * Why requested addresses cannot be asked of the load balancer, one
   * message each (the provisioner's judgement: a Service type that takes
   * none, two of one family); the Gateway is then AddressNotUsable.
   */
  addressProblems?: string[];
}

export interface GatewayAddressing {
  /** Address the listeners bind to. */
  bind: string | null;
  /** Addresses for status.addresses. */
  reported: string[];
  /** Static addresses that are outside the pool or not IPv4. */
  unusable: string[];
  /** Address types Gatehouse cannot use (Hostname, NamedAddress, ...). */
  unsupported: string[];
  /** The pool is exhausted. */
  exhausted: boolean;
  /**
   * Kubernetes mode: the Gateway has sockets of its own (its proxies), so
   * its ports are claimed against no other Gateway; with its proxies'
   * readiness and the Service's hostnames.
   */
  provisioned?: { hostnames: string[]; readyProxies: number; desiredProxies: number; service: string | null; addressProblems: string[] };
}

export function parsePool(cidr: string): AddressPool {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  if (!m || !net.isIPv4(m[1]) || Number(m[2]) > 32 || Number(m[2]) < 8) {
    throw new Error(`--address-pool ${cidr}: expected an IPv4 CIDR such as 127.20.0.0/16 (prefix /8 to /32)`);
  }
  const bits = Number(m[2]);
  const size = 2 ** (32 - bits);
  const base = Math.floor(ipToInt(m[1]) / size) * size;
  return { base, size, cidr };
}

export function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

function inPool(pool: AddressPool, ip: string): boolean {
  if (!net.isIPv4(ip)) return false;
  const n = ipToInt(ip);
  return n >= pool.base && n < pool.base + pool.size;
}

export interface GatewayAddressRequest {
  key: string;
  addresses: { type?: string; value?: string }[];
}

/**
 * Decides addresses for every Gateway, in the order given (oldest first,
 * so an older Gateway keeps precedence). Pure: the same input gives the
 * same output.
 */
export function assignAddresses(gateways: GatewayAddressRequest[], input: AddressingInput): Map<string, GatewayAddressing> {
  if (input.provisioned) return provisionedAddresses(gateways, input.provisioned);
  const out = new Map<string, GatewayAddressing>();
  const { pool } = input;
  const staticallyNamed = new Set<string>();
  for (const g of gateways) for (const a of g.addresses) if ((a.type ?? 'IPAddress') === 'IPAddress' && a.value) staticallyNamed.add(a.value);

  const taken = new Set<string>();
  const needAuto: GatewayAddressRequest[] = [];
  for (const g of gateways) {
    const r: GatewayAddressing = { bind: null, reported: [], unusable: [], unsupported: [], exhausted: false };
    out.set(g.key, r);
    for (const a of g.addresses) {
      const type = a.type ?? 'IPAddress';
      if (type !== 'IPAddress') { r.unsupported.push(`${type} ${a.value ?? ''}`.trim()); continue; }
      if (!a.value) continue; // an empty value asks for an automatic address
      const usable = pool ? inPool(pool, a.value) : net.isIP(a.value) !== 0;
      if (!usable) { r.unusable.push(a.value); continue; }
      r.reported.push(a.value);
      taken.add(a.value);
    }
    if (r.reported.length) r.bind = r.reported[0];
    else if (r.unsupported.length === 0 && r.unusable.length === 0) needAuto.push(g);
  }

  if (!pool) {
    for (const g of needAuto) {
      const r = out.get(g.key)!;
      r.bind = '0.0.0.0';
      r.reported = [input.hostAddress];
    }
    return out;
  }

  // Sticky first: a Gateway keeps what it had, unless someone now names it statically.
  const pending: GatewayAddressRequest[] = [];
  for (const g of needAuto) {
    const prev = input.previous[g.key];
    if (prev && inPool(pool, prev) && !taken.has(prev) && !staticallyNamed.has(prev)) {
      taken.add(prev);
      const r = out.get(g.key)!;
      r.bind = prev;
      r.reported = [prev];
    } else pending.push(g);
  }
  // Skip the network address (x.x.0.0) itself; hand out from the low end upward.
  let next = pool.base + 1;
  const end = pool.base + pool.size - 1;
  for (const g of pending) {
    const r = out.get(g.key)!;
    while (next < end && (taken.has(intToIp(next)) || staticallyNamed.has(intToIp(next)))) next++;
    if (next >= end) { r.exhausted = true; continue; }
    const ip = intToIp(next++);
    taken.add(ip);
    r.bind = ip;
    r.reported = [ip];
  }
  return out;
}

/** The address types the Gateway API itself defines (GatewaySpecAddress.type); others are implementation-specific. */
const GATEWAY_API_ADDRESS_TYPES = new Set(['IPAddress', 'Hostname', 'NamedAddress']);

/** Where the proxies of a provisioned Gateway listen: every interface of their pods. */
export const PROVISIONED_BIND = '0.0.0.0';

function provisionedAddresses(gateways: GatewayAddressRequest[], state: Readonly<Record<string, ProvisionedGateway>>): Map<string, GatewayAddressing> {
  const out = new Map<string, GatewayAddressing>();
  for (const g of gateways) {
    const s = state[g.key];
    const unusable: string[] = [];
    // A type the Gateway API does not define (a domain-prefixed one, e.g.
    // example.com/custom) is not supported: Accepted False,
    // UnsupportedAddress. Hostname and NamedAddress are understood but
    // cannot be asked of the load balancer: AddressNotUsable.
    const unsupported: string[] = [];
    for (const a of g.addresses) {
      const type = a.type ?? 'IPAddress';
      const shown = `${type} ${a.value ?? ''}`.trim();
      if (!GATEWAY_API_ADDRESS_TYPES.has(type)) unsupported.push(shown);
      else if (type !== 'IPAddress') unusable.push(shown);
      else if (a.value && net.isIP(a.value) === 0) unusable.push(a.value);
    }
    out.set(g.key, {
      bind: PROVISIONED_BIND,
      reported: (s?.addresses ?? []).filter((a) => a.type === 'IPAddress').map((a) => a.value),
      unusable,
      unsupported,
      exhausted: false,
      provisioned: {
        hostnames: (s?.addresses ?? []).filter((a) => a.type === 'Hostname').map((a) => a.value),
        readyProxies: s?.readyProxies ?? 0,
        desiredProxies: s?.desiredProxies ?? 0,
        service: s?.service ?? null,
        addressProblems: s?.addressProblems ?? [],
      },
    });
  }
  return out;
}
