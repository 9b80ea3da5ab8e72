// `gatehouse proxy`: one Gateway's data plane as a process of its own, in
// a pod the controller provisioned. It gets its config from the
// controller's config service (config-client.ts) and serves it with the
// same data plane as standalone mode, in worker threads or on the main
// thread. Once a config is applied it is served until a newer one
// arrives: a controller restart, upgrade or outage changes nothing here.
// The controller's deltas go on to the data plane as they came (through
// delta-relay.ts): the main thread never holds the IR as objects.
// The probe endpoint (health.ts) is ready once the first config is
// applied, and not ready again once draining starts.
import type { Logger } from 'pino';
import type { ApplyResult } from '../dataplane/dataplane.ts';
import { resolveLimits, type RequestLimits } from '../dataplane/limits.ts';
import type { LogFn } from '../dataplane/log.ts';
import type { IRDelta } from '../ir/delta.ts';
import { WorkerPool } from '../control/worker-pool.ts';
import { localDataPlane, type DataPlaneHandle } from '../control/data-plane-handle.ts';
import { releaseMemory } from '../control/release-memory.ts';
import { persistCompileCache } from '../control/compile-cache.ts';
import { DeltaRelay } from './delta-relay.ts';
import { startConfigClient, type ConfigClient, type ConfigClientOptions, type ControllerAddress } from './config-client.ts';
import { startHealthServer } from './health.ts';
import { renderMetrics } from '../admin/metrics-text.ts';
import { ControlMetrics } from '../control/control-metrics.ts';
import type { AccessLogOptions } from '../dataplane/access-log.ts';
import { AccessLogWriter } from '../dataplane/access-log-writer.ts';
import type { TracingOptions } from '../dataplane/tracing.ts';

export interface ProxyOptions {
  /** The controller's config service: a Service name and port, or several `host:port`. */
  controllers: readonly ControllerAddress[];
  /** `namespace/name` of the Gateway served. */
  gateway: string;
  /** The projected ServiceAccount token, re-read at every connect. */
  tokenFile: string;
  /** The CA that signed the config service's certificate. */
  caFile: string;
  /** `host:port` of /healthz and /readyz. */
  healthAddress: string;
  /** `host:port` of /metrics; absent: not served. */
  metricsAddress?: string;
  /** Access logs; absent: off. */
  accessLog?: AccessLogOptions;
  /** Tracing (OTLP/HTTP export); absent: off. */
  tracing?: TracingOptions;
  /** Series each data-plane thread's metrics keep. */
  maxMetricSeries?: number;
  /** Data-plane worker threads; 0 serves from the main thread. */
  workers: number;
  /** Overrides of the data plane's limits. */
  limits?: Partial<RequestLimits>;
  log: Logger;
  /** Overrides of the config client's timings (tests). */
  client?: Pick<ConfigClientOptions, 'minBackoffMs' | 'maxBackoffMs' | 'connectTimeoutMs'>;
}

export interface Proxy {
  /** The health server's port (the one chosen, when the address asked for port 0). */
  readonly healthPort: number;
  /** The metrics server's port; 0 when none. */
  readonly metricsPort: number;
  /** Whether a config has been applied. */
  readonly configured: boolean;
  /** Shutdown, first step: /readyz answers 503 and answers ask clients to close; listeners keep accepting, configs keep coming. */
  startDraining(): void;
  /** Stops taking config, stops accepting, drains within the drain timeout, then closes the probe endpoint. */
  close(): Promise<void>;
}

/** Texts a compaction must have deflated to be worth a full collection (~100-200 ms of this thread at 5,000). */
const LARGE_COMPACTION_TEXTS = 500;

