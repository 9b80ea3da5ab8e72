// Kubernetes mode: the Kubernetes provider feeds the same control loop and
// translate() as standalone. What it does with the result differs:
//
// - every replica serves each Gateway's IR to that Gateway's proxies
//   through the config service (so proxies keep getting config from any
//   replica), and holds the status on its admin API;
// - only the leader (a Lease) writes status to the API server and
//   provisions the proxies (Deployment, Service, ...) of each Gateway.
//
// A replica that becomes leader writes everything once (its writer and
// provisioner start from nothing and compare with what the cluster holds).
import type { LogFn } from '../dataplane/log.ts';
import os from 'node:os';
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { buildSnapshot } from '../api/build-snapshot.ts';
import { startAdminServer } from '../admin/server.ts';
import { renderMetrics } from '../admin/metrics-text.ts';
import { emptySnapshot } from '../dataplane/metrics.ts';
import { ControlMetrics } from './control-metrics.ts';
import type { IR } from '../ir/types.ts';
import { irForGateway } from '../ir/per-gateway.ts';
import { KUBERNETES_ENDPOINT_DEFAULTS } from '../net/endpoint-policy.ts';
import { startHealthServer } from '../proxy/health.ts';
import { ensureConfigServiceCertificate } from '../providers/kubernetes/config-certificate.ts';
import { startConfigService } from '../providers/kubernetes/config-service.ts';
import { startLeaderElection } from '../providers/kubernetes/leader-election.ts';
import { KubernetesProvider } from '../providers/kubernetes/provider.ts';
import { Provisioner } from '../providers/kubernetes/provision/apply.ts';
import { planInfrastructure, type Plan } from '../providers/kubernetes/provision/plan.ts';
import { StatusWriter } from '../providers/kubernetes/status-writer.ts';
import { tokenReviewAuthenticator } from '../providers/kubernetes/token-review.ts';
import { newTranslateMemo, translate } from '../translate/index.ts';
import type { LastGoodCertificates } from '../translate/certificates.ts';
import { KUBERNETES_FEATURES } from '../translate/gatewayclass.ts';
import { startControlLoop, type ControlLoop, type Problem, type ProviderRead } from './loop.ts';
import { releaseMemory } from './release-memory.ts';
import { CONTROLLER_NAME } from './standalone.ts';
import { listenerReferenceProblems } from './status-problems.ts';
import { StatusStore } from './status-store.ts';

