// Writes translate()'s statuses to the API server, the status sink of
// Kubernetes mode (the admin API's store is standalone's).
//
// What is written, and what is left alone (src/providers/kubernetes/
// status-merge.ts decides the content):
// - GatewayClasses naming our controller, the Gateways of those classes
//   and the ListenerSets (and v1.4 XListenerSets) naming those Gateways:
//   their whole status.
// - Routes and policies (BackendTLSPolicy, ClientTrafficPolicy,
//   BackendTrafficPolicy): only the entries of status.parents
//   (status.ancestors) carrying our controllerName.
// - Nothing is written when the status would say the same as it does,
//   apart from lastTransitionTime.
//
// How: PUT on the status subresource with the resourceVersion the status
// was merged against, so that a write never undoes a change it did not
// see (another controller's entry added meanwhile): a 409 Conflict reads
// the object again and merges once more, a bounded number of times. An
// object deleted meanwhile (404) is no failure: there is nothing left to
// report on. A few writes run at once, not one per object.
//
// The objects translate reads have no status (validation drops it, as the
// API server does for a client's write), so the status an object holds is
// read from the API server once and then remembered per object with the
// resourceVersion it was read (or written) at: while the object handed in
// has that resourceVersion, the remembered status is what the server
// holds, and nothing needs reading. An object handed in with a `status`
// is taken at its word.
//
// Only the leader should publish (the caller decides); `mayWrite` is asked
// before every write, so that a replica losing its lease halfway through
// a publish stops writing at once.
import { isDeepStrictEqual } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { KubeObject } from '../../api/types.ts';
import { GATEWAY_GROUP } from '../../api/types.ts';
import { statusKey } from '../../translate/index.ts';
import { callOptions, describeError, httpCode } from './api-call.ts';
import { kubeTime, mergeStatus, POLICY_KINDS, ROUTE_KINDS, sameStatus } from './status-merge.ts';

/** The field manager of status writes (managedFields show who wrote what). */
export const STATUS_FIELD_MANAGER = 'gatehouse';

/** Writes (and reads) in flight at once: a thousand routes are not a thousand open requests. */
const DEFAULT_CONCURRENCY = 8;
/** Tries per object, the first included, when the API server answers 409, 429 or 5xx. */
const DEFAULT_ATTEMPTS = 5;
/** The first wait between tries; it doubles per try, with jitter, so 5 tries wait about 1.5 s in all. */
const RETRY_FIRST_MS = 100;
/** One status read or write; they are small, so an answer slower than this means a server in trouble. */
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

const PLURALS: Record<string, string> = {
  GatewayClass: 'gatewayclasses',
  Gateway: 'gateways',
  ListenerSet: 'listenersets',
  XListenerSet: 'xlistenersets',
  HTTPRoute: 'httproutes',
  GRPCRoute: 'grpcroutes',
  TLSRoute: 'tlsroutes',
  TCPRoute: 'tcproutes',
  UDPRoute: 'udproutes',
  BackendTLSPolicy: 'backendtlspolicies',
  ClientTrafficPolicy: 'clienttrafficpolicies',
  BackendTrafficPolicy: 'backendtrafficpolicies',
};

export interface StatusWriterOptions {
  kubeConfig: k8s.KubeConfig;
  controllerName: string;
  log: Logger;
  /** Asked before every write; false: the write is skipped (the lease was lost). */
  mayWrite?: () => boolean;
  /** Default 8. */
  concurrency?: number;
  /** Tries per object on 409 / 429 / 5xx / no answer; default 5. */
  attempts?: number;
  /** Default 10 s. */
  requestTimeoutMs?: number;
}

export interface PublishResult {
  /** Objects whose status was written. */
  written: number;
  /**
   * Objects whose status could not be written (each logged once): publish
   * again later, nothing here tries again on its own.
   */
  failed: number;
}

/** What the writer knows an object's status on the API server to be. */
interface Known {
  resourceVersion: string;
  status: unknown;
  /**
   * The status this writer last wrote, while the server's status is still
   * the one that write left. The server may store a status other than the
   * one sent (CRD defaults fill in fields translate leaves out): compared
   * with what was sent, an unchanged translation is no change.
   */
  sent?: unknown;
}

