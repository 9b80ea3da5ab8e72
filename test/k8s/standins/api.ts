// What the stand-ins (kubelet, kube-proxy, MetalLB) need from the API
// server, as the real components use it: plain JSON requests (get, create,
// merge patches of status subresources, deletes with preconditions) and a
// list-then-watch loop per resource with a resourceVersion, resumed after
// a dropped watch and listed again after 410 Gone.
//
// Raw JSON on purpose: the generated clients turn timestamps into Dates
// and drop fields they do not know; a stand-in patches exactly what the
// real component would.
import https from 'node:https';
import * as k8s from '@kubernetes/client-node';

/** A bound on every request: an API server that stopped answering must not hang a test. */
const REQUEST_TIMEOUT_MS = 15_000;
/** Answers larger than this are refused: a list of a test cluster's pods is far smaller. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/** Pause before a watch is opened again after it failed (not after a normal end). */
const WATCH_RETRY_MS = 500;

export type Json = Record<string, any>;

export interface ApiAnswer {
  status: number;
  body: Json | null;
}

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A small JSON client on a KubeConfig's credentials. */
export class Api {
  readonly kc: k8s.KubeConfig;
  readonly #server: string;
  #options: Promise<https.RequestOptions>;

  constructor(kc: k8s.KubeConfig) {
    this.kc = kc;
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.#server = cluster.server.replace(/\/+$/, '');
    this.#options = (async () => {
      const o: https.RequestOptions = {};
      await kc.applyToHTTPSOptions(o);
      return o;
    })();
  }

  /** Any answer comes back (the caller reads the status); only a network failure or the deadline throws. */
  async call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiAnswer> {
    const base = await this.#options;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = https.request(this.#server + path, {
        ...base,
        method,
        headers: {
          ...base.headers,
          accept: 'application/json',
          ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}),
        },
        timeout: REQUEST_TIMEOUT_MS,
      }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`${method} ${path}: answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => {
          let parsed: Json | null = null;
          try { parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { /* not JSON: the status says enough */ }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      });
      // Covers a silent server between the bytes too: the socket's idle timeout.
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like call(), but an answer outside 2xx (and not in `accept`) throws with the API server's message. */
  async must(method: string, path: string, body?: unknown, contentType?: string, accept: number[] = []): Promise<ApiAnswer> {
    const a = await this.call(method, path, body, contentType);
    if ((a.status >= 200 && a.status < 300) || accept.includes(a.status)) return a;
    throw new ApiError(a.status, `${method} ${path}: HTTP ${a.status} ${a.body?.reason ?? ''}: ${String(a.body?.message ?? '').slice(0, 300)}`);
  }

  get(path: string): Promise<ApiAnswer> { return this.call('GET', path); }
  mergePatch(path: string, patch: unknown): Promise<ApiAnswer> { return this.must('PATCH', path, patch, 'application/merge-patch+json'); }
}

export interface WatchHandlers {
  /** Called for every object of each list (with `relist` true) and every ADDED/MODIFIED event. */
  upsert(obj: Json, relist: boolean): void;
  deleted(obj: Json): void;
  /** After a (re)list: keys of objects not in it are gone. */
  synced?(keys: Set<string>): void;
}

export function keyOf(obj: Json): string {
  const m = obj.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name}` : m.name;
}

/**
 * List, then watch from the list's resourceVersion; resume the watch from
 * the last version seen when it ends, list again on 410 Gone. What an
 * informer does, without the cache: the handlers keep their own state.
 */
export function listWatch(api: Api, path: string, handlers: WatchHandlers, onError: (msg: string) => void): { close(): void; synced: Promise<void> } {
  let closed = false;
  let abort: AbortController | null = null;
  let resolveSynced!: () => void;
  const synced = new Promise<void>((r) => { resolveSynced = r; });
  const watcher = new k8s.Watch(api.kc);

  async function list(): Promise<string> {
    const a = await api.must('GET', path);
    const keys = new Set<string>();
    for (const item of a.body!.items ?? []) {
      keys.add(keyOf(item));
      handlers.upsert(item, true);
    }
    handlers.synced?.(keys);
    resolveSynced();
    return a.body!.metadata.resourceVersion;
  }

  async function run(): Promise<void> {
    let rv: string | null = null;
    while (!closed) {
      try {
        if (rv === null) rv = await list();
        const opened = Date.now();
        const gone = await new Promise<boolean>((resolve) => {
          let expired = false;
          void watcher.watch(path, { resourceVersion: rv!, allowWatchBookmarks: true }, (type, obj) => {
            if (type === 'ERROR') {
              if (obj?.code === 410) expired = true;
              else onError(`watch ${path}: ${obj?.message ?? 'error event'}`);
              return;
            }
            if (obj?.metadata?.resourceVersion) rv = obj.metadata.resourceVersion;
            if (type === 'ADDED' || type === 'MODIFIED') handlers.upsert(obj, false);
            else if (type === 'DELETED') handlers.deleted(obj);
          }, (err) => {
            // The client ends an idle watch after 30 s: that is a normal end, resumed at once.
            if (err && err.name !== 'TimeoutError' && err.name !== 'AbortError' && !closed) onError(`watch ${path}: ${err.message ?? err}`);
            resolve(expired || (err?.statusCode === 410));
          }).then((c) => { abort = c; if (closed) c.abort(); }, (err) => {
            onError(`watch ${path}: ${err.message}`);
            resolve(false);
          });
        });
        if (gone) rv = null;
        // A watch that fails as soon as it opens must not spin.
        else if (Date.now() - opened < 1_000) await sleep(WATCH_RETRY_MS);
      } catch (err) {
        if (!closed) onError(`list ${path}: ${(err as Error).message}`);
        await sleep(WATCH_RETRY_MS);
      }
    }
  }
  void run();
  return {
    synced,
    close() {
      closed = true;
      abort?.abort();
    },
  };
}
