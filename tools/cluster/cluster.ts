// A local Kubernetes cluster on one machine, without containers or a
// cloud: the test harness's control plane (etcd, kube-apiserver,
// kube-controller-manager; test/k8s/harness/) and the stand-ins for what
// runs on nodes and around them (test/k8s/standins/): a kubelet that runs
// pods as local processes in their own network and mount namespaces on a
// bridge, kube-proxy, MetalLB, and a node-local CoreDNS answering the
// cluster's names. It runs until SIGTERM/SIGINT, then stops everything.
//
//   node tools/cluster/cluster.ts --state DIR [--bridge ghc0] [--pod-cidr 10.247.0.0/20]
//        [--pool 10.248.0.0/24] [--crds DIR] [--image IMAGE=PROGRAM ...]
//
// DIR receives `kubeconfig` (admin), `ready` (written once everything is
// up), `cluster.log` (the stand-ins' log) and `pods/` (volumes, logs).
// Images map to local programs: echo-basic and CoreDNS as built by
// scripts/conformance-images.sh, Gatehouse's own image to bin/gatehouse.js.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from '../../test/k8s/harness/cluster.ts';
import { Api, sleep } from '../../test/k8s/standins/api.ts';
import { startKubelet, type Kubelet } from '../../test/k8s/standins/kubelet.ts';
import { startKubeProxy, type KubeProxy } from '../../test/k8s/standins/kube-proxy.ts';
import { startMetalLB, type MetalLB } from '../../test/k8s/standins/metallb.ts';
import { ensureBridge, intToIp, ipToInt } from '../../test/k8s/standins/netns.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The API server establishes a CRD within a second or two; a minute covers a loaded machine. */
const CRDS_ESTABLISHED_MS = 60_000;
/** The kubelet's port on the node address (the API server asks it for logs). */
const KUBELET_PORT = 10250;
/** The cluster's DNS domain, as kubeadm and kind set it. */
const DOMAIN = 'cluster.local';
/** The `kubernetes` Service: the first address of the service range the harness gives the API server. */
const API_SERVICE = { host: '10.96.0.1', port: 443 };

const { values } = parseArgs({
  options: {
    state: { type: 'string' },
    bridge: { type: 'string', default: 'ghc0' },
    'pod-cidr': { type: 'string', default: '10.247.0.0/20' },
    pool: { type: 'string', default: '10.248.0.0/24' },
    crds: { type: 'string' },
    coredns: { type: 'string' },
    image: { type: 'string', multiple: true, default: [] },
  },
});
if (!values.state) throw new Error('--state DIR is required');
const stateDir = path.resolve(values.state);
fs.mkdirSync(stateDir, { recursive: true });
fs.rmSync(path.join(stateDir, 'ready'), { force: true });
const logFile = path.join(stateDir, 'cluster.log');
const logFd = fs.openSync(logFile, 'a');
const log = (msg: string) => fs.writeSync(logFd, `${new Date().toISOString()} ${msg}\n`);

const [net, prefix] = values['pod-cidr'].split('/');
const base = ipToInt(net);
if (base === null) throw new Error(`--pod-cidr ${values['pod-cidr']}: not an IPv4 CIDR`);
const nodeIP = intToIp(base + 1);

const images: Record<string, string[]> = {
  'ghcr.io/gatehouse-dev/gatehouse:0.1.0': [process.execPath, path.join(ROOT, 'bin/gatehouse.js')],
};
for (const spec of values.image) {
  const i = spec.indexOf('=');
  if (i <= 0) throw new Error(`--image ${spec}: want IMAGE=PROGRAM`);
  images[spec.slice(0, i)] = [spec.slice(i + 1)];
}

/** A CRD file's object name (metadata.name), read without a YAML parser: `<plural>.<group>` from the file name. */
function crdName(file: string): string {
  const [group, plural] = path.basename(file, '.yaml').split('_');
  return `${plural}.${group}`;
}

/**
 * Polls the CRDs' Established condition (kubectl wait hung here: it
 * watches, and a watch opened before the CRD exists is not bounded by
 * its --timeout in every kubectl version). Bounded; the error names the
 * CRDs that are not Established yet and their conditions.
 */
async function waitEstablished(api: Api, names: string[]): Promise<void> {
  const deadline = Date.now() + CRDS_ESTABLISHED_MS;
  let pending = names;
  const why = new Map<string, string>();
  while (pending.length) {
    const next: string[] = [];
    for (const name of pending) {
      const a = await api.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      const conds: { type: string; status: string; reason?: string; message?: string }[] = a.body?.status?.conditions ?? [];
      if (conds.some((c) => c.type === 'Established' && c.status === 'True')) continue;
      next.push(name);
      why.set(name, a.status !== 200 ? `HTTP ${a.status}` : conds.map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason}: ${c.message ?? ''})` : ''}`).join(', ') || 'no conditions yet');
    }
    pending = next;
    if (!pending.length) break;
    if (Date.now() > deadline) {
      throw new Error(`CRDs not Established within ${CRDS_ESTABLISHED_MS / 1000} s: ${pending.map((n) => `${n}: ${why.get(n)}`).join('; ')}`);
    }
    await sleep(250);
  }
}

