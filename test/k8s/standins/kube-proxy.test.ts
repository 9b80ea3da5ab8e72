// The kube-proxy stand-in on its own, against a real API server, in a
// network namespace of its own (Service and endpoint addresses live on its
// loopback): connections to a Service's cluster IP and load-balancer IP go
// to its ready endpoints in turn; an endpoint turned not ready gets no new
// connection while one already open to it keeps working; an endpoint that
// refuses is skipped for the next; UDP datagrams to a load-balancer IP reach
// an endpoint and its answers come back from that IP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from '../harness/cluster.ts';
import { Api, sleep, type Json } from './api.ts';
import { startKubeProxy, type KubeProxy } from './kube-proxy.ts';
import { addLocalAddress, ensureBridge, NETNS_ENV, runInOwnNetworkNamespace } from './netns.ts';

const SELF = fileURLToPath(import.meta.url);

if (!process.env[NETNS_ENV]) {
  test('kube-proxy stand-in, in a network namespace of its own', { timeout: 4 * 60_000 }, async () => {
    assert.equal(await runInOwnNetworkNamespace(SELF, 3 * 60_000), 0, 'the tests in the network namespace failed: their report is above');
  });
} else {
  inside();
}

function inside(): void {
  const NS = 'default';
  let cluster: Cluster;
  let api: Api;
  let proxy: KubeProxy;
  const servers: net.Server[] = [];
  const logs: string[] = [];

  /** A backend at ip:7000 that answers each line with its name, on every connection, until the connection closes. */
  async function backend(ip: string, name: string): Promise<net.Server> {
    await addLocalAddress(ip);
    const server = net.createServer((s) => {
      s.setEncoding('utf8');
      s.on('data', () => s.write(`${name}\n`));
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(7000, ip, resolve));
    servers.push(server);
    return server;
  }

  /** A connection through the proxy; ask() sends a line and resolves with the backend's name. */
  async function connect(ip: string, port: number): Promise<{ ask(): Promise<string>; close(): void }> {
    const s = net.connect({ host: ip, port });
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
    s.setEncoding('utf8');
    return {
      ask: () => new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no answer within 5 s')), 5_000);
        s.once('data', (d: string) => { clearTimeout(t); resolve(d.trim()); });
        s.once('close', () => { clearTimeout(t); reject(new Error('connection closed')); });
        s.write('hello\n');
      }),
      close: () => s.destroy(),
    };
  }

  async function names(ip: string, port: number, n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const c = await connect(ip, port);
      out.push(await c.ask());
      c.close();
    }
    return out;
  }

  function slice(endpoints: { ip: string; ready: boolean; terminating?: boolean }[]): Json {
    return {
      endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready, serving: e.ready, terminating: e.terminating ?? false } })),
    };
  }

  async function until(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!(await check())) {
      if (Date.now() > deadline) assert.fail(`${what}: not within 10 s; kube-proxy log:\n${logs.slice(-20).join('\n')}`);
      await sleep(50);
    }
  }

  let clusterIP = '';

  before(async () => {
    await ensureBridge('br0', '10.244.0.1/24');
    cluster = await startCluster({ crds: 'none', gatehouseCrds: false });
    api = new Api(cluster.kubeConfig());
    await backend('10.244.1.1', 'one');
    await backend('10.244.1.2', 'two');
    await backend('10.244.1.3', 'three');
    const svc = await api.must('POST', `/api/v1/namespaces/${NS}/services`, {
      metadata: { name: 'echo' },
      spec: { type: 'LoadBalancer', ports: [{ name: 'tcp', port: 9000, targetPort: 7000 }] },
    });
    clusterIP = svc.body!.spec.clusterIP;
    await api.must('POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, {
      metadata: { name: 'echo-a', labels: { 'kubernetes.io/service-name': 'echo', 'endpointslice.kubernetes.io/managed-by': 'test' } },
      addressType: 'IPv4', ports: [{ name: 'tcp', port: 7000, protocol: 'TCP' }],
      ...slice([{ ip: '10.244.1.1', ready: true }, { ip: '10.244.1.2', ready: true }]),
    });
    proxy = startKubeProxy({ api, log: (m) => logs.push(m) });
    await proxy.synced;
    await until('cluster IP served', async () => { await proxy.idle(); return proxy.served().has(`${clusterIP}:9000`); });
  });

  after(async () => {
    await proxy?.stop();
    for (const s of servers) s.close();
    await cluster?.stop();
  });

  test('connections to the cluster IP go to the ready endpoints in turn', async () => {
    const got = await names(clusterIP, 9000, 4);
    assert.deepEqual(got.sort(), ['one', 'one', 'two', 'two']);
  });

  test('the load-balancer IP is served once the status has it, and no longer once it is gone', async () => {
    assert.equal(proxy.served().has('10.250.0.9:9000'), false);
    await api.mergePatch(`/api/v1/namespaces/${NS}/services/echo/status`, { status: { loadBalancer: { ingress: [{ ip: '10.250.0.9' }] } } });
    await until('load-balancer IP served', async () => { await proxy.idle(); return proxy.served().has('10.250.0.9:9000'); });
    assert.deepEqual((await names('10.250.0.9', 9000, 2)).sort(), ['one', 'two']);
    await api.mergePatch(`/api/v1/namespaces/${NS}/services/echo/status`, { status: { loadBalancer: { ingress: [] } } });
    await until('load-balancer IP no longer served', async () => { await proxy.idle(); return !proxy.served().has('10.250.0.9:9000'); });
    await assert.rejects(connect('10.250.0.9', 9000), /ECONNREFUSED|EADDRNOTAVAIL|ENETUNREACH/);
  });

  test('an endpoint turned not ready (or terminating) gets no new connection; one open to it keeps working', async () => {
    // One connection open to each endpoint.
    const open = [await connect(clusterIP, 9000), await connect(clusterIP, 9000)];
    const first = await Promise.all(open.map((c) => c.ask()));
    assert.deepEqual([...first].sort(), ['one', 'two']);
    const toTwo = open[first.indexOf('two')];

    await api.mergePatch(`/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices/echo-a`,
      slice([{ ip: '10.244.1.1', ready: true }, { ip: '10.244.1.2', ready: false, terminating: true }]));
    await until('two out of turn', async () => (await names(clusterIP, 9000, 4)).every((n) => n === 'one'));
    assert.deepEqual(await names(clusterIP, 9000, 6), ['one', 'one', 'one', 'one', 'one', 'one']);
    assert.equal(await toTwo.ask(), 'two', 'the open connection to the terminating endpoint still works');
    for (const c of open) c.close();

    // Endpoints of a second slice count as well.
    await api.must('POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, {
      metadata: { name: 'echo-b', labels: { 'kubernetes.io/service-name': 'echo', 'endpointslice.kubernetes.io/managed-by': 'test' } },
      addressType: 'IPv4', ports: [{ name: 'tcp', port: 7000, protocol: 'TCP' }],
      ...slice([{ ip: '10.244.1.3', ready: true }]),
    });
    await until('three in turn', async () => (await names(clusterIP, 9000, 4)).includes('three'));
    assert.deepEqual((await names(clusterIP, 9000, 4)).sort(), ['one', 'one', 'three', 'three']);
  });

  test('an endpoint that refuses is skipped for the next: the client never sees it', async () => {
    // Listed ready, but nothing listens: as a proxy that stopped accepting before its endpoint was updated.
    await api.mergePatch(`/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices/echo-a`,
      slice([{ ip: '10.244.1.1', ready: true }, { ip: '10.244.1.9', ready: true }]));
    await addLocalAddress('10.244.1.9');
    const answers: string[] = [];
    await until('the refusing endpoint tried', async () => {
      answers.push(...await names(clusterIP, 9000, 2));
      return logs.some((l) => l.includes('dial 10.244.1.9:7000 failed'));
    });
    answers.push(...await names(clusterIP, 9000, 6));
    assert.ok(answers.every((n) => n === 'one' || n === 'three'), `answers: ${answers.join(', ')}`);
  });

  test('UDP: datagrams to the load-balancer IP reach the endpoints, answers come back from that IP', async () => {
    await addLocalAddress('10.244.1.9');
    const echo = dgram.createSocket('udp4');
    echo.on('message', (m, from) => echo.send(`udp:${m}`, from.port, from.address));
    await new Promise<void>((resolve) => echo.bind(7001, '10.244.1.9', resolve));
    await api.must('POST', `/api/v1/namespaces/${NS}/services`, {
      metadata: { name: 'dns' }, spec: { type: 'LoadBalancer', ports: [{ name: 'udp', port: 5300, targetPort: 7001, protocol: 'UDP' }] },
    });
    await api.must('POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, {
      metadata: { name: 'dns-a', labels: { 'kubernetes.io/service-name': 'dns', 'endpointslice.kubernetes.io/managed-by': 'test' } },
      addressType: 'IPv4', ports: [{ name: 'udp', port: 7001, protocol: 'UDP' }], ...slice([{ ip: '10.244.1.9', ready: true }]),
    });
    await api.mergePatch(`/api/v1/namespaces/${NS}/services/dns/status`, { status: { loadBalancer: { ingress: [{ ip: '10.250.0.10' }] } } });
    await until('UDP load-balancer IP served', async () => { await proxy.idle(); return proxy.served().has('10.250.0.10:5300/udp'); });
    const client = dgram.createSocket('udp4');
    try {
      for (const word of ['a', 'b']) {
        const answer = new Promise<{ text: string; from: string }>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no UDP answer within 5 s')), 5_000);
          client.once('message', (m, r) => { clearTimeout(t); resolve({ text: m.toString(), from: `${r.address}:${r.port}` }); });
        });
        client.send(word, 5300, '10.250.0.10');
        assert.deepEqual(await answer, { text: `udp:${word}`, from: '10.250.0.10:5300' });
      }
    } finally {
      client.close();
      echo.close();
    }
  });
}
