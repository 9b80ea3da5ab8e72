// StatusStore: conditions keep their lastTransitionTime while their status
// holds, and an unchanged status is kept as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sameApartFromTimes, StatusStore } from '../../src/control/status-store.ts';
import type { KubeObject } from '../../src/api/types.ts';

const route: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'ns' }, spec: {} };
const KEY = 'HTTPRoute|ns|r';
const cond = (type: string, status: string, reason = type) => ({ type, status, reason, message: '', observedGeneration: 1 });
const statusOf = (conditions: object[]) => ({ parents: [{ parentRef: { name: 'gw' }, controllerName: 'x', conditions }] });
type Stamped = { parents: { conditions: { type: string; lastTransitionTime: string }[] }[] };
const times = (s: StatusStore) => (s.resources()[0].status as Stamped).parents[0].conditions.map((c) => `${c.type}@${c.lastTransitionTime}`);

test('StatusStore keeps transition times while a condition holds and moves them when it changes', () => {
  const store = new StatusStore();
  store.update([route], new Map([[KEY, statusOf([cond('Accepted', 'True'), cond('ResolvedRefs', 'True')])]]), new Date('2026-01-01T00:00:00Z'));
  assert.deepEqual(times(store), ['Accepted@2026-01-01T00:00:00Z', 'ResolvedRefs@2026-01-01T00:00:00Z']);
  const first = store.resources()[0].status;

  // The same status again (a new object, as translate gives): kept as it was.
  store.update([route], new Map([[KEY, statusOf([cond('Accepted', 'True'), cond('ResolvedRefs', 'True')])]]), new Date('2026-01-02T00:00:00Z'));
  assert.equal(store.resources()[0].status, first);

  // One condition flips: it alone gets the new time.
  store.update([route], new Map([[KEY, statusOf([cond('Accepted', 'True'), cond('ResolvedRefs', 'False', 'BackendNotFound')])]]), new Date('2026-01-03T00:00:00Z'));
  assert.deepEqual(times(store), ['Accepted@2026-01-01T00:00:00Z', 'ResolvedRefs@2026-01-03T00:00:00Z']);

  // A changed reason or message with the same status keeps the time but shows the new text.
  store.update([route], new Map([[KEY, statusOf([cond('Accepted', 'True'), cond('ResolvedRefs', 'False', 'InvalidKind')])]]), new Date('2026-01-04T00:00:00Z'));
  assert.deepEqual(times(store), ['Accepted@2026-01-01T00:00:00Z', 'ResolvedRefs@2026-01-03T00:00:00Z']);
  assert.equal((store.resources()[0].status as { parents: { conditions: { reason: string }[] }[] }).parents[0].conditions[1].reason, 'InvalidKind');
});

test('sameApartFromTimes ignores only the lastTransitionTime of conditions', () => {
  const c = cond('Accepted', 'True');
  assert.equal(sameApartFromTimes(statusOf([c]), statusOf([{ ...c, lastTransitionTime: 't' }])), true);
  assert.equal(sameApartFromTimes(statusOf([c]), statusOf([{ ...c, lastTransitionTime: 't', extra: 1 }])), false);
  assert.equal(sameApartFromTimes(statusOf([c]), statusOf([{ ...c, status: 'False', lastTransitionTime: 't' }])), false);
  assert.equal(sameApartFromTimes(statusOf([c]), statusOf([c, c])), false);
  assert.equal(sameApartFromTimes({ listeners: [{ name: 'a', attachedRoutes: 1 }] }, { listeners: [{ name: 'a', attachedRoutes: 2 }] }), false);
  assert.equal(sameApartFromTimes({ a: [] }, { a: {} }), false);
});
