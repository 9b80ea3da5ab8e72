// GRPCRoute -> the HTTPRoute it means: gRPC is HTTP/2 POSTs to
// `/package.Service/Method`, so a method match is a path match, header
// matches and the filters GRPCRoute allows are HTTPRoute's, and the rest
// of translate (attachment, hostnames, precedence, backends, status)
// handles both kinds alike. The result keeps kind GRPCRoute: its status is
// written on the GRPCRoute, and ReferenceGrants are asked for GRPCRoutes.
//
// Method matches, as the GRPCRoute spec defines them:
//   Exact, service and method   path Exact `/service/method`
//   Exact, service only         every method of the service: path prefix `/service`
//   Exact, method only          that method of any service: `/[^/]+/method`
//   RegularExpression           `/(service)/(method)`, a missing part `[^/]+`
// No match at all matches every request, as a rule without matches does.
import type { GRPCMethodMatch, GRPCRoute, HTTPPathMatch, HTTPRoute, HTTPRouteMatch, KubeObject } from '../api/types.ts';

/** An HTTPRoute, or a GRPCRoute read as one (its kind kept). */
export type HTTPRouteLike = KubeObject & { kind: 'HTTPRoute' | 'GRPCRoute'; spec: HTTPRoute['spec'] };

/** Characters RE2 and JavaScript regexes treat specially. */
const SPECIAL = /[\\^$.*+?()[\]{}|/]/g;

function escapeRegExp(s: string): string {
  return s.replace(SPECIAL, '\\$&');
}

export function methodPath(m: GRPCMethodMatch): HTTPPathMatch {
  if ((m.type ?? 'Exact') === 'RegularExpression') {
    return { type: 'RegularExpression', value: `/${m.service ? `(${m.service})` : '[^/]+'}/${m.method ? `(${m.method})` : '[^/]+'}` };
  }
  if (m.service !== undefined && m.method !== undefined) return { type: 'Exact', value: `/${m.service}/${m.method}` };
  if (m.service !== undefined) return { type: 'PathPrefix', value: `/${m.service}` };
  return { type: 'RegularExpression', value: `/[^/]+/${escapeRegExp(m.method ?? '')}` };
}

export function grpcAsHTTPRoute(route: GRPCRoute): HTTPRouteLike {
  return {
    ...route,
    spec: {
      parentRefs: route.spec.parentRefs,
      hostnames: route.spec.hostnames,
      rules: (route.spec.rules ?? []).map((rule) => ({
        name: rule.name,
        matches: rule.matches?.map((m): HTTPRouteMatch => {
          const out: HTTPRouteMatch = {};
          if (m.method !== undefined) out.path = methodPath(m.method);
          if (m.headers !== undefined) out.headers = m.headers;
          return out;
        }),
        filters: rule.filters,
        backendRefs: rule.backendRefs,
        sessionPersistence: rule.sessionPersistence,
      })),
    },
  };
}
