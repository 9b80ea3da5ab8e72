// Cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3) shares the port of
// an HTTP listener with HTTP/1.1: a connection is HTTP/2 when its first 24
// bytes are exactly the client preface, and HTTP/1.1 as soon as a byte
// differs from it. So an HTTP/1.1 request is told apart at its first byte
// (no method begins with "PRI"), and anything else that claims HTTP/2.0 on
// an HTTP/1 connection, `PRI * HTTP/2.0` with another ending included, goes
// to the HTTP/1.1 parser, which refuses it.

import type net from 'node:net';

export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type FrontProtocol = 'h2' | 'http/1.1';

/** 'h2' once `bytes` hold the whole preface, 'http/1.1' once they differ from it, null while they are a strict prefix of it. */
export function classify(bytes: Buffer): FrontProtocol | null {
  const n = Math.min(bytes.length, CLIENT_PREFACE.length);
  if (bytes.compare(CLIENT_PREFACE, 0, n, 0, n) !== 0) return 'http/1.1';
  return n === CLIENT_PREFACE.length ? 'h2' : null;
}

/**
 * Reads `socket` until its first bytes tell the protocol, then calls
 * `decided` with them (they are not consumed: whoever takes the socket
 * parses them first). At most the preface's 24 bytes are waited for; the
 * caller bounds the wait in time (the listener's headers timeout).
 */
export function sniff(socket: net.Socket, decided: (protocol: FrontProtocol, head: Buffer) => void, initial: Buffer | null = null): void {
  let head: Buffer | null = null;
  const onData = (chunk: Buffer): void => {
    head = head === null ? chunk : Buffer.concat([head, chunk]);
    const protocol = classify(head);
    if (protocol === null) return;
    socket.off('data', onData);
    socket.off('end', onEnd);
    decided(protocol, head);
  };
  // A client that half-closes before it has said which protocol it speaks
  // has nothing more to say (the listener allows half-open sockets, which
  // would otherwise hold their place until the headers timeout).
  const onEnd = (): void => {
    socket.destroy();
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
  // Bytes already read (past a PROXY protocol header) come first.
  if (initial !== null && initial.length !== 0) onData(initial);
}
