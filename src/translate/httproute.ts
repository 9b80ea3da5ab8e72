// HTTPRoute rules -> route entries (one per rule match) with filters and
// weighted backends, plus the facts the route's status is written from.
import type { HTTPBackendRef, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule } from '../api/types.ts';
import type { HTTPRouteLike } from './grpcroute.ts';
import { nameOf } from '../api/snapshot.ts';
import type { Cluster, Filter, RouteEntry, RouteMatch, WeightedBackend } from '../ir/types.ts';
import { resolveBackend, type BackendIndex, type BackendProblemReason } from './backends.ts';
import { parseDuration } from '../api/durations.ts';
import { corsProblem, toCORSFilter } from './cors.ts';
import { retryProblem, toRetryPolicy } from './retry.ts';
import { sessionPersistenceProblem, toSessionPersistence } from './session-persistence.ts';

export interface TranslatedHTTPRoute {
  /** One per match of each rule kept, in rule then match order: the order of the last precedence tie-break. */
  entries: RouteEntry[];
  /** The name of each entry's rule (`rules[].name`), when it has one: what a policy's sectionName names. */
  entryRules: (string | undefined)[];
  /** The route's creationTimestamp in ms and `namespace/name`: how ties between routes are broken. */
  routeAge: number;
  routeName: string;
  /** What a policy's targetRef names it as. */
  routeKind: 'HTTPRoute' | 'GRPCRoute';
  clusters: Cluster[];
  /** First unresolved reference, for ResolvedRefs. */
  refProblem: { reason: BackendProblemReason; message: string } | null;
  /** Rules left out, with why: PartiallyInvalid, or Accepted=False when it is all of them. */
  droppedRules: { index: number; message: string }[];
  ruleCount: number;
}

/**
 * Route regexes follow RE2 syntax (the Gateway API leaves the dialect to
 * the implementation; Envoy and most others use RE2). Refusing
 * backreferences and lookaround keeps every accepted regex runnable by
 * V8's linear-time engine, which the process falls back to on excessive
 * backtracking: a route author in one namespace cannot stall the gateway.
 */
