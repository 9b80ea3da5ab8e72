// The compact forms of strings kept with a loaded config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flatString, internStrings } from '../../src/api/strings.ts';

test('flatString: the same characters', () => {
  for (const s of ['', 'a', `${'x'.repeat(20)}/${42}/${'y'.repeat(3)}`, 'é\u{1F600}', '\ud800 lone surrogate']) assert.equal(flatString(s), s);
});

test('internStrings: equal values become one string, and the values are unchanged', () => {
  const pool = new Map<string, string>();
  const make = () => JSON.parse('{"kind":"Service","spec":{"rules":[{"type":"PathPrefix","value":"/a"},{"type":"PathPrefix","value":"/b"}],"n":1,"t":true,"z":null,"list":["PathPrefix",["Service"]]}}');
  const a = make();
  const b = make();
  internStrings(a, pool);
  internStrings(b, pool);
  assert.deepEqual(a, make());
  assert.deepEqual(b, make());
  // Sharing is not observable from JS: check it through the pool.
  assert.deepEqual([...pool.keys()].sort(), ['/a', '/b', 'PathPrefix', 'Service']);
});

test('internStrings: long values are left alone, and a __proto__ key stays an own property', () => {
  const pool = new Map<string, string>();
  const long = 'c'.repeat(1000);
  const o = JSON.parse(`{"data":{"__proto__":"x","cert":"${long}"}}`);
  internStrings(o, pool);
  assert.equal(o.data.cert, long);
  assert.equal(Object.getPrototypeOf(o.data), Object.prototype);
  assert.deepEqual(Object.keys(o.data), ['__proto__', 'cert']);
  assert.equal(pool.has(long), false);
  assert.equal(pool.has('x'), true);
});
