// PROXY protocol headers written byte by byte, for the tests that send them.

/** A PROXY protocol v2 header (PROXY command, TCP over IPv4) naming `source` as the client. */
export function proxyV2(source: string, sourcePort = 40000, dest = '127.0.0.1', destPort = 80): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const head = Buffer.alloc(4);
  head[0] = 0x21; // version 2, PROXY
  head[1] = 0x11; // AF_INET, STREAM
  head.writeUInt16BE(12, 2);
  const addr = Buffer.alloc(12);
  source.split('.').forEach((o, i) => (addr[i] = Number(o)));
  dest.split('.').forEach((o, i) => (addr[4 + i] = Number(o)));
  addr.writeUInt16BE(sourcePort, 8);
  addr.writeUInt16BE(destPort, 10);
  return Buffer.concat([sig, head, addr]);
}