const NOT_RE2 = /\\[1-9]|\\k<|\(\?<?[=!]/;

/**
 * The one empty list that route entries without headers, query params or
 * filters hold: with 50,000 entries, 200,000 empty arrays otherwise. It is
 * frozen so that a consumer adding to it would fail loudly rather than
 * change every entry at once.
 */
const NONE = Object.freeze([]) as never[];

/** `items` mapped by `f`, or NONE when there are none. */
function mapOrNone<T, U>(items: readonly T[] | undefined, f: (item: T, index: number) => U): U[] {
  return items?.length ? items.map(f) : NONE;
}

/**
 * Parts that many route entries have in common, made once per translate()
 * call and shared by the entries translated in it: with thousands of routes
 * most matches are a path alone (`PathPrefix /`) and most rules send to one
 * of a few backends, and a copy per entry cost ~10 MB at 50,000 entries.
 * Shared parts are frozen, as NONE is. Routes translated in a later call
 * get parts of their own, so nothing outlives the entries that use it.
 */
export interface SharedParts {
  /** Path-only matches, by path type and value. */
  matches: Map<string, RouteMatch>;
  /** Backend lists without filters, by weights and clusters. */
  backends: Map<string, WeightedBackend[]>;
}

export function newSharedParts(): SharedParts {
  return { matches: new Map(), backends: new Map() };
}

const SUPPORTED_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror', 'CORS']);

/**
 * Filters a backendRef may not carry although the CRD lets it: CORS
 * answers preflights for the rule before any backend is chosen, so on one
 * backend of several it would answer for some requests and not others.
 */
const RULE_ONLY_FILTERS = new Set(['CORS']);

/**
 * Each RequestMirror filter of a rule, resolved once for all its matches:
 * its IR filter, or null when its backendRef cannot be used (the filter is
 * then left out, and ResolvedRefs says why, as the spec asks).
 */
type ResolvedMirrors = Map<HTTPRouteFilter, Filter | null>;

export function translateHTTPRoute(route: HTTPRouteLike, backends: BackendIndex, shared: SharedParts = newSharedParts()): TranslatedHTTPRoute {
  const routeName = nameOf(route);
  const routeAge = Date.parse(route.metadata.creationTimestamp ?? '') || 0;
  const out: TranslatedHTTPRoute = { entries: [], entryRules: [], routeAge, routeName, routeKind: route.kind, clusters: [], refProblem: null, droppedRules: [], ruleCount: 0 };
  const rules = route.spec.rules?.length ? route.spec.rules : [{}];
  out.ruleCount = rules.length;
  rules.forEach((rule, ruleIndex) => {
    const problem = ruleProblem(rule);
    if (problem) { out.droppedRules.push({ index: ruleIndex, message: problem }); return; }

    const weighted: WeightedBackend[] = [];
    for (const ref of rule.backendRefs ?? []) {
      const res = resolveBackend(route, ref, backends);
      if (res.ok) {
        // Rules of a route often share a backend; its cluster is listed once.
        if (!out.clusters.includes(res.cluster)) out.clusters.push(res.cluster);
        if (res.problem) out.refProblem ??= res.problem;
      } else {
        out.refProblem ??= { reason: res.reason, message: res.message };
      }
      weighted.push({ weight: ref.weight ?? 1, cluster: res.ok ? res.cluster.name : null, filters: NONE });
    }
    const mirrors = resolveMirrors(route, rule, backends, out);
    const matches: HTTPRouteMatch[] = rule.matches?.length ? rule.matches : [{ path: { type: 'PathPrefix', value: '/' } }];
    const ruleLabel = rule.name ?? String(ruleIndex);
    const retry = toRetryPolicy(rule.retry);
    // One scope per rule, whatever its matches: a session begun on one of them continues on the others.
    const session = toSessionPersistence(rule.sessionPersistence, [routeName, ruleLabel].join('/'));
    // Backend filters may depend on the match (ReplacePrefixMatch); without any, every match sends the same way.
    const plain = (rule.backendRefs ?? []).every((b) => !b.filters?.length) ? sharedBackends(weighted, shared) : null;
    matches.forEach((m, matchIndex) => {
      const match = toMatch(m, shared);
      const entry: RouteEntry = {
        // join() makes one flat string; a template literal keeps a tree of pieces per entry.
        name: [routeName, ruleLabel, matchIndex].join('/'),
        match,
        filters: toFilters(rule.filters, match, mirrors),
        backends: plain ?? weighted.map((w, i) => ({ ...w, filters: toFilters(rule.backendRefs![i].filters, match, mirrors) })),
      };
      const timeouts = toTimeouts(rule);
      if (timeouts) entry.timeouts = timeouts;
      if (retry) entry.retry = retry;
      if (session) entry.sessionPersistence = session;
      out.entries.push(entry);
      out.entryRules.push(rule.name);
    });
  });
  return out;
}

/** Why a rule cannot be programmed, or null. Such a rule is dropped, the others stay. */
function ruleProblem(rule: HTTPRouteRule): string | null {
  for (const f of [...(rule.filters ?? []), ...(rule.backendRefs ?? []).flatMap((b: HTTPBackendRef) => b.filters ?? [])]) {
    if (!SUPPORTED_FILTERS.has(f.type)) return `filter type ${f.type} is not supported`;
  }
  for (const [i, b] of (rule.backendRefs ?? []).entries()) {
    for (const f of b.filters ?? []) {
      if (RULE_ONLY_FILTERS.has(f.type)) return `backendRefs[${i}]: a ${f.type} filter is supported on the rule, not on one of its backendRefs`;
    }
  }
  for (const [i, f] of (rule.filters ?? []).entries()) {
    if (f.type === 'CORS') {
      const problem = corsProblem(f.cors ?? {}, `filters[${i}]`);
      if (problem) return problem;
    }
  }
  if (rule.retry) {
    const problem = retryProblem(rule.retry);
    if (problem) return problem;
  }
  const sessionProblem = sessionPersistenceProblem(rule.sessionPersistence);
  if (sessionProblem) return sessionProblem;
  for (const m of rule.matches ?? []) {
    const regexes = [
      m.path?.type === 'RegularExpression' ? m.path.value : undefined,
      ...(m.headers ?? []).filter((h) => h.type === 'RegularExpression').map((h) => h.value),
      ...(m.queryParams ?? []).filter((q) => q.type === 'RegularExpression').map((q) => q.value),
    ];
    for (const re of regexes) {
      if (re === undefined) continue;
      try { new RegExp(re); } catch (e) { return `regular expression ${JSON.stringify(re)} is invalid: ${(e as Error).message}`; }
      if (NOT_RE2.test(re)) return `regular expression ${JSON.stringify(re)} uses a backreference or lookaround, which RE2 syntax does not have`;
    }
  }
  const t = rule.timeouts;
  if (t) {
    for (const [k, v] of Object.entries(t)) if (v !== undefined && parseDuration(v) === null) return `timeouts.${k} ${JSON.stringify(v)} is not a valid duration`;
    const req = t.request ? parseDuration(t.request)! : 0;
    const be = t.backendRequest ? parseDuration(t.backendRequest)! : 0;
    if (req > 0 && be > req) return `timeouts.backendRequest (${t.backendRequest}) must not be longer than timeouts.request (${t.request})`;
  }
  return null;
}

/** `weighted` (whose entries have no filters), or the equal list made earlier in this call. */
function sharedBackends(weighted: WeightedBackend[], shared: SharedParts): WeightedBackend[] {
  const key = weighted.map((w) => `${w.weight}\u0000${w.cluster === null ? '\u0001' : w.cluster}`).join('\u0000');
  let list = shared.backends.get(key);
  if (list === undefined) {
    for (const w of weighted) Object.freeze(w);
    shared.backends.set(key, list = Object.freeze(weighted) as WeightedBackend[]);
  }
  return list;
}

function toMatch(m: HTTPRouteMatch, shared: SharedParts): RouteMatch {
  const type = m.path?.type ?? 'PathPrefix';
  let value = m.path?.value ?? '/';
  // A prefix matches whole segments; "/foo/" and "/foo" select the same paths.
  if (type === 'PathPrefix' && value.length > 1 && value.endsWith('/')) value = value.replace(/\/+$/, '') || '/';
  if (!m.method && !m.headers?.length && !m.queryParams?.length) {
    const key = `${type}\u0000${value}`;
    let match = shared.matches.get(key);
    if (match === undefined) {
      match = Object.freeze({ path: Object.freeze({ type, value }), headers: NONE, queryParams: NONE }) as RouteMatch;
      shared.matches.set(key, match);
    }
    return match;
  }
  const out: RouteMatch = {
    path: { type, value },
    headers: mapOrNone(m.headers, (h) => ({ name: h.name.toLowerCase(), type: h.type ?? 'Exact', value: h.value })),
    queryParams: mapOrNone(m.queryParams, (q) => ({ name: q.name, type: q.type ?? 'Exact', value: q.value })),
  };
  if (m.method) out.method = m.method;
  return out;
}

/**
 * The RequestMirror filters of `rule` (its own and its backendRefs'),
 * each resolved like a backendRef: a usable one's cluster joins the
 * route's clusters; an unusable one is recorded as the route's reference
 * problem and left out of the IR.
 */
function resolveMirrors(route: HTTPRouteLike, rule: HTTPRouteRule, backends: BackendIndex, out: TranslatedHTTPRoute): ResolvedMirrors | null {
  let resolved: ResolvedMirrors | null = null;
  for (const f of [...(rule.filters ?? []), ...(rule.backendRefs ?? []).flatMap((b) => b.filters ?? [])]) {
    if (f.type !== 'RequestMirror' || !f.requestMirror) continue;
    const m = f.requestMirror;
    const res = resolveBackend(route, m.backendRef, backends);
    let filter: Filter | null = null;
    if (res.ok) {
      if (!out.clusters.includes(res.cluster)) out.clusters.push(res.cluster);
      if (res.problem) out.refProblem ??= res.problem;
      // Neither percent nor fraction: every request (the CRD's words).
      const [numerator, denominator] = m.percent !== undefined ? [m.percent, 100] : m.fraction ? [m.fraction.numerator, m.fraction.denominator ?? 100] : [1, 1];
      filter = { type: 'RequestMirror', cluster: res.cluster.name, numerator, denominator };
    } else {
      out.refProblem ??= { reason: res.reason, message: `requestMirror ${res.message}` };
    }
    (resolved ??= new Map()).set(f, filter);
  }
  return resolved;
}

/** The IR filters of `filters` for one match, without mirrors that could not be resolved. */
function toFilters(filters: HTTPRouteFilter[] | undefined, match: RouteMatch, mirrors: ResolvedMirrors | null): Filter[] {
  if (!filters?.length) return NONE;
  const out: Filter[] = [];
  for (const f of filters) {
    if (f.type === 'RequestMirror') {
      const mirror = mirrors?.get(f);
      if (mirror) out.push(mirror);
    } else {
      out.push(toFilter(f, match));
    }
  }
  return out.length ? out : NONE;
}

function toFilter(f: HTTPRouteFilter, match: RouteMatch): Filter {
  switch (f.type) {
    case 'CORS':
      return toCORSFilter(f.cors ?? {});
    case 'RequestHeaderModifier':
    case 'ResponseHeaderModifier': {
      const h = (f.type === 'RequestHeaderModifier' ? f.requestHeaderModifier : f.responseHeaderModifier) ?? {};
      return { type: f.type, set: h.set ?? [], add: h.add ?? [], remove: h.remove ?? [] };
    }
    case 'RequestRedirect': {
      const r = f.requestRedirect ?? {};
      const out: Filter = { type: 'RequestRedirect', statusCode: r.statusCode ?? 302 };
      if (r.scheme) out.scheme = r.scheme;
      if (r.hostname) out.hostname = r.hostname;
      if (r.port !== undefined) out.port = r.port;
      const path = toPathModifier(r.path, match);
      if (path) out.path = path;
      return out;
    }
    case 'URLRewrite': {
      const r = f.urlRewrite ?? {};
      const out: Filter = { type: 'URLRewrite' };
      if (r.hostname) out.hostname = r.hostname;
      const path = toPathModifier(r.path, match);
      if (path) out.path = path;
      return out;
    }
    default:
      throw new Error(`unsupported filter ${f.type} reached translation`);
  }
}

function toPathModifier(p: { type: string; replaceFullPath?: string; replacePrefixMatch?: string } | undefined, match: RouteMatch) {
  if (!p) return undefined;
  if (p.type === 'ReplaceFullPath') return { type: 'ReplaceFullPath' as const, value: p.replaceFullPath ?? '/' };
  return { type: 'ReplacePrefixMatch' as const, value: p.replacePrefixMatch ?? '/', prefix: match.path.value };
}

function toTimeouts(rule: HTTPRouteRule): RouteEntry['timeouts'] | undefined {
  const t = rule.timeouts;
  if (!t) return undefined;
  const out: NonNullable<RouteEntry['timeouts']> = {};
  // Zero means "no timeout", which is the absence of one.
  if (t.request) { const ms = parseDuration(t.request)!; if (ms > 0) out.requestMs = ms; }
  if (t.backendRequest) { const ms = parseDuration(t.backendRequest)!; if (ms > 0) out.backendRequestMs = ms; }
  return Object.keys(out).length ? out : undefined;
}
