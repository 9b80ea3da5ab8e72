// Misbehaving backends for the backend-fault tests, on real sockets: one
// that never accepts a connection, raw TCP servers that answer (or not)
// exactly as told, and a keep-alive HTTP client.

import http from 'node:http';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { Worker } from 'node:worker_threads';

/**
 * A port whose connects hang: a listening socket in a worker thread that
 * is blocked (Atomics.wait, no CPU) and so never accepts, its accept queue
 * filled. Linux then drops further SYNs, as it does for an overloaded
 * backend, and a connect waits until the client gives up.
 */
export async function unacceptingPort(t: TestContext): Promise<number> {
  const wake = new SharedArrayBuffer(4);
  const worker = new Worker(
    `const net = require('node:net');
     const { parentPort, workerData } = require('node:worker_threads');
     const server = net.createServer();
     server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(new Int32Array(workerData), 0, 0);
       process.exit(0);
     });`,
    { eval: true, workerData: wake },
  );
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // Fill the accept queue (backlog 1 holds two): the next connect hangs.
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 2; i++) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    fillers.push(socket);
  }
  t.after(async () => {
    for (const socket of fillers) socket.destroy();
    const flag = new Int32Array(wake);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    await worker.terminate();
  });
  return port;
}

/** Whether a connect to `port` is still pending after `ms`. */
export function connectHangs(port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(true);
    }, ms);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(false);
    });
  });
}

export interface RawConnection {
  readonly socket: net.Socket;
  /** Requests (heads) received on this connection so far, this one included. */
  readonly requests: number;
  /** When the last response was written on it (ms), 0 before. */
  readonly lastAnsweredAt: number;
  /** The request's raw bytes (head and whatever body came in the same read). */
  readonly raw: string;
  /** Writes an answer and records when. */
  answer(bytes: string): void;
}

export interface RawBackend {
  readonly port: number;
  /** Connections accepted. */
  readonly connections: number;
  /** Connections open now, and the most that were open at once. */
  readonly open: number;
  readonly maxOpen: number;
}

/**
 * A TCP server that calls `onRequest` for each read that starts a request
 * (the tests send small requests, one read each) and leaves the answer to
 * it: answer, stay silent, or close.
 */
export async function rawBackend(t: TestContext, onRequest: (conn: RawConnection) => void): Promise<RawBackend> {
  const state = { connections: 0, open: 0, maxOpen: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    state.connections++;
    state.open++;
    state.maxOpen = Math.max(state.maxOpen, state.open);
    sockets.add(socket);
    socket.on('close', () => {
      state.open--;
      sockets.delete(socket);
    });
    socket.on('error', () => {});
    const conn = {
      socket,
      requests: 0,
      lastAnsweredAt: 0,
      raw: '',
      answer(bytes: string): void {
        if (socket.destroyed) return;
        socket.write(bytes);
        conn.lastAnsweredAt = Date.now();
      },
    };
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (!/^[A-Z]+ \S+ HTTP\/1\.1\r\n/.test(text)) return;
      conn.requests++;
      conn.raw = text;
      onRequest(conn);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get connections() {
      return state.connections;
    },
    get open() {
      return state.open;
    },
    get maxOpen() {
      return state.maxOpen;
    },
  };
}

/** A small keep-alive response. */
export function okResponse(body = 'ok', extraHeaders = ''): string {
  return `HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}\r\n${body}`;
}

export interface Outcome {
  status: number;
  body: string;
  /** The connection was cut before the response completed. */
  cut: boolean;
  /** ms from sending to the end (complete or cut). */
  ms: number;
}

/** One request; resolves with how it ended, never rejects for a cut response. */
export function send(
  port: number,
  path: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string; agent?: http.Agent | false; signal?: AbortSignal } = {},
): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    let status = 0;
    let body = '';
    let settled = false;
    const settle = (cut: boolean): void => {
      if (settled) return;
      settled = true;
      resolve({ status, body, cut, ms: Date.now() - started });
    };
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: { host: 'example.com', ...options.headers },
        agent: options.agent ?? false,
        signal: options.signal,
      },
      (res) => {
        status = res.statusCode ?? 0;
        res.setEncoding('latin1');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => settle(false));
        res.on('aborted', () => settle(true));
        res.on('error', () => settle(true));
        res.on('close', () => settle(!res.complete));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (status !== 0 || err.code === 'ECONNRESET') settle(true);
      else if (err.name === 'AbortError') settle(true);
      else reject(err);
    });
    req.end(options.body);
  });
}

export interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

/** A data plane log that keeps its lines. */
export function logSink(): { log: (level: string, msg: string, fields?: Record<string, unknown>) => void; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, log: (level, msg, fields = {}) => lines.push({ level, msg, fields }) };
}

export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Polls `condition` every 10 ms until it holds or `ms` pass; returns whether it held. */
export async function eventually(condition: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
