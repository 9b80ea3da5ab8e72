// For tests: turns the deltas of one config stream back into whole IRs,
// the reference for what a stream (or DeltaRelay.full()) describes. It
// keeps the virtual hosts and clusters it was given by id, and hands back
// the same objects for the ids a delta keeps. gatehouse proxy itself
// decodes nothing: it forwards the deltas to its data plane
// (src/proxy/delta-relay.ts), whose compile reads them directly.
import type { IRDelta } from '../../src/ir/delta.ts';
import type { Cluster, IR, IRListener, VirtualHost } from '../../src/ir/types.ts';

export class IRDeltaDecoder {
  #virtualHosts = new Map<number, VirtualHost>();
  #clusters = new Map<number, Cluster>();

  /**
   * The IR `delta` describes, given every delta of its stream before it
   * (none, for a snapshot: `fresh`). Throws, changing nothing, for a delta
   * that uses an id neither it nor an earlier one defined.
   */
  decode(delta: IRDelta, fresh: boolean): IR {
    const knownHosts = fresh ? new Map<number, VirtualHost>() : this.#virtualHosts;
    const knownClusters = fresh ? new Map<number, Cluster>() : this.#clusters;
    const definedHosts = new Map(delta.define.virtualHosts.map(([id, vh]): [number, VirtualHost] => [id, typeof vh === 'string' ? JSON.parse(vh) as VirtualHost : vh]));
    const definedClusters = new Map(delta.define.clusters);
    const nextHosts = new Map<number, VirtualHost>();
    const nextClusters = new Map<number, Cluster>();

    const clusters: Record<string, Cluster> = {};
    for (const [name, id] of Object.entries(delta.clusters)) {
      const cluster = definedClusters.get(id) ?? knownClusters.get(id);
      if (cluster === undefined) throw new Error(`config delta: cluster ${JSON.stringify(name)} has unknown id ${id}`);
      clusters[name] = cluster;
      nextClusters.set(id, cluster);
    }
    const listeners = delta.listeners.map((shape): IRListener => ({
      ...shape,
      gatewayListeners: shape.gatewayListeners.map((gl) => ({
        name: gl.name,
        hostname: gl.hostname,
        virtualHosts: gl.virtualHosts.map((id) => {
          const vh = definedHosts.get(id) ?? knownHosts.get(id);
          if (vh === undefined) throw new Error(`config delta: listener ${JSON.stringify(shape.key)}, ${JSON.stringify(gl.name)}: unknown virtual host id ${id}`);
          nextHosts.set(id, vh);
          return vh;
        }),
      })),
    }));
    this.#virtualHosts = nextHosts;
    this.#clusters = nextClusters;
    return { version: delta.version, listeners, clusters };
  }
}
