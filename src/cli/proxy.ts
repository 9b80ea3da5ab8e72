// gatehouse proxy: one Gateway's data plane, configured by the controller
// (Kubernetes mode; the controller's provisioned Deployment runs it). Runs
// until SIGTERM/SIGINT, then shuts down as serve does (control/shutdown.ts).
//
// Listeners below port 1024 without root: the provisioned pod sets the
// namespaced sysctl net.ipv4.ip_unprivileged_port_start=0 (render.ts), so
// the non-root proxy binds port 80 and 443 with no capability at all.
// Elsewhere, run it with CAP_NET_BIND_SERVICE or that sysctl.
import os from 'node:os';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { parseDuration } from '../api/durations.ts';
import { DEFAULT_SHUTDOWN_DELAY_MS, shutDownOnSignal } from '../control/shutdown.ts';
import { resolveLimits, type RequestLimits } from '../dataplane/limits.ts';
import { parseGatewayRef } from '../providers/kubernetes/config-protocol.ts';
import { parseControllerAddresses, type ControllerAddress } from '../proxy/config-client.ts';
import { startProxy } from '../proxy/proxy.ts';
import { formatDuration, limitFlagOptions, parseLimitFlags, parseWorkersFlag } from './limit-flags.ts';
import { cgroupCpuLimit, usableCores } from './cpu-quota.ts';
import { OBSERVABILITY_FLAG_OPTIONS, parseObservabilityFlags, type ObservabilitySettings } from './observability-flags.ts';

/** Where a pod's projected ServiceAccount token is mounted by convention; the provisioned Deployment mounts it there. */
export const DEFAULT_TOKEN_FILE = '/var/run/secrets/gatehouse/token';
export const DEFAULT_HEALTH_ADDRESS = '0.0.0.0:8081';
/** Where Prometheus scrapes a proxy; the provisioned pod names this port `metrics` and annotates it. */
export const DEFAULT_METRICS_ADDRESS = '0.0.0.0:9090';

export const PROXY_USAGE = `gatehouse proxy --controller-address HOST:PORT --gateway NS/NAME --ca-file FILE [--token-file FILE]
                [--health-address HOST:PORT] [--workers N] [--log-level LEVEL] [--shutdown-delay DUR] [limits]
  --controller-address ADDR  the controller's config service: its Service's name and port, or a
                             comma list of HOST:PORT; names are resolved again at each reconnect
                             and every address tried in turn, so any replica answers
  --gateway NS/NAME          the Gateway whose configuration this proxy serves
  --ca-file FILE             CA certificate (PEM) the controller's certificate must chain to
  --token-file FILE          projected ServiceAccount token (audience gatehouse), re-read at each
                             connect; default ${DEFAULT_TOKEN_FILE}
  --health-address ADDR      /healthz (200 while running) and /readyz (200 once configured, 503
                             while draining); nothing else; default ${DEFAULT_HEALTH_ADDRESS}
  --metrics-address ADDR     /metrics for Prometheus (no token: the pod's network decides who
                             scrapes); nothing else; default ${DEFAULT_METRICS_ADDRESS}
  --access-log ... --metrics-max-series N
                             as for serve
  --workers N                as for serve
  --log-level LEVEL          trace, debug, info, warn, error; default info
  --shutdown-delay DUR       after SIGTERM/SIGINT, /readyz answers 503 and listeners keep accepting
                             this long before they stop and drain; default ${formatDuration(DEFAULT_SHUTDOWN_DELAY_MS)}
  limits: the same flags as serve
  Listener ports below 1024 need root, CAP_NET_BIND_SERVICE or the sysctl
  net.ipv4.ip_unprivileged_port_start=0 (the pods the controller provisions set it).`;

export interface ProxyCommand extends ObservabilitySettings {
  /** `host:port` of /metrics. */
  metricsAddress: string;
  controllers: ControllerAddress[];
  gateway: string;
  caFile: string;
  tokenFile: string;
  healthAddress: string;
  workers: number;
  logLevel: string;
  shutdownDelayMs: number;
  limits: Partial<RequestLimits>;
}

/** The proxy's flags, or a string saying which is wrong. */
export function parseProxyArgs(args: string[]): ProxyCommand | string {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        'controller-address': { type: 'string' },
        gateway: { type: 'string' },
        'ca-file': { type: 'string' },
        'token-file': { type: 'string', default: DEFAULT_TOKEN_FILE },
        'health-address': { type: 'string', default: DEFAULT_HEALTH_ADDRESS },
        'metrics-address': { type: 'string', default: DEFAULT_METRICS_ADDRESS },
        ...OBSERVABILITY_FLAG_OPTIONS,
        workers: { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
        'shutdown-delay': { type: 'string' },
        ...limitFlagOptions(),
      },
      strict: true,
    }));
  } catch (e) {
    return (e as Error).message;
  }
  const rawControllers = values['controller-address'];
  if (!rawControllers) return 'proxy needs --controller-address HOST:PORT';
  const controllers = parseControllerAddresses(rawControllers);
  if (typeof controllers === 'string') return `--controller-address wants HOST:PORT[,HOST:PORT...]: ${controllers}`;
  const gateway = values.gateway;
  if (!gateway || parseGatewayRef(gateway) === null) return `proxy needs --gateway NAMESPACE/NAME${gateway ? `, not ${gateway}` : ''}`;
  if (!values['ca-file']) return 'proxy needs --ca-file';
  const workers = parseWorkersFlag(values.workers, usableCores(os.availableParallelism(), cgroupCpuLimit()));
  if (typeof workers === 'string') return workers;
  const limits = parseLimitFlags(values);
  if (typeof limits === 'string') return limits;
  const observability = parseObservabilityFlags(values);
  if (typeof observability === 'string') return observability;
  const rawDelay = values['shutdown-delay'];
  const shutdownDelayMs = rawDelay === undefined ? DEFAULT_SHUTDOWN_DELAY_MS : rawDelay === '0' ? 0 : parseDuration(rawDelay);
  if (shutdownDelayMs === null) return `--shutdown-delay wants a duration such as 5s or 500ms, not ${rawDelay}`;
  return {
    ...observability,
    metricsAddress: values['metrics-address']!,
    controllers,
    gateway,
    caFile: values['ca-file'],
    tokenFile: values['token-file']!,
    healthAddress: values['health-address']!,
    workers,
    logLevel: values['log-level']!,
    shutdownDelayMs,
    limits,
  };
}

/** Returns -1: the process lives on until a signal ends it. */
export async function proxy(cmd: ProxyCommand): Promise<number> {
  const log = pino({ level: cmd.logLevel, base: undefined });
  const { drainTimeoutMs } = resolveLimits(cmd.limits);
  const running = await startProxy({
    controllers: cmd.controllers,
    gateway: cmd.gateway,
    tokenFile: cmd.tokenFile,
    caFile: cmd.caFile,
    healthAddress: cmd.healthAddress,
    metricsAddress: cmd.metricsAddress,
    accessLog: cmd.accessLog,
    tracing: cmd.tracing,
    maxMetricSeries: cmd.maxMetricSeries,
    workers: cmd.workers,
    limits: cmd.limits,
    log,
  });
  shutDownOnSignal(running, log, cmd.shutdownDelayMs, drainTimeoutMs);
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  return -1;
}
