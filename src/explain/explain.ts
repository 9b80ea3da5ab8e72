// Explain: which listener, route, rule and backend one request would
// reach, and why every other candidate did not. It decides with the data
// plane's own tables and matchers (HostTable, RouteTable, compileMatch,
// SniTable) over the same IR translate() gives `serve`, so its answer is
// the data plane's; the per-candidate reasons only describe the losers.
import type { Gateway, GRPCRoute, HTTPRoute } from '../api/types.ts';
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import { statusKey } from '../translate/index.ts';
import type { IR, IRListener, RouteEntry, StringMatch } from '../ir/types.ts';
import { HostTable, hostFromAuthority, normalizePattern } from '../dataplane/hostnames.ts';
import { compileMatch, hasPathPrefix, type CompiledMatch, type CompiledStringMatch, type RequestFacts } from '../dataplane/http/match.ts';
import { normalizePath } from '../dataplane/http/path.ts';
import { RouteTable } from '../dataplane/http/router.ts';
import { SecureContextCache, SniTable } from '../dataplane/tls/sni.ts';
import type { ExplainRequest } from './request.ts';

/** What explain reads besides the IR: the objects and statuses translate() gave with it. */
export interface ExplainInput {
  readonly ir: IR;
  /** translate()'s statuses, `Kind|namespace|name` -> status. */
  readonly statuses: ReadonlyMap<string, unknown>;
  readonly gateways: readonly Gateway[];
  /** HTTPRoutes and GRPCRoutes: their creation times break precedence ties, and their status says why one is not attached. */
  readonly routes: readonly (HTTPRoute | GRPCRoute)[];
}

export interface Candidate {
  readonly name: string;
  readonly verdict: 'chosen' | 'skipped';
  readonly reason: string;
}

export interface RouteCandidate extends Candidate {
  /** `namespace/route`, the rule label and the match index of the entry. */
  readonly route: string;
  readonly rule: string;
  readonly match: number;
}

export interface ExplainBackend {
  readonly weight: number;
  /** null: an invalid reference, its share of requests gets a 500. */
  readonly cluster: string | null;
  readonly endpoints: readonly string[];
}

export interface UnattachedRoute {
  readonly route: string;
  readonly parentRef: unknown;
  readonly conditions: readonly { type: string; status: string; reason: string; message: string }[];
}

export interface ExplainResult {
  readonly request: { method: string; url: string; headers: readonly (readonly [string, string])[]; host: string; path: string; sni: string | null };
  readonly routed: boolean;
  /** What the data plane would do: `routed`, or the local answer (404, 421, ...) and why. */
  readonly outcome: string;
  readonly socket: { key: string; address: string; port: number; protocol: string } | null;
  readonly sockets: readonly Candidate[];
  readonly listener: string | null;
  readonly listeners: readonly Candidate[];
  readonly virtualHost: string | null;
  readonly virtualHosts: readonly Candidate[];
  readonly route: (RouteCandidate & { backends: readonly ExplainBackend[]; filters: readonly string[] }) | null;
  readonly routes: readonly RouteCandidate[];
  /** Routes whose parentRefs name a Gateway considered here but which some check refused. */
  readonly unattached: readonly UnattachedRoute[];
}

export function explain(input: ExplainInput, req: ExplainRequest): ExplainResult {
  return new Explainer(input, req).run();
}

class Explainer {
  readonly #input: ExplainInput;
  readonly #req: ExplainRequest;
  readonly #host: string;
  readonly #sni: string | null;
  #path = '';
  #socket: IRListener | null = null;
  #sockets: Candidate[] = [];
  #listener: string | null = null;
  #listeners: Candidate[] = [];
  #virtualHost: string | null = null;
  #virtualHosts: Candidate[] = [];
  #route: ExplainResult['route'] = null;
  #routes: RouteCandidate[] = [];

