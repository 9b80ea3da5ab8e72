// The state of one request while it is routed, filtered and forwarded. One
// object per request holds what every stage needs, so the stages pass it
// along instead of allocating their own views of the request.

import type { CompiledListener } from '../config.ts';
import type { DownstreamRequest, DownstreamResponse } from './downstream.ts';
import type { FilterTarget, HeaderModifier } from './filters.ts';
import { joinedValue, type HeaderTable } from './headers.ts';
import type { RequestFacts } from './match.ts';
import type { MirrorTarget } from './mirror.ts';
import { plainAddress } from './client-address.ts';
import type { RequestRecord } from './request-record.ts';

/** What a request reads from its listener: set per apply, read once per request. */
export interface ServingState {
  readonly current: CompiledListener;
  /** Set when the listener is being removed: answers ask the client to close. */
  readonly draining: boolean;
}

export class Exchange implements RequestFacts, FilterTarget {
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly state: ServingState;
  readonly listener: CompiledListener;
  readonly method: string;
  path: string;
  readonly query: string;
  readonly host: string;
  /** The Host header as received (port included), for upstream and X-Forwarded-Host. */
  readonly authority: string;
  readonly requestHeaders: HeaderTable;
  readonly hasBody: boolean;
  readonly scheme: 'http' | 'https';
  readonly listenerPort: number;
  /** What the metrics and the access log learn of this request. */
  readonly record: RequestRecord;
  upstreamHost: string | null = null;
  responseModifiers: HeaderModifier[] | null = null;
  mirrors: MirrorTarget[] | null = null;
  /** Route name once routed, for logs. */
  routeName = '';
  /**
   * The client's address as the listener's ClientTrafficPolicy resolves it
   * (X-Forwarded-For past trusted hops, a header, the PROXY protocol
   * source), or the connection's: what access logs and source-IP matching
   * read. Dual-stack IPv4 peers are shown as IPv4.
   */
  clientAddress: string;
  #queryParams: URLSearchParams | null = null;

  constructor(
    req: DownstreamRequest,
    res: DownstreamResponse,
    state: ServingState,
    listener: CompiledListener,
    target: { path: string; query: string; host: string; authority: string },
    headers: HeaderTable,
    hasBody: boolean,
    clientAddress: string | undefined,
    record: RequestRecord,
  ) {
    this.record = record;
    this.req = req;
    this.clientAddress = clientAddress === undefined ? plainAddress(req.remoteAddress) : clientAddress;
    this.res = res;
    this.state = state;
    this.listener = listener;
    this.method = req.method;
    this.path = target.path;
    this.query = target.query;
    this.host = target.host;
    this.authority = target.authority;
    this.requestHeaders = headers;
    this.hasBody = hasBody;
    this.scheme = listener.scheme;
    this.listenerPort = listener.port;
  }

  header(name: string): string | undefined {
    const value = this.requestHeaders.get(name);
    return value === undefined ? undefined : joinedValue(value);
  }

  queryParam(name: string): string | undefined {
    if (this.query === '') return undefined;
    // Parsed only when a route asks, once per request.
    this.#queryParams ??= new URLSearchParams(this.query);
    return this.#queryParams.get(name) ?? undefined;
  }

  /** path + query as sent upstream. */
  get upstreamTarget(): string {
    return this.query === '' ? this.path : this.path + this.query;
  }
}
