// Access logs, one line per request, as JSON or text, written by a thread
// of their own (access-log-writer.ts) so that a slow sink (a pipe nobody
// reads, a full disk) never holds up a thread that serves traffic. Each
// data-plane thread formats its lines when a response ends and keeps them
// in a bounded buffer (MAX_BUFFERED_BYTES); it hands the writer a batch at
// a time and at most MAX_IN_FLIGHT_BYTES before the writer says it wrote
// them. What does not fit is dropped, counted (metric
// gatehouse_access_log_dropped_total) and said in a warning at most every
// DROP_WARNING_INTERVAL_MS.

import type { MessagePort } from 'node:worker_threads';
import type { RequestRecord } from './http/request-record.ts';
import type { LogFn } from './log.ts';
import { statusClass, type DataPlaneMetrics } from './metrics.ts';

export interface AccessLogOptions {
  /** `stdout`, or a file appended to. */
  target: string;
  format: 'json' | 'text';
  /** The share of requests logged, 0 to 1. */
  sample: number;
  /**
   * Status classes logged (1..5 for 1xx..5xx, 0 for requests with no
   * answer: the client went first); empty: all.
   */
  statusClasses: number[];
}

/** Lines a thread holds while the writer is behind; beyond, new lines are dropped. */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** Bytes handed to the writer and not yet written. */
export const MAX_IN_FLIGHT_BYTES = 256 * 1024;
/** At most one warning about dropped lines this often, per thread. */
export const DROP_WARNING_INTERVAL_MS = 10_000;
/** How long lines wait to be batched before they are handed to the writer. */
const FLUSH_DELAY_MS = 50;

/** From a producer to the writer: lines, newline-terminated, and how many. */
export interface AccessLogBatch { text: string; lines: number; bytes: number }
/** From the writer: the batch is done, written or not (an error: its lines are lost). */
export interface AccessLogAck { bytes: number; lines: number; written: boolean; error?: string }

/** `--access-log-status 4xx,5xx` -> [4, 5]; `none` for requests not answered. Throws for anything else. */
export function parseStatusClasses(text: string): number[] {
  const classes: number[] = [];
  for (const part of text.split(',').map((p) => p.trim().toLowerCase()).filter((p) => p !== '')) {
    const m = /^([1-5])xx$/.exec(part);
    if (m !== null) classes.push(Number(m[1]));
    else if (part === 'none') classes.push(0);
    else throw new Error(`status class ${JSON.stringify(part)}: want 1xx, 2xx, 3xx, 4xx, 5xx or none`);
  }
  return classes;
}

/** Checks options from flags; throws naming the flag at fault. */
export function checkAccessLogOptions(o: AccessLogOptions): AccessLogOptions {
  if (o.target === '') throw new Error('--access-log: want stdout or a file path');
  if (o.format !== 'json' && o.format !== 'text') throw new Error(`--access-log-format: want json or text, not ${JSON.stringify(o.format)}`);
  if (!(o.sample >= 0 && o.sample <= 1)) throw new Error(`--access-log-sample: want a rate from 0 to 1, not ${o.sample}`);
  return o;
}

function protocolOf(record: RequestRecord): string {
  const req = record.req;
  return req.http2 ? 'HTTP/2' : `HTTP/${req.httpVersionMajor}.${req.httpVersionMinor}`;
}

