// Passes the config stream's deltas on to the proxy's data plane without
// turning them back into an IR. The main thread of `gatehouse proxy` does
// not serve (its workers do): it only has to check each delta, forward
// it, and be able to hand a new or failed worker the whole config. For
// that it keeps the virtual hosts as the JSON text the controller sent
// (each worker parses and compiles a text, as it always has) and the
// clusters (few and small, and the active health checks read them) by
// id. Decoding them into objects here cost 39 MiB of heap at 5,000
// routes (bench/RESULTS.md, issue 13 item 3).
//
// The texts are needed again only when a data plane needs the whole
// config, which is rare: a second after a change has been handed on, the
// relay deflates the texts it holds, a few at a time so that the thread
// (the data plane's own, with --workers 0) is never held for long, and
// full() inflates them. At 5,000 routes: 9.3 MiB of text -> 1 MiB, for
// 0.1-0.4 s of CPU spread over ~80 turns of the event loop, and about as
// much to inflate for full().
//
// Ids: the controller's ids are per stream (each stream has its own
// encoder and starts again from 1), while a data plane's compile cache
// keeps an id's compiled form for as long as configs use that id. So the
// relay gives every virtual host and cluster an id of its own, never
// reused across streams: a snapshot after a reconnect gets new ids for
// everything and is compiled whole, as a fresh decode was before; within
// a stream, an id the controller keeps stays the same id here, so one
// changed route still ships and compiles as one virtual host.
import zlib from 'node:zlib';
import type { DeltaSource, IRDelta, ListenerShape } from '../ir/delta.ts';
import type { Cluster } from '../ir/types.ts';

/**
 * Small state and output chunks: a text is ~2 KiB, and zlib's defaults
 * (a 256 KiB state, a 16 KiB output chunk from the Buffer pool per call)
 * turned 5,000 calls into ~20 MiB more of malloc arena, which glibc then
 * kept (bin/gatehouse.js's trim threshold). Same ratio on route texts.
 */
const DEFLATE: zlib.ZlibOptions = { level: 1, windowBits: 11, memLevel: 3, chunkSize: 1024 };

/**
 * A virtual host's JSON text deflated (raw, UTF-8), its bytes kept as a
 * one-byte string: a string is held in the heap at its own size, while
 * the Buffers zlib returns are slices of a 64 KiB pool slab, and a few of
 * them keep a whole slab alive (~21 KiB a text, measured).
 */
class Deflated {
  readonly bytes: string;
  constructor(text: string) {
    this.bytes = zlib.deflateRawSync(text, DEFLATE).toString('latin1');
  }

  text(): string {
    return zlib.inflateRawSync(Buffer.from(this.bytes, 'latin1')).toString('utf8');
  }
}

/** A virtual host's JSON text, or that text deflated once the relay compacted it. */
type Text = string | Deflated;

/** How long after handing a config on the relay starts compacting: changes come in bursts. */
const COMPACT_DELAY_MS = 1_000;
/** Texts deflated per turn of the event loop: ~5 ms of CPU here. */
const COMPACT_SLICE = 64;

export interface DeltaRelayOptions {
  /**
   * Told how many texts a compaction deflated, once it is done: the
   * strings they replace are garbage the old generation keeps until a
   * full collection (control/release-memory.ts).
   */
  compacted?(texts: number): void;
}

/** One config, as the relay holds it: our ids throughout. Never changed once built, but for texts replaced by their deflated form. */
interface Held {
  version: IRDelta['version'];
  listeners: ListenerShape[];
  /** Every cluster's name -> our id. */
  clusterIds: Record<string, number>;
  /** Exactly the virtual hosts the listeners use, as JSON text, by our id. */
  hosts: Map<number, Text>;
  /** Exactly the clusters of `clusterIds`, by our id. */
  clusters: ReadonlyMap<number, Cluster>;
}

export class DeltaRelay implements DeltaSource {
  #nextId = 1;
  /** The current stream's ids -> ours, for what its last delta uses. */
  #hostIds = new Map<number, number>();
  #clusterIds = new Map<number, number>();
  /** The config of every delta accepted so far. */
  #accepted: Held | null = null;
  /** The config last handed on by take(): what the data plane has, or is being given. */
  #taken: Held | null = null;
  readonly #opts: DeltaRelayOptions;
  #compactTimer: NodeJS.Timeout | null = null;
  #compacting: NodeJS.Immediate | null = null;

  constructor(opts: DeltaRelayOptions = {}) {
    this.#opts = opts;
  }

