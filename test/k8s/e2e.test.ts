// Kubernetes mode end to end: a real API server and controller manager
// (harness/), stand-ins for the kubelet, kube-proxy and MetalLB
// (standins/), two `gatehouse controller` processes with the RBAC of
// deploy/manifests, and the proxies they provision, run the way their
// Deployment says, serving real requests to real backends at the address
// MetalLB gave the Gateway's Service.
//
// Pods need addresses of their own (the EndpointSlice API refuses
// 127.0.0.0/8), so the file runs itself again in a network namespace of
// its own (`unshare -n`): there a bridge carries the pod network
// (10.244.0.0/24, the node at .1), Service addresses live on loopback, and
// nothing touches the host's network.
//
// The controllers run as processes, not pods (a pod here could not reach
// the API server on 127.0.0.1); their Service `gatehouse` therefore has no
// selector, and the test keeps its EndpointSlice as the EndpointSlice
// controller would for their pods: an endpoint per replica, ready once its
// /readyz answers, terminating from the moment it is told to stop.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from './harness/cluster.ts';
import { Api, sleep, type Json } from './standins/api.ts';
import { startKubelet, type Kubelet } from './standins/kubelet.ts';
import { startKubeProxy, type KubeProxy } from './standins/kube-proxy.ts';
import { startMetalLB, type MetalLB } from './standins/metallb.ts';
import { addLocalAddress, ensureBridge, NETNS_ENV, runInOwnNetworkNamespace } from './standins/netns.ts';
import { GATEWAY_CLASS_NAME_LABEL, GATEWAY_NAME_LABEL, MANAGED_BY_LABEL } from '../../src/providers/kubernetes/provision/names.ts';
import { PROXY_UID } from '../../src/providers/kubernetes/provision/render.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '../..');
/** The whole file, inside: cluster start (~10 s), two controllers, pods, a failover and a rollout under load. */
const INNER_TIMEOUT_MS = 8 * 60_000;

if (!process.env[NETNS_ENV]) {
  test('Kubernetes mode end to end, in a network namespace of its own', { timeout: INNER_TIMEOUT_MS + 60_000 }, async () => {
    const code = await runInOwnNetworkNamespace(SELF, INNER_TIMEOUT_MS);
    assert.equal(code, 0, 'the end-to-end tests in the network namespace failed: their report is above');
  });
} else {
  inside();
}

