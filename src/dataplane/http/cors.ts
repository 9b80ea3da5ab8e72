// The CORS filter (Gateway API GEP-1767, the Fetch standard's CORS
// protocol): the gateway answers preflights itself and adds the CORS
// response headers to whatever answer a cross-origin request gets.
//
// - A preflight is an OPTIONS request with Origin and
//   Access-Control-Request-Method. It never reaches a backend: an allowed
//   origin gets 200 with the allow-* headers, any other 200 without them
//   (the spec allows that or 403; the browser refuses either way).
// - Any other request with an allowed Origin is forwarded, and its
//   response (the backend's or the gateway's own) gets
//   Access-Control-Allow-Origin, -Allow-Credentials and -Expose-Headers,
//   replacing any the backend sent.
// - Access-Control-Allow-Origin always repeats the request's Origin, never
//   `*`: always valid (with credentials it is the only valid answer), and
//   one rule instead of two. Every response of a CORS route gets
//   `Vary: Origin`, since what it says depends on the Origin; preflights
//   vary on the two request headers they answer as well.
// - A wildcard method or header list answers with what was asked for
//   (Access-Control-Request-Method / -Headers), which the spec requires
//   with credentials and allows without. Expose-Headers `*` is sent as `*`
//   without credentials; with them `*` would be read literally, and the
//   header is left out (only the CORS-safelisted headers are exposed).
// - The Origin `null` (sandboxed documents, redirects, file: pages) and
//   anything that is not `scheme://host[:port]` is never allowed, not even
//   by `*`: echoing `null` would let any sandboxed page in.
//
// Everything that does not depend on the request is prepared by compileCors.

import type { CORSFilter } from '../../ir/types.ts';
import type { HeaderModifier } from './filters.ts';
import type { HeaderTable } from './headers.ts';

interface OriginPattern {
  readonly scheme: string;
  /** Exact host, or null for any host. */
  readonly host: string | null;
  /** `.example.com` for `*.example.com`: a host ending in it, with at least one label before. */
  readonly suffix: string | null;
  readonly port: string;
}

export interface CompiledCors {
  readonly anyOrigin: boolean;
  /** Normalised `scheme://host:port` of the exact origins. */
  readonly exact: ReadonlySet<string>;
  readonly patterns: readonly OriginPattern[];
  /** `GET, POST`, or null when none are listed. */
  readonly methods: string | null;
  readonly anyMethod: boolean;
  readonly headers: string | null;
  readonly anyHeader: boolean;
  /** The Access-Control-Expose-Headers value to send, or null for none. */
  readonly expose: string | null;
  readonly maxAge: string;
  readonly credentials: boolean;
}

/** What a preflight gets besides the allow-* headers. */
const PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';
const VARY_ORIGIN: HeaderModifier = Object.freeze({
  set: Object.freeze([]) as [],
  add: Object.freeze([Object.freeze(['vary', 'Origin'] as const)]),
  remove: Object.freeze([]) as [],
});

