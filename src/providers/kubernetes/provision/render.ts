// renderInfrastructure: what a Gateway's data plane is made of in the
// cluster, as the objects to apply (pure: no I/O, same input, same
// objects). ServiceAccount, ConfigMap (the CA the proxies trust the
// controller with), Service, Deployment; HorizontalPodAutoscaler and
// PodDisruptionBudget when the parameters ask for them.
//
// Every object: named infrastructureName(gateway, class) in the Gateway's
// namespace, owned by the Gateway (so deleting it deletes them), labelled
// with ownLabels() and with the Gateway's spec.infrastructure labels and
// annotations. Applied with server-side apply, an object holds exactly
// what was rendered last: a label dropped here disappears there.
import net from 'node:net';
import type { Gateway, GatewayAddress, Listener } from '../../../api/types.ts';
import { GATEWAY_GROUP } from '../../../api/types.ts';
import { infrastructureName, ownLabels, selectorLabels } from './names.ts';
import type { GatewayParametersSpec, ServiceType } from './parameters.ts';

// ---------------------------------------------------------------- contract with `gatehouse proxy`

/** Where the projected ServiceAccount token is mounted, and its file. */
export const TOKEN_DIR = '/var/run/secrets/gatehouse';
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
/** The audience the controller's TokenReview asks for: a token for the API server is not one for us. */
export const TOKEN_AUDIENCE = 'gatehouse';
/** The kubelet renews the token at 80% of this. */
export const TOKEN_EXPIRATION_SECONDS = 3600;
/** Where the ConfigMap with the controller's CA is mounted, and its file. */
export const CA_DIR = '/etc/gatehouse/ca';
export const CA_KEY = 'ca.crt';
export const CA_FILE = `${CA_DIR}/${CA_KEY}`;
/** The proxy's health and readiness port: not a listener port. */
export const HEALTH_PORT = 19001;
/** The proxy's /metrics port, annotated on the pod for Prometheus: not a listener port. */
export const METRICS_PORT = 19002;
/** Pod annotations that Prometheus' usual kubernetes_sd relabelling reads; the Gateway's own annotations win. */
const PROMETHEUS_ANNOTATIONS: Readonly<Record<string, string>> = {
  'prometheus.io/scrape': 'true',
  'prometheus.io/port': String(METRICS_PORT),
  'prometheus.io/path': '/metrics',
};

/**
 * How long the kubelet waits after SIGTERM before SIGKILL. The proxy,
 * on SIGTERM, fails /readyz but keeps accepting for its shutdown delay
 * (5 s, so load balancers and kube-proxy stop sending), then drains
 * requests in flight for up to its drain timeout (30 s), then exits on
 * its own at the latest 10 s later (its last resort): 45 s. 5 s more so
 * that SIGKILL never races a clean exit: 50 s.
 */
export const TERMINATION_GRACE_SECONDS = 5 + 30 + 10 + 5;

/** The non-root user of the image (the distroless "nonroot" uid). */
export const PROXY_UID = 65532;

/** When the parameters set no resources: enough for a proxy at rest, and what HPA utilization is measured against. */
export const DEFAULT_RESOURCES = { requests: { cpu: '100m', memory: '128Mi' } };
/** When autoscaling sets no target: the HPA's own default. */
export const DEFAULT_CPU_TARGET_PERCENT = 80;
export const DEFAULT_REPLICAS = 1;

// ---------------------------------------------------------------- types

export interface InfrastructureInput {
  /** The Gateway as read (metadata.uid is needed for the owner references). */
  gateway: Gateway;
  /** Listeners of the ListenerSets the Gateway admits: their ports are exposed too. */
  listenerSetListeners?: Listener[];
  /** Its GatewayClass's name (spec.gatewayClassName). */
  className: string;
  /** The merged parameters (effectiveParameters). */
  parameters: GatewayParametersSpec;
  /**
   * `host:port` of the controller's config service as the proxies reach
   * it. A host of one DNS label (a Service name) is qualified with
   * controllerNamespace, since the proxies run in the Gateway's namespace.
   */
  controllerAddress: string;
  controllerNamespace: string;
  /** PEM of the CA that signed the config service's certificate. */
  caBundle: string;
  /** The proxy image when the parameters name none. */
  defaultImage: string;
}

export interface ProvisionedObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences: OwnerReference[];
  };
  [field: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller: boolean;
  blockOwnerDeletion: boolean;
}

/** A listener the proxies cannot serve as asked: for the listener's status (Accepted False, this reason). */
export interface ListenerProblem {
  listener: string;
  reason: 'PortUnavailable';
  message: string;
}