function inside(): void {
  const CONTROLLER_NS = 'gatehouse-system';
  const INFRA_NS = 'infra';
  const APPS_NS = 'openstack';
  const CONFIG_PORT = 18000;
  const HEALTH_PORT = 8081;
  const LEASE = '6s';
  const IMAGES = {
    'gatehouse:e2e': [process.execPath, path.join(ROOT, 'bin/gatehouse.js')],
    'echo:e2e': [process.execPath, path.join(ROOT, 'test/k8s/standins/echo-server.ts')],
  };

  let cluster: Cluster;
  let api: Api;
  let kubelet: Kubelet;
  let kubeProxy: KubeProxy;
  let metallb: MetalLB;
  let controllerVIP = '';
  let controllerKubeconfig = '';
  let standinLog = '';
  const kubeletDir = `/var/lib/gatehouse-e2e-${process.pid}`;
  const replicas: Replica[] = [];

  interface Replica {
    n: number;
    name: string;
    ip: string;
    child: ChildProcess;
    logFile: string;
    exited: Promise<void>;
    state: 'starting' | 'ready' | 'terminating' | 'gone';
  }

  // ---------------------------------------------------------------- helpers

  function tail(file: string, bytes = 4_000): string {
    try {
      const size = fs.statSync(file).size;
      const fd = fs.openSync(file, 'r');
      try {
        const n = Math.min(size, bytes);
        const buf = Buffer.alloc(n);
        fs.readSync(fd, buf, 0, n, size - n);
        return buf.toString('utf8');
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return '(no log)';
    }
  }

  /** What a failed test prints: the objects, the stand-ins' and the processes' logs. */
  async function diagnostics(): Promise<string> {
    const out: string[] = [];
    try {
      for (const args of [['get', 'pods,deploy,rs,svc,endpointslices,lease', '-A', '-o', 'wide'], ['get', 'gateways', '-A', '-o', 'yaml']]) {
        const r = await cluster.kubectl(...args);
        out.push(`$ kubectl ${args.join(' ')}\n${r.stdout.slice(-8_000)}${r.stderr.slice(-1_000)}`);
      }
    } catch (err) {
      out.push(`kubectl failed: ${(err as Error).message}`);
    }
    out.push(`--- stand-ins\n${tail(standinLog, 6_000)}`);
    for (const r of replicas) out.push(`--- controller ${r.name} (${r.state})\n${tail(r.logFile, 3_000)}`);
    for (const p of kubelet?.pods() ?? []) out.push(`--- pod ${p.namespace}/${p.name} ${p.ip} ready=${p.ready}\n${tail(p.logFile, 2_500)}`);
    return out.join('\n');
  }

  /** Runs `fn`; a failure carries the diagnostics with it. */
  async function diagnosed(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      const d = await diagnostics();
      (err as Error).message += `\n\n======== diagnostics\n${d}`;
      throw err;
    }
  }

  /** Polls `check` until it returns a value (not undefined); fails after `ms` with the last thing it saw. */
  async function eventually<T>(what: string, ms: number, check: () => Promise<T | undefined>, every = 200): Promise<T> {
    const deadline = Date.now() + ms;
    let last: unknown = null;
    for (;;) {
      try {
        const v = await check();
        if (v !== undefined) return v;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) assert.fail(`${what}: not within ${ms / 1000} s${last ? ` (last: ${String(last).slice(0, 500)})` : ''}`);
      await sleep(every);
    }
  }

  async function get(p: string): Promise<Json | undefined> {
    const a = await api.get(p);
    return a.status === 200 ? a.body! : undefined;
  }

  function httpGet(url: string, headers: Record<string, string> = {}, agent?: http.Agent, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.get(url, { headers, agent: agent ?? false, timeout: timeoutMs }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { if (body.length < 64 * 1024) body += c; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
    });
  }

  // ---------------------------------------------------------------- controllers

  /** The controllers' EndpointSlice, as the EndpointSlice controller would keep it for their pods. */
  async function publishControllerEndpoints(): Promise<void> {
    const endpoints = replicas.filter((r) => r.state === 'ready' || r.state === 'terminating').map((r) => ({
      addresses: [r.ip],
      conditions: { ready: r.state === 'ready', serving: r.state === 'ready', terminating: r.state === 'terminating' },
      nodeName: 'standin-node',
    }));
    await api.mergePatch(`/apis/discovery.k8s.io/v1/namespaces/${CONTROLLER_NS}/endpointslices/gatehouse-replicas`, { endpoints });
  }

  async function startReplica(n: number): Promise<Replica> {
    const ip = `10.245.0.${n}`;
    await addLocalAddress(ip);
    const name = `gatehouse-controller-${n}`;
    const logFile = path.join(cluster.dir, `${name}.log`);
    const fd = fs.openSync(logFile, 'a', 0o600);
    const child = spawn(process.execPath, [
      path.join(ROOT, 'bin/gatehouse.js'), 'controller',
      '--kubeconfig', controllerKubeconfig,
      '--config-address', `${ip}:${CONFIG_PORT}`,
      '--proxy-controller-address', `${controllerVIP}:${CONFIG_PORT}`,
      '--config-certificate-ip', controllerVIP,
      '--health-address', `${ip}:${HEALTH_PORT}`,
      '--admin-address', '127.0.0.1:0',
      '--controller-namespace', CONTROLLER_NS,
      '--proxy-image', 'gatehouse:e2e',
      '--lease-duration', LEASE,
    ], { env: { ...process.env, POD_NAME: name, POD_NAMESPACE: CONTROLLER_NS }, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const r: Replica = { n, name, ip, child, logFile, state: 'starting', exited: Promise.resolve() };
    r.exited = new Promise((resolve) => child.once('exit', () => { r.state = 'gone'; resolve(); }));
    replicas.push(r);
    await eventually(`controller ${name} ready`, 60_000, async () => {
      if (r.state === 'gone') throw new Error(`exited:\n${tail(logFile)}`);
      return (await httpGet(`http://${ip}:${HEALTH_PORT}/readyz`).catch(() => ({ status: 0 }))).status === 200 ? true : undefined;
    });
    r.state = 'ready';
    await publishControllerEndpoints();
    return r;
  }

  /** A replica's pod deleted: out of its Service's endpoints at once, SIGTERM, gone within its grace period. */
  async function stopReplica(r: Replica): Promise<void> {
    r.state = 'terminating';
    await publishControllerEndpoints();
    r.child.kill('SIGTERM');
    const done = await Promise.race([r.exited.then(() => true), sleep(30_000).then(() => false)]);
    assert.ok(done, `controller ${r.name} did not exit within 30 s of SIGTERM`);
    await publishControllerEndpoints();
  }

  async function leaseHolder(): Promise<string | undefined> {
    const lease = await get(`/apis/coordination.k8s.io/v1/namespaces/${CONTROLLER_NS}/leases/gatehouse-controller`);
    return lease?.spec?.holderIdentity;
  }

  /** The replica holding the Lease (identities are POD_NAME plus a suffix). */
  async function leader(): Promise<Replica | undefined> {
    const holder = await leaseHolder();
    return replicas.find((r) => r.state === 'ready' && holder?.startsWith(`${r.name}_`));
  }

  // ---------------------------------------------------------------- objects

  function condition(obj: Json | undefined, type: string): Json | undefined {
    return (obj?.status?.conditions ?? []).find((c: Json) => c.type === type);
  }

  async function gateway(name: string): Promise<Json | undefined> {
    return get(`/apis/gateway.networking.k8s.io/v1/namespaces/${INFRA_NS}/gateways/${name}`);
  }

  function echoPod(name: string, app: string): Json {
    return {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace: APPS_NS, labels: { app } },
      spec: {
        terminationGracePeriodSeconds: 5,
        securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000 },
        containers: [{
          name: 'echo', image: 'echo:e2e', args: ['--port', '8080'],
          env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1, failureThreshold: 1 },
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true },
        }],
      },
    };
  }

  function echoService(app: string): Json {
    return {
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: app, namespace: APPS_NS },
      spec: { selector: { app }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    };
  }

  function route(name: string, hostname: string, backend: string): Json {
    return {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute',
      metadata: { name, namespace: APPS_NS },
      spec: {
        parentRefs: [{ name: 'cloud', namespace: INFRA_NS, sectionName: 'http' }],
        hostnames: [hostname],
        rules: [{ backendRefs: [{ name: backend, port: 80 }] }],
      },
    };
  }

  const create = (p: string, body: Json) => api.must('POST', p, body);

  /** The pods of Gateway cloud's proxies the kubelet runs (a ReplicaSet's pods are named after the Deployment). */
  const cloudProxies = () => kubelet.pods().filter((p) => p.namespace === INFRA_NS && p.name.startsWith('cloud-gatehouse-'));

  // ---------------------------------------------------------------- load

  interface Answer { pod: string; peer: string; host: string }

  /**
   * Steady load at the Gateway's address: a few loops of keep-alive
   * requests, each answer checked (200, from the backend the Host names).
   * Six loops, so that several connections are pinned to the old proxy
   * when it drains, and a short pause between requests, so that the load
   * (about 1,000 requests a second here) does not starve the control
   * plane on two shared cores. (Tried: eight loops with no pause, about
   * 1,900 a second, also with no failed request.)
   */
  class Load {
    ok = 0;
    readonly failures: string[] = [];
    /** Requests carried per proxy (the backend sees the proxy pod's address). */
    readonly byProxy = new Map<string, number>();
    #stopping = false;
    #loops: Promise<void>[] = [];
    readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

    readonly vip: string;
    readonly concurrency: number;
    readonly pauseMs: number;
    constructor(vip: string, concurrency = 6, pauseMs = 2) {
      this.vip = vip;
      this.concurrency = concurrency;
      this.pauseMs = pauseMs;
    }

    start(): void {
      const hosts: [string, string][] = [['keystone.cloud.example', 'keystone-'], ['nova.cloud.example', 'nova-']];
      for (let i = 0; i < this.concurrency; i++) {
        this.#loops.push((async () => {
          let k = i;
          while (!this.#stopping) {
            const [host, pod] = hosts[k++ % hosts.length];
            const t0 = Date.now();
            try {
              const r = await httpGet(`http://${this.vip}/load/${k}`, { host }, this.#agent, 10_000);
              const a = JSON.parse(r.body) as Answer;
              if (r.status !== 200 || !a.pod.startsWith(pod) || a.host !== host) throw new Error(`HTTP ${r.status}: ${r.body.slice(0, 200)}`);
              this.ok++;
              this.byProxy.set(a.peer, (this.byProxy.get(a.peer) ?? 0) + 1);
            } catch (err) {
              this.failures.push(`${new Date().toISOString()} ${host} after ${Date.now() - t0} ms: ${(err as Error).message}`);
            }
            await sleep(this.pauseMs);
          }
        })());
      }
    }

    async stop(): Promise<void> {
      this.#stopping = true;
      await Promise.all(this.#loops);
      this.#agent.destroy();
    }
  }

  let load: Load | null = null;

  // ---------------------------------------------------------------- set-up

  before(async () => {
    const t0 = Date.now();
    // A new network namespace has only loopback, and it is down: the API server listens there.
    await ensureBridge('br0', '10.244.0.1/24');
    cluster = await startCluster({ controllerManager: true, crds: 'experimental' });
    api = new Api(cluster.kubeConfig());
    standinLog = path.join(cluster.dir, 'standins.log');
    const log = (m: string) => fs.appendFileSync(standinLog, `${new Date().toISOString()} ${m}\n`);

    // The controllers' namespace, least-privilege RBAC and the default
    // GatewayClass, as installed from deploy/manifests; the controllers
    // authenticate as that ServiceAccount, so this test also proves the
    // RBAC is enough.
    await cluster.applyFiles(['00-namespace.yaml', '10-rbac.yaml', '30-gatewayclass.yaml'].map((f) => path.join(ROOT, 'deploy/manifests', f)));
    for (const ns of [INFRA_NS, APPS_NS]) await create('/api/v1/namespaces', { metadata: { name: ns } });
    const token = await cluster.serviceAccountToken(CONTROLLER_NS, 'gatehouse', 'https://kubernetes.default.svc.cluster.local');
    controllerKubeconfig = path.join(cluster.dir, 'controller.kubeconfig');
    fs.writeFileSync(controllerKubeconfig, [
      'apiVersion: v1', 'kind: Config',
      'clusters:', '- name: c', '  cluster:', `    server: ${cluster.server}`, `    certificate-authority: ${JSON.stringify(cluster.caFile)}`,
      'users:', '- name: gatehouse', '  user:', `    token: ${token}`,
      'contexts:', '- name: c', '  context: {cluster: c, user: gatehouse}', 'current-context: c', '',
    ].join('\n'), { mode: 0o600 });

    // The controllers' Service as in deploy/manifests, without its selector (see the top of this file).
    const svc = await create(`/api/v1/namespaces/${CONTROLLER_NS}/services`, {
      metadata: { name: 'gatehouse', labels: { 'app.kubernetes.io/name': 'gatehouse', 'app.kubernetes.io/component': 'controller' } },
      spec: { type: 'ClusterIP', ports: [{ name: 'config', port: CONFIG_PORT, targetPort: CONFIG_PORT, protocol: 'TCP' }] },
    });
    controllerVIP = svc.body!.spec.clusterIP;
    await create(`/apis/discovery.k8s.io/v1/namespaces/${CONTROLLER_NS}/endpointslices`, {
      metadata: { name: 'gatehouse-replicas', labels: { 'kubernetes.io/service-name': 'gatehouse', 'endpointslice.kubernetes.io/managed-by': 'e2e.gatehouse.dev' } },
      addressType: 'IPv4', ports: [{ name: 'config', port: CONFIG_PORT, protocol: 'TCP' }], endpoints: [],
    });

    fs.rmSync(kubeletDir, { recursive: true, force: true });
    kubelet = await startKubelet({ api, images: IMAGES, dir: kubeletDir, log });
    kubeProxy = startKubeProxy({ api, log });
    metallb = startMetalLB({ api, log });
    await Promise.all([kubelet.synced, kubeProxy.synced, metallb.synced]);

    for (const app of ['keystone', 'nova']) {
      await create(`/api/v1/namespaces/${APPS_NS}/pods`, echoPod(`${app}-0`, app));
      await create(`/api/v1/namespaces/${APPS_NS}/services`, echoService(app));
    }
    await startReplica(1);
    await startReplica(2);
    log(`set-up done in ${Date.now() - t0} ms`);
  });

  after(async () => {
    await load?.stop();
    for (const r of replicas) if (r.state !== 'gone') r.child.kill('SIGKILL');
    await Promise.all(replicas.map((r) => Promise.race([r.exited, sleep(5_000)])));
    await kubelet?.stop();
    await kubeProxy?.stop();
    metallb?.stop();
    await cluster?.stop();
    if (process.env.GATEHOUSE_K8S_KEEP !== '1') fs.rmSync(kubeletDir, { recursive: true, force: true });
  });

  // ---------------------------------------------------------------- tests

  let vip = '';

  test('a Gateway gets its proxies, an address from MetalLB, and serves its routes there, as uid 65532 on port 80', { timeout: 180_000 }, () => diagnosed(async () => {
    await create(`/apis/gateway.networking.k8s.io/v1/namespaces/${INFRA_NS}/gateways`, {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
      metadata: { name: 'cloud', namespace: INFRA_NS },
      spec: {
        gatewayClassName: 'gatehouse',
        listeners: [{ name: 'http', port: 80, protocol: 'HTTP', hostname: '*.cloud.example', allowedRoutes: { namespaces: { from: 'All' } } }],
      },
    });
    await create(`/apis/gateway.networking.k8s.io/v1/namespaces/${APPS_NS}/httproutes`, route('keystone', 'keystone.cloud.example', 'keystone'));
    await create(`/apis/gateway.networking.k8s.io/v1/namespaces/${APPS_NS}/httproutes`, route('nova', 'nova.cloud.example', 'nova'));

    // What the controller provisions: one name, our labels, owned by the Gateway.
    const gw = (await gateway('cloud'))!;
    const name = 'cloud-gatehouse';
    for (const p of [`/apis/apps/v1/namespaces/${INFRA_NS}/deployments/${name}`, `/api/v1/namespaces/${INFRA_NS}/services/${name}`,
      `/api/v1/namespaces/${INFRA_NS}/serviceaccounts/${name}`, `/api/v1/namespaces/${INFRA_NS}/configmaps/${name}`]) {
      const o = await eventually(`${p} provisioned`, 60_000, () => get(p));
      assert.equal(o.metadata.labels[GATEWAY_NAME_LABEL], 'cloud', p);
      assert.equal(o.metadata.labels[GATEWAY_CLASS_NAME_LABEL], 'gatehouse', p);
      assert.equal(o.metadata.labels[MANAGED_BY_LABEL], 'gatehouse', p);
      assert.deepEqual(o.metadata.ownerReferences.map((r: Json) => [r.kind, r.name, r.uid, r.controller]), [['Gateway', 'cloud', gw.metadata.uid, true]], p);
    }

    // MetalLB's address, in the Gateway's status; Programmed once the proxy is ready.
    const programmed = await eventually('Gateway cloud Programmed', 90_000, async () => {
      const g = await gateway('cloud');
      const c = condition(g, 'Programmed');
      return c?.status === 'True' ? g : undefined;
    });
    assert.equal(condition(programmed, 'Programmed')!.message, '1/1 proxies ready');
    assert.deepEqual(programmed!.status.addresses, [{ type: 'IPAddress', value: '10.250.0.1' }]);
    vip = programmed!.status.addresses[0].value;
    const svc = (await get(`/api/v1/namespaces/${INFRA_NS}/services/${name}`))!;
    assert.deepEqual(svc.status.loadBalancer.ingress.map((i: Json) => i.ip), [vip]);

    // Real requests, by hostname, to the real backends, through the proxy.
    const proxyPods = cloudProxies();
    assert.equal(proxyPods.length, 1);
    for (const [host, backend] of [['keystone.cloud.example', 'keystone-0'], ['nova.cloud.example', 'nova-0']]) {
      const r = await eventually(`${host} answered`, 30_000, async () => {
        const a = await httpGet(`http://${vip}/v3/auth/tokens`, { host });
        return a.status === 200 ? a : undefined;
      });
      const answer = JSON.parse(r.body) as Answer;
      assert.equal(answer.pod, backend);
      assert.equal(answer.host, host);
      assert.equal(answer.peer, proxyPods[0].ip, 'the backend was reached from the proxy pod');
    }
    assert.equal((await httpGet(`http://${vip}/`, { host: 'unknown.cloud.example' })).status, 404);

    // Port 80, served by a process of uid and gid 65532 without any capability.
    const pid = proxyPods[0].pid!;
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    assert.match(status, new RegExp(`^Uid:\\s+${PROXY_UID}\\s+${PROXY_UID}\\s+${PROXY_UID}\\s+${PROXY_UID}$`, 'm'));
    assert.match(status, new RegExp(`^Gid:\\s+${PROXY_UID}\\s+${PROXY_UID}\\s+${PROXY_UID}\\s+${PROXY_UID}$`, 'm'));
    assert.match(status, /^CapEff:\s+0+$/m);
    assert.match(status, /^CapBnd:\s+0+$/m);
    // /proc/PID/net/tcp is the table of the pod's network namespace: a socket listening on port 80 (0050), held by that process.
    const listening = fs.readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n')
      .map((l) => l.trim().split(/\s+/)).filter((f) => f[1]?.endsWith(':0050') && f[3] === '0A').map((f) => f[9]);
    assert.ok(listening.length > 0, 'nothing listens on port 80 in the proxy pod');
    const fds = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } });
    assert.ok(listening.some((inode) => fds.includes(`socket:[${inode}]`)), 'the port 80 socket is not the proxy process\'s');
  }));

  test('under steady load, the leader controller is replaced and then the proxies are rolled: not one request fails', { timeout: 300_000 }, (t) => diagnosed(async () => {
    assert.ok(vip, 'the first test gave the Gateway its address');
    load = new Load(vip);
    load.start();
    await eventually('load flowing', 20_000, async () => (load!.ok > 50 ? true : undefined));

    // (a) The leader's pod goes: SIGTERM; a new replica comes; the other takes the Lease.
    const old = await eventually('a leader', 30_000, () => leader());
    await stopReplica(old);
    const next = await eventually('another replica leads', 30_000, () => leader());
    assert.notEqual(next.name, old.name);
    await startReplica(3);
    const okAfterFailover = load.ok;
    await eventually('load flowing after the failover', 20_000, async () => (load!.ok > okAfterFailover + 50 ? true : undefined));

    // (b) Roll the proxies: a changed pod template (the Gateway's infrastructure annotations go on it).
    const oldProxies = new Set(cloudProxies().map((p) => p.ip));
    assert.equal(oldProxies.size, 1);
    await api.mergePatch(`/apis/gateway.networking.k8s.io/v1/namespaces/${INFRA_NS}/gateways/cloud`,
      { spec: { infrastructure: { annotations: { 'e2e.gatehouse.dev/rollout': '1' } } } });
    const deployment = `/apis/apps/v1/namespaces/${INFRA_NS}/deployments/cloud-gatehouse`;
    await eventually('the new leader applies the new template', 30_000, async () => {
      const d = await get(deployment);
      return d?.spec.template.metadata.annotations?.['e2e.gatehouse.dev/rollout'] === '1' ? true : undefined;
    });
    // Rolled: every replica updated and available, and the old proxy gone (SIGTERM, drained, deleted).
    await eventually('the rollout done and the old proxy gone', 120_000, async () => {
      const d = await get(deployment);
      const s = d?.status ?? {};
      const done = s.observedGeneration === d?.metadata.generation && s.updatedReplicas === 1 && s.replicas === 1 && s.availableReplicas === 1;
      const current = cloudProxies();
      return done && current.length === 1 && !oldProxies.has(current[0].ip) ? true : undefined;
    }, 500);
    const newProxy = cloudProxies()[0];
    const before = load.byProxy.get(newProxy.ip) ?? 0;
    await eventually('the new proxy carries the load', 20_000, async () => ((load!.byProxy.get(newProxy.ip) ?? 0) > before + 50 ? true : undefined));
    await load.stop();

    const summary = `${load.ok} requests answered, by proxy: ${JSON.stringify(Object.fromEntries(load.byProxy))}; ` +
      `connections kube-proxy made, by endpoint: ${JSON.stringify(Object.fromEntries(kubeProxy.connectionsTo()))}`;
    t.diagnostic(summary);
    assert.deepEqual(load.failures, [], `failed requests (${summary})`);
    for (const ip of oldProxies) assert.ok((load.byProxy.get(ip) ?? 0) > 0, `the old proxy ${ip} carried no load (${summary})`);
    assert.ok((load.byProxy.get(newProxy.ip) ?? 0) > 50, `the new proxy carried little load (${summary})`);

    // The new leader writes the Gateway's status for its new generation.
    await eventually('status written by the new leader', 30_000, async () => {
      const g = await gateway('cloud');
      const c = condition(g, 'Programmed');
      return c?.status === 'True' && c.observedGeneration === g!.metadata.generation && c.message === '1/1 proxies ready' ? true : undefined;
    });
  }));

  test('a Gateway whose Service names an address pool that does not exist stays AddressNotAssigned', { timeout: 120_000 }, () => diagnosed(async () => {
    await create(`/apis/gateway.networking.k8s.io/v1/namespaces/${INFRA_NS}/gateways`, {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
      metadata: { name: 'pending', namespace: INFRA_NS },
      spec: {
        gatewayClassName: 'gatehouse',
        infrastructure: { annotations: { 'metallb.io/address-pool': 'nonexistent' } },
        listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      },
    });
    const svcPath = `/api/v1/namespaces/${INFRA_NS}/services/pending-gatehouse`;
    const svc = await eventually('Service pending-gatehouse provisioned', 60_000, () => get(svcPath));
    assert.equal(svc.metadata.annotations['metallb.io/address-pool'], 'nonexistent');
    const notAssigned = async () => {
      const g = await gateway('pending');
      const c = condition(g, 'Programmed');
      return c?.status === 'False' && c.reason === 'AddressNotAssigned' ? g : undefined;
    };
    await eventually('Gateway pending AddressNotAssigned', 60_000, notAssigned);
    // MetalLB has seen the Service and refused it, the proxy is up: and still no address.
    await eventually('MetalLB refused the Service', 30_000, async () => {
      const events = (await api.must('GET', `/api/v1/namespaces/${INFRA_NS}/events?fieldSelector=involvedObject.name=pending-gatehouse`)).body!.items as Json[];
      return events.some((e) => e.reason === 'AllocationFailed' && /unknown pool "nonexistent"/.test(e.message)) ? true : undefined;
    });
    await eventually('the pending Gateway\'s proxy ready', 60_000, async () => {
      const d = await get(`/apis/apps/v1/namespaces/${INFRA_NS}/deployments/pending-gatehouse`);
      return d?.status?.readyReplicas === 1 ? true : undefined;
    });
    await sleep(2_000);
    const g = await notAssigned();
    assert.ok(g, 'the Gateway left AddressNotAssigned');
    assert.deepEqual(g.status.addresses ?? [], []);
    assert.deepEqual((await get(svcPath))!.status.loadBalancer, {});
  }));
}
