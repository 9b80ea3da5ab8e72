// The Snapshot: every object a provider holds at one moment, typed and
// already validated. translate() reads nothing else.
import type {
  BackendTrafficPolicy, ClientTrafficPolicy, ConfigMap, EndpointSlice, Gateway, GatewayClass, GRPCRoute, HTTPRoute, KubeObject, ListenerSet, Namespace,
  ReferenceGrant, Secret, Service,
} from './types.ts';

export interface Snapshot {
  namespaces: Namespace[];
  gatewayClasses: GatewayClass[];
  gateways: Gateway[];
  /** ListenerSets and XListenerSets (their Gateway API v1.4 name), translated alike. */
  listenerSets: ListenerSet[];
  httpRoutes: HTTPRoute[];
  grpcRoutes: GRPCRoute[];
  referenceGrants: ReferenceGrant[];
  services: Service[];
  endpointSlices: EndpointSlice[];
  secrets: Secret[];
  configMaps: ConfigMap[];
  /** Gatehouse's own policies (gatehouse.dev), attached by translate/policy-attachment.ts. */
  clientTrafficPolicies: ClientTrafficPolicy[];
  backendTrafficPolicies: BackendTrafficPolicy[];
  /** Gateway API kinds translate picks out by kind (TLSRoute, TCPRoute, UDPRoute, BackendTLSPolicy). */
  other: KubeObject[];
}

export function emptySnapshot(): Snapshot {
  return {
    namespaces: [], gatewayClasses: [], gateways: [], listenerSets: [], httpRoutes: [], grpcRoutes: [], referenceGrants: [],
    services: [], endpointSlices: [], secrets: [], configMaps: [], clientTrafficPolicies: [], backendTrafficPolicies: [], other: [],
  };
}

/** `namespace/name`, the way objects are named in logs, keys and messages. */
/**
 * Objects are not changed once read, so each one's name is made once:
 * translate keys maps by it for every object on every reload, and a string
 * built anew is flattened and hashed again by each look-up.
 */
const names = new WeakMap<KubeObject, string>();

export function nameOf(o: KubeObject): string {
  let name = names.get(o);
  if (name === undefined) {
    name = o.metadata.namespace ? [o.metadata.namespace, o.metadata.name].join('/') : o.metadata.name;
    names.set(o, name);
  }
  return name;
}

/** The namespace of a namespaced object; Kubernetes defaults it to "default". */
export function namespaceOf(o: KubeObject): string {
  return o.metadata.namespace || 'default';
}
