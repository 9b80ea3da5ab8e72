// Active HTTP health checks (BackendTrafficPolicy healthCheck.active): one
// checker per endpoint of each cluster that asks for them, sending the
// configured request every interval and judging the response's status. An
// endpoint turns unhealthy after `unhealthyThreshold` failed checks in a
// row and healthy again after `healthyThreshold` good ones; it starts
// healthy. Checkers start and stop with the clusters of each config
// (update()), so a reload that drops a cluster stops its checks.
//
// They run once per process: on the data plane's thread when it runs
// alone, on the main thread for worker threads (WorkerPool), which sends
// each verdict to every worker. A check's answer does not depend on which
// thread asked, and N workers each checking would multiply the probes a
// backend sees by N.
//
// Every check is bounded: `timeoutMs` for connecting, sending and the
// response head together; a response head of at most MAX_HEAD_BYTES (a
// larger one fails the check); the body is never read, the connection is
// closed as soon as the status is known. A target that hangs or sends
// headers without end costs one socket for at most `timeoutMs`.

import type https from 'node:https';
import { createRequire } from 'node:module';
import type { ActiveHealthCheckIR, Cluster } from '../../ir/types.ts';
import type { LogFn } from '../log.ts';
import { EndpointStates } from './endpoint-state.ts';
import { upstreamTLSOptions, type UpstreamTLSOptions } from './tls.ts';

// Through require(), as the rest of the data plane: importing node:http as
// an ES module loads node's bundled undici into every worker thread
// (test/dataplane/footprint.test.ts), and workers only import this module.
const nodeRequire = createRequire(import.meta.url);
const http = nodeRequire('node:http') as typeof import('node:http');
const lazyHttps = (): typeof import('node:https') => nodeRequire('node:https') as typeof import('node:https');
const lazyHttp2 = (): typeof import('node:http2') => nodeRequire('node:http2') as typeof import('node:http2');

/** The most response head a check reads; node's http parser fails a larger one. */
export const MAX_HEAD_BYTES = 8 * 1024;

/** Called when an endpoint's verdict changes; `key` is EndpointStates.key(cluster, address, port). */
export type VerdictFn = (key: string, healthy: boolean) => void;

interface Target {
  readonly key: string;
  readonly cluster: string;
  readonly address: string;
  readonly port: number;
  readonly protocol: Cluster['protocol'];
  readonly tls: UpstreamTLSOptions | undefined;
  readonly check: ActiveHealthCheckIR;
}

export class ActiveHealthChecks {
  readonly #onVerdict: VerdictFn;
  readonly #log: LogFn;
  /** By what the checker does (target, check, transport): a change of any starts a new one. */
  #checkers = new Map<string, Checker>();

  constructor(onVerdict: VerdictFn, log: LogFn) {
    this.#onVerdict = onVerdict;
    this.#log = log;
  }

