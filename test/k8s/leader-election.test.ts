// Leader election against a real kube-apiserver: two electors on one
// Lease, with short durations (lease 3 s, renew deadline 2 s, retry 0.5 s).
// A replica cut off from the API server is simulated with a TCP relay
// that, on demand, stops passing bytes either way: the elector's requests
// then hang, as they do when a node drops off the network.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { controllerIdentity, startLeaderElection, type LeaderElection } from '../../src/providers/kubernetes/leader-election.ts';
import { startCluster, type Cluster } from './harness/cluster.ts';

const LEASE_MS = 3_000;
const RENEW_MS = 2_000;
const RETRY_MS = 500;
/** Room for a busy machine (two shared cores, an API server, etcd) on top of what the protocol allows. */
const SLACK_MS = 700;
const NAMESPACE = 'default';

let cluster: Cluster;
const quiet = pino({ level: 'silent' });

before(async () => {
  cluster = await startCluster({ crds: 'none', gatehouseCrds: false });
});

after(async () => {
  await cluster?.stop();
});

interface Replica {
  identity: string;
  election: LeaderElection;
  /** performance.now() of each callback, in order. */
  events: { what: 'started' | 'stopped'; at: number }[];
}

function replica(lease: string, identity: string, kubeConfig = cluster.kubeConfig()): Replica {
  const events: Replica['events'] = [];
  const election = startLeaderElection({
    kubeConfig, namespace: NAMESPACE, name: lease, identity, log: quiet,
    leaseDurationMs: LEASE_MS, renewDeadlineMs: RENEW_MS, retryPeriodMs: RETRY_MS,
    onStartedLeading: () => events.push({ what: 'started', at: performance.now() }),
    onStoppedLeading: () => events.push({ what: 'stopped', at: performance.now() }),
  });
  return { identity, election, events };
}

/** Polls `check` every 20 ms until it holds; the time it took, or a failure after `ms`. */
async function within(ms: number, what: string, check: () => boolean): Promise<number> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - t0;
}

/** Samples both for `ms`: never two leaders at once. */
async function neverTwo(a: Replica, b: Replica, ms: number): Promise<void> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    assert.ok(!(a.election.isLeader() && b.election.isLeader()), 'two leaders at once');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function holder(lease: string): Promise<string | undefined> {
  const api = cluster.kubeConfig().makeApiClient(k8s.CoordinationV1Api);
  return (await api.readNamespacedLease({ namespace: NAMESPACE, name: lease })).spec?.holderIdentity;
}

/**
 * A TCP relay to the API server. blackhole() makes it pass nothing more,
 * on open connections or new ones: requests through it hang, unanswered.
 */
