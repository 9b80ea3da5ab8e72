// Session persistence through a real `gatehouse serve --workers 2`: an
// HTTPRoute written in the Gateway API v1.4 spelling (sessionName,
// cookieConfig) in front of a Service whose EndpointSlice lists two
// endpoints. The cookie keeps a session on one endpoint whichever worker
// thread takes the connection (the key is shared), through a reload that
// keeps the endpoint, and moves when the endpoint turns not ready.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { GATEWAY_CLASS, gatewayYAML, freePort, spawnServe, tempConfigDir, waitFor, writeConfig } from './helpers.ts';
import { SESSION_KEY_ENV } from '../../src/dataplane/upstream/sticky.ts';

interface WorkerInfo { id: number; requests: number }

/** Two echo servers on one port, on 127.0.0.1 and 127.0.0.2: the two endpoints of one Service port. */
async function twoEndpoints(): Promise<{ port: number; close(): Promise<void> }> {
  const servers: http.Server[] = [];
  let port = 0;
  for (const [name, address] of [['one', '127.0.0.1'], ['two', '127.0.0.2']] as const) {
    const server = http.createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ backend: name }));
    });
    await new Promise<void>((resolve) => server.listen(port, address, resolve));
    port = (server.address() as AddressInfo).port;
    servers.push(server);
  }
  return {
    port,
    close: async () => {
      for (const s of servers) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}

function config(gatewayPort: number, backendPort: number, notReady: string | null): string {
  const endpoint = (address: string) => `{addresses: [${address}], conditions: {ready: ${address !== notReady}}}`;
  return `${GATEWAY_CLASS}---
${gatewayYAML(gatewayPort)}---
apiVersion: v1
kind: Service
metadata: {name: keystone, namespace: default}
spec: {ports: [{name: http, port: 5000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: keystone-1, namespace: default, labels: {kubernetes.io/service-name: keystone}}
addressType: IPv4
ports: [{name: http, port: ${backendPort}}]
endpoints: [${endpoint('127.0.0.1')}, ${endpoint('127.0.0.2')}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: keystone, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: keystone, port: 5000}]
    sessionPersistence: {sessionName: ks-session, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}
`;
}

/** One request on a connection of its own (so requests spread over the workers). */
async function get(url: string, cookie?: string): Promise<{ backend: string; setCookie: string | null }> {
  const agent = new Agent({ connections: 1 });
  try {
    const res = await request(url, { dispatcher: agent, headers: cookie ? { cookie } : {} });
    assert.equal(res.statusCode, 200);
    const body = (await res.body.json()) as { backend: string };
    const sc = res.headers['set-cookie'];
    return { backend: body.backend, setCookie: (Array.isArray(sc) ? sc[0] : sc) ?? null };
  } finally {
    await agent.close();
  }
}

test('serve --workers 2: a v1.4-spelled cookie session sticks across workers and reloads, and moves off an endpoint that turns not ready', { timeout: 90_000 }, async () => {
  const backends = await twoEndpoints();
  const dir = tempConfigDir();
  const port = await freePort();
  const adminPort = await freePort();
  const admin = `http://127.0.0.1:${adminPort}`;
  writeConfig(dir, 'all.yaml', config(port, backends.port, null));
  const env = { ...process.env };
  // The key is drawn by the process and shared with its workers, not given.
  delete env[SESSION_KEY_ENV];
  const serve = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '2', '--log-level', 'warn', '--shutdown-delay', '0s'], env);
  const url = `http://127.0.0.1:${port}/v3/auth/tokens`;
  try {
    await waitFor('readyz', async () => (await request(`${admin}/readyz`)).statusCode === 200, 30_000);

    const first = await get(url);
    assert.ok(first.setCookie, 'the first answer begins a session');
    assert.match(first.setCookie, /^ks-session=[A-Za-z0-9_-]+; Path=\/; HttpOnly; Max-Age=3600$/);
    const cookie = first.setCookie.split(';')[0];

    const before = ((await (await request(`${admin}/api/v1/workers`)).body.json()) as { items: WorkerInfo[] }).items;
    for (let i = 0; i < 20; i++) assert.equal((await get(url, cookie)).backend, first.backend, `request ${i} with the cookie`);
    const after = ((await (await request(`${admin}/api/v1/workers`)).body.json()) as { items: WorkerInfo[] }).items;
    // Both workers took some of those requests, so both honoured the same token.
    const served = after.map((w) => w.requests - (before.find((b) => b.id === w.id)?.requests ?? 0));
    assert.equal(served.filter((n) => n > 0).length, 2, `requests per worker ${JSON.stringify(served)}`);

    // A reload that keeps the endpoint (a new route beside it) keeps the session.
    writeConfig(dir, 'extra.yaml', `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other, namespace: default}
spec: {parentRefs: [{name: gw}], rules: [{matches: [{path: {type: PathPrefix, value: /other}}], backendRefs: [{name: keystone, port: 5000}]}]}
`);
    await waitFor('the reload', async () => {
      const res = await request(`http://127.0.0.1:${port}/other`);
      await res.body.dump();
      return res.statusCode === 200;
    }, 10_000);
    for (let i = 0; i < 6; i++) assert.equal((await get(url, cookie)).backend, first.backend);

    // The session's endpoint turns not ready: the cookie now lands on the other, with a new cookie.
    writeConfig(dir, 'all.yaml', config(port, backends.port, first.backend === 'one' ? '127.0.0.1' : '127.0.0.2'));
    const moved = await waitFor('the move', async () => {
      const r = await get(url, cookie);
      return r.backend !== first.backend ? r : undefined;
    }, 10_000);
    assert.ok(moved.setCookie, 'a moved session gets a new cookie');
    const newCookie = moved.setCookie.split(';')[0];
    for (let i = 0; i < 6; i++) assert.equal((await get(url, newCookie)).backend, moved.backend);
    assert.ok(!serve.output().includes(cookie.slice('ks-session='.length)), 'no token in the log');
  } finally {
    const code = await serve.stop();
    await backends.close();
    assert.equal(code, 0, serve.output());
  }
});