export interface Infrastructure {
  /** Name of every object (infrastructureName). */
  name: string;
  namespace: string;
  /** In apply order: ServiceAccount, ConfigMap, Service (when some listener has a port), Deployment, HPA?, PDB?. */
  objects: ProvisionedObject[];
  /**
   * Requested addresses the Service cannot carry, one message each,
   * naming the address and what to do: when not empty, the Gateway's
   * Programmed condition is False with reason AddressNotUsable.
   */
  addressProblems: string[];
  listenerProblems: ListenerProblem[];
  /** The labels the Service and the PDB select the proxy pods by. */
  selector: Record<string, string>;
  /** True when an HPA owns the Deployment's replica count. */
  autoscaling: boolean;
}

type Obj = Record<string, unknown>;

// ---------------------------------------------------------------- ports

interface PortSpec { name: string; port: number; protocol: 'TCP' | 'UDP' }

/** The transport a listener protocol runs on; undefined for protocols Gatehouse does not serve (translate reports those). */
function transportOf(protocol: string): 'TCP' | 'UDP' | undefined {
  switch (protocol) {
    case 'HTTP': case 'HTTPS': case 'TLS': case 'TCP': return 'TCP';
    case 'UDP': return 'UDP';
    default: return undefined;
  }
}

/**
 * One port per distinct (port, transport), sorted, named `tcp-443` /
 * `udp-53`: stable across renders (listeners reordered or renamed do not
 * rename ports) and valid both as Service and container port names
 * (IANA service names: at most 15 characters, a letter in them).
 */
function listenerPorts(listeners: Listener[], problems: ListenerProblem[]): PortSpec[] {
  const seen = new Map<string, PortSpec>();
  for (const l of listeners) {
    const protocol = transportOf(l.protocol);
    if (!protocol || !Number.isInteger(l.port) || l.port < 1 || l.port > 65535) continue;
    if ((l.port === HEALTH_PORT || l.port === METRICS_PORT) && protocol === 'TCP') {
      problems.push({
        listener: l.name,
        reason: 'PortUnavailable',
        message: l.port === HEALTH_PORT
          ? `port ${HEALTH_PORT} is the proxy's health and readiness port; use another port for listener ${l.name}`
          : `port ${METRICS_PORT} is the proxy's metrics port; use another port for listener ${l.name}`,
      });
      continue;
    }
    const key = `${protocol}/${l.port}`;
    if (!seen.has(key)) seen.set(key, { name: `${protocol.toLowerCase()}-${l.port}`, port: l.port, protocol });
  }
  return [...seen.values()].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
}

// ---------------------------------------------------------------- addresses

interface AddressPlan {
  loadBalancerIP?: string;
  /** For the metallb.io/loadBalancerIPs annotation: at most one per family. */
  metallbIPs: string[];
  wantsIPv6: boolean;
  problems: string[];
}

/**
 * spec.addresses as the Service can honour them: type IPAddress only
 * (Hostname and NamedAddress name nothing a Service can request), on a
 * LoadBalancer Service only, one address per IP family (what MetalLB
 * takes in metallb.io/loadBalancerIPs; loadBalancerIP holds the IPv4).
 * An empty value asks for any address: the load balancer picks one.
 * Never externalIPs: they bypass the load balancer and let anyone who can
 * create a Service capture traffic for an address (CVE-2020-8554).
 */
function planAddresses(addresses: GatewayAddress[], serviceType: ServiceType): AddressPlan {
  const plan: AddressPlan = { metallbIPs: [], wantsIPv6: false, problems: [] };
  let v4: string | undefined;
  let v6: string | undefined;
  addresses.forEach((a, i) => {
    const type = a.type ?? 'IPAddress';
    const value = a.value ?? '';
    const at = `spec.addresses[${i}]`;
    if (type !== 'IPAddress') {
      plan.problems.push(`${at} (${type} ${JSON.stringify(value)}) cannot be used: Gatehouse asks the load balancer for IP addresses only; use type IPAddress or leave spec.addresses empty`);
      return;
    }
    if (!value) return;
    const family = net.isIP(value);
    if (family === 0) {
      plan.problems.push(`${at} (${JSON.stringify(value)}) cannot be used: not an IP address`);
      return;
    }
    if (serviceType !== 'LoadBalancer') {
      plan.problems.push(`${at} (${value}) cannot be used: the Gateway's Service is of type ${serviceType}, and only a LoadBalancer Service takes a requested address; set service.type LoadBalancer in its GatewayParameters or remove the address`);
      return;
    }
    if (family === 4) {
      if (v4 !== undefined) { plan.problems.push(`${at} (${value}) cannot be used: the Service takes one IPv4 address and ${v4} is requested first; remove one`); return; }
      v4 = value;
    } else {
      if (v6 !== undefined) { plan.problems.push(`${at} (${value}) cannot be used: the Service takes one IPv6 address and ${v6} is requested first; remove one`); return; }
      v6 = value;
    }
  });
  if (v4 !== undefined) { plan.loadBalancerIP = v4; plan.metallbIPs.push(v4); }
  if (v6 !== undefined) { plan.metallbIPs.push(v6); plan.wantsIPv6 = true; }
  return plan;
}

