// What the controller provisions, and what provisioning reports back to
// translate, computed from the objects read (pure: no I/O).
//
// - A ParametersJudge for translate: a GatewayClass or Gateway whose
//   parametersRef is bad is InvalidParameters (GatewayParameters only).
// - The Infrastructure to apply for each Gateway of an accepted class of
//   ours whose parameters are good.
// - For translate's addressing, each such Gateway's state in the cluster:
//   the Service's load-balancer addresses and the Deployment's ready
//   proxies.
import type { Gateway, GatewayClass, KubeObject, Service } from '../../../api/types.ts';
import type { Snapshot } from '../../../api/snapshot.ts';
import type { ParametersJudge } from '../../../translate/gatewayclass.ts';
import type { ProvisionedGateway } from '../../../translate/addresses.ts';
import { classParameters, effectiveParameters, type GatewayParametersSpec, type ParametersLookup, type ParametersResolution } from './parameters.ts';
import { infrastructureName } from './names.ts';
import { renderInfrastructure, type Infrastructure } from './render.ts';
import { admittedListeners } from '../../../translate/listenerset.ts';

export interface PlanInput {
  snapshot: Snapshot;
  controllerName: string;
  /** GatewayParameters objects as read. */
  parameters: readonly KubeObject[];
  /** Deployments of ours as read (label app.kubernetes.io/managed-by=gatehouse). */
  deployments: readonly KubeObject[];
  /** For renderInfrastructure. */
  controllerAddress: string;
  controllerNamespace: string;
  caBundle: string;
  defaultImage: string;
}

export interface Plan {
  judge: ParametersJudge;
  /** `namespace/gateway` -> what to apply. */
  wanted: Map<string, Infrastructure>;
  /** `namespace/gateway` -> its Service and proxies, for translate's addressing. */
  provisioned: Record<string, ProvisionedGateway>;
  /** Whether every object of a wanted Gateway's Deployment and Service is seen in the cluster. */
  present(key: string): boolean;
  /** `namespace/gateway` -> the ServiceAccount its proxies authenticate as, for the config service. */
  serviceAccounts: Map<string, string>;
  /** Gateways that could not be rendered (a bug or an impossible object): for the log. */
  renderErrors: { gateway: string; message: string }[];
}

interface Deployment extends KubeObject {
  spec?: { replicas?: number };
  status?: { readyReplicas?: number; replicas?: number };
}

interface ServiceWithStatus extends Service {
  spec: Service['spec'] & { clusterIPs?: string[] };
  status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } };
}

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

export function planInfrastructure(input: PlanInput): Plan {
  const byKey = new Map<string, KubeObject>();
  for (const p of input.parameters) byKey.set(keyOf(p), p);
  const lookup: ParametersLookup = (namespace, name) => byKey.get(`${namespace}/${name}`);

  const classes = new Map<string, GatewayClass>();
  const classResolution = new Map<string, ParametersResolution>();
  for (const gc of input.snapshot.gatewayClasses) {
    classes.set(gc.metadata.name, gc);
    if (gc.spec.controllerName === input.controllerName) classResolution.set(gc.metadata.name, classParameters(gc, lookup));
  }
  const gatewayResolution = new Map<Gateway, ReturnType<typeof effectiveParameters>>();
  const resolveGateway = (gw: Gateway) => {
    let r = gatewayResolution.get(gw);
    if (r === undefined) {
      const cls = classResolution.get(gw.spec.gatewayClassName);
      const classSpec: GatewayParametersSpec | undefined = cls?.ok ? cls.spec : undefined;
      r = effectiveParameters(classSpec, gw, lookup);
      gatewayResolution.set(gw, r);
    }
    return r;
  };

  const judge: ParametersJudge = {
    gatewayClass(gc) {
      const r = classResolution.get(gc.metadata.name) ?? classParameters(gc, lookup);
      return r.ok ? null : r.message;
    },
    gateway(gw) {
      const r = resolveGateway(gw);
      return r.ok ? null : r.message;
    },
  };

  const deployments = new Map<string, Deployment>();
  for (const d of input.deployments) deployments.set(keyOf(d), d as Deployment);
  const services = new Map<string, ServiceWithStatus>();
  for (const s of input.snapshot.services) services.set(keyOf(s), s as ServiceWithStatus);

  const wanted = new Map<string, Infrastructure>();
  const provisioned: Record<string, ProvisionedGateway> = {};
  const serviceAccounts = new Map<string, string>();
  const renderErrors: Plan['renderErrors'] = [];
  const namespaces = new Map(input.snapshot.namespaces.map((n) => [n.metadata.name, n]));
  for (const gw of input.snapshot.gateways) {
    const className = gw.spec.gatewayClassName;
    const cls = classResolution.get(className);
    // A class of another controller, or ours but not accepted: nothing is provisioned.
    if (!cls?.ok) continue;
    const params = resolveGateway(gw);
    if (!params.ok) continue;
    const key = keyOf(gw);
    let infra: Infrastructure;
    try {
      infra = renderInfrastructure({
        gateway: gw, className, parameters: params.spec,
        listenerSetListeners: admittedListeners(gw, input.snapshot.listenerSets, namespaces),
        controllerAddress: input.controllerAddress, controllerNamespace: input.controllerNamespace,
        caBundle: input.caBundle, defaultImage: input.defaultImage,
      });
    } catch (err) {
      renderErrors.push({ gateway: key, message: err instanceof Error ? err.message : String(err) });
      continue;
    }
    wanted.set(key, infra);
    serviceAccounts.set(key, infrastructureName(gw.metadata.name, className));
    const objectKey = `${infra.namespace}/${infra.name}`;
    const deployment = deployments.get(objectKey);
    const service = services.get(objectKey);
    provisioned[key] = {
      addresses: service ? serviceAddresses(service) : [],
      readyProxies: deployment?.status?.readyReplicas ?? 0,
      desiredProxies: deployment?.spec?.replicas ?? 0,
      service: objectKey,
      addressProblems: infra.addressProblems,
    };
  }

  return {
    judge,
    wanted,
    provisioned,
    serviceAccounts,
    renderErrors,
    present(key) {
      const infra = wanted.get(key);
      if (!infra) return false;
      const objectKey = `${infra.namespace}/${infra.name}`;
      const wantsService = infra.objects.some((o) => o.kind === 'Service');
      return deployments.has(objectKey) && (!wantsService || services.has(objectKey));
    },
  };
}

/**
 * Where clients reach a Gateway: the load balancer's ingress addresses
 * (IPs and hostnames) for a LoadBalancer Service; for a ClusterIP or
 * NodePort Service, which no load balancer answers for, its cluster IPs.
 */
export function serviceAddresses(service: ServiceWithStatus): ProvisionedGateway['addresses'] {
  const type = service.spec.type ?? 'ClusterIP';
  if (type === 'LoadBalancer') {
    const out: ProvisionedGateway['addresses'] = [];
    for (const ingress of service.status?.loadBalancer?.ingress ?? []) {
      if (ingress.ip) out.push({ type: 'IPAddress', value: ingress.ip });
      if (ingress.hostname) out.push({ type: 'Hostname', value: ingress.hostname });
    }
    return out;
  }
  const ips = service.spec.clusterIPs?.length ? service.spec.clusterIPs : service.spec.clusterIP ? [service.spec.clusterIP] : [];
  return ips.filter((ip) => ip !== 'None').map((value) => ({ type: 'IPAddress' as const, value }));
}
