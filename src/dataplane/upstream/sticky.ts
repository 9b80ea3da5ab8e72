// Session persistence (HTTPRoute `sessionPersistence`): the endpoint a
// session began on is named in a token the client brings back, in a cookie
// or a header, and requests with a valid token go to that endpoint while it
// is still one of the route's.
//
// The token never holds the endpoint's address. It is
//   base64url( version 1B | created ms 8B | last used ms 8B | endpoint tag 8B | MAC 16B )
// where the endpoint tag is HMAC-SHA256(key, cluster name, endpoint origin)
// cut to 8 bytes, and the MAC is HMAC-SHA256(key, rule scope, the 25 bytes
// before it) cut to 16 bytes. Without the key a tag cannot be tied to an
// address (not even by hashing every address of a subnet), and a token
// cannot be forged, moved to another rule, or have its times changed. A
// token that does not verify, has timed out, or names an endpoint no longer
// in the route is ignored: the request is balanced as usual and gets a new
// token. The tag depends on the cluster and the endpoint only, so sessions
// survive reloads and endpoint changes that keep their endpoint, and move
// when it goes (an endpoint that is not ready is left out of the IR).
//
// The key is GATEHOUSE_SESSION_KEY (base64url, at least 32 bytes) when the
// operator sets it: replicas that share it honour each other's tokens, and
// tokens outlive restarts. Otherwise one is drawn at random when this module
// is first loaded and put in the environment, which worker threads started
// after it inherit (control/worker-pool.ts loads this module for that), so
// every worker of one process shares it; a restart then begins new sessions.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SessionPersistence } from '../../ir/types.ts';
import type { HeaderModifier } from '../http/filters.ts';
import type { HeaderTable } from '../http/headers.ts';
import type { CompiledBackend, UpstreamCluster, UpstreamEndpoint, WeightedBackends } from './balancer.ts';

export const SESSION_KEY_ENV = 'GATEHOUSE_SESSION_KEY';
const MIN_KEY_BYTES = 32;

function sessionKey(): Buffer {
  const set = process.env[SESSION_KEY_ENV];
  if (set !== undefined && set !== '') {
    const key = Buffer.from(set, 'base64url');
    // Only the length is said: the value is secret.
    if (key.length < MIN_KEY_BYTES) throw new Error(`${SESSION_KEY_ENV}: expected at least ${MIN_KEY_BYTES} bytes in base64url, got ${key.length}`);
    return key;
  }
  const key = randomBytes(MIN_KEY_BYTES);
  process.env[SESSION_KEY_ENV] = key.toString('base64url');
  return key;
}

const KEY = sessionKey();

const VERSION = 1;
const PAYLOAD_BYTES = 1 + 8 + 8 + 8;
const MAC_BYTES = 16;
const TOKEN_BYTES = PAYLOAD_BYTES + MAC_BYTES;
const TOKEN_CHARS = Math.ceil((TOKEN_BYTES * 4) / 3);
/** A token dated this far in the future is still taken: clocks of replicas sharing a key differ a little. */
const CLOCK_SKEW_MS = 60_000;
/** Most cookie (or header) values of the session's name tried per request; more are ignored. */
const MAX_CANDIDATES = 4;

/** Endpoint tags, per cluster object (a changed cluster is a new object, so its map is made again). */
const tagsByCluster = new WeakMap<UpstreamCluster, Map<string, UpstreamEndpoint>>();
const tagOfEndpoint = new WeakMap<UpstreamEndpoint, Buffer>();

function endpointTag(endpoint: UpstreamEndpoint): Buffer {
  let tag = tagOfEndpoint.get(endpoint);
  if (tag === undefined) {
    tag = createHmac('sha256', KEY).update('endpoint\0').update(endpoint.cluster.name).update('\0').update(endpoint.origin).digest().subarray(0, 8);
    tagOfEndpoint.set(endpoint, tag);
  }
  return tag;
}

function endpointsByTag(cluster: UpstreamCluster): Map<string, UpstreamEndpoint> {
  let map = tagsByCluster.get(cluster);
  if (map === undefined) {
    map = new Map();
    for (const e of cluster.endpoints) map.set(endpointTag(e).toString('latin1'), e);
    tagsByCluster.set(cluster, map);
  }
  return map;
}

export interface StickyTarget {
  readonly backend: CompiledBackend;
  readonly endpoint: UpstreamEndpoint;
  /** When the session began, ms since the epoch. */
  readonly created: number;
}

/** A rule's session persistence, compiled. */
export class SessionAffinity {
  readonly type: 'Cookie' | 'Header';
  /** Lower-cased for the request table; as written for the response. */
  readonly #lowerName: string;
  readonly #name: string;
  readonly #scope: Buffer;
  readonly #absoluteMs: number;
  readonly #idleMs: number;
  /** Cookie attributes after the value, but Max-Age and Secure. */
  readonly #attributes: string;
  readonly #permanent: boolean;

