// `gatehouse serve --workers 2` as a real process: /metrics on the admin
// address adds up both workers' counters, answers only as the admin API
// does (token, Host, no cross-site browser requests), carries the control
// plane's counters; the access log file gets a line per request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { GATEWAY_CLASS, gatewayYAML, freePort, serviceYAML, spawnServe, startEcho, tempConfigDir, waitFor, writeConfig } from './helpers.ts';
import { sampleValue } from '../dataplane/prom-text.ts';

const ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`;

test('serve --workers 2: /metrics counts the requests of both workers, behind the admin API\'s rules; access log lines from both', { timeout: 90_000 }, async (t) => {
  const echo = await startEcho('web');
  t.after(() => echo.close());
  const dir = tempConfigDir();
  const runDir = fs.mkdtempSync(path.join(path.dirname(dir), 'gatehouse-metrics-run-'));
  t.after(() => { fs.rmSync(dir, { recursive: true, force: true }); fs.rmSync(runDir, { recursive: true, force: true }); });
  const tokenFile = path.join(runDir, 'token');
  const token = 'a'.repeat(48);
  fs.writeFileSync(tokenFile, token, { mode: 0o600 });
  const accessLog = path.join(runDir, 'access.log');
  const port = await freePort();
  writeConfig(dir, 'all.yaml', `${GATEWAY_CLASS}---\n${gatewayYAML(port)}---\n${serviceYAML('default', 'web', 80, echo.port)}---\n${ROUTE}`);
  const adminPort = await freePort();
  const admin = `http://127.0.0.1:${adminPort}`;
  const serve = spawnServe([
    '--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--admin-token-file', tokenFile,
    '--workers', '2', '--log-level', 'warn', '--shutdown-delay', '0s', '--access-log', accessLog,
  ]);
  t.after(() => serve.stop());
  const auth = { authorization: `Bearer ${token}` };
  await waitFor('readyz', async () => (await request(`${admin}/readyz`)).statusCode === 200, 30_000);

  const N = 40;
  for (let i = 0; i < N; i++) {
    // A connection each, so that both workers take some.
    const agent = new Agent({ connections: 1 });
    const res = await request(`http://127.0.0.1:${port}/n/${i}`, { dispatcher: agent, headers: { host: 'web.example' } });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    await agent.close();
  }
  const workers = ((await (await request(`${admin}/api/v1/workers`, { headers: auth })).body.json()) as { items: { requests: number }[] }).items;
  assert.equal(workers.length, 2);
  assert.ok(workers.every((w) => w.requests > 0), `both workers served: ${JSON.stringify(workers)}`);

  // The admin API's rules: a token, a Host it answers to, no other site's page.
  const noToken = await request(`${admin}/metrics`);
  await noToken.body.dump();
  assert.equal(noToken.statusCode, 401);
  const rebinding = await request(`${admin}/metrics`, { headers: { ...auth, host: 'attacker.example' } });
  await rebinding.body.dump();
  assert.equal(rebinding.statusCode, 403);
  const crossSite = await request(`${admin}/metrics`, { headers: { ...auth, origin: 'https://attacker.example' } });
  await crossSite.body.dump();
  assert.equal(crossSite.statusCode, 403);

  const res = await request(`${admin}/metrics`, { headers: auth });
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = await res.body.text();
  const labels = { gateway: 'default/gw', listener: 'http', route: 'default/web', rule: '0', code_class: '2xx' };
  assert.equal(sampleValue(text, 'gatehouse_http_requests_total', labels), N, text.split('\n').filter((l) => l.startsWith('gatehouse_http_requests_total')).join('\n'));
  assert.equal(sampleValue(text, 'gatehouse_downstream_connections_total', { address: `0.0.0.0:${port}` }) ?? sampleValue(text, 'gatehouse_downstream_connections_total'), N);
  assert.ok(sampleValue(text, 'gatehouse_config_generation')! >= 1);
  assert.ok(sampleValue(text, 'gatehouse_config_reloads_total', { result: 'success' })! >= 1);
  assert.equal(sampleValue(text, 'gatehouse_config_reloads_total', { result: 'failure' }), 0);
  assert.ok(sampleValue(text, 'gatehouse_translate_duration_seconds_count')! >= 1);
  assert.ok(sampleValue(text, 'process_resident_memory_bytes')! > 0);

  const lines = await waitFor('access log lines', async () => {
    const l = fs.existsSync(accessLog) ? fs.readFileSync(accessLog, 'utf8').split('\n').filter((x) => x !== '') : [];
    return l.length >= N ? l : undefined;
  }, 10_000);
  assert.equal(lines.length, N);
  const paths = new Set(lines.map((l) => (JSON.parse(l) as { path: string }).path));
  assert.equal(paths.size, N);
  assert.equal(sampleValue(await (await request(`${admin}/metrics`, { headers: auth })).body.text(), 'gatehouse_access_log_lines_total'), N);
});
