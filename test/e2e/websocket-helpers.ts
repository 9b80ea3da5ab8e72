// A minimal RFC 6455 client and echo backend for the WebSocket tests,
// written from the RFC with node:net and node:http (no WebSocket library is
// a dependency): the opening handshake, frames with 7-, 16- and 64-bit
// lengths, client masking, text, binary, ping/pong and the closing
// handshake. Enough to tell a tunnel that carries frames intact from one
// that drops, merges or corrupts them.

import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

export function acceptFor(key: string): string {
  return crypto.createHash('sha1').update(key + GUID).digest('base64');
}

/** One frame, FIN set; masked when `mask` (a client must mask, a server must not). */
export function encodeFrame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lengthBytes + (mask ? 4 : 0));
  head[0] = 0x80 | opcode;
  head[1] = (mask ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) head.writeUInt16BE(length, 2);
  else if (lengthBytes === 8) head.writeBigUInt64BE(BigInt(length), 2);
  if (!mask) return Buffer.concat([head, payload]);
  const key = crypto.randomBytes(4);
  key.copy(head, 2 + lengthBytes);
  const masked = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([head, masked]);
}

export interface Frame {
  opcode: number;
  payload: Buffer;
}

/** Takes whole frames off the front of a byte stream (unfragmented messages only: FIN is required). */
export class FrameReader {
  #buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const frames: Frame[] = [];
    for (;;) {
      const b = this.#buffer;
      if (b.length < 2) break;
      if ((b[0] & 0x80) === 0) throw new Error('fragmented frame: not used by these tests');
      const masked = (b[1] & 0x80) !== 0;
      let length = b[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) break;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) break;
        length = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      const keyAt = offset;
      if (masked) offset += 4;
      if (b.length < offset + length) break;
      let payload: Buffer = b.subarray(offset, offset + length);
      if (masked) {
        const unmasked = Buffer.allocUnsafe(length);
        for (let i = 0; i < length; i++) unmasked[i] = payload[i] ^ b[keyAt + (i & 3)];
        payload = unmasked;
      } else {
        payload = Buffer.from(payload);
      }
      frames.push({ opcode: b[0] & 0x0f, payload });
      this.#buffer = b.subarray(offset + length);
    }
    return frames;
  }
}

export interface HandshakeResult {
  status: number;
  /** Response head lines, lower-cased names. */
  headers: Record<string, string>;
  head: string;
}

/**
 * A WebSocket client on one TCP connection. open() sends the handshake and
 * resolves with the answer; when it is 101 the connection carries frames.
 */
export class WsClient {
  readonly socket: net.Socket;
  readonly key = crypto.randomBytes(16).toString('base64');
  #raw: Buffer = Buffer.alloc(0);
  #opened = false;
  readonly #reader = new FrameReader();
  readonly #frames: Frame[] = [];
  #waiter: (() => void) | null = null;
  closed = false;
  /** Set when the socket closed: whether it was a reset or error rather than an orderly close. */
  hadError = false;