const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: '80', https: '443' };
// Origin as a browser serialises it (RFC 6454 §6.2): scheme, host, port.
const ORIGIN = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;
// The CRD's form: host may be `*` or start with `*.`.
const CONFIGURED_ORIGIN = /^(https?):\/\/(\*|(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::(\d{1,5}))?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Throws TypeError with the reason for a value that cannot be served safely. */
export function compileCors(filter: CORSFilter): CompiledCors {
  const exact = new Set<string>();
  const patterns: OriginPattern[] = [];
  let anyOrigin = false;
  for (const origin of filter.allowOrigins) {
    if (origin === '*') {
      anyOrigin = true;
      continue;
    }
    const m = CONFIGURED_ORIGIN.exec(origin);
    if (m === null) throw new TypeError(`invalid CORS origin ${JSON.stringify(origin)}`);
    const scheme = m[1].toLowerCase();
    const host = m[2].toLowerCase();
    const port = m[3] ?? DEFAULT_PORTS[scheme];
    if (!(Number(port) >= 1 && Number(port) <= 65535)) throw new TypeError(`invalid port in CORS origin ${JSON.stringify(origin)}`);
    if (host === '*') patterns.push({ scheme, host: null, suffix: null, port });
    else if (host.startsWith('*.')) patterns.push({ scheme, host: null, suffix: host.slice(1), port });
    else exact.add(`${scheme}://${host}:${port}`);
  }
  const names = (list: readonly string[], what: string): string[] => {
    for (const n of list) if (n !== '*' && !TOKEN.test(n)) throw new TypeError(`invalid CORS ${what} ${JSON.stringify(n)}`);
    return list.filter((n) => n !== '*');
  };
  const methods = names(filter.allowMethods, 'method');
  const headers = names(filter.allowHeaders, 'header name');
  const expose = names(filter.exposeHeaders, 'header name');
  const exposeAny = filter.exposeHeaders.includes('*');
  if (!(Number.isInteger(filter.maxAgeSeconds) && filter.maxAgeSeconds >= 0)) throw new TypeError(`invalid CORS max age ${filter.maxAgeSeconds}`);
  return {
    anyOrigin,
    exact,
    patterns,
    methods: methods.length === 0 ? null : methods.join(', '),
    anyMethod: filter.allowMethods.includes('*'),
    headers: headers.length === 0 ? null : headers.join(', '),
    anyHeader: filter.allowHeaders.includes('*'),
    // `*` is literal with credentials (Fetch): then nothing beyond the safelist is exposed.
    expose: exposeAny ? (filter.allowCredentials ? null : '*') : expose.length === 0 ? null : expose.join(', '),
    maxAge: String(filter.maxAgeSeconds),
    credentials: filter.allowCredentials,
  };
}

/** Whether `origin` (the request's Origin, as sent) is allowed. */
export function originAllowed(cors: CompiledCors, origin: string): boolean {
  const m = ORIGIN.exec(origin);
  if (m === null) return false;
  if (cors.anyOrigin) return true;
  const scheme = m[1].toLowerCase();
  const host = m[2].toLowerCase();
  const port = m[3] === undefined ? DEFAULT_PORTS[scheme] : String(Number(m[3]));
  if (port === undefined) return false;
  if (cors.exact.has(`${scheme}://${host}:${port}`)) return true;
  for (const p of cors.patterns) {
    if (p.scheme !== scheme || p.port !== port) continue;
    if (p.suffix === null) return true;
    if (host.length > p.suffix.length && host.endsWith(p.suffix)) return true;
  }
  return false;
}

/** The headers a CORS-aware request consults, as CORS reads them (one value each). */
export interface CorsRequest {
  readonly method: string;
  readonly requestHeaders: HeaderTable;
  /** Collected response modifiers: CORS adds its own to whatever answer goes out. */
  responseModifiers: HeaderModifier[] | null;
}

/**
 * Applies the filter: returns true when the request is a preflight, which
 * the caller answers with an empty 200 (the headers are in
 * responseModifiers); false when the request goes on.
 */
export function applyCors(cors: CompiledCors, req: CorsRequest): boolean {
  const mods = (req.responseModifiers ??= []);
  const origin = single(req.requestHeaders.get('origin'));
  const requestedMethod = single(req.requestHeaders.get('access-control-request-method'));
  const preflight = req.method === 'OPTIONS' && origin !== undefined && requestedMethod !== undefined;
  if (origin === undefined || !originAllowed(cors, origin)) {
    mods.push(preflight ? preflightVary() : VARY_ORIGIN);
    return preflight;
  }
  const set: [string, string][] = [['access-control-allow-origin', origin]];
  if (cors.credentials) set.push(['access-control-allow-credentials', 'true']);
  if (cors.expose !== null) set.push(['access-control-expose-headers', cors.expose]);
  if (!preflight) {
    mods.push({ set, add: VARY_ORIGIN.add, remove: [] });
    return false;
  }
  const methods = cors.anyMethod ? requestedMethod : cors.methods;
  if (methods !== null && methods !== undefined) set.push(['access-control-allow-methods', methods]);
  const requestedHeaders = joined(req.requestHeaders.get('access-control-request-headers'));
  const headers = cors.anyHeader ? requestedHeaders : cors.headers;
  if (headers !== null && headers !== undefined && headers !== '') set.push(['access-control-allow-headers', headers]);
  set.push(['access-control-max-age', cors.maxAge]);
  mods.push({ set, add: [['vary', PREFLIGHT_VARY]], remove: [] });
  return true;
}

function preflightVary(): HeaderModifier {
  return { set: [], add: [['vary', PREFLIGHT_VARY]], remove: [] };
}

/** A header sent once, or undefined (absent, or repeated: no valid Origin is two lines). */
function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function joined(value: string | string[] | undefined): string | undefined {
  return value === undefined ? undefined : typeof value === 'string' ? value : value.join(', ');
}
