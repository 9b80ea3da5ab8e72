// One list+watch of one kind (in one namespace, or cluster-wide), built on
// @kubernetes/client-node's ListWatch, which keeps the cache: it lists,
// watches from the list's resourceVersion, lists again after 410 Gone, and
// calls back only for objects whose resourceVersion changed (a relist that
// finds an object as it was keeps the instance it had). Around it, what it
// lacks:
// - watch bookmarks (allowWatchBookmarks), so that a quiet watch resumes
//   from a recent resourceVersion instead of expiring into a relist, and a
//   server-side watch timeout, randomized so reconnections spread out;
// - paginated lists of raw JSON (bounded pages);
// - retries after errors, which ListWatch leaves to its user: exponential
//   backoff with jitter, logged once per change of state, not per retry;
// - 404 reported to the owner (the kind's CRD is gone) instead of retried;
// - objects trimmed on receipt (managedFields, the last-applied annotation:
//   large, and read by nothing here) and completed (list items of built-in
//   kinds carry no apiVersion and kind).
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { rawGet, RawGetError } from './raw-get.ts';

export interface InformerTarget {
  /** `v1`, `apps/v1`, `gateway.networking.k8s.io/v1`: stamped on objects that come without it. */
  apiVersion: string;
  kind: string;
  /** The collection's URL path, e.g. `/api/v1/namespaces/team-a/secrets`. */
  path: string;
  labelSelector?: string;
  /** How logs and errors name what is watched: `Secret`, `HTTPRoute in team-a`. */
  name: string;
  /** 404 means the kind is not served any more (a CRD deleted): report it instead of retrying. */
  notFoundIsGone: boolean;
}

export interface InformerTiming {
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** The API server ends each watch after this many seconds (times 1 to 2, at random); it resumes from the last resourceVersion. */
  watchTimeoutSeconds: number;
  listPageSize: number;
  listTimeoutMs: number;
  listPageMaxBytes: number;
}

export const DEFAULT_INFORMER_TIMING: InformerTiming = {
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  // client-go's reflector: 5 to 10 minutes.
  watchTimeoutSeconds: 300,
  listPageSize: 500,
  listTimeoutMs: 60_000,
  // 500 objects of at most ~1.5 MB each is the theoretical worst; real pages are far smaller.
  listPageMaxBytes: 256 * 1024 * 1024,
};

export interface InformerHooks {
  /** An object was added, changed (new resourceVersion) or deleted. */
  changed(): void;
  /** The API server answered 404 and the target says that means gone; the informer has stopped. */
  gone(informer: Informer): void;
}

/**
 * A watch that finds the API server silent this long (no event, no
 * bookmark) is presumed dead and reconnected. Bookmarks come about once a
 * minute; ListWatch's own default (30 s) would reconnect every quiet watch
 * twice a minute.
 */
const WATCH_IDLE_MS = 90_000;

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

type Raw = k8s.KubernetesObject & Record<string, unknown>;

/** Trims and completes an object as it arrives (in place: it is ours alone). */
function receive(o: Raw, apiVersion: string, kind: string): void {
  if (!o.apiVersion) o.apiVersion = apiVersion;
  if (!o.kind) o.kind = kind;
  const meta = o.metadata;
  if (meta) {
    delete meta.managedFields;
    if (meta.annotations && Object.hasOwn(meta.annotations, LAST_APPLIED)) delete meta.annotations[LAST_APPLIED];
  }
}

/** The HTTP status of an error from a list or a watch (0: no answer). */
function statusOf(err: unknown): number {
  const e = err as { statusCode?: unknown; code?: unknown } | null;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return 0;
}

/** One line for logs: the status and the API server's message; never headers or bodies. */
function describe(err: unknown): string {
  if (err instanceof RawGetError) return err.message;
  const e = err as { name?: string; message?: string; cause?: { code?: string } } | null;
  if (e?.name === 'TimeoutError') return 'timed out';
  const code = statusOf(err);
  const first = String(e?.message ?? err).split('\n')[0].slice(0, 200);
  return `${code ? `HTTP ${code}: ` : ''}${first}${e?.cause?.code ? ` (${e.cause.code})` : ''}`;
}

