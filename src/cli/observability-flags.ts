// Flags shared by `gatehouse serve` and `gatehouse proxy` for what the
// gateway tells about its traffic: access logs and the metrics' series cap.
import { checkAccessLogOptions, parseStatusClasses, type AccessLogOptions } from '../dataplane/access-log.ts';
import { DEFAULT_MAX_SERIES } from '../dataplane/metrics.ts';
import { checkTracingOptions, type TracingOptions } from '../dataplane/tracing.ts';

export const OBSERVABILITY_FLAG_OPTIONS = {
  'access-log': { type: 'string' },
  'access-log-format': { type: 'string', default: 'json' },
  'access-log-sample': { type: 'string', default: '1' },
  'access-log-status': { type: 'string' },
  'metrics-max-series': { type: 'string' },
  'tracing-endpoint': { type: 'string' },
  'tracing-sample': { type: 'string', default: '1' },
  'tracing-service-name': { type: 'string', default: 'gatehouse' },
} as const;

export const OBSERVABILITY_USAGE = `observability (serve, proxy): metrics on /metrics (docs/metrics.md); access logs off by default
  --access-log stdout|FILE    one line per request, to stdout or appended to FILE
  --access-log-format FMT     json (default) or text
  --access-log-sample RATE    share of requests logged, 0 to 1; default 1
  --access-log-status LIST    only these status classes, e.g. 4xx,5xx (none: no answer sent); default all
  --metrics-max-series N      series each data-plane thread keeps before counting new label sets
                              in one overflow series; default ${DEFAULT_MAX_SERIES}
  --tracing-endpoint URL      export a span per request over OTLP/HTTP (JSON) to URL, e.g.
                              http://otel-collector:4318/v1/traces; W3C traceparent is continued
                              or started and sent upstream; off by default
  --tracing-sample RATE       share of new traces sampled, 0 to 1 (a caller's decision is kept); default 1
  --tracing-service-name NAME service.name of the spans; default gatehouse`;

export interface ObservabilitySettings {
  accessLog?: AccessLogOptions;
  maxMetricSeries?: number;
  tracing?: TracingOptions;
}

/** The settings from parseArgs values, or a string saying which flag is wrong. */
export function parseObservabilityFlags(values: Record<string, unknown>): ObservabilitySettings | string {
  const settings: ObservabilitySettings = {};
  const rawMax = values['metrics-max-series'];
  if (typeof rawMax === 'string') {
    if (!/^\d+$/.test(rawMax) || Number(rawMax) < 1) return `--metrics-max-series wants a whole number of at least 1, not ${rawMax}`;
    settings.maxMetricSeries = Number(rawMax);
  }
  const endpoint = values['tracing-endpoint'];
  if (typeof endpoint === 'string') {
    try {
      settings.tracing = checkTracingOptions({
        endpoint,
        sample: Number(values['tracing-sample'] ?? '1'),
        serviceName: String(values['tracing-service-name'] ?? 'gatehouse'),
      });
    } catch (e) {
      return (e as Error).message;
    }
  }
  const target = values['access-log'];
  if (typeof target !== 'string') return settings;
  try {
    const rawStatus = values['access-log-status'];
    settings.accessLog = checkAccessLogOptions({
      target,
      format: String(values['access-log-format'] ?? 'json') as AccessLogOptions['format'],
      sample: Number(values['access-log-sample'] ?? '1'),
      statusClasses: typeof rawStatus === 'string' ? parseStatusClasses(rawStatus) : [],
    });
  } catch (e) {
    return (e as Error).message.startsWith('--') ? (e as Error).message : `--access-log-status: ${(e as Error).message}`;
  }
  return settings;
}
