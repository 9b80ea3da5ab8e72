// How the IR reaches a data plane that already has the previous one: the
// listeners in full (they are few), and the virtual hosts and clusters by
// id, with only those that changed since the last delta spelled out. A
// one-route change with 1,000 routes loaded then ships and recompiles one
// virtual host instead of all of them.
//
// The encoder decides "unchanged" by identity: translate() hands back the
// very same RouteEntry and Cluster objects for the routes and backends that
// did not change (its memo), so a virtual host whose route list holds the
// same entries, and whose clusters kept their ids, is the same. Any IR can
// be encoded; one built from scratch every time simply ships in full.
import { IR_VERSION, type Cluster, type IR, type IRListener, type RouteEntry, type VirtualHost } from './types.ts';
import { usesAnyCluster } from './route-clusters.ts';

export interface IRDelta {
  version: typeof IR_VERSION;
  listeners: ListenerShape[];
  /** Every cluster of the IR: name -> id. */
  clusters: Record<string, number>;
  /**
   * Virtual hosts and clusters the receiver has not been given before, by
   * id. A virtual host may come as its JSON text instead (see asText).
   */
  define: { virtualHosts: [number, VirtualHost | string][]; clusters: [number, Cluster][] };
}

/**
 * The delta with every virtual host as JSON text: how worker threads get
 * them. A receiver parses one, compiles it and drops it, so the parsed
 * copy dies young; a cloned object graph lives through the whole compile
 * and stays in the old generation until a full collection.
 */
export function asText(delta: IRDelta): IRDelta {
  const virtualHosts = delta.define.virtualHosts.map(([id, vh]): [number, string] => [id, typeof vh === 'string' ? vh : JSON.stringify(vh)]);
  return { ...delta, define: { ...delta.define, virtualHosts } };
}

/**
 * What sends deltas to data planes keeps to start one afresh: a new
 * receiver, or one that refused a delta, is sent full() next.
 */
export interface DeltaSource {
  /** The last config sent, with every virtual host and cluster it uses defined; null before the first. */
  full(): IRDelta | null;
}

/** An IRListener whose virtual hosts are ids. */
export interface ListenerShape extends Omit<IRListener, 'gatewayListeners'> {
  gatewayListeners: { name: string; hostname: string | null; virtualHosts: number[] }[];
}

interface Known<T> {
  id: number;
  value: T;
}

/** A virtual host as one gateway listener last had it, and the last encode that saw it there. */
interface Slot {
  known: Known<VirtualHost>;
  pass: number;
}

/**
 * What one gateway listener was sent, kept and updated in place from one
 * encode to the next: its hosts by object (translate hands back the very
 * object for a host that did not change, so one look-up finds it) and by
 * hostname (for an equal host made anew). Rebuilding both per encode cost
 * more than everything else the encoder does with 5,000 hosts.
 */
interface ListenerHostsSent {
  byObject: Map<VirtualHost, Slot>;
  byHostname: Map<string, Slot>;
}

/**
 * Remembers what it has sent. Every receiver must get every delta of one
 * encoder in order, starting with a full() one (a data plane that starts
 * later gets full() first).
 */
export class IRDeltaEncoder implements DeltaSource {
  #nextId = 1;
  #pass = 0;
  /** By listener key and gateway listener name (`key\u0000name`). */
  #sent = new Map<string, ListenerHostsSent>();
  #clusters = new Map<string, Known<Cluster>>();
  #last: IRDelta | null = null;