let cluster: Cluster | null = null;
let kubelet: Kubelet | null = null;
let kubeProxy: KubeProxy | null = null;
let metallb: MetalLB | null = null;
let dns: ChildProcess | null = null;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  log('stopping');
  dns?.kill('SIGKILL');
  await kubelet?.stop().catch(() => {});
  await kubeProxy?.stop().catch(() => {});
  metallb?.stop();
  await cluster?.stop().catch(() => {});
  // The bridge too, so that `cluster:down` leaves the host's network as it was.
  try { execFileSync('ip', ['link', 'del', values.bridge], { stdio: 'ignore', timeout: 10_000 }); } catch { /* not there */ }
  fs.rmSync(path.join(stateDir, 'ready'), { force: true });
  process.exit(code);
}
process.on('SIGTERM', () => void stop(0));
process.on('SIGINT', () => void stop(0));

try {
  await ensureBridge(values.bridge, `${nodeIP}/${prefix}`);
  cluster = await startCluster({ controllerManager: true, crds: 'none', apiServerAddress: nodeIP });
  const api = new Api(cluster.kubeConfig());
  fs.copyFileSync(cluster.kubeconfigPath, path.join(stateDir, 'kubeconfig'));
  fs.chmodSync(path.join(stateDir, 'kubeconfig'), 0o600);
  if (values.crds) {
    // The CustomResourceDefinitions of the channel's directory (the
    // safe-upgrades ValidatingAdmissionPolicy beside them is not one).
    const files = fs.readdirSync(values.crds).filter((f) => /^gateway\.networking\.(x-)?k8s\.io_.*\.yaml$/.test(f) && !f.includes('_vap_'))
      .sort().map((f) => path.join(values.crds!, f));
    if (!files.length) throw new Error(`--crds ${values.crds}: no gateway.networking CRD files there`);
    await cluster.applyFiles(files);
    await waitEstablished(api, files.map(crdName));
  }

  // The kubelet's serving certificate (the API server does not check it
  // unless told a CA for kubelets; it is only there for TLS).
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3',
    '-subj', '/CN=standin-node', '-addext', `subjectAltName=IP:${nodeIP}`,
    '-keyout', path.join(cluster.dir, 'kubelet.key'), '-out', path.join(cluster.dir, 'kubelet.crt')], { stdio: 'ignore' });

  // Node-local DNS (as NodeLocal DNSCache does): CoreDNS on the node's
  // address, answering cluster.local from the API, the pods' nameserver.
  if (values.coredns) {
    const corefile = path.join(cluster.dir, 'Corefile');
    fs.writeFileSync(corefile, [
      `${DOMAIN}:53 in-addr.arpa:53 {`,
      `  bind ${nodeIP}`,
      `  kubernetes ${DOMAIN} in-addr.arpa {`,
      `    kubeconfig ${cluster.kubeconfigPath}`,
      '    pods insecure',
      '  }',
      '  errors',
      '}',
      '',
    ].join('\n'));
    const fd = fs.openSync(path.join(stateDir, 'coredns.log'), 'a');
    dns = spawn(values.coredns, ['-conf', corefile], { stdio: ['ignore', fd, fd] });
    dns.once('exit', (code, signal) => { if (!stopping) { log(`node-local CoreDNS exited (${signal ?? code})`); void stop(1); } });
  }

  kubelet = await startKubelet({
    api, images, dir: path.join(stateDir, 'pods'), podCidr: values['pod-cidr'], bridge: values.bridge, log,
    cluster: { dnsServer: nodeIP, domain: DOMAIN, apiServiceHost: API_SERVICE.host, apiServicePort: API_SERVICE.port },
    server: { port: KUBELET_PORT, cert: fs.readFileSync(path.join(cluster.dir, 'kubelet.crt'), 'utf8'), key: fs.readFileSync(path.join(cluster.dir, 'kubelet.key'), 'utf8') },
  });
  kubeProxy = startKubeProxy({ api, log });
  metallb = startMetalLB({ api, log, pools: [{ name: 'default', addresses: [values.pool], avoidBuggyIPs: true }] });
  await Promise.all([kubelet.synced, kubeProxy.synced, metallb.synced]);
  fs.writeFileSync(path.join(stateDir, 'ready'), `${process.pid}\n`);
  log(`ready: API ${cluster.server}, node ${nodeIP}, pool ${values.pool}`);
} catch (err) {
  log(`failed: ${(err as Error).stack ?? err}`);
  process.stderr.write(`cluster: ${(err as Error).message}\n`);
  await stop(1);
}
