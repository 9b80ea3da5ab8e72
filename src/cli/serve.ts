// gatehouse serve: standalone mode, until SIGINT/SIGTERM, then a graceful
// shutdown: /readyz turns 503 at once, listeners keep accepting for the
// shutdown delay (load balancers need a few probes to notice), then stop
// accepting; requests in flight finish within the drain timeout, the rest
// are cut; then the process exits 0. Each step is logged.
import pino, { type Logger } from 'pino';
import { readAdminTokenFile } from '../admin/token.ts';
import { startStandalone, type Standalone } from '../control/standalone.ts';
import { resolveLimits, type RequestLimits } from '../dataplane/limits.ts';
import type { LoaderLimits } from '../providers/file/limits.ts';
import type { EndpointPolicyOptions } from '../net/endpoint-policy.ts';

export interface ServeOptions {
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

/** Default shutdown delay: a load balancer probing every 1-2 s and acting on two failures notices within it. */
export const DEFAULT_SHUTDOWN_DELAY_MS = 5_000;

/**
 * A second signal this soon after the first is the same request delivered
 * twice, not impatience: Ctrl-C in a terminal signals the whole process
 * group, and a parent such as npm forwards the signal as well.
 */
const REPEATED_SIGNAL_MS = 1_000;

/**
 * The last resort, beyond the shutdown delay and the drain timeout: the
 * worker pool stops a worker that has not exited 5 s after the drain
 * timeout, and upstream pools get up to a second after it.
 */
const LAST_RESORT_MARGIN_MS = 10_000;

/** Returns -1: the process lives on until a signal ends it. */
export async function serve(opts: ServeOptions): Promise<number> {
  const log = pino({ level: opts.logLevel, base: undefined });
  const { drainTimeoutMs } = resolveLimits(opts.limits);
  const adminToken = opts.adminTokenFile === null ? undefined : readAdminTokenFile(opts.adminTokenFile);
  const gw = await startStandalone({
    configDir: opts.configDir, addressPool: opts.addressPool, log, workers: opts.workers, limits: opts.limits,
    loaderLimits: opts.loaderLimits, endpoints: opts.endpoints,
    adminAddress: opts.adminAddress, adminToken, adminAllowedHosts: opts.adminAllowedHosts,
  });
  shutDownOnSignal(gw, log, opts.shutdownDelayMs, drainTimeoutMs);
  // One bad request or a bug in one code path must not take the gateway down silently.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  return -1;
}

function shutDownOnSignal(gw: Standalone, log: Logger, shutdownDelayMs: number, drainTimeoutMs: number): void {
  let firstSignalAt: number | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== null) {
      if (Date.now() - firstSignalAt < REPEATED_SIGNAL_MS) {
        log.info({ signal }, 'shutdown: signal repeated at once, taken as the same request');
        return;
      }
      log.error({ signal }, 'shutdown: second signal, exiting now; connections still open are cut');
      process.exit(1);
    }
    firstSignalAt = Date.now();
    log.info({ signal, shutdownDelayMs, drainTimeoutMs }, 'shutdown: draining started; /readyz answers 503, listeners keep accepting for the shutdown delay');
    gw.startDraining();

    const lastResortMs = shutdownDelayMs + drainTimeoutMs + LAST_RESORT_MARGIN_MS;
    setTimeout(() => {
      log.error({ waitedMs: lastResortMs }, 'shutdown: not finished within the shutdown delay, the drain timeout and a margin; exiting now');
      process.exit(1);
    }, lastResortMs).unref();

    setTimeout(() => {
      log.info({ drainTimeoutMs }, 'shutdown: delay over; accepting stops, requests in flight have the drain timeout to finish');
      gw.close().then(() => {
        log.info('shutdown: complete; exiting');
        process.exit(0);
      }, (err: unknown) => {
        log.error({ err }, 'shutdown: closing failed; exiting');
        process.exit(1);
      });
    }, shutdownDelayMs);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
