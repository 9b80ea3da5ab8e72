// The proxy's end of the config protocol (config-protocol.ts): one stream
// to the controller's config service at a time, each config frame checked
// and taken in by the relay (delta-relay.ts), and the relay's delta handed
// to onConfig() in order. When the stream ends,
// fails, or goes silent, it connects again: nothing here ever takes the
// config away, so a proxy with no controller serves what it last applied.
//
// Where: a comma list of `host:port`; each name is resolved anew at the
// start of every round of attempts and every address it gives is a target
// (a headless Service gives every controller replica; a ClusterIP Service
// one address that kube-proxy balances). A round tries each target once,
// one after the other, starting where the last round stopped, so a dead
// replica costs one failed attempt and the next one answers.
//
// Backoff between rounds: exponential from 0.5 s, doubling per failed
// round up to 30 s, each wait drawn at random from its upper half (proxies
// that lost the same controller come back spread out, but never sooner
// than half the step); back to 0.5 s once a stream has delivered its
// snapshot. A refusal's Retry-After raises the next step to at least it.
import dns from 'node:dns';
import fs from 'node:fs';
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { LogFn } from '../dataplane/log.ts';
import type { IRDelta } from '../ir/delta.ts';
import {
  CONFIG_PATH, CONFIG_PROTOCOL_VERSION, FrameReader, HEARTBEAT_MISSES, MAX_FRAME_BYTES, type ConfigFrame,
} from '../providers/kubernetes/config-protocol.ts';
import type { DeltaRelay } from './delta-relay.ts';

export interface ControllerAddress {
  /** A DNS name or an IP address: what the controller's certificate must name. */
  host: string;
  port: number;
}

export interface ConfigClientOptions {
  /** The controller's config service: one or more `host:port` (a Service name, in a cluster). */
  controllers: readonly ControllerAddress[];
  /** `namespace/name` of the Gateway this proxy serves. */
  gateway: string;
  /** Read at every connect: a projected token is rotated by the kubelet. */
  tokenFile: string;
  /** PEM file of the CA the controller's certificate must chain to; read at every connect. */
  caFile: string;
  /**
   * Takes in every frame's delta, across streams; its ids are what
   * onConfig() is given.
   */
  relay: DeltaRelay;
  /**
   * Applies one config: `delta` is the relay's, from the config the last
   * call was given (its full() from then on). The next is not handed over
   * before this settles. A rejection is logged and the stream goes on: the
   * data plane keeps its previous config and takes the next one whole.
   */
  onConfig(delta: IRDelta, info: { seq: number; snapshot: boolean }): Promise<void>;
  log: LogFn;
  /** First reconnect step; default 500 ms. */
  minBackoffMs?: number;
  /** Largest reconnect step; default 30 s. */
  maxBackoffMs?: number;
  /** Time allowed to resolve, connect (TCP, TLS), get the answer's headers and then the snapshot; default 10 s. */
  connectTimeoutMs?: number;
  /** Largest frame accepted; default MAX_FRAME_BYTES. */
  maxFrameBytes?: number;
}

export interface ConfigClient {
  /** Whether a stream is open and has delivered its snapshot. */
  readonly connected: boolean;
  /** Stops for good: closes the stream and connects no more. */
  close(): void;
}

const DEFAULT_MIN_BACKOFF_MS = 500;
const DEFAULT_MAX_BACKOFF_MS = 30_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** The receive window: a large snapshot arrives without a round trip per 64 KiB. */
const RECEIVE_WINDOW_BYTES = 8 * 1024 * 1024;
/** Bytes of a refusal's body kept for the log. */
const MAX_ERROR_BODY_BYTES = 1024;
/** Addresses kept from one name: a Service has a few replicas, not thousands. */
const MAX_ADDRESSES_PER_NAME = 16;
/** The longest Retry-After honoured, so that a confused controller cannot park a proxy. */
const MAX_RETRY_AFTER_MS = 60_000;

/** `host:port[,host:port...]`, or a string saying what is wrong. */
export function parseControllerAddresses(text: string): ControllerAddress[] | string {
  const out: ControllerAddress[] = [];
  for (const part of text.split(',')) {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(part.trim());
    const port = Number(m?.[3]);
    if (!m || port < 1 || port > 65535) return `not host:port: ${JSON.stringify(part.trim())}`;
    const host = m[1] ?? m[2]!;
    if (m[1] !== undefined && net.isIPv6(host) === false) return `not an IPv6 address: ${JSON.stringify(part.trim())}`;
    out.push({ host, port });
  }
  return out;
}

