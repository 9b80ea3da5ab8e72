// gatehouse controller: Kubernetes mode's control plane (control/kubernetes.ts).
// Runs until SIGTERM/SIGINT: /readyz turns 503, the lease is given up so
// another replica leads at once, the proxies' streams end (they keep their
// config and reconnect to another replica), then the process exits.
import * as k8s from '@kubernetes/client-node';
import pino, { type Logger } from 'pino';
import { startController, type Controller } from '../control/kubernetes.ts';
import { shutDownOnSignal } from '../control/shutdown.ts';
import { controllerIdentity } from '../providers/kubernetes/leader-election.ts';
import { readAdminTokenFile } from '../admin/token.ts';
import type { ControllerCommand } from './controller-args.ts';

/** In-cluster config inside a pod, --kubeconfig when given, else the usual kubeconfig. */
export function loadKubeConfig(file: string | null): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (file !== null) kc.loadFromFile(file);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

/** The controller's drain: its parts stop within it; shutDownOnSignal exits anyway 10 s later. */
const STOP_GRACE_MS = 5_000;

/** Returns -1: the process lives on until a signal ends it. */
export async function controller(cmd: ControllerCommand): Promise<number> {
  const log: Logger = pino({ level: cmd.logLevel, base: undefined });
  const adminToken = cmd.adminTokenFile === null ? undefined : readAdminTokenFile(cmd.adminTokenFile);
  const lease = cmd.leaseDurationMs;
  const running: Controller = await startController({
    kubeConfig: loadKubeConfig(cmd.kubeconfig),
    log,
    namespaces: cmd.namespaces,
    namespaceSelector: cmd.namespaceSelector,
    adminAddress: cmd.adminAddress,
    adminToken,
    healthAddress: cmd.healthAddress,
    configAddress: cmd.configAddress,
    proxyControllerAddress: cmd.proxyControllerAddress,
    controllerNamespace: cmd.controllerNamespace,
    configServiceName: cmd.configServiceName,
    configSecretName: cmd.configSecretName,
    configCertificateIPs: cmd.configCertificateIPs,
    proxyImage: cmd.proxyImage,
    leaseName: cmd.leaseName,
    identity: controllerIdentity(),
    // client-go's ratios: renew deadline 2/3 of the lease, retry 2/15.
    leaseDurationMs: lease,
    renewDeadlineMs: Math.round(lease * 2 / 3),
    retryPeriodMs: Math.round(lease * 2 / 15),
  });
  // No delay: the controller serves no client traffic, and giving up the
  // lease at once lets another replica lead without waiting for it to expire.
  // Its close() ends streams and watches; STOP_GRACE_MS bounds it (the last
  // resort exits 10 s after that).
  shutDownOnSignal(running, log, 0, STOP_GRACE_MS);
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  return -1;
}
