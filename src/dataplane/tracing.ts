// Tracing: W3C Trace Context (traceparent; tracestate travels untouched
// with the other headers) and one server span per request, exported over
// OTLP/HTTP with JSON bodies to a collector. Off unless an endpoint is
// given: then no header is read and nothing is allocated per request.
//
// The sampling decision follows the caller's (the `sampled` flag of a
// valid traceparent), as OpenTelemetry's parent-based sampler does;
// requests without one start a trace, sampled at `sample`. Every request
// gets a span id of its own, sent upstream as the parent, so the backend
// continues the trace whether or not the gateway's span is exported.
//
// Each data-plane thread exports its own spans: at most MAX_BUFFERED_SPANS
// wait, a batch leaves every EXPORT_INTERVAL_MS (or at MAX_BATCH_SPANS),
// one export at a time, each bounded by EXPORT_TIMEOUT_MS; spans that do
// not fit or whose export fails are dropped and counted.

import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import type { LogFn } from './log.ts';

// require(), not import: see src/dataplane/http/status-text.ts.
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');
const https = createRequire(import.meta.url)('node:https') as typeof import('node:https');

export interface TracingOptions {
  /** The collector's OTLP/HTTP traces URL, e.g. `http://otel-collector:4318/v1/traces`. */
  endpoint: string;
  /** The share of new traces sampled, 0 to 1. */
  sample: number;
  /** `service.name` of the spans. */
  serviceName: string;
}

export const MAX_BUFFERED_SPANS = 4096;
export const MAX_BATCH_SPANS = 512;
export const EXPORT_INTERVAL_MS = 1_000;
export const EXPORT_TIMEOUT_MS = 5_000;
/** At most one warning about dropped spans this often, per thread. */
const DROP_WARNING_INTERVAL_MS = 10_000;

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** A request's place in its trace. */
export interface TraceContext {
  readonly traceId: string;
  readonly spanId: string;
  /** The caller's span; '' when this request starts the trace. */
  readonly parentSpanId: string;
  readonly sampled: boolean;
}

