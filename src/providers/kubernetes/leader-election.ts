// Leader election on a coordination.k8s.io/v1 Lease, with client-go's
// semantics, so that Gatehouse replicas behave as operators expect of any
// controller:
//
// - A lease is taken when it is free (no holder) or expired, and expired
//   means: its record has not changed for a lease duration *as this replica
//   saw it*, on this replica's own clock. The renewTime written in the
//   lease is never compared with the local time: clocks of two hosts need
//   not agree.
// - Every write carries the resourceVersion read, so two candidates cannot
//   both take the lease: one of them gets 409 Conflict.
// - The leader renews every retry period. When no renewal has succeeded
//   for the renew deadline (shorter than the lease duration), it stops
//   leading at once: it must stop acting before any other replica may
//   consider the lease expired. When it sees another holder in the lease
//   (someone took it), it stops at once too.
// - After losing the lease a replica stands again as a candidate: every
//   replica keeps serving configuration, only the leader writes.
// - stop() gives the lease up (holder cleared), so that another replica
//   takes over on its next try rather than after a lease duration.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { callOptions, describeError, httpCode } from './api-call.ts';

export interface LeaderElectionOptions {
  kubeConfig: k8s.KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  leaseDurationMs?: number; // default 15000
  renewDeadlineMs?: number; // default 10000
  retryPeriodMs?: number; // default 2000
  onStartedLeading(): void;
  onStoppedLeading(): void;
}

export interface LeaderElection {
  /** Whether this replica holds the lease, renewed within the renew deadline. */
  isLeader(): boolean;
  /** The holder the lease last named (this replica's identity when leading), or null. */
  leader(): string | null;
  /** Stops electing; releases the lease if held (holder cleared, so another replica takes over at once). */
  stop(): Promise<void>;
}

export const LEASE_DEFAULTS = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 } as const;

/** Tries at giving the lease up on stop(): a conflict there means the lease changed under us; a few reads settle it. */
const RELEASE_ATTEMPTS = 3;

/** The holder identity of this process: its pod (or host) name, and a suffix that tells two processes on one host apart. */
export function controllerIdentity(): string {
  return `${process.env.POD_NAME || os.hostname()}_${randomBytes(4).toString('hex')}`;
}

export function startLeaderElection(opts: LeaderElectionOptions): LeaderElection {
  const elector = new Elector(opts);
  elector.start();
  return elector;
}

class Elector implements LeaderElection {
  readonly #api: k8s.CoordinationV1Api;
  readonly #opts: LeaderElectionOptions;
  readonly #leaseMs: number;
  readonly #deadlineMs: number;
  readonly #retryMs: number;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #stopSignal = new AbortController();
  #loop: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | null = null;

  #leading = false;
  /** performance.now() of the last successful acquire or renew. */
  #renewedAt = 0;
  #deadline: NodeJS.Timeout | null = null;
  /** The lease's record as last read, and when (performance.now()) it was first seen so. */
  #observedRecord = '';
  #observedAt = 0;
  #observedHolder: string | null = null;
  /** Whether the lease ever named us: only then may stop() have something to release. */
  #everHeld = false;
  /** The last trouble talking to the API server, logged once until it clears. */
  #trouble: string | null = null;

