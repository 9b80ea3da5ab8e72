// Upstream connection pools, one per endpoint origin (lean.ts, or undici's
// Pool with GATEHOUSE_UPSTREAM=undici). Pools outlive configs: a config
// change that keeps an endpoint keeps its warm keep-alive connections. Each compiled config holds a reference to the
// pools it uses; a pool closes (gracefully: queued and running requests
// finish) when the last reference is released.

import type { Dispatcher } from 'undici';
import { createHash } from 'node:crypto';
import type { Cluster, Endpoint } from '../../ir/types.ts';
import { DEFAULT_LIMITS, type RequestLimits } from '../limits.ts';
import type { LogFn } from '../log.ts';
import type { UpstreamCluster } from './balancer.ts';
import { LeanPool } from './lean.ts';
import { H2cPool } from './h2c.ts';
import { upstreamTLSOptions } from './tls.ts';

export interface Pool {
  /** `cluster`: whose connection cap and queue apply (the lean client; undici's Pool caps per endpoint). */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler, cluster?: UpstreamCluster): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

/** GATEHOUSE_UPSTREAM=undici forwards with undici's Pool instead of the lean client. */
const LEAN = process.env.GATEHOUSE_UPSTREAM !== 'undici';
// Loaded only when asked for: undici costs ~24 MB of memory in every
// thread that imports it.
const undici = LEAN ? null : await import('undici');

/** How a cluster's endpoints are spoken to: the part of a Cluster that pools depend on. */
export type UpstreamTransport = Pick<Cluster, 'protocol' | 'tls' | 'policy'>;

/**
 * The pool key of an endpoint: `http://host:port`; `h2c://host:port` for
 * cleartext HTTP/2; over TLS `https://host:port#` and a digest of the TLS
 * settings, so clusters that reach one endpoint with different policies
 * (another CA, SNI, client certificate) never share a connection. The
 * digest keeps key material out of the key, which is logged.
 */
export function endpointOrigin(endpoint: Endpoint, transport?: UpstreamTransport): string {
  const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
  // A policy's connect or idle timeout makes pools of their own: a pool has one of each.
  const connect = transport?.policy?.connectTimeoutMs;
  const idle = transport?.policy?.connectionIdleTimeoutMs;
  const timing = connect === undefined && idle === undefined ? '' : `ct=${connect ?? ''},it=${idle ?? ''}`;
  if (transport?.tls !== undefined) {
    const digest = createHash('sha256').update(JSON.stringify(transport.tls)).digest('hex').slice(0, 16);
    return `https://${host}:${endpoint.port}#${digest}${timing === '' ? '' : `,${timing}`}`;
  }
  const suffix = timing === '' ? '' : `#${timing}`;
  if (transport?.protocol === 'h2c') return `h2c://${host}:${endpoint.port}${suffix}`;
  return `http://${host}:${endpoint.port}${suffix}`;
}

interface PoolEntry {
  readonly pool: Pool;
  refs: number;
}

/** The limits the pools apply (limits.ts): timeouts, and the connection cap and queue per cluster. */
export type UpstreamLimits = Pick<
  RequestLimits,
  | 'upstreamConnectTimeoutMs'
  | 'upstreamResponseTimeoutMs'
  | 'upstreamIdleTimeoutMs'
  | 'maxUpstreamConnectionsPerCluster'
  | 'maxPendingRequestsPerCluster'
>;

export interface UpstreamPoolOptions extends Partial<UpstreamLimits> {
  /**
   * How long an idle upstream connection is kept. Shorter than the usual
   * backend keep-alive (node's 5 s, Apache's 5 s), so that we, not the
   * backend, close an idle connection: a backend that closes first can
   * meet our next request on the wire. Named apart from RequestLimits'
   * keepAliveTimeoutMs (the client side's, 60 s), which the data plane's
   * limits object, passed here whole, also carries.
   */
  upstreamKeepAliveTimeoutMs?: number;
}

