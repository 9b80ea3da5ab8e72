// TCP and TLS sockets. TCP: each connection goes to one endpoint of the
// route, bytes are spliced both ways, a half-close is passed on. TLS: the
// ClientHello is read first (bounded: MAX_CLIENT_HELLO_BYTES, and the
// data plane's tlsHandshakeTimeoutMs for the hello and, on Terminate, the
// handshake), the route is chosen by its SNI; Passthrough sends the
// client's bytes as they are, Terminate ends TLS here with the listener's
// certificate for that name and sends the cleartext (or TLS again, with a
// BackendTLSPolicy) to the backend.
import net from 'node:net';
import tls from 'node:tls';
import { readClientHello, UNRECOGNIZED_NAME_ALERT } from '../tls/client-hello.ts';
import { MIN_TLS_VERSION } from '../tls/sni.ts';
import type { LogFn } from '../log.ts';
import { routeFor, type CompiledL4Listener, type CompiledL4Route, type L4Target } from './routes.ts';

/**
 * A spliced connection with no byte either way for this long is closed
 * (Envoy's tcp_proxy default idle_timeout is one hour as well).
 */
export const IDLE_TIMEOUT_MS = 60 * 60 * 1000;

/** A client connection being served, for reloads (close it when its route went away) and drains. */
export interface L4Connection {
  route: CompiledL4Route | null;
  destroy(): void;
}

export interface StreamListenerState {
  current: CompiledL4Listener;
  connections: Set<L4Connection>;
  log: LogFn;
  /** A client that has not sent its whole ClientHello (and finished a terminated handshake) by then is closed. */
  helloTimeoutMs: number;
  /** A backend connection not established by then is given up, and the client's closed. */
  connectTimeoutMs: number;
}

export function createStreamServer(state: StreamListenerState): net.Server {
  return net.createServer({ pauseOnConnect: false, allowHalfOpen: true }, (client) => {
    const conn: L4Connection = { route: null, destroy: () => client.destroy() };
    state.connections.add(conn);
    client.once('close', () => state.connections.delete(conn));
    client.on('error', () => client.destroy());
    const listener = state.current;
    if (listener.protocol === 'TCP') {
      conn.route = listener.any;
      connect(client, conn, null, state);
      return;
    }
    readHello(client, listener, conn, state);
  });
}

function readHello(client: net.Socket, listener: CompiledL4Listener, conn: L4Connection, state: StreamListenerState): void {
  let buffered = Buffer.alloc(0);
  const timer = setTimeout(() => client.destroy(), state.helloTimeoutMs);
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    const hello = readClientHello(buffered);
    if (hello.kind === 'partial') return;
    clearTimeout(timer);
    client.off('data', onData);
    client.pause();
    if (hello.kind !== 'hello') {
      client.destroy();
      return;
    }
    const route = routeFor(listener, hello.serverName);
    if (route === null) {
      // No route for the name: the connection is closed without a word,
      // as Envoy closes one that matches no filter chain. An alert would
      // speak TLS for backends that may terminate it themselves
      // (Passthrough), and the upstream suite (TLSRouteHostnameIntersection)
      // wants the connection rejected: a close or a reset.
      client.destroy();
      return;
    }
    conn.route = route;
    if (route.mode === 'Terminate') {
      const context = listener.sni?.contextFor(hello.serverName);
      if (context === undefined) {
        client.end(UNRECOGNIZED_NAME_ALERT);
        return;
      }
      client.unshift(buffered);
      const secure = new tls.TLSSocket(client, { isServer: true, secureContext: context, minVersion: MIN_TLS_VERSION } as tls.TLSSocketOptions);
      conn.destroy = () => { secure.destroy(); client.destroy(); };
      secure.on('error', () => client.destroy());
      const handshake = setTimeout(() => client.destroy(), state.helloTimeoutMs);
      secure.once('secure', () => {
        clearTimeout(handshake);
        connect(secure, conn, null, state);
      });
      return;
    }
    connect(client, conn, buffered, state);
  };
  client.on('data', onData);
}

/** Opens the backend connection and splices; `first`: bytes already read from the client, sent first. */
function connect(client: net.Socket, conn: L4Connection, first: Buffer | null, state: StreamListenerState): void {
  const target: L4Target | null = conn.route?.pick() ?? null;
  if (target === null) {
    client.destroy();
    return;
  }
  client.pause();
  const { address, port } = target.endpoint;
  const upstream: net.Socket = target.tls === null
    ? net.connect({ host: address, port, allowHalfOpen: true })
    : tls.connect({ ...target.tls, host: address, port, allowHalfOpen: true } as tls.ConnectionOptions);
  const previous = conn.destroy;
  conn.destroy = () => { upstream.destroy(); previous(); };
  const connectTimer = setTimeout(() => upstream.destroy(new Error('connect timeout')), state.connectTimeoutMs);
  upstream.once(target.tls === null ? 'connect' : 'secureConnect', () => {
    clearTimeout(connectTimer);
    if (first !== null) upstream.write(first);
    splice(client, upstream);
  });
  upstream.on('error', (err) => {
    clearTimeout(connectTimer);
    state.log('warn', 'l4 backend connection failed', { listener: state.current.key, route: conn.route?.name, backend: `${address}:${port}`, error: err.message });
    client.destroy();
  });
  client.once('close', () => upstream.destroy());
}

/** Both ways, with backpressure; an end from one side ends the other's writes (half-close). */
function splice(a: net.Socket, b: net.Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.resume();
  for (const s of [a, b]) {
    s.setTimeout(IDLE_TIMEOUT_MS, () => { a.destroy(); b.destroy(); });
    s.once('close', () => { a.destroy(); b.destroy(); });
  }
  // Both halves closed: the sockets are done.
  let ended = 0;
  const onEnd = () => { if (++ended === 2) { a.destroy(); b.destroy(); } };
  a.once('end', onEnd);
  b.once('end', onEnd);
}
