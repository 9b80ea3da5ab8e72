// The server name of a TLS ClientHello, read from the raw socket before
// OpenSSL sees it. Node offers no way to answer a ClientHello with an
// alert of our choosing (an SNICallback error only cuts the connection,
// and clients without SNI never reach the callback), so an HTTPS listener
// reads the hello first: a name that no listener on the socket serves is
// refused with the unrecognized_name alert (RFC 6066 §3), as Envoy
// Gateway refuses it, and everything else is handed to node's TLS with the
// bytes read put back.

/** Handshake records are content type 22 (RFC 8446 §5.1). */
const HANDSHAKE_RECORD = 22;
const CLIENT_HELLO = 1;
const SERVER_NAME_EXTENSION = 0;
const HOST_NAME = 0;
const RECORD_HEADER = 5;

/**
 * The most bytes read for a ClientHello before a decision, record headers
 * included. Real hellos are well under 2 KiB (a post-quantum key share
 * included); 16 KiB is one full record and leaves room for many
 * extensions. A longer hello is not waited for: the connection is closed.
 */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024 + RECORD_HEADER;

/**
 * The most records a hello may be cut into. Clients send one (two for a
 * hello past 16 KiB); a hello in many tiny records only costs the reader
 * work, so it is treated as too long.
 */
export const MAX_CLIENT_HELLO_RECORDS = 16;

export type HelloResult =
  /** More bytes are needed: nothing changes before `need` bytes in all have arrived. */
  | { kind: 'partial'; need: number }
  /** `serverName`: the host_name of the SNI extension, or null when the client sent none. */
  | { kind: 'hello'; serverName: string | null }
  /** Not a TLS handshake, or a malformed hello: OpenSSL is left to answer it. */
  | { kind: 'not-a-hello' }
  /** A hello longer than MAX_CLIENT_HELLO_BYTES, or in more than MAX_CLIENT_HELLO_RECORDS records. */
  | { kind: 'too-long' };

/**
 * Reads the ClientHello from the start of a connection's bytes (`data`:
 * everything received so far). A hello may span several records
 * (RFC 8446 §5.1 lets handshake messages be fragmented).
 */
export function readClientHello(data: Buffer): HelloResult {
  // The handshake bytes of the leading records, joined only when fragmented.
  const fragments: Buffer[] = [];
  let have = 0;
  let offset = 0;
  let needed = -1;
  while (needed === -1 || have < needed) {
    if (fragments.length === MAX_CLIENT_HELLO_RECORDS) return { kind: 'too-long' };
    if (data.length - offset < RECORD_HEADER) return partial(data, offset + RECORD_HEADER);
    if (data[offset] !== HANDSHAKE_RECORD || data[offset + 1] !== 3) return { kind: 'not-a-hello' };
    const length = data.readUInt16BE(offset + 3);
    if (length === 0) return { kind: 'not-a-hello' };
    if (data.length - offset - RECORD_HEADER < length) return partial(data, offset + RECORD_HEADER + length);
    fragments.push(data.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + length));
    have += length;
    offset += RECORD_HEADER + length;
    if (needed === -1 && have >= 4) {
      const head = fragments.length === 1 ? fragments[0] : Buffer.concat(fragments);
      if (head[0] !== CLIENT_HELLO) return { kind: 'not-a-hello' };
      needed = 4 + head.readUIntBE(1, 3);
      if (needed + RECORD_HEADER > MAX_CLIENT_HELLO_BYTES) return { kind: 'too-long' };
    }
  }
  const message = fragments.length === 1 ? fragments[0] : Buffer.concat(fragments);
  const serverName = serverNameOf(message.subarray(4, needed));
  return serverName === undefined ? { kind: 'not-a-hello' } : { kind: 'hello', serverName };
}

function partial(data: Buffer, need: number): HelloResult {
  return data.length >= MAX_CLIENT_HELLO_BYTES || need > MAX_CLIENT_HELLO_BYTES ? { kind: 'too-long' } : { kind: 'partial', need };
}

/** The SNI host_name of a ClientHello body; null without one; undefined when the body is malformed. */
function serverNameOf(body: Buffer): string | null | undefined {
  // legacy_version (2), random (32)
  let at = 34;
  if (body.length < at + 1) return undefined;
  at += 1 + body[at]; // legacy_session_id
  if (body.length < at + 2) return undefined;
  at += 2 + body.readUInt16BE(at); // cipher_suites
  if (body.length < at + 1) return undefined;
  at += 1 + body[at]; // legacy_compression_methods
  if (at === body.length) return null; // no extensions at all
  if (body.length < at + 2) return undefined;
  const end = at + 2 + body.readUInt16BE(at);
  if (end > body.length) return undefined;
  at += 2;
  while (at + 4 <= end) {
    const type = body.readUInt16BE(at);
    const length = body.readUInt16BE(at + 2);
    at += 4;
    if (at + length > end) return undefined;
    if (type === SERVER_NAME_EXTENSION) return hostNameOf(body.subarray(at, at + length));
    at += length;
  }
  return at === end ? null : undefined;
}

function hostNameOf(extension: Buffer): string | null | undefined {
  if (extension.length < 2) return undefined;
  const end = 2 + extension.readUInt16BE(0);
  if (end > extension.length) return undefined;
  for (let at = 2; at + 3 <= end; ) {
    const type = extension[at];
    const length = extension.readUInt16BE(at + 1);
    at += 3;
    if (at + length > end) return undefined;
    // RFC 6066 §3: ASCII, no trailing dot; anything else is not a name we serve.
    if (type === HOST_NAME) return extension.toString('latin1', at, at + length);
    at += length;
  }
  return null;
}

/**
 * A fatal unrecognized_name alert (RFC 8446 §6: level 2, description
 * 112) in a plaintext record, as sent before any ServerHello.
 */
export const UNRECOGNIZED_NAME_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);
