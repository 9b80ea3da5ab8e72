// The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in
// front that does not keep the client's address (a TCP VIP, MetalLB with
// externalTrafficPolicy Cluster) sends it in a header at the start of the
// connection, before TLS or HTTP. A listener whose ClientTrafficPolicy
// asks for it reads that header first; the source address it carries
// becomes the connection's client address (clientAddressOf()).
//
// Hostile input: the header is bounded in size (v1: 107 bytes, as the
// specification says; v2: MAX_V2_PAYLOAD bytes of addresses and TLVs) and
// in time (the caller's timeout); anything malformed closes the
// connection. A LOCAL (v2) or UNKNOWN (v1) header, a health check of the
// balancer itself, keeps the peer's address.

import net from 'node:net';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The longest v1 line, CRLF included (the specification's own bound). */
const V1_MAX_BYTES = 107;
/**
 * Bytes after v2's 16-byte head: addresses (at most 216, AF_UNIX) and
 * TLVs. Balancers send a few dozen bytes of TLVs; more is refused.
 */
export const MAX_V2_PAYLOAD = 4096;

export type ProxyHeader =
  /** More bytes are needed to decide. */
  | { kind: 'partial' }
  /** The bytes are not a PROXY header (they may be the client's own first bytes). */
  | { kind: 'absent' }
  | { kind: 'invalid'; reason: string }
  /** `length` bytes are the header; `source` null: keep the peer's address (LOCAL, UNKNOWN, UNSPEC, AF_UNIX). */
  | { kind: 'header'; length: number; source: string | null };

/** True while `bytes` could still be the start of `sig`. */
function prefixOf(bytes: Buffer, sig: Buffer): boolean {
  const n = Math.min(bytes.length, sig.length);
  return bytes.compare(sig, 0, n, 0, n) === 0;
}

/** Reads a PROXY header from the first bytes of a connection. */
export function parseProxyHeader(bytes: Buffer): ProxyHeader {
  if (bytes.length === 0) return { kind: 'partial' };
  if (prefixOf(bytes, V2_SIGNATURE)) return bytes.length < 16 ? { kind: 'partial' } : parseV2(bytes);
  if (prefixOf(bytes, V1_PREFIX)) return bytes.length < V1_PREFIX.length ? { kind: 'partial' } : parseV1(bytes);
  return { kind: 'absent' };
}

function parseV2(b: Buffer): ProxyHeader {
  const verCmd = b[12];
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: `PROXY v2: version ${verCmd >> 4}` };
  const command = verCmd & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: `PROXY v2: command ${command}` };
  const family = b[13];
  const payload = b.readUInt16BE(14);
  if (payload > MAX_V2_PAYLOAD) return { kind: 'invalid', reason: `PROXY v2: ${payload} bytes of addresses and TLVs (at most ${MAX_V2_PAYLOAD})` };
  const length = 16 + payload;
  if (b.length < length) return { kind: 'partial' };
  // LOCAL: the balancer speaking for itself; the addresses, if any, are to be ignored.
  if (command === 0) return { kind: 'header', length, source: null };
  switch (family >> 4) {
    case 0x0: // AF_UNSPEC
      return { kind: 'header', length, source: null };
    case 0x1: { // AF_INET: src, dst, sport, dport
      if (payload < 12) return { kind: 'invalid', reason: 'PROXY v2: IPv4 addresses truncated' };
      return { kind: 'header', length, source: `${b[16]}.${b[17]}.${b[18]}.${b[19]}` };
    }
    case 0x2: { // AF_INET6
      if (payload < 36) return { kind: 'invalid', reason: 'PROXY v2: IPv6 addresses truncated' };
      const groups: string[] = [];
      for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(16 + i * 2).toString(16));
      return { kind: 'header', length, source: canonicalIPv6(groups.join(':')) };
    }
    case 0x3: // AF_UNIX: no address to give
      return { kind: 'header', length, source: null };
    default:
      return { kind: 'invalid', reason: `PROXY v2: address family ${family >> 4}` };
  }
}