export class UpstreamPools {
  readonly #entries = new Map<string, PoolEntry>();
  readonly #closing = new Map<Pool, Promise<void>>();
  readonly #options: UpstreamPoolOptions;
  readonly #log: LogFn;

  constructor(log: LogFn, options: UpstreamPoolOptions = {}) {
    this.#log = log;
    this.#options = options;
  }

  /**
   * The pool for `origin` (endpointOrigin of the endpoint and `transport`),
   * created if needed; pair every call with release(). Throws when the TLS
   * settings cannot be used (bad PEM); nothing is acquired then.
   */
  acquire(origin: string, transport?: UpstreamTransport): Pool {
    let entry = this.#entries.get(origin);
    if (entry === undefined) {
      const o = this.#options;
      const keepAliveTimeout = transport?.policy?.connectionIdleTimeoutMs ?? o.upstreamKeepAliveTimeoutMs ?? 4_000;
      const connectTimeout = transport?.policy?.connectTimeoutMs ?? o.upstreamConnectTimeoutMs ?? DEFAULT_LIMITS.upstreamConnectTimeoutMs;
      const responseTimeout = o.upstreamResponseTimeoutMs ?? DEFAULT_LIMITS.upstreamResponseTimeoutMs;
      const idleTimeout = o.upstreamIdleTimeoutMs ?? DEFAULT_LIMITS.upstreamIdleTimeoutMs;
      const maxConnections = o.maxUpstreamConnectionsPerCluster ?? DEFAULT_LIMITS.maxUpstreamConnectionsPerCluster;
      const tls = transport?.tls === undefined ? undefined : upstreamTLSOptions(transport.tls);
      const pool: Pool = transport?.protocol === 'h2c' && tls === undefined
        ? new H2cPool(origin, { connectTimeout, responseTimeout, idleTimeout, keepAliveTimeout, maxPending: o.maxPendingRequestsPerCluster ?? DEFAULT_LIMITS.maxPendingRequestsPerCluster })
        : LEAN || tls !== undefined
        ? new LeanPool(origin, {
            tls,
            keepAliveTimeout,
            connectTimeout,
            responseTimeout,
            idleTimeout,
            maxConnections,
            maxPending: o.maxPendingRequestsPerCluster ?? DEFAULT_LIMITS.maxPendingRequestsPerCluster,
          })
        : new undici!.Pool(origin, {
            keepAliveTimeout,
            connectTimeout,
            headersTimeout: responseTimeout,
            bodyTimeout: idleTimeout,
            // Per endpoint: undici has no cap across a cluster's endpoints,
            // and its queue of waiting requests has no bound.
            connections: maxConnections,
            // A backend that lies about Content-Length must not corrupt the
            // next response on the same connection.
            strictContentLength: true,
          });
      entry = { pool, refs: 0 };
      this.#entries.set(origin, entry);
    }
    entry.refs++;
    return entry.pool;
  }

  release(origin: string): void {
    const entry = this.#entries.get(origin);
    if (entry === undefined) return;
    if (--entry.refs > 0) return;
    this.#entries.delete(origin);
    const pool = entry.pool;
    const closing = pool
      .close()
      .catch((err: unknown) => this.#log('warn', 'upstream pool close failed', { origin, error: String(err) }))
      .finally(() => this.#closing.delete(pool));
    this.#closing.set(pool, closing);
  }

  /** Origins with a live pool, for tests and diagnostics. */
  origins(): string[] {
    return [...this.#entries.keys()];
  }

  /** Waits for released pools to finish closing; destroys what is left after `graceMs`. */
  async closeAll(graceMs: number): Promise<void> {
    for (const entry of this.#entries.values()) entry.refs = 1;
    for (const origin of [...this.#entries.keys()]) this.release(origin);
    const pending = [...this.#closing.values()];
    if (pending.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
      timer.unref();
    });
    const outcome = await Promise.race([Promise.all(pending).then(() => 'done' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#log('warn', 'upstream pools did not close in time; destroying them');
      await Promise.all([...this.#closing.keys()].map((pool) => pool.destroy().catch(() => {})));
    }
  }
}
