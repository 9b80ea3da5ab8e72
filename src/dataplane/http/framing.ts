// Vets the request head before anything reaches a backend. The parser
// (node's llhttp, strict mode) already rejects, before a request is emitted:
// Content-Length together with Transfer-Encoding, duplicate Content-Length
// (equal or not), non-numeric Content-Length, `chunked` not last or
// repeated, malformed lines and obs-fold. A final coding other than chunked
// it rejects only after it has emitted the request, so the handler must not
// have started forwarding by then. It lets through, and so this module
// rejects: codings before chunked (we would have to forward them without
// Transfer-Encoding, changing the body's meaning), Transfer-Encoding on
// HTTP/1.0, an HTTP/1.1 request without Host or with more than one, and
// more header lines than allowed.
//
// The request line is vetted first: llhttp accepts `HTTP/2.0` (and a
// versioned `HTTP/0.9`), which this HTTP/1 connection does not speak (505);
// TRACE is refused with 405 as nginx does (it would echo the request back,
// credentials included: cross-site tracing); CONNECT asks for a tunnel,
// which Gatehouse does not open: 405 as nginx answers, and 400 when its
// target is not a host:port at all (RFC 9112 §3.2.3: authority-form only).

import type { HeaderTable } from './headers.ts';

/** The parts of a received request the head is vetted on. */
export interface ReceivedHead {
  readonly rawHeaders: readonly string[];
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
}

export interface RequestHead {
  readonly headers: HeaderTable;
  /** The single Host header value; undefined only for HTTP/1.0, which may omit it. */
  readonly host: string | undefined;
  /** Whether a body follows the head (Content-Length > 0 or chunked). */
  readonly hasBody: boolean;
}

export interface Rejection {
  readonly status: 400 | 403 | 405 | 413 | 431 | 501 | 505;
  readonly reason: string;
}

/** The request line as received. */
export interface ReceivedRequestLine {
  readonly method: string;
  readonly url: string;
  readonly httpVersionMajor: number;
  /** Came as an HTTP/2 stream: version 2.0 is its own. */
  readonly http2: boolean;
}

/**
 * What a 405 lists in Allow (RFC 9110 §15.5.6 requires the field): the
 * methods Gatehouse forwards, for a gateway cannot know the resource's own.
 */
export const FORWARDED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

/** A request line that is not served whatever the route: its version or its method. */
export function refusedRequestLine(req: ReceivedRequestLine): Rejection | null {
  if (req.httpVersionMajor !== 1 && !req.http2) return { status: 505, reason: `HTTP/${req.httpVersionMajor} on an HTTP/1 connection` };
  const method = req.method;
  if (method === 'TRACE') return { status: 405, reason: 'TRACE is not forwarded' };
  if (method === 'CONNECT') {
    return req.url.charCodeAt(0) === 0x2f /* / */
      ? { status: 400, reason: 'CONNECT with a path as its target' }
      : { status: 405, reason: 'CONNECT tunnels are not opened' };
  }
  return null;
}

export function isRejection(head: RequestHead | Rejection): head is Rejection {
  return (head as Rejection).status !== undefined;
}

/** One pass over the raw header lines: vetted and collected into a HeaderTable. */
export function readRequestHead(req: ReceivedHead, maxHeaderCount: number): RequestHead | Rejection {
  const raw = req.rawHeaders;
  if (raw.length / 2 > maxHeaderCount) {
    return { status: 431, reason: `more than ${maxHeaderCount} header fields` };
  }
  const headers: HeaderTable = new Map();
  let host: string | undefined;
  let hostCount = 0;
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    if (name === 'host') {
      host = value;
      hostCount++;
    } else if (name === 'content-length') {
      contentLength = value;
    } else if (name === 'transfer-encoding') {
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding},${value}`;
    }
    const existing = headers.get(name);
    if (existing === undefined) headers.set(name, value);
    else if (typeof existing === 'string') headers.set(name, [existing, value]);
    else existing.push(value);
  }
  if (hostCount > 1) return { status: 400, reason: 'more than one Host header' };
  const http10 = req.httpVersionMajor === 1 && req.httpVersionMinor === 0;
  // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
  if (hostCount === 0 && !http10) return { status: 400, reason: 'no Host header' };
  let hasBody = contentLength !== undefined && contentLength !== '0';
  if (transferEncoding !== undefined) {
    if (http10) {
      return { status: 400, reason: 'Transfer-Encoding in an HTTP/1.0 request' };
    }
    const codings = transferEncoding.split(',');
    const last = codings[codings.length - 1].trim().toLowerCase();
    if (last !== 'chunked') return { status: 400, reason: 'final transfer coding is not chunked' };
    if (codings.length !== 1) return { status: 501, reason: 'transfer codings other than chunked' };
    hasBody = true;
  }
  return { headers, host, hasBody };
}
