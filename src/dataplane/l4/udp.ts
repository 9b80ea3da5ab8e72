// UDP sockets. Each client address:port is a session with one endpoint,
// chosen when its first datagram arrives: datagrams go out through a
// socket of the session's own, and the backend's replies come back from
// the listener's socket. Sessions end after UDP_IDLE_TIMEOUT_MS without a
// datagram either way; at most MAX_UDP_SESSIONS live per listener, and a
// new client beyond that has its datagrams dropped until one ends.
import dgram from 'node:dgram';
import net from 'node:net';
import type { LogFn } from '../log.ts';
import type { CompiledL4Listener, CompiledL4Route } from './routes.ts';

/** Envoy's udp_proxy default idle_timeout is one minute, too. */
export const UDP_IDLE_TIMEOUT_MS = 60_000;
/** Each session holds a socket (a file descriptor): bounded per listener. */
export const MAX_UDP_SESSIONS = 1024;
const SWEEP_MS = 5_000;

interface Session {
  route: CompiledL4Route;
  upstream: dgram.Socket;
  lastSeen: number;
}

export class UdpListener {
  readonly socket: dgram.Socket;
  current: CompiledL4Listener;
  readonly #sessions = new Map<string, Session>();
  readonly #log: LogFn;
  readonly #sweeper: NodeJS.Timeout;
  #idleMs: number;
  #maxSessions: number;
  dropped = 0;

  constructor(current: CompiledL4Listener, log: LogFn, reusePort: boolean, opts: { idleMs?: number; maxSessions?: number } = {}) {
    this.current = current;
    this.#log = log;
    this.#idleMs = opts.idleMs ?? UDP_IDLE_TIMEOUT_MS;
    this.#maxSessions = opts.maxSessions ?? MAX_UDP_SESSIONS;
    this.socket = dgram.createSocket({ type: net.isIPv6(current.address) ? 'udp6' : 'udp4', reuseAddr: reusePort, reusePort } as dgram.SocketOptions);
    this.socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(SWEEP_MS, this.#idleMs));
    this.#sweeper.unref();
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  bind(): Promise<string | null> {
    return new Promise((resolve) => {
      const onError = (err: NodeJS.ErrnoException) => resolve(`${err.code ?? 'ERROR'}: ${err.message}`);
      this.socket.once('error', onError);
      this.socket.bind({ address: this.current.address, port: this.current.port }, () => {
        this.socket.off('error', onError);
        this.socket.on('error', (err) => this.#log('error', 'listener error', { listener: this.current.key, error: err.message }));
        resolve(null);
      });
    });
  }

  /** A new config: sessions whose route changed end; the others go on. */
  update(next: CompiledL4Listener): void {
    this.current = next;
    for (const [key, s] of this.#sessions) {
      if (next.any?.identity !== s.route.identity) this.#end(key, s);
    }
  }

  close(): void {
    clearInterval(this.#sweeper);
    for (const [key, s] of this.#sessions) this.#end(key, s);
    this.socket.close();
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let s = this.#sessions.get(key);
    if (s === undefined) {
      const route = this.current.any;
      const target = route?.pick() ?? null;
      if (route === null || route === undefined || target === null) return;
      if (this.#sessions.size >= this.#maxSessions) {
        this.dropped++;
        return;
      }
      const upstream = dgram.createSocket(net.isIPv6(target.endpoint.address) ? 'udp6' : 'udp4');
      s = { route, upstream, lastSeen: Date.now() };
      const session = s;
      this.#sessions.set(key, session);
      upstream.on('error', (err) => {
        this.#log('warn', 'udp backend error', { listener: this.current.key, error: err.message });
        this.#end(key, session);
      });
      upstream.on('message', (reply) => {
        session.lastSeen = Date.now();
        this.socket.send(reply, rinfo.port, rinfo.address);
      });
      upstream.connect(target.endpoint.port, target.endpoint.address);
      upstream.once('connect', () => { if (this.#sessions.get(key) === session) session.upstream.send(msg); });
      return;
    }
    s.lastSeen = Date.now();
    try {
      s.upstream.send(msg);
    } catch {
      // Not connected yet: the first datagram is sent on connect; the ones before it are dropped, as UDP may.
    }
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#idleMs;
    for (const [key, s] of this.#sessions) if (s.lastSeen < cutoff) this.#end(key, s);
  }

  #end(key: string, s: Session): void {
    if (this.#sessions.get(key) === s) this.#sessions.delete(key);
    try { s.upstream.close(); } catch { /* already closed */ }
  }
}
