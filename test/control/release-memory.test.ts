// releaseMemory: frees what is dead and gives the young generation back,
// without leaving V8's gc() as a global of the thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { releaseMemory } from '../../src/control/release-memory.ts';

test('releaseMemory collects dead objects and does not expose gc()', () => {
  let garbage: object[] | null = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `x${i}` }));
  const before = v8.getHeapStatistics().used_heap_size;
  assert.equal(garbage.length, 200_000);
  garbage = null;
  releaseMemory();
  const after = v8.getHeapStatistics().used_heap_size;
  assert.ok(after < before - 5 * 1024 * 1024, `heap in use ${before} -> ${after}`);
  assert.equal((globalThis as { gc?: unknown }).gc, undefined);
});
