// Choosing an endpoint of a cluster with a BackendTrafficPolicy: round
// robin, random, least request (the less busy of two chosen at random, as
// Envoy's LEAST_REQUEST), or consistent hash (a Maglev table over the
// endpoints, on a header, a cookie or the client address), among the
// endpoints that are healthy and not ejected; with slow start, a new
// endpoint's weight ramps from 10% to full over the window. Clusters
// without a policy never come here (balancer.ts keeps its plain round
// robin).

import { randomBytes } from 'node:crypto';
import type { HashOnIR, LoadBalancerIR } from '../../ir/types.ts';
import type { HeaderModifier } from '../http/filters.ts';
import type { HeaderTable } from '../http/headers.ts';
import { available, type EndpointState } from './endpoint-state.ts';

/** What a pick reads of the request: its headers, client address, and where a cookie to set goes. */
export interface PickContext {
  readonly requestHeaders: HeaderTable;
  readonly req: { readonly remoteAddress: string | undefined };
  responseModifiers: HeaderModifier[] | null;
}

/** An endpoint as the balancer sees it. */
export interface Balanced {
  readonly state: EndpointState | null;
}

/** Envoy's slow-start floor: a new endpoint gets at least this share of its weight. */
const SLOW_START_MIN_WEIGHT = 0.1;

export abstract class Balancer {
  readonly #slowStartMs: number;
  /** Scratch list of available endpoints, reused (one thread, picks do not nest). */
  protected readonly scratch: number[] = [];

  constructor(slowStartMs: number) {
    this.#slowStartMs = slowStartMs;
  }

  abstract pick<E extends Balanced>(endpoints: readonly E[], ctx: PickContext | undefined, now: number): E | undefined;

  /** Indexes of the endpoints that may be chosen; all of them when none may (Envoy's panic mode: better a sick endpoint than none). */
  protected available(endpoints: readonly Balanced[], now: number): number[] {
    const list = this.scratch;
    list.length = 0;
    for (let i = 0; i < endpoints.length; i++) if (available(endpoints[i].state!, now)) list.push(i);
    if (list.length === 0) for (let i = 0; i < endpoints.length; i++) list.push(i);
    return list;
  }

  /** 1, or less while the endpoint is in slow start. */
  protected weight(state: EndpointState, now: number): number {
    const window = this.#slowStartMs;
    if (window === 0 || state.since === 0) return 1;
    const age = now - state.since;
    if (age >= window) {
      state.since = 0;
      return 1;
    }
    return Math.max(SLOW_START_MIN_WEIGHT, age / window);
  }

  /** Whether any of `list` is ramping (then picks go by weight). */
  protected ramping(endpoints: readonly Balanced[], list: readonly number[], now: number): boolean {
    if (this.#slowStartMs === 0) return false;
    for (const i of list) if (this.weight(endpoints[i].state!, now) < 1) return true;
    return false;
  }

  /** One of `list` at random, by weight. */
  protected weightedRandom<E extends Balanced>(endpoints: readonly E[], list: readonly number[], now: number): E {
    let total = 0;
    for (const i of list) total += this.weight(endpoints[i].state!, now);
    let r = Math.random() * total;
    for (const i of list) {
      r -= this.weight(endpoints[i].state!, now);
      if (r < 0) return endpoints[i];
    }
    return endpoints[list[list.length - 1]];
  }
}

class RoundRobin extends Balancer {
  #next = 0;
  pick<E extends Balanced>(endpoints: readonly E[], _ctx: PickContext | undefined, now: number): E | undefined {
    if (endpoints.length === 0) return undefined;
    const list = this.available(endpoints, now);
    if (this.ramping(endpoints, list, now)) return this.weightedRandom(endpoints, list, now);
    const i = this.#next % list.length;
    this.#next = i + 1;
    return endpoints[list[i]];
  }
}

class RandomPick extends Balancer {
  pick<E extends Balanced>(endpoints: readonly E[], _ctx: PickContext | undefined, now: number): E | undefined {
    if (endpoints.length === 0) return undefined;
    return this.weightedRandom(endpoints, this.available(endpoints, now), now);
  }
}

/** Power of two choices: of two distinct endpoints drawn at random, the one with fewer requests in flight for its weight. */
class LeastRequest extends Balancer {
  pick<E extends Balanced>(endpoints: readonly E[], _ctx: PickContext | undefined, now: number): E | undefined {
    if (endpoints.length === 0) return undefined;
    const list = this.available(endpoints, now);
    if (list.length === 1) return endpoints[list[0]];
    const a = Math.floor(Math.random() * list.length);
    let b = Math.floor(Math.random() * (list.length - 1));
    if (b >= a) b++;
    const ea = endpoints[list[a]];
    const eb = endpoints[list[b]];
    const la = (ea.state!.active + 1) / this.weight(ea.state!, now);
    const lb = (eb.state!.active + 1) / this.weight(eb.state!, now);
    if (la !== lb) return la < lb ? ea : eb;
    return Math.random() < 0.5 ? ea : eb;
  }
}

/** Table sizes (primes, as Maglev needs): the smallest at least 100 entries per endpoint, at most Envoy's 65537. */
const MAGLEV_SIZES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65537];

