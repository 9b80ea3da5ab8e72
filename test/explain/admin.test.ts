// Explain and the page on a running gateway's admin API: the live config's
// answer (the same as the CLI's for the same directory), the bounded body,
// the access rules, and the page's headers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { request } from 'undici';
import { explain } from '../../src/explain/explain.ts';
import { parseExplainRequest } from '../../src/explain/request.ts';
import { explainInputFromDirectory } from '../../src/cli/explain.ts';
import { startAdminServer, MAX_EXPLAIN_BODY_BYTES } from '../../src/admin/server.ts';
import { freePort, startGatehouse } from '../e2e/helpers.ts';
import { writeExplainConfig } from './fixtures.ts';

let dir: string;
let gw: Awaited<ReturnType<typeof startGatehouse>>;
let base: string;

before(async () => {
  dir = writeExplainConfig({ httpPort: await freePort(), httpsPort: await freePort() });
  gw = await startGatehouse(dir, '127.61.0.0/24');
  base = `http://${gw.admin}`;
});
after(async () => {
  await gw?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function port(kind: 'http' | 'https'): number {
  const text = fs.readFileSync(`${dir}/config.yaml`, 'utf8');
  return Number(new RegExp(`name: ${kind}, port: (\\d+)|name: ${kind}\\n    port: (\\d+)`).exec(text)!.slice(1).find(Boolean));
}

async function post(body: string, headers: Record<string, string> = {}) {
  const res = await request(`${base}/api/v1/explain`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.statusCode, headers: res.headers, body: await res.body.json() as any };
}

test('POST /api/v1/explain answers for the live config what the CLI answers for the directory', async () => {
  const text = `GET http://nova.example:${port('http')}/v2.1/servers -H "X-Foo: bar"`;
  const r = await post(JSON.stringify({ request: text }));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.routed, true);
  assert.equal(r.body.socket.address, '127.61.0.1');
  const cli = explain(explainInputFromDirectory(dir).input, parseExplainRequest(text) as any);
  assert.equal(r.body.route.name, cli.route?.name);
  assert.deepEqual(r.body.routes, cli.routes);
  assert.deepEqual(r.body.unattached, cli.unattached);
});

test('GET /api/v1/explain with query parameters; --gateway style narrowing', async () => {
  const q = new URLSearchParams({ request: `GET https://nova.example:${port('https')}/v2.1`, gateway: 'default/gw' });
  const res = await request(`${base}/api/v1/explain?${q}`);
  const body = await res.body.json() as any;
  assert.equal(res.statusCode, 200);
  assert.equal(body.listener, 'default/gw/https');
  const none = new URLSearchParams({ request: `GET https://nova.example:${port('https')}/v2.1`, gateway: 'default/other' });
  const b2 = await (await request(`${base}/api/v1/explain?${none}`)).body.json() as any;
  assert.equal(b2.routed, false);
  assert.match(b2.sockets[0].reason, /no listener of Gateway default\/other/);
});

test('bad input: 400 with the reason; a body beyond the bound: 413', async () => {
  assert.equal((await post('not json')).status, 400);
  assert.equal((await post('[]')).status, 400);
  const bad = await post(JSON.stringify({ request: 'GET nowhere' }));
  assert.equal(bad.status, 400);
  assert.match(bad.body.error, /not an absolute URL/);
  assert.equal((await post(JSON.stringify({ request: 'GET http://x/', gateway: 3 }))).status, 400);
  const big = await post(JSON.stringify({ request: 'x'.repeat(MAX_EXPLAIN_BODY_BYTES) }));
  assert.equal(big.status, 413);
  const put = await request(`${base}/api/v1/explain`, { method: 'PUT', body: '{}' });
  assert.equal(put.statusCode, 405);
  assert.equal(put.headers.allow, 'GET, HEAD, POST');
  await put.body.dump();
});

test('a POST from another site is refused', async () => {
  const r = await post(JSON.stringify({ request: 'GET http://x/' }), { origin: 'http://evil.example' });
  assert.equal(r.status, 403);
});

test('the page and its files: CSP, no external resource; overview lists the Gateway and routes', async () => {
  const res = await request(`${base}/`);
  const html = await res.body.text();
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-security-policy'], "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//);
  assert.doesNotMatch(html, /<script>|<style>| on[a-z]+=/);
  for (const f of ['/ui.js', '/ui.css']) assert.equal((await request(`${base}${f}`)).statusCode, 200);
  const ov = await (await request(`${base}/api/v1/overview`)).body.json() as any;
  const g = ov.gateways.find((x: any) => x.name === 'default/gw');
  assert.deepEqual(g.listeners.map((l: any) => l.name), ['http', 'admin', 'https', 'keystone']);
  const intruder = g.routes.find((r: any) => r.name === 'other/intruder');
  assert.equal(intruder.conditions.find((c: any) => c.type === 'Accepted').reason, 'NotAllowedByListeners');
  assert.equal(intruder.requests, null, 'a route its Gateway did not accept serves nothing');
  // Requests are counted per route and listener from the data plane's metrics.
  const before = g.routes.find((r: any) => r.name === 'default/nova' && r.sectionName === 'http').requests;
  for (let i = 0; i < 3; i++) await (await request(`http://127.61.0.1:${port('http')}/v2.1/flavors`, { headers: { host: 'nova.example' } })).body.dump();
  const after = (await (await request(`${base}/api/v1/overview`)).body.json() as any).gateways.find((x: any) => x.name === 'default/gw').routes;
  assert.equal(after.find((r: any) => r.name === 'default/nova' && r.sectionName === 'http').requests, before + 3);
  assert.equal(after.find((r: any) => r.name === 'default/nova' && r.sectionName === 'https').requests, 0);
});

test('with a token: the page loads without it, explain and overview need it', async () => {
  const token = 'k'.repeat(40);
  const admin = await startAdminServer({
    address: '127.0.0.1:0', token, resources: () => [], errors: () => [], config: () => null, ready: () => true,
    explain: () => ({ routed: false }), overview: () => ({ gateways: [] }),
  });
  try {
    const at = `http://127.0.0.1:${admin.port}`;
    assert.equal((await request(`${at}/`)).statusCode, 200);
    assert.equal((await request(`${at}/api/v1/overview`)).statusCode, 401);
    assert.equal((await request(`${at}/api/v1/explain`, { method: 'POST', body: '{"request":"GET http://x/"}' })).statusCode, 401);
    const ok = await request(`${at}/api/v1/explain`, { method: 'POST', body: '{"request":"GET http://x/"}', headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.statusCode, 200);
  } finally {
    await admin.close();
  }
});
