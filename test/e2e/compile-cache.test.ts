// serve writes its threads' compile cache once it is ready, not only at
// exit: a gateway that is killed keeps a warm cache for its next start
// (in a pod, /tmp outlives the container), which then skips loading node's
// TypeScript stripper in every thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { GATEWAY_CLASS, gatewayYAML, freePort, spawnServe, tempConfigDir, waitFor, writeConfig } from './helpers.ts';

function filesUnder(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n++;
  return n;
}

test('the compile cache is on disk once serve is ready, main thread and worker alike: a killed gateway restarts warm', { timeout: 90_000 }, async () => {
  const caches = [0, 1].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-cache-')));
  const dir = tempConfigDir();
  writeConfig(dir, 'gw.yaml', `${GATEWAY_CLASS}---\n${gatewayYAML(await freePort())}`);
  const adminPort = await freePort();
  const start = (cache: string) => spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '1', '--log-level', 'warn', '--shutdown-delay', '0s'],
    { ...process.env, NODE_COMPILE_CACHE: cache });
  const ready = () => waitFor('readyz', async () => (await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null))?.statusCode === 200, 30_000);
  try {
    // What node writes by itself at a clean exit: every module the threads loaded.
    const reference = start(caches[0]);
    await ready();
    await reference.stop();
    const atExit = filesUnder(caches[0]);

    const first = start(caches[1]);
    await ready();
    // The worker's flush follows its first apply, which readiness waits for.
    const atReady = filesUnder(caches[1]);
    process.kill(first.pid, 'SIGKILL');
    await first.stop();
    assert.ok(atReady >= atExit * 0.9, `written while serving: ${atReady} cache files at ready, ${atExit} after a clean exit`);

    // The restart reads every module back: nothing new to write.
    const second = start(caches[1]);
    await ready();
    assert.equal(filesUnder(caches[1]), atReady, 'the killed process had written every module both threads load');
    await second.stop();
  } finally {
    for (const c of caches) fs.rmSync(c, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
