// Graceful shutdown on SIGTERM/SIGINT, shared by `gatehouse serve` and
// `gatehouse proxy`: /readyz turns 503 at once and listeners keep
// accepting for the shutdown delay (load balancers and kubelets need a few
// probes to notice), then accepting stops; requests in flight finish
// within the drain timeout, the rest are cut; then the process exits 0.
// Each step is logged.
import type { Logger } from 'pino';

/** What shuts down: a standalone gateway, a proxy. */
export interface Drainable {
  /** First step: /readyz answers 503, answers ask clients to close; listeners keep accepting. */
  startDraining(): void;
  /** Stops accepting, drains within the drain timeout, closes the rest. */
  close(): Promise<void>;
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

export function shutDownOnSignal(target: Drainable, log: Logger, shutdownDelayMs: number, drainTimeoutMs: number): void {
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
    target.startDraining();

    const lastResortMs = shutdownDelayMs + drainTimeoutMs + LAST_RESORT_MARGIN_MS;
    setTimeout(() => {
      log.error({ waitedMs: lastResortMs }, 'shutdown: not finished within the shutdown delay, the drain timeout and a margin; exiting now');
      process.exit(1);
    }, lastResortMs).unref();

    setTimeout(() => {
      log.info({ drainTimeoutMs }, 'shutdown: delay over; accepting stops, requests in flight have the drain timeout to finish');
      target.close().then(() => {
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
