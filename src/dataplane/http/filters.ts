// Gateway API filters: header modifiers, redirects, URL rewrites, request
// mirrors (mirror.ts sends the copies) and CORS (cors.ts). Everything a
// filter needs that does not depend on the request (lower-cased names,
// normalised prefixes, validated values, mirror clusters) is prepared at
// compile time.

import type { IncomingHttpHeaders } from 'node:http';
import type { Filter, Header, PathModifier } from '../../ir/types.ts';
import { applyCors, compileCors, type CompiledCors } from './cors.ts';
import { hasPathPrefix, normalizePrefix } from './match.ts';
import { joinedValue, type HeaderTable } from './headers.ts';
import type { MirrorTarget } from './mirror.ts';

/** Header changes with names lower-cased; applied remove, then set, then add. */
export interface HeaderModifier {
  readonly set: readonly (readonly [name: string, value: string])[];
  readonly add: readonly (readonly [name: string, value: string])[];
  readonly remove: readonly string[];
}

export type PathRewrite =
  | { readonly kind: 'ReplaceFullPath'; readonly value: string }
  /**
   * `prefix` is normalised like route prefixes; `value` has no trailing slash
   * and is empty for `/`, so joining it with the rest never doubles a slash.
   */
  | { readonly kind: 'ReplacePrefixMatch'; readonly prefix: string; readonly value: string };

export interface CompiledRedirect {
  readonly scheme: string | null;
  readonly hostname: string | null;
  readonly port: number | null;
  readonly path: PathRewrite | null;
  readonly statusCode: number;
}

export type CompiledFilter =
  | { readonly kind: 'RequestHeaderModifier'; readonly headers: HeaderModifier }
  | { readonly kind: 'ResponseHeaderModifier'; readonly headers: HeaderModifier }
  | { readonly kind: 'RequestRedirect'; readonly redirect: CompiledRedirect }
  | { readonly kind: 'URLRewrite'; readonly hostname: string | null; readonly path: PathRewrite | null }
  /** `target` is null when its cluster is not in the config: nothing is copied (the compile reports it). */
  | { readonly kind: 'RequestMirror'; readonly target: MirrorTarget | null }
  | { readonly kind: 'CORS'; readonly cors: CompiledCors };

/** The compiled mirror of a cluster, or null when the config has no such cluster. */
export type MirrorResolver = (cluster: string, numerator: number, denominator: number) => MirrorTarget | null;

/** The parts of an exchange that filters read and change. */
export interface FilterTarget {
  readonly method: string;
  /** Scheme the client used: the listener's. */
  readonly scheme: 'http' | 'https';
  /** Request host, port removed, lower-cased. */
  readonly host: string;
  readonly listenerPort: number;
  /** Path without query; rewritten in place by URLRewrite. */
  path: string;
  /** `?...` or empty; never rewritten. */
  readonly query: string;
  readonly requestHeaders: HeaderTable;
  /** Set by URLRewrite hostname; otherwise the original Host goes upstream. */
  upstreamHost: string | null;
  /** Collected response modifiers, applied to whatever response goes out. */
  responseModifiers: HeaderModifier[] | null;
  /** Mirrors this request is copied to (each chose whether to take it). */
  mirrors: MirrorTarget[] | null;
}

/**
 * An answer the filters give instead of forwarding: a redirect (with its
 * Location), or a CORS preflight's (an empty 200; its headers are in the
 * response modifiers).
 */
export interface LocalAnswer {
  readonly statusCode: number;
  /** The redirect's target; undefined for an answer without a body or Location. */
  readonly location: string | undefined;
}

const PREFLIGHT_ANSWER: LocalAnswer = Object.freeze({ statusCode: 200, location: undefined });

const REDIRECT_CODES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// No CR, LF or NUL: anything else visible may sit in a field value.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const HOSTNAME = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
const PATH = /^\/[^\s?#]*$/;

const WELL_KNOWN_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443 };

