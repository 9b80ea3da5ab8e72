// gatehouse proxy's relay: the controller's deltas go on to the data plane
// as they came, the relay keeps only what a new or failed data plane
// needs to get the whole config (virtual hosts as text, clusters), and
// every check of a decode holds: an unknown id is refused and changes
// nothing. Then the same through real data planes: a worker started after
// many deltas serves what a fresh decode describes, and a second stream's
// ids, which start again at 1, never meet the first stream's compiled
// hosts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerPool } from '../../src/control/worker-pool.ts';
import { releaseMemory } from '../../src/control/release-memory.ts';
import { DataPlane } from '../../src/dataplane/dataplane.ts';
import { asText, IRDeltaEncoder, type IRDelta } from '../../src/ir/delta.ts';
import type { Cluster, IR, VirtualHost } from '../../src/ir/types.ts';
import { DeltaRelay } from '../../src/proxy/delta-relay.ts';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, request, route, startBackend, vhost } from '../dataplane/helpers.ts';
import { waitFor } from '../e2e/helpers.ts';
import { IRDeltaDecoder } from '../ir/delta-decoder.ts';

/** What the proxy reads off the wire: the controller's delta, virtual hosts as text, through JSON. */
function wire(delta: IRDelta): IRDelta {
  return JSON.parse(JSON.stringify(asText(delta))) as IRDelta;
}

/** The IR a delta describes for a receiver with nothing: a fresh decode, through JSON as the workers receive it. */
function decodeFresh(delta: IRDelta | null): IR {
  assert.ok(delta !== null);
  return new IRDeltaDecoder().decode(JSON.parse(JSON.stringify(delta)) as IRDelta, true);
}

const json = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/**
 * A controller's Gateway that changes over `steps` configs: hosts added,
 * a route changed, a host dropped, a cluster's endpoints moved. translate
 * keeps unchanged entries as the same objects; so does this.
 */
function evolving(port: number, backends: Record<string, { port: number }>) {
  const clusters = new Map<string, Cluster>(Object.entries(backends).map(([name, b]) => [name, cluster(name, b)]));
  const hosts: VirtualHost[] = [vhost('one.test', [route('one', match('/'), [backend('a')])])];
  const config = (): IR => ir([listener(port, [gatewayListener('gw/http', null, [...hosts])])], [...clusters.values()]);
  const steps: (() => void)[] = [
    () => hosts.push(vhost('two.test', [route('two', match('/'), [backend('b')])])),
    () => hosts.push(vhost('three.test', [route('three', match('/'), [backend('a')])])),
    () => { hosts[0] = vhost('one.test', [route('one', match('/'), [backend('b')])]); },
    () => hosts.splice(2, 1),
    () => hosts.push(vhost('four.test', [route('four', match('/'), [backend('c')])])),
    () => { clusters.set('c', cluster('c', backends.a!)); },
  ];
  return { config, steps, hosts };
}

test('DeltaRelay: after many deltas, full() describes what a fresh decode of the whole stream gives, and the last IR', () => {
  const controller = new IRDeltaEncoder();
  const reference = new IRDeltaDecoder();
  const relay = new DeltaRelay();
  const { config, steps } = evolving(8080, { a: { port: 1001 }, b: { port: 1002 }, c: { port: 1003 } });
  let last = config();
  let frame = wire(controller.encode(last));
  relay.accept(frame, true);
  let expected = reference.decode(frame, true);
  assert.deepEqual(decodeFresh(relay.take()), expected);
  for (const step of steps) {
    step();
    last = config();
    frame = wire(controller.encode(last));
    relay.accept(frame, false);
    expected = reference.decode(frame, false);
    relay.take();
    assert.deepEqual(decodeFresh(relay.full()), expected);
  }
  assert.deepEqual(decodeFresh(relay.full()), json(last));
  assert.deepEqual(relay.clusters(), json(last.clusters));
});

test('DeltaRelay: a one-route change is handed on as that one virtual host, under ids that stay the same otherwise', () => {
  const controller = new IRDeltaEncoder();
  const relay = new DeltaRelay();
  const { config, steps } = evolving(8080, { a: { port: 1001 }, b: { port: 1002 }, c: { port: 1003 } });
  steps[0]!();
  steps[1]!();
  relay.accept(wire(controller.encode(config())), true);
  const first = relay.take()!;
  assert.equal(first.define.virtualHosts.length, 3);
  steps[2]!(); // one.test's route now goes to b
  relay.accept(wire(controller.encode(config())), false);
  const next = relay.take()!;
  assert.equal(next.define.virtualHosts.length, 1);
  assert.equal((JSON.parse(next.define.virtualHosts[0]![1] as string) as VirtualHost).hostname, 'one.test');
  assert.deepEqual(next.define.clusters, []);
  const ids = (d: IRDelta) => d.listeners[0]!.gatewayListeners[0]!.virtualHosts;
  assert.notEqual(ids(next)[0], ids(first)[0]);
  assert.deepEqual(ids(next).slice(1), ids(first).slice(1));
  assert.deepEqual(next.clusters, first.clusters);
});

