// What the HTTP and GRPC routes bring to a translation, kept from one
// translation to the next: per listener the routes attached to it and, on
// a serving listener, the routes of each hostname; the clusters the routes
// use with the Gateways that reach them. A route
// brings its part when it is put in and takes it away when it goes or
// changes, so a reload that changed one route of 5,000 costs a look-up per
// route instead of rebuilding every listener's hostname map (~20 ms).
//
// What a route brings depends on its translation, its attachment outcome
// and the listeners' serving flags and Gateways, all of which the
// attachment world's number stands for (route-outcome.ts): a table begun
// in another world starts empty.
import type { KubeObject } from '../api/types.ts';
import { nameOf } from '../api/snapshot.ts';
import type { Cluster } from '../ir/types.ts';
import type { ResolvedListener } from './gateway.ts';
import type { TranslatedHTTPRoute } from './httproute.ts';
import type { RouteOutcome } from './route-outcome.ts';

/**
 * The routes attached to one hostname of a listener. Never changed once
 * made: the virtual-host memo compares them by their elements, so a change
 * gives the hostname a new list. A hostname that one route alone serves
 * holds that route's one list, on every listener it is on.
 */
export type HostRoutes = readonly TranslatedHTTPRoute[];

const NONE: ReadonlySet<string> = new Set();

interface Entry {
  t: TranslatedHTTPRoute;
  outcome: RouteOutcome;
  /** The last pass that put it. */
  pass: number;
}

export class RouteTable {
  #world = -1;
  #pass = 0;
  /** The pass that last started from an empty table. */
  #clearedIn = 0;
  #put = 0;
  readonly #routes = new Map<KubeObject, Entry>();
  readonly #attached = new Map<string, number>();
  /** Serving listener name -> hostname -> routes. */
  readonly #hosts = new Map<string, Map<string, HostRoutes>>();
  readonly #alone = new WeakMap<TranslatedHTTPRoute, HostRoutes>();
  /** Cluster name -> the cluster, and how many routes on a serving listener use it. */
  readonly #clusters = new Map<string, { cluster: Cluster; routes: number }>();
  /** Cluster name -> Gateway key -> attachments through which it is reached. */
  readonly #clusterGateways = new Map<string, Map<string, number>>();
  /** Serving listener name -> the hostnames whose routes changed in this pass. */
  readonly #changed = new Map<string, Set<string>>();
  /** The listeners of the translation under way, by name. */
  #listeners: ReadonlyMap<string, ResolvedListener> = new Map();

  /** Starts a translation's pass: routes not put before end() are taken out. */
  begin(world: number, listeners: ReadonlyMap<string, ResolvedListener>): void {
    this.#pass++;
    if (world !== this.#world) {
      this.#clear();
      this.#clearedIn = this.#pass;
    }
    this.#world = world;
    this.#listeners = listeners;
    this.#put = 0;
    this.#changed.clear();
  }

  /** This pass's number: what changedHosts() is asked about. */
  get pass(): number {
    return this.#pass;
  }