/**
 * Throws TypeError with the reason when the filter cannot be applied
 * safely. `mirrors` resolves RequestMirror clusters; without it a mirror
 * copies nothing.
 */
export function compileFilter(filter: Filter, mirrors?: MirrorResolver): CompiledFilter {
  switch (filter.type) {
    case 'RequestMirror': {
      const { numerator, denominator } = filter;
      if (!(Number.isInteger(numerator) && Number.isInteger(denominator) && numerator >= 0 && denominator >= 1)) {
        throw new TypeError(`invalid mirror fraction ${numerator}/${denominator}`);
      }
      return { kind: 'RequestMirror', target: mirrors?.(filter.cluster, numerator, denominator) ?? null };
    }
    case 'CORS':
      return { kind: 'CORS', cors: compileCors(filter) };
    case 'RequestHeaderModifier':
    case 'ResponseHeaderModifier':
      return { kind: filter.type, headers: compileHeaderModifier(filter.set, filter.add, filter.remove) };
    case 'RequestRedirect': {
      if (!REDIRECT_CODES.has(filter.statusCode)) {
        throw new TypeError(`redirect status code ${filter.statusCode} is not a redirect`);
      }
      if (filter.scheme !== undefined && !SCHEME.test(filter.scheme)) {
        throw new TypeError(`invalid redirect scheme ${JSON.stringify(filter.scheme)}`);
      }
      if (filter.port !== undefined && !(Number.isInteger(filter.port) && filter.port > 0 && filter.port < 65536)) {
        throw new TypeError(`invalid redirect port ${filter.port}`);
      }
      return {
        kind: 'RequestRedirect',
        redirect: {
          scheme: filter.scheme === undefined ? null : filter.scheme.toLowerCase(),
          hostname: filter.hostname === undefined ? null : checkHostname(filter.hostname),
          port: filter.port ?? null,
          path: filter.path === undefined ? null : compilePathRewrite(filter.path),
          statusCode: filter.statusCode,
        },
      };
    }
    case 'URLRewrite':
      return {
        kind: 'URLRewrite',
        hostname: filter.hostname === undefined ? null : checkHostname(filter.hostname),
        path: filter.path === undefined ? null : compilePathRewrite(filter.path),
      };
    default:
      throw new TypeError(`unknown filter type ${String((filter as { type: unknown }).type)}`);
  }
}