test('DeltaRelay: frames taken in together are handed on as one delta defining only what their last config uses', () => {
  const controller = new IRDeltaEncoder();
  const relay = new DeltaRelay();
  const { config, steps } = evolving(8080, { a: { port: 1001 }, b: { port: 1002 }, c: { port: 1003 } });
  relay.accept(wire(controller.encode(config())), true);
  relay.take();
  steps[0]!(); // two.test added...
  relay.accept(wire(controller.encode(config())), false);
  steps[1]!(); // ...three.test added...
  relay.accept(wire(controller.encode(config())), false);
  steps[2]!(); // ...one.test changed...
  relay.accept(wire(controller.encode(config())), false);
  steps[3]!(); // ...and three.test dropped again.
  relay.accept(wire(controller.encode(config())), false);
  const folded = relay.take()!;
  assert.deepEqual(folded.define.virtualHosts.map(([, text]) => (JSON.parse(text as string) as VirtualHost).hostname).sort(), ['one.test', 'two.test']);
  assert.deepEqual(decodeFresh(relay.full()), json(config()));
  // Nothing accepted since: nothing to define.
  assert.deepEqual(relay.take()!.define, { virtualHosts: [], clusters: [] });
});

test('DeltaRelay: a delta naming an id the stream never defined is refused with the id named, and changes nothing', () => {
  const controller = new IRDeltaEncoder();
  const relay = new DeltaRelay();
  const { config, steps } = evolving(8080, { a: { port: 1001 }, b: { port: 1002 }, c: { port: 1003 } });
  relay.accept(wire(controller.encode(config())), true);
  relay.take();
  const before = relay.full();
  steps[0]!();
  const good = wire(controller.encode(config()));
  const badHost: IRDelta = json(good);
  badHost.listeners[0]!.gatewayListeners[0]!.virtualHosts.push(9999);
  assert.throws(() => relay.accept(badHost, false), /config delta: listener "127\.0\.0\.1:8080", "gw\/http": unknown virtual host id 9999/);
  const badCluster: IRDelta = { ...json(good), clusters: { ...good.clusters, ghost: 7777 } };
  assert.throws(() => relay.accept(badCluster, false), /config delta: cluster "ghost" has unknown id 7777/);
  // An id of this stream's previous config, not defined again after a snapshot: unknown there.
  assert.throws(() => relay.accept(good, true), /config delta: cluster "a" has unknown id/);
  assert.deepEqual(relay.take()!.define, { virtualHosts: [], clusters: [] }, 'nothing taken in');
  assert.deepEqual(relay.full(), before);
  // The stream goes on from where it was.
  relay.accept(good, false);
  relay.take();
  assert.deepEqual(decodeFresh(relay.full()), json(config()));
});

test('DeltaRelay: a second after a config is handed on its texts are deflated, and full() and the next deltas are as before', async () => {
  const controller = new IRDeltaEncoder();
  const reference = new IRDeltaDecoder();
  let compacted: (n: number) => void = () => {};
  const relay = new DeltaRelay({ compacted: (n) => compacted(n) });
  const done = () => new Promise<number>((resolve) => { compacted = resolve; });
  const hosts = Array.from({ length: 150 }, (_, i) => vhost(`h${i}.test`, [route(`r${i}`, match(`/p${i}`), [backend('a')]), route(`s${i}`, match('/é'), [backend('a')])]));
  const a = cluster('a', { port: 1001 });
  const config = () => ir([listener(8080, [gatewayListener('gw/http', null, [...hosts])])], [a]);
  const send = (fresh: boolean) => {
    const frame = wire(controller.encode(config()));
    relay.accept(frame, fresh);
    reference.decode(frame, fresh);
    return relay.take()!;
  };
  const first = done();
  send(true);
  // More than one slice's worth, every one of them.
  assert.equal(await first, 150);
  assert.deepEqual(decodeFresh(relay.full()), json(config()));
  hosts[3] = vhost('h3.test', [route('r3', match('/changed'), [backend('a')])]);
  const again = done();
  const delta = send(false);
  assert.deepEqual(delta.define.virtualHosts.map(([, text]) => JSON.parse(text as string) as VirtualHost), [json(hosts[3])]);
  assert.equal(await again, 1, 'only the new text is left to deflate');
  assert.deepEqual(decodeFresh(relay.full()), json(config()));
  relay.close();
});

