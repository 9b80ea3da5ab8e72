// `gatehouse serve` as a real process, the way users and the conformance
// runner start it: readiness, status on the admin API, traffic, a
// catastrophic route regex that must not stall it, and a clean SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { GATEWAY_CLASS, gatewayYAML, freePort, serviceYAML, spawnServe, startEcho, tempConfigDir, waitFor, writeConfig } from './helpers.ts';

test('serve: ready, reports status, routes, survives a catastrophic regex, stops on SIGTERM', { timeout: 60_000 }, async () => {
  const echo = await startEcho('web');
  const dir = tempConfigDir();
  writeConfig(dir, 'all.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(18082)}---
${serviceYAML('default', 'web', 80, echo.port)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/(a+)+b"}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Rule, value: fallback}]}}]
    backendRefs: [{name: web, port: 80}]
`);
  const adminPort = await freePort();
  const serve = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--address-pool', '127.43.0.0/24', '--log-level', 'warn', '--shutdown-delay', '0s']);
  try {
    await waitFor('readyz', async () => (await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode === 200, 20_000);
    const { items } = await (await request(`http://127.0.0.1:${adminPort}/api/v1/resources`)).body.json() as { items: any[] };
    const gw = items.find((o) => o.kind === 'Gateway');
    assert.equal(gw.metadata.generation, 1);
    assert.deepEqual(gw.status.addresses, [{ type: 'IPAddress', value: '127.43.0.1' }]);
    assert.equal(gw.status.conditions.find((c: { type: string }) => c.type === 'Programmed').status, 'True');

    const hit = await waitFor('the regex route', async () => {
      const res = await request('http://127.43.0.1:18082/aaab');
      const body = await res.body.json() as { backend: string; path: string };
      return res.statusCode === 200 && res.headers['x-rule'] === undefined && body;
    });
    assert.equal(hit.path, '/aaab');

    // Exponential for a backtracking engine; linear once V8 falls back. Without the
    // fallback this request would not be answered for hours.
    const evil = `/${'a'.repeat(40)}c`;
    const res = await request(`http://127.43.0.1:18082${evil}`, { headersTimeout: 15_000 });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-rule'], 'fallback');
  } finally {
    const code = await serve.stop();
    await echo.close();
    assert.equal(code, 0, `exit code; output:\n${serve.output()}`);
  }
});