function canonicalIPv6(s: string): string {
  // An IPv4-mapped address is the IPv4 client, as node reports dual-stack peers after unmapping.
  const mapped = /^0:0:0:0:0:ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(s);
  if (mapped !== null) {
    const hi = parseInt(mapped[1], 16);
    const lo = parseInt(mapped[2], 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  // Zero runs compressed as `::`, as net.SocketAddress would print it.
  return new net.SocketAddress({ address: s, family: 'ipv6' }).address;
}

function parseV1(b: Buffer): ProxyHeader {
  const end = b.indexOf('\r\n', 0, 'latin1');
  if (end < 0) return b.length >= V1_MAX_BYTES ? { kind: 'invalid', reason: 'PROXY v1: no CRLF within 107 bytes' } : { kind: 'partial' };
  if (end + 2 > V1_MAX_BYTES) return { kind: 'invalid', reason: 'PROXY v1: line longer than 107 bytes' };
  const line = b.toString('latin1', 0, end);
  const parts = line.split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') return { kind: 'header', length, source: null };
  if (parts.length !== 6) return { kind: 'invalid', reason: 'PROXY v1: expected PROXY TCP4|TCP6 src dst sport dport' };
  const [, proto, src, dst, sport, dport] = parts;
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  if (family === 0) return { kind: 'invalid', reason: `PROXY v1: protocol ${JSON.stringify(proto.slice(0, 8))}` };
  if (net.isIP(src) !== family || net.isIP(dst) !== family) return { kind: 'invalid', reason: 'PROXY v1: address not of the protocol family' };
  if (!validPort(sport) || !validPort(dport)) return { kind: 'invalid', reason: 'PROXY v1: invalid port' };
  return { kind: 'header', length, source: family === 6 ? canonicalIPv6(src) : src };
}

function validPort(s: string): boolean {
  return /^(0|[1-9][0-9]{0,4})$/.test(s) && Number(s) <= 65535;
}

// ---------------------------------------------------------------- the socket side

/** Client addresses given by a PROXY header, by the raw socket that carried it. */
const proxiedAddress = new WeakMap<net.Socket, string>();

/**
 * The client address of a connection: the PROXY header's source when the
 * listener read one, else the peer. A TLS socket is looked up by the raw
 * socket it wraps (node keeps it as `_parent`).
 */
export function clientAddressOf(socket: net.Socket): string | undefined {
  const direct = proxiedAddress.get(socket);
  if (direct !== undefined) return direct;
  const parent = (socket as net.Socket & { _parent?: unknown })._parent;
  if (parent instanceof net.Socket) {
    const wrapped = proxiedAddress.get(parent);
    if (wrapped !== undefined) return wrapped;
  }
  return socket.remoteAddress;
}

export interface ProxyReadOptions {
  /** A connection without a header is served as it is (its bytes are handed on). */
  optional: boolean;
  /** The whole header must arrive within this long, ms. */
  timeoutMs: number;
}

/**
 * Reads the PROXY header of a fresh connection, then calls `next` with the
 * bytes read past it (synchronously, from the read that completed it: the
 * next reader attaches before another read can come). Closes the
 * connection, and calls `refused` with why, when the header is malformed,
 * missing (unless optional), or late.
 */
export function readProxyHeader(socket: net.Socket, opts: ProxyReadOptions, next: (rest: Buffer) => void, refused: (reason: string) => void): void {
  let head: Buffer | null = null;
  const finish = () => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
  };
  const refuse = (reason: string) => {
    finish();
    socket.destroy();
    refused(reason);
  };
  const onData = (chunk: Buffer): void => {
    head = head === null ? chunk : Buffer.concat([head, chunk]);
    const r = parseProxyHeader(head);
    switch (r.kind) {
      case 'partial':
        return;
      case 'invalid':
        refuse(r.reason);
        return;
      case 'absent':
        if (!opts.optional) {
          refuse('no PROXY protocol header');
          return;
        }
        finish();
        next(head);
        return;
      case 'header':
        finish();
        if (r.source !== null) proxiedAddress.set(socket, r.source);
        next(head.subarray(r.length));
    }
  };
  const onEnd = () => refuse('connection ended before its PROXY protocol header');
  const timer = setTimeout(() => refuse(`no complete PROXY protocol header within ${opts.timeoutMs} ms`), opts.timeoutMs);
  timer.unref();
  socket.on('data', onData);
  socket.once('end', onEnd);
}
