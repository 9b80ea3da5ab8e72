// GatewayClass: accept those naming our controller; list what we support.
import type { Gateway, GatewayClass } from '../api/types.ts';
import { condition, type PlainCondition } from './conditions.ts';

export interface GatewayClassStatus {
  conditions: PlainCondition[];
  supportedFeatures: { name: string }[];
}

/**
 * Upstream feature names (sigs.k8s.io/gateway-api pkg/features) that
 * Gatehouse implements and passes conformance for. GatewayStaticAddresses
 * and GatewayAddressEmpty (translate/addresses.ts) are listed since the
 * standalone conformance runner keeps patched spec.addresses (issue 10):
 * a static address in --address-pool is used, one outside it is
 * AddressNotUsable, and an IPAddress without a value asks for any.
 */
export const SUPPORTED_FEATURES = [
  'Gateway',
  'HTTPRoute',
  'ReferenceGrant',
  'GatewayPort8080', 'GatewayHTTPListenerIsolation',
  'HTTPRouteQueryParamMatching', 'HTTPRouteMethodMatching', 'HTTPRouteResponseHeaderModification',
  'HTTPRoutePortRedirect', 'HTTPRouteSchemeRedirect', 'HTTPRoutePathRedirect', 'HTTPRouteHostRewrite', 'HTTPRoutePathRewrite',
  'HTTPRouteBackendRequestHeaderModification', 'HTTPRouteParentRefPort', 'HTTPRouteDestinationPortMatching',
  'HTTPRouteRequestTimeout', 'HTTPRouteBackendTimeout', 'HTTPRouteNamedRouteRule',
  'HTTPRoute303RedirectStatusCode', 'HTTPRoute307RedirectStatusCode', 'HTTPRoute308RedirectStatusCode',
  'HTTPRouteRequestMirror', 'HTTPRouteRequestMultipleMirrors', 'HTTPRouteRequestPercentageMirror',
  'HTTPRouteRetry', 'HTTPRouteRetryBackendTimeout', 'HTTPRouteRetryConnectionError',
  'HTTPRouteBackendProtocolWebSocket', 'GatewayStaticAddresses', 'GatewayAddressEmpty',
  'GatewayHTTPSListenerDetectMisdirectedRequests',
  'GatewayFrontendClientCertificateValidation', 'GatewayFrontendClientCertificateValidationInsecureFallback',
  'BackendTLSPolicy', 'BackendTLSPolicySANValidation', 'HTTPRouteBackendProtocolH2C',
  'GatewayBackendClientCertificate', 'HTTPRouteBackendRequestRedirect', 'HTTPRouteBackendURLRewrite',
  'ListenerSet',
  'TLSRoute', 'TLSRouteModeTerminate', 'TLSRouteModeMixed', 'TCPRoute', 'UDPRoute',
  'GRPCRoute', 'GRPCRouteNamedRouteRule', 'GRPCRouteRequestHeaderModifier',
] as const;

/**
 * Kubernetes mode provisions each Gateway's proxies, Service and
 * ServiceAccount, and puts spec.infrastructure.labels and .annotations on
 * each (providers/kubernetes/provision/render.ts); standalone provisions
 * nothing, so only this mode claims it. Its name in pkg/features and for
 * the suite is GatewayInfrastructure (the v1.2 changelog called it
 * GatewayInfrastructurePropagation; the suite does not know that name).
 *
 * HTTPRouteCORS works in both modes (the same translate and data plane)
 * and passes the upstream Go suite in Kubernetes mode; standalone does not
 * list it because the standalone conformance runner in ../shared drops the
 * method of a preflight's answer before comparing (README, "Gateway API
 * support"), so its test cannot pass there.
 */
export const KUBERNETES_FEATURES = [...SUPPORTED_FEATURES, 'GatewayInfrastructure', 'HTTPRouteCORS'] as const;

/**
 * Judges parametersRef on GatewayClasses and Gateways: null when the
 * reference resolves to parameters that can be used, else why not (the
 * message of an InvalidParameters condition). Kubernetes mode resolves
 * GatewayParameters objects; standalone takes no parameters.
 */
export interface ParametersJudge {
  gatewayClass(gc: GatewayClass): string | null;
  gateway(gw: Gateway): string | null;
}

/** Standalone: no parameters are taken, and a reference is refused rather than ignored. */
export const NO_PARAMETERS: ParametersJudge = {
  gatewayClass(gc) {
    const p = gc.spec.parametersRef;
    return p ? `parametersRef ${p.group}/${p.kind} ${p.name}: Gatehouse takes no GatewayClass parameters in standalone mode` : null;
  },
  gateway(gw) {
    const p = gw.spec.infrastructure?.parametersRef;
    return p ? `infrastructure.parametersRef ${p.group}/${p.kind} ${p.name}: Gatehouse takes no Gateway parameters in standalone mode` : null;
  },
};

export function gatewayClassStatus(gc: GatewayClass, features: readonly string[], parameters: ParametersJudge = NO_PARAMETERS): { accepted: boolean; status: GatewayClassStatus } {
  const gen = gc.metadata.generation;
  const supportedFeatures = [...features].sort().map((name) => ({ name }));
  const problem = parameters.gatewayClass(gc);
  if (problem !== null) {
    return {
      accepted: false,
      status: {
        conditions: [
          condition('Accepted', false, 'InvalidParameters', problem, gen),
          condition('SupportedVersion', true, 'SupportedVersion', 'Gateway API CRD versions are supported', gen),
        ],
        supportedFeatures,
      },
    };
  }
  return {
    accepted: true,
    status: {
      conditions: [
        condition('Accepted', true, 'Accepted', 'Accepted by the Gatehouse controller', gen),
        condition('SupportedVersion', true, 'SupportedVersion', 'Gateway API CRD versions are supported', gen),
      ],
      supportedFeatures,
    },
  };
}
