// The listening sockets, diffed by IRListener.key on every apply: an
// unchanged key keeps its server and its accepted connections and only
// starts reading the new compiled listener; a removed key stops accepting
// and drains; a new key binds. A protocol change (HTTP <-> HTTPS) rebuilds,
// and so does a change of what the socket is made with (a
// ClientTrafficPolicy's PROXY protocol, limits or HTTP/2 windows): the old
// server drains its connections on the settings they came in with.
// At shutdown every listener is first marked draining (answers ask clients
// to close, accepting goes on), then all stop accepting and drain at once.

import type tls from 'node:tls';
import type { CompiledConfig, CompiledListener } from './config.ts';
import type { DownstreamRequest, DownstreamResponse } from './http/downstream.ts';
import type { ServingState } from './http/exchange.ts';
import type { HttpRequestHandler } from './http/handler.ts';
import { createPlainServer, createTlsServer, type ClientServer } from './http/server.ts';
import type { RequestLimits } from './limits.ts';
import type { LogFn } from './log.ts';
import type { DataPlaneMetrics } from './metrics.ts';
import type { TlsFacts } from './http/request-record.ts';
import { MIN_TLS_VERSION, type SniTable } from './tls/sni.ts';

const DRAIN_SWEEP_MS = 250;

class ListenerSlot implements ServingState {
  current: CompiledListener;
  draining = false;
  readonly server: ClientServer;
  /** Identity of the certificate the server answers clients without SNI with. */
  defaultCertificate: string | null;

  constructor(current: CompiledListener, server: ClientServer) {
    this.current = current;
    this.server = server;
    this.defaultCertificate = current.sni?.defaultMaterial.identity ?? null;
  }

  get key(): string {
    return this.current.key;
  }

  /** Same socket: same address, port, protocol and socket settings. */
  canServe(next: CompiledListener): boolean {
    const current = this.current;
    return current.address === next.address && current.port === next.port && current.protocol === next.protocol
      && current.socketSettings === next.socketSettings;
  }
}

export interface ReconcileResult {
  /** Listeners that could not be bound, by key. */
  readonly bindErrors: Record<string, string>;
  /** Listeners still serving their previous default certificate, by key. */
  readonly certificateErrors: Record<string, string>;
}

export class ListenerSet {
  readonly #slots = new Map<string, ListenerSlot>();
  readonly #draining = new Set<Promise<void>>();
  readonly #limits: RequestLimits;
  readonly #log: LogFn;
  readonly #handler: HttpRequestHandler;
  readonly #reusePort: boolean;
  readonly #metrics: DataPlaneMetrics;
  /** Set by markDraining(): listeners bound after it drain too. */
  #shuttingDown = false;

  constructor(limits: RequestLimits, log: LogFn, handler: HttpRequestHandler, reusePort: boolean, metrics: DataPlaneMetrics) {
    this.#metrics = metrics;
    this.#limits = limits;
    this.#log = log;
    this.#handler = handler;
    this.#reusePort = reusePort;
  }

