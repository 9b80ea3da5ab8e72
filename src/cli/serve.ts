// gatehouse serve: standalone mode, until SIGINT/SIGTERM.
import pino from 'pino';
import { startStandalone } from '../control/standalone.ts';
import type { RequestLimits } from '../dataplane/limits.ts';

export interface ServeOptions {
  configDir: string;
  adminAddress: string;
  addressPool: string | null;
  logLevel: string;
  /** Data-plane worker threads; 0 for the data plane on the main thread. */
  workers: number;
  /** Overrides of the data plane's limits, from the limit flags. */
  limits: Partial<RequestLimits>;
}

/** Returns -1: the process lives on until a signal ends it. */
export async function serve(opts: ServeOptions): Promise<number> {
  const log = pino({ level: opts.logLevel, base: undefined });
  const gw = await startStandalone({ configDir: opts.configDir, adminAddress: opts.adminAddress, addressPool: opts.addressPool, log, workers: opts.workers, limits: opts.limits });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: draining connections');
    const force = setTimeout(() => process.exit(0), 10_000);
    force.unref();
    gw.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // One bad request or a bug in one code path must not take the gateway down silently.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  return -1;
}