/** Checks options from flags; throws naming the flag at fault. */
export function checkTracingOptions(o: TracingOptions): TracingOptions {
  let url: URL;
  try {
    url = new URL(o.endpoint);
  } catch {
    throw new Error(`--tracing-endpoint: want an http(s) URL such as http://collector:4318/v1/traces, not ${JSON.stringify(o.endpoint)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`--tracing-endpoint: want http or https, not ${url.protocol}`);
  if (!(o.sample >= 0 && o.sample <= 1)) throw new Error(`--tracing-sample: want a rate from 0 to 1, not ${o.sample}`);
  return o;
}

/** Random ids from a pool refilled 4 KiB at a time: one syscall per ~300 requests. */
class IdSource {
  #pool = Buffer.alloc(4096);
  #at = 4096;

  hex(bytes: number): string {
    if (this.#at + bytes > this.#pool.length) {
      crypto.randomFillSync(this.#pool);
      this.#at = 0;
    }
    const id = this.#pool.toString('hex', this.#at, this.#at + bytes);
    this.#at += bytes;
    return id;
  }
}

/** The context of a request from its `traceparent` header (undefined, or several: none). */
export function parseTraceparent(value: string | string[] | undefined): { traceId: string; parentSpanId: string; sampled: boolean } | null {
  if (typeof value !== 'string') return null;
  const m = TRACEPARENT.exec(value.trim());
  if (m === null || m[1] === 'ff' || m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return null;
  // Version 00 has exactly four fields; later versions may add more (W3C Trace Context §4.3).
  if (m[1] === '00' && value.trim().length !== 55) return null;
  return { traceId: m[2], parentSpanId: m[3], sampled: (parseInt(m[4], 16) & 1) === 1 };
}

export interface FinishedSpan {
  readonly context: TraceContext;
  readonly name: string;
  readonly startUnixNano: bigint;
  readonly endUnixNano: bigint;
  readonly attributes: Record<string, string | number>;
  readonly error: boolean;
}

export class Tracer {
  readonly options: TracingOptions;
  readonly #ids = new IdSource();
  readonly #log: LogFn;
  readonly #url: URL;
  #spans: FinishedSpan[] = [];
  #timer: NodeJS.Timeout | null = null;
  #exporting = false;
  exported = 0;
  dropped = 0;
  #droppedWarned = 0;
  #warnedAt = 0;

  constructor(options: TracingOptions, log: LogFn) {
    this.options = options;
    this.#log = log;
    this.#url = new URL(options.endpoint);
  }

  /** The context of a request whose traceparent header is `header`. */
  contextFor(header: string | string[] | undefined): TraceContext {
    const parent = parseTraceparent(header);
    const spanId = this.#ids.hex(8);
    if (parent !== null) return { traceId: parent.traceId, spanId, parentSpanId: parent.parentSpanId, sampled: parent.sampled };
    return { traceId: this.#ids.hex(16), spanId, parentSpanId: '', sampled: Math.random() < this.options.sample };
  }

  /** The traceparent sent upstream: this request's span as the parent. */
  static traceparent(context: TraceContext): string {
    return `00-${context.traceId}-${context.spanId}-${context.sampled ? '01' : '00'}`;
  }

  /** Queues a sampled span for export. */
  finished(span: FinishedSpan): void {
    if (this.#spans.length >= MAX_BUFFERED_SPANS) {
      this.#drop(1);
      return;
    }
    this.#spans.push(span);
    if (this.#spans.length >= MAX_BATCH_SPANS) this.#export();
    else this.#timer ??= setTimeout(this.#export, EXPORT_INTERVAL_MS);
  }

  #drop(count: number): void {
    this.dropped += count;
    const now = Date.now();
    if (now - this.#warnedAt < DROP_WARNING_INTERVAL_MS) return;
    this.#warnedAt = now;
    this.#log('warn', 'trace spans dropped: the collector is behind or unreachable', { dropped: this.dropped - this.#droppedWarned, droppedTotal: this.dropped, endpoint: this.options.endpoint });
    this.#droppedWarned = this.dropped;
  }

  readonly #export = (): void => {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#exporting || this.#spans.length === 0) return;
    const batch = this.#spans.splice(0, MAX_BATCH_SPANS);
    const body = Buffer.from(JSON.stringify(otlpRequest(batch, this.options.serviceName)));
    this.#exporting = true;
    const url = this.#url;
    const done = (ok: boolean): void => {
      if (!this.#exporting) return;
      this.#exporting = false;
      if (ok) this.exported += batch.length;
      else this.#drop(batch.length);
      if (this.#spans.length !== 0) this.#timer ??= setTimeout(this.#export, this.#spans.length >= MAX_BATCH_SPANS ? 0 : EXPORT_INTERVAL_MS);
    };
    const req = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length },
      timeout: EXPORT_TIMEOUT_MS,
    }, (res) => {
      res.resume();
      res.on('end', () => done((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300));
      res.on('error', () => done(false));
    });
    req.on('timeout', () => req.destroy(new Error('export timed out')));
    req.on('error', () => done(false));
    req.end(body);
  };

  /** Sends what is queued now (at shutdown). */
  flushNow(): void {
    this.#export();
  }
}

function attribute(key: string, value: string | number): Record<string, unknown> {
  return { key, value: typeof value === 'number' ? { intValue: String(value) } : { stringValue: value } };
}

/** An OTLP/HTTP JSON ExportTraceServiceRequest (ids as hex, times as decimal strings, as OTLP/JSON wants). */
export function otlpRequest(spans: readonly FinishedSpan[], serviceName: string): unknown {
  return {
    resourceSpans: [{
      resource: { attributes: [attribute('service.name', serviceName)] },
      scopeSpans: [{
        scope: { name: 'gatehouse' },
        spans: spans.map((s) => ({
          traceId: s.context.traceId,
          spanId: s.context.spanId,
          ...(s.context.parentSpanId === '' ? {} : { parentSpanId: s.context.parentSpanId }),
          name: s.name,
          kind: 2, // SPAN_KIND_SERVER
          startTimeUnixNano: String(s.startUnixNano),
          endTimeUnixNano: String(s.endUnixNano),
          attributes: Object.entries(s.attributes).map(([k, v]) => attribute(k, v)),
          status: s.error ? { code: 2 } : {},
        })),
      }],
    }],
  };
}
