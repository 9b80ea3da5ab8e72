// Standalone mode: the file provider feeds the control loop, whose
// translate() status is served on the admin API and whose IR drives the
// in-process data plane (the main thread, or worker threads) as deltas
// from the IR before, encoded here.
import type { LogFn } from '../dataplane/log.ts';
import os from 'node:os';
import type { Logger } from 'pino';
import { buildSnapshot } from '../api/build-snapshot.ts';
import { newTranslateMemo, translate } from '../translate/index.ts';
import { parsePool, type AddressPool } from '../translate/addresses.ts';
import { StatusStore } from './status-store.ts';
import { markUnboundListeners } from './bind-status.ts';
import { WorkerPool } from './worker-pool.ts';
import { localDataPlane, type DataPlaneHandle } from './data-plane-handle.ts';
import { IRDeltaEncoder } from '../ir/delta.ts';
import { releaseMemory } from './release-memory.ts';
import { persistCompileCache } from './compile-cache.ts';
import { startAdminServer } from '../admin/server.ts';
import type { IR } from '../ir/types.ts';
import { resolveLimits, type RequestLimits } from '../dataplane/limits.ts';
import type { LoaderLimits } from '../providers/file/limits.ts';
import { FileProvider } from '../providers/file/provider.ts';
import { STANDALONE_ENDPOINT_DEFAULTS, type EndpointPolicyOptions } from '../net/endpoint-policy.ts';
import type { LastGoodCertificates } from '../translate/certificates.ts';
import { listenerReferenceProblems } from './status-problems.ts';
import { watchPortSharing } from './port-sharing-watch.ts';
import { startControlLoop, type ControlLoop, type Problem, type ProviderRead } from './loop.ts';
import type { ExplainInput } from '../explain/explain.ts';
import { overview } from '../explain/overview.ts';
import { parseExplainRequest } from '../explain/request.ts';
import { ControlMetrics } from './control-metrics.ts';
import { renderMetrics } from '../admin/metrics-text.ts';
import type { AccessLogOptions } from '../dataplane/access-log.ts';
import { AccessLogWriter } from '../dataplane/access-log-writer.ts';
import type { TracingOptions } from '../dataplane/tracing.ts';
import { STATUS_CLASSES, type MetricsSnapshot } from '../dataplane/metrics.ts';

export const CONTROLLER_NAME = 'gatehouse.dev/gateway-controller';

export interface StandaloneOptions {
  configDir: string;
  adminAddress: string;
  addressPool: string | null;
  log: Logger;
  /**
   * Data-plane worker threads, each serving every listener; 0 (the
   * default) runs the data plane on the main thread.
   */
  workers?: number;
  /** Overrides of the data plane's limits (src/dataplane/limits.ts). */
  limits?: Partial<RequestLimits>;
  /** Bearer token for the admin API; required when adminAddress is not loopback. */
  adminToken?: string;
  /** Host names the admin API answers to besides IP literals and localhost. */
  adminAllowedHosts?: string[];
  /** Overrides of the file provider's limits (src/providers/file/limits.ts). */
  loaderLimits?: Partial<LoaderLimits>;
  /**
   * Which backend endpoints are allowed beyond the standalone defaults
   * (loopback allowed, link-local refused; src/net/endpoint-policy.ts).
   */
  endpoints?: Partial<Pick<EndpointPolicyOptions, 'allowLoopback' | 'allowLinkLocal'>>;
  /** Access logs; absent: off. */
  accessLog?: AccessLogOptions;
  /** Tracing (OTLP/HTTP export); absent: off. */
  tracing?: TracingOptions;
  /** Series each data-plane thread's metrics keep (src/dataplane/metrics.ts). */
  maxMetricSeries?: number;
}

export interface Standalone {
  /**
   * Shutdown, first step: /readyz answers 503 so load balancers stop
   * sending new connections, config changes are no longer applied, and
   * answers ask clients to close their connections; listeners keep
   * accepting. Then close().
   */
  startDraining(): void;
  /**
   * Stops accepting, lets requests in flight finish up to the drain
   * timeout (cutting the rest), then closes the admin API, which answers
   * until then.
   */
  close(): Promise<void>;
  /** Resolves after the reload that follows the next change has been applied (for tests). */
  reloadNow(): Promise<void>;
  adminPort: number;
}

