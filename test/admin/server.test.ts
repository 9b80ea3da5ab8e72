// The admin API on a real HTTP server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { parseAddress, startAdminServer } from '../../src/admin/server.ts';
import type { AdminServerOptions } from '../../src/admin/server.ts';

const RESOURCES = [
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse', generation: 1 }, spec: {}, status: {} },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'infra', generation: 1 }, spec: {}, status: {} },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'keystone', namespace: 'openstack', generation: 2 }, spec: {}, status: {} },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'nova', namespace: 'openstack', generation: 1 }, spec: {}, status: {} },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'team-a', generation: 1 }, spec: {}, status: {} },
];

async function start(t: { after(fn: () => Promise<void>): void }, over: Partial<AdminServerOptions> = {}) {
  let ready = false;
  const server = await startAdminServer({
    address: '127.0.0.1:0',
    resources: () => RESOURCES,
    errors: () => [{ file: 'a.yaml', document: 1, reason: 'bad', message: 'a.yaml document 1: bad' }],
    config: () => ({ version: 1, listeners: [], clusters: {} }),
    ready: () => ready,
    ...over,
  });
  t.after(() => server.close());
  return { server, base: `http://127.0.0.1:${server.port}`, setReady: (v: boolean) => { ready = v; } };
}

test('parseAddress: IPv4, IPv6, names, all interfaces', () => {
  assert.deepEqual(parseAddress('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
  assert.deepEqual(parseAddress('[::1]:9000'), { host: '::1', port: 9000 });
  assert.deepEqual(parseAddress('localhost:0'), { host: 'localhost', port: 0 });
  assert.deepEqual(parseAddress(':9000'), { host: undefined, port: 9000 });
  assert.deepEqual(parseAddress('[::]:80'), { host: '::', port: 80 });
  assert.throws(() => parseAddress('::1:9000'), /invalid admin address/);
  assert.throws(() => parseAddress('127.0.0.1'), /invalid admin address/);
  assert.throws(() => parseAddress('127.0.0.1:70000'), /port out of range/);
});

test('readyz follows ready(); healthz is always 200', async (t) => {
  const { base, setReady } = await start(t);
  let res = await fetch(`${base}/readyz`);
  assert.equal(res.status, 503);
  assert.equal(await res.text(), 'not ready');
  setReady(true);
  res = await fetch(`${base}/readyz`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'ok');
  res = await fetch(`${base}/healthz`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'ok');
});

test('resources: every item, or filtered by kind, namespace and name', async (t) => {
  const { base } = await start(t);
  const get = async (q: string) => {
    const res = await fetch(`${base}/api/v1/resources${q}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^application\/json/);
    return ((await res.json()) as { items: any[] }).items.map((o) => `${o.kind}/${o.metadata.name}`);
  };
  // In a stable order, kind, namespace, name, so that pages follow one another (paging.ts).
  assert.deepEqual(await get(''), ['Gateway/gw', 'GatewayClass/gatehouse', 'HTTPRoute/keystone', 'HTTPRoute/nova', 'HTTPRoute/web']);
  assert.deepEqual(await get('?kind=HTTPRoute'), ['HTTPRoute/keystone', 'HTTPRoute/nova', 'HTTPRoute/web']);
  assert.deepEqual(await get('?kind=HTTPRoute&namespace=openstack'), ['HTTPRoute/keystone', 'HTTPRoute/nova']);
  assert.deepEqual(await get('?namespace=openstack&name=nova'), ['HTTPRoute/nova']);
  assert.deepEqual(await get('?kind=TLSRoute'), []);
  assert.deepEqual(await get('/'), ['Gateway/gw', 'GatewayClass/gatehouse', 'HTTPRoute/keystone', 'HTTPRoute/nova', 'HTTPRoute/web']);
});

test('errors and config', async (t) => {
  const { base } = await start(t);
  let res = await fetch(`${base}/api/v1/errors`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { items: [{ file: 'a.yaml', document: 1, reason: 'bad', message: 'a.yaml document 1: bad' }] });
  res = await fetch(`${base}/api/v1/config`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^application\/json/);
  assert.deepEqual(await res.json(), { version: 1, listeners: [], clusters: {} });
});

test('readyz answers 503 draining once shutdown began, whatever ready() says; healthz stays 200', async (t) => {
  let draining = false;
  const { base, setReady } = await start(t, { draining: () => draining });
  setReady(true);
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  draining = true;
  const res = await fetch(`${base}/readyz`);
  assert.equal(res.status, 503);
  assert.equal(await res.text(), 'draining');
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
});

test('HEAD on a listing answers its head only', async (t) => {
  const { base } = await start(t);
  const res = await fetch(`${base}/api/v1/config`, { method: 'HEAD' });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^application\/json/);
  assert.equal(await res.text(), '');
});

test('config before the first IR is null', async (t) => {
  const { base } = await start(t, { config: () => null });
  const res = await fetch(`${base}/api/v1/config`);
  assert.equal(res.status, 200);
  assert.equal(await res.json(), null);
});

test('unknown paths are 404 JSON; other methods 405 with Allow', async (t) => {
  const { base } = await start(t);
  let res = await fetch(`${base}/api/v1/nothing`);
  assert.equal(res.status, 404);
  assert.match(res.headers.get('content-type')!, /^application\/json/);
  assert.ok(((await res.json()) as { error: string }).error);
  res = await fetch(`${base}/`);
  assert.equal(res.status, 404);
  await res.arrayBuffer();
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    res = await fetch(`${base}/api/v1/resources`, { method, body: method === 'DELETE' ? undefined : '{}' });
    assert.equal(res.status, 405, method);
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
    assert.match(res.headers.get('content-type')!, /^application\/json/);
    await res.arrayBuffer();
  }
  res = await fetch(`${base}/healthz`, { method: 'HEAD' });
  assert.equal(res.status, 200);
});

test('a callback that throws is a 500 JSON, and the server goes on', async (t) => {
  const logged: string[] = [];
  const { base } = await start(t, { resources: () => { throw new Error('store broken'); }, log: (_level, msg) => logged.push(msg) });
  let res = await fetch(`${base}/api/v1/resources`);
  assert.equal(res.status, 500);
  assert.deepEqual(await res.json(), { error: 'store broken' });
  assert.equal(logged.length, 1);
  res = await fetch(`${base}/healthz`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
});

test('listens on IPv6 [::1]:port', async (t) => {
  let server;
  try {
    server = await startAdminServer({ address: '[::1]:0', resources: () => [], errors: () => [], config: () => null, ready: () => true });
  } catch (e) {
    t.skip(`no IPv6 loopback here: ${(e as Error).message}`);
    return;
  }
  t.after(() => server.close());
  const body = await new Promise<string>((resolve, reject) => {
    http.get({ host: '::1', port: server.port, path: '/readyz' }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve(`${res.statusCode} ${text}`));
    }).on('error', reject);
  });
  assert.equal(body, '200 ok');
});

test('close() ends keep-alive connections and frees the port', async () => {
  const server = await startAdminServer({ address: '127.0.0.1:0', resources: () => [], errors: () => [], config: () => null, ready: () => true });
  const agent = new http.Agent({ keepAlive: true });
  await new Promise<void>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.port, path: '/healthz', agent }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
  });
  const t0 = performance.now();
  await server.close();
  assert.ok(performance.now() - t0 < 1000);
  agent.destroy();
  // The same port can be listened on again.
  const again = await startAdminServer({ address: `127.0.0.1:${server.port}`, resources: () => [], errors: () => [], config: () => null, ready: () => true });
  await again.close();
});

test('a port in use is a rejected promise', async (t) => {
  const { server } = await start(t);
  await assert.rejects(startAdminServer({ address: `127.0.0.1:${server.port}`, resources: () => [], errors: () => [], config: () => null, ready: () => true }), /EADDRINUSE/);
});