  /**
   * The hostnames of a serving listener whose routes changed since pass
   * `since`; null when that cannot be told (not the pass before this one,
   * or the table started empty since), and every hostname is to be taken
   * as changed.
   */
  changedHosts(listener: string, since: number): ReadonlySet<string> | null {
    if (since !== this.#pass - 1 || this.#clearedIn === this.#pass) return null;
    return this.#changed.get(listener) ?? NONE;
  }

  /** The route `source` as this translation has it. */
  put(source: KubeObject, t: TranslatedHTTPRoute, outcome: RouteOutcome): void {
    const before = this.#routes.get(source);
    if (before !== undefined && before.pass === this.#pass) return;
    this.#put++;
    if (before !== undefined && before.t === t && before.outcome === outcome) {
      before.pass = this.#pass;
      return;
    }
    if (before !== undefined) this.#takeOut(before);
    const entry: Entry = { t, outcome, pass: this.#pass };
    this.#bringIn(entry);
    this.#routes.set(source, entry);
  }

  /** Ends the pass: the routes not put in it are taken out. */
  end(): void {
    if (this.#put === this.#routes.size) return;
    for (const [source, entry] of this.#routes) {
      if (entry.pass === this.#pass) continue;
      this.#takeOut(entry);
      this.#routes.delete(source);
    }
  }

  /** Routes attached to the listener, serving or not. */
  attachedTo(listener: string): number {
    return this.#attached.get(listener) ?? 0;
  }

  /** The hostnames of a serving listener with their routes; not to be changed. */
  hostsOf(listener: string): ReadonlyMap<string, HostRoutes> | undefined {
    return this.#hosts.get(listener);
  }

  /** The clusters used by routes on serving listeners, by name. */
  clusters(): Record<string, Cluster> {
    const out: Record<string, Cluster> = {};
    for (const [name, used] of this.#clusters) out[name] = used.cluster;
    return out;
  }

  /** Cluster name -> the Gateways whose routes send to it (a new map, the caller's to add to). */
  clusterGateways(): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const [name, gateways] of this.#clusterGateways) out.set(name, new Set(gateways.keys()));
    return out;
  }

  /** Each accepted route with the Gateways that accept it. */
  *accepted(): Iterable<{ route: KubeObject; gateways: readonly string[] }> {
    for (const [route, entry] of this.#routes) {
      if (entry.outcome.acceptedBy.length !== 0) yield { route, gateways: entry.outcome.acceptedBy };
    }
  }

  #clear(): void {
    this.#routes.clear();
    this.#attached.clear();
    this.#hosts.clear();
    this.#clusters.clear();
    this.#clusterGateways.clear();
  }

  #bringIn(entry: Entry): void {
    const { t, outcome } = entry;
    let used = false;
    for (const att of outcome.attachments) {
      this.#attached.set(att.listener, this.attachedTo(att.listener) + 1);
      const listener = this.#listeners.get(att.listener)!;
      if (!listener.serving) continue;
      used = true;
      const gateway = nameOf(listener.gateway);
      for (const c of t.clusters) {
        let gateways = this.#clusterGateways.get(c.name);
        if (gateways === undefined) this.#clusterGateways.set(c.name, gateways = new Map());
        gateways.set(gateway, (gateways.get(gateway) ?? 0) + 1);
      }
      let byHost = this.#hosts.get(att.listener);
      if (byHost === undefined) this.#hosts.set(att.listener, byHost = new Map());
      const changed = this.#changedOn(att.listener);
      for (const h of att.hostnames) {
        const list = byHost.get(h);
        byHost.set(h, list === undefined ? this.#aloneList(t) : [...list, t]);
        changed.add(h);
      }
    }
    if (used) {
      for (const c of t.clusters) {
        const known = this.#clusters.get(c.name);
        if (known === undefined) this.#clusters.set(c.name, { cluster: c, routes: 1 });
        else { known.cluster = c; known.routes++; }
      }
    }
  }

  #takeOut(entry: Entry): void {
    const { t, outcome } = entry;
    let used = false;
    for (const att of outcome.attachments) {
      const attached = this.attachedTo(att.listener) - 1;
      if (attached === 0) this.#attached.delete(att.listener);
      else this.#attached.set(att.listener, attached);
      const listener = this.#listeners.get(att.listener)!;
      if (!listener.serving) continue;
      used = true;
      const gateway = nameOf(listener.gateway);
      for (const c of t.clusters) {
        const gateways = this.#clusterGateways.get(c.name)!;
        const n = gateways.get(gateway)! - 1;
        if (n !== 0) gateways.set(gateway, n);
        else if (gateways.size === 1) this.#clusterGateways.delete(c.name);
        else gateways.delete(gateway);
      }
      const byHost = this.#hosts.get(att.listener)!;
      const changed = this.#changedOn(att.listener);
      for (const h of att.hostnames) {
        const rest = byHost.get(h)!.filter((other) => other !== t);
        if (rest.length === 0) byHost.delete(h);
        else byHost.set(h, rest.length === 1 ? this.#aloneList(rest[0]) : rest);
        changed.add(h);
      }
    }
    if (used) {
      for (const c of t.clusters) {
        const known = this.#clusters.get(c.name)!;
        if (--known.routes === 0) this.#clusters.delete(c.name);
      }
    }
  }

  #changedOn(listener: string): Set<string> {
    let changed = this.#changed.get(listener);
    if (changed === undefined) this.#changed.set(listener, changed = new Set());
    return changed;
  }

  #aloneList(t: TranslatedHTTPRoute): HostRoutes {
    let list = this.#alone.get(t);
    if (list === undefined) this.#alone.set(t, list = [t]);
    return list;
  }
}