  /**
   * Takes the next delta of a stream, given every delta of that stream
   * before it (none, for a snapshot: `fresh`). Throws, changing nothing,
   * for a delta that uses an id neither it nor an earlier one of its
   * stream defined.
   */
  accept(delta: IRDelta, fresh: boolean): void {
    const knownHosts = fresh ? new Map<number, number>() : this.#hostIds;
    const knownClusters = fresh ? new Map<number, number>() : this.#clusterIds;
    const previous = fresh ? null : this.#accepted;
    const definedHosts = new Map(delta.define.virtualHosts);
    const definedClusters = new Map(delta.define.clusters);
    const hostIds = new Map<number, number>();
    const clusterIds = new Map<number, number>();
    const hosts = new Map<number, Text>();
    const clusters = new Map<number, Cluster>();
    // Ours for the ids this delta defines, handed out only once it is accepted.
    let nextId = this.#nextId;

    const byName: Record<string, number> = {};
    for (const [name, theirs] of Object.entries(delta.clusters)) {
      let ours = clusterIds.get(theirs);
      if (ours === undefined) {
        const defined = definedClusters.get(theirs);
        if (defined !== undefined) {
          ours = nextId++;
          clusters.set(ours, defined);
        } else {
          ours = knownClusters.get(theirs);
          const cluster = ours === undefined ? undefined : previous?.clusters.get(ours);
          if (ours === undefined || cluster === undefined) throw new Error(`config delta: cluster ${JSON.stringify(name)} has unknown id ${theirs}`);
          clusters.set(ours, cluster);
        }
        clusterIds.set(theirs, ours);
      }
      byName[name] = ours;
    }
    const listeners = delta.listeners.map((shape): ListenerShape => ({
      ...shape,
      gatewayListeners: shape.gatewayListeners.map((gl) => ({
        name: gl.name,
        hostname: gl.hostname,
        virtualHosts: gl.virtualHosts.map((theirs) => {
          let ours = hostIds.get(theirs);
          if (ours !== undefined) return ours;
          const defined = definedHosts.get(theirs);
          if (defined !== undefined) {
            ours = nextId++;
            // From a controller that sends objects, the text is made here, once.
            hosts.set(ours, typeof defined === 'string' ? defined : JSON.stringify(defined));
          } else {
            ours = knownHosts.get(theirs);
            const text = ours === undefined ? undefined : previous?.hosts.get(ours);
            if (ours === undefined || text === undefined) {
              throw new Error(`config delta: listener ${JSON.stringify(shape.key)}, ${JSON.stringify(gl.name)}: unknown virtual host id ${theirs}`);
            }
            hosts.set(ours, text);
          }
          hostIds.set(theirs, ours);
          return ours;
        }),
      })),
    }));
    this.#nextId = nextId;
    this.#hostIds = hostIds;
    this.#clusterIds = clusterIds;
    this.#accepted = { version: delta.version, listeners, clusterIds: byName, hosts, clusters };
  }

  /**
   * The delta from the config last taken to the one last accepted (the
   * folded changes of every delta accepted since), virtual hosts as JSON
   * text; null before the first accept. What it returns is what full()
   * gives from then on.
   */
  take(): IRDelta | null {
    const next = this.#accepted;
    if (next === null) return null;
    const last = this.#taken;
    this.#taken = next;
    const virtualHosts: [number, string][] = [];
    for (const [id, text] of next.hosts) if (last === null || !last.hosts.has(id)) virtualHosts.push([id, inflated(text)]);
    const clusters: [number, Cluster][] = [];
    for (const [id, cluster] of next.clusters) if (last === null || !last.clusters.has(id)) clusters.push([id, cluster]);
    this.#scheduleCompaction();
    return { version: next.version, listeners: next.listeners, clusters: next.clusterIds, define: { virtualHosts, clusters } };
  }

  /** The config last taken with every virtual host and cluster defined: what a new or failed data plane is sent. */
  full(): IRDelta | null {
    const held = this.#taken;
    if (held === null) return null;
    return {
      version: held.version, listeners: held.listeners, clusters: held.clusterIds,
      define: { virtualHosts: [...held.hosts].map(([id, text]) => [id, inflated(text)]), clusters: [...held.clusters] },
    };
  }

  /** The clusters of the config last taken, by name: for the active health checks. */
  clusters(): Record<string, Cluster> {
    const out: Record<string, Cluster> = {};
    const held = this.#taken;
    if (held === null) return out;
    for (const [name, id] of Object.entries(held.clusterIds)) out[name] = held.clusters.get(id)!;
    return out;
  }

  /** Stops compacting (at shutdown); what is held stays usable. */
  close(): void {
    if (this.#compactTimer !== null) clearTimeout(this.#compactTimer);
    if (this.#compacting !== null) clearImmediate(this.#compacting);
    this.#compactTimer = null;
    this.#compacting = null;
  }

  /** Deflates every text of the config taken, COMPACT_DELAY_MS after the last take(). */
  #scheduleCompaction(): void {
    this.close();
    this.#compactTimer = setTimeout(() => {
      this.#compactTimer = null;
      this.#compactSlice(this.#taken, 0);
    }, COMPACT_DELAY_MS);
    this.#compactTimer.unref();
  }

  #compactSlice(held: Held | null, done: number): void {
    this.#compacting = null;
    if (held === null || held !== this.#taken) return;
    let n = 0;
    for (const [id, text] of held.hosts) {
      if (typeof text !== 'string') continue;
      const deflated = new Deflated(text);
      held.hosts.set(id, deflated);
      // The config accepted since may share the text (same id): it is the same text.
      if (this.#accepted !== held && this.#accepted?.hosts.get(id) === text) this.#accepted.hosts.set(id, deflated);
      done++;
      if (++n === COMPACT_SLICE) {
        // Not unref'd: an unref'd immediate waits for some other event to wake the loop.
        this.#compacting = setImmediate(() => this.#compactSlice(held, done));
        return;
      }
    }
    if (done > 0) this.#opts.compacted?.(done);
  }
}

function inflated(text: Text): string {
  return typeof text === 'string' ? text : text.text();
}