// ---------------------------------------------------------------- helpers

/**
 * `host:port` with a bare Service name qualified as `name.namespace.svc`,
 * so a proxy in any namespace resolves it. IPs, qualified names and
 * `localhost` are kept as given.
 */
export function proxyControllerAddress(address: string, controllerNamespace: string): string {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(address);
  if (!m) throw new Error(`controller address ${JSON.stringify(address)}: expected host:port`);
  const host = m[1];
  if (host.startsWith('[') || net.isIP(host) || host.includes('.') || host === 'localhost' || !controllerNamespace) return address;
  return `${host}.${controllerNamespace}.svc:${m[2]}`;
}

/** Later maps win; undefined when the result is empty (so SSA sends no field). */
function mergeMaps(...maps: (Record<string, string> | undefined)[]): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const m of maps) if (m) Object.assign(out, m);
  return Object.keys(out).length ? out : undefined;
}

function withoutUndefined(o: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

// ---------------------------------------------------------------- render

export function renderInfrastructure(input: InfrastructureInput): Infrastructure {
  const { gateway, className, parameters: p } = input;
  const gwName = gateway.metadata.name;
  const namespace = gateway.metadata.namespace ?? 'default';
  const uid = gateway.metadata.uid;
  if (!uid) throw new Error(`Gateway ${namespace}/${gwName}: metadata.uid is empty; provisioned objects need it for their owner reference`);

  const name = infrastructureName(gwName, className);
  const infra = gateway.spec.infrastructure ?? {};
  // Ours last: a user label cannot take over what selects the pods.
  const labels = mergeMaps(infra.labels, ownLabels(gwName, className, name))!;
  const annotations = mergeMaps(infra.annotations);
  const selector = selectorLabels(gwName, name);
  const ownerReferences: OwnerReference[] = [{
    apiVersion: `${GATEWAY_GROUP}/v1`, kind: 'Gateway', name: gwName, uid, controller: true, blockOwnerDeletion: true,
  }];
  const meta = (objectAnnotations = annotations) => withoutUndefined({
    name, namespace, labels, annotations: objectAnnotations, ownerReferences,
  }) as ProvisionedObject['metadata'];

  const listenerProblems: ListenerProblem[] = [];
  const ports = listenerPorts([...gateway.spec.listeners ?? [], ...input.listenerSetListeners ?? []], listenerProblems);
  const svc = p.service ?? {};
  const serviceType: ServiceType = svc.type ?? 'LoadBalancer';
  const addr = planAddresses(gateway.spec.addresses ?? [], serviceType);
  const autoscaling = p.autoscaling !== undefined;

  const objects: ProvisionedObject[] = [];

  objects.push({
    apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(),
    // The pods mount their own audience-bound token; no API server token.
    automountServiceAccountToken: false,
  });

  objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(), data: { [CA_KEY]: input.caBundle } });

  // A Service with no port is refused by the API server: with no listener
  // to serve there is nothing to expose, and apply prunes an old one.
  if (ports.length > 0) {
    const lb = serviceType === 'LoadBalancer';
    objects.push({
      apiVersion: 'v1', kind: 'Service',
      // The Gateway's own annotations over its parameters'; last, the
      // Gateway's spec.addresses decide the requested IPs.
      metadata: meta(mergeMaps(svc.annotations, infra.annotations, addr.metallbIPs.length ? { 'metallb.io/loadBalancerIPs': addr.metallbIPs.join(',') } : undefined)),
      spec: withoutUndefined({
        type: serviceType,
        selector,
        ports: ports.map((q) => ({ name: q.name, port: q.port, targetPort: q.port, protocol: q.protocol })),
        externalTrafficPolicy: serviceType === 'ClusterIP' ? undefined : svc.externalTrafficPolicy,
        loadBalancerSourceRanges: lb && svc.loadBalancerSourceRanges?.length ? svc.loadBalancerSourceRanges : undefined,
        loadBalancerClass: lb ? svc.loadBalancerClass : undefined,
        loadBalancerIP: addr.loadBalancerIP,
        ipFamilyPolicy: addr.wantsIPv6 ? 'PreferDualStack' : undefined,
      }),
    });
  }
  const args = [
    'proxy',
    '--controller-address', proxyControllerAddress(input.controllerAddress, input.controllerNamespace),
    '--gateway', `${namespace}/${gwName}`,
    '--token-file', TOKEN_FILE,
    '--ca-file', CA_FILE,
    '--health-address', `0.0.0.0:${HEALTH_PORT}`,
    '--metrics-address', `0.0.0.0:${METRICS_PORT}`,
  ];
  if (p.workers !== undefined) args.push('--workers', String(p.workers));

  const container = withoutUndefined({
    name: 'proxy',
    image: p.image ?? input.defaultImage,
    imagePullPolicy: p.imagePullPolicy,
    args,
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ],
    ports: [
      ...ports.map((q) => ({ name: q.name, containerPort: q.port, protocol: q.protocol })),
      { name: 'health', containerPort: HEALTH_PORT, protocol: 'TCP' },
      { name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' },
    ],
    readinessProbe: { httpGet: { path: '/readyz', port: HEALTH_PORT }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2 },
    livenessProbe: { httpGet: { path: '/healthz', port: HEALTH_PORT }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
    resources: p.resources ?? DEFAULT_RESOURCES,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_UID,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: 'token', mountPath: TOKEN_DIR, readOnly: true },
      { name: 'ca', mountPath: CA_DIR, readOnly: true },
      { name: 'tmp', mountPath: '/tmp' },
    ],
  });

  objects.push({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta(),
    spec: withoutUndefined({
      // With autoscaling the HPA owns the count: sending one would undo its work at every apply.
      replicas: autoscaling ? undefined : (p.replicas ?? DEFAULT_REPLICAS),
      selector: { matchLabels: selector },
      // Never fewer ready proxies than asked for during a rollout.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      template: {
        metadata: withoutUndefined({ labels, annotations: { ...PROMETHEUS_ANNOTATIONS, ...annotations } }),
        spec: withoutUndefined({
          serviceAccountName: name,
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: PROXY_UID,
            runAsGroup: PROXY_UID,
            fsGroup: PROXY_UID,
            seccompProfile: { type: 'RuntimeDefault' },
            // Listeners below 1024 without root or NET_BIND_SERVICE; a
            // "safe" sysctl (namespaced to the pod) since Kubernetes 1.22.
            sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }],
          },
          nodeSelector: p.nodeSelector && Object.keys(p.nodeSelector).length ? p.nodeSelector : undefined,
          affinity: p.affinity,
          tolerations: p.tolerations,
          topologySpreadConstraints: p.topologySpreadConstraints,
          containers: [container],
          volumes: [
            {
              name: 'token',
              projected: {
                sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: TOKEN_EXPIRATION_SECONDS, path: 'token' } }],
              },
            },
            { name: 'ca', configMap: { name, items: [{ key: CA_KEY, path: CA_KEY }] } },
            // Node and its libraries may write temporary files; the root file system is read-only.
            { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
          ],
        }),
      },
    }),
  });

  if (p.autoscaling) {
    const a = p.autoscaling;
    if (a.maxReplicas === undefined) throw new Error(`Gateway ${namespace}/${gwName}: autoscaling without maxReplicas; pass the parameters through effectiveParameters`);
    const metrics: Obj[] = [];
    const cpu = a.targetCPUUtilizationPercentage ?? (a.targetMemoryUtilizationPercentage === undefined ? DEFAULT_CPU_TARGET_PERCENT : undefined);
    if (cpu !== undefined) metrics.push({ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: cpu } } });
    if (a.targetMemoryUtilizationPercentage !== undefined) {
      metrics.push({ type: 'Resource', resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: a.targetMemoryUtilizationPercentage } } });
    }
    objects.push({
      apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: meta(),
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        minReplicas: a.minReplicas ?? 1,
        maxReplicas: a.maxReplicas,
        metrics,
      },
    });
  }

  if (p.podDisruptionBudget) {
    const b = p.podDisruptionBudget;
    objects.push({
      apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: meta(),
      spec: withoutUndefined({ selector: { matchLabels: selector }, minAvailable: b.minAvailable, maxUnavailable: b.maxUnavailable }),
    });
  }

  return { name, namespace, objects, addressProblems: addr.problems, listenerProblems, selector, autoscaling };
}
