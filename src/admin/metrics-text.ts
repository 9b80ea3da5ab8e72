// /metrics in Prometheus' text exposition format (version 0.0.4): the
// data plane's counters (added up over its threads), the control plane's,
// and a few of the process. Every metric is named and documented in
// docs/metrics.md.
import type { ControlMetrics } from '../control/control-metrics.ts';
import { DURATION_BUCKETS_SECONDS, Histogram, STATUS_CLASSES, type MetricsSnapshot } from '../dataplane/metrics.ts';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const REQUEST_LABELS = ['gateway', 'listener', 'route', 'rule', 'backend'];
const PROCESS_START_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

/** A label value as the format wants it: backslash, double quote and newline escaped. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(names: readonly string[], values: readonly string[], extra = ''): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`);
  if (extra !== '') parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function fmt(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return String(Math.round(n * 1e9) / 1e9);
}

class Writer {
  readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: string, value: number): void {
    this.lines.push(`${name}${labels} ${fmt(value)}`);
  }

  /** `buckets`: per-bucket counts (the last +Inf), made cumulative here. */
  histogram(name: string, names: readonly string[], values: readonly string[], buckets: readonly number[], sum: number): void {
    let cumulative = 0;
    for (let i = 0; i < buckets.length; i++) {
      cumulative += buckets[i];
      const le = i < DURATION_BUCKETS_SECONDS.length ? fmt(DURATION_BUCKETS_SECONDS[i]) : '+Inf';
      this.sample(`${name}_bucket`, labelText(names, values, `le="${le}"`), cumulative);
    }
    this.sample(`${name}_sum`, labelText(names, values), sum);
    this.sample(`${name}_count`, labelText(names, values), cumulative);
  }
}

const N_BUCKETS = DURATION_BUCKETS_SECONDS.length + 1;