export async function startProxy(opts: ProxyOptions): Promise<Proxy> {
  const { log } = opts;
  const dpLog: LogFn = (level, msg, fields) => log[level](fields ?? {}, msg);
  // Checked here, once, so a bad value fails the start instead of every worker.
  const limits = resolveLimits(opts.limits);
  // As in standalone mode: workers cut their own connections at the drain
  // timeout; the pool stops a worker still there 5 s after it.
  const accessLog = opts.accessLog === undefined ? null : new AccessLogWriter(opts.accessLog);
  accessLog?.opened.then((error) => {
    if (error !== null) log.error({ target: opts.accessLog!.target }, `access log cannot be written: ${error}; its lines are counted as dropped`);
  });
  // A compaction of many texts (a snapshot's) leaves their strings dead in
  // the old generation, which an idle proxy would keep: given back as
  // after a snapshot. (5,000 routes: ~9 MiB.)
  const relay = new DeltaRelay({ compacted: (texts) => { if (texts >= LARGE_COMPACTION_TEXTS) releaseMemory(); } });
  // Fed the relay's deltas (DeltaRelay.take), whose full() a new or failed data plane gets.
  const dataPlane: DataPlaneHandle = opts.workers > 0
    ? new WorkerPool({
      workers: opts.workers, logLevel: log.level, log: dpLog, limits: opts.limits, drainTimeoutMs: limits.drainTimeoutMs + 5_000,
      maxMetricSeries: opts.maxMetricSeries, accessLog: accessLog ?? undefined, tracing: opts.tracing, source: relay,
    })
    : localDataPlane(new (await import('../dataplane/dataplane.ts')).DataPlane({
      log: dpLog, limits: opts.limits, maxMetricSeries: opts.maxMetricSeries, tracing: opts.tracing,
      accessLog: accessLog === null ? undefined : { options: accessLog.options, port: accessLog.connect() },
    }), relay, dpLog);

  let configured = false;
  let draining = false;
  let health: Awaited<ReturnType<typeof startHealthServer>>;
  try {
    health = await startHealthServer({
      address: opts.healthAddress,
      notReady: () => (draining ? 'draining' : configured ? null : 'no configuration received yet'),
    });
  } catch (err) {
    await dataPlane.close();
    throw new Error(`health address ${opts.healthAddress}: ${(err as Error).message}`);
  }
  // Configurations applied (no translate here: the controller's): generation, reloads, their duration.
  const controlMetrics = new ControlMetrics();
  let metricsServer: Awaited<ReturnType<typeof startHealthServer>> | null = null;
  if (opts.metricsAddress !== undefined) {
    try {
      metricsServer = await startHealthServer({
        address: opts.metricsAddress,
        metrics: () => dataPlane.metrics().then((snapshot) => renderMetrics(snapshot, controlMetrics)),
      });
    } catch (err) {
      await health.close();
      await dataPlane.close();
      throw new Error(`metrics address ${opts.metricsAddress}: ${(err as Error).message}`);
    }
  }

  const applyConfig = async (delta: IRDelta, info: { seq: number; snapshot: boolean }): Promise<void> => {
    const t0 = performance.now();
    const clusters = relay.clusters();
    let result: ApplyResult;
    try {
      result = await dataPlane.apply(delta, clusters);
    } catch (err) {
      controlMetrics.reloadFailed(false);
      throw err;
    }
    controlMetrics.reloaded(performance.now() - t0);
    for (const [key, err] of Object.entries(result.listenerErrors)) {
      const hint = /EACCES/.test(err) ? ' (a port below 1024 needs root, CAP_NET_BIND_SERVICE or net.ipv4.ip_unprivileged_port_start=0)' : '';
      log.error({ listener: key }, `cannot listen on ${key}: ${err}${hint}`);
    }
    // A snapshot (the first config, or one after a reconnect) was read
    // whole on this thread (one frame of megabytes, parsed; on the data
    // plane's thread with --workers 0, compiled): its garbage and the
    // young generation it grew are kept by an idle process until V8 next
    // needs a full collection (control/release-memory.ts). Freed before
    // the proxy reports ready, as serve does after its first load.
    // (5,000 routes, one worker: the main thread's young generation 64 ->
    // 1 MiB.)
    if (info.snapshot) releaseMemory();
    const first = !configured;
    configured = true;
    if (first) persistCompileCache();
    log.info({
      gateway: opts.gateway, seq: info.seq, snapshot: info.snapshot, listeners: delta.listeners.length,
      clusters: Object.keys(delta.clusters).length, ms: Math.round((performance.now() - t0) * 10) / 10,
    }, first ? 'configuration applied; ready' : 'configuration applied');
  };

  const client: ConfigClient = startConfigClient({
    controllers: opts.controllers,
    gateway: opts.gateway,
    tokenFile: opts.tokenFile,
    caFile: opts.caFile,
    relay,
    onConfig: applyConfig,
    log: dpLog,
    ...opts.client,
  });
  log.info({
    gateway: opts.gateway, controllers: opts.controllers.map((c) => `${c.host}:${c.port}`), health: opts.healthAddress, workers: opts.workers,
  }, 'gatehouse proxy started; waiting for configuration');

  return {
    healthPort: health.port,
    metricsPort: metricsServer?.port ?? 0,
    get configured() { return configured; },
    startDraining() {
      draining = true;
      dataPlane.beginDrain();
    },
    async close() {
      draining = true;
      client.close();
      relay.close();
      try {
        await dataPlane.close();
        await accessLog?.close();
      } finally {
        await metricsServer?.close();
        await health.close();
      }
    },
  };
}