  constructor(opts: LeaderElectionOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#leaseMs = opts.leaseDurationMs ?? LEASE_DEFAULTS.leaseDurationMs;
    this.#deadlineMs = opts.renewDeadlineMs ?? LEASE_DEFAULTS.renewDeadlineMs;
    this.#retryMs = opts.retryPeriodMs ?? LEASE_DEFAULTS.retryPeriodMs;
    if (!(this.#leaseMs > this.#deadlineMs)) throw new Error('leader election: the lease duration must be longer than the renew deadline');
    if (!(this.#deadlineMs > this.#retryMs * 1.2)) throw new Error('leader election: the renew deadline must be longer than 1.2 retry periods');
    if (!(this.#retryMs > 0)) throw new Error('leader election: the retry period must be positive');
    // One request may take part of the renew deadline, not all of it: a hung
    // request must leave time for another try before the leader steps down.
    this.#timeoutMs = Math.max(this.#retryMs, Math.floor(this.#deadlineMs / 2));
    this.#api = opts.kubeConfig.makeApiClient(k8s.CoordinationV1Api);
  }

  start(): void {
    this.#loop = this.#run();
  }

  isLeader(): boolean {
    return this.#leading && performance.now() - this.#renewedAt < this.#deadlineMs;
  }

  leader(): string | null {
    return this.#observedHolder;
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopSignal.abort();
      await this.#loop;
      // Stop acting as leader before the lease is free for another replica.
      this.#stepDown('stopping');
      if (this.#everHeld) await this.#release();
    })();
    return this.#stopping;
  }

  async #run(): Promise<void> {
    const signal = this.#stopSignal.signal;
    while (!signal.aborted) {
      const held = await this.#tryAcquireOrRenew();
      if (signal.aborted) break;
      if (held) {
        this.#renewed();
      } else if (this.#leading && this.#observedHolder !== null && this.#observedHolder !== this.#opts.identity) {
        this.#stepDown(`the lease is held by ${this.#observedHolder}`);
      }
      // Candidates spread their tries a little, so that replicas started together do not knock in step.
      const wait = this.#leading ? this.#retryMs : this.#retryMs * (1 + 0.2 * Math.random());
      await sleep(wait, signal);
    }
  }

  /** One read and, when the lease is ours to take or renew, one write. True when we hold it now. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.#opts;
    const options = callOptions(this.#timeoutMs, this.#stopSignal.signal);
    let lease: k8s.V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ namespace, name }, options);
    } catch (err) {
      if (httpCode(err) !== 404) return this.#failed('cannot read the lease', err);
      try {
        const created = await this.#api.createNamespacedLease({
          namespace,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { namespace, name }, spec: this.#record(null) },
        }, options);
        this.#observe(created);
        this.#cleared();
        return true;
      } catch (createErr) {
        // 409: another replica created it first; the next read shows whose it is.
        return httpCode(createErr) === 409 ? false : this.#failed('cannot create the lease', createErr);
      }
    }
    this.#cleared();
    this.#observe(lease);
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const heldFor = Math.max(this.#leaseMs, (spec.leaseDurationSeconds ?? 0) * 1000);
    if (holder !== '' && holder !== identity && performance.now() < this.#observedAt + heldFor) return false;
    try {
      const updated = await this.#api.replaceNamespacedLease({
        namespace, name,
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: {
            namespace, name, resourceVersion: lease.metadata?.resourceVersion,
            labels: lease.metadata?.labels, annotations: lease.metadata?.annotations,
          },
          spec: this.#record(spec),
        },
      }, options);
      this.#observe(updated);
      return true;
    } catch (err) {
      // 409: the lease changed since it was read (another replica took it, or
      // someone edited it): the next read tells.
      return httpCode(err) === 409 ? false : this.#failed('cannot write the lease', err);
    }
  }

  /** The lease record that names us, continuing `old` (the lease as read) or starting afresh. */
  #record(old: k8s.V1LeaseSpec | null): k8s.V1LeaseSpec {
    const now = new k8s.V1MicroTime();
    const renewing = old !== null && old.holderIdentity === this.#opts.identity;
    return {
      holderIdentity: this.#opts.identity,
      leaseDurationSeconds: Math.ceil(this.#leaseMs / 1000),
      acquireTime: renewing && old.acquireTime ? microTime(old.acquireTime) : now,
      renewTime: now,
      leaseTransitions: (old?.leaseTransitions ?? 0) + (old === null || renewing ? 0 : 1),
    };
  }

  /** Notes the lease as read or written: a record that changed starts its expiry afresh, on our clock. */
  #observe(lease: k8s.V1Lease): void {
    const s = lease.spec ?? {};
    const record = JSON.stringify([s.holderIdentity ?? '', s.leaseDurationSeconds ?? null, String(s.acquireTime ?? ''), String(s.renewTime ?? ''), s.leaseTransitions ?? null]);
    if (record !== this.#observedRecord) {
      this.#observedRecord = record;
      this.#observedAt = performance.now();
    }
    this.#observedHolder = s.holderIdentity ? s.holderIdentity : null;
    if (this.#observedHolder === this.#opts.identity) this.#everHeld = true;
  }

  #renewed(): void {
    this.#renewedAt = performance.now();
    if (this.#deadline !== null) clearTimeout(this.#deadline);
    this.#deadline = setTimeout(() => this.#stepDown(`the lease was not renewed within ${this.#deadlineMs} ms`), this.#deadlineMs);
    if (this.#leading) return;
    this.#leading = true;
    this.#log.info({ lease: `${this.#opts.namespace}/${this.#opts.name}`, identity: this.#opts.identity }, 'leader election: leading');
    try {
      this.#opts.onStartedLeading();
    } catch (err) {
      this.#log.error({ err }, 'leader election: onStartedLeading threw');
    }
  }

  #stepDown(why: string): void {
    if (this.#deadline !== null) clearTimeout(this.#deadline);
    this.#deadline = null;
    if (!this.#leading) return;
    this.#leading = false;
    this.#log.warn({ lease: `${this.#opts.namespace}/${this.#opts.name}`, identity: this.#opts.identity, why }, 'leader election: no longer leading');
    try {
      this.#opts.onStoppedLeading();
    } catch (err) {
      this.#log.error({ err }, 'leader election: onStoppedLeading threw');
    }
  }

  /** Clears the holder if it is still us, so that a candidate takes the lease on its next try. */
  async #release(): Promise<void> {
    const { namespace, name, identity } = this.#opts;
    for (let attempt = 1; attempt <= RELEASE_ATTEMPTS; attempt++) {
      const options = callOptions(this.#timeoutMs);
      try {
        const lease = await this.#api.readNamespacedLease({ namespace, name }, options);
        if (lease.spec?.holderIdentity !== identity) return;
        const now = new k8s.V1MicroTime();
        await this.#api.replaceNamespacedLease({
          namespace, name,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: {
              namespace, name, resourceVersion: lease.metadata?.resourceVersion,
              labels: lease.metadata?.labels, annotations: lease.metadata?.annotations,
            },
            // client-go's release: no holder, a one-second lease, the transitions count kept.
            spec: { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: lease.spec?.leaseTransitions },
          },
        }, options);
        this.#observedHolder = null;
        this.#log.info({ lease: `${namespace}/${name}`, identity }, 'leader election: lease released');
        return;
      } catch (err) {
        const code = httpCode(err);
        if (code === 404) return;
        if (code === 409 && attempt < RELEASE_ATTEMPTS) continue;
        this.#log.warn({ lease: `${namespace}/${name}`, reason: describeError(err) }, 'leader election: could not release the lease; it expires on its own');
        return;
      }
    }
  }

  #failed(what: string, err: unknown): false {
    if (this.#stopSignal.signal.aborted) return false;
    const reason = `${what}: ${describeError(err)}`;
    if (reason !== this.#trouble) {
      this.#trouble = reason;
      this.#log.warn({ lease: `${this.#opts.namespace}/${this.#opts.name}`, reason }, 'leader election: API server trouble');
    }
    return false;
  }

  #cleared(): void {
    if (this.#trouble === null) return;
    this.#trouble = null;
    this.#log.info({ lease: `${this.#opts.namespace}/${this.#opts.name}` }, 'leader election: API server answers again');
  }
}

/** A lease time as read (a string: the client does not parse MicroTime) made writable again. */
function microTime(t: unknown): k8s.V1MicroTime {
  return new k8s.V1MicroTime(t instanceof Date ? t.getTime() : String(t));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}