export function renderMetrics(data: MetricsSnapshot, control: ControlMetrics | null): string {
  const w = new Writer();
  w.family('gatehouse_http_requests_total', 'counter', 'HTTP requests answered, by Gateway, listener, HTTPRoute, rule, backend cluster and status class (none: the client left before an answer).');
  for (const s of data.requests) {
    for (let c = 0; c < STATUS_CLASSES.length; c++) {
      if (s.values[c] === 0) continue;
      w.sample('gatehouse_http_requests_total', labelText(REQUEST_LABELS, s.labels, `code_class="${STATUS_CLASSES[c]}"`), s.values[c]);
    }
  }
  w.family('gatehouse_http_request_duration_seconds', 'histogram', 'Time from a request taken by the gateway to its response ended, by Gateway, listener, HTTPRoute, rule and backend cluster.');
  for (const s of data.requests) {
    w.histogram('gatehouse_http_request_duration_seconds', REQUEST_LABELS, s.labels, s.values.slice(6, 6 + N_BUCKETS), s.values[6 + N_BUCKETS]);
  }
  w.family('gatehouse_upstream_request_duration_seconds', 'histogram', 'Time of each try at a backend, from sending it to the end of its response or its failure, by backend cluster.');
  for (const s of data.upstreams) w.histogram('gatehouse_upstream_request_duration_seconds', ['backend'], s.labels, s.values.slice(0, N_BUCKETS), s.values[N_BUCKETS]);
  w.family('gatehouse_upstream_connect_failures_total', 'counter', 'Tries that got no connection to a backend (refused, unreachable, connect timeout), by backend cluster.');
  for (const s of data.upstreams) w.sample('gatehouse_upstream_connect_failures_total', labelText(['backend'], s.labels), s.values[N_BUCKETS + 1]);
  w.family('gatehouse_upstream_retries_total', 'counter', 'Tries made again after a failed one (HTTPRoute retry), by backend cluster.');
  for (const s of data.upstreams) w.sample('gatehouse_upstream_retries_total', labelText(['backend'], s.labels), s.values[N_BUCKETS + 2]);
  w.family('gatehouse_upstream_circuit_open_total', 'counter', 'Requests answered 503 because the backend\'s BackendTrafficPolicy limit of parallel requests was reached, by backend cluster.');
  for (const s of data.upstreams) w.sample('gatehouse_upstream_circuit_open_total', labelText(['backend'], s.labels), s.values[N_BUCKETS + 3]);
  w.family('gatehouse_upstream_retries_refused_total', 'counter', 'Retries not made because of the retry budget or maxParallelRetries, by backend cluster.');
  for (const s of data.upstreams) w.sample('gatehouse_upstream_retries_refused_total', labelText(['backend'], s.labels), s.values[N_BUCKETS + 4]);
  w.family('gatehouse_upstream_ejections_total', 'counter', 'Endpoints ejected by passive health checks (consecutive 5xx or connect failures), by backend cluster.');
  for (const s of data.upstreams) w.sample('gatehouse_upstream_ejections_total', labelText(['backend'], s.labels), s.values[N_BUCKETS + 5]);
  w.family('gatehouse_downstream_connections_total', 'counter', 'Client connections accepted, by listening address.');
  for (const s of data.listeners) w.sample('gatehouse_downstream_connections_total', labelText(['address'], s.labels), s.values[0]);
  w.family('gatehouse_downstream_connections_active', 'gauge', 'Client connections open now, TLS handshakes in progress included, by listening address.');
  for (const s of data.listeners) w.sample('gatehouse_downstream_connections_active', labelText(['address'], s.labels), s.values[1]);
  w.family('gatehouse_tls_handshakes_total', 'counter', 'TLS handshakes completed, by listening address.');
  for (const s of data.listeners) w.sample('gatehouse_tls_handshakes_total', labelText(['address'], s.labels), s.values[2]);
  w.family('gatehouse_tls_handshake_errors_total', 'counter', 'TLS handshakes that failed or were refused (unknown server name, bad hello, timeout), by listening address.');
  for (const s of data.listeners) w.sample('gatehouse_tls_handshake_errors_total', labelText(['address'], s.labels), s.values[3]);
  w.family('gatehouse_metrics_overflow_total', 'counter', 'Requests counted in the overflow series because a thread reached its series cap.');
  w.sample('gatehouse_metrics_overflow_total', '', data.overflowed);
  w.family('gatehouse_access_log_lines_total', 'counter', 'Access log lines written.');
  w.sample('gatehouse_access_log_lines_total', '', data.accessLogLines);
  w.family('gatehouse_access_log_dropped_total', 'counter', 'Access log lines dropped because the sink was behind or failed.');
  w.sample('gatehouse_access_log_dropped_total', '', data.accessLogDropped);
  w.family('gatehouse_trace_spans_exported_total', 'counter', 'Trace spans the collector accepted.');
  w.sample('gatehouse_trace_spans_exported_total', '', data.spansExported);
  w.family('gatehouse_trace_spans_dropped_total', 'counter', 'Trace spans dropped: the buffer was full or the export failed.');
  w.sample('gatehouse_trace_spans_dropped_total', '', data.spansDropped);

  if (control !== null) {
    w.family('gatehouse_config_generation', 'gauge', 'Configurations applied since start.');
    w.sample('gatehouse_config_generation', '', control.generation);
    w.family('gatehouse_config_reloads_total', 'counter', 'Configuration cycles (read, translate, apply), by result.');
    w.sample('gatehouse_config_reloads_total', '{result="success"}', control.reloadsSucceeded);
    w.sample('gatehouse_config_reloads_total', '{result="failure"}', control.reloadsFailed);
    w.family('gatehouse_config_last_reload_success_timestamp_seconds', 'gauge', 'When the last configuration was applied (Unix time).');
    w.sample('gatehouse_config_last_reload_success_timestamp_seconds', '', control.lastReloadSuccessSeconds);
    w.family('gatehouse_config_reload_duration_seconds', 'histogram', 'Duration of a configuration cycle that applied a configuration.');
    histogramOf(w, 'gatehouse_config_reload_duration_seconds', control.reloadDuration);
    w.family('gatehouse_translate_duration_seconds', 'histogram', 'Duration of translate(): Gateway API objects to status and IR.');
    histogramOf(w, 'gatehouse_translate_duration_seconds', control.translateDuration);
    w.family('gatehouse_translate_failures_total', 'counter', 'translate() runs that threw (the previous configuration keeps serving).');
    w.sample('gatehouse_translate_failures_total', '', control.translateFailures);
    w.family('gatehouse_status_writes_total', 'counter', 'Status subresource writes to the API server (Kubernetes mode), by result.');
    w.sample('gatehouse_status_writes_total', '{result="success"}', control.statusWritesSucceeded);
    w.sample('gatehouse_status_writes_total', '{result="failure"}', control.statusWritesFailed);
  }

  const usage = process.resourceUsage();
  w.family('process_cpu_seconds_total', 'counter', 'User and system CPU time of the process, every thread.');
  w.sample('process_cpu_seconds_total', '', (usage.userCPUTime + usage.systemCPUTime) / 1e6);
  w.family('process_resident_memory_bytes', 'gauge', 'Resident memory of the process.');
  w.sample('process_resident_memory_bytes', '', process.memoryUsage.rss());
  w.family('process_start_time_seconds', 'gauge', 'When the process started (Unix time).');
  w.sample('process_start_time_seconds', '', PROCESS_START_SECONDS);
  return w.lines.join('\n') + '\n';
}

function histogramOf(w: Writer, name: string, h: Histogram): void {
  w.histogram(name, [], [], h.buckets, h.sum);
}