function compileHeaderModifier(set: Header[], add: Header[], remove: string[]): HeaderModifier {
  const pair = (h: Header): readonly [string, string] => {
    if (!TOKEN.test(h.name)) throw new TypeError(`invalid header name ${JSON.stringify(h.name)}`);
    if (!FIELD_VALUE.test(h.value)) throw new TypeError(`invalid value for header ${h.name}`);
    return [h.name.toLowerCase(), h.value];
  };
  return {
    set: set.map(pair),
    add: add.map(pair),
    remove: remove.map((name) => {
      if (!TOKEN.test(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
      return name.toLowerCase();
    }),
  };
}

function checkHostname(hostname: string): string {
  if (!HOSTNAME.test(hostname)) throw new TypeError(`invalid hostname ${JSON.stringify(hostname)}`);
  return hostname.toLowerCase();
}

function compilePathRewrite(modifier: PathModifier): PathRewrite {
  if (!PATH.test(modifier.value)) throw new TypeError(`invalid path ${JSON.stringify(modifier.value)}`);
  if (modifier.type === 'ReplaceFullPath') return { kind: 'ReplaceFullPath', value: modifier.value };
  if (modifier.type === 'ReplacePrefixMatch') {
    if (!PATH.test(modifier.prefix)) throw new TypeError(`invalid prefix ${JSON.stringify(modifier.prefix)}`);
    const value = normalizePrefix(modifier.value);
    return { kind: 'ReplacePrefixMatch', prefix: normalizePrefix(modifier.prefix), value: value === '/' ? '' : value };
  }
  throw new TypeError(`unknown path modifier ${String((modifier as { type: unknown }).type)}`);
}

export function rewritePath(rewrite: PathRewrite, path: string): string {
  if (rewrite.kind === 'ReplaceFullPath') return rewrite.value;
  const prefix = rewrite.prefix;
  // Only reachable with a matching PathPrefix route; anything else is left alone.
  if (!hasPathPrefix(path, prefix)) return path;
  const rest = prefix === '/' ? path : path.slice(prefix.length);
  const out = rewrite.value + rest;
  return out === '' ? '/' : out;
}

/**
 * Applies filters in order. Returns the answer to send when a filter ends
 * the exchange (a RequestRedirect, a CORS preflight), otherwise null.
 */
export function applyFilters(filters: readonly CompiledFilter[], target: FilterTarget, random: () => number = Math.random): LocalAnswer | null {
  for (let i = 0; i < filters.length; i++) {
    const filter = filters[i];
    switch (filter.kind) {
      case 'RequestHeaderModifier':
        modifyHeaderTable(target.requestHeaders, filter.headers);
        break;
      case 'ResponseHeaderModifier':
        (target.responseModifiers ??= []).push(filter.headers);
        break;
      case 'URLRewrite':
        if (filter.hostname !== null) target.upstreamHost = filter.hostname;
        if (filter.path !== null) target.path = rewritePath(filter.path, target.path);
        break;
      case 'RequestRedirect':
        return { statusCode: filter.redirect.statusCode, location: redirectLocation(filter.redirect, target) };
      case 'RequestMirror': {
        const t = filter.target;
        // Each request is a fresh draw: over many, the share comes out as asked.
        if (t !== null && t.numerator > 0 && (t.numerator >= t.denominator || random() * t.denominator < t.numerator)) {
          (target.mirrors ??= []).push(t);
        }
        break;
      }
      case 'CORS':
        if (applyCors(filter.cors, target)) return PREFLIGHT_ANSWER;
        break;
    }
  }
  return null;
}

export function redirectLocation(redirect: CompiledRedirect, target: FilterTarget): string {
  const scheme = redirect.scheme ?? target.scheme;
  const host = redirect.hostname ?? target.host;
  // Gateway API: a redirect that names a scheme goes to that scheme's
  // well-known port; one that does not stays on the listener's port.
  const port =
    redirect.port ??
    (redirect.scheme !== null ? (WELL_KNOWN_PORTS[scheme] ?? target.listenerPort) : target.listenerPort);
  const path = redirect.path === null ? target.path : rewritePath(redirect.path, target.path);
  const authority = WELL_KNOWN_PORTS[scheme] === port ? host : `${host}:${port}`;
  return `${scheme}://${authority}${path}${target.query}`;
}

function modifyHeaderTable(headers: HeaderTable, mod: HeaderModifier): void {
  for (const name of mod.remove) headers.delete(name);
  for (const [name, value] of mod.set) headers.set(name, value);
  for (const [name, value] of mod.add) {
    const existing = headers.get(name);
    headers.set(name, existing === undefined ? value : `${joinedValue(existing)},${value}`);
  }
}

/** Response headers as undici hands them over (lower-case names). */
export function modifyResponseHeaders(headers: IncomingHttpHeaders, mods: readonly HeaderModifier[]): void {
  for (const mod of mods) {
    for (const name of mod.remove) delete headers[name];
    for (const [name, value] of mod.set) headers[name] = value;
    for (const [name, value] of mod.add) {
      const existing = headers[name];
      if (existing === undefined) headers[name] = value;
      // Cookies cannot be comma-joined: each one is its own line.
      else if (name === 'set-cookie') headers[name] = [...(Array.isArray(existing) ? existing : [existing]), value];
      else headers[name] = `${Array.isArray(existing) ? existing.join(',') : existing},${value}`;
    }
  }
}
