// The Kubernetes provider: every kind translate reads, listed and watched
// from the API server (informer.ts), validated as the file provider's
// objects are, for the control loop. Plus, for the controller alone,
// GatewayParameters and the Deployments Gatehouse provisioned (extra()).
//
// - Gateway API kinds and GatewayParameters are watched at the newest
//   version the API server serves that validation knows, found once at
//   start. A kind whose CRD is not installed is empty, and looked for
//   again on a slow period, so that installing the CRD later works without
//   a restart; a CRD deleted while watched makes its kind empty the same way.
// - An object the API server stored but validation refuses (stored under
//   an older, laxer CRD) is a problem; its last valid version, if any, is
//   kept, as the file provider does.
// - read() gives the same object instances while their resourceVersion is
//   unchanged (translate memoizes on identity) and the same result while
//   nothing changed; onChange fires only for a new resourceVersion or a
//   deletion, folded over a few milliseconds.
// - Namespaces: with `namespaces`, one informer per namespace for each
//   namespaced kind (GatewayClass and Namespace stay cluster-wide); with
//   `namespaceSelector`, everything is watched and namespaced objects are
//   given only from namespaces whose labels match, as the API server
//   evaluates the selector (a watch of Namespaces with that selector), so a
//   namespace relabelled in or out changes what read() gives.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { EXPERIMENTAL_GROUP, GATEWAY_GROUP, type KubeObject } from '../../api/types.ts';
import { describeObject, isNamespacedKind, validateObject, type ValidationResult } from '../../api/validate.ts';
import type { Problem, Provider, ProviderRead, ReadObject } from '../../control/loop.ts';
import { schemaFor } from '../../api/schema.ts';
import { chooseVersion, discoverGroup, type ServedKind } from './discovery.ts';
import { DEFAULT_INFORMER_TIMING, Informer, type InformerTarget, type InformerTiming } from './informer.ts';
import { rawGet, RawGetError } from './raw-get.ts';

export interface KubernetesProviderTiming extends Partial<InformerTiming> {
  /** How long start() waits for every informer's first list. */
  syncTimeoutMs?: number;
  /** How often kinds whose CRD is not installed are looked for again. */
  missingKindRetryMs?: number;
  /** Changes within this many milliseconds of the first make one onChange. */
  coalesceMs?: number;
}

export interface KubernetesProviderOptions {
  kubeConfig: k8s.KubeConfig;
  log: Logger;                 // pino
  namespaces?: string[];       // watch only these namespaces (namespaced kinds); undefined: all
  namespaceSelector?: string;  // label selector on Namespaces: only objects in matching namespaces are given to read()
  /** For tests; the defaults suit a cluster. */
  timing?: KubernetesProviderTiming;
}

export type ExtraKind = 'GatewayParameters' | 'Deployment';

const GATEHOUSE_GROUP = 'gatehouse.dev';
const MANAGED_BY_GATEHOUSE = 'app.kubernetes.io/managed-by=gatehouse';

/** The kinds read() gives, in the order it gives them. */
const READ_KINDS = [
  'GatewayClass', 'Gateway', 'ListenerSet', 'XListenerSet', 'HTTPRoute', 'GRPCRoute', 'TLSRoute', 'TCPRoute', 'UDPRoute', 'ReferenceGrant', 'BackendTLSPolicy',
  'ClientTrafficPolicy', 'BackendTrafficPolicy', 'Namespace', 'Service', 'EndpointSlice', 'Secret', 'ConfigMap',
] as const;

