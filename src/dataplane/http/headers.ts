// Request headers as the proxy holds them between parsing and forwarding,
// and the header rules that do not depend on a route: hop-by-hop removal
// (RFC 9110 §7.6.1) in both directions.

import type { IncomingHttpHeaders } from 'node:http';

/**
 * Lower-cased name -> value; repeated header lines keep their separate
 * values in an array so they are forwarded as they came.
 */
export type HeaderTable = Map<string, string | string[]>;

/** A field value (or request target) that would break a message's framing. */
export const UNSAFE_FIELD_VALUE = /[\r\n\0]/;

/**
 * `head` with the line `name: value` added. One append per piece: a
 * template literal per line would also allocate its intermediate strings,
 * most of what a message head costs.
 */
export function appendField(head: string, name: string, value: string): string {
  head += name;
  head += ': ';
  head += value;
  head += '\r\n';
  return head;
}

/** A header's values as one string, joined with `,` as route matches and `add` see them. */
export function joinedValue(value: string | string[]): string {
  return typeof value === 'string' ? value : value.join(',');
}

/**
 * Always hop-by-hop. `te` is handled apart: it may pass when it only asks
 * for trailers.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export function isHopByHop(lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName);
}

/** Names listed in Connection: they describe this hop only. */
function connectionOptions(connection: string | string[] | undefined): string[] | null {
  if (connection === undefined) return null;
  const names = joinedValue(connection).split(',');
  const out: string[] = [];
  for (const name of names) {
    const trimmed = name.trim().toLowerCase();
    if (trimmed !== '') out.push(trimmed);
  }
  return out.length === 0 ? null : out;
}

/** Keep `TE: trailers` (a promise the next hop may rely on), drop any other coding. */
function teForNextHop(te: string | string[]): string | null {
  for (const token of joinedValue(te).split(',')) {
    const coding = token.split(';', 1)[0].trim().toLowerCase();
    if (coding === 'trailers') return 'trailers';
  }
  return null;
}

export function stripHopByHopFromTable(headers: HeaderTable): void {
  const named = connectionOptions(headers.get('connection'));
  if (named !== null) for (const name of named) headers.delete(name);
  for (const name of HOP_BY_HOP) headers.delete(name);
  const te = headers.get('te');
  if (te !== undefined) {
    const kept = teForNextHop(te);
    if (kept === null) headers.delete('te');
    else headers.set('te', kept);
  }
}

/**
 * Removes by setting to undefined (writeHead skips those): `delete` would
 * turn the object into a hash table, the costliest allocation of a response.
 */
export function stripHopByHopFromResponse(headers: IncomingHttpHeaders): void {
  const connection = headers['connection'];
  if (connection !== undefined) {
    const named = connectionOptions(connection);
    if (named !== null) for (const name of named) if (headers[name] !== undefined) headers[name] = undefined;
  }
  for (const name of HOP_BY_HOP) {
    // Trailer announces the trailer section, which goes on (proxy.ts): it stays.
    if (name !== 'trailer' && headers[name] !== undefined) headers[name] = undefined;
  }
  // A response has no business sending TE; it is a request header.
  if (headers['te'] !== undefined) headers['te'] = undefined;
}

/**
 * Fields a trailer section must not carry (RFC 9110 §6.5.1: framing,
 * routing, content description), besides the hop-by-hop ones: a
 * recipient would take them for the head's, so they go no further.
 */
const NOT_IN_TRAILERS: ReadonlySet<string> = new Set([
  'content-length',
  'content-encoding',
  'content-type',
  'content-range',
  'host',
  'te',
  'trailer',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'set-cookie',
]);

/**
 * The trailer section to pass on, or null when there is none; a string
 * naming the limit when it is over the header limits (the same as a head's:
 * `maxHeaderCount` fields, `maxHeaderBytes` of names and values), which
 * makes the response unfit to complete.
 */
export function trailersToForward(
  trailers: IncomingHttpHeaders | Record<string, string | string[] | undefined> | undefined,
  maxCount: number,
  maxBytes: number,
): Record<string, string | string[]> | null | string {
  if (trailers === undefined) return null;
  let out: Record<string, string | string[]> | null = null;
  let count = 0;
  let bytes = 0;
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    const values = typeof value === 'string' ? [value] : value;
    for (const v of values) {
      count++;
      bytes += lower.length + v.length;
    }
    if (NOT_IN_TRAILERS.has(lower) || lower.charCodeAt(0) === 0x3a /* : */) continue;
    if (values.some((v) => UNSAFE_FIELD_VALUE.test(v))) continue;
    (out ??= {})[lower] = value;
  }
  if (count > maxCount) return `trailer section over ${maxCount} fields`;
  if (bytes > maxBytes) return `trailer section over ${maxBytes} bytes`;
  return out;
}

/** Whether a request's TE field (RFC 9110 §10.1.4) says its client takes trailer fields. */
export function acceptsTrailers(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length !== 2 || rawHeaders[i].toLowerCase() !== 'te') continue;
    for (const token of rawHeaders[i + 1].split(',')) {
      if (token.split(';', 1)[0].trim().toLowerCase() === 'trailers') return true;
    }
  }
  return false;
}