  /** `servername`: speak TLS (wss), with this SNI; the certificate is not checked. */
  constructor(port: number, host = '127.0.0.1', servername?: string) {
    this.socket = servername === undefined
      ? net.connect(port, host)
      : tls.connect({ port, host, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    this.socket.on('data', (chunk: Buffer) => {
      if (this.#opened) {
        for (const f of this.#reader.push(chunk)) this.#frames.push(f);
      } else {
        this.#raw = Buffer.concat([this.#raw, chunk]);
      }
      this.#waiter?.();
    });
    this.socket.on('error', () => {
      this.hadError = true;
    });
    this.socket.on('close', (hadError) => {
      this.closed = true;
      if (hadError) this.hadError = true;
      this.#waiter?.();
    });
  }

  /**
   * Sends the opening handshake (extra header lines in `extra`, each ending
   * in CRLF; `after` is written in the same packet, right after it).
   */
  async open(path: string, host: string, extra = '', after: Buffer | null = null, timeoutMs = 10_000): Promise<HandshakeResult> {
    const request =
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${this.key}\r\n${extra}\r\n`;
    this.socket.write(after === null ? Buffer.from(request, 'latin1') : Buffer.concat([Buffer.from(request, 'latin1'), after]));
    const until = Date.now() + timeoutMs;
    for (;;) {
      const end = this.#raw.indexOf('\r\n\r\n');
      if (end !== -1) {
        const head = this.#raw.subarray(0, end).toString('latin1');
        const lines = head.split('\r\n');
        const status = Number(lines[0].split(' ')[1]);
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        if (status === 101) {
          this.#opened = true;
          const rest = this.#raw.subarray(end + 4);
          this.#raw = Buffer.alloc(0);
          if (rest.length !== 0) for (const f of this.#reader.push(rest)) this.#frames.push(f);
        }
        return { status, headers, head };
      }
      if (this.closed) throw new Error(`connection closed before the handshake answer: ${JSON.stringify(this.#raw.toString('latin1'))}`);
      await this.#wait(until, 'the handshake answer');
    }
  }

  /** Bytes received after the answer's head while it was not a 101 (its body). */
  async rest(timeoutMs = 5_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    while (!this.closed) await this.#wait(until, 'the connection to close');
    const text = this.#raw.toString('latin1');
    return text.slice(text.indexOf('\r\n\r\n') + 4);
  }

  send(opcode: number, payload: Buffer | string): boolean {
    return this.socket.write(encodeFrame(opcode, typeof payload === 'string' ? Buffer.from(payload) : payload, true));
  }

  /** The next frame, or an error if none comes within `timeoutMs` or the connection closes first. */
  async receive(timeoutMs = 10_000): Promise<Frame> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.#frames.shift();
      if (frame !== undefined) return frame;
      if (this.closed) throw new Error('connection closed');
      await this.#wait(until, 'a frame');
    }
  }

  /** Sends `payload` and returns what comes back as the next frame. */
  async echo(opcode: number, payload: Buffer | string, timeoutMs = 10_000): Promise<Frame> {
    this.send(opcode, payload);
    return this.receive(timeoutMs);
  }

  /** The closing handshake: sends Close, waits for the backend's Close and the connection to end. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.closed) return;
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    this.send(OP_CLOSE, code);
    const until = Date.now() + timeoutMs;
    while (!this.closed) await this.#wait(until, 'the connection to close');
  }

  /** Resolves when the connection closes (or rejects after `timeoutMs`). */
  async closedWithin(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.closed) await this.#wait(until, 'the connection to close');
  }

  destroy(): void {
    this.socket.destroy();
  }

  #wait(until: number, what: string): Promise<void> {
    const left = until - Date.now();
    if (left <= 0) return Promise.reject(new Error(`timed out waiting for ${what}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        reject(new Error(`timed out waiting for ${what}`));
      }, left);
      this.#waiter = () => {
        clearTimeout(timer);
        this.#waiter = null;
        resolve();
      };
    });
  }
}

export interface WsBackend {
  readonly name: string;
  readonly port: number;
  readonly server: http.Server;
  /** Handshake requests received (method, url, headers), in order. */
  readonly handshakes: { url: string; headers: http.IncomingHttpHeaders; head: Buffer }[];
  /** Tunnels open at the backend now. */
  readonly open: Set<net.Socket>;
  close(): Promise<void>;
}

export interface WsBackendOptions {
  /** Extra response header lines on the 101 (`name: value`). */
  readonly extraHeaders?: string[];
  /** Send these bytes (already framed) right after the 101, in the same write. */
  readonly greeting?: Buffer;
  /** Refuse the upgrade with this status and body instead. */
  readonly refuse?: { status: number; body: string };
}

/**
 * An echo backend: each data frame comes back as the same opcode with
 * the payload prefixed by `name:` for text (so a test sees which backend
 * answered) and unchanged for binary; ping gets pong; close gets close and
 * the connection ends. Plain HTTP requests get `name` as text.
 */
export async function startWsBackend(name: string, options: WsBackendOptions = {}): Promise<WsBackend> {
  const handshakes: WsBackend['handshakes'] = [];
  const open = new Set<net.Socket>();
  const server = http.createServer((_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(name);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    handshakes.push({ url: req.url ?? '', headers: req.headers, head: Buffer.from(head) });
    if (options.refuse !== undefined) {
      const body = options.refuse.body;
      socket.end(`HTTP/1.1 ${options.refuse.status} Refused\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string' || req.headers['upgrade']?.toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const extra = (options.extraHeaders ?? []).map((h) => `${h}\r\n`).join('');
    const answer = Buffer.from(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n${extra}\r\n`,
      'latin1',
    );
    socket.write(options.greeting === undefined ? answer : Buffer.concat([answer, options.greeting]));
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    // node's HTTP server allows half-open sockets: a FIN from the gateway is answered with ours.
    socket.on('end', () => socket.end());
    const reader = new FrameReader();
    const onFrames = (frames: Frame[]) => {
      for (const frame of frames) {
        switch (frame.opcode) {
          case OP_TEXT:
            socket.write(encodeFrame(OP_TEXT, Buffer.concat([Buffer.from(`${name}:`), frame.payload]), false));
            break;
          case OP_BINARY:
            socket.write(encodeFrame(OP_BINARY, frame.payload, false));
            break;
          case OP_PING:
            socket.write(encodeFrame(OP_PONG, frame.payload, false));
            break;
          case OP_CLOSE:
            socket.end(encodeFrame(OP_CLOSE, frame.payload, false));
            break;
        }
      }
    };
    if (head.length !== 0) onFrames(reader.push(head));
    socket.on('data', (chunk: Buffer) => {
      try {
        onFrames(reader.push(chunk));
      } catch {
        socket.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    name,
    port,
    server,
    handshakes,
    open,
    close: async () => {
      for (const socket of open) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
