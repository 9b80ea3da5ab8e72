// A stand-in for MetalLB's controller (the part that assigns addresses;
// announcing them is the speaker's job, done here by the kube-proxy
// stand-in binding them in the test's network namespace). What it does is
// what MetalLB does, through the same API:
//
// - Services of type LoadBalancer with no spec.loadBalancerClass get one
//   IPv4 address from a pool, written to status.loadBalancer.ingress;
// - `metallb.io/address-pool: NAME` restricts the choice to that pool; a
//   pool that does not exist gets the Service nothing (and an
//   AllocationFailed event);
// - `metallb.io/loadBalancerIPs` (or the deprecated spec.loadBalancerIP)
//   asks for an address: given when it is in a pool (the named one, if
//   any) and free, otherwise nothing;
// - an address already in the Service's status is kept while it still
//   fits (a restarted controller does not move Services);
// - pools with autoAssign false give addresses only when asked for by
//   name or address;
// - a Service deleted, or no longer of type LoadBalancer, frees its
//   address (and the status is cleared).
// Address sharing (metallb.io/allow-shared-ip) and IPv6 are not done.
import { Api, keyOf, listWatch, type Json } from './api.ts';
import { intToIp, ipToInt } from './netns.ts';

export const POOL_ANNOTATION = 'metallb.io/address-pool';
export const IPS_ANNOTATION = 'metallb.io/loadBalancerIPs';

export interface AddressPool {
  name: string;
  /** IPv4 CIDRs ("10.250.0.0/24") or ranges ("10.250.0.10-10.250.0.20"). */
  addresses: string[];
  /** Default true: the pool serves Services that name no pool. */
  autoAssign?: boolean;
  /** Default false (as MetalLB): true skips addresses ending in .0 and .255. */
  avoidBuggyIPs?: boolean;
}

export const DEFAULT_POOLS: AddressPool[] = [{ name: 'default', addresses: ['10.250.0.0/24'], avoidBuggyIPs: true }];

/** A pool this large would take a while to walk; test pools are small. */
const MAX_POOL_ADDRESSES = 65_536;

export interface MetalLBOptions {
  api: Api;
  pools?: AddressPool[];
  log?: (msg: string) => void;
}

export interface MetalLB {
  /** Resolves once the first list of Services is handled. */
  synced: Promise<void>;
  /** `namespace/name` -> address, as assigned now. */
  assignments(): Map<string, string>;
  /** Resolves when every change seen so far is handled. */
  idle(): Promise<void>;
  stop(): void;
}

interface Range { from: number; to: number }

function parseRange(s: string): Range {
  const cidr = /^([\d.]+)\/(\d{1,2})$/.exec(s.trim());
  if (cidr) {
    const base = ipToInt(cidr[1]);
    const bits = Number(cidr[2]);
    if (base === null || bits > 32) throw new Error(`pool address ${s}: not an IPv4 CIDR`);
    const size = 2 ** (32 - bits);
    const from = Math.floor(base / size) * size;
    return { from, to: from + size - 1 };
  }
  const [a, b] = s.split('-').map((x) => ipToInt(x.trim()));
  if (a === null || b === null || a === undefined || b === undefined || b < a) throw new Error(`pool address ${s}: not a CIDR or a range a-b`);
  return { from: a, to: b };
}

