// Shared by the config service and proxy tests: real TLS material from the
// config CA, a real HTTP/2 client of the config protocol, a TCP relay that
// can be frozen (a controller or network that stops answering without a
// FIN), and a log that records.
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import type { TestContext } from 'node:test';
import type { LogFn, LogLevel } from '../../src/dataplane/log.ts';
import type { IR } from '../../src/ir/types.ts';
import { createCertificateAuthority, issueServingCertificate } from '../../src/providers/kubernetes/certificate-authority.ts';
import { FrameReader, type ConfigFrame } from '../../src/providers/kubernetes/config-protocol.ts';
import { IRDeltaDecoder } from '../ir/delta-decoder.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/** A config CA and a serving certificate for 127.0.0.1 and localhost, made by the code the controller uses. */
export function tlsMaterial(): TlsMaterial {
  const ca = createCertificateAuthority('gatehouse test CA', DAY_MS);
  const serving = issueServingCertificate(ca, { commonName: 'gatehouse', dnsNames: ['localhost', 'gatehouse.test'], ipAddresses: ['127.0.0.1'], validForMs: DAY_MS });
  return { ca: ca.cert, cert: serving.cert, key: serving.key };
}

export interface LogLine { level: LogLevel; msg: string; fields: Record<string, unknown> }

export function recordingLog(): { log: LogFn; lines: LogLine[]; text(): string } {
  const lines: LogLine[] = [];
  return {
    lines,
    log: (level, msg, fields = {}) => { lines.push({ level, msg, fields }); },
    text: () => lines.map((l) => `${l.level} ${l.msg} ${JSON.stringify(l.fields)}`).join('\n'),
  };
}

export interface StreamOptions {
  gateway?: string;
  /** Bearer token; null sends no Authorization header. */
  token?: string | null;
  path?: string;
  method?: string;
  /** The stream's receive window: small to make a client that does not read fill it soon. */
  windowBytes?: number;
  /** Start paused: nothing is read (and no window update sent) until resume(). */
  paused?: boolean;
}

export interface ConfigStreamClient {
  session: ClientHttp2Session;
  stream: ClientHttp2Stream;
  status: number;
  headers: http2.IncomingHttpHeaders;
  /** Frames received so far, in order. */
  frames: ConfigFrame[];
  /** Every byte of the body received so far, as text. */
  raw(): string;
  /** The next frame not yet returned by next() (heartbeats included unless skipped); rejects after `ms`. */
  next(ms?: number, skipHeartbeats?: boolean): Promise<ConfigFrame>;
  /** Resolves with the RST_STREAM code (0 for a clean end) once the stream closes. */
  closed: Promise<number>;
  resume(): void;
  close(): void;
}

/** Opens one config stream to 127.0.0.1:`port` and waits for the answer's headers (and, when not 200, its body). */
export async function openConfigStream(t: TestContext, port: number, ca: string, opts: StreamOptions = {}): Promise<ConfigStreamClient> {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    ca,
    settings: { initialWindowSize: opts.windowBytes ?? 65_535 },
  });
  session.on('error', () => {});
  t.after(() => session.destroy());
  const headers: http2.OutgoingHttpHeaders = {
    ':method': opts.method ?? 'GET',
    ':path': opts.path ?? `/v1/config?gateway=${encodeURIComponent(opts.gateway ?? 'ns/gw')}`,
  };
  if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? 'good-token'}`;
  const stream = session.request(headers);
  stream.on('error', () => {});
  if (opts.paused) stream.pause();
  const chunks: Buffer[] = [];
  const frames: ConfigFrame[] = [];
  const reader = new FrameReader();
  let waiter: (() => void) | null = null;
  let read = 0;
  const closed = new Promise<number>((resolve) => stream.on('close', () => { waiter?.(); resolve(stream.rstCode ?? 0); }));
  const response = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('close', () => reject(new Error(`stream closed before an answer (code ${stream.rstCode})`)));
  });
  stream.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    const status = Number(response[':status']);
    if (status === 200) frames.push(...reader.push(chunk));
    waiter?.();
  });
  const status = Number(response[':status']);
  if (status !== 200) await closed;
  const client: ConfigStreamClient = {
    session,
    stream,
    status,
    headers: response,
    frames,
    raw: () => Buffer.concat(chunks).toString('utf8'),
    async next(ms = 5_000, skipHeartbeats = true) {
      const until = Date.now() + ms;
      for (;;) {
        while (read < frames.length) {
          const frame = frames[read++]!;
          if (!(skipHeartbeats && frame.type === 'heartbeat')) return frame;
        }
        if (stream.closed || stream.destroyed) throw new Error(`stream closed (code ${stream.rstCode}) while waiting for a frame`);
        const left = until - Date.now();
        if (left <= 0) throw new Error(`no frame within ${ms} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiter = () => { clearTimeout(timer); waiter = null; resolve(); };
        });
      }
    },
    closed,
    resume: () => stream.resume(),
    close: () => session.destroy(),
  };
  return client;
}

/** Decodes a stream's config frames in order, as the proxy does. */
export function decoder(): (frame: ConfigFrame) => IR {
  const d = new IRDeltaDecoder();
  return (frame) => {
    if (frame.type === 'heartbeat') throw new Error('a heartbeat carries no config');
    return d.decode(frame.delta, frame.type === 'snapshot');
  };
}

export interface Relay {
  readonly port: number;
  /** Stops forwarding either way, holding the sockets open: a peer gone without a FIN. */
  freeze(): void;
  /** Connections relayed so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/** A TCP relay on 127.0.0.1 to 127.0.0.1:`target`. */
export async function startRelay(t: TestContext, target: number): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  let connections = 0;
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      // Frozen, a close is not passed on either: the far side hears nothing at all.
      s.on('close', () => { sockets.delete(s); if (!frozen) { client.destroy(); upstream.destroy(); } });
    }
    client.on('data', (d: Buffer) => { if (!frozen) upstream.write(d); });
    upstream.on('data', (d: Buffer) => { if (!frozen) client.write(d); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(() => (server.listening ? close() : undefined));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => { frozen = true; },
    get connections() { return connections; },
    close,
  };
}

export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
