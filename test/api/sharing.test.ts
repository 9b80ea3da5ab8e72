// Equal parts of loaded objects, held once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newSharedValues, shareValues } from '../../src/api/sharing.ts';

const route = (name: string, backend: string) => JSON.parse(JSON.stringify({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute',
  metadata: { name, namespace: 'ns', labels: {} },
  spec: {
    parentRefs: [{ name: 'gw' }],
    rules: [
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: backend, port: 80 }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'shared', port: 80 }] },
    ],
  },
})) as Record<string, any>;

test('shareValues: equal parts of the spec are one frozen object; values are unchanged', () => {
  const pool = newSharedValues();
  const a = route('a', 'one');
  const b = route('b', 'two');
  shareValues(a, pool);
  shareValues(b, pool);
  assert.deepEqual(a, route('a', 'one'));
  assert.deepEqual(b, route('b', 'two'));
  assert.equal(a.spec.parentRefs, b.spec.parentRefs);
  assert.equal(a.spec.rules[0].matches, a.spec.rules[1].matches);
  assert.equal(a.spec.rules[1], b.spec.rules[1]);
  assert.notEqual(a.spec.rules[0], b.spec.rules[0]);
  assert.notEqual(a.spec.rules, b.spec.rules);
  assert.ok(Object.isFrozen(a.spec.rules[1]) && Object.isFrozen(a.spec.rules));
  assert.throws(() => { a.spec.rules[1].matches.push({}); }, TypeError);
});

test('shareValues: metadata stays the object\'s own and can be stamped', () => {
  const pool = newSharedValues();
  const a = route('a', 'one');
  const b = route('b', 'one');
  shareValues(a, pool);
  shareValues(b, pool);
  assert.equal(a.spec, b.spec);
  assert.notEqual(a.metadata.labels, b.metadata.labels);
  a.metadata.generation = 2;
  assert.equal(b.metadata.generation, undefined);
});

test('shareValues: types are kept apart, and a __proto__ key is neither shared nor followed', () => {
  const pool = newSharedValues();
  const objects = ['{"spec":{"port":1}}', '{"spec":{"port":"1"}}', '{"spec":{"x":{"__proto__":{"a":1}}}}', '{"spec":{"x":{"__proto__":{"a":2}}}}']
    .map((text) => JSON.parse(text) as Record<string, any>);
  for (const o of objects) shareValues(o, pool);
  assert.equal(objects[0].spec.port, 1);
  assert.equal(objects[1].spec.port, '1');
  assert.notEqual(objects[2].spec, objects[3].spec);
  assert.deepEqual(Object.keys(objects[2].spec.x), ['__proto__']);
  assert.equal(Object.getPrototypeOf(objects[3].spec.x), Object.prototype);
  assert.deepEqual(objects[3].spec.x.__proto__, { a: 2 });
});