test('DeltaRelay: deflated texts hold about their own size, not a pool slab share each', async () => {
  const hosts = Array.from({ length: 1_000 }, (_, i) => vhost(`h${i}.test`, [route(`r${i}`, match(`/p${i}`), [backend('a')])]));
  const config = ir([listener(8080, [gatewayListener('gw/http', null, hosts)])], [cluster('a', { port: 1001 })]);
  let compacted: (n: number) => void = () => {};
  const done = new Promise<number>((resolve) => { compacted = resolve; });
  const relay = new DeltaRelay({ compacted: (n) => compacted(n) });
  relay.accept(wire(new IRDeltaEncoder().encode(config)), true);
  relay.take();
  releaseMemory();
  const before = process.memoryUsage().arrayBuffers;
  assert.equal(await done, 1_000);
  // The output chunks deflate used are garbage: counted until collected.
  releaseMemory();
  const grown = process.memoryUsage().arrayBuffers - before;
  // ~100 bytes each deflated; held as zlib's Buffers, ~21 KiB each.
  assert.ok(grown < 2 * 1024 * 1024, `array buffers grew by ${grown} bytes for 1,000 texts`);
  assert.deepEqual(decodeFresh(relay.full()), json(config));
});

test('DeltaRelay: virtual hosts sent as objects (a controller before text) are kept and handed on as text', () => {
  const controller = new IRDeltaEncoder();
  const relay = new DeltaRelay();
  const { config } = evolving(8080, { a: { port: 1001 } });
  relay.accept(json(controller.encode(config())), true);
  const delta = relay.take()!;
  assert.equal(typeof delta.define.virtualHosts[0]![1], 'string');
  assert.deepEqual(decodeFresh(delta), json(config()));
});

test('DeltaRelay into a data plane: a new stream\'s ids, which start again at 1, never reuse the first stream\'s compiled hosts', { timeout: 30_000 }, async (t) => {
  const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
  const port = await freePort();
  const dp = new DataPlane({ limits: { drainTimeoutMs: 1_000 } });
  t.after(() => dp.close());
  const relay = new DeltaRelay();
  const config = (name: string) => ir([listener(port, [gatewayListener('gw/http', null, [vhost('*', [route('r', match('/'), [backend(name)])])])])],
    [cluster('a', a), cluster('b', b)]);
  const answer = async () => String((await request(port, '/', { headers: { connection: 'close' } })).headers['x-backend']);

  relay.accept(wire(new IRDeltaEncoder().encode(config('a'))), true);
  await dp.applyDelta(relay.take()!);
  assert.equal(await answer(), 'a');
  // The controller restarted: its new encoder gives the changed host the id the old one had.
  const again = wire(new IRDeltaEncoder().encode(config('b')));
  relay.accept(again, true);
  await dp.applyDelta(relay.take()!);
  assert.equal(await answer(), 'b');
});

test('DeltaRelay into a WorkerPool: a worker started after many deltas gets the whole config and serves what a fresh decode gives', { timeout: 60_000 }, async (t) => {
  const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
  const port = await freePort();
  const relay = new DeltaRelay();
  const logged: string[] = [];
  const pool = new WorkerPool({ workers: 2, logLevel: 'warn', log: (_level, msg) => logged.push(msg), drainTimeoutMs: 2_000, source: relay });
  t.after(() => pool.close());
  const controller = new IRDeltaEncoder();
  const { config, steps, hosts } = evolving(port, { a, b, c: b });
  const forward = async (fresh: boolean) => {
    relay.accept(wire(controller.encode(config())), fresh);
    const result = await pool.apply(relay.take()!, relay.clusters());
    assert.deepEqual(result.routeErrors, {});
  };
  await forward(true);
  for (const step of steps) {
    step();
    await forward(false);
  }
  // Each host answers from the backend of the final config: one.test -> b, two.test -> b, four.test -> c (now a's port).
  const expected = decodeFresh(relay.full());
  assert.deepEqual(expected, json(config()));
  const served = (host: string) => request(port, '/', { host, headers: { connection: 'close' } }).then((r) => r.status === 200 ? String(r.headers['x-backend']) : `status ${r.status}`);
  const checkAll = async () => {
    for (let i = 0; i < 10; i++) {
      assert.equal(await served('one.test'), 'b');
      assert.equal(await served('two.test'), 'b');
      assert.equal(await served('four.test'), 'a');
      assert.equal(await served('three.test'), 'status 404');
    }
  };
  await checkAll();

  const before = await pool.stats();
  assert.equal(await pool.terminate(before[0]!.id), true);
  await waitFor('a replacement worker with the current config', async () => {
    const now = await pool.stats();
    return now.length === 2 && !now.some((w) => w.id === before[0]!.id) && now.every((w) => w.appliedSeq === pool.currentSeq);
  }, 10_000);
  assert.ok(logged.includes('data-plane worker exited; starting another'));
  await checkAll();
  const stats = await pool.stats();
  assert.ok(stats.every((w) => w.requests > 0), `both workers served: ${JSON.stringify(stats)}`);
  // And the delta after it reaches the replacement too.
  hosts.push(vhost('five.test', [route('five', match('/'), [backend('a')])]));
  await forward(false);
  for (let i = 0; i < 10; i++) assert.equal(await served('five.test'), 'a');
  await checkAll();
});