  /**
   * Serves `config`. Existing servers switch to it in one synchronous pass
   * (no request can see half an update); then removed servers drain and new
   * ones bind. Bind failures are returned by key, never thrown.
   */
  async reconcile(config: CompiledConfig): Promise<ReconcileResult> {
    const errors: Record<string, string> = {};
    const certificateErrors: Record<string, string> = {};
    const toBind: CompiledListener[] = [];
    const toDrain: ListenerSlot[] = [];
    for (const [key, slot] of this.#slots) {
      const next = config.listeners.get(key);
      if (next !== undefined && slot.canServe(next)) {
        slot.current = next;
        this.#updateDefaultCertificate(slot, certificateErrors);
      } else {
        toDrain.push(slot);
        this.#slots.delete(key);
        if (next !== undefined) toBind.push(next);
      }
    }
    for (const [key, listener] of config.listeners) {
      if (!this.#slots.has(key) && !toBind.includes(listener)) toBind.push(listener);
    }
    // Drain first: a rebuilt listener needs its port back.
    for (const slot of toDrain) this.#drain(slot);
    await Promise.all(
      toBind.map(async (listener) => {
        const error = await this.#bind(listener);
        if (error !== null) errors[listener.key] = error;
      }),
    );
    return { bindErrors: errors, certificateErrors };
  }

  /**
   * Shutdown, first step: every answer from now on carries `Connection:
   * close`, so clients move to another instance as their requests finish
   * (Envoy does the same during its drain time); listeners keep accepting.
   */
  markDraining(): void {
    this.#shuttingDown = true;
    for (const slot of this.#slots.values()) slot.draining = true;
  }

  /**
   * Stops accepting on every listener and drains them; resolves when all
   * their connections are gone, the last ones cut at the drain timeout.
   * Logs each step: how many connections were open when accepting
   * stopped, then the drain complete or the connections cut.
   */
  async closeAll(): Promise<void> {
    const slots = [...this.#slots.values()];
    this.#slots.clear();
    const started = Date.now();
    const cut = slots.map((slot) => this.#drain(slot));
    // Idle connections were closed just now; their sockets are counted out a tick later.
    await new Promise((resolve) => setImmediate(resolve));
    const open = (await Promise.all(slots.map((slot) => openConnections(slot.server)))).reduce((a, b) => a + b, 0);
    this.#log('info', 'drain: stopped accepting; connections still open', { listeners: slots.length, connections: open, drainTimeoutMs: this.#limits.drainTimeoutMs });
    const cutTotal = (await Promise.all(cut)).reduce((a, b) => a + b, 0);
    await Promise.all([...this.#draining]);
    if (cutTotal === 0) this.#log('info', 'drain complete', { ms: Date.now() - started });
    else this.#log('warn', 'drain ended at the drain timeout', { ms: Date.now() - started, cutConnections: cutTotal });
  }

  /** Bound listeners, for diagnostics and tests. */
  keys(): string[] {
    return [...this.#slots.keys()];
  }

  #updateDefaultCertificate(slot: ListenerSlot, certificateErrors: Record<string, string>): void {
    const sni = slot.current.sni;
    if (sni === null || slot.defaultCertificate === sni.defaultMaterial.identity) return;
    const material = sni.defaultMaterial;
    try {
      // Clients without SNI never reach SNICallback: they get the server's
      // own context, which only setSecureContext replaces.
      (slot.server.server as tls.Server).setSecureContext({
        cert: material.cert,
        key: material.key,
        ca: material.ca,
        minVersion: MIN_TLS_VERSION,
      });
      slot.defaultCertificate = material.identity;
    } catch (err) {
      certificateErrors[slot.key] = `default certificate: ${(err as Error).message}`;
    }
  }

  #bind(listener: CompiledListener): Promise<string | null> {
    let slot: ListenerSlot;
    const spec = {
      key: listener.key,
      limits: listener.limits,
      proxyProtocol: listener.client?.proxyProtocol ?? null,
      http2Windows: listener.client?.http2 ?? null,
      log: this.#log,
      stats: this.#metrics.listener(listener.key),
      onRequest: (req: DownstreamRequest, res: DownstreamResponse) => this.#handler.handle(slot, req, res),
      draining: () => slot.draining,
    };
    const server =
      listener.sni === null
        ? createPlainServer(spec)
        : createTlsServer({
            ...spec,
            sni: () => slot.current.sni as SniTable,
            onSecureRequest: (req: DownstreamRequest, res: DownstreamResponse, tls: TlsFacts) =>
              this.#handler.handle(slot, req, res, tls),
            defaultCertificate: listener.sni.defaultMaterial,
          });
    slot = new ListenerSlot(listener, server);
    slot.draining = this.#shuttingDown;
    const socket = server.server;
    return new Promise((resolve) => {
      const onError = (err: NodeJS.ErrnoException) => {
        socket.off('listening', onListening);
        this.#log('error', 'listener bind failed', { listener: listener.key, error: err.message });
        resolve(`${err.code ?? 'ERROR'}: ${err.message}`);
      };
      const onListening = () => {
        socket.off('error', onError);
        socket.on('error', (err) => this.#log('error', 'listener error', { listener: listener.key, error: err.message }));
        this.#slots.set(listener.key, slot);
        this.#log('info', 'listener bound', { listener: listener.key, protocol: listener.protocol });
        resolve(null);
      };
      socket.once('error', onError);
      socket.once('listening', onListening);
      socket.listen({ host: listener.address, port: listener.port, reusePort: this.#reusePort });
    });
  }

  /**
   * Stops accepting at once; requests in flight finish on the config they
   * have, answers ask clients to close, idle connections are closed now and
   * whatever is left after the drain timeout is cut (and logged). Resolves
   * when the listener is closed, with the number of connections cut.
   */
  #drain(slot: ListenerSlot): Promise<number> {
    slot.draining = true;
    const config = slot.current.config;
    config.retain();
    const server = slot.server;
    let cut = 0;
    const done = new Promise<number>((resolve) => {
      const timer = setTimeout(() => {
        void openConnections(server).then((open) => {
          cut = open;
          if (open > 0) this.#log('warn', 'drain timeout reached: cutting connections', { listener: slot.key, connections: open, drainTimeoutMs: this.#limits.drainTimeoutMs });
          server.closeAllConnections();
        });
      }, this.#limits.drainTimeoutMs);
      timer.unref();
      // A response that started before draining kept its connection alive;
      // close such connections as soon as they go idle.
      const sweeper = setInterval(() => server.closeIdleConnections(), DRAIN_SWEEP_MS);
      sweeper.unref();
      server.close(() => {
        clearTimeout(timer);
        clearInterval(sweeper);
        config.release();
        this.#log('info', 'listener closed', { listener: slot.key });
        resolve(cut);
      });
      server.closeIdleConnections();
    });
    const tracked = done.then(() => {});
    this.#draining.add(tracked);
    void tracked.then(() => this.#draining.delete(tracked));
    return done;
  }
}

/** Client connections a listener holds, counted by node on the raw sockets (TLS handshakes in progress included). */
function openConnections(server: ClientServer): Promise<number> {
  return new Promise((resolve) => server.server.getConnections((err, count) => resolve(err ? 0 : count)));
}
