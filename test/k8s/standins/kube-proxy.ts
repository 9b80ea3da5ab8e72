// A stand-in for kube-proxy, in the way its userspace mode worked (it was
// removed in Kubernetes 1.26): for each TCP port of a Service it listens
// on the Service's addresses, accepts each connection and opens one to an
// endpoint of the Service, then copies bytes both ways until either side
// closes. Served here: the cluster IP of every Service that has one, and
// the status.loadBalancer.ingress IPs of LoadBalancer Services (what
// MetalLB's speaker would attract to the node); each address is put on
// this network namespace's loopback so that clients here and pods behind
// the bridge reach it.
//
// Endpoints come from the Service's EndpointSlices (label
// kubernetes.io/service-name), the port matched by the Service port's
// name. Only endpoints whose conditions.ready is not false get new
// connections (the EndpointSlice controller sets it false for a pod that
// is not Ready or is terminating); connections already open stay open
// whatever happens to their endpoint. Endpoints take turns (round robin);
// an endpoint that does not accept within the dial timeout is skipped for
// the next, as userspace kube-proxy did (250 ms, 500 ms, 1 s, 2 s). UDP
// ports are relayed as userspace kube-proxy relayed them: one upstream
// socket per client address, to an endpoint taken in turn, answers sent
// back from the Service's address, the pairing dropped after an idle
// while. NodePorts, session affinity and the traffic policies are not done.
import dgram from 'node:dgram';
import net from 'node:net';
import { Api, keyOf, listWatch, type Json } from './api.ts';
import { addLocalAddress, removeLocalAddress } from './netns.ts';

/** userspace kube-proxy's EndpointDialTimeouts: one try per endpoint, each given longer. */
const DIAL_TIMEOUTS_MS = [250, 500, 1_000, 2_000];
/**
 * A UDP client's pairing with its endpoint ends after this long without a
 * datagram either way (userspace kube-proxy's --udp-timeout was 250 ms;
 * longer here so that a slow test's request and answer share a pairing).
 */
const UDP_IDLE_MS = 10_000;
/** Pairings per UDP port at once; a new client past this is dropped (its datagram lost, as UDP allows). */
const UDP_MAX_CLIENTS = 1_024;

export interface KubeProxyOptions {
  api: Api;
  log?: (msg: string) => void;
  /** Serve cluster IPs too (default true); false: load-balancer ingress IPs only. */
  clusterIPs?: boolean;
}

export interface KubeProxy {
  synced: Promise<void>;
  /** `ip:port` -> `namespace/name:portName` for every address served now. */
  served(): Map<string, string>;
  /** Resolves when the listeners match every change seen so far. */
  idle(): Promise<void>;
  /** Connections made so far to each endpoint (`ip:port`). */
  connectionsTo(): Map<string, number>;
  stop(): Promise<void>;
}

type Protocol = 'TCP' | 'UDP';

interface Target { service: string; namespace: string; serviceName: string; portName: string; protocol: Protocol }

interface Listener { server: net.Server | null; udp: dgram.Socket | null; close(): void; target: Target; ip: string; next: number }