export interface ControllerOptions {
  kubeConfig: k8s.KubeConfig;
  log: Logger;
  /** Watch only these namespaces (namespaced kinds); default all. */
  namespaces?: string[];
  /** Only namespaces whose labels match this selector; default all. */
  namespaceSelector?: string;
  /** The full admin API (status, errors, redacted config); loopback unless a token is given. */
  adminAddress: string;
  adminToken?: string;
  /** /healthz and /readyz only, for the kubelet: safe on every interface. */
  healthAddress: string;
  /** The config service the proxies connect to; port 0 picks one. */
  configAddress: string;
  /** Where the controller runs: its Lease, its config certificate Secret, its Service. */
  controllerNamespace: string;
  /** The Service proxies reach the config service by (also a name in the serving certificate). */
  configServiceName: string;
  /** The Secret holding the config service's CA and certificate. */
  configSecretName: string;
  /**
   * `host:port` the proxies dial, as written in their Deployments;
   * default `<configServiceName>:<config port>` (qualified with the
   * controller's namespace by the renderer).
   */
  proxyControllerAddress?: string;
  /** IP addresses the config certificate must also hold (tests dial 127.0.0.1). */
  configCertificateIPs?: string[];
  /** The proxy image when parameters name none. */
  proxyImage: string;
  leaseName: string;
  /** This replica's Lease holder identity (controllerIdentity()). */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface Controller {
  adminPort: number;
  healthPort: number;
  configPort: number;
  isLeader(): boolean;
  /** Runs a cycle now (or after the one running); resolves when done. */
  reconcileNow(): Promise<void>;
  /** /readyz answers 503; nothing else changes until close(). */
  startDraining(): void;
  /** Gives up the lease (so another replica takes over at once), ends the proxies' streams, stops. */
  close(): Promise<void>;
}

export async function startController(opts: ControllerOptions): Promise<Controller> {
  const { log } = opts;
  const dpLog: LogFn = (level, msg, fields) => log[level](fields ?? {}, msg);
  const closers: (() => Promise<void> | void)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) {
      try { await close(); } catch (err) { log.warn({ err }, 'shutdown: a part failed to stop'); }
    }
    closers.length = 0;
  };

  const store = new StatusStore();
  const memo = newTranslateMemo();
  let problems: Problem[] = [];
  let currentIR: IR | null = null;
  let plan: Plan | null = null;
  let lastGoodCertificates: LastGoodCertificates = {};
  let ready = false;
  let draining = false;

  try {
    const certificate = await ensureConfigServiceCertificate({
      kubeConfig: opts.kubeConfig,
      namespace: opts.controllerNamespace,
      secretName: opts.configSecretName,
      serviceName: opts.configServiceName,
      ipAddresses: opts.configCertificateIPs,
      log: dpLog,
    });

    const provider = await KubernetesProvider.start({
      kubeConfig: opts.kubeConfig, log, namespaces: opts.namespaces, namespaceSelector: opts.namespaceSelector,
    });
    closers.push(() => provider.close());

    const config = await startConfigService({
      address: opts.configAddress,
      tls: { cert: certificate.cert, key: certificate.key },
      authenticate: tokenReviewAuthenticator({
        kubeConfig: opts.kubeConfig,
        serviceAccountFor: (gw) => plan?.serviceAccounts.get(`${gw.namespace}/${gw.name}`) ?? null,
      }),
      irFor: (gateway) => (currentIR === null || !plan?.wanted.has(gateway) ? null : irForGateway(currentIR, gateway)),
      log: dpLog,
    });
    closers.push(() => config.close());
    const proxyControllerAddress = opts.proxyControllerAddress ?? `${opts.configServiceName}:${config.port}`;

    const controlMetrics = new ControlMetrics();
    const admin = await startAdminServer({
      address: opts.adminAddress,
      // The controller carries no traffic: its control plane's counters only.
      metrics: () => Promise.resolve(renderMetrics(emptySnapshot(), controlMetrics)),
      resources: () => store.resources(),
      errors: () => problems,
      config: () => currentIR,
      ready: () => ready,
      draining: () => draining,
      token: opts.adminToken,
      log: dpLog,
    });
    closers.push(() => admin.close());

    const health = await startHealthServer({
      address: opts.healthAddress,
      notReady: () => (draining ? 'draining' : ready ? null : 'not synced yet'),
    });
    closers.push(() => health.close());

    let leading = false;
    // Asked before every write: a replica that loses its lease halfway through a publish stops at once.
    const writer = new StatusWriter({ kubeConfig: opts.kubeConfig, controllerName: CONTROLLER_NAME, log, mayWrite: () => leading });
    const provisioner = new Provisioner({ kubeConfig: opts.kubeConfig, log });
    let loop: ControlLoop | null = null;
    let retryTimer: NodeJS.Timeout | null = null;

    function cycle(read: ProviderRead): Promise<void> {
      return controlMetrics.counted((translated) => cycleOnce(read, translated));
    }

    async function cycleOnce(read: ProviderRead, onTranslated: () => void): Promise<void> {
      const t0 = performance.now();
      const objects = read.objects.map((o) => o.object);
      const snapshot = buildSnapshot(objects);
      plan = planInfrastructure({
        snapshot,
        controllerName: CONTROLLER_NAME,
        parameters: provider.extra('GatewayParameters'),
        deployments: provider.extra('Deployment'),
        controllerAddress: proxyControllerAddress,
        controllerNamespace: opts.controllerNamespace,
        caBundle: certificate.caCert,
        defaultImage: opts.proxyImage,
      });
      for (const e of plan.renderErrors) log.error({ gateway: e.gateway }, `cannot provision: ${e.message}`);
      const result = translate(snapshot, {
        controllerName: CONTROLLER_NAME,
        addressing: { pool: null, hostAddress: '', previous: {}, provisioned: plan.provisioned },
        endpoints: { ...KUBERNETES_ENDPOINT_DEFAULTS },
        parameters: plan.judge,
        features: KUBERNETES_FEATURES,
        lastGoodCertificates,
        memo,
      });
      onTranslated();
      const translateMs = performance.now() - t0;
      lastGoodCertificates = result.lastGoodCertificates;
      currentIR = result.ir;
      config.publish();
      const found = [...read.problems, ...listenerReferenceProblems(read.objects, result.statuses)];
      for (const p of found) {
        if (problems.some((x) => x.message === p.message)) continue;
        if (p.severity === 'warning') log.warn({ object: p.object }, p.message);
        else log.error({ object: p.object }, p.message);
      }
      problems = found;
      store.update(objects, result.statuses);
      const t1 = performance.now();
      let writes = { written: 0, failed: 0 };
      if (leading) {
        writes = await writer.publish(result.statuses, objects);
        controlMetrics.statusWritesSucceeded += writes.written;
        controlMetrics.statusWritesFailed += writes.failed;
        const provisionRetryMs = await provisioner.sync(plan.wanted, plan.present);
        // The writer gives up on an object after its tries, the provisioner
        // backs off a failed Gateway: a later cycle tries again.
        const retryMs = Math.min(writes.failed > 0 ? STATUS_RETRY_MS : Infinity, provisionRetryMs ?? Infinity);
        if (retryMs !== Infinity && retryTimer === null) {
          retryTimer = setTimeout(() => { retryTimer = null; void loop?.runNow(); }, Math.max(retryMs, 100));
          retryTimer.unref();
        }
      }
      controlMetrics.reloaded(performance.now() - t0, translateMs);
      log.info({
        objects: objects.length, gateways: plan.wanted.size, errors: problems.filter((p) => p.severity !== 'warning').length, leader: leading,
        statusWrites: writes.written, statusWritesFailed: writes.failed,
        ms: { translate: ms(t1 - t0), write: ms(performance.now() - t1) },
      }, 'configuration translated');
    }

    const election = startLeaderElection({
      kubeConfig: opts.kubeConfig,
      namespace: opts.controllerNamespace,
      name: opts.leaseName,
      identity: opts.identity,
      log,
      leaseDurationMs: opts.leaseDurationMs,
      renewDeadlineMs: opts.renewDeadlineMs,
      retryPeriodMs: opts.retryPeriodMs,
      onStartedLeading() {
        leading = true;
        provisioner.reset();
        log.info({ identity: opts.identity }, 'became leader: writing status and provisioning');
        void loop?.runNow();
      },
      onStoppedLeading() {
        leading = false;
        log.warn({ identity: opts.identity }, 'no longer leader: status writes and provisioning stop');
      },
    });
    closers.push(() => election.stop());

    loop = await startControlLoop(provider, cycle, log);
    closers.push(() => { loop?.stop(); if (retryTimer !== null) clearTimeout(retryTimer); });
    // The first cycle read every object: its garbage goes before /readyz says ready.
    releaseMemory();
    ready = true;
    log.info({
      identity: opts.identity, admin: `${admin.address}:${admin.port}`, health: health.port, config: config.port,
      namespaces: opts.namespaces ?? 'all', namespaceSelector: opts.namespaceSelector, host: os.hostname(),
    }, 'gatehouse controller started');

    return {
      adminPort: admin.port,
      healthPort: health.port,
      configPort: config.port,
      isLeader: () => leading,
      reconcileNow: () => loop!.runNow(),
      startDraining() {
        draining = true;
      },
      async close() {
        draining = true;
        leading = false;
        await closeAll();
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** How soon a cycle whose status writes failed runs again. */
const STATUS_RETRY_MS = 5_000;

function ms(v: number): number {
  return Math.round(v * 10) / 10;
}
