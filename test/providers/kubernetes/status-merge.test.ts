// The status writer's decisions without an API server: which entries of a
// shared status list are ours to replace, which stay; which statuses are
// the same; which lastTransitionTime a condition keeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  mergePolicyAncestors, mergeRouteParents, mergeStatus, parentRefKey, sameStatus, stampTransitionTimes,
} from '../../../src/providers/kubernetes/status-merge.ts';

const OURS = 'gatehouse.dev/gateway-controller';
const THEIRS = 'example.net/other-controller';
const T0 = '2024-01-01T00:00:00Z';
const NOW = '2025-06-01T12:00:00Z';

function cond(type: string, status: 'True' | 'False', reason = type, lastTransitionTime?: string) {
  return { type, status, reason, message: '', observedGeneration: 1, ...(lastTransitionTime ? { lastTransitionTime } : {}) };
}

function parent(name: string, controllerName: string, conditions: ReturnType<typeof cond>[], extra: Record<string, unknown> = {}) {
  return { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name, ...extra }, controllerName, conditions };
}

test('sameStatus ignores lastTransitionTime of conditions, and nothing else', () => {
  const a = { conditions: [cond('Accepted', 'True', 'Accepted', T0)], listeners: [{ name: 'http', attachedRoutes: 1 }] };
  const b = { conditions: [cond('Accepted', 'True', 'Accepted', NOW)], listeners: [{ name: 'http', attachedRoutes: 1 }] };
  assert.equal(sameStatus(a, b), true);
  assert.equal(sameStatus({ conditions: [cond('Accepted', 'True')] }, { conditions: a.conditions }), true, 'a condition without a time is the same as one with');
  assert.equal(sameStatus(a, { ...b, listeners: [{ name: 'http', attachedRoutes: 2 }] }), false);
  assert.equal(sameStatus(a, { ...b, conditions: [cond('Accepted', 'False', 'Accepted', T0)] }), false);
  assert.equal(sameStatus(a, { ...b, conditions: [{ ...cond('Accepted', 'True', 'Accepted', T0), message: 'other' }] }), false);
  assert.equal(sameStatus(a, { ...b, conditions: [] }), false);
  // Only a condition's time is ignored: a field of that name elsewhere counts.
  assert.equal(sameStatus({ x: { lastTransitionTime: T0 } }, { x: { lastTransitionTime: NOW } }), false);
  // JSON drops undefined fields: they are no difference.
  assert.equal(sameStatus({ a: 1, b: undefined }, { a: 1 }), true);
  assert.equal(sameStatus({ a: [1, 2] }, { a: [2, 1] }), false);
  assert.equal(sameStatus(undefined, {}), false);
});

test('parentRefKey fills in the defaults: group, kind and the holder\'s namespace', () => {
  assert.equal(parentRefKey({ name: 'gw' }, 'apps'), parentRefKey({ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'apps', name: 'gw' }, 'apps'));
  assert.notEqual(parentRefKey({ name: 'gw' }, 'apps'), parentRefKey({ name: 'gw', sectionName: 'http' }, 'apps'));
  assert.notEqual(parentRefKey({ name: 'gw' }, 'apps'), parentRefKey({ name: 'gw', port: 80 }, 'apps'));
  assert.notEqual(parentRefKey({ name: 'gw' }, 'apps'), parentRefKey({ name: 'gw', namespace: 'infra' }, 'apps'));
  assert.notEqual(parentRefKey({ name: 'gw' }), parentRefKey({ name: 'gw', kind: 'ListenerSet' }));
});

test('mergeRouteParents keeps other controllers\' entries where they are and replaces ours', () => {
  const existing = [
    parent('a', OURS, [cond('Accepted', 'False', 'NoMatchingParent', T0)]),
    parent('x', THEIRS, [cond('Accepted', 'True', 'Accepted', T0)]),
    parent('b', OURS, [cond('Accepted', 'True', 'Accepted', T0)]),
  ];
  const ours = [
    parent('b', OURS, [cond('Accepted', 'True', 'Accepted', T0)]),
    parent('a', OURS, [cond('Accepted', 'True', 'Accepted', NOW)]),
  ];
  const merged = mergeRouteParents(existing, ours, OURS, 'apps');
  assert.deepEqual(merged, [ours[1], existing[1], ours[0]], 'places kept: a first, theirs in the middle');
  // The same once more: no change, so no write and no tug of war over order.
  assert.deepEqual(mergeRouteParents(merged, ours, OURS, 'apps'), merged);
});