  constructor(input: ExplainInput, req: ExplainRequest) {
    this.#input = input;
    this.#req = req;
    this.#host = hostFromAuthority(req.authority);
    this.#sni = req.scheme === 'https' ? (req.sni ?? bareHost(this.#host)) : null;
  }

  run(): ExplainResult {
    const outcome = this.#decide();
    const gateways = this.#consideredGateways();
    return {
      request: { method: this.#req.method, url: this.#req.url, headers: this.#req.headers, host: this.#host, path: this.#path, sni: this.#sni },
      routed: outcome === 'routed',
      outcome,
      socket: this.#socket && { key: this.#socket.key, address: this.#socket.address, port: this.#socket.port, protocol: this.#socket.protocol },
      sockets: this.#sockets,
      listener: this.#listener,
      listeners: this.#listeners,
      virtualHost: this.#virtualHost,
      virtualHosts: this.#virtualHosts,
      route: this.#route,
      routes: this.#routes,
      unattached: unattachedRoutes(this.#input, gateways),
    };
  }

  /** The data plane's steps in its order (server.ts, handler.ts); returns the outcome. */
  #decide(): string {
    const req = this.#req;
    const path = normalizePath(req.path);
    if (typeof path !== 'string') return `400: path refused (${path.refused})`;
    this.#path = path;

    const socket = this.#chooseSocket();
    if (socket === null) {
      if (this.#sockets.length === 0) return `not served: no listener on port ${req.port}`;
      if (this.#sockets.some((s) => s.reason.startsWith('one of '))) return `ambiguous: several sockets on port ${req.port}; name one with --gateway or --address`;
      return `not served: no listener on port ${req.port} takes this request`;
    }
    this.#socket = socket;

    const table = new HostTable(socket.gatewayListeners.map((gl) => ({ pattern: normalizePattern(gl.hostname), value: gl })));
    let negotiated: string | null = null;
    if (socket.protocol === 'HTTPS') {
      const sni = SniTable.compile(socket.tls?.certificates ?? [], new SecureContextCache(), socket.tls?.clientValidation);
      if (sni.table === null) return `not served: listener ${socket.key} has no usable certificate`;
      if (!sni.table.serves(this.#sni)) return `TLS handshake refused: no certificate for SNI ${JSON.stringify(this.#sni)}`;
      negotiated = table.match(this.#sni === null ? '' : hostFromAuthority(this.#sni))?.name ?? null;
    }

    const chosen = table.match(this.#host);
    for (const gl of socket.gatewayListeners) {
      if (gl === chosen) this.#listeners.push({ name: gl.name, verdict: 'chosen', reason: `hostname ${gl.hostname ?? '(any)'} is the most specific that matches ${this.#host}` });
      else this.#listeners.push({ name: gl.name, verdict: 'skipped', reason: hostReason(gl.hostname, this.#host, chosen?.name) });
    }
    if (chosen === undefined) return `404: no listener on ${socket.key} has a hostname matching ${this.#host}`;
    this.#listener = chosen.name;
    // handler.ts: a Host of another listener than the one whose certificate the connection negotiated.
    if (socket.protocol === 'HTTPS' && chosen.name !== negotiated) {
      return `421: host ${this.#host} belongs to listener ${chosen.name}, but SNI ${JSON.stringify(this.#sni)} negotiated ${negotiated ?? 'no listener'}`;
    }

    const vhosts = new HostTable(chosen.virtualHosts.map((vh) => ({ pattern: normalizePattern(vh.hostname), value: vh })));
    const vh = vhosts.match(this.#host);
    for (const v of chosen.virtualHosts) {
      if (v === vh) this.#virtualHosts.push({ name: v.hostname, verdict: 'chosen', reason: `the most specific route hostname matching ${this.#host}` });
      else this.#virtualHosts.push({ name: v.hostname, verdict: 'skipped', reason: hostReason(v.hostname, this.#host, vh?.hostname) });
    }
    if (vh === undefined) return `404: no route attached to ${chosen.name} has a hostname matching ${this.#host}`;
    this.#virtualHost = vh.hostname;

    return this.#chooseRoute(vh.routes);
  }

  /**
   * Sockets on the request's port; narrowed by an IP literal in the URL,
   * --address, --gateway and --listener. A name in the URL cannot say which
   * address it resolves to: several sockets left is an ambiguity, said.
   */
  #chooseSocket(): IRListener | null {
    const req = this.#req;
    const ip = req.address ?? ipLiteral(this.#host);
    const left: IRListener[] = [];
    for (const s of this.#input.ir.listeners) {
      if (s.port !== req.port) continue;
      const skip = (reason: string) => this.#sockets.push({ name: s.key, verdict: 'skipped', reason });
      if (ip !== null && s.address !== ip && s.address !== '0.0.0.0' && s.address !== '::') skip(`bound to ${s.address}, not ${ip}`);
      else if (req.gateway !== undefined && !s.gatewayListeners.some((gl) => gl.name.startsWith(`${req.gateway}/`))) skip(`no listener of Gateway ${req.gateway}`);
      else if (req.listener !== undefined && !s.gatewayListeners.some((gl) => gl.name.endsWith(`/${req.listener}`))) skip(`no listener named ${req.listener}`);
      else if ((s.protocol === 'HTTPS') !== (req.scheme === 'https')) skip(`speaks ${s.protocol}, the URL is ${req.scheme}`);
      else left.push(s);
    }
    if (left.length === 0) return null;
    if (left.length > 1) {
      for (const s of left) this.#sockets.push({ name: s.key, verdict: 'skipped', reason: `one of ${left.length} sockets on port ${req.port}: name one with --gateway or --address` });
      return null;
    }
    const mtls = left[0].tls?.clientValidation?.mode === 'AllowValidOnly' ? '; clients must present a valid certificate' : '';
    this.#sockets.push({ name: left[0].key, verdict: 'chosen', reason: `${left[0].protocol} on port ${req.port}${mtls}` });
    return left[0];
  }

  #chooseRoute(entries: readonly RouteEntry[]): string {
    const facts = requestFacts(this.#req, this.#path);
    const compiled: { entry: RouteEntry; match: CompiledMatch }[] = [];
    const broken = new Map<RouteEntry, string>();
    for (const entry of entries) {
      try {
        compiled.push({ entry, match: compileMatch(entry.match) });
      } catch (e) {
        broken.set(entry, `match cannot be evaluated (${(e as Error).message}): the data plane drops it`);
      }
    }
    // The data plane's decision; the reasons below only describe it.
    const winner = new RouteTable(compiled).find(facts);
    const ages = routeAges(this.#input.routes);
    for (const entry of entries) {
      const id = entryId(entry.name);
      const c = compiled.find((x) => x.entry === entry);
      let reason: string;
      if (c === undefined) reason = broken.get(entry)!;
      else if (c === winner) reason = `matches (${describeMatch(entry)})${ordinal(entries, entry)}`;
      else {
        const miss = mismatch(c.match, entry, facts);
        if (miss !== null) reason = miss;
        else if (winner !== undefined) reason = `also matches, but ${winner.entry.name} comes first: ${precedenceReason(winner.entry, entry, ages)}`;
        else reason = 'matches, yet the data plane did not pick it (please report this)';
      }
      this.#routes.push({ name: entry.name, ...id, verdict: c !== undefined && c === winner ? 'chosen' : 'skipped', reason });
    }
    if (winner === undefined) return `404: no rule on host ${this.#virtualHost} matches ${this.#req.method} ${this.#path}`;
    const entry = winner.entry;
    const clusters = this.#input.ir.clusters;
    this.#route = {
      ...this.#routes.find((r) => r.name === entry.name)!,
      filters: entry.filters.map((f) => f.type),
      backends: entry.backends.map((b) => ({
        weight: b.weight,
        cluster: b.cluster,
        endpoints: b.cluster === null ? [] : (clusters[b.cluster]?.endpoints ?? []).map((e) => (e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`)),
      })),
    };
    return 'routed';
  }

  /** The Gateways whose unattached routes are worth showing: the chosen socket's, or every Gateway. */
  #consideredGateways(): Set<string> {
    const names = new Set<string>();
    const sockets = this.#socket !== null ? [this.#socket] : this.#input.ir.listeners.filter((s) => s.port === this.#req.port);
    for (const s of sockets) for (const gl of s.gatewayListeners) names.add(gl.name.split('/').slice(0, 2).join('/'));
    if (names.size === 0) for (const g of this.#input.gateways) names.add(nameOf(g));
    if (this.#req.gateway !== undefined) return new Set([this.#req.gateway]);
    return names;
  }
}

/** Route entries are named `namespace/route/rule/match`. */
function entryId(name: string): { route: string; rule: string; match: number } {
  const parts = name.split('/');
  return { route: parts.slice(0, 2).join('/'), rule: parts[2] ?? '', match: Number(parts[3] ?? 0) };
}

function ordinal(entries: readonly RouteEntry[], entry: RouteEntry): string {
  const i = entries.indexOf(entry);
  return i === 0 ? '; first in precedence order' : `; the ${i} rule(s) before it do not match`;
}

function describeMatch(e: RouteEntry): string {
  const m = e.match;
  const parts = [`path ${m.path.type} ${m.path.value}`];
  if (m.method !== undefined) parts.push(`method ${m.method}`);
  for (const h of m.headers) parts.push(`header ${h.name} ${h.type} ${h.value}`);
  for (const q of m.queryParams) parts.push(`query ${q.name} ${q.type} ${q.value}`);
  return parts.join(', ');
}

/** Why `match` does not hold for the request, first condition first; null when it holds. */
function mismatch(match: CompiledMatch, entry: RouteEntry, facts: RequestFacts): string | null {
  const p = match.path;
  if (p.kind === 'Exact' && facts.path !== p.value) return `path ${facts.path} is not exactly ${p.value}`;
  if (p.kind === 'PathPrefix' && !hasPathPrefix(facts.path, p.value)) return `path ${facts.path} is not under prefix ${p.value}`;
  if (p.kind === 'RegularExpression' && !p.regex.test(facts.path)) return `path ${facts.path} does not match regular expression ${entry.match.path.value}`;
  if (match.method !== null && match.method !== facts.method) return `method ${facts.method} is not ${match.method}`;
  const miss = (kind: string, m: CompiledStringMatch, spec: StringMatch, value: string | undefined) =>
    value === undefined ? `${kind} ${m.name} is absent (wants ${spec.type} ${spec.value})`
      : (m.exact !== null ? m.exact === value : m.regex!.test(value)) ? null
      : `${kind} ${m.name}: ${JSON.stringify(value)} does not match ${spec.type} ${spec.value}`;
  for (let i = 0; i < match.headers.length; i++) {
    const r = miss('header', match.headers[i], entry.match.headers[i], facts.header(match.headers[i].name));
    if (r !== null) return r;
  }
  for (let i = 0; i < match.queryParams.length; i++) {
    const r = miss('query parameter', match.queryParams[i], entry.match.queryParams[i], facts.queryParam(match.queryParams[i].name));
    if (r !== null) return r;
  }
  return null;
}

const PATH_RANK = { Exact: 3, RegularExpression: 2, PathPrefix: 1 } as const;

/**
 * The first criterion of Gateway API precedence (translate/precedence.ts)
 * on which `winner` outranks `other`, said in words.
 */
export function precedenceReason(winner: RouteEntry, other: RouteEntry, ages: ReadonlyMap<string, number>): string {
  const a = winner.match, b = other.match;
  if (PATH_RANK[a.path.type] !== PATH_RANK[b.path.type]) return `a ${a.path.type} path match outranks a ${b.path.type} one`;
  if (a.path.value.length !== b.path.value.length) return `its path ${a.path.value} is longer than ${b.path.value} (${a.path.value.length} > ${b.path.value.length} characters)`;
  if ((a.method !== undefined) !== (b.method !== undefined)) return `it matches on the method (${a.method}), the other does not`;
  if (a.headers.length !== b.headers.length) return `it has more header matches (${a.headers.length} > ${b.headers.length})`;
  if (a.queryParams.length !== b.queryParams.length) return `it has more query parameter matches (${a.queryParams.length} > ${b.queryParams.length})`;
  const wa = entryId(winner.name), wb = entryId(other.name);
  const ta = ages.get(wa.route) ?? 0, tb = ages.get(wb.route) ?? 0;
  if (ta !== tb) return `equal matches; its route ${wa.route} is older (created ${new Date(ta).toISOString()} vs ${new Date(tb).toISOString()})`;
  if (wa.route !== wb.route) return `equal matches and age; ${wa.route} comes first alphabetically`;
  return `equal matches in the same route; rule ${wa.rule} match ${wa.match} comes first in the route`;
}

function routeAges(routes: readonly (HTTPRoute | GRPCRoute)[]): Map<string, number> {
  return new Map(routes.map((r) => [nameOf(r), Date.parse(r.metadata.creationTimestamp ?? '') || 0]));
}

function hostReason(pattern: string | null, host: string, chosen: string | undefined): string {
  const p = normalizePattern(pattern);
  if (new HostTable([{ pattern: p, value: true }]).match(host) === undefined) return `hostname ${pattern} does not match ${host}`;
  return `hostname ${pattern ?? '(any)'} matches too, but ${chosen} is more specific`;
}

function requestFacts(req: ExplainRequest, path: string): RequestFacts {
  const headers = new Map<string, string[]>();
  for (const [name, value] of req.headers) {
    const key = name.toLowerCase();
    headers.set(key, [...(headers.get(key) ?? []), value]);
  }
  const query = new URLSearchParams(req.query);
  return {
    method: req.method,
    path,
    header: (name) => headers.get(name)?.join(','),
    queryParam: (name) => query.get(name) ?? undefined,
  };
}

function bareHost(host: string): string | null {
  // RFC 6066: SNI carries names, never IP literals; clients send none for an address.
  return ipLiteral(host) === null ? host : null;
}

function ipLiteral(host: string): string | null {
  const h = host.startsWith('[') ? host.slice(1, -1) : host;
  return /^[0-9.]+$/.test(h) || h.includes(':') ? h : null;
}

interface Condition { type: string; status: string; reason: string; message: string }

/** Routes with a parentRef to one of `gateways` that is not Accepted or whose references do not resolve, with the conditions saying why. */
function unattachedRoutes(input: ExplainInput, gateways: ReadonlySet<string>): UnattachedRoute[] {
  const out: UnattachedRoute[] = [];
  for (const route of input.routes) {
    const status = input.statuses.get(statusKey(route)) as { parents?: { parentRef: { name: string; namespace?: string; kind?: string }; conditions: Condition[] }[] } | undefined;
    for (const parent of status?.parents ?? []) {
      const ref = parent.parentRef;
      if ((ref.kind ?? 'Gateway') !== 'Gateway') continue;
      const gw = `${ref.namespace ?? namespaceOf(route)}/${ref.name}`;
      if (!gateways.has(gw)) continue;
      const bad = parent.conditions.filter((c) => (c.type === 'Accepted' || c.type === 'ResolvedRefs') && c.status !== 'True');
      if (bad.length === 0) continue;
      out.push({ route: nameOf(route), parentRef: ref, conditions: bad.map(({ type, status, reason, message }) => ({ type, status, reason, message })) });
    }
  }
  return out;
}