type Outcome = 'written' | 'unchanged' | 'gone' | 'skipped' | 'failed';

export class StatusWriter {
  readonly #api: k8s.CustomObjectsApi;
  readonly #controllerName: string;
  readonly #log: Logger;
  readonly #mayWrite: () => boolean;
  readonly #concurrency: number;
  readonly #attempts: number;
  readonly #timeoutMs: number;
  readonly #known = new Map<string, Known>();
  /** Publishes run one after another: two at once could write one object's statuses out of order. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: StatusWriterOptions) {
    this.#api = opts.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.#controllerName = opts.controllerName;
    this.#log = opts.log;
    this.#mayWrite = opts.mayWrite ?? (() => true);
    this.#concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
    this.#attempts = Math.max(1, opts.attempts ?? DEFAULT_ATTEMPTS);
    this.#timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  /**
   * statuses: translate()'s Map<'Kind|namespace|name', status>;
   * objects: the objects translate read (for ownership, apiVersion and
   * resourceVersion). Writes the status subresource of every object of
   * ours whose status differs; resolves when every write is done or given up.
   */
  publish(statuses: Map<string, unknown>, objects: KubeObject[]): Promise<PublishResult> {
    const run = this.#queue.then(() => this.#publish(statuses, objects));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #publish(statuses: Map<string, unknown>, objects: KubeObject[]): Promise<PublishResult> {
    const owner = new Ownership(objects, this.#controllerName);
    const present = new Set<string>();
    const jobs: (() => Promise<Outcome>)[] = [];
    for (const o of objects) {
      if (!(o.kind in PLURALS)) continue;
      const key = statusKey(o);
      present.add(key);
      const desired = statuses.get(key);
      if (desired === undefined || !owner.owns(o)) continue;
      jobs.push(() => this.#write(o, key, desired, owner));
    }
    // What is known of objects no longer read is of no more use: memory stays bounded by the cluster's objects.
    for (const key of this.#known.keys()) if (!present.has(key)) this.#known.delete(key);

    let written = 0;
    let failed = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < jobs.length) {
        const outcome = await jobs[next++]();
        if (outcome === 'written') written++;
        else if (outcome === 'failed') failed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, jobs.length) }, worker));
    return { written, failed };
  }

  async #write(o: KubeObject, key: string, desired: unknown, owner: Ownership): Promise<Outcome> {
    const at = { kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name };
    let current = this.#statusInHand(o, key);
    let target = o;
    for (let attempt = 1; ; attempt++) {
      try {
        if (current === null) {
          const fresh = await this.#read(o);
          target = fresh;
          current = { resourceVersion: resourceVersionOf(fresh), status: fresh.status };
          this.#remember(key, current);
          // It may have changed hands since translate saw it (its class, its parent).
          if (!owner.owns(fresh)) return 'unchanged';
        }
        const merged = mergeStatus(o.kind, current.status, desired, this.#controllerName, o.metadata.namespace, kubeTime(new Date()));
        const known = this.#known.get(key);
        const unchangedSinceOurWrite = known?.sent !== undefined && isDeepStrictEqual(known.status, current.status);
        if (sameStatus(merged, current.status) || (unchangedSinceOurWrite && sameStatus(merged, known!.sent))) return 'unchanged';
        if (!this.#mayWrite()) return 'skipped';
        const body = {
          apiVersion: target.apiVersion,
          kind: target.kind,
          // The status subresource takes the status alone from the body; the
          // resourceVersion makes it refuse a write merged against an older status.
          metadata: { name: target.metadata.name, namespace: target.metadata.namespace, resourceVersion: current.resourceVersion },
          status: merged,
        };
        const res = await this.#replace(o, body) as KubeObject;
        this.#known.set(key, { resourceVersion: resourceVersionOf(res), status: res.status, sent: merged });
        return 'written';
      } catch (err) {
        const code = httpCode(err);
        if (code === 404) {
          this.#known.delete(key);
          return 'gone';
        }
        if (attempt < this.#attempts && retryable(code)) {
          // A conflict means the object changed: read it again and merge with what it holds now.
          current = null;
          await sleep(RETRY_FIRST_MS * 2 ** (attempt - 1) * (0.5 + Math.random()));
          continue;
        }
        // What is remembered may be what made the write fail: the next publish reads afresh.
        this.#known.delete(key);
        this.#log.warn({ ...at, attempts: attempt, reason: describeError(err) }, 'status write failed');
        return 'failed';
      }
    }
  }

  /** The status `o` holds on the server, when it can be known without asking. */
  #statusInHand(o: KubeObject, key: string): Known | null {
    const rv = resourceVersionOf(o);
    if (rv === '') return null;
    if (Object.hasOwn(o, 'status')) return { resourceVersion: rv, status: o.status };
    const known = this.#known.get(key);
    return known !== undefined && known.resourceVersion === rv ? known : null;
  }

  #remember(key: string, seen: { resourceVersion: string; status: unknown }): void {
    const known = this.#known.get(key);
    // The status last written is still worth remembering while the server's status is the one that write left.
    const sent = known?.sent !== undefined && isDeepStrictEqual(known.status, seen.status) ? known.sent : undefined;
    this.#known.set(key, { ...seen, sent });
  }

  #read(o: KubeObject): Promise<KubeObject> {
    const { group, version } = groupVersion(o.apiVersion);
    const plural = PLURALS[o.kind]!;
    const options = callOptions(this.#timeoutMs);
    if (o.kind === 'GatewayClass') {
      return this.#api.getClusterCustomObjectStatus({ group, version, plural, name: o.metadata.name }, options);
    }
    return this.#api.getNamespacedCustomObjectStatus({ group, version, plural, namespace: o.metadata.namespace ?? 'default', name: o.metadata.name }, options);
  }

  #replace(o: KubeObject, body: unknown): Promise<unknown> {
    const { group, version } = groupVersion(o.apiVersion);
    const plural = PLURALS[o.kind]!;
    const options = callOptions(this.#timeoutMs);
    const fieldManager = STATUS_FIELD_MANAGER;
    if (o.kind === 'GatewayClass') {
      return this.#api.replaceClusterCustomObjectStatus({ group, version, plural, name: o.metadata.name, body, fieldManager }, options);
    }
    return this.#api.replaceNamespacedCustomObjectStatus(
      { group, version, plural, namespace: o.metadata.namespace ?? 'default', name: o.metadata.name, body, fieldManager }, options);
  }
}