export async function startStandalone(opts: StandaloneOptions): Promise<Standalone> {
  const { log } = opts;
  const addressPool: AddressPool | null = opts.addressPool ? parsePool(opts.addressPool) : null;
  const hostAddress = firstHostAddress();
  const store = new StatusStore();
  const memo = newTranslateMemo();
  const dpLog: LogFn = (level, msg, fields) => log[level](fields ?? {}, msg);
  const workers = opts.workers ?? 0;
  // Checked here, once, so a bad value fails the start instead of every worker.
  const limits = resolveLimits(opts.limits);
  // Workers cut their own connections at the drain timeout; the pool stops
  // a worker that has still not exited 5 s after that.
  const accessLog = opts.accessLog === undefined ? null : new AccessLogWriter(opts.accessLog);
  accessLog?.opened.then((error) => {
    if (error !== null) log.error({ target: opts.accessLog!.target }, `access log cannot be written: ${error}; its lines are counted as dropped`);
  });
  // Every config's delta from the one before, made here for whichever data
  // plane runs; one that starts later, or refused a delta, gets full().
  const encoder = new IRDeltaEncoder();
  const pool = workers > 0
    ? new WorkerPool({
      workers, logLevel: log.level, log: dpLog, limits: opts.limits, drainTimeoutMs: limits.drainTimeoutMs + 5_000,
      maxMetricSeries: opts.maxMetricSeries, accessLog: accessLog ?? undefined, tracing: opts.tracing, source: encoder,
    })
    : null;
  // The data plane's modules load only where it runs: in the workers, or here.
  const dataPlane: DataPlaneHandle = pool ?? localDataPlane(new (await import('../dataplane/dataplane.ts')).DataPlane({
    log: dpLog, limits: opts.limits, maxMetricSeries: opts.maxMetricSeries, tracing: opts.tracing,
    accessLog: accessLog === null ? undefined : { options: accessLog.options, port: accessLog.connect() },
  }), encoder, dpLog);
  const controlMetrics = new ControlMetrics();

  const provider = new FileProvider(opts.configDir, opts.loaderLimits);
  let lastGoodCertificates: LastGoodCertificates = {};
  let problems: Problem[] = [];
  let currentIR: IR | null = null;
  /** What explain and the admin page read: the last config applied, with its objects and statuses. */
  let explainInput: ExplainInput | null = null;
  let assigned: Record<string, string> = {};
  let ready = false;
  let draining = false;
  const portSharing = watchPortSharing(log);

  // The admin API starts first: translate must know its port (a backend
  // endpoint there is refused), and /readyz answers 503 until the first load.
  let admin: Awaited<ReturnType<typeof startAdminServer>>;
  try {
    admin = await startAdminServer({
      address: opts.adminAddress,
      resources: () => store.resources(),
      errors: () => problems,
      config: () => currentIR,
      ready: () => ready,
      draining: () => draining,
      explain: async (text, o) => {
        const req = parseExplainRequest(text, o);
        if (typeof req === 'string') return req;
        if (explainInput === null) return 'no configuration loaded yet';
        const input = explainInput;
        // Loaded on first use: explain runs the data plane's matchers, whose modules otherwise load only where the data plane runs.
        const { explain } = await import('../explain/explain.ts');
        return explain(input, req);
      },
      overview: async () => {
        if (explainInput === null) return { gateways: [] };
        const input = explainInput;
        return overview(input, requestCounter(await dataPlane.metrics()));
      },
      workers: pool === null ? undefined : () => pool.stats().then((stats) => stats.map((s) => ({ ...s, current: s.appliedSeq === pool.currentSeq }))),
      metrics: () => dataPlane.metrics().then((snapshot) => renderMetrics(snapshot, controlMetrics)),
      token: opts.adminToken,
      allowedHosts: opts.adminAllowedHosts,
      log: dpLog,
    });
  } catch (err) {
    // Without its admin API the gateway does not start: stop what did.
    portSharing.stop();
    await dataPlane.close();
    await accessLog?.close();
    throw err;
  }
  const adminSocket = { address: admin.address, port: admin.port };
  const localAddresses = Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
  const endpoints: EndpointPolicyOptions = { ...STANDALONE_ENDPOINT_DEFAULTS, ...opts.endpoints, admin: adminSocket, localAddresses };

  let readMs = 0;
  function cycle(read: ProviderRead): Promise<void> {
    return controlMetrics.counted((translated) => cycleOnce(read, translated));
  }

  async function cycleOnce(read: ProviderRead, onTranslated: () => void): Promise<void> {
    const t1 = performance.now();
    const objects = read.objects.map((o) => o.object);
    const snap = buildSnapshot(objects);
    const result = translate(snap, {
      controllerName: CONTROLLER_NAME,
      addressing: { pool: addressPool, hostAddress, previous: assigned },
      endpoints,
      lastGoodCertificates,
      memo,
    });
    onTranslated();
    assigned = result.assignedAddresses;
    lastGoodCertificates = result.lastGoodCertificates;
    const found = [...read.problems, ...listenerReferenceProblems(read.objects, result.statuses)];
    for (const p of found) {
      if (problems.some((x) => x.message === p.message)) continue;
      if (p.severity === 'warning') log.warn({ file: p.file, object: p.object }, p.message);
      else log.error({ file: p.file, object: p.object }, p.message);
    }
    problems = found;
    const t2 = performance.now();
    // Handed on as soon as it is made: the encoder's deltas reach the data plane in order.
    const applied = await dataPlane.apply(encoder.encode(result.ir), result.ir.clusters);
    const t3 = performance.now();
    markUnboundListeners(result.ir, result.statuses, applied.listenerErrors);
    for (const [key, err] of Object.entries(applied.listenerErrors)) log.error({ listener: key }, `cannot listen on ${key}: ${err}`);
    store.update(objects, result.statuses);
    currentIR = result.ir;
    explainInput = { ir: result.ir, statuses: result.statuses, gateways: snap.gateways, routes: [...snap.httpRoutes, ...snap.grpcRoutes] };
    portSharing.check(result.ir.listeners);
    const t4 = performance.now();
    controlMetrics.reloaded(readMs + t4 - t1, t2 - t1);
    log.info({
      objects: objects.length, listeners: result.ir.listeners.length, errors: problems.filter((p) => p.severity !== 'warning').length,
      ms: { load: readMs, translate: ms(t2 - t1), apply: ms(t3 - t2), status: ms(t4 - t3), total: ms(readMs + t4 - t1) },
    }, 'configuration applied');
  }

  const loop: ControlLoop = await startControlLoop({
    read() {
      const t0 = performance.now();
      const read = provider.read();
      readMs = ms(performance.now() - t0);
      return read;
    },
    watch: (onChange) => provider.watch(onChange),
  }, cycle, log);
  // The first load parsed and translated every file; its garbage goes
  // before the gateway reports ready, so that no change meets the pause.
  releaseMemory();
  persistCompileCache();
  ready = true;
  log.info({
    admin: opts.adminAddress, adminLoopback: admin.loopback, adminToken: opts.adminToken !== undefined,
    workers, configDir: opts.configDir, addressPool: opts.addressPool,
  }, 'gatehouse standalone started');

  return {
    adminPort: admin.port,
    reloadNow() {
      provider.rereadAll();
      return loop.runNow();
    },
    startDraining() {
      draining = true;
      loop.stop();
      portSharing.stop();
      dataPlane.beginDrain();
    },
    async close() {
      draining = true;
      loop.stop();
      portSharing.stop();
      try {
        await dataPlane.close();
        await accessLog?.close();
      } finally {
        await admin.close();
      }
    },
  };
}

function ms(v: number): number {
  return Math.round(v * 10) / 10;
}

/** The address a Gateway reports when it listens on all interfaces. */
function firstHostAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/**
 * Requests by (Gateway, route, listener) from the data plane's request
 * series (labels: gateway, listener, route, rule, backend; the first six
 * values are the status classes), for the page's overview.
 */
function requestCounter(snapshot: MetricsSnapshot): (gateway: string, route: string, listener: string | null) => number {
  const byListener = new Map<string, number>();
  const byRoute = new Map<string, number>();
  for (const s of snapshot.requests) {
    const [gateway, listener, route] = s.labels;
    let n = 0;
    for (let i = 0; i < STATUS_CLASSES.length; i++) n += s.values[i];
    const routeKey = `${gateway}\u0000${route}`;
    byRoute.set(routeKey, (byRoute.get(routeKey) ?? 0) + n);
    const listenerKey = `${routeKey}\u0000${listener}`;
    byListener.set(listenerKey, (byListener.get(listenerKey) ?? 0) + n);
  }
  return (gateway, route, listener) => (listener === null
    ? byRoute.get(`${gateway}\u0000${route}`) ?? 0
    : byListener.get(`${gateway}\u0000${route}\u0000${listener}`) ?? 0);
}
