// The provisioner's I/O: what renderInfrastructure() made is applied to
// the cluster with server-side apply (field manager `gatehouse`), and what
// Gatehouse made earlier that is no longer wanted is deleted.
//
// Applied objects hold exactly what was rendered last: server-side apply
// removes the fields `gatehouse` applied before and applies no more (a
// label dropped from spec.infrastructure goes away), while fields other
// managers own stay (the HPA's replicas, a user's extra annotation).
//
// Only the leader provisions. It applies a Gateway's objects when their
// rendering changed, when one of them disappeared, on becoming leader,
// and every RESYNC_MS in case someone edited them by hand; a failed apply
// is tried again with bounded backoff. The objects of a Gateway that is
// gone or is no longer ours are deleted (the Gateway's owner reference
// lets the garbage collector delete them too, but a Gateway moved to
// another class keeps existing).
import { createHash } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { MANAGED_BY, MANAGED_BY_LABEL, GATEWAY_NAME_LABEL } from './names.ts';
import type { Infrastructure, ProvisionedObject } from './render.ts';

export const FIELD_MANAGER = 'gatehouse';

/** Re-apply unchanged renderings this often: hand edits are undone within it. */
export const RESYNC_MS = 10 * 60_000;

/** Backoff of a Gateway whose apply failed: doubles from the first to the last. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 60_000;

/** Applies in flight at once, so a thousand Gateways do not open a thousand requests. */
const CONCURRENCY = 4;