/**
 * Maglev (Eisenbud et al., 2016): every endpoint fills table slots in its
 * own pseudo-random order, taking turns, so each owns an equal share and
 * a change of endpoints moves few keys. A key's slot is its hash modulo
 * the table size; an endpoint that may not be chosen now passes its keys
 * to the next slots' owners, so only its keys move while it is out.
 */
class ConsistentHash extends Balancer {
  readonly #hashOn: HashOnIR;
  readonly #table: Uint32Array;
  readonly #cookieTail: string;

  constructor(hashOn: HashOnIR, endpointKeys: readonly string[]) {
    super(0);
    this.#hashOn = hashOn;
    this.#table = maglevTable(endpointKeys);
    this.#cookieTail = hashOn.type === 'Cookie' ? `; Path=/; HttpOnly${hashOn.ttlMs !== undefined ? `; Max-Age=${Math.max(1, Math.ceil(hashOn.ttlMs / 1000))}` : ''}` : '';
  }

  pick<E extends Balanced>(endpoints: readonly E[], ctx: PickContext | undefined, now: number): E | undefined {
    const n = endpoints.length;
    if (n === 0) return undefined;
    const key = ctx === undefined ? undefined : this.#key(ctx);
    // Nothing to hash (no such header): any endpoint will do, as Envoy picks at random then.
    let slot = key === undefined ? Math.floor(Math.random() * this.#table.length) : fnv1a(key, FNV_SEED_A) % this.#table.length;
    const table = this.#table;
    for (let tries = 0; tries < table.length; tries++) {
      const e = endpoints[table[slot]];
      if (available(e.state!, now)) return e;
      slot = slot + 1 === table.length ? 0 : slot + 1;
    }
    return endpoints[table[slot]];
  }

  /** The cookie value this balancer already set on the response of `ctx`, if any. */
  #given(ctx: PickContext): string | undefined {
    const name = (this.#hashOn as { name: string }).name;
    for (const m of ctx.responseModifiers ?? []) {
      for (const [field, value] of m.add) if (field === 'set-cookie' && value.startsWith(`${name}=`)) return cookieValueOf(value, name);
    }
    return undefined;
  }

  #key(ctx: PickContext): string | undefined {
    const on = this.#hashOn;
    switch (on.type) {
      case 'Header': {
        const v = ctx.requestHeaders.get(on.name);
        return v === undefined ? undefined : typeof v === 'string' ? v : v.join(',');
      }
      case 'SourceIP':
        return ctx.req.remoteAddress;
      case 'Cookie': {
        const found = cookieValue(ctx.requestHeaders.get('cookie'), on.name);
        if (found !== undefined) return found;
        // A retry of a request that had none: the key handed out at its first try.
        const given = this.#given(ctx);
        if (given !== undefined) return given;
        // None yet: this request's key is a new one, handed to the client to bring back.
        const value = randomBytes(16).toString('base64url');
        (ctx.responseModifiers ??= []).push({ set: [], add: [['set-cookie', `${on.name}=${value}${this.#cookieTail}`]], remove: [] });
        return value;
      }
    }
  }
}

function cookieValueOf(line: string, name: string): string | undefined {
  return cookieValue(line.split(';')[0], name);
}

function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const lines = typeof header === 'string' ? [header] : header;
  for (const line of lines) {
    for (const part of line.split(';')) {
      const eq = part.indexOf('=');
      if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

const FNV_SEED_A = 0x811c9dc5;
const FNV_SEED_B = 0x9747b28c;

/** 32-bit FNV-1a over the string's UTF-16 code units, from `seed`. */
function fnv1a(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final mix (murmur3's), so that keys differing in their last characters spread.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The Maglev lookup table: slot -> endpoint index. */
export function maglevTable(keys: readonly string[]): Uint32Array {
  const n = keys.length;
  const size = MAGLEV_SIZES.find((m) => m >= n * 100) ?? MAGLEV_SIZES[MAGLEV_SIZES.length - 1];
  const table = new Uint32Array(size);
  if (n === 0) return table;
  const filled = new Uint8Array(size);
  const offset = keys.map((k) => fnv1a(k, FNV_SEED_A) % size);
  const skip = keys.map((k) => (fnv1a(k, FNV_SEED_B) % (size - 1)) + 1);
  const nextJ = new Array<number>(n).fill(0);
  let done = 0;
  while (done < size) {
    for (let i = 0; i < n && done < size; i++) {
      let slot = (offset[i] + nextJ[i] * skip[i]) % size;
      while (filled[slot] === 1) {
        nextJ[i]++;
        slot = (offset[i] + nextJ[i] * skip[i]) % size;
      }
      filled[slot] = 1;
      table[slot] = i;
      nextJ[i]++;
      done++;
    }
  }
  return table;
}

/** The balancer for a cluster's policy; `endpointKeys` name its endpoints (address:port) for consistent hashing. */
export function balancerFor(lb: LoadBalancerIR | undefined, slowStartMs: number, endpointKeys: readonly string[]): Balancer {
  switch (lb?.type) {
    case 'LeastRequest':
      return new LeastRequest(slowStartMs);
    case 'Random':
      return new RandomPick(slowStartMs);
    case 'ConsistentHash':
      return new ConsistentHash(lb.hashOn, endpointKeys);
    default:
      return new RoundRobin(slowStartMs);
  }
}
