// A WebSocket after its handshake: once the backend has answered 101
// Switching Protocols, the client's side (its connection, or over HTTP/2
// its stream, RFC 8441) and the backend's connection carry
// bytes both ways, unread (the frames are the two ends' business, as in
// Envoy and nginx). Each direction is paced by the other end: a side that
// cannot take more pauses the one sending to it, so a tunnel holds at most
// a socket buffer per direction, however fast one end writes.
//
// It ends when either end closes: a FIN is passed on as a FIN (the other
// end may still answer, as the WebSocket closing handshake does), a reset
// or error closes both. The deadlines are the client connection's, checked
// by its listener's sweep (connection.ts): no byte either way for
// websocketIdleTimeoutMs, a client that reads nothing of what is queued
// for it for responseWriteTimeoutMs, and (here) a backend that reads
// nothing of what is queued for it for upstreamIdleTimeoutMs.
//
// A tunnel depends on no config: it holds none, so a config change, even
// one that removes its route, leaves it open (Envoy does the same with
// upgraded streams); only its listener's removal or the shutdown drains it,
// like any connection.

import type { Duplex } from 'node:stream';

/**
 * How long the client gets to read the last bytes once the backend has
 * closed, before its socket is cut (the client connection's own linger).
 */
const LINGER_MS = 1_000;

export class Tunnel {
  /** The client's side: its socket (HTTP/1.1), or its stream (HTTP/2, RFC 8441). */
  readonly #client: Duplex;
  readonly #upstream: Duplex;
  /** Tells the client its side was cut, not closed: the socket is destroyed, a stream reset. */
  readonly #cutClient: () => void;
  /** Bytes from and to the client, for the idle deadline. */
  #traffic = 0;
  /** Bytes written to the backend; with its writableLength, what it has taken. */
  #upstreamWritten = 0;
  /** What the backend had taken at the last sweep, and since when it has taken nothing of a non-empty queue (ms; 0: not stalled). */
  #upstreamFlushedSeen = 0;
  #upstreamStalledSince = 0;
  /** Client bytes read plus written at the last sweep, and when that last changed (ms). */
  #trafficSeen = -1;
  #activeAt: number;
  #closed = false;

  /**
   * `client` is the client's socket, its HTTP reading already given back
   * to its stream; `head`: bytes the client sent after its handshake
   * request, already read, for the backend first. Reading on both starts
   * now.
   */
  constructor(client: Duplex, upstream: Duplex, head: Buffer | null, now: number, cutClient: () => void = () => client.destroy()) {
    this.#client = client;
    this.#upstream = upstream;
    this.#cutClient = cutClient;
    this.#activeAt = now;
    if (head !== null && head.length !== 0) this.#toUpstream(head);
    client.on('data', this.#onClientData);
    client.on('end', this.#onClientEnd);
    client.on('drain', this.#onClientDrain);
    upstream.on('data', this.#onUpstreamData);
    upstream.on('end', this.#onUpstreamEnd);
    upstream.on('drain', this.#onUpstreamDrain);
    upstream.on('error', noop);
    upstream.on('close', this.#onUpstreamClose);
    client.resume();
    upstream.resume();
  }

  /**
   * The reason to close the tunnel now, or null: no byte either way for
   * `idleTimeoutMs` (0: never), or a backend that took nothing of what is
   * queued for it for `upstreamWriteTimeoutMs`.
   */
  expired(now: number, idleTimeoutMs: number, upstreamWriteTimeoutMs: number): string | null {
    const traffic = this.#traffic;
    if (traffic !== this.#trafficSeen) {
      this.#trafficSeen = traffic;
      this.#activeAt = now;
    }
    if (idleTimeoutMs > 0 && now - this.#activeAt > idleTimeoutMs) return 'websocket idle timeout';
    const pending = this.#upstream.writableLength;
    if (pending === 0) {
      this.#upstreamStalledSince = 0;
      return null;
    }
    const flushed = this.#upstreamWritten - pending;
    if (this.#upstreamStalledSince === 0 || flushed !== this.#upstreamFlushedSeen) {
      this.#upstreamFlushedSeen = flushed;
      this.#upstreamStalledSince = now;
      return null;
    }
    return now - this.#upstreamStalledSince > upstreamWriteTimeoutMs ? 'websocket backend write timeout' : null;
  }

  /** The client connection closed: the backend's goes too. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#upstream.destroy();
  }

  #toUpstream(chunk: Buffer): boolean {
    this.#upstreamWritten += chunk.length;
    return this.#upstream.write(chunk);
  }

  readonly #onClientData = (chunk: Buffer): void => {
    this.#traffic += chunk.length;
    if (!this.#toUpstream(chunk)) this.#client.pause();
  };

  readonly #onUpstreamDrain = (): void => {
    this.#client.resume();
  };

  readonly #onUpstreamData = (chunk: Buffer): void => {
    this.#traffic += chunk.length;
    if (!this.#client.write(chunk)) this.#upstream.pause();
  };

  readonly #onClientDrain = (): void => {
    this.#upstream.resume();
  };

  readonly #onClientEnd = (): void => {
    // The client will send no more; the backend may still have its say.
    this.#upstream.end();
  };

  readonly #onUpstreamEnd = (): void => {
    this.#client.end();
  };

  readonly #onUpstreamClose = (): void => {
    if (this.#closed) return;
    this.#closed = true;
    const client = this.#client;
    if (client.destroyed) return;
    if (!this.#upstream.readableEnded) {
      // Reset or failed: the client must not take a cut stream for a closed one.
      this.#cutClient();
      return;
    }
    // Closed in order: the client gets what is queued for it, then is let go
    // (it has no one left to talk to, whether or not it closes its side).
    client.end();
    const timer = setTimeout(() => {
      if (!client.destroyed) this.#cutClient();
    }, LINGER_MS);
    timer.unref();
    client.once('close', () => clearTimeout(timer));
  };
}

function noop(): void {}