  constructor(ir: SessionPersistence) {
    this.type = ir.type;
    this.#name = ir.name;
    this.#lowerName = ir.name.toLowerCase();
    this.#scope = Buffer.from(`${ir.scope}\0`);
    this.#absoluteMs = ir.absoluteTimeoutMs ?? 0;
    this.#idleMs = ir.idleTimeoutMs ?? 0;
    this.#permanent = ir.lifetime === 'Permanent' && this.#absoluteMs > 0;
    this.#attributes = `; Path=${ir.path ?? '/'}; HttpOnly`;
  }

  /** The endpoint a valid token of the request names, if the route still has it. */
  find(headers: HeaderTable, backends: WeightedBackends, now: number): StickyTarget | null {
    for (const token of this.#candidates(headers)) {
      const t = this.#verify(token, now);
      if (t === null) continue;
      for (const backend of backends.all) {
        if (backend.cluster === null) continue;
        const endpoint = endpointsByTag(backend.cluster).get(t.tag);
        if (endpoint !== undefined) return { backend, endpoint, created: t.created };
      }
    }
    return null;
  }

  /**
   * What the response carries for the session, or null when the client's
   * token stays good as it is: a new session gets a token; an existing one
   * gets its last-used time renewed when there is an idle timeout.
   */
  responseModifier(found: StickyTarget | null, endpoint: UpstreamEndpoint, now: number, secure: boolean): HeaderModifier | null {
    const continued = found !== null && found.endpoint === endpoint;
    if (continued && this.#idleMs === 0) return null;
    const created = continued ? found.created : now;
    const token = this.#issue(endpoint, created, now);
    if (this.type === 'Header') return { set: [[this.#lowerName, token]], add: [], remove: [] };
    let cookie = `${this.#name}=${token}${this.#attributes}`;
    if (this.#permanent) cookie += `; Max-Age=${Math.max(1, Math.ceil((created + this.#absoluteMs - now) / 1000))}`;
    if (secure) cookie += '; Secure';
    return { set: [], add: [['set-cookie', cookie]], remove: [] };
  }

  #issue(endpoint: UpstreamEndpoint, created: number, now: number): string {
    const buf = Buffer.allocUnsafe(TOKEN_BYTES);
    buf[0] = VERSION;
    buf.writeBigUInt64BE(BigInt(created), 1);
    buf.writeBigUInt64BE(BigInt(now), 9);
    endpointTag(endpoint).copy(buf, 17);
    this.#mac(buf.subarray(0, PAYLOAD_BYTES)).copy(buf, PAYLOAD_BYTES);
    return buf.toString('base64url');
  }

  #mac(payload: Buffer): Buffer {
    return createHmac('sha256', KEY).update(this.#scope).update(payload).digest().subarray(0, MAC_BYTES);
  }

  #verify(token: string, now: number): { tag: string; created: number } | null {
    if (token.length !== TOKEN_CHARS) return null;
    const buf = Buffer.from(token, 'base64url');
    if (buf.length !== TOKEN_BYTES || buf[0] !== VERSION) return null;
    const payload = buf.subarray(0, PAYLOAD_BYTES);
    if (!timingSafeEqual(this.#mac(payload), buf.subarray(PAYLOAD_BYTES))) return null;
    const created = Number(buf.readBigUInt64BE(1));
    const last = Number(buf.readBigUInt64BE(9));
    if (created > now + CLOCK_SKEW_MS || last > now + CLOCK_SKEW_MS || last < created) return null;
    if (this.#absoluteMs > 0 && now - created >= this.#absoluteMs) return null;
    if (this.#idleMs > 0 && now - last >= this.#idleMs) return null;
    return { tag: buf.subarray(17, 25).toString('latin1'), created };
  }

  /** The values of the session's cookie or header in the request, first ones first, at most MAX_CANDIDATES. */
  #candidates(headers: HeaderTable): string[] {
    const out: string[] = [];
    if (this.type === 'Header') {
      const v = headers.get(this.#lowerName);
      if (v !== undefined) for (const s of typeof v === 'string' ? [v] : v) if (out.length < MAX_CANDIDATES) out.push(s.trim());
      return out;
    }
    const v = headers.get('cookie');
    if (v === undefined) return out;
    // HTTP/2 sends one cookie per field; HTTP/1.1 joins them with "; ".
    for (const line of typeof v === 'string' ? [v] : v) {
      for (const pair of line.split(';')) {
        const eq = pair.indexOf('=');
        if (eq === -1 || pair.slice(0, eq).trim() !== this.#name) continue;
        out.push(pair.slice(eq + 1).trim());
        if (out.length >= MAX_CANDIDATES) return out;
      }
    }
    return out;
  }
}