/**
 * client-node's Watch with bookmarks, a server-side timeout and objects
 * trimmed before ListWatch stores them. `events` hears every event (a
 * bookmark included): the connection works.
 */
class TrimmingWatch extends k8s.Watch {
  readonly #target: InformerTarget;
  readonly #timing: InformerTiming;
  readonly #events: (phase: string, obj: unknown) => void;
  readonly #isClosed: () => boolean;

  constructor(kc: k8s.KubeConfig, target: InformerTarget, timing: InformerTiming, events: (phase: string, obj: unknown) => void, isClosed: () => boolean) {
    super(kc);
    this.#target = target;
    this.#timing = timing;
    this.#events = events;
    this.#isClosed = isClosed;
    // A private field of Watch, the idle timeout of the stream (see WATCH_IDLE_MS).
    const self = this as unknown as { requestTimeoutMs?: unknown };
    if (typeof self.requestTimeoutMs === 'number') self.requestTimeoutMs = WATCH_IDLE_MS;
  }

  override async watch(path: string, queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void, done: (err: any) => void): Promise<AbortController> {
    if (this.#isClosed()) {
      // ListWatch starts a watch after a list even when stopped meanwhile; a closed informer starts none.
      queueMicrotask(() => done(null));
      return new AbortController();
    }
    const base = this.#timing.watchTimeoutSeconds;
    const params = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: Math.round(base * (1 + Math.random())) };
    let ended = false;
    const controller = await super.watch(path, params, (phase, obj, watchObj) => {
      if ((phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') && obj && typeof obj === 'object') {
        receive(obj as Raw, this.#target.apiVersion, this.#target.kind);
      }
      this.#events(phase, obj);
      callback(phase, obj, watchObj);
    }, (err) => {
      ended = true;
      // ListWatch handles a 410 answer itself (it lists again) without telling anyone; say it here.
      if (err && statusOf(err) === 410) this.#events('ERROR', { code: 410 });
      done(err);
    });
    // Watch resolves once the API server has answered 200 (or failed, calling done first).
    if (!ended) this.#events('CONNECTED', null);
    return controller;
  }
}

export class Informer {
  readonly target: InformerTarget;
  readonly #kc: k8s.KubeConfig;
  readonly #log: Logger;
  readonly #timing: InformerTiming;
  readonly #hooks: InformerHooks;
  readonly #lw: k8s.ListWatch<Raw>;
  readonly #abort = new AbortController();
  #closed = false;
  #synced = false;
  #resolveSynced!: () => void;
  /** Resolves once the first list is in the cache. */
  readonly whenSynced: Promise<void>;
  /** Consecutive failures; 0 while things work. */
  #failures = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  /** What was last logged about this informer's health: one line when it starts failing, one when it works again. */
  #state: 'ok' | 'failing' = 'ok';
  /** The last error, for a start that times out. */
  lastError: string | null = null;