  /** Starts checkers for the endpoints of `clusters` that ask for checks, and stops those no longer asked for. */
  update(clusters: Record<string, Cluster>): void {
    const next = new Map<string, Checker>();
    for (const [name, cluster] of Object.entries(clusters)) {
      const check = cluster.policy?.healthCheck;
      if (check === undefined) continue;
      let tls: UpstreamTLSOptions | undefined;
      try {
        tls = cluster.tls === undefined ? undefined : upstreamTLSOptions(cluster.tls);
      } catch {
        continue; // The cluster serves nothing then (config.ts says why); nothing to check.
      }
      for (const e of cluster.endpoints) {
        const key = EndpointStates.key(name, e.address, e.port);
        const identity = JSON.stringify([key, check, cluster.protocol, cluster.tls ?? null]);
        if (next.has(identity)) continue;
        const checker = this.#checkers.get(identity)
          ?? new Checker({ key, cluster: name, address: e.address, port: e.port, protocol: cluster.protocol, tls, check }, this.#onVerdict, this.#log);
        next.set(identity, checker);
      }
    }
    for (const [identity, checker] of this.#checkers) if (!next.has(identity)) checker.stop();
    this.#checkers = next;
  }

  /** Endpoints currently judged unhealthy, by key: what a data plane that starts later must be told. */
  unhealthy(): string[] {
    return [...this.#checkers.values()].filter((c) => !c.healthy).map((c) => c.key);
  }

  /** How many checkers run (tests, diagnostics). */
  get size(): number {
    return this.#checkers.size;
  }

  close(): void {
    for (const checker of this.#checkers.values()) checker.stop();
    this.#checkers.clear();
  }
}

class Checker {
  readonly #target: Target;
  readonly #onVerdict: VerdictFn;
  readonly #log: LogFn;
  healthy = true;
  #failures = 0;
  #successes = 0;
  #timer: NodeJS.Timeout | null = null;
  /** Ends the check under way (its socket), if any. */
  #cancel: (() => void) | null = null;
  #stopped = false;

  constructor(target: Target, onVerdict: VerdictFn, log: LogFn) {
    this.#target = target;
    this.#onVerdict = onVerdict;
    this.#log = log;
    this.#timer = setTimeout(this.#run, 0);
    this.#timer.unref();
  }

  get key(): string {
    return this.#target.key;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#cancel?.();
    this.#cancel = null;
  }

  readonly #run = (): void => {
    this.#timer = null;
    if (this.#stopped) return;
    const t = this.#target;
    let settled = false;
    const done = (ok: boolean, why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      cancel();
      this.#cancel = null;
      if (this.#stopped) return;
      this.#judge(ok, why);
      this.#timer = setTimeout(this.#run, t.check.intervalMs);
      this.#timer.unref();
    };
    const deadline = setTimeout(() => done(false, `no response within ${t.check.timeoutMs} ms`), t.check.timeoutMs);
    deadline.unref();
    const cancel = t.protocol === 'h2c' && t.tls === undefined ? this.#h2(done) : this.#h1(done);
    this.#cancel = () => {
      settled = true;
      clearTimeout(deadline);
      cancel();
    };
  };

  /** One check over HTTP/1.1 (or TLS); returns how to cut it short. */
  #h1(done: (ok: boolean, why: string) => void): () => void {
    const t = this.#target;
    const host = t.address.includes(':') ? `[${t.address}]` : t.address;
    const options: https.RequestOptions = {
      host: t.address,
      port: t.port,
      method: t.check.method,
      path: t.check.path,
      headers: { host: `${host}:${t.port}`, 'user-agent': 'gatehouse-health-check', connection: 'close' },
      agent: false,
      maxHeaderSize: MAX_HEAD_BYTES,
      ...(t.tls ?? {}),
    };
    const req = (t.tls === undefined ? http : lazyHttps()).request(options, (res) => {
      const status = res.statusCode ?? 0;
      res.destroy();
      done(this.#expected(status), `status ${status}`);
    });
    req.on('error', (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
    req.end();
    return () => req.destroy();
  }

  /** One check over cleartext HTTP/2 with prior knowledge (an h2c cluster). */
  #h2(done: (ok: boolean, why: string) => void): () => void {
    const t = this.#target;
    const host = t.address.includes(':') ? `[${t.address}]` : t.address;
    const session = lazyHttp2().connect(`http://${host}:${t.port}`, { maxHeaderListPairs: 128, settings: { maxHeaderListSize: MAX_HEAD_BYTES } });
    session.on('error', (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
    const stream = session.request({ ':method': t.check.method, ':path': t.check.path, 'user-agent': 'gatehouse-health-check' }, { endStream: true });
    stream.on('response', (headers) => {
      const status = Number(headers[':status'] ?? 0);
      done(this.#expected(status), `status ${status}`);
    });
    stream.on('error', (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
    return () => session.destroy();
  }

  #expected(status: number): boolean {
    const expected = this.#target.check.expectedStatuses;
    return expected.length === 0 ? status >= 200 && status < 400 : expected.includes(status);
  }

  #judge(ok: boolean, why: string): void {
    const check = this.#target.check;
    if (ok) {
      this.#failures = 0;
      this.#successes++;
      if (!this.healthy && this.#successes >= check.healthyThreshold) this.#turn(true, why);
    } else {
      this.#successes = 0;
      this.#failures++;
      if (this.healthy && this.#failures >= check.unhealthyThreshold) this.#turn(false, why);
    }
  }

  #turn(healthy: boolean, why: string): void {
    this.healthy = healthy;
    const t = this.#target;
    this.#log(healthy ? 'info' : 'warn', healthy ? 'endpoint healthy again' : 'endpoint failed its health checks', {
      cluster: t.cluster, endpoint: `${t.address}:${t.port}`, last: why,
    });
    this.#onVerdict(t.key, healthy);
  }
}
