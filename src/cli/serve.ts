// gatehouse serve: standalone mode, until SIGINT/SIGTERM, then a graceful
// shutdown: /readyz turns 503 at once, listeners keep accepting for the
// shutdown delay (load balancers need a few probes to notice), then stop
// accepting; requests in flight finish within the drain timeout, the rest
// are cut; then the process exits 0. Each step is logged.
import pino from 'pino';
import { readAdminTokenFile } from '../admin/token.ts';
import { shutDownOnSignal } from '../control/shutdown.ts';
import { startStandalone } from '../control/standalone.ts';
import { resolveLimits, type RequestLimits } from '../dataplane/limits.ts';
import type { LoaderLimits } from '../providers/file/limits.ts';
import type { EndpointPolicyOptions } from '../net/endpoint-policy.ts';
import type { ObservabilitySettings } from './observability-flags.ts';

export interface ServeOptions extends ObservabilitySettings {
  configDir: string;
  adminAddress: string;
  /** File holding the admin API's bearer token; required when adminAddress is not loopback. */
  adminTokenFile: string | null;
  /** Host names the admin API answers to besides IP literals and localhost. */
  adminAllowedHosts: string[];
  addressPool: string | null;
  logLevel: string;
  /** Data-plane worker threads; 0 for the data plane on the main thread. */
  workers: number;
  /** Overrides of the data plane's limits, from the limit flags. */
  limits: Partial<RequestLimits>;
  /** Overrides of the file provider's limits, from the config-max flags. */
  loaderLimits: Partial<LoaderLimits>;
  /** Which backend endpoints are allowed beyond the standalone defaults. */
  endpoints: Partial<Pick<EndpointPolicyOptions, 'allowLoopback' | 'allowLinkLocal'>>;
  /** After SIGTERM/SIGINT, how long listeners keep accepting while /readyz answers 503. */
  shutdownDelayMs: number;
}

export { DEFAULT_SHUTDOWN_DELAY_MS } from '../control/shutdown.ts';

/** Returns -1: the process lives on until a signal ends it. */
export async function serve(opts: ServeOptions): Promise<number> {
  const log = pino({ level: opts.logLevel, base: undefined });
  const { drainTimeoutMs } = resolveLimits(opts.limits);
  const adminToken = opts.adminTokenFile === null ? undefined : readAdminTokenFile(opts.adminTokenFile);
  const gw = await startStandalone({
    configDir: opts.configDir, addressPool: opts.addressPool, log, workers: opts.workers, limits: opts.limits,
    loaderLimits: opts.loaderLimits, endpoints: opts.endpoints, accessLog: opts.accessLog, maxMetricSeries: opts.maxMetricSeries, tracing: opts.tracing,
    adminAddress: opts.adminAddress, adminToken, adminAllowedHosts: opts.adminAllowedHosts,
  });
  shutDownOnSignal(gw, log, opts.shutdownDelayMs, drainTimeoutMs);
  // One bad request or a bug in one code path must not take the gateway down silently.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  return -1;
}
