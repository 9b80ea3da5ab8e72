// The MetalLB stand-in on its own, against a real API server: what it
// writes to Services' status.loadBalancer.ingress for each way of asking
// (any address, a pool by name, an address by annotation or by
// spec.loadBalancerIP), what it refuses, and that addresses come free.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, type Cluster } from '../harness/cluster.ts';
import { Api, sleep, type Json } from './api.ts';
import { startMetalLB, type MetalLB } from './metallb.ts';

let cluster: Cluster;
let api: Api;
let metallb: MetalLB;
const NS = 'lb';
const logs: string[] = [];

const POOLS = [
  { name: 'default', addresses: ['10.250.0.0/24'], avoidBuggyIPs: true },
  { name: 'reserved', addresses: ['10.251.0.10-10.251.0.11'], autoAssign: false },
];

before(async () => {
  cluster = await startCluster({ crds: 'none', gatehouseCrds: false });
  api = new Api(cluster.kubeConfig());
  await api.must('POST', '/api/v1/namespaces', { metadata: { name: NS } });
  metallb = startMetalLB({ api, pools: POOLS, log: (m) => logs.push(m) });
  await metallb.synced;
});

after(async () => {
  metallb?.stop();
  await cluster?.stop();
});

async function service(name: string, opts: { annotations?: Record<string, string>; loadBalancerIP?: string; type?: string; loadBalancerClass?: string } = {}): Promise<void> {
  await api.must('POST', `/api/v1/namespaces/${NS}/services`, {
    metadata: { name, annotations: opts.annotations },
    spec: {
      type: opts.type ?? 'LoadBalancer', ports: [{ port: 80 }], selector: { app: name },
      loadBalancerIP: opts.loadBalancerIP, loadBalancerClass: opts.loadBalancerClass,
    },
  });
}

async function read(name: string): Promise<Json> {
  return (await api.must('GET', `/api/v1/namespaces/${NS}/services/${name}`)).body!;
}

const ingress = (svc: Json): string[] => (svc.status?.loadBalancer?.ingress ?? []).map((i: Json) => i.ip);

/** The Service's ingress addresses once they equal `want` (bounded: MetalLB answers in well under a second). */
async function expectIngress(name: string, want: string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  let got: string[] = [];
  while (Date.now() < deadline) {
    got = ingress(await read(name));
    if (JSON.stringify(got) === JSON.stringify(want)) return;
    await sleep(50);
  }
  assert.deepEqual(got, want, `${name}: status.loadBalancer.ingress`);
}

/** For a Service that must get nothing: wait until MetalLB has handled it, then it has no address. */
async function expectNothing(name: string, why: RegExp): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    await metallb.idle();
    const events = (await api.must('GET', `/api/v1/namespaces/${NS}/events?fieldSelector=involvedObject.name=${name}`)).body!.items as Json[];
    const failed = events.find((e) => e.reason === 'AllocationFailed');
    if (failed) {
      assert.match(failed.message, why);
      assert.deepEqual(ingress(await read(name)), [], `${name} got an address`);
      assert.equal(metallb.assignments().has(`${NS}/${name}`), false);
      return;
    }
    await sleep(50);
  }
  assert.fail(`${name}: no AllocationFailed event within 10 s`);
}

test('any address: the first free ones of the auto-assign pool, in order, never .0', async () => {
  await service('a');
  await expectIngress('a', ['10.250.0.1']);
  await service('b');
  await expectIngress('b', ['10.250.0.2']);
  const svc = await read('a');
  assert.equal(svc.status.loadBalancer.ingress[0].ipMode, 'VIP');
});

test('an address asked for by annotation or spec.loadBalancerIP, when in a pool and free', async () => {
  await service('by-annotation', { annotations: { 'metallb.io/loadBalancerIPs': '10.250.0.77' } });
  await expectIngress('by-annotation', ['10.250.0.77']);
  await service('by-spec', { loadBalancerIP: '10.250.0.78' });
  await expectIngress('by-spec', ['10.250.0.78']);
  // From a pool that assigns nothing by itself: asked for by address, it is given.
  await service('reserved-ip', { annotations: { 'metallb.io/loadBalancerIPs': '10.251.0.11' } });
  await expectIngress('reserved-ip', ['10.251.0.11']);

  await service('outside', { annotations: { 'metallb.io/loadBalancerIPs': '192.0.2.1' } });
  await expectNothing('outside', /192\.0\.2\.1 is not allowed/);
  await service('taken', { annotations: { 'metallb.io/loadBalancerIPs': '10.250.0.77' } });
  await expectNothing('taken', /already in use by lb\/by-annotation/);
});

test('a pool by name: addresses from it only; a pool that does not exist gives nothing', async () => {
  await service('named', { annotations: { 'metallb.io/address-pool': 'reserved' } });
  await expectIngress('named', ['10.251.0.10']);
  await service('nonexistent', { annotations: { 'metallb.io/address-pool': 'nonexistent' } });
  await expectNothing('nonexistent', /unknown pool "nonexistent"/);
  // The pool's only other address is taken by reserved-ip: the pool is full.
  await service('named-full', { annotations: { 'metallb.io/address-pool': 'reserved' } });
  await expectNothing('named-full', /no available IPs in pool "reserved"/);
});

test('Services of another load balancer class and of other types are left alone', async () => {
  await service('other-class', { loadBalancerClass: 'example.com/other' });
  await service('cluster-ip', { type: 'ClusterIP' });
  await metallb.idle();
  await sleep(300);
  await metallb.idle();
  assert.deepEqual(ingress(await read('other-class')), []);
  assert.deepEqual(ingress(await read('cluster-ip')), []);
  assert.equal(metallb.assignments().has(`${NS}/other-class`), false);
});

test('a deleted Service frees its address; a Service no longer of type LoadBalancer frees it and loses its status', async () => {
  await api.must('DELETE', `/api/v1/namespaces/${NS}/services/a`);
  await service('c');
  await expectIngress('c', ['10.250.0.1']);

  // Pool changed to one that does not exist: released and cleared.
  await api.mergePatch(`/api/v1/namespaces/${NS}/services/b`, { metadata: { annotations: { 'metallb.io/address-pool': 'gone' } } });
  await expectIngress('b', []);
  await service('d');
  await expectIngress('d', ['10.250.0.2']);

  await api.mergePatch(`/api/v1/namespaces/${NS}/services/d`, { spec: { type: 'ClusterIP' } });
  await expectIngress('d', []);
  assert.equal(metallb.assignments().has(`${NS}/d`), false);
});

test('a restarted MetalLB keeps the addresses in the Services\' status, and gives new ones around them', async () => {
  await service('e');
  await expectIngress('e', ['10.250.0.2']);
  metallb.stop();
  // A lower address comes free while no MetalLB runs: e keeps its own all the same.
  await api.must('DELETE', `/api/v1/namespaces/${NS}/services/c`);
  metallb = startMetalLB({ api, pools: POOLS, log: (m) => logs.push(m) });
  await metallb.synced;
  await metallb.idle();
  assert.deepEqual(ingress(await read('e')), ['10.250.0.2']);
  assert.equal(metallb.assignments().get(`${NS}/by-annotation`), '10.250.0.77');
  await service('f');
  await expectIngress('f', ['10.250.0.1']);
  await service('g');
  await expectIngress('g', ['10.250.0.3']);
});
