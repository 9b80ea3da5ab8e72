// What a data-plane thread loads: every module costs memory in each worker.
// Importing node:http as an ES module evaluates its lazy exports and so
// loads node's bundled undici (~2.7 MiB of heap per thread); the data plane
// must reach node:http only through require().

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';

test('a data-plane thread does not load node\'s bundled undici', async () => {
  const dataplane = new URL('../../src/dataplane/dataplane.ts', import.meta.url).href;
  const loaded = await new Promise<string[]>((resolve, reject) => {
    const worker = new Worker(
      `import(${JSON.stringify(dataplane)}).then(() => require('node:worker_threads').parentPort.postMessage(process.moduleLoadList));`,
      { eval: true },
    );
    worker.once('message', (list: string[]) => {
      void worker.terminate();
      resolve(list);
    });
    worker.once('error', reject);
  });
  assert.ok(loaded.includes('NativeModule net'), 'the data plane was loaded');
  assert.deepEqual(loaded.filter((m) => m.includes('deps/undici')), []);
});
