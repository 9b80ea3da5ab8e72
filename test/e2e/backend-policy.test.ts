// A BackendTrafficPolicy read from the config dir, end to end through
// `serve`'s control loop and a worker thread: passive health on the route
// it targets ejects the endpoint that answers 500, while another route to
// the same Service (no policy) keeps both endpoints; the ejection shows on
// /metrics under the policy's cluster; with the policy removed the route
// is back on both endpoints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import pino from 'pino';
import { startStandalone } from '../../src/control/standalone.ts';
import { GATEWAY_CLASS, freePort, gatewayYAML, startEcho, tempConfigDir, waitFor, writeConfig } from './helpers.ts';

const POOL = '127.45.0.0/24';
const GW = '127.45.0.1';

async function startFailing(): Promise<{ port: number; requests: number; close(): Promise<void> }> {
  const b = { port: 0, requests: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    b.requests++;
    req.resume();
    res.statusCode = 500;
    res.end('{"backend":"bad"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as AddressInfo).port;
  b.close = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return b;
}

/** Service images with two endpoints, one per slice: each slice has its own port number. */
function imagesService(goodPort: number, badPort: number): string {
  const slice = (n: number, port: number) => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: images-${n}, namespace: default, labels: {kubernetes.io/service-name: images}}
addressType: IPv4
ports: [{name: http, port: ${port}}]
endpoints: [{addresses: [127.0.0.1]}]
`;
  return `apiVersion: v1
kind: Service
metadata: {name: images, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
${slice(1, goodPort)}---
${slice(2, badPort)}`;
}

const route = (name: string, host: string) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${host}]
  rules: [{backendRefs: [{name: images, port: 80}]}]
`;

const POLICY = `apiVersion: gatehouse.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: eject, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: glance}]
  healthCheck: {passive: {consecutive5XxErrors: 1, baseEjectionTime: 5m, maxEjectionPercent: 50}}
`;

test('BackendTrafficPolicy from the config dir: passive health on its route only', { timeout: 60_000 }, async (t) => {
  const good = await startEcho('good');
  const bad = await startFailing();
  t.after(() => good.close());
  t.after(() => bad.close());
  const port = await freePort();
  const dir = tempConfigDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeConfig(dir, '00-base.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(port)}---
${imagesService(good.port, bad.port)}---
${route('glance', 'glance.example')}---
${route('other', 'other.example')}`);
  writeConfig(dir, '10-policy.yaml', POLICY);
  const standalone = await startStandalone({ configDir: dir, adminAddress: '127.0.0.1:0', addressPool: POOL, log: pino({ level: 'silent' }), workers: 1 });
  t.after(() => standalone.close());
  const statuses = async (host: string, n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = await request(`http://${GW}:${port}/`, { headers: { host } });
      await r.body.dump();
      out.push(r.statusCode);
    }
    return out;
  };
  await waitFor('the gateway serving', async () => (await statuses('other.example', 1))[0] !== undefined);

  // glance: the first 500 ejects the failing endpoint; every later request goes to the good one.
  const glance = await statuses('glance.example', 20);
  assert.ok(glance.filter((s) => s === 500).length <= 1, `glance: ${glance}`);
  assert.deepEqual(glance.slice(-18), new Array(18).fill(200), `glance: ${glance}`);
  // other: no policy, plain round robin over both endpoints, the failing one included.
  const other = await statuses('other.example', 20);
  assert.equal(other.filter((s) => s === 500).length, 10, `other: ${other}`);

  const metrics = await (await request(`http://127.0.0.1:${standalone.adminPort}/metrics`)).body.text();
  assert.match(metrics, /^gatehouse_upstream_ejections_total\{backend="default\/images:80~default\/eject"\} 1$/m);
  assert.doesNotMatch(metrics, /^gatehouse_upstream_ejections_total\{backend="default\/images:80"\} [1-9]/m);

  const resources = await request(`http://127.0.0.1:${standalone.adminPort}/api/v1/resources?kind=BackendTrafficPolicy`);
  const items = ((await resources.body.json()) as { items: { status?: { ancestors?: { conditions: { type: string; status: string }[] }[] } }[] }).items;
  assert.equal(items[0]?.status?.ancestors?.[0]?.conditions.find((c) => c.type === 'Accepted')?.status, 'True', JSON.stringify(items));

  // Policy removed: glance is back on both endpoints.
  fs.rmSync(path.join(dir, '10-policy.yaml'));
  await waitFor('glance back on both endpoints', async () => (await statuses('glance.example', 4)).includes(500) || undefined, 10_000);
});
