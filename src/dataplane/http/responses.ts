// Answers the proxy gives itself (no route, no backend, redirects, refused
// requests), with the route's response header modifiers when it has any.

import { STATUS_CODES } from './status-text.ts';
import type { IncomingHttpHeaders } from 'node:http';
import type { DownstreamResponse } from './downstream.ts';
import { modifyResponseHeaders, type HeaderModifier } from './filters.ts';

export interface LocalReplyOptions {
  readonly location?: string;
  /** No body (a redirect, a CORS preflight's answer) rather than the status line as text. */
  readonly empty?: boolean;
  readonly modifiers?: readonly HeaderModifier[] | null;
  /** Close the connection after the reply: the request's framing cannot be trusted. */
  readonly close?: boolean;
  /** Set while the listener drains. */
  readonly draining?: boolean;
  /** The Allow field of a 405. */
  readonly allow?: string;
  /** Said after the status line in the body: why the gateway answered itself. */
  readonly reason?: string;
  /** Fields added as they are. */
  readonly headers?: Readonly<Record<string, string>>;
}

const bodies = new Map<number, Buffer>();

function bodyFor(status: number): Buffer {
  let body = bodies.get(status);
  if (body === undefined) {
    body = Buffer.from(`${status} ${STATUS_CODES[status] ?? ''}\n`);
    bodies.set(status, body);
  }
  return body;
}

export function sendLocalReply(res: DownstreamResponse, status: number, options: LocalReplyOptions = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const redirect = options.location !== undefined;
  const body = redirect || options.empty === true
    ? null
    : options.reason === undefined ? bodyFor(status) : Buffer.from(`${status} ${STATUS_CODES[status] ?? ''}: ${options.reason}\n`);
  const headers: IncomingHttpHeaders = {
    'content-length': String(body === null ? 0 : body.length),
  };
  if (body !== null) headers['content-type'] = 'text/plain; charset=utf-8';
  if (redirect) headers['location'] = options.location;
  if (options.allow !== undefined) headers['allow'] = options.allow;
  if (options.headers !== undefined) Object.assign(headers, options.headers);
  if (options.modifiers) modifyResponseHeaders(headers, options.modifiers);
  if (options.close || options.draining) res.shouldKeepAlive = false;
  res.writeHead(status, undefined, headers);
  res.end(body);
}