export function startConfigClient(opts: ConfigClientOptions): ConfigClient {
  if (opts.controllers.length === 0) throw new Error('config client: no controller address');
  return new Client(opts);
}

interface Target {
  /** What the certificate must name (and the SNI when a DNS name). */
  host: string;
  /** What is connected to. */
  address: string;
  port: number;
}

type End = (level: 'info' | 'warn' | 'error', reason: string, fields?: Record<string, unknown>) => void;

class Client implements ConfigClient {
  readonly #opts: ConfigClientOptions;
  readonly #minBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #connectTimeoutMs: number;
  /** Failed rounds since the last snapshot. */
  #failures = 0;
  /** Targets of the current round still to try, in order. */
  #round: Target[] = [];
  /** Where the next round starts: random at first, so that proxies spread over replicas. */
  #cursor = Math.floor(Math.random() * 1024);
  /** A Retry-After heard in this round: the next wait is at least this. */
  #retryAfterMs = 0;
  #session: ClientHttp2Session | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  /** Every apply, in order, across streams: see #receive. */
  #applying: Promise<void> = Promise.resolve();
  #closed = false;
  connected = false;

  constructor(opts: ConfigClientOptions) {
    this.#opts = opts;
    this.#minBackoffMs = opts.minBackoffMs ?? DEFAULT_MIN_BACKOFF_MS;
    this.#maxBackoffMs = opts.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    void this.#startRound();
  }

  close(): void {
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#session?.destroy();
  }

