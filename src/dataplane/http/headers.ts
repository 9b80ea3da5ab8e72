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
    if (headers[name] !== undefined) headers[name] = undefined;
  }
  // A response has no business sending TE; it is a request header.
  if (headers['te'] !== undefined) headers['te'] = undefined;
}
