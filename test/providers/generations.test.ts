// GenerationTracker: generation, creationTimestamp and uid as the API
// server keeps them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GenerationTracker, rfc3339, specDigest } from '../../src/providers/file/generations.ts';
import type { KubeObject } from '../../src/api/types.ts';

function route(name: string, spec: unknown, meta: Partial<KubeObject['metadata']> = {}): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'a', ...meta }, spec: structuredClone(spec) };
}

function clock(start = Date.UTC(2025, 0, 2, 3, 4, 5, 678)) {
  let now = start;
  return { now: () => new Date(now), advance: (ms: number) => { now += ms; } };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('rfc3339: second precision, Z', () => {
  assert.equal(rfc3339(new Date(Date.UTC(2025, 0, 2, 3, 4, 5, 678))), '2025-01-02T03:04:05Z');
});

test('first sight: generation 1, creationTimestamp now, a random uid', () => {
  const c = clock();
  const g = new GenerationTracker(c.now);
  const [a, b] = g.stamp([route('r', { hostnames: ['a'] }), route('s', {})]);
  assert.equal(a.metadata.generation, 1);
  assert.equal(a.metadata.creationTimestamp, '2025-01-02T03:04:05Z');
  assert.match(a.metadata.uid!, UUID);
  assert.notEqual(a.metadata.uid, b.metadata.uid);
});

test('generation bumps on spec changes only; creationTimestamp and uid stay', () => {
  const c = clock();
  const g = new GenerationTracker(c.now);
  const spec = { hostnames: ['a.example.com'], rules: [{ backendRefs: [{ name: 'x', port: 80 }] }] };
  const [first] = g.stamp([route('r', spec)]);
  c.advance(60_000);

  const steps: [string, KubeObject, number][] = [
    ['same spec', route('r', spec), 1],
    ['labels changed', route('r', spec, { labels: { team: 'a' } }), 1],
    ['annotations changed', route('r', spec, { annotations: { note: 'x' } }), 1],
    ['status changed', { ...route('r', spec), status: { parents: [] } }, 1],
    ['keys reordered', route('r', { rules: [{ backendRefs: [{ port: 80, name: 'x' }] }], hostnames: ['a.example.com'] }), 1],
    ['spec changed', route('r', { ...spec, hostnames: ['b.example.com'] }), 2],
    ['spec unchanged again', route('r', { ...spec, hostnames: ['b.example.com'] }), 2],
    ['spec changed back', route('r', spec), 3],
  ];
  for (const [what, o, want] of steps) {
    const [stamped] = g.stamp([o]);
    assert.equal(stamped.metadata.generation, want, what);
    assert.equal(stamped.metadata.creationTimestamp, first.metadata.creationTimestamp, what);
    assert.equal(stamped.metadata.uid, first.metadata.uid, what);
  }
  assert.equal(g.generationOf('HTTPRoute', 'a', 'r'), 3);
});

test('an object that disappears is forgotten: re-created, it starts at generation 1 with a new uid', () => {
  const c = clock();
  const g = new GenerationTracker(c.now);
  const [first] = g.stamp([route('r', { hostnames: ['a'] })]);
  g.stamp([route('r', { hostnames: ['b'] })]);
  g.stamp([]);
  assert.equal(g.generationOf('HTTPRoute', 'a', 'r'), undefined);
  c.advance(5000);
  const [again] = g.stamp([route('r', { hostnames: ['b'] })]);
  assert.equal(again.metadata.generation, 1);
  assert.notEqual(again.metadata.uid, first.metadata.uid);
  assert.equal(again.metadata.creationTimestamp, '2025-01-02T03:04:10Z');
});

test('objects are told apart by kind, namespace and name', () => {
  const g = new GenerationTracker();
  g.stamp([route('r', { a: 1 }), { ...route('r', { a: 1 }), kind: 'GRPCRoute' }, route('r', { a: 1 }, { namespace: 'b' })]);
  const out = g.stamp([route('r', { a: 2 }), { ...route('r', { a: 1 }), kind: 'GRPCRoute' }, route('r', { a: 1 }, { namespace: 'b' })]);
  assert.deepEqual(out.map((o) => o.metadata.generation), [2, 1, 1]);
});

test('the file\'s creationTimestamp is kept; its generation and uid are not', () => {
  const g = new GenerationTracker();
  const [o] = g.stamp([route('r', {}, { creationTimestamp: '2020-05-06T07:08:09Z', generation: 42, uid: 'mine' })]);
  assert.equal(o.metadata.creationTimestamp, '2020-05-06T07:08:09Z');
  assert.equal(o.metadata.generation, 1);
  assert.match(o.metadata.uid!, UUID);
});

test('kinds without spec (Secret, ConfigMap) bump on their data', () => {
  const g = new GenerationTracker();
  const secret = (v: string): KubeObject => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'a' }, data: { k: v } });
  g.stamp([secret('YQ==')]);
  assert.equal(g.stamp([secret('YQ==')])[0].metadata.generation, 1);
  assert.equal(g.stamp([secret('Yg==')])[0].metadata.generation, 2);
});