/** Which objects' status is ours to write, as the objects handed to publish() say. */
class Ownership {
  readonly #controllerName: string;
  readonly #classes = new Set<string>();
  readonly #gateways = new Set<string>();

  constructor(objects: KubeObject[], controllerName: string) {
    this.#controllerName = controllerName;
    for (const o of objects) if (o.kind === 'GatewayClass' && this.owns(o)) this.#classes.add(o.metadata.name);
    for (const o of objects) if (o.kind === 'Gateway' && this.owns(o)) this.#gateways.add(`${o.metadata.namespace}/${o.metadata.name}`);
  }

  owns(o: KubeObject): boolean {
    const spec = (o.spec ?? {}) as Record<string, unknown>;
    switch (o.kind) {
      case 'GatewayClass': return spec.controllerName === this.#controllerName;
      case 'Gateway': return typeof spec.gatewayClassName === 'string' && this.#classes.has(spec.gatewayClassName);
      case 'ListenerSet':
      case 'XListenerSet': {
        const ref = (spec.parentRef ?? {}) as Record<string, unknown>;
        if ((ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? 'Gateway') !== 'Gateway') return false;
        return this.#gateways.has(`${ref.namespace ?? o.metadata.namespace}/${ref.name}`);
      }
      // Shared statuses: the merge touches only entries naming us.
      default: return ROUTE_KINDS.has(o.kind) || POLICY_KINDS.has(o.kind);
    }
  }
}

function resourceVersionOf(o: KubeObject): string {
  const rv = (o.metadata as { resourceVersion?: unknown } | undefined)?.resourceVersion;
  return typeof rv === 'string' ? rv : '';
}

function groupVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/** Conflicts, throttling, server errors and no answer at all are worth another try; anything else is not. */
function retryable(code: number | null): boolean {
  return code === null || code === 409 || code === 429 || code >= 500;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
