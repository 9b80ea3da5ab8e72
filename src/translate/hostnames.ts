// Hostname matching and intersection, as the Gateway API defines them for
// listeners and routes: `*.example.com` covers any name with one or more
// labels in front of `example.com`, but not `example.com` itself.

export function isWildcard(h: string): boolean {
  return h.startsWith('*.');
}

/** Does `pattern` (exact or `*.suffix`) cover the concrete or wildcard name `name`? */
export function covers(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  if (!isWildcard(pattern)) return false;
  const suffix = pattern.slice(1); // ".example.com"
  if (isWildcard(name)) {
    // *.a.example.com is covered by *.example.com, but *.example.com is not covered by itself here (handled above).
    return name.slice(1).endsWith(suffix) && name.length > pattern.length;
  }
  return name.endsWith(suffix) && name.length > suffix.length;
}

/**
 * The hostnames a route serves on a listener: the intersection of the
 * listener's hostname (null: any) and the route's hostnames (empty: any).
 * Returns [] when they do not intersect, ['*'] when both are unrestricted.
 */
export function intersect(listenerHostname: string | null, routeHostnames: string[]): string[] {
  if (routeHostnames.length === 0) return [listenerHostname ?? '*'];
  if (listenerHostname === null) return dedupe(routeHostnames);
  const out: string[] = [];
  for (const r of routeHostnames) {
    if (covers(listenerHostname, r)) out.push(r);
    else if (covers(r, listenerHostname)) out.push(listenerHostname);
  }
  return dedupe(out);
}

function dedupe(list: string[]): string[] {
  return [...new Set(list.map((h) => h.toLowerCase()))];
}

/**
 * Orders hostnames most specific first: exact names, then wildcards with
 * the longest suffix, then `*`. Ties are broken by name, compared by code
 * unit: a total order that does not depend on the process's locale (which
 * localeCompare would, and it also pulls ICU's collation data into memory
 * and costs ~10x more per comparison).
 */
export function bySpecificity(a: string | null, b: string | null): number {
  const byRank = rank(b) - rank(a);
  if (byRank !== 0) return byRank;
  const x = a ?? '';
  const y = b ?? '';
  return x < y ? -1 : x > y ? 1 : 0;
}

function rank(h: string | null): number {
  if (h === null || h === '*') return 0;
  if (isWildcard(h)) return 1 + h.length;
  return 1_000_000 + h.length;
}