  /** The delta from the previous IR to `ir`. */
  encode(ir: IR): IRDelta {
    const pass = ++this.#pass;
    const clusters: Record<string, number> = {};
    const nextClusters = new Map<string, Known<Cluster>>();
    const definedClusters: [number, Cluster][] = [];
    const changedClusters = new Set<string>();
    for (const [name, cluster] of Object.entries(ir.clusters)) {
      let known = this.#clusters.get(name);
      if (known === undefined || known.value !== cluster) {
        known = { id: this.#nextId++, value: cluster };
        definedClusters.push([known.id, cluster]);
        changedClusters.add(name);
      }
      nextClusters.set(name, known);
      clusters[name] = known.id;
    }
    for (const name of this.#clusters.keys()) if (!nextClusters.has(name)) changedClusters.add(name);

    const sent = new Map<string, ListenerHostsSent>();
    const definedHosts: [number, VirtualHost | string][] = [];
    // A route attached to several listeners (HTTP and HTTPS, say) gives each
    // the same virtual host: send and compile it once. Translate hands them
    // the same object; equal ones made apart are found by hostname.
    const definedNow = new Map<VirtualHost, Known<VirtualHost>>();
    const byHostname = new Map<string, Known<VirtualHost>[]>();
    const sameAsEarlier = (vh: VirtualHost) => byHostname.get(vh.hostname)?.find((k) => sameElements(k.value.routes, vh.routes));
    /** A host another gateway listener already has, unchanged: the same object, or equal and made in this encode. */
    const elsewhere = (vh: VirtualHost): Known<VirtualHost> | undefined => {
      const now = definedNow.get(vh) ?? sameAsEarlier(vh);
      if (now !== undefined) return now;
      for (const other of sent.values()) {
        const slot = other.byObject.get(vh);
        if (slot !== undefined && slot.pass === pass) return slot.known;
      }
      return undefined;
    };
    const listeners = ir.listeners.map((listener): ListenerShape => ({
      ...listener,
      gatewayListeners: listener.gatewayListeners.map((gl) => {
        const glKey = `${listener.key}\u0000${gl.name}`;
        const state = this.#sent.get(glKey) ?? { byObject: new Map(), byHostname: new Map() };
        sent.set(glKey, state);
        const ids = gl.virtualHosts.map((vh) => {
          let slot = state.byObject.get(vh);
          if (slot !== undefined && (changedClusters.size === 0 || !usesAny(vh.routes, changedClusters))) {
            slot.pass = pass;
            return slot.known.id;
          }
          let known = elsewhere(vh);
          if (known === undefined) {
            const before = state.byHostname.get(vh.hostname)?.known;
            if (before !== undefined && sameElements(before.value.routes, vh.routes) && !usesAny(vh.routes, changedClusters)) known = before;
          }
          if (known === undefined) {
            known = { id: this.#nextId++, value: vh };
            definedHosts.push([known.id, vh]);
            definedNow.set(vh, known);
            const same = byHostname.get(vh.hostname);
            if (same === undefined) byHostname.set(vh.hostname, [known]);
            else same.push(known);
          }
          slot = { known, pass };
          state.byObject.set(vh, slot);
          state.byHostname.set(vh.hostname, slot);
          return known.id;
        });
        // Hosts gone from this listener (hostnames are unique within it).
        if (state.byObject.size !== ids.length) for (const [vh, slot] of state.byObject) if (slot.pass !== pass) state.byObject.delete(vh);
        if (state.byHostname.size !== ids.length) for (const [h, slot] of state.byHostname) if (slot.pass !== pass) state.byHostname.delete(h);
        return { name: gl.name, hostname: gl.hostname, virtualHosts: ids };
      }),
    }));
    this.#sent = sent;
    this.#clusters = nextClusters;
    this.#last = { version: ir.version, listeners, clusters, define: { virtualHosts: definedHosts, clusters: definedClusters } };
    return this.#last;
  }

  /** The last encoded IR with every virtual host and cluster defined: what a new receiver starts from. */
  full(): IRDelta | null {
    if (this.#last === null) return null;
    const hosts = new Set<Known<VirtualHost>>();
    for (const state of this.#sent.values()) for (const slot of state.byObject.values()) hosts.add(slot.known);
    return {
      ...this.#last,
      define: {
        virtualHosts: [...hosts].map((k) => [k.id, k.value]),
        clusters: [...this.#clusters.values()].map((k) => [k.id, k.value]),
      },
    };
  }
}

/**
 * Whether two lists hold the very same objects in the same order: what
 * "unchanged" means here, and in translate's memo, which keeps what did
 * not change as the same instances.
 */
export function sameElements<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function usesAny(routes: readonly RouteEntry[], clusters: ReadonlySet<string>): boolean {
  if (clusters.size === 0) return false;
  for (const route of routes) if (usesAnyCluster(route, clusters)) return true;
  return false;
}
