// The file provider's parsing pieces on their own: the JSON scans (nesting
// before parsing, syntax errors without quoting), the shape of a parsed
// YAML graph (depth, size, aliases), and the bounded directory listing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { findJsonSyntaxError, jsonTooDeepAt, lineColumn } from '../../src/providers/file/json-syntax.ts';
import { expandShared, measureShape } from '../../src/providers/file/shape.ts';
import { readConfigFiles } from '../../src/providers/file/listing.ts';
import { parseConfigText } from '../../src/providers/file/parse.ts';
import { resolveLoaderLimits, DEFAULT_LOADER_LIMITS } from '../../src/providers/file/limits.ts';

test('jsonTooDeepAt: exact for JSON, blind to brackets in strings, stops at the first bracket too deep', () => {
  assert.equal(jsonTooDeepAt('[[[]]]', 3), -1);
  assert.equal(jsonTooDeepAt('[[[[]]]]', 3), 3);
  assert.equal(jsonTooDeepAt('{"a": "[[[[[[", "b": {"c": []}}', 3), -1);
  assert.equal(jsonTooDeepAt('{"a": "\\"[[[[", "b": [[[1]]]}', 3), 23);
  assert.equal(jsonTooDeepAt('[[]] [[]] [[]]', 2), -1, 'depth goes back down');
});

test('property: findJsonSyntaxError finds an error exactly when JSON.parse throws', () => {
  const json = fc.json({ depthSize: 'small' });
  // Valid JSON, and JSON cut, spliced or sprinkled with syntax.
  const mutated = fc.tuple(json, fc.nat(), fc.nat(), fc.constantFrom('', ',', ':', '"', '\\', '[', ']', '{', '}', 'x', '-', '.', 'e', '0', '\u0001', ' ', 'tru', 'nul'))
    .map(([text, i, j, insert]) => {
      const a = i % (text.length + 1);
      const b = Math.min(text.length, a + (j % 3));
      return text.slice(0, a) + insert + text.slice(b);
    });
  fc.assert(fc.property(fc.oneof(json, mutated), (text) => {
    let parses = true;
    try { JSON.parse(text); } catch { parses = false; }
    const found = findJsonSyntaxError(text);
    return parses ? found === null : found !== null && found.index >= 0 && found.index <= text.length;
  }), { numRuns: 2_000 });
});

test('lineColumn counts 1-based lines and columns', () => {
  assert.deepEqual(lineColumn('ab\ncd\nef', 0), { line: 1, column: 1 });
  assert.deepEqual(lineColumn('ab\ncd\nef', 4), { line: 2, column: 2 });
  assert.deepEqual(lineColumn('ab\ncd\nef', 8), { line: 3, column: 3 });
});

test('measureShape: depth and values as a tree, aliases counted every time, cycles end at the depth limit', () => {
  assert.deepEqual(measureShape({ a: [1, { b: 2 }] }, 3, 10), { problem: null, shared: false });
  assert.deepEqual(measureShape({ a: [1, { b: 2 }] }, 2, 10), { problem: 'depth', shared: false });
  assert.deepEqual(measureShape({ a: [1, { b: 2 }] }, 3, 4), { problem: 'values', shared: false });
  const part = { x: [1, 2, 3] };
  assert.deepEqual(measureShape({ a: part, b: part }, 3, 100), { problem: null, shared: true });
  let laughs: unknown = ['x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'];
  for (let i = 0; i < 30; i++) laughs = Array(10).fill(laughs);
  assert.equal(measureShape(laughs, 64, 1_000_000).problem, 'values');
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.equal(measureShape(cycle, 64, 1_000_000).problem, 'depth');
});

test('expandShared gives every use of a shared part its own copy, keeps data keys named __proto__', () => {
  const part = { x: [1, { y: 2 }] };
  const doc = JSON.parse('{"__proto__": {"z": 1}}') as Record<string, unknown>;
  doc.a = part;
  doc.b = part;
  const copy = expandShared(doc);
  assert.deepEqual(copy, doc);
  assert.notEqual(copy.a, copy.b);
  assert.notEqual((copy.a as typeof part).x, (copy.b as typeof part).x);
  assert.equal(Object.getPrototypeOf(copy), Object.prototype);
  assert.ok(Object.hasOwn(copy, '__proto__'));
});

test('YAML with aliases reads as YAML means it: each use a copy of its own', () => {
  const parsed = parseConfigText('x.yaml', 'a: &x {k: [1, 2]}\nb: *x\n', DEFAULT_LOADER_LIMITS);
  assert.ok(parsed.ok);
  const doc = parsed.entries[0].raw as { a: { k: number[] }; b: { k: number[] } };
  assert.deepEqual(doc.a, doc.b);
  assert.notEqual(doc.a, doc.b);
  assert.notEqual(doc.a.k, doc.b.k);
});

test('readConfigFiles lists the first maxFiles names whatever the order on disk, holding few of them at once', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-listing-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const all = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(3, '0')}.yaml`);
  for (const name of [...all].reverse()) fs.writeFileSync(path.join(dir, name), '');
  fs.writeFileSync(path.join(dir, 'notes.txt'), '');
  fs.mkdirSync(path.join(dir, 'a-dir.yaml'));
  const listing = readConfigFiles(dir, 7, new Set(['f100.yaml', 'f000.yaml']));
  assert.deepEqual(listing.names, all.slice(0, 7));
  assert.equal(listing.beyond, 293);
  // The first refused, and the known ones refused: each is reported by name.
  assert.deepEqual(listing.refused, ['f007.yaml', 'f100.yaml']);
  assert.deepEqual(readConfigFiles(dir).names, all);
});

test('resolveLoaderLimits: the defaults, overrides, and a bad value named', () => {
  assert.deepEqual(resolveLoaderLimits(), {
    maxFileBytes: 4 * 1024 * 1024, maxDirectoryBytes: 64 * 1024 * 1024, maxFiles: 10_000, maxDepth: 64, maxValues: 1_000_000, settleMs: 50,
  });
  assert.equal(resolveLoaderLimits({ settleMs: 0 }).settleMs, 0);
  assert.throws(() => resolveLoaderLimits({ maxDepth: -1 }), /maxDepth: must be an integer >= 1, not -1/);
});
