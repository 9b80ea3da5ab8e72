// The pieces a streamed answer is written in join to what JSON.stringify gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonPieces, safeStringify } from '../../src/admin/json-stream.ts';

const SAMPLES: unknown[] = [
  null, 1, 'text', true, [], {}, [1, [2, [3, [4]]]],
  { a: undefined, b: () => 1, c: Symbol('s'), d: [undefined, () => 1], e: { f: { g: { h: 'deep' } } } },
  { date: new Date(0), nested: { list: [{ x: 1 }, { y: 'a"b\\c\u2028' }] }, 'key "quoted"': 'v' },
  { version: 1, listeners: [{ key: 'k', gatewayListeners: [{ virtualHosts: [{ hostname: 'a', routes: [{ name: 'r', match: {} }] }] }] }], clusters: { c: { endpoints: [{ address: '127.0.0.1', port: 1 }] } } },
];

test('jsonPieces joined is JSON.stringify, at every split depth', () => {
  for (const sample of SAMPLES) {
    for (const depth of [0, 1, 2, 3, 8, 20]) {
      assert.equal([...jsonPieces(sample, depth)].join(''), JSON.stringify(sample), `${JSON.stringify(sample)} at depth ${depth}`);
    }
  }
  assert.equal([...jsonPieces(undefined, 3)].join(''), 'null');
});

test('deep values are split into pieces no larger than one leaf container', () => {
  const routes = Array.from({ length: 1000 }, (_, i) => ({ name: `r${i}`, match: { path: '/'.repeat(100) } }));
  const pieces = [...jsonPieces({ listeners: [{ gatewayListeners: [{ virtualHosts: [{ routes }] }] }] }, 8)];
  assert.ok(Math.max(...pieces.map((p) => p.length)) < 200);
});

test('safeStringify replaces any string holding a PEM private key, and says so', () => {
  let told = 0;
  const text = safeStringify({ a: 'x-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----', b: 'fine' }, () => { told++; });
  assert.deepEqual(JSON.parse(text), { a: '[redacted: private key]', b: 'fine' });
  assert.equal(told, 1);
  assert.equal(safeStringify({ cert: '-----BEGIN CERTIFICATE-----' }), '{"cert":"-----BEGIN CERTIFICATE-----"}');
});
