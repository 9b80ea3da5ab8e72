// The order of hostnames in the IR: most specific first, and the same order
// on every machine whatever its locale.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bySpecificity } from '../../src/translate/hostnames.ts';

test('exact names come before wildcards, longer wildcard suffixes before shorter, and any host last', () => {
  // Listeners say "any host" with null, virtual hosts with '*'; a list holds one or the other.
  assert.deepEqual(['*', '*.example', 'b.example', '*.api.example', 'a.b.example'].sort(bySpecificity),
    ['a.b.example', 'b.example', '*.api.example', '*.example', '*']);
  assert.deepEqual([null, '*.example', 'b.example'].sort(bySpecificity), ['b.example', '*.example', null]);
});

test('ties are broken by code unit, not by the locale\'s collation', () => {
  // Collation puts lower case first and ignores case at the first level; code units do not.
  assert.ok(bySpecificity('B.example', 'a.example') < 0);
  assert.ok(bySpecificity('a-b.example', 'a.b.example') < 0);
});

test('the order is total: distinct names never compare equal and the comparison is antisymmetric', () => {
  const host = fc.oneof(fc.constant(null), fc.stringMatching(/^(\*\.)?[a-zA-Z0-9.-]{1,12}$/));
  fc.assert(fc.property(host, host, (a, b) => {
    const ab = Math.sign(bySpecificity(a, b));
    assert.ok(ab === -Math.sign(bySpecificity(b, a)), `${a} vs ${b}`);
    if (a !== b && !(a === '*' && b === null) && !(a === null && b === '*')) assert.notEqual(ab, 0);
  }));
});
