// GatewayClass: accept those naming our controller; list what we support.
import type { GatewayClass } from '../api/types.ts';
import { condition, type PlainCondition } from './conditions.ts';

export interface GatewayClassStatus {
  conditions: PlainCondition[];
  supportedFeatures: { name: string }[];
}

/**
 * Upstream feature names (sigs.k8s.io/gateway-api pkg/features) that
 * Gatehouse implements and passes conformance for. GatewayStaticAddresses
 * is implemented (translate/addresses.ts) but not listed: the standalone
 * conformance runner rewrites patched spec.addresses to [] (see the note on
 * issue 2), so its test cannot pass there.
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
] as const;

export function gatewayClassStatus(gc: GatewayClass, features: readonly string[]): { accepted: boolean; status: GatewayClassStatus } {
  const gen = gc.metadata.generation;
  const supportedFeatures = [...features].sort().map((name) => ({ name }));
  if (gc.spec.parametersRef) {
    const p = gc.spec.parametersRef;
    return {
      accepted: false,
      status: {
        conditions: [
          condition('Accepted', false, 'InvalidParameters', `parametersRef ${p.group}/${p.kind} ${p.name}: Gatehouse takes no GatewayClass parameters`, gen),
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