test('specDigest: a fixed-size digest of the spec fields, blind to key order, metadata and status', () => {
  const spec = { hostnames: ['a.example.com'], rules: [{ backendRefs: [{ name: 'x', port: 80 }] }] };
  const d = specDigest(route('r', spec));
  assert.match(d, /^[A-Za-z0-9+/]{43}=$/);
  assert.equal(specDigest(route('r', { rules: [{ backendRefs: [{ port: 80, name: 'x' }] }], hostnames: ['a.example.com'] })), d);
  assert.equal(specDigest({ ...route('other', spec, { labels: { a: 'b' } }), status: { parents: [] } }), d);
  assert.notEqual(specDigest(route('r', { ...spec, hostnames: ['b.example.com'] })), d);
  // Spec fields beyond `spec` count too (Secret data, EndpointSlice endpoints).
  assert.notEqual(specDigest({ ...route('r', spec), data: { k: 'YQ==' } }), d);
  // A big spec still gives a digest of the same size.
  assert.equal(specDigest(route('r', { rules: Array.from({ length: 100 }, (_, i) => ({ matches: [{ path: { value: `/${i}` } }] })) })).length, d.length);
});

test('objects first seen in one stamp() share its creationTimestamp; later ones get a later one', () => {
  const c = clock();
  const g = new GenerationTracker(c.now);
  const [a, b] = g.stamp([route('a', {}), route('b', {})]);
  assert.equal(a.metadata.creationTimestamp, '2025-01-02T03:04:05Z');
  assert.equal(b.metadata.creationTimestamp, '2025-01-02T03:04:05Z');
  c.advance(2000);
  const [, d] = g.stamp([route('a', {}), route('d', {})]);
  assert.equal(d.metadata.creationTimestamp, '2025-01-02T03:04:07Z');
});

test('the same objects stamped again (a reload with other files changed) keep everything; one left out is forgotten, even as the same object', () => {
  const c = clock();
  const g = new GenerationTracker(c.now);
  const a = route('a', { hostnames: ['a'] });
  const b = route('b', { hostnames: ['b'] });
  g.stamp([a, b]);
  const first = { a: { ...a.metadata }, b: { ...b.metadata } };
  c.advance(60_000);
  const b2 = route('b', { hostnames: ['b2'] });
  g.stamp([a, b2]);
  assert.deepEqual(a.metadata, first.a, 'an unchanged object is left as it was');
  assert.equal(b2.metadata.generation, 2);
  assert.equal(b2.metadata.uid, first.b.uid);
  assert.equal(g.generationOf('HTTPRoute', 'a', 'b'), 2);
  // The old object of b comes back (a file restored): same spec as its first version, so one more generation.
  g.stamp([a, b]);
  assert.equal(b.metadata.generation, 3);
  // a is left out, then comes back as the very same object: forgotten in between, so new.
  g.stamp([b]);
  assert.equal(g.generationOf('HTTPRoute', 'a', 'a'), undefined);
  g.stamp([b, a]);
  assert.equal(a.metadata.generation, 1);
  assert.notEqual(a.metadata.uid, first.a.uid);
  // Two objects of one key in one set: both carry the first one's record.
  const a2 = route('a', { hostnames: ['changed'] });
  const a3 = route('a', { hostnames: ['changed'] });
  g.stamp([a2, a3, b]);
  assert.equal(a2.metadata.generation, 2);
  assert.equal(a3.metadata.generation, 2);
  assert.equal(a3.metadata.uid, a2.metadata.uid);
});
