// The reload claim: rewriting configuration files under steady concurrent
// load fails no request, across at least 50 reloads, and a file that does
// not parse leaves the last good configuration serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { GATEWAY_CLASS, gatewayYAML, serviceYAML, startEcho, startGatehouse, tempConfigDir, waitFor, writeConfig } from './helpers.ts';

const POOL = '127.41.0.0/24';
const GW = '127.41.0.1';

function routeYAML(version: number, extraRoutes: number): string {
  let out = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: main, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Config-Version, value: "${version}"}]}}]
    backendRefs: [{name: a, port: 80, weight: ${1 + (version % 3)}}, {name: b, port: 80, weight: 1}]
`;
  for (let i = 0; i < extraRoutes; i++) {
    out += `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: extra-${i}, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /extra-${i}}}], backendRefs: [{name: b, port: 80}]}]
`;
  }
  return out;
}

test('50 reloads under concurrent keep-alive load fail no request', { timeout: 120_000 }, async () => {
  const a = await startEcho('a');
  const b = await startEcho('b');
  const dir = tempConfigDir();
  writeConfig(dir, '00-base.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(18081)}---
${serviceYAML('default', 'a', 80, a.port)}---
${serviceYAML('default', 'b', 80, b.port)}`);
  writeConfig(dir, '10-routes.yaml', routeYAML(0, 0));
  const gw = await startGatehouse(dir, POOL);
  const agent = new Agent({ connections: 8, keepAliveTimeout: 30_000 });
  try {
    const url = `http://${GW}:18081/`;
    await waitFor('the first route to serve', async () => (await request(url, { dispatcher: agent }).then(async (r) => { await r.body.dump(); return r.statusCode === 200; })));

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const versionsSeen = new Set<string>();
    const client = async () => {
      while (!stop) {
        try {
          const res = await request(url, { dispatcher: agent, method: 'POST', body: 'ping' });
          const body = await res.body.json() as { body: string };
          if (res.statusCode !== 200 || body.body !== 'ping') failures.push(`status ${res.statusCode}`);
          else { ok++; versionsSeen.add(String(res.headers['x-config-version'])); }
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);

    for (let v = 1; v <= 50; v++) {
      writeConfig(dir, '10-routes.yaml', routeYAML(v, v % 7));
      if (v === 25) writeConfig(dir, '20-broken.yaml', 'apiVersion: v1\nkind: [unclosed\n');
      await waitFor(`version ${v} to serve`, async () => {
        const res = await request(url, { dispatcher: agent });
        await res.body.dump();
        return res.headers['x-config-version'] === String(v);
      }, 10_000);
    }
    stop = true;
    await Promise.all(clients);

    assert.deepEqual(failures, [], `failed requests: ${failures.slice(0, 5).join('; ')}`);
    assert.ok(ok > 500, `expected a steady load, got ${ok} requests`);
    assert.ok(versionsSeen.size >= 10, `the load should have seen many configurations, saw ${versionsSeen.size}`);

    // The broken file is reported, with its name, while the rest serves.
    const errors = await (await request(`http://${gw.admin}/api/v1/errors`)).body.json() as { items: { file: string; message: string }[] };
    assert.ok(errors.items.some((e) => e.file.endsWith('20-broken.yaml')), JSON.stringify(errors.items));
  } finally {
    await agent.close();
    await gw.close();
    await a.close();
    await b.close();
  }
});