test('mergeRouteParents removes ours whose parentRef translate no longer gives, and adds new ones last', () => {
  const existing = [
    parent('gone', OURS, [cond('Accepted', 'True')]),
    parent('x', THEIRS, [cond('Accepted', 'True')]),
  ];
  const ours = [parent('new', OURS, [cond('Accepted', 'True')])];
  assert.deepEqual(mergeRouteParents(existing, ours, OURS), [existing[1], ours[0]]);
  assert.deepEqual(mergeRouteParents(existing, [], OURS), [existing[1]], 'none of ours left: only theirs');
  assert.deepEqual(mergeRouteParents(undefined, ours, OURS), ours, 'no status yet');
});

test('mergeRouteParents never writes an entry under another controller\'s name, and keeps theirs even for the same parent', () => {
  const existing = [parent('shared', THEIRS, [cond('Accepted', 'True')])];
  const smuggled = parent('shared', THEIRS, [cond('Accepted', 'False')]);
  const ours = parent('shared', OURS, [cond('Accepted', 'True')]);
  assert.deepEqual(mergeRouteParents(existing, [smuggled, ours], OURS), [existing[0], ours]);
});

test('mergeRouteParents matches refs by meaning: defaults and the route\'s namespace', () => {
  const existing = [{ parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw', namespace: 'apps' }, controllerName: OURS, conditions: [] }];
  const ours = [{ parentRef: { name: 'gw' }, controllerName: OURS, conditions: [cond('Accepted', 'True')] }];
  assert.deepEqual(mergeRouteParents(existing, ours, OURS, 'apps'), ours, 'replaced, not added beside');
  assert.equal(mergeRouteParents(existing, ours, OURS, 'other').length, 1, 'for a route elsewhere it names another parent: the old entry goes, the new one comes');
});

test('mergeRouteParents drops duplicates of ours and keeps within the CRD\'s 32, never at the cost of others', () => {
  const dup = parent('a', OURS, [cond('Accepted', 'True')]);
  assert.deepEqual(mergeRouteParents([dup, dup], [dup], OURS), [dup]);

  const theirs = Array.from({ length: 30 }, (_, i) => parent(`t${i}`, THEIRS, []));
  const ours = Array.from({ length: 5 }, (_, i) => parent(`o${i}`, OURS, []));
  const merged = mergeRouteParents(theirs, ours, OURS);
  assert.equal(merged.length, 32);
  assert.deepEqual(merged.slice(0, 30), theirs);
  assert.deepEqual(merged.slice(30), ours.slice(0, 2));
  const full = Array.from({ length: 32 }, (_, i) => parent(`t${i}`, THEIRS, []));
  assert.deepEqual(mergeRouteParents(full, ours, OURS), full);
});

test('mergePolicyAncestors merges ancestors by ancestorRef the same way, within 16', () => {
  const anc = (name: string, controllerName: string) => ({ ancestorRef: { name }, controllerName, conditions: [] });
  const existing = [anc('g1', OURS), anc('g2', THEIRS)];
  assert.deepEqual(mergePolicyAncestors(existing, [anc('g3', OURS)], OURS), [anc('g2', THEIRS), anc('g3', OURS)]);
  const many = Array.from({ length: 20 }, (_, i) => anc(`g${i}`, OURS));
  assert.equal(mergePolicyAncestors([], many, OURS).length, 16);
});

test('stampTransitionTimes keeps the time of a condition whose status did not change, stamps the others', () => {
  const existing = {
    conditions: [cond('Accepted', 'True', 'Accepted', T0), cond('Programmed', 'False', 'Pending', T0)],
    listeners: [{ name: 'http', conditions: [cond('Programmed', 'True', 'Programmed', T0)] }],
  };
  const desired = {
    conditions: [cond('Accepted', 'True', 'Accepted'), cond('Programmed', 'True', 'Programmed')],
    listeners: [
      { name: 'https', conditions: [cond('Programmed', 'True', 'Programmed')] },
      { name: 'http', conditions: [cond('Programmed', 'True', 'Programmed'), cond('ResolvedRefs', 'True')] },
    ],
  };
  const stamped = stampTransitionTimes(desired, existing, NOW) as typeof existing;
  assert.deepEqual(stamped.conditions.map((c) => c.lastTransitionTime), [T0, NOW]);
  assert.deepEqual(stamped.listeners[0].conditions.map((c) => c.lastTransitionTime), [NOW], 'a new listener: matched by name, not index');
  assert.deepEqual(stamped.listeners[1].conditions.map((c) => c.lastTransitionTime), [T0, NOW]);
  assert.equal((desired.conditions[0] as { lastTransitionTime?: string }).lastTransitionTime, undefined, 'desired untouched');
  // A reason or message may change while the status stays: the time stays too.
  const reworded = stampTransitionTimes({ conditions: [cond('Accepted', 'True', 'Reworded')] }, existing, NOW) as typeof existing;
  assert.equal(reworded.conditions[0].lastTransitionTime, T0);
});

test('stampTransitionTimes matches route parents by parentRef and controller', () => {
  const existing = [
    parent('b', OURS, [cond('Accepted', 'True', 'Accepted', T0)]),
    parent('a', THEIRS, [cond('Accepted', 'True', 'Accepted', T0)]),
  ];
  const desired = [parent('a', OURS, [cond('Accepted', 'True')]), parent('b', OURS, [cond('Accepted', 'True')])];
  const stamped = stampTransitionTimes(desired, existing, NOW) as typeof existing;
  assert.equal(stamped[0].conditions[0].lastTransitionTime, NOW, 'their entry for "a" is not ours to take a time from');
  assert.equal(stamped[1].conditions[0].lastTransitionTime, T0);
});

test('mergeStatus: a Gateway\'s whole status is ours; an unchanged translation is the same status', () => {
  const current = { conditions: [cond('Accepted', 'True', 'Accepted', T0)], addresses: [{ type: 'IPAddress', value: '10.0.0.1' }], listeners: [] };
  const desired = { conditions: [cond('Accepted', 'True', 'Accepted')], listeners: [] };
  const merged = mergeStatus('Gateway', current, desired, OURS, 'infra', NOW) as Record<string, unknown>;
  assert.equal(merged.addresses, undefined, 'what translate leaves out goes');
  assert.equal(sameStatus(merged, current), false);
  const again = mergeStatus('Gateway', merged, desired, OURS, 'infra', '2030-01-01T00:00:00Z');
  assert.equal(sameStatus(again, merged), true);
  assert.deepEqual(again, merged, 'times kept');
});

test('mergeStatus: a route none of whose parents is ours is left exactly as it is', () => {
  assert.equal(mergeStatus('HTTPRoute', undefined, { parents: [] }, OURS, 'apps', NOW), undefined);
  const theirs = { parents: [parent('x', THEIRS, [cond('Accepted', 'True', 'Accepted', T0)])] };
  assert.equal(mergeStatus('HTTPRoute', theirs, { parents: [] }, OURS, 'apps', NOW), theirs);
  const withOurs = mergeStatus('HTTPRoute', theirs, { parents: [parent('gw', OURS, [cond('Accepted', 'True')])] }, OURS, 'apps', NOW) as typeof theirs;
  assert.equal(withOurs.parents.length, 2);
  assert.equal(withOurs.parents[1].conditions[0].lastTransitionTime, NOW);
  assert.deepEqual(withOurs.parents[0], theirs.parents[0]);
});

test('mergeStatus: BackendTLSPolicy ancestors are shared like route parents', () => {
  const current = { ancestors: [{ ancestorRef: { name: 'gw' }, controllerName: THEIRS, conditions: [] }] };
  const desired = { ancestors: [{ ancestorRef: { name: 'gw' }, controllerName: OURS, conditions: [cond('Accepted', 'True')] }] };
  const merged = mergeStatus('BackendTLSPolicy', current, desired, OURS, 'apps', NOW) as { ancestors: { controllerName: string }[] };
  assert.deepEqual(merged.ancestors.map((a) => a.controllerName), [THEIRS, OURS]);
});
