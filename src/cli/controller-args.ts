// gatehouse controller's flags: kept apart from the command so that
// `gatehouse --help` and the other commands do not load the Kubernetes client.
import { parseArgs } from 'node:util';
import { parseDuration } from '../api/durations.ts';

export const CONTROLLER_DEFAULTS = {
  adminAddress: '127.0.0.1:9901',
  healthAddress: '0.0.0.0:8081',
  configAddress: '0.0.0.0:18000',
  controllerNamespace: 'gatehouse-system',
  configServiceName: 'gatehouse',
  configSecretName: 'gatehouse-config-tls',
  leaseName: 'gatehouse-controller',
  proxyImage: 'ghcr.io/gatehouse-dev/gatehouse:0.1.0',
} as const;

export const CONTROLLER_USAGE = `gatehouse controller [--kubeconfig FILE] [--namespaces A,B | --namespace-selector SEL] [options]
  --kubeconfig FILE          kubeconfig to use; default: in-cluster config, else $KUBECONFIG or ~/.kube/config
  --namespaces A,B           watch only these namespaces (GatewayClasses and Namespaces stay cluster-wide)
  --namespace-selector SEL   watch only namespaces whose labels match SEL (e.g. gatehouse.dev/watch=true)
  --admin-address ADDR       admin API (status, errors, redacted config); default ${CONTROLLER_DEFAULTS.adminAddress};
                             an address that is not loopback needs --admin-token-file
  --admin-token-file FILE    the admin API's bearer token, as for serve
  --health-address ADDR      /healthz and /readyz only, for the kubelet; default ${CONTROLLER_DEFAULTS.healthAddress}
  --config-address ADDR      the config service proxies connect to (HTTP/2, TLS); default ${CONTROLLER_DEFAULTS.configAddress}
  --proxy-controller-address HOST:PORT
                             where proxies reach the config service; default <config-service-name>:<config port>
  --controller-namespace NS  where the controller's Lease, Service and config Secret are;
                             default $POD_NAMESPACE, else ${CONTROLLER_DEFAULTS.controllerNamespace}
  --config-service-name NAME the controller's Service; default ${CONTROLLER_DEFAULTS.configServiceName}
  --config-secret-name NAME  the Secret holding the config service's CA and certificate; default ${CONTROLLER_DEFAULTS.configSecretName}
  --config-certificate-ip IP an IP address the config certificate also holds (repeatable)
  --proxy-image IMAGE        the proxies' image when GatewayParameters name none; default $GATEHOUSE_PROXY_IMAGE,
                             else ${CONTROLLER_DEFAULTS.proxyImage}
  --lease-name NAME          the coordination.k8s.io Lease the replicas elect a leader with; default ${CONTROLLER_DEFAULTS.leaseName}
  --lease-duration DUR       how long a leader's lease holds without renewal; default 15s (renewal deadline 2/3, retry 2/15 of it)
  --log-level LEVEL          trace, debug, info, warn, error; default info`;

export interface ControllerCommand {
  kubeconfig: string | null;
  namespaces?: string[];
  namespaceSelector?: string;
  adminAddress: string;
  adminTokenFile: string | null;
  healthAddress: string;
  configAddress: string;
  proxyControllerAddress?: string;
  controllerNamespace: string;
  configServiceName: string;
  configSecretName: string;
  configCertificateIPs: string[];
  proxyImage: string;
  leaseName: string;
  leaseDurationMs: number;
  logLevel: string;
}

const ADDRESS = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** The controller's flags, or a string saying which is wrong. */
export function parseControllerArgs(args: string[], env: NodeJS.ProcessEnv = process.env): ControllerCommand | string {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        kubeconfig: { type: 'string' },
        namespaces: { type: 'string' },
        'namespace-selector': { type: 'string' },
        'admin-address': { type: 'string', default: CONTROLLER_DEFAULTS.adminAddress },
        'admin-token-file': { type: 'string' },
        'health-address': { type: 'string', default: CONTROLLER_DEFAULTS.healthAddress },
        'config-address': { type: 'string', default: CONTROLLER_DEFAULTS.configAddress },
        'proxy-controller-address': { type: 'string' },
        'controller-namespace': { type: 'string' },
        'config-service-name': { type: 'string', default: CONTROLLER_DEFAULTS.configServiceName },
        'config-secret-name': { type: 'string', default: CONTROLLER_DEFAULTS.configSecretName },
        'config-certificate-ip': { type: 'string', multiple: true },
        'proxy-image': { type: 'string' },
        'lease-name': { type: 'string', default: CONTROLLER_DEFAULTS.leaseName },
        'lease-duration': { type: 'string', default: '15s' },
        'log-level': { type: 'string', default: 'info' },
      },
      strict: true,
    }));
  } catch (e) {
    return (e as Error).message;
  }
  for (const flag of ['admin-address', 'health-address', 'config-address', 'proxy-controller-address'] as const) {
    const v = values[flag];
    if (v !== undefined && !ADDRESS.test(v)) return `--${flag} wants HOST:PORT, not ${v}`;
  }
  if (values.namespaces !== undefined && values['namespace-selector'] !== undefined) {
    return '--namespaces and --namespace-selector cannot both be given';
  }
  let namespaces: string[] | undefined;
  if (values.namespaces !== undefined) {
    namespaces = values.namespaces.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = namespaces.find((n) => !DNS_LABEL.test(n));
    if (namespaces.length === 0 || bad !== undefined) return `--namespaces wants namespace names separated by commas${bad ? `; ${bad} is not one` : ''}`;
  }
  const controllerNamespace = values['controller-namespace'] ?? env.POD_NAMESPACE ?? CONTROLLER_DEFAULTS.controllerNamespace;
  if (!DNS_LABEL.test(controllerNamespace)) return `--controller-namespace wants a namespace name, not ${controllerNamespace}`;
  for (const flag of ['config-service-name', 'config-secret-name', 'lease-name'] as const) {
    if (!DNS_NAME.test(values[flag]!)) return `--${flag} wants an object name, not ${values[flag]}`;
  }
  const leaseDurationMs = parseDuration(values['lease-duration']!);
  if (leaseDurationMs === null || leaseDurationMs < 3_000) return `--lease-duration wants a duration of at least 3s, not ${values['lease-duration']}`;
  return {
    kubeconfig: values.kubeconfig ?? null,
    namespaces,
    namespaceSelector: values['namespace-selector'],
    adminAddress: values['admin-address']!,
    adminTokenFile: values['admin-token-file'] ?? null,
    healthAddress: values['health-address']!,
    configAddress: values['config-address']!,
    proxyControllerAddress: values['proxy-controller-address'],
    controllerNamespace,
    configServiceName: values['config-service-name']!,
    configSecretName: values['config-secret-name']!,
    configCertificateIPs: values['config-certificate-ip'] ?? [],
    proxyImage: values['proxy-image'] ?? env.GATEHOUSE_PROXY_IMAGE ?? CONTROLLER_DEFAULTS.proxyImage,
    leaseName: values['lease-name']!,
    leaseDurationMs,
    logLevel: values['log-level']!,
  };
}