class Pool {
  readonly name: string;
  readonly autoAssign: boolean;
  readonly #ranges: Range[];
  readonly #avoidBuggy: boolean;
  constructor(p: AddressPool) {
    this.name = p.name;
    this.autoAssign = p.autoAssign ?? true;
    this.#avoidBuggy = p.avoidBuggyIPs ?? false;
    this.#ranges = p.addresses.map(parseRange);
    const size = this.#ranges.reduce((n, r) => n + r.to - r.from + 1, 0);
    if (size > MAX_POOL_ADDRESSES) throw new Error(`pool ${p.name}: more than ${MAX_POOL_ADDRESSES} addresses`);
  }
  contains(ip: string): boolean {
    const n = ipToInt(ip);
    if (n === null) return false;
    if (this.#avoidBuggy && ((n & 255) === 0 || (n & 255) === 255)) return false;
    return this.#ranges.some((r) => n >= r.from && n <= r.to);
  }
  *addresses(): Generator<string> {
    for (const r of this.#ranges) {
      for (let n = r.from; n <= r.to; n++) {
        if (this.#avoidBuggy && ((n & 255) === 0 || (n & 255) === 255)) continue;
        yield intToIp(n);
      }
    }
  }
}

type Decision = { ip: string } | { error: string } | { ignore: true };

export function startMetalLB(opts: MetalLBOptions): MetalLB {
  const { api } = opts;
  const log = opts.log ?? (() => {});
  const pools = (opts.pools ?? DEFAULT_POOLS).map((p) => new Pool(p));
  const services = new Map<string, Json>();
  const assigned = new Map<string, string>();   // service key -> ip
  const owner = new Map<string, string>();      // ip -> service key
  /** The last failure reported per Service, so that an event is posted once per cause. */
  const reported = new Map<string, string>();
  const dirty = new Set<string>();
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  function release(key: string): void {
    const ip = assigned.get(key);
    if (ip === undefined) return;
    assigned.delete(key);
    owner.delete(ip);
    log(`metallb: ${key} released ${ip}`);
  }

  function free(ip: string, key: string): boolean {
    const o = owner.get(ip);
    return o === undefined || o === key;
  }

  function decide(key: string, svc: Json): Decision {
    const spec = svc.spec ?? {};
    if (spec.loadBalancerClass) return { ignore: true };
    const annotations: Record<string, string> = svc.metadata?.annotations ?? {};
    const poolName = annotations[POOL_ANNOTATION];
    let candidates = pools;
    if (poolName !== undefined) {
      candidates = pools.filter((p) => p.name === poolName);
      if (candidates.length === 0) return { error: `unknown pool "${poolName}"` };
    }
    const requested = annotations[IPS_ANNOTATION] !== undefined
      ? annotations[IPS_ANNOTATION].split(',').map((s) => s.trim()).filter(Boolean)
      : spec.loadBalancerIP ? [spec.loadBalancerIP as string] : [];
    if (requested.length > 0) {
      const v4 = requested.filter((ip) => ipToInt(ip) !== null);
      if (v4.length !== 1 || requested.length !== 1) return { error: `cannot assign ${requested.join(',')}: this stand-in gives one IPv4 address per Service` };
      const ip = v4[0];
      if (!candidates.some((p) => p.contains(ip))) return { error: `${ip} is not allowed in config${poolName ? ` (pool ${poolName})` : ''}` };
      if (!free(ip, key)) return { error: `${ip} is already in use by ${owner.get(ip)}` };
      return { ip };
    }
    // Named pools give addresses even when not auto-assigned; unnamed, only auto-assign pools.
    const usable = poolName !== undefined ? candidates : candidates.filter((p) => p.autoAssign);
    const current = assigned.get(key) ?? (svc.status?.loadBalancer?.ingress ?? []).map((i: Json) => i.ip).find((ip: unknown) => typeof ip === 'string');
    if (current && usable.some((p) => p.contains(current)) && free(current, key)) return { ip: current };
    for (const p of usable) {
      for (const ip of p.addresses()) if (free(ip, key)) return { ip };
    }
    return { error: `no available IPs${poolName ? ` in pool "${poolName}"` : ''}` };
  }

  async function event(svc: Json, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const now = new Date().toISOString();
    const ns = svc.metadata.namespace;
    await api.call('POST', `/api/v1/namespaces/${ns}/events`, {
      apiVersion: 'v1', kind: 'Event',
      metadata: { generateName: `${svc.metadata.name}.`, namespace: ns },
      involvedObject: { apiVersion: 'v1', kind: 'Service', namespace: ns, name: svc.metadata.name, uid: svc.metadata.uid },
      reason, message, type, count: 1, firstTimestamp: now, lastTimestamp: now,
      source: { component: 'metallb-controller' },
    }).catch(() => { /* an event is a courtesy: its loss changes nothing */ });
  }

  async function setIngress(svc: Json, ip: string | null): Promise<void> {
    const have: Json[] = svc.status?.loadBalancer?.ingress ?? [];
    const same = ip === null ? have.length === 0 : have.length === 1 && have[0].ip === ip;
    if (same) return;
    const ns = svc.metadata.namespace;
    const a = await api.call('PATCH', `/api/v1/namespaces/${ns}/services/${svc.metadata.name}/status`,
      { status: { loadBalancer: { ingress: ip === null ? [] : [{ ip, ipMode: 'VIP' }] } } }, 'application/merge-patch+json');
    // Gone meanwhile: its DELETED event frees the address.
    if (a.status === 404) return;
    if (a.status !== 200) throw new Error(`status of ${ns}/${svc.metadata.name}: HTTP ${a.status} ${a.body?.message ?? ''}`);
  }

  async function reconcile(key: string): Promise<void> {
    const svc = services.get(key);
    if (!svc) { release(key); reported.delete(key); return; }
    if (svc.spec?.type !== 'LoadBalancer') {
      release(key);
      reported.delete(key);
      if (svc.spec?.loadBalancerClass === undefined) await setIngress(svc, null);
      return;
    }
    const d = decide(key, svc);
    if ('ignore' in d) return;
    if ('error' in d) {
      release(key);
      await setIngress(svc, null);
      if (reported.get(key) !== d.error) {
        reported.set(key, d.error);
        log(`metallb: ${key}: ${d.error}`);
        await event(svc, 'Warning', 'AllocationFailed', `Failed to allocate IP for "${key}": ${d.error}`);
      }
      return;
    }
    reported.delete(key);
    if (assigned.get(key) !== d.ip) {
      release(key);
      assigned.set(key, d.ip);
      owner.set(d.ip, key);
      log(`metallb: ${key} assigned ${d.ip}`);
      await event(svc, 'Normal', 'IPAllocated', `Assigned IP ["${d.ip}"]`);
    }
    await setIngress(svc, d.ip);
  }

  /** One at a time, as MetalLB's controller does: allocations never race each other. */
  function schedule(key: string): void {
    dirty.add(key);
    running = running.then(async () => {
      while (dirty.size > 0 && !stopped) {
        const [k] = dirty;
        dirty.delete(k);
        try {
          await reconcile(k);
        } catch (err) {
          log(`metallb: ${k}: ${(err as Error).message}; trying again`);
          setTimeout(() => { if (!stopped) schedule(k); }, 500).unref();
        }
      }
    });
  }

  const watch = listWatch(api, '/api/v1/services', {
    upsert(svc, relist) {
      const key = keyOf(svc);
      services.set(key, svc);
      // On the first list, addresses already in the status are taken first, so none is given twice.
      if (relist && svc.spec?.type === 'LoadBalancer' && !assigned.has(key)) {
        const ip = svc.status?.loadBalancer?.ingress?.[0]?.ip;
        if (ip && !owner.has(ip) && pools.some((p) => p.contains(ip))) { assigned.set(key, ip); owner.set(ip, key); }
      }
      schedule(key);
    },
    deleted(svc) {
      const key = keyOf(svc);
      services.delete(key);
      schedule(key);
    },
    synced(keys) {
      for (const key of [...services.keys()]) if (!keys.has(key)) { services.delete(key); schedule(key); }
    },
  }, (msg) => log(`metallb: ${msg}`));

  return {
    synced: watch.synced,
    assignments: () => new Map(assigned),
    async idle() {
      let seen: Promise<void>;
      do { seen = running; await seen; } while (seen !== running);
    },
    stop() {
      stopped = true;
      watch.close();
    },
  };
}