async function relay(target: URL): Promise<{ url: string; blackhole(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let holed = false;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = net.createServer((client) => {
    track(client);
    if (holed) return;
    const upstream = net.connect(Number(target.port), target.hostname);
    track(upstream);
    client.on('data', (d) => { if (!holed) upstream.write(d); });
    upstream.on('data', (d) => { if (!holed) client.write(d); });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    blackhole() { holed = true; },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function kubeConfigVia(url: string): k8s.KubeConfig {
  const kc = cluster.kubeConfig();
  const current = kc.getCurrentCluster()!;
  const via = new k8s.KubeConfig();
  via.loadFromOptions({
    clusters: kc.clusters.map((c) => (c.name === current.name ? { ...c, server: url } : c)),
    users: kc.users, contexts: kc.contexts, currentContext: kc.currentContext,
  });
  return via;
}

function micro(d: Date): string {
  return d.toISOString().replace('Z', '000Z');
}

test('controllerIdentity is the pod (or host) name and a suffix of its own', () => {
  const saved = process.env.POD_NAME;
  try {
    process.env.POD_NAME = 'gatehouse-controller-7d9f-abcde';
    const a = controllerIdentity();
    const b = controllerIdentity();
    assert.match(a, /^gatehouse-controller-7d9f-abcde_[0-9a-f]{8}$/);
    assert.notEqual(a, b, 'two processes on one host are two identities');
  } finally {
    if (saved === undefined) delete process.env.POD_NAME;
    else process.env.POD_NAME = saved;
  }
});

test('of two replicas exactly one leads, and the Lease names it', async () => {
  const a = replica('one-leads', 'replica-a');
  const b = replica('one-leads', 'replica-b');
  try {
    await within(LEASE_MS + SLACK_MS, 'a leader', () => a.election.isLeader() || b.election.isLeader());
    await neverTwo(a, b, 2 * LEASE_MS);
    const [leader, other] = a.election.isLeader() ? [a, b] : [b, a];
    assert.ok(leader.election.isLeader() && !other.election.isLeader(), 'the leader held on through several renewals');
    assert.equal(await holder('one-leads'), leader.identity);
    assert.equal(leader.election.leader(), leader.identity);
    assert.equal(other.election.leader(), leader.identity, 'the other knows who leads');
    assert.deepEqual(leader.events.map((e) => e.what), ['started']);
    assert.deepEqual(other.events, []);
  } finally {
    await Promise.all([a.election.stop(), b.election.stop()]);
  }
});

test('stop() of the leader releases the Lease: the other takes over at once', async () => {
  const a = replica('handover', 'replica-a');
  await within(LEASE_MS + SLACK_MS, 'a leads', () => a.election.isLeader());
  const b = replica('handover', 'replica-b');
  try {
    // b has seen the lease held: without a release it would wait a whole lease duration.
    await within(2_000, 'b sees a', () => b.election.leader() === 'replica-a');
    const t0 = performance.now();
    await a.election.stop();
    assert.equal(a.election.isLeader(), false);
    assert.deepEqual(a.events.map((e) => e.what), ['started', 'stopped']);
    await within(2_000, 'b takes over', () => b.election.isLeader());
    const took = performance.now() - t0;
    assert.ok(took < 2_000, `handover took ${Math.round(took)} ms`);
    assert.ok(b.events[0]!.at >= a.events[1]!.at, 'a stopped before b started');
    assert.equal(await holder('handover'), 'replica-b');
  } finally {
    await Promise.all([a.election.stop(), b.election.stop()]);
  }
});

test('a leader cut off from the API server steps down by its renew deadline; the other leads within the lease duration', async () => {
  const target = new URL(cluster.server);
  const r = await relay(target);
  const a = replica('cut-off', 'replica-a', kubeConfigVia(r.url));
  let b: Replica | null = null;
  try {
    await within(LEASE_MS + SLACK_MS, 'a leads', () => a.election.isLeader());
    b = replica('cut-off', 'replica-b');
    await within(2_000, 'b sees a', () => b!.election.leader() === 'replica-a');
    await neverTwo(a, b, 1_000);

    const t0 = performance.now();
    r.blackhole();
    // a's last renewal was at most a retry period before the cut.
    await within(RENEW_MS + SLACK_MS, 'a steps down', () => a.events.some((e) => e.what === 'stopped'));
    assert.equal(a.election.isLeader(), false);
    await within(LEASE_MS + RETRY_MS * 2.4 + SLACK_MS, 'b leads', () => b!.election.isLeader());
    const stoppedAt = a.events.find((e) => e.what === 'stopped')!.at;
    const startedAt = b.events.find((e) => e.what === 'started')!.at;
    assert.ok(stoppedAt < startedAt, 'the old leader stopped before the new one started');
    // The other may take the lease only once a lease duration passed without renewal, as it saw it.
    assert.ok(startedAt - t0 >= LEASE_MS - RETRY_MS * 1.2 - 100, `b took the lease ${Math.round(startedAt - t0)} ms after the cut: too early`);
    // ... and takes it once its own view of the lease has gone a lease duration unrenewed (plus its retry period).
    assert.ok(startedAt - t0 < LEASE_MS + RETRY_MS * 2.4 + SLACK_MS, `b took the lease ${Math.round(startedAt - t0)} ms after the cut`);
    assert.equal(await holder('cut-off'), 'replica-b');
  } finally {
    // a's requests hang: stop() must not (it aborts them; its release times out, bounded).
    const t = performance.now();
    await a.election.stop();
    assert.ok(performance.now() - t < RENEW_MS + SLACK_MS, `stop() of a cut-off replica took ${Math.round(performance.now() - t)} ms`);
    await b?.election.stop();
    await r.close();
  }
});

test('a leader whose Lease is taken by hand steps down; after the intruder lapses a replica leads again', async () => {
  const a = replica('taken', 'replica-a');
  const b = replica('taken', 'replica-b');
  try {
    await within(LEASE_MS + SLACK_MS, 'a leader', () => a.election.isLeader() || b.election.isLeader());
    const leader = a.election.isLeader() ? a : b;
    const t0 = performance.now();
    const patched = await cluster.kubectl('patch', 'lease', 'taken', '-n', NAMESPACE, '--type=merge', '-p', JSON.stringify({
      spec: { holderIdentity: 'intruder', renewTime: micro(new Date()), acquireTime: micro(new Date()), leaseDurationSeconds: 3 },
    }));
    assert.equal(patched.code, 0, patched.stderr);
    // It sees another holder on its next renewal and stops at once, well before its renew deadline.
    await within(RENEW_MS, 'the leader steps down', () => leader.events.some((e) => e.what === 'stopped'));
    assert.ok(performance.now() - t0 < RETRY_MS + SLACK_MS + 500, `stepped down ${Math.round(performance.now() - t0)} ms after the lease was taken`);
    assert.equal(a.election.isLeader() || b.election.isLeader(), false, 'nobody leads while the intruder holds the lease');
    assert.equal(leader.election.leader(), 'intruder');
    // The intruder never renews: once its lease runs out a replica takes it back.
    await within(LEASE_MS + RETRY_MS * 1.2 + SLACK_MS + 500, 'a replica leads again', () => a.election.isLeader() || b.election.isLeader());
    assert.ok(performance.now() - t0 >= LEASE_MS - 100, 'not before the intruder\'s lease ran out');
    await neverTwo(a, b, 1_000);
    assert.notEqual(await holder('taken'), 'intruder');
  } finally {
    await Promise.all([a.election.stop(), b.election.stop()]);
  }
});
