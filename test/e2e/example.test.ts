// The README's quick start is true: the example configuration serves the
// keystone, nova and glance routes over HTTP and HTTPS, including the rule
// that reaches another namespace through a ReferenceGrant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import https from 'node:https';
import { request } from 'undici';
import { startEchoBackends } from '../../examples/echo-backends.ts';
import { startGatehouse, waitFor } from './helpers.ts';

const CONFIG = path.join(import.meta.dirname, '../../examples/config');
const GW = '127.42.0.1';

function httpsGet(host: string, p: string): Promise<{ status: number; body: string; cn: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: GW, port: 8443, path: p, servername: host, headers: { host }, rejectUnauthorized: false, agent: false }, (res) => {
      // Read the certificate now: a keep-alive socket is detached from the response by its end.
      const cn = String((res.socket as import('node:tls').TLSSocket).getPeerCertificate().subject.CN);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body, cn }));
    });
    req.on('error', reject);
  });
}

test('the example configuration serves the OpenStack-style routes', { timeout: 30_000 }, async () => {
  const backends = await startEchoBackends();
  const gw = await startGatehouse(CONFIG, '127.42.0.0/24');
  try {
    const get = async (host: string, p: string) => {
      const res = await request(`http://${GW}:8080${p}`, { headers: { host } });
      return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
    };
    const keystone = await waitFor('keystone', async () => { const r = await get('keystone.cloud.example.test', '/v3'); return r.status === 200 && r; });
    assert.equal(JSON.parse(keystone.body).service, 'keystone-api');
    assert.equal(JSON.parse(keystone.body).path, '/v3');

    const nova = await get('nova.cloud.example.test', '/v2.1/servers');
    assert.equal(JSON.parse(nova.body).service, 'nova-api');

    const glance = await get('glance.cloud.example.test', '/v2/images');
    assert.equal(JSON.parse(glance.body).service, 'glance-api');
    assert.equal(glance.headers['x-served-by'], 'gatehouse');

    const upload = await get('glance.cloud.example.test', '/v2/images/abc/file');
    assert.equal(JSON.parse(upload.body).service, 'image-store', 'the ReferenceGrant lets glance reach storage/image-store');

    const unknown = await get('swift.cloud.example.test', '/');
    assert.equal(unknown.status, 404);

    const tls = await httpsGet('glance.cloud.example.test', '/v2/images');
    assert.equal(tls.status, 200);
    assert.equal(JSON.parse(tls.body).service, 'glance-api');
    assert.equal(tls.cn, '*.cloud.example.test');

    const status = await (await request(`http://${gw.admin}/api/v1/resources`)).body.json() as { items: any[] };
    const glanceRoute = status.items.find((o) => o.kind === 'HTTPRoute' && o.metadata.name === 'glance');
    const cond = (type: string) => glanceRoute.status.parents[0].conditions.find((c: { type: string }) => c.type === type);
    assert.equal(cond('Accepted').status, 'True');
    assert.equal(cond('ResolvedRefs').status, 'True');
    const gateway = status.items.find((o) => o.kind === 'Gateway' && o.metadata.name === 'cloud');
    assert.deepEqual(gateway.status.listeners.map((l: { attachedRoutes: number }) => l.attachedRoutes), [3, 3]);
  } finally {
    await gw.close();
    for (const s of backends) { s.closeAllConnections(); s.close(); }
  }
});

// `npm run example` is one of the ways users start Gatehouse: the regex
// safety net (src/dataplane/regex-safety.ts) must hold there too. The
// example's own configuration plus one route with a catastrophic regex;
// without V8's linear-time fallback the request takes about a minute.
test('npm run example keeps the regex safety net', { timeout: 40_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-example-'));
  for (const f of fs.readdirSync(CONFIG)) fs.copyFileSync(path.join(CONFIG, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, '30-regex.yaml'), `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: regex, namespace: keystone}
spec:
  parentRefs: [{name: cloud, namespace: infra}]
  hostnames: [regex.cloud.example.test]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/(a+)+$"}}]
    backendRefs: [{name: keystone-api, port: 5000}]
`);
  const example = spawn('npm', ['run', 'example', '--silent', '--', '--config-dir', dir, '--admin-address', '127.0.0.1:0'], {
    cwd: path.join(import.meta.dirname, '../..'), stdio: 'ignore', detached: true,
  });
  try {
    const get = async (p: string) => (await request(`http://127.0.0.1:8080${p}`, { headers: { host: 'regex.cloud.example.test' } })).statusCode;
    await waitFor('the example to serve', async () => (await get('/aaaa')) === 200, 20_000);
    const started = performance.now();
    assert.equal(await get(`/${'a'.repeat(30)}!`), 404);
    const took = performance.now() - started;
    assert.ok(took < 2_000, `answered in ${Math.round(took)} ms: the regex ran without the linear-time fallback`);
  } finally {
    const exited = new Promise((r) => example.once('exit', r));
    try { process.kill(-example.pid!, 'SIGTERM'); } catch { /* gone */ }
    // A data plane stuck in a regex cannot drain: do not wait for it forever.
    const killer = setTimeout(() => { try { process.kill(-example.pid!, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
    await exited;
    clearTimeout(killer);
  }
});
