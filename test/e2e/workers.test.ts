// `gatehouse serve --workers 2` as a real process: both data-plane worker
// threads take traffic on the shared listener and a config change reaches
// both. (A worker that dies is replaced: test/control/worker-pool.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { GATEWAY_CLASS, gatewayYAML, freePort, serviceYAML, spawnServe, startEcho, tempConfigDir, waitFor, writeConfig, type EchoBackend } from './helpers.ts';

interface WorkerInfo { id: number; requests: number; current: boolean }

function routeYAML(name: string, host: string): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${host}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`;
}

/** Status of `count` requests, each on a connection of its own, so they spread over the workers. */
async function statuses(url: string, host: string, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const agent = new Agent({ connections: 1 });
    try {
      const res = await request(url, { dispatcher: agent, headers: { host } });
      await res.body.dump();
      out.push(res.statusCode);
    } finally {
      await agent.close();
    }
  }
  return out;
}

/** An echo backend, and a config directory whose Gateway (on `port`) routes first.example.test to it. */
async function oneRouteSetup(): Promise<{ echo: EchoBackend; dir: string; port: number; adminPort: number }> {
  const echo = await startEcho('web');
  const dir = tempConfigDir();
  const port = await freePort();
  writeConfig(dir, 'all.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(port)}---
${serviceYAML('default', 'web', 80, echo.port)}---
${routeYAML('first', 'first.example.test')}`);
  return { echo, dir, port, adminPort: await freePort() };
}

test('serve --workers 2: both workers serve and a reload reaches both', { timeout: 90_000 }, async () => {
  const { echo, dir, port, adminPort } = await oneRouteSetup();
  const admin = `http://127.0.0.1:${adminPort}`;
  const serve = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '2', '--log-level', 'warn', '--shutdown-delay', '0s']);
  const workers = async () => ((await (await request(`${admin}/api/v1/workers`)).body.json()) as { items: WorkerInfo[] }).items;
  const url = `http://127.0.0.1:${port}/`;
  try {
    await waitFor('readyz', async () => (await request(`${admin}/readyz`)).statusCode === 200, 30_000);
    // Ready means every worker applied the first config: no 404 from a worker that has none.
    assert.deepEqual(await statuses(url, 'first.example.test', 20), Array(20).fill(200));
    const before = await workers();
    assert.equal(before.length, 2);
    assert.notEqual(before[0].id, before[1].id);
    assert.ok(before.every((w) => w.requests > 0), `each worker served: ${JSON.stringify(before)}`);

    // A new route: once the control plane has applied it, every worker serves it.
    writeConfig(dir, 'second.yaml', routeYAML('second', 'second.example.test'));
    await waitFor('the new route', async () => (await statuses(url, 'second.example.test', 1))[0] === 200, 10_000);
    await waitFor('both workers on the new config', async () => (await workers()).every((w) => w.current));
    const counts = new Map((await workers()).map((w) => [w.id, w.requests]));
    assert.deepEqual(await statuses(url, 'second.example.test', 20), Array(20).fill(200));
    const after = await workers();
    assert.ok(after.every((w) => w.requests > (counts.get(w.id) ?? 0)), `both workers served the new route: ${JSON.stringify(after)}`);
  } finally {
    const code = await serve.stop(20_000);
    await echo.close();
    assert.equal(code, 0, `exit code; output:\n${serve.output()}`);
  }
});

/** serve's JSON log lines with this message. */
function linesSaying(output: string, msg: string): Record<string, unknown>[] {
  return output.split('\n').filter((l) => l.includes(msg)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('after a load ends, the worker and then the main thread give their memory back, once', { timeout: 90_000 }, async () => {
  const { echo, dir, port, adminPort } = await oneRouteSetup();
  const serve = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '1', '--log-level', 'debug', '--shutdown-delay', '0s']);
  const released = () => linesSaying(serve.output(), 'requests stopped: memory given back');
  const agent = new Agent({ connections: 20 });
  try {
    await waitFor('readyz', async () => (await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode === 200, 30_000);
    // Six seconds of requests: more than one of the watch's looks sees them.
    const until = Date.now() + 6_000;
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (Date.now() < until) {
        const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent, headers: { host: 'first.example.test' } });
        await res.body.dump();
        assert.equal(res.statusCode, 200);
      }
    }));
    assert.deepEqual(released(), [], 'nothing is released while requests come');
    const loadEnded = Date.now();

    const [worker, main] = await waitFor('both releases', async () => {
      const lines = released();
      return lines.length >= 2 ? lines : undefined;
    }, 40_000);
    const waited = Date.now() - loadEnded;
    assert.ok(waited >= 14_000, `not before 15 s of quiet: ${waited} ms`);
    assert.equal(typeof worker.worker, 'number', 'the worker first');
    assert.equal(main.thread, 'main');
    for (const line of [worker, main]) {
      assert.equal(line.level, 20, 'debug');
      for (const field of ['heapUsedMiB', 'heapUsedFreedMiB', 'heapCommittedMiB', 'heapCommittedFreedMiB', 'ms']) assert.equal(typeof line[field], 'number', field);
    }
    // The load grew the worker's young generation, which the release shrinks.
    assert.ok((worker.heapCommittedFreedMiB as number) > 0, JSON.stringify(worker));

    // Once per load: a quiet gateway does not collect again (more than one look later).
    await new Promise((r) => setTimeout(r, 6_000));
    assert.equal(released().length, 2);
  } finally {
    await agent.close();
    const code = await serve.stop(20_000);
    await echo.close();
    assert.equal(code, 0, `exit code; output:\n${serve.output()}`);
  }
});