  /** Resolves every address anew and tries the first target; #next() goes on with the rest. */
  async #startRound(): Promise<void> {
    this.#retryTimer = null;
    if (this.#closed) return;
    const targets = await this.#resolve();
    if (this.#closed) return;
    if (targets.length === 0) return this.#backoff();
    const start = this.#cursor % targets.length;
    this.#round = [...targets.slice(start), ...targets.slice(0, start)];
    this.#retryAfterMs = 0;
    this.#next();
  }

  /** The next target of the round, or a backoff once the round is done. */
  #next(): void {
    if (this.#closed) return;
    const target = this.#round.shift();
    if (target === undefined) return this.#backoff();
    this.#cursor++;
    this.#connect(target);
  }

  /** Every address of every controller address: in the order given, each name's addresses sorted, so that the cursor walks the same list every round. */
  async #resolve(): Promise<Target[]> {
    const perAddress = await Promise.all(this.#opts.controllers.map(async ({ host, port }): Promise<Target[]> => {
      if (net.isIP(host) !== 0) return [{ host, address: host, port }];
      let timer: NodeJS.Timeout | undefined;
      try {
        // getaddrinfo cannot be cancelled; the race only stops waiting for it.
        const found = await Promise.race([
          dns.promises.lookup(host, { all: true }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${this.#connectTimeoutMs} ms`)), this.#connectTimeoutMs);
          }),
        ]);
        const addresses = [...new Set(found.map((a) => a.address))].sort().slice(0, MAX_ADDRESSES_PER_NAME);
        return addresses.map((address) => ({ host, address, port }));
      } catch (e) {
        this.#opts.log('warn', `config: cannot resolve ${host}: ${(e as Error).message}`, { gateway: this.#opts.gateway });
        return [];
      } finally {
        clearTimeout(timer);
      }
    }));
    return perAddress.flat();
  }

  /** One attempt; whatever way it ends, the next target or round follows. */
  #connect(target: Target): void {
    const log = this.#opts.log;
    const where = { controller: `${target.host}:${target.port}`, address: target.address, gateway: this.#opts.gateway };
    let token: string;
    let ca: string;
    try {
      token = fs.readFileSync(this.#opts.tokenFile, 'utf8').trim();
      if (token === '') throw new Error('it is empty');
    } catch (e) {
      // Without a token no target will do: straight to the backoff.
      log('error', `config: cannot read the token file ${this.#opts.tokenFile}: ${(e as Error).message}`, where);
      this.#round = [];
      return this.#backoff();
    }
    try {
      ca = fs.readFileSync(this.#opts.caFile, 'utf8');
    } catch (e) {
      log('error', `config: cannot read the CA file ${this.#opts.caFile}: ${(e as Error).message}`, where);
      this.#round = [];
      return this.#backoff();
    }

    let ended = false;
    let connectTimer: NodeJS.Timeout | null = null;
    let silence: NodeJS.Timeout | null = null;
    const authority = net.isIPv6(target.host) ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
    const session = http2.connect(`https://${authority}`, {
      createConnection: () => tls.connect({
        host: target.address,
        port: target.port,
        // The certificate is checked against the name asked for, not the address it resolved to; SNI carries no IP.
        servername: net.isIP(target.host) === 0 ? target.host : undefined,
        checkServerIdentity: (_host, cert) => tls.checkServerIdentity(target.host, cert),
        ca,
        minVersion: 'TLSv1.3',
        ALPNProtocols: ['h2'],
      }),
      settings: { enablePush: false, initialWindowSize: RECEIVE_WINDOW_BYTES },
    });
    this.#session = session;
    /** Ends this attempt once, with a reason for the log, and goes on to the next. */
    const end: End = (level, reason, fields = {}) => {
      if (ended) return;
      ended = true;
      if (connectTimer !== null) clearTimeout(connectTimer);
      if (silence !== null) clearTimeout(silence);
      const hadConfig = this.connected;
      this.connected = false;
      session.destroy();
      if (this.#session === session) this.#session = null;
      if (this.#closed) return;
      log(level, hadConfig ? `config stream lost: ${reason}; serving the last config until a controller answers` : `config: ${reason}`, { ...where, ...fields });
      // A stream that delivered its snapshot: a new round, after a short jittered wait.
      if (hadConfig) this.#round = [];
      this.#next();
    };
    /** (Re)arms the timer that ends a silent attempt; null stops it (while applying: nothing is read then). */
    const silent = (ms: number | null, what: string) => {
      if (silence !== null) clearTimeout(silence);
      silence = null;
      if (ms === null || ended) return;
      silence = setTimeout(() => end('warn', `${what} within ${ms} ms`), ms);
      silence.unref();
    };
    connectTimer = setTimeout(() => end('warn', `no answer within ${this.#connectTimeoutMs} ms`), this.#connectTimeoutMs);
    connectTimer.unref();
    session.on('error', (err) => end('warn', `connection failed: ${err.message}`));
    session.on('close', () => end('warn', 'connection closed'));
    session.on('goaway', () => { /* the stream in flight finishes or fails; 'close' follows */ });
    session.once('connect', () => session.setLocalWindowSize(RECEIVE_WINDOW_BYTES));

    const stream = session.request({
      ':method': 'GET',
      ':path': `${CONFIG_PATH}?gateway=${encodeURIComponent(this.#opts.gateway)}`,
      authorization: `Bearer ${token}`,
      // Never indexed by HPACK: the token is not kept in either side's header table.
      [http2.sensitiveHeaders]: ['authorization'],
    });
    stream.on('error', (err) => end('warn', `stream failed: ${err.message}`));
    stream.on('close', () => {
      // A stream of a lost connection closes first, with a code of its own making: say what happened.
      if (session.closed || session.destroyed) return end('warn', 'connection closed');
      end('info', stream.rstCode !== undefined && stream.rstCode !== 0 ? `stream reset by the controller (code ${stream.rstCode})` : 'stream ended by the controller');
    });
    stream.on('response', (headers) => {
      if (connectTimer !== null) clearTimeout(connectTimer);
      connectTimer = null;
      const status = Number(headers[':status']);
      if (status !== 200) return this.#refused(stream, status, headers['retry-after'], end);
      // The snapshot, too, must come within the connect timeout; after it, the heartbeats keep the stream.
      silent(this.#connectTimeoutMs, 'no snapshot');
      this.#receive(stream, end, silent);
    });
  }

  /** Reads a refusal's short body for the log, then ends the attempt. */
  #refused(stream: ClientHttp2Stream, status: number, retryAfter: string | string[] | undefined, end: End): void {
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => { if (body.length < MAX_ERROR_BODY_BYTES) body += chunk.slice(0, MAX_ERROR_BODY_BYTES - body.length); });
    stream.on('end', () => {
      // 401 and 403 will not fix themselves soon (a token for another Gateway, a wrong audience): an error, not a warning.
      const level = status === 401 || status === 403 ? 'error' : 'warn';
      if (typeof retryAfter === 'string' && /^\d{1,6}$/.test(retryAfter)) {
        this.#retryAfterMs = Math.max(this.#retryAfterMs, Math.min(Number(retryAfter) * 1000, MAX_RETRY_AFTER_MS));
      }
      end(level, `controller refused the stream: ${status} ${body.replace(/\s+/g, ' ').trim()}`, { status });
    });
  }

  /**
   * Frames in, deltas out, one onConfig() at a time, across streams too
   * (a late apply of a lost stream never lands after the next stream's
   * snapshot). The frames of one read are taken in by the relay in order
   * and applied as one delta: the relay folds them. While it is applied
   * the stream is paused, so the controller holds (and folds) what comes
   * next instead of this process, and the silence timer is stopped:
   * nothing can be heard while nothing is read.
   */
  #receive(stream: ClientHttp2Stream, end: End, silent: (ms: number | null, what: string) => void): void {
    const reader = new FrameReader(this.#opts.maxFrameBytes ?? MAX_FRAME_BYTES);
    const relay = this.#opts.relay;
    let silenceMs = 0;
    let seq = 0;
    const heard = () => { if (silenceMs > 0) silent(silenceMs, 'nothing heard'); };
    stream.on('data', (chunk: Buffer) => {
      let frames: ConfigFrame[];
      try {
        frames = reader.push(chunk);
      } catch (e) {
        return end('error', (e as Error).message);
      }
      heard();
      let latest = 0;
      let snapshot = false;
      for (const frame of frames) {
        if (seq === 0) {
          if (frame.type !== 'snapshot') return end('error', `protocol error: first frame is ${JSON.stringify(frame.type)}, not a snapshot`);
          if (frame.protocol !== CONFIG_PROTOCOL_VERSION) {
            return end('error', `the controller speaks config protocol ${String(frame.protocol)}; this proxy speaks ${CONFIG_PROTOCOL_VERSION}`);
          }
          if (frame.gateway !== this.#opts.gateway) return end('error', `protocol error: snapshot for ${JSON.stringify(frame.gateway)}`);
          const interval = Number(frame.heartbeatIntervalMs);
          if (!Number.isFinite(interval) || interval < 1) return end('error', 'protocol error: no heartbeat interval');
          silenceMs = Math.min(interval, 3_600_000) * HEARTBEAT_MISSES;
          heard();
        } else if (frame.type === 'snapshot') {
          return end('error', `protocol error: a second snapshot (frame ${frame.seq})`);
        }
        if (frame.type !== 'snapshot' && frame.type !== 'delta') continue; // heartbeats, and frames of a later protocol version
        if (frame.seq !== seq + 1) return end('error', `protocol error: frame ${String(frame.seq)} after frame ${seq}`);
        seq = frame.seq;
        try {
          relay.accept(frame.delta, frame.type === 'snapshot');
        } catch (e) {
          return end('error', `protocol error in frame ${frame.seq}: ${(e as Error).message}`);
        }
        latest = frame.seq;
        if (frame.type === 'snapshot') snapshot = true;
      }
      if (latest === 0) return;
      const info = { seq: latest, snapshot };
      // Taken when its turn comes: whatever the relay took in by then (a
      // later stream's snapshot too) goes in this one delta.
      this.#applying = this.#applying.then(() => {
        const delta = relay.take();
        return delta === null ? undefined : this.#opts.onConfig(delta, info);
      }).then(() => {
        if (info.snapshot) this.#settled(stream);
      }, (e: unknown) => {
        this.#opts.log('error', 'config received but not applied; the previous config keeps serving', { gateway: this.#opts.gateway, seq: info.seq, error: (e as Error)?.message ?? String(e) });
        if (info.snapshot) this.#settled(stream);
      });
      stream.pause();
      silent(null, '');
      void this.#applying.then(() => {
        if (stream.destroyed) return;
        heard();
        stream.resume();
      });
    });
  }

  /** A stream's snapshot is in: the next loss starts the backoff from the bottom again. */
  #settled(stream: ClientHttp2Stream): void {
    if (stream.destroyed || this.#closed) return;
    this.#failures = 0;
    this.connected = true;
  }

  #backoff(): void {
    if (this.#closed || this.#retryTimer !== null) return;
    const step = Math.min(this.#maxBackoffMs, this.#minBackoffMs * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    const waitMs = Math.max(Math.round(step / 2 + Math.random() * (step / 2)), this.#retryAfterMs);
    this.#retryTimer = setTimeout(() => void this.#startRound(), waitMs);
    this.#retryTimer.unref();
  }
}