  constructor(kc: k8s.KubeConfig, target: InformerTarget, log: Logger, timing: InformerTiming, hooks: InformerHooks) {
    this.target = target;
    this.#kc = kc;
    this.#log = log;
    this.#timing = timing;
    this.#hooks = hooks;
    this.whenSynced = new Promise((resolve) => { this.#resolveSynced = resolve; });
    const watch = new TrimmingWatch(kc, target, timing, (phase, obj) => this.#onEvent(phase, obj), () => this.#closed);
    this.#lw = new k8s.ListWatch<Raw>(target.path, watch, () => this.#list(), false, target.labelSelector);
    const changed = () => { if (!this.#closed) this.#hooks.changed(); };
    this.#lw.on(k8s.ADD, changed);
    this.#lw.on(k8s.UPDATE, changed);
    this.#lw.on(k8s.DELETE, changed);
    this.#lw.on(k8s.ERROR, (err) => this.#onError(err));
  }

  get synced(): boolean {
    return this.#synced;
  }

  start(): void {
    this.#lw.start().catch((err) => this.#onError(err));
  }

  /** The objects as they are now; the same instances while their resourceVersion is unchanged. */
  list(): ReadonlyArray<Raw> {
    return this.#lw.list();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Nobody waits on a closed informer's first list.
    this.#resolveSynced();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#abort.abort();
    void this.#lw.stop();
  }

  async #list(): Promise<k8s.KubernetesListObject<Raw>> {
    const items: Raw[] = [];
    let resourceVersion: string | undefined;
    let continueToken: string | undefined;
    do {
      const q = new URLSearchParams({ limit: String(this.#timing.listPageSize) });
      if (this.target.labelSelector) q.set('labelSelector', this.target.labelSelector);
      if (continueToken) q.set('continue', continueToken);
      const page = await rawGet(this.#kc, `${this.target.path}?${q}`, {
        timeoutMs: this.#timing.listTimeoutMs, maxBytes: this.#timing.listPageMaxBytes, signal: this.#abort.signal,
      }) as { items?: Raw[] | null; metadata?: { resourceVersion?: string; continue?: string } };
      for (const item of page.items ?? []) {
        receive(item, this.target.apiVersion, this.target.kind);
        items.push(item);
      }
      // Every page of one list is at the first page's resourceVersion.
      resourceVersion ??= page.metadata?.resourceVersion;
      continueToken = page.metadata?.continue || undefined;
    } while (continueToken);
    this.#working();
    if (!this.#synced) {
      // ListWatch files the items once this promise has resolved, synchronously after it.
      setImmediate(() => {
        if (this.#synced || this.#closed) return;
        this.#synced = true;
        this.#resolveSynced();
      });
    }
    return { items, metadata: { resourceVersion } };
  }

  #onEvent(phase: string, obj: unknown): void {
    if (phase === 'ERROR') {
      const code = (obj as { code?: unknown } | null)?.code;
      // ListWatch lists again when the stream ends; worth a line, it is rare and costs a full list.
      if (code === 410) this.#log.info({ watch: this.target.name }, `${this.target.name}: resourceVersion expired (410 Gone); listing again`);
      return;
    }
    this.#working();
  }

  #working(): void {
    if (this.#state !== 'ok') {
      this.#log.info({ watch: this.target.name, failedAttempts: this.#failures, lastError: this.lastError }, `${this.target.name}: watching again`);
      this.#state = 'ok';
    }
    this.#failures = 0;
    this.lastError = null;
  }

  #onError(err: unknown): void {
    if (this.#closed) return;
    const code = statusOf(err);
    if (code === 404 && this.target.notFoundIsGone) {
      this.close();
      this.#hooks.gone(this);
      return;
    }
    if (code === 410) {
      // ListWatch has already forgotten the resourceVersion: the retry lists.
      this.#log.info({ watch: this.target.name }, `${this.target.name}: resourceVersion expired (410 Gone); listing again`);
    }
    const why = describe(err);
    this.lastError = why;
    this.#failures++;
    // Exponential, bounded, with jitter (half to all of the step) so that
    // many informers failing together do not retry together.
    const step = Math.min(this.#timing.backoffMaxMs, this.#timing.backoffBaseMs * 2 ** Math.min(this.#failures - 1, 30));
    const delay = Math.round(step * (0.5 + Math.random() * 0.5));
    if (this.#state !== 'failing') {
      this.#log.warn({ watch: this.target.name, error: why }, `${this.target.name}: list/watch failed; retrying with backoff (up to ${this.#timing.backoffMaxMs / 1000} s)`);
      this.#state = 'failing';
    }
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#closed) this.start();
    }, delay);
    this.#retryTimer.unref?.();
  }
}
