// The part of the IR one Gateway's proxies need, and nothing more: in
// Kubernetes mode the controller translates every Gateway at once, but a
// proxy pod runs one Gateway and must never hold another Gateway's routes,
// backends or, above all, private keys.
//
// Identity is kept: the virtual hosts, route entries and clusters of the
// result are the very objects of `ir`, so an IRDeltaEncoder fed the
// results of successive translations still sees what did not change as
// unchanged (see delta.ts), and a one-route change reaches a proxy as a
// one-virtual-host delta.
import { IR_VERSION, type Cluster, type GatewayListenerIR, type IR, type IRListener, type TLSCertificate } from './types.ts';
import { addRouteClusters } from './route-clusters.ts';

/** Where a proxy binds: every interface of its pod, which has an address of its own. */
export const PROXY_BIND_ADDRESS = '0.0.0.0';

/**
 * The IR for the proxies of Gateway `gateway` (`namespace/name`): its
 * Gateway listeners (named `namespace/name/listener`, and those of its
 * ListenerSets `namespace/name/Kind/namespace/listenerset/listener`), the clusters their
 * routes send and mirror to, and the certificates of their sockets, with every socket
 * rebound to all interfaces. A Gateway the IR does not mention gets an IR
 * with no listeners.
 */
export function irForGateway(ir: IR, gateway: string): IR {
  const prefix = `${gateway}/`;
  const listeners: IRListener[] = [];
  const clusterNames = new Set<string>();
  for (const socket of ir.listeners) {
    const own = socket.gatewayListeners.filter((gl) => gl.name.startsWith(prefix));
    if (own.length === 0) continue;
    const key = `${PROXY_BIND_ADDRESS}:${socket.port}${socket.protocol === 'UDP' ? '/udp' : ''}`;
    // translate binds each Gateway to one address, so its ports are
    // distinct and rebinding cannot make two sockets one; should it ever,
    // the first socket keeps the port rather than mixing two.
    if (listeners.some((l) => l.key === key)) continue;
    for (const gl of own) collectClusters(gl, clusterNames);
    const rebound: IRListener = { key, address: PROXY_BIND_ADDRESS, port: socket.port, protocol: socket.protocol, gatewayListeners: own };
    if (socket.l4 !== undefined) {
      // Translate gives each Gateway its own address, so an L4 socket's routes are all of its one Gateway.
      rebound.l4 = socket.l4;
      for (const r of socket.l4.routes) for (const b of r.backends) if (b.cluster !== null) clusterNames.add(b.cluster);
    }
    if (socket.tls !== undefined) {
      rebound.tls = { certificates: ownCertificates(socket, own) };
      if (socket.tls.clientValidation !== undefined) rebound.tls.clientValidation = socket.tls.clientValidation;
    }
    if (socket.client !== undefined) rebound.client = socket.client;
    listeners.push(rebound);
  }
  const clusters: Record<string, Cluster> = {};
  for (const name of [...clusterNames].sort()) {
    const cluster = ir.clusters[name];
    if (cluster !== undefined) clusters[name] = cluster;
  }
  return { version: IR_VERSION, listeners, clusters };
}

function collectClusters(gl: GatewayListenerIR, into: Set<string>): void {
  for (const vh of gl.virtualHosts) {
    for (const route of vh.routes) addRouteClusters(route, into);
  }
}

/**
 * The certificates of `socket` that belong to the Gateway listeners
 * `own`. A certificate carries no owner, only the names it serves (the
 * listener's hostname, or `*` for a listener without one). On a socket
 * only this Gateway uses, all are its own. On a socket shared with
 * another Gateway (translate gives each Gateway its own address today, so
 * this is a safeguard), a certificate is kept only when every name it
 * serves is a hostname of one of `own` and of no other Gateway's listener
 * there: one that could be another's is left out, and its listener serves
 * without it rather than leak a key.
 */
function ownCertificates(socket: IRListener, own: readonly GatewayListenerIR[]): TLSCertificate[] {
  const certificates = socket.tls?.certificates ?? [];
  if (own.length === socket.gatewayListeners.length) return certificates;
  const mine = new Set(own.map(servedName));
  const others = new Set(socket.gatewayListeners.filter((gl) => !own.includes(gl)).map(servedName));
  return certificates.filter((c) => c.serverNames.length > 0 && c.serverNames.every((n) => mine.has(n) && !others.has(n)));
}

/** The name translate puts in `serverNames` for a Gateway listener's certificates. */
function servedName(gl: GatewayListenerIR): string {
  return gl.hostname ?? '*';
}
