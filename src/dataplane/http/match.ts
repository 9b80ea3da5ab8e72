// One route's match conditions, compiled once per config: regexes built with
// full-match anchors, header names lower-cased, prefixes normalised, so a
// request only compares strings and runs prepared RegExps.
import '../regex-safety.ts';

import type { RouteMatch, StringMatch } from '../../ir/types.ts';

/** What a route match may ask about a request. */
export interface RequestFacts {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** All values of a header joined with `,`; `name` is lower-case. */
  header(name: string): string | undefined;
  /** First value of a query parameter; `name` is case-sensitive. */
  queryParam(name: string): string | undefined;
}

export type CompiledPathMatch =
  | { readonly kind: 'Exact'; readonly value: string }
  /** `value` has no trailing slash, except the root prefix `/`. */
  | { readonly kind: 'PathPrefix'; readonly value: string }
  | { readonly kind: 'RegularExpression'; readonly regex: RegExp };

export interface CompiledStringMatch {
  readonly name: string;
  /** Set for Exact matches. */
  readonly exact: string | null;
  /** Set for RegularExpression matches. */
  readonly regex: RegExp | null;
}

export interface CompiledMatch {
  readonly path: CompiledPathMatch;
  readonly method: string | null;
  readonly headers: readonly CompiledStringMatch[];
  readonly queryParams: readonly CompiledStringMatch[];
}

/**
 * Gateway API regular expressions must match the whole value; anchoring
 * inside a non-capturing group keeps alternations (`a|b`) whole too.
 * Throws a SyntaxError for an invalid expression.
 */
export function fullMatchRegExp(source: string): RegExp {
  return new RegExp(`^(?:${source})$`);
}

/**
 * `/foo/` and `/foo` are the same prefix, segment-wise; only `/` keeps its
 * slash.
 */
export function normalizePrefix(prefix: string): string {
  let end = prefix.length;
  while (end > 1 && prefix.charCodeAt(end - 1) === 0x2f) end--;
  return end === prefix.length ? prefix : prefix.slice(0, end);
}

/** `prefix` as normalised by normalizePrefix. */
export function hasPathPrefix(path: string, prefix: string): boolean {
  if (prefix === '/') return path.charCodeAt(0) === 0x2f;
  return (
    path.startsWith(prefix) &&
    (path.length === prefix.length || path.charCodeAt(prefix.length) === 0x2f)
  );
}

/** Throws (SyntaxError) when a regular expression does not compile. */
export function compileMatch(match: RouteMatch): CompiledMatch {
  let path: CompiledPathMatch;
  switch (match.path.type) {
    case 'Exact':
      path = { kind: 'Exact', value: match.path.value };
      break;
    case 'PathPrefix':
      path = { kind: 'PathPrefix', value: normalizePrefix(match.path.value) };
      break;
    case 'RegularExpression':
      path = { kind: 'RegularExpression', regex: fullMatchRegExp(match.path.value) };
      break;
    default:
      throw new TypeError(`unknown path match type ${String((match.path as { type: unknown }).type)}`);
  }
  return {
    path,
    method: match.method ?? null,
    headers: match.headers.map((m) => compileStringMatch(m, true)),
    queryParams: match.queryParams.map((m) => compileStringMatch(m, false)),
  };
}

function compileStringMatch(m: StringMatch, lowerCaseName: boolean): CompiledStringMatch {
  const name = lowerCaseName ? m.name.toLowerCase() : m.name;
  if (m.type === 'Exact') return { name, exact: m.value, regex: null };
  if (m.type === 'RegularExpression') return { name, exact: null, regex: fullMatchRegExp(m.value) };
  throw new TypeError(`unknown string match type ${String((m as { type: unknown }).type)}`);
}

/** Everything but the path, which the router's index has already decided. */
export function conditionsHold(match: CompiledMatch, facts: RequestFacts): boolean {
  if (match.method !== null && match.method !== facts.method) return false;
  const headers = match.headers;
  for (let i = 0; i < headers.length; i++) {
    const m = headers[i];
    const value = facts.header(m.name);
    if (value === undefined || !stringMatches(m, value)) return false;
  }
  const params = match.queryParams;
  for (let i = 0; i < params.length; i++) {
    const m = params[i];
    const value = facts.queryParam(m.name);
    if (value === undefined || !stringMatches(m, value)) return false;
  }
  return true;
}

function stringMatches(m: CompiledStringMatch, value: string): boolean {
  return m.exact !== null ? m.exact === value : (m.regex as RegExp).test(value);
}
