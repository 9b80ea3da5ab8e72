// The TLS, TCP and UDP sockets, diffed by key on every apply like the HTTP
// ones (../listeners.ts): a kept key keeps its socket and the connections
// (UDP: sessions) whose route is still there with the same backends; the
// others are closed. A removed key stops accepting at once and its
// connections are cut after the drain timeout.
import net from 'node:net';
import type { LogFn } from '../log.ts';
import type { RequestLimits } from '../limits.ts';
import type { CompiledL4Listener } from './routes.ts';
import { createStreamServer, type StreamListenerState } from './stream.ts';
import { UdpListener } from './udp.ts';

type Slot =
  | { kind: 'stream'; server: net.Server; state: StreamListenerState }
  | { kind: 'udp'; udp: UdpListener };

export class L4ListenerSet {
  readonly #slots = new Map<string, Slot>();
  readonly #log: LogFn;
  readonly #reusePort: boolean;
  readonly #limits: RequestLimits;

  constructor(log: LogFn, reusePort: boolean, limits: RequestLimits) {
    this.#log = log;
    this.#reusePort = reusePort;
    this.#limits = limits;
  }

  /** Bind failures by key, never thrown. */
  async reconcile(listeners: ReadonlyMap<string, CompiledL4Listener>): Promise<Record<string, string>> {
    const errors: Record<string, string> = {};
    const toBind: CompiledL4Listener[] = [];
    for (const [key, slot] of this.#slots) {
      const next = listeners.get(key);
      const current = slot.kind === 'udp' ? slot.udp.current : slot.state.current;
      if (next !== undefined && next.address === current.address && next.port === current.port && next.protocol === current.protocol) {
        if (slot.kind === 'udp') slot.udp.update(next);
        else updateStream(slot.state, next);
      } else {
        this.#slots.delete(key);
        this.#close(slot);
        if (next !== undefined) toBind.push(next);
      }
    }
    for (const [key, l] of listeners) if (!this.#slots.has(key) && !toBind.includes(l)) toBind.push(l);
    await Promise.all(toBind.map(async (l) => {
      const error = await this.#bind(l);
      if (error !== null) errors[l.key] = error;
    }));
    return errors;
  }

  keys(): string[] {
    return [...this.#slots.keys()];
  }

  /** Stops accepting everywhere; resolves when the connections are gone, cut at the drain timeout. */
  async closeAll(): Promise<void> {
    const slots = [...this.#slots.values()];
    this.#slots.clear();
    await Promise.all(slots.map((s) => this.#close(s)));
  }

  #close(slot: Slot): Promise<void> {
    if (slot.kind === 'udp') {
      slot.udp.close();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => { for (const c of slot.state.connections) c.destroy(); }, this.#limits.drainTimeoutMs);
      timer.unref();
      slot.server.close(() => { clearTimeout(timer); resolve(); });
    });
  }

  async #bind(l: CompiledL4Listener): Promise<string | null> {
    if (l.protocol === 'UDP') {
      const udp = new UdpListener(l, this.#log, this.#reusePort);
      const error = await udp.bind();
      if (error === null) this.#slots.set(l.key, { kind: 'udp', udp });
      else udp.close();
      return error;
    }
    const state: StreamListenerState = {
      current: l, connections: new Set(), log: this.#log,
      helloTimeoutMs: this.#limits.tlsHandshakeTimeoutMs, connectTimeoutMs: this.#limits.upstreamConnectTimeoutMs,
    };
    const server = createStreamServer(state);
    // As on HTTP listeners: node closes connections beyond this at accept.
    server.maxConnections = this.#limits.maxClientConnections;
    return new Promise((resolve) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.#log('error', 'listener bind failed', { listener: l.key, error: err.message });
        resolve(`${err.code ?? 'ERROR'}: ${err.message}`);
      };
      server.once('error', onError);
      server.listen({ host: l.address, port: l.port, reusePort: this.#reusePort }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.#log('error', 'listener error', { listener: l.key, error: err.message }));
        this.#slots.set(l.key, { kind: 'stream', server, state });
        this.#log('info', 'listener bound', { listener: l.key, protocol: l.protocol });
        resolve(null);
      });
    });
  }
}

/** Connections whose route is still served with the same backends stay; the others are closed. */
function updateStream(state: StreamListenerState, next: CompiledL4Listener): void {
  state.current = next;
  const kept = new Set<string>();
  if (next.any !== null) kept.add(next.any.identity);
  for (const r of next.all) kept.add(r.identity);
  for (const c of state.connections) if (c.route !== null && !kept.has(c.route.identity)) c.destroy();
}