export function startKubeProxy(opts: KubeProxyOptions): KubeProxy {
  const { api } = opts;
  const log = opts.log ?? (() => {});
  const withClusterIPs = opts.clusterIPs ?? true;
  const services = new Map<string, Json>();
  const slices = new Map<string, Json>();
  const listeners = new Map<string, Listener>();
  /** Addresses this stand-in put on loopback (so it removes only those). */
  const ownAddresses = new Set<string>();
  const open = new Set<net.Socket>();
  const counts = new Map<string, number>();
  let syncing: Promise<void> = Promise.resolve();
  let again = false;
  let stopped = false;

  /** Ready endpoints of a Service port, as `ip:port`, sorted (so turns are stable across slice updates). */
  function endpoints(t: Target): string[] {
    const out = new Set<string>();
    for (const s of slices.values()) {
      if (s.metadata?.namespace !== t.namespace || s.metadata?.labels?.['kubernetes.io/service-name'] !== t.serviceName) continue;
      if (s.addressType !== 'IPv4') continue;
      const port = (s.ports ?? []).find((p: Json) => (p.name ?? '') === t.portName && (p.protocol ?? 'TCP') === t.protocol);
      if (!port || typeof port.port !== 'number') continue;
      for (const e of s.endpoints ?? []) {
        // ready unset means ready (the API's own rule).
        if (e.conditions?.ready === false) continue;
        for (const a of e.addresses ?? []) out.add(`${a}:${port.port}`);
      }
    }
    return [...out].sort();
  }

  function dial(l: Listener, client: net.Socket, attempt: number): void {
    const eps = endpoints(l.target);
    if (eps.length === 0 || attempt >= DIAL_TIMEOUTS_MS.length) {
      if (attempt > 0 || eps.length === 0) log(`kube-proxy: ${l.target.service}:${l.target.portName}: no endpoint accepted (${eps.length} ready); closing the client's connection`);
      client.destroy();
      return;
    }
    const ep = eps[l.next++ % eps.length];
    const i = ep.lastIndexOf(':');
    const upstream = net.connect({ host: ep.slice(0, i), port: Number(ep.slice(i + 1)), allowHalfOpen: true });
    open.add(upstream);
    const timer = setTimeout(() => upstream.destroy(new Error(`no answer within ${DIAL_TIMEOUTS_MS[attempt]} ms`)), DIAL_TIMEOUTS_MS[attempt]);
    const failed = (err: Error) => {
      clearTimeout(timer);
      open.delete(upstream);
      log(`kube-proxy: ${l.target.service}: dial ${ep} failed: ${err.message}; trying the next endpoint`);
      if (!client.destroyed) dial(l, client, attempt + 1);
    };
    upstream.once('error', failed);
    upstream.once('connect', () => {
      clearTimeout(timer);
      upstream.off('error', failed);
      counts.set(ep, (counts.get(ep) ?? 0) + 1);
      splice(client, upstream);
    });
  }

  /** Bytes both ways, half-closes passed on; an error on either side ends both. */
  function splice(a: net.Socket, b: net.Socket): void {
    const end = () => { a.destroy(); b.destroy(); };
    a.on('error', end);
    b.on('error', end);
    a.on('close', () => { open.delete(a); b.destroy(); });
    b.on('close', () => { open.delete(b); a.destroy(); });
    a.pipe(b);
    b.pipe(a);
    a.resume();
  }

  /** A UDP port: datagrams from each client go to one endpoint, its answers back to that client. */
  async function listenUdp(key: string, ip: string, port: number, target: Target): Promise<void> {
    const sock = dgram.createSocket('udp4');
    const pairs = new Map<string, { up: dgram.Socket; timer: NodeJS.Timeout }>();
    const l: Listener = {
      server: null, udp: sock, target, ip, next: 0,
      close() { for (const p of pairs.values()) { clearTimeout(p.timer); p.up.close(); } pairs.clear(); sock.close(); },
    };
    sock.on('error', (err) => log(`kube-proxy: ${key}: ${err.message}`));
    sock.on('message', (msg, from) => {
      if (stopped) return;
      const client = `${from.address}:${from.port}`;
      let pair = pairs.get(client);
      if (!pair) {
        const eps = endpoints(target);
        if (eps.length === 0 || pairs.size >= UDP_MAX_CLIENTS) return;
        const ep = eps[l.next++ % eps.length];
        const i = ep.lastIndexOf(':');
        const up = dgram.createSocket('udp4');
        const drop = () => { const p = pairs.get(client); if (p) { clearTimeout(p.timer); pairs.delete(client); p.up.close(); } };
        up.on('error', drop);
        up.on('message', (answer) => {
          const p = pairs.get(client);
          if (p) p.timer.refresh();
          sock.send(answer, from.port, from.address);
        });
        up.connect(Number(ep.slice(i + 1)), ep.slice(0, i));
        counts.set(ep, (counts.get(ep) ?? 0) + 1);
        pair = { up, timer: setTimeout(drop, UDP_IDLE_MS) };
        pairs.set(client, pair);
        const p = pair;
        up.once('connect', () => p.up.send(msg));
        return;
      }
      pair.timer.refresh();
      try { pair.up.send(msg); } catch { /* not connected yet: lost, as a datagram may be */ }
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: ip, port }, () => { sock.off('error', reject); resolve(); });
    });
    listeners.set(key, l);
    log(`kube-proxy: serving ${key} for ${target.service}:${target.portName}`);
  }

  async function listen(key: string, ip: string, port: number, target: Target): Promise<void> {
    if (await addLocalAddress(ip)) ownAddresses.add(ip);
    if (target.protocol === 'UDP') return listenUdp(key, ip, port, target);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const l: Listener = { server, udp: null, close() {}, target, ip, next: 0 };
    server.on('connection', (client) => {
      if (stopped) { client.destroy(); return; }
      open.add(client);
      client.on('error', () => client.destroy());
      client.on('close', () => open.delete(client));
      dial(l, client, 0);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: ip, port }, () => { server.off('error', reject); resolve(); });
    });
    listeners.set(key, l);
    log(`kube-proxy: serving ${key} for ${target.service}:${target.portName}`);
  }

  async function unlisten(key: string): Promise<void> {
    const l = listeners.get(key);
    if (!l) return;
    listeners.delete(key);
    // TCP connections already made stay: only accepting stops. UDP pairings end with the port.
    if (l.server) await new Promise<void>((resolve) => l.server!.close(() => resolve()));
    else l.close();
    if (ownAddresses.has(l.ip) && ![...listeners.values()].some((x) => x.ip === l.ip)) {
      ownAddresses.delete(l.ip);
      await removeLocalAddress(l.ip);
    }
    log(`kube-proxy: no longer serving ${key}`);
  }

  function wanted(): Map<string, Target> {
    const out = new Map<string, Target>();
    for (const svc of services.values()) {
      const spec = svc.spec ?? {};
      if (spec.type === 'ExternalName') continue;
      const ips: string[] = [];
      if (withClusterIPs && spec.clusterIP && spec.clusterIP !== 'None' && net.isIPv4(spec.clusterIP)) ips.push(spec.clusterIP);
      if (spec.type === 'LoadBalancer') {
        for (const i of svc.status?.loadBalancer?.ingress ?? []) if (typeof i.ip === 'string' && net.isIPv4(i.ip)) ips.push(i.ip);
      }
      for (const p of spec.ports ?? []) {
        const protocol = p.protocol ?? 'TCP';
        if (protocol !== 'TCP' && protocol !== 'UDP') continue;
        for (const ip of ips) {
          // UDP keys carry their protocol: a Service may serve both on one port number (DNS).
          out.set(`${ip}:${p.port}${protocol === 'UDP' ? '/udp' : ''}`, { service: keyOf(svc), namespace: svc.metadata.namespace, serviceName: svc.metadata.name, portName: p.name ?? '', protocol });
        }
      }
    }
    return out;
  }

  async function sync(): Promise<void> {
    const want = wanted();
    for (const [key, l] of listeners) {
      const t = want.get(key);
      if (!t || t.service !== l.target.service || t.portName !== l.target.portName) await unlisten(key);
    }
    for (const [key, t] of want) {
      if (listeners.has(key) || stopped) continue;
      const addr = key.replace(/\/udp$/, '');
      const i = addr.lastIndexOf(':');
      try {
        await listen(key, addr.slice(0, i), Number(addr.slice(i + 1)), t);
      } catch (err) {
        log(`kube-proxy: cannot serve ${key}: ${(err as Error).message}`);
      }
    }
  }

  /** Listeners follow Services one sync at a time; changes seen during one cause one more. */
  function resync(): void {
    if (again) return;
    again = true;
    syncing = syncing.then(async () => {
      again = false;
      if (!stopped) await sync();
    });
  }

  const onError = (msg: string) => log(`kube-proxy: ${msg}`);
  const svcWatch = listWatch(api, '/api/v1/services', {
    upsert(o) { services.set(keyOf(o), o); resync(); },
    deleted(o) { services.delete(keyOf(o)); resync(); },
    synced(keys) { for (const k of [...services.keys()]) if (!keys.has(k)) services.delete(k); resync(); },
  }, onError);
  // Endpoints are looked up at each connection: a slice change needs no sync.
  const sliceWatch = listWatch(api, '/apis/discovery.k8s.io/v1/endpointslices', {
    upsert(o) { slices.set(keyOf(o), o); },
    deleted(o) { slices.delete(keyOf(o)); },
    synced(keys) { for (const k of [...slices.keys()]) if (!keys.has(k)) slices.delete(k); },
  }, onError);

  return {
    synced: Promise.all([svcWatch.synced, sliceWatch.synced]).then(() => undefined),
    served: () => new Map([...listeners].map(([k, l]) => [k, `${l.target.service}:${l.target.portName}`])),
    async idle() {
      let seen: Promise<void>;
      do { seen = syncing; await seen; } while (seen !== syncing);
    },
    connectionsTo: () => new Map(counts),
    async stop() {
      stopped = true;
      svcWatch.close();
      sliceWatch.close();
      await syncing;
      for (const s of open) s.destroy();
      for (const key of [...listeners.keys()]) await unlisten(key);
    },
  };
}