/** Every kind renderInfrastructure() may make, for finding what is no longer wanted. */
export const PROVISIONED_KINDS: readonly { apiVersion: string; kind: string }[] = [
  { apiVersion: 'v1', kind: 'ServiceAccount' },
  { apiVersion: 'v1', kind: 'ConfigMap' },
  { apiVersion: 'v1', kind: 'Service' },
  { apiVersion: 'apps/v1', kind: 'Deployment' },
  { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler' },
  { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget' },
];

interface Applied {
  digest: string;
  at: number;
  /** `Kind/name` of each object applied. */
  objects: Set<string>;
}

interface Failed {
  digest: string;
  retryAt: number;
  delayMs: number;
}

export interface ProvisionerOptions {
  kubeConfig: k8s.KubeConfig;
  log: Logger;
}

/** `namespace/gateway` of an Infrastructure. */
export type GatewayKey = string;

export class Provisioner {
  readonly #api: k8s.KubernetesObjectApi;
  readonly #log: Logger;
  readonly #applied = new Map<GatewayKey, Applied>();
  readonly #failed = new Map<GatewayKey, Failed>();
  /** The Gateways a sweep last found wanted: a sweep runs again only when that set changes. */
  #sweptFor: string | null = null;

  constructor(opts: ProvisionerOptions) {
    this.#api = k8s.KubernetesObjectApi.makeApiClient(opts.kubeConfig);
    this.#log = opts.log;
  }

  /** Forget what was applied: the next sync applies everything and sweeps (on becoming leader). */
  reset(): void {
    this.#applied.clear();
    this.#failed.clear();
    this.#sweptFor = null;
  }

  /**
   * Makes the cluster hold `wanted` (Gateway key -> its rendering) and
   * nothing else of ours. `present(key)` says whether every object of that
   * Gateway is seen in the cluster (from the informers), so one deleted by
   * hand is made again at once. Resolves when done; errors are logged and
   * retried on a later sync, never thrown. Resolves to how long until a
   * failed Gateway is due again (call sync then), or null when none failed.
   */
  async sync(wanted: ReadonlyMap<GatewayKey, Infrastructure>, present: (key: GatewayKey) => boolean, now = Date.now()): Promise<number | null> {
    const due: [GatewayKey, Infrastructure, string][] = [];
    for (const [key, infra] of wanted) {
      const digest = digestOf(infra.objects);
      const failed = this.#failed.get(key);
      if (failed && failed.digest === digest && now < failed.retryAt) continue;
      const applied = this.#applied.get(key);
      if (applied && applied.digest === digest && now - applied.at < RESYNC_MS && present(key)) continue;
      due.push([key, infra, digest]);
    }
    await inBatches(due, CONCURRENCY, ([key, infra, digest]) => this.#apply(key, infra, digest, now));
    for (const key of [...this.#applied.keys()]) if (!wanted.has(key)) this.#applied.delete(key);
    for (const key of [...this.#failed.keys()]) if (!wanted.has(key)) this.#failed.delete(key);
    const wantedSet = [...wanted.keys()].sort().join('\n');
    const anyFailed = due.some(([key]) => this.#failed.has(key));
    let sweepFailed = false;
    if (this.#sweptFor !== wantedSet || due.length > 0) {
      sweepFailed = !await this.#sweep(wanted);
      if (!sweepFailed && !anyFailed) this.#sweptFor = wantedSet;
    }
    const retries = [...this.#failed.values()].map((f) => Math.max(0, f.retryAt - now));
    if (sweepFailed) retries.push(RETRY_FIRST_MS);
    return retries.length ? Math.min(...retries) : null;
  }

  async #apply(key: GatewayKey, infra: Infrastructure, digest: string, now: number): Promise<void> {
    try {
      for (const object of infra.objects) {
        await this.#api.patch(object as k8s.KubernetesObject, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
      }
      this.#applied.set(key, { digest, at: now, objects: new Set(infra.objects.map(objectKey)) });
      this.#failed.delete(key);
      this.#log.info({ gateway: key, objects: infra.objects.map(objectKey) }, 'provisioned the Gateway\'s proxies');
    } catch (err) {
      const before = this.#failed.get(key);
      const delayMs = before ? Math.min(before.delayMs * 2, RETRY_MAX_MS) : RETRY_FIRST_MS;
      this.#failed.set(key, { digest, retryAt: now + delayMs, delayMs });
      this.#applied.delete(key);
      this.#log.error({ gateway: key, reason: describe(err), retryInMs: delayMs }, 'provisioning failed; will retry');
    }
  }

  /**
   * Deletes every object labelled as ours that no wanted rendering holds.
   * Returns false when a list or delete failed (the next sync sweeps again).
   */
  async #sweep(wanted: ReadonlyMap<GatewayKey, Infrastructure>): Promise<boolean> {
    const keep = new Set<string>();
    for (const infra of wanted.values()) for (const o of infra.objects) keep.add(`${infra.namespace}/${objectKey(o)}`);
    let ok = true;
    for (const { apiVersion, kind } of PROVISIONED_KINDS) {
      let items: k8s.KubernetesObject[];
      try {
        items = await listAll(this.#api, apiVersion, kind, `${MANAGED_BY_LABEL}=${MANAGED_BY},${GATEWAY_NAME_LABEL}`);
      } catch (err) {
        this.#log.warn({ kind, reason: describe(err) }, 'could not list provisioned objects; stale ones are deleted on a later sync');
        ok = false;
        continue;
      }
      for (const item of items) {
        const name = item.metadata?.name ?? '';
        const namespace = item.metadata?.namespace ?? '';
        if (keep.has(`${namespace}/${kind}/${name}`)) continue;
        try {
          await this.#api.delete({ apiVersion, kind, metadata: { name, namespace } });
          this.#log.info({ kind, object: `${namespace}/${name}` }, 'deleted a provisioned object no Gateway of ours wants');
        } catch (err) {
          if (statusOf(err) === 404) continue;
          this.#log.warn({ kind, object: `${namespace}/${name}`, reason: describe(err) }, 'could not delete a stale provisioned object');
          ok = false;
        }
      }
    }
    return ok;
  }
}

function objectKey(o: { kind: string; metadata?: { name?: string } }): string {
  return `${o.kind}/${o.metadata?.name ?? ''}`;
}

/** The same objects rendered give the same digest (render is deterministic, key order included). */
export function digestOf(objects: readonly ProvisionedObject[]): string {
  return createHash('sha256').update(JSON.stringify(objects)).digest('hex');
}

async function listAll(api: k8s.KubernetesObjectApi, apiVersion: string, kind: string, labelSelector: string): Promise<k8s.KubernetesObject[]> {
  const out: k8s.KubernetesObject[] = [];
  let token: string | undefined;
  // Pages of 500 keep one answer small; a cluster has few of ours per Gateway.
  do {
    const page = await api.list(apiVersion, kind, undefined, undefined, undefined, undefined, undefined, labelSelector, 500, token);
    out.push(...page.items);
    token = page.metadata?._continue || undefined;
  } while (token);
  return out;
}

async function inBatches<T>(items: T[], size: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(size, items.length) }, async () => {
    while (next < items.length) await run(items[next++]);
  });
  await Promise.all(workers);
}

export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

/** An API error as one line: the status and the API server's message, never the object sent. */
export function describe(err: unknown): string {
  const code = statusOf(err);
  const body = (err as { body?: unknown })?.body;
  let message: string | undefined;
  if (typeof body === 'string') {
    try { message = (JSON.parse(body) as { message?: string }).message; } catch { message = undefined; }
  } else if (body && typeof body === 'object') {
    message = (body as { message?: string }).message;
  }
  if (code !== undefined) return `${code}: ${message ?? 'no message'}`;
  return err instanceof Error ? err.message : String(err);
}
