// Gateway API match precedence across every rule of every route on one
// host (HTTPRouteRule docs): exact path, then the longest prefix, then a
// method match, then the most header matches, then the most query
// matches; ties go to the oldest route, then to {namespace}/{name} in
// alphabetical order, then to rule and match order within the route.
// Regular expressions are implementation-specific; like Envoy Gateway we
// place them after exact paths and before prefixes, longest first.
import type { RouteEntry } from '../ir/types.ts';
import type { TranslatedHTTPRoute } from './httproute.ts';

/** An entry with what orders it among all others on a host; made for sorting only. */
export interface RankedEntry {
  entry: RouteEntry;
  route: Pick<TranslatedHTTPRoute, 'routeAge' | 'routeName'>;
  /** Index in the route's entries: rule, then match order. */
  position: number;
}

const PATH_RANK = { Exact: 3, RegularExpression: 2, PathPrefix: 1 } as const;

export function comparePrecedence(a: RankedEntry, b: RankedEntry): number {
  const ma = a.entry.match, mb = b.entry.match;
  return (PATH_RANK[mb.path.type] - PATH_RANK[ma.path.type])
    || (mb.path.value.length - ma.path.value.length)
    || (Number(mb.method !== undefined) - Number(ma.method !== undefined))
    || (mb.headers.length - ma.headers.length)
    || (mb.queryParams.length - ma.queryParams.length)
    || (a.route.routeAge - b.route.routeAge)
    || compareStrings(a.route.routeName, b.route.routeName)
    || (a.position - b.position);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
