// Fixtures for the hostile-client tests: a data plane with short limits in
// front of a backend that records what reached it (each request, and each
// connection with when it closed), and raw-socket clients that misbehave on
// purpose. Everything runs on 127.0.0.1.

import http from 'node:http';
import net from 'node:net';
import type { TestContext } from 'node:test';
import tls from 'node:tls';
import type { RequestLimits } from '../../src/dataplane/limits.ts';
import {
  backend,
  cluster,
  freePort,
  gatewayListener,
  ir,
  listener,
  match,
  route,
  selfSigned,
  simpleIR,
  startDataPlane,
  vhost,
} from '../dataplane/helpers.ts';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly socket: net.Socket;
}

/**
 * A backend steered by the request path:
 * - `/big/N` answers N bytes, written as the socket takes them (backpressure);
 * - `/hang` sends a head and a first chunk, then nothing, never reading the body;
 * - both also at the end of a longer path (`/test-name/1/hang`), so a test can tell its requests apart;
 * - `/slow-sink/MS` stops reading the body for MS after its first chunk, then reads on;
 * - anything else reads the whole body and answers JSON {method, url, bodyBytes}.
 */
export interface RecordingBackend {
  readonly port: number;
  /** Requests whose head reached the backend, in order. */
  readonly seen: SeenRequest[];
  /** Raw bytes that arrived on any connection: nothing of a refused request may be among them. */
  raw(): string;
  /** Connections the backend holds open now. */
  openConnections(): number;
}

export async function startRecordingBackend(t: TestContext): Promise<RecordingBackend> {
  const seen: SeenRequest[] = [];
  const sockets = new Set<net.Socket>();
  let raw = '';
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', socket: req.socket });
    const url = req.url ?? '';
    const big = /\/big\/(\d+)$/.exec(url);
    if (big !== null) {
      let left = Number(big[1]);
      const piece = Buffer.alloc(64 * 1024, 0x61);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) });
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, piece.length);
          left -= n;
          if (!res.write(n === piece.length ? piece : piece.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    if (url.endsWith('/hang')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started');
      return;
    }
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
    if (url.startsWith('/slow-sink/')) {
      req.once('data', () => {
        req.pause();
        setTimeout(() => req.resume(), Number(url.slice(11)));
      });
    }
    req.on('end', () => {
      const json = JSON.stringify({ method: req.method, url, bodyBytes });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(json)) });
      res.end(json);
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A second listener: node's parser consumes the stream but 'data' still fires for extra listeners.
    socket.on('data', (d: Buffer) => {
      if (raw.length < 1_000_000) raw += d.toString('latin1', 0, Math.min(d.length, 4096));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    raw: () => raw,
    openConnections: () => sockets.size,
  };
}

export interface Fixture {
  readonly port: number;
  readonly backend: RecordingBackend;
  readonly logs: { level: string; msg: string; fields: Record<string, unknown> }[];
}

/**
 * A data plane on a free port with `limits`, every path routed to a
 * recording backend; HTTPS (a self-signed certificate for any name) when
 * `secure`.
 */
export async function startFixture(t: TestContext, limits: Partial<RequestLimits>, secure = false): Promise<Fixture> {
  const recording = await startRecordingBackend(t);
  const port = await freePort();
  const logs: Fixture['logs'] = [];
  const dp = await startDataPlane(t, {
    log: (level, msg, fields) => logs.push({ level, msg, fields: fields ?? {} }),
    limits,
  });
  const routes = [route('all', match('/'), [backend('b')])];
  const clusters = [cluster('b', recording)];
  if (secure) {
    const { cert, key } = selfSigned('example.com');
    const certificates = [{ serverNames: ['*'], certChain: cert, privateKey: key }];
    await dp.apply(ir([listener(port, [gatewayListener('ns/gw/https', null, [vhost('*', routes)])], certificates)], clusters));
  } else {
    await dp.apply(simpleIR(port, routes, clusters));
  }
  return { port, backend: recording, logs };
}

/** A raw client connection that records what it reads, and when the server closed it. */
export interface RawClient {
  readonly socket: net.Socket;
  text(): string;
  /** Resolves when the server closes the connection; rejects after `ms`. */
  closed(ms: number): Promise<void>;
}

export async function connectRaw(port: number, options: { read?: boolean; secure?: boolean } = {}): Promise<RawClient> {
  const socket = options.secure
    ? tls.connect({ host: '127.0.0.1', port, servername: 'example.com', rejectUnauthorized: false })
    : net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once(options.secure ? 'secureConnect' : 'connect', resolve);
    socket.once('error', reject);
  });
  let text = '';
  let isClosed = false;
  const closeWaiters: (() => void)[] = [];
  socket.on('error', () => {});
  socket.on('close', () => {
    isClosed = true;
    for (const w of closeWaiters) w();
  });
  if (options.read === false) socket.pause();
  else socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  return {
    socket,
    text: () => text,
    closed: (ms) =>
      new Promise((resolve, reject) => {
        if (isClosed) return resolve();
        const timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms; read: ${JSON.stringify(text.slice(0, 120))}`)), ms);
        closeWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

/** Resolves when `socket` closes; rejects after `ms`. */
export function socketClosed(socket: net.Socket, ms: number, what: string): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Polls `condition` every 10 ms; rejects with `what` after `ms`. */
export async function waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Status code of the first response in `raw`, 0 if none. */
export function firstStatus(raw: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