/** Kinds served by every API server, at a fixed version. */
const BUILT_IN: Record<string, ServedKind & { labelSelector?: string }> = {
  Namespace: { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  Service: { group: '', version: 'v1', kind: 'Service', plural: 'services', namespaced: true },
  Secret: { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true },
  ConfigMap: { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true },
  EndpointSlice: { group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', plural: 'endpointslices', namespaced: true },
  Deployment: { group: 'apps', version: 'v1', kind: 'Deployment', plural: 'deployments', namespaced: true, labelSelector: MANAGED_BY_GATEHOUSE },
};

/** Kinds of CRDs, by group: found by discovery, possibly not installed. */
const DISCOVERED: Record<string, string[]> = {
  [GATEWAY_GROUP]: ['GatewayClass', 'Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'TLSRoute', 'TCPRoute', 'UDPRoute', 'ReferenceGrant', 'BackendTLSPolicy'],
  [GATEHOUSE_GROUP]: ['GatewayParameters', 'ClientTrafficPolicy', 'BackendTrafficPolicy'],
  // Gateway API v1.4's name of ListenerSet: read where that bundle's CRD is still installed.
  [EXPERIMENTAL_GROUP]: ['XListenerSet'],
};

interface KindSlot {
  kind: string;
  group: string;
  /** A CRD kind: may be missing, and is looked for again while it is. */
  discovered: boolean;
  /** Where it is served; null while its CRD is not installed. */
  served: ServedKind | null;
  labelSelector?: string;
  informers: Informer[];
}

type Raw = k8s.KubernetesObject & Record<string, unknown>;

function apiVersionOf(s: ServedKind): string {
  return s.group ? `${s.group}/${s.version}` : s.version;
}

function collectionPath(s: ServedKind, namespace: string | undefined): string {
  const base = s.group ? `/apis/${s.group}/${s.version}` : `/api/${s.version}`;
  return namespace === undefined ? `${base}/${s.plural}` : `${base}/namespaces/${encodeURIComponent(namespace)}/${s.plural}`;
}

/**
 * True when validation has the schema of this version (Gateway API kinds
 * and Gatehouse's policies); GatewayParameters is not validated here.
 */
function knownToValidation(s: ServedKind): boolean {
  return (s.group === GATEHOUSE_GROUP && s.kind === 'GatewayParameters') || schemaFor(apiVersionOf(s), s.kind).found;
}

function byNamespaceAndName(a: Raw, b: Raw): number {
  const an = a.metadata?.namespace ?? '';
  const bn = b.metadata?.namespace ?? '';
  if (an !== bn) return an < bn ? -1 : 1;
  const a1 = a.metadata?.name ?? '';
  const b1 = b.metadata?.name ?? '';
  return a1 < b1 ? -1 : a1 > b1 ? 1 : 0;
}

export class KubernetesProvider implements Provider {
  readonly #kc: k8s.KubeConfig;
  readonly #log: Logger;
  readonly #namespaces: string[] | undefined;
  readonly #selector: string | undefined;
  readonly #timing: InformerTiming;
  readonly #syncTimeoutMs: number;
  readonly #missingRetryMs: number;
  readonly #coalesceMs: number;
  readonly #slots = new Map<string, KindSlot>();
  /** Namespaces matching the selector (the API server's answer), when there is one. */
  #selected: Informer | null = null;
  #closed = false;
  readonly #abort = new AbortController();
  #rediscoverTimer: NodeJS.Timeout | null = null;

  /** Bumped on every change; caches below are valid for one generation. */
  #generation = 0;
  #readCache: { generation: number; read: ProviderRead } | null = null;
  readonly #extraCache = new Map<ExtraKind, { generation: number; objects: KubeObject[] }>();
  /** Validation of each raw object, kept with the instance (ListWatch keeps it while its resourceVersion holds). */
  #validated = new WeakMap<object, ValidationResult>();
  /** The last valid version of each object, kept while a newer version does not validate. */
  #lastValid = new Map<string, KubeObject>();

  readonly #listeners = new Set<() => void>();
  #notifyTimer: NodeJS.Timeout | null = null;

  private constructor(opts: KubernetesProviderOptions) {
    this.#kc = opts.kubeConfig;
    this.#log = opts.log;
    this.#namespaces = opts.namespaces ? [...new Set(opts.namespaces)] : undefined;
    this.#selector = opts.namespaceSelector?.trim() || undefined;
    const t = opts.timing ?? {};
    const d = DEFAULT_INFORMER_TIMING;
    this.#timing = {
      backoffBaseMs: t.backoffBaseMs ?? d.backoffBaseMs,
      backoffMaxMs: t.backoffMaxMs ?? d.backoffMaxMs,
      watchTimeoutSeconds: t.watchTimeoutSeconds ?? d.watchTimeoutSeconds,
      listPageSize: t.listPageSize ?? d.listPageSize,
      listTimeoutMs: t.listTimeoutMs ?? d.listTimeoutMs,
      listPageMaxBytes: t.listPageMaxBytes ?? d.listPageMaxBytes,
    };
    this.#syncTimeoutMs = t.syncTimeoutMs ?? 60_000;
    this.#missingRetryMs = t.missingKindRetryMs ?? 30_000;
    this.#coalesceMs = t.coalesceMs ?? 20;
  }

  /**
   * Discovers the served versions, starts every informer and resolves once
   * each has listed (kinds not served count as listed, empty). Rejects
   * after the sync timeout, naming what did not list and why.
   */
  static async start(opts: KubernetesProviderOptions): Promise<KubernetesProvider> {
    const p = new KubernetesProvider(opts);
    try {
      await p.#start();
      return p;
    } catch (err) {
      await p.close();
      throw err;
    }
  }

  async #start(): Promise<void> {
    const deadline = Date.now() + this.#syncTimeoutMs;
    if (this.#namespaces?.length === 0) throw new Error('namespaces: the list is empty; leave it out to watch every namespace');
    if (this.#selector !== undefined) await this.#checkSelector();

    for (const [kind, s] of Object.entries(BUILT_IN)) {
      this.#slots.set(kind, { kind, group: s.group, discovered: false, served: s, labelSelector: s.labelSelector, informers: [] });
    }
    for (const [group, kinds] of Object.entries(DISCOVERED)) {
      for (const kind of kinds) this.#slots.set(kind, { kind, group, discovered: true, served: null, informers: [] });
    }
    for (const group of Object.keys(DISCOVERED)) {
      const found = await this.#discoverUntil(group, deadline);
      for (const kind of DISCOVERED[group]) {
        const slot = this.#slots.get(kind)!;
        slot.served = chooseVersion(found.get(kind), knownToValidation);
        if (!slot.served) this.#logMissing(slot);
      }
    }
    for (const slot of this.#slots.values()) if (slot.served) this.#startSlot(slot);
    if (this.#selector !== undefined) {
      this.#selected = this.#informer(BUILT_IN.Namespace, undefined, this.#selector, `Namespaces matching ${JSON.stringify(this.#selector)}`);
      this.#selected.start();
    }
    this.#scheduleRediscovery();

    const all = () => [...[...this.#slots.values()].flatMap((s) => s.informers), ...(this.#selected ? [this.#selected] : [])];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now())); });
    try {
      // Informers can be replaced while waiting (a CRD deleted): wait again until every current one has listed.
      for (;;) {
        const pending = all().filter((i) => !i.synced);
        if (pending.length === 0) break;
        if (await Promise.race([Promise.all(pending.map((i) => i.whenSynced)), timeout]) === 'timeout') {
          const why = all().filter((i) => !i.synced).map((i) => `${i.target.name}${i.lastError ? ` (${i.lastError})` : ''}`);
          throw new Error(`the Kubernetes provider did not list everything within ${this.#syncTimeoutMs / 1000} s; not listed: ${why.join(', ')}`);
        }
      }
    } finally {
      clearTimeout(timer);
    }
    this.#log.info({
      kinds: [...this.#slots.values()].filter((s) => s.served).map((s) => `${s.kind} ${apiVersionOf(s.served!)}`),
      missing: [...this.#slots.values()].filter((s) => !s.served).map((s) => s.kind),
      namespaces: this.#namespaces ?? 'all', namespaceSelector: this.#selector,
    }, 'Kubernetes provider synced');
  }

  /** Fails at once on a selector the API server refuses, instead of retrying it until the sync timeout. */
  async #checkSelector(): Promise<void> {
    try {
      await rawGet(this.#kc, `/api/v1/namespaces?${new URLSearchParams({ labelSelector: this.#selector!, limit: '1' })}`, { timeoutMs: 15_000, maxBytes: 1024 * 1024, signal: this.#abort.signal });
    } catch (err) {
      if (err instanceof RawGetError && err.statusCode === 400) throw new Error(`namespaceSelector ${JSON.stringify(this.#selector)}: ${err.message}`);
      // Anything else (the API server not answering yet) is for the informers' retries.
    }
  }

  async #discoverUntil(group: string, deadline: number): Promise<Map<string, ServedKind[]>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await discoverGroup(this.#kc, group, this.#abort.signal);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        if (this.#closed || Date.now() > deadline) throw new Error(`cannot discover the API group ${group}: ${why}`);
        if (attempt === 1) this.#log.warn({ group, error: why }, `cannot discover the API group ${group}; retrying`);
        const step = Math.min(this.#timing.backoffMaxMs, this.#timing.backoffBaseMs * 2 ** Math.min(attempt - 1, 30));
        await new Promise((r) => setTimeout(r, Math.min(Math.max(0, deadline - Date.now()), step * (0.5 + Math.random() * 0.5))));
      }
    }
  }

  #informer(served: ServedKind, namespace: string | undefined, labelSelector: string | undefined, name: string, discovered = false): Informer {
    const target: InformerTarget = {
      apiVersion: apiVersionOf(served), kind: served.kind, path: collectionPath(served, namespace), labelSelector, name, notFoundIsGone: discovered,
    };
    return new Informer(this.#kc, target, this.#log, this.#timing, {
      changed: () => this.#changed(),
      gone: () => this.#gone(served.kind),
    });
  }

  #startSlot(slot: KindSlot): void {
    const served = slot.served!;
    const namespaces = served.namespaced && this.#namespaces ? this.#namespaces : [undefined];
    slot.informers = namespaces.map((ns) => this.#informer(served, ns, slot.labelSelector, ns === undefined ? slot.kind : `${slot.kind} in ${ns}`, slot.discovered));
    for (const i of slot.informers) i.start();
  }

  #logMissing(slot: KindSlot): void {
    this.#log.info({ kind: slot.kind, group: slot.group },
      `${slot.kind} (${slot.group}) is not served (its CRD is not installed): none are read; looking again every ${this.#missingRetryMs / 1000} s`);
  }

  /** A kind's informer got 404: its CRD is gone. The kind is empty until it is served again. */
  #gone(kind: string): void {
    const slot = this.#slots.get(kind);
    if (!slot || !slot.served || this.#closed) return;
    for (const i of slot.informers) i.close();
    const had = slot.informers.some((i) => i.list().length > 0);
    slot.informers = [];
    slot.served = null;
    this.#log.warn({ kind, group: slot.group }, `${kind} is no longer served (its CRD was deleted?): none are read; looking again every ${this.#missingRetryMs / 1000} s`);
    if (had) this.#changed();
    this.#scheduleRediscovery();
  }

  #scheduleRediscovery(): void {
    if (this.#closed || this.#rediscoverTimer) return;
    const missing = [...this.#slots.values()].filter((s) => s.discovered && !s.served);
    if (missing.length === 0) return;
    this.#rediscoverTimer = setTimeout(() => {
      this.#rediscoverTimer = null;
      void this.#rediscover().finally(() => this.#scheduleRediscovery());
    }, this.#missingRetryMs);
    this.#rediscoverTimer.unref?.();
  }

  async #rediscover(): Promise<void> {
    const groups = new Set([...this.#slots.values()].filter((s) => s.discovered && !s.served).map((s) => s.group));
    for (const group of groups) {
      let found: Map<string, ServedKind[]>;
      try {
        found = await discoverGroup(this.#kc, group, this.#abort.signal);
        const isNew = (kind: string) => found.has(kind) && !this.#slots.get(kind)?.served;
        if ([...this.#slots.values()].some((s) => s.group === group && isNew(s.kind))) {
          // A CRD just created publishes its versions one by one: ask again
          // once it has settled, or the kind could be watched at an older
          // version for good.
          await new Promise((r) => setTimeout(r, Math.min(1_000, this.#missingRetryMs)));
          if (this.#closed) return;
          found = await discoverGroup(this.#kc, group, this.#abort.signal);
        }
      } catch (err) {
        this.#log.debug({ group, error: err instanceof Error ? err.message : String(err) }, 'discovery failed; trying again later');
        continue;
      }
      if (this.#closed) return;
      for (const slot of this.#slots.values()) {
        if (slot.group !== group || slot.served) continue;
        const served = chooseVersion(found.get(slot.kind), knownToValidation);
        if (!served) continue;
        slot.served = served;
        this.#log.info({ kind: slot.kind, apiVersion: apiVersionOf(served) }, `${slot.kind} is served now (${apiVersionOf(served)}): watching`);
        this.#startSlot(slot);
      }
    }
  }

  #changed(): void {
    this.#generation++;
    if (this.#closed || this.#listeners.size === 0 || this.#notifyTimer) return;
    // One notification for a burst: a relist or a rollout files many objects within milliseconds.
    this.#notifyTimer = setTimeout(() => {
      this.#notifyTimer = null;
      if (this.#closed) return;
      for (const l of [...this.#listeners]) l();
    }, this.#coalesceMs);
  }

  /** Namespaces whose objects are given, or null for all (no selector). */
  #allowedNamespaces(): Set<string> | null {
    if (!this.#selected) return null;
    return new Set(this.#selected.list().map((n) => n.metadata?.name ?? ''));
  }

  /** The raw objects of a kind, sorted, from the namespaces given. */
  #objectsOf(kind: string, allowed: Set<string> | null): Raw[] {
    const slot = this.#slots.get(kind);
    if (!slot) return [];
    const out: Raw[] = [];
    const filter = allowed !== null && isNamespacedKind(kind);
    for (const i of slot.informers) {
      for (const o of i.list()) if (!filter || allowed.has(o.metadata?.namespace ?? '')) out.push(o);
    }
    return out.sort(byNamespaceAndName);
  }

  read(): ProviderRead {
    if (this.#readCache && this.#readCache.generation === this.#generation) return this.#readCache.read;
    const generation = this.#generation;
    const allowed = this.#allowedNamespaces();
    const objects: ReadObject[] = [];
    const problems: Problem[] = [];
    const lastValid = new Map<string, KubeObject>();
    for (const kind of READ_KINDS) {
      for (const raw of this.#objectsOf(kind, allowed)) {
        let result = this.#validated.get(raw);
        if (!result) {
          result = validateObject(raw);
          this.#validated.set(raw, result);
        }
        if (result.ignored) continue;
        const namespace = raw.metadata?.namespace;
        const name = raw.metadata?.name ?? '';
        const key = `${kind}|${namespace ?? ''}|${name}`;
        const object = describeObject(kind, namespace, name);
        if (result.object) {
          objects.push({ object: result.object });
          lastValid.set(key, result.object);
          for (const w of result.warnings) {
            problems.push({ object, field: w.field || undefined, reason: w.reason, message: w.field ? `${object}: ${w.field}: ${w.reason}` : `${object}: ${w.reason}`, severity: 'warning' });
          }
          continue;
        }
        const last = this.#lastValid.get(key);
        for (const fe of result.errors) {
          const reason = fe.reason + (last ? '; keeping the previous valid version' : '');
          problems.push({ object, field: fe.field || undefined, reason, message: fe.field ? `${object}: ${fe.field}: ${reason}` : `${object}: ${reason}` });
        }
        if (last) {
          objects.push({ object: last });
          lastValid.set(key, last);
        }
      }
    }
    this.#lastValid = lastValid;
    const read = { objects, problems };
    this.#readCache = { generation, read };
    return read;
  }

  /**
   * Kinds translate does not read but the controller needs: GatewayParameters
   * and the Deployments labelled `app.kubernetes.io/managed-by=gatehouse`,
   * as the API server holds them (status included), the same instances
   * while unchanged, from the namespaces given.
   */
  extra(kind: ExtraKind): KubeObject[] {
    const cached = this.#extraCache.get(kind);
    if (cached && cached.generation === this.#generation) return cached.objects;
    const objects = this.#objectsOf(kind, this.#allowedNamespaces()) as unknown as KubeObject[];
    this.#extraCache.set(kind, { generation: this.#generation, objects });
    return objects;
  }

  watch(onChange: () => void): { close(): void } {
    // A fresh function per watch, so that watching twice with one callback gives two watches.
    const listener = () => onChange();
    this.#listeners.add(listener);
    return { close: () => { this.#listeners.delete(listener); } };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    if (this.#rediscoverTimer) clearTimeout(this.#rediscoverTimer);
    if (this.#notifyTimer) clearTimeout(this.#notifyTimer);
    for (const slot of this.#slots.values()) for (const i of slot.informers) i.close();
    this.#selected?.close();
    this.#listeners.clear();
    this.#validated = new WeakMap();
    this.#lastValid.clear();
    this.#readCache = null;
    this.#extraCache.clear();
  }
}
