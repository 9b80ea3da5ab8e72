// A raw HTTP/2 client for the abuse tests: it writes frames a well-behaved
// client library would never send (floods of resets, PINGs, SETTINGS and
// CONTINUATIONs, header blocks past every limit) and reads back what the
// server answers, frame by frame. Header blocks are HPACK literals without
// indexing or Huffman coding (RFC 7541 §6.2.2), the simplest valid encoding.

import net from 'node:net';
import tls from 'node:tls';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export const ERROR = { NO_ERROR: 0x0, PROTOCOL_ERROR: 0x1, INTERNAL_ERROR: 0x2, REFUSED_STREAM: 0x7, CANCEL: 0x8, ENHANCE_YOUR_CALM: 0xb } as const;

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteFlags | value];
  const out = [firstByteFlags | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** A header block of literal fields without indexing, new names, no Huffman. */
export function headerBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of fields) {
    bytes.push(0x00);
    bytes.push(...hpackInt(Buffer.byteLength(name), 7));
    bytes.push(...Buffer.from(name, 'latin1'));
    bytes.push(...hpackInt(Buffer.byteLength(value), 7));
    bytes.push(...Buffer.from(value, 'latin1'));
  }
  return Buffer.from(bytes);
}

export function requestHeaders(path: string, authority = 'example.com', method = 'GET', extra: readonly (readonly [string, string])[] = []): Buffer {
  return headerBlock([[':method', method], [':scheme', 'http'], [':path', path], [':authority', authority], ...extra]);
}

export function settings(entries: readonly (readonly [number, number])[] = []): Buffer {
  const payload = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, payload);
}

export function rstStream(streamId: number, code: number = ERROR.CANCEL): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, payload);
}

export function ping(data = 0): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(data >>> 0, 4);
  return frame(FRAME.PING, 0, 0, payload);
}

export interface ReceivedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export interface Goaway {
  lastStreamId: number;
  code: number;
}

export function parseGoaway(f: ReceivedFrame): Goaway {
  return { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
}

/**
 * One connection, speaking raw frames. Frames received are collected in
 * order; `closed` tells whether the server closed the connection.
 */
export class RawH2 {
  readonly socket: net.Socket;
  readonly frames: ReceivedFrame[] = [];
  closed = false;
  /** Acknowledge the server's SETTINGS (so that they take effect). */
  ackSettings = true;
  #buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      while (this.#buffer.length >= 9) {
        const length = this.#buffer.readUIntBE(0, 3);
        if (this.#buffer.length < 9 + length) break;
        this.frames.push({
          type: this.#buffer[3],
          flags: this.#buffer[4],
          streamId: this.#buffer.readUInt32BE(5) & 0x7fffffff,
          payload: this.#buffer.subarray(9, 9 + length),
        });
        this.#buffer = this.#buffer.subarray(9 + length);
        const f = this.frames[this.frames.length - 1];
        // As every client does; one that never acknowledges is a test of its own.
        if (this.ackSettings && f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) this.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      }
      this.#wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  /** Connects (h2c prior knowledge, or TLS with ALPN h2) and sends the preface and an empty SETTINGS. */
  static async connect(port: number, options: { tls?: boolean; settings?: readonly (readonly [number, number])[] } = {}): Promise<RawH2> {
    const socket = options.tls
      ? tls.connect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], rejectUnauthorized: false, servername: 'example.com' })
      : net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once(options.tls ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    const raw = new RawH2(socket);
    raw.write(Buffer.concat([PREFACE, settings(options.settings ?? [])]));
    return raw;
  }

  write(data: Buffer): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(data);
  }

  /** Waits until `predicate` holds over the frames received (or the connection closed), at most `ms`. */
  async until(predicate: (frames: ReceivedFrame[]) => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!predicate(this.frames)) {
      if (this.closed) return predicate(this.frames);
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  }

  /** Waits for the server to close the connection, at most `ms`; true if it did. */
  async waitClosed(ms: number): Promise<boolean> {
    await this.until(() => false, ms);
    return this.closed;
  }

  goaway(): Goaway | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    return f === undefined ? undefined : parseGoaway(f);
  }

  /** RST_STREAM codes received, by stream. */
  resets(): Map<number, number> {
    const out = new Map<number, number>();
    for (const f of this.frames) if (f.type === FRAME.RST_STREAM) out.set(f.streamId, f.payload.readUInt32BE(0));
    return out;
  }

  destroy(): void {
    this.socket.destroy();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