function millis(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** `ns/gw/listener` -> [gateway, listener]; `ns/route/rule/match` -> [route, rule]. */
function names(record: RequestRecord): [string, string, string, string] {
  const gl = record.gatewayListener?.name ?? '';
  const slash = gl.lastIndexOf('/');
  const route = record.route?.name ?? '';
  const parts = route === '' ? [] : route.split('/');
  return [
    slash === -1 ? '' : gl.slice(0, slash),
    slash === -1 ? gl : gl.slice(slash + 1),
    parts.length >= 2 ? `${parts[0]}/${parts[1]}` : route,
    parts.length >= 3 ? parts[2] : '',
  ];
}

/** One JSON line; the field names follow Envoy Gateway's default JSON access log where one exists. */
export function jsonLine(record: RequestRecord, status: number, bytesOut: number, ms: number, now: number): string {
  const req = record.req;
  const [gateway, listener, route, rule] = names(record);
  let line = `{"start_time":"${new Date(now - ms).toISOString()}","client_address":${JSON.stringify(record.client)}`
    + `,"method":${JSON.stringify(req.method)},"authority":${JSON.stringify(record.host)},"path":${JSON.stringify(req.url)}`
    + `,"protocol":"${protocolOf(record)}","response_code":${status},"bytes_received":${req.bytesReceived},"bytes_sent":${bytesOut}`
    + `,"duration":${millis(ms)}`;
  if (record.upstreamAddress !== '') {
    line += `,"upstream_host":${JSON.stringify(record.upstreamAddress)}`;
    if (record.upstreamMs >= 0) line += `,"upstream_service_time":${millis(record.upstreamMs)}`;
  }
  line += `,"gateway":${JSON.stringify(gateway)},"listener":${JSON.stringify(listener)},"route":${JSON.stringify(route)},"rule":${JSON.stringify(rule)}`;
  if (record.cluster !== null) line += `,"backend":${JSON.stringify(record.cluster.name)}`;
  const tls = record.tls;
  if (tls !== null) line += `,"requested_server_name":${JSON.stringify(tls.serverName ?? '')},"tls_version":${JSON.stringify(tls.version ?? '')}`;
  if (record.trace !== null) line += `,"trace_id":"${record.trace.traceId}"`;
  return line + '}\n';
}

/**
 * One text line: time, client, "method path protocol", status, bytes in
 * and out, duration, then key=value pairs. What a client sent is quoted
 * and escaped as a JSON string, so no request can break the line.
 */
export function textLine(record: RequestRecord, status: number, bytesOut: number, ms: number, now: number): string {
  const req = record.req;
  const [gateway, listener, route, rule] = names(record);
  const requestLine = JSON.stringify(`${req.method} ${req.url} ${protocolOf(record)}`);
  let line = `${new Date(now - ms).toISOString()} ${record.client} ${requestLine} ${status} ${req.bytesReceived} ${bytesOut} ${millis(ms)}ms`
    + ` host=${JSON.stringify(record.host)}`;
  if (record.upstreamAddress !== '') {
    line += ` upstream=${record.upstreamAddress}`;
    if (record.upstreamMs >= 0) line += ` upstream_time=${millis(record.upstreamMs)}ms`;
  }
  if (gateway !== '') line += ` gateway=${gateway} listener=${listener}`;
  if (route !== '') line += ` route=${route} rule=${rule}`;
  if (record.cluster !== null) line += ` backend=${record.cluster.name}`;
  const tls = record.tls;
  if (tls !== null) line += ` sni=${JSON.stringify(tls.serverName ?? '')} tls=${tls.version ?? ''}`;
  if (record.trace !== null) line += ` trace_id=${record.trace.traceId}`;
  return line + '\n';
}

/** One thread's access log: filter, format, buffer, hand to the writer. */
export class AccessLog {
  readonly #options: AccessLogOptions;
  /** Bit n set: status class n is logged. */
  readonly #classMask: number;
  readonly #port: MessagePort;
  readonly #metrics: DataPlaneMetrics;
  readonly #log: LogFn;
  readonly #format: typeof jsonLine;
  #buffer: string[] = [];
  #bufferedBytes = 0;
  #inFlight = 0;
  #timer: NodeJS.Timeout | null = null;
  #droppedWarned = 0;
  #warnedAt = 0;

  constructor(options: AccessLogOptions, port: MessagePort, metrics: DataPlaneMetrics, log: LogFn) {
    this.#options = options;
    this.#classMask = options.statusClasses.length === 0 ? 0x3f : options.statusClasses.reduce((m, c) => m | (1 << c), 0);
    this.#port = port;
    this.#metrics = metrics;
    this.#log = log;
    this.#format = options.format === 'json' ? jsonLine : textLine;
    port.on('message', (ack: AccessLogAck) => this.#onAck(ack));
    // The port must not keep a thread alive that has nothing else to do.
    port.unref();
  }

  record(record: RequestRecord, status: number, bytesOut: number, ms: number): void {
    if ((this.#classMask & (1 << statusClass(status))) === 0) return;
    const sample = this.#options.sample;
    if (sample < 1 && Math.random() >= sample) return;
    const line = this.#format(record, status, bytesOut, ms, Date.now());
    // Length in UTF-16 units: close enough to bytes for a bound.
    if (this.#bufferedBytes + line.length > MAX_BUFFERED_BYTES) {
      this.#dropped(1);
      return;
    }
    this.#buffer.push(line);
    this.#bufferedBytes += line.length;
    this.#timer ??= setTimeout(this.#flush, FLUSH_DELAY_MS);
  }

  #dropped(lines: number): void {
    this.#metrics.accessLogDropped += lines;
    const now = Date.now();
    if (now - this.#warnedAt < DROP_WARNING_INTERVAL_MS) return;
    this.#warnedAt = now;
    const dropped = this.#metrics.accessLogDropped;
    this.#log('warn', 'access log sink is behind: lines dropped', { dropped: dropped - this.#droppedWarned, droppedTotal: dropped, bufferBytes: MAX_BUFFERED_BYTES });
    this.#droppedWarned = dropped;
  }

  readonly #flush = (): void => {
    this.#timer = null;
    if (this.#buffer.length === 0 || this.#inFlight >= MAX_IN_FLIGHT_BYTES) return;
    const lines = this.#buffer.length;
    const text = this.#buffer.join('');
    this.#buffer = [];
    this.#bufferedBytes = 0;
    this.#inFlight += text.length;
    this.#port.postMessage({ text, lines, bytes: text.length } satisfies AccessLogBatch);
  };

  #onAck(ack: AccessLogAck): void {
    this.#inFlight -= ack.bytes;
    if (ack.written) this.#metrics.accessLogLines += ack.lines;
    else this.#dropped(ack.lines);
    if (this.#buffer.length !== 0) this.#timer ??= setTimeout(this.#flush, 0);
  }

  /** Hands over what is buffered now (at shutdown); the writer may still be behind. */
  flushNow(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#flush();
  }
}
