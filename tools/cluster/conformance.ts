// The upstream Gateway API conformance suite, unmodified, against Gatehouse
// in Kubernetes mode on the local cluster (cluster.ts): cluster up, the
// suite's release's CRDs, Gatehouse installed from deploy/ as a user
// would (`kubectl apply --server-side`), the GatewayClass Accepted, then
// `conformance.test` with the GatewayClass's own supportedFeatures, then
// the cluster down. Run by scripts/conformance-k8s.sh inside a network
// namespace of its own (`unshare -n`), so nothing touches the host's.
//
//   node tools/cluster/conformance.ts --bin DIR --crds DIR --report FILE [--profiles P,...] [-- SUITE_ARGS...]
//
// DIR (--bin) holds conformance.test, echo-basic and coredns
// (scripts/conformance-bin.sh); --crds is the suite's release's
// config/crd/experimental. Every wait is bounded; a failure names what
// did not happen and quotes the end of the cluster's log.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { Api, sleep } from '../../test/k8s/standins/api.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Control plane (~5-10 s), CRDs, kubelet/kube-proxy/MetalLB synced; cold binaries are built before this script. */
const CLUSTER_READY_MS = 180_000;
/** The controller's pods start, elect a leader and accept the class: seconds; two minutes on a loaded machine. */
const CLASS_ACCEPTED_MS = 120_000;
/** cluster.ts stops its processes and sandboxes on SIGTERM; after this it is killed. */
const CLUSTER_STOP_MS = 60_000;
/** The whole suite: its own per-test timeouts bound each test; this bounds the run (go test's -test.timeout). */
const SUITE_TIMEOUT = '40m';
/** In cluster.ts's default pool 10.248.0.0/24, high enough that no earlier Service was given it. */
const USABLE_ADDRESS = '10.248.0.250';
/** In no pool: MetalLB would not give it. */
const UNUSABLE_ADDRESS = '10.249.0.1';
/** The base manifests' images (conformance v1.6.3) and the programs that stand for them. */
const SUITE_IMAGES = {
  echo: ['registry.k8s.io/gateway-api/echo-basic:v1.5.1', 'registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.2',
    'registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3', 'registry.k8s.io/gateway-api/echo-advanced:v1.5.1'],
  coredns: ['registry.k8s.io/coredns/coredns:v1.12.2'],
};

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    bin: { type: 'string' },
    crds: { type: 'string' },
    report: { type: 'string' },
    profiles: { type: 'string', default: 'GATEWAY-HTTP,GATEWAY-TLS,GATEWAY-GRPC' },
    'keep-state': { type: 'boolean', default: false },
  },
});
for (const k of ['bin', 'crds', 'report'] as const) if (!values[k]) throw new Error(`--${k} is required`);
const bin = path.resolve(values.bin!);
const report = path.resolve(values.report!);
// Not under /tmp: pods mount an emptyDir over /tmp, which would hide their
// volumes' source directories there (the kubelet stand-in's `dir` note).
const state = fs.mkdtempSync('/var/lib/gatehouse-conformance-');
const started = Date.now();
const say = (msg: string) => process.stderr.write(`conformance-k8s [${((Date.now() - started) / 1000).toFixed(0)} s]: ${msg}\n`);

let clusterProc: ChildProcess | null = null;
let clusterExit: Promise<void> = Promise.resolve();

function logTail(file: string, lines = 40): string {
  try { return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n'); } catch { return '(no log)'; }
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | null | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last = '';
  for (;;) {
    if (clusterProc && clusterProc.exitCode !== null) throw new Error(`${what}: the cluster exited (${clusterProc.exitCode})\n${logTail(path.join(state, 'cluster.log'))}`);
    try {
      const v = await probe();
      if (v !== null && v !== undefined) return v;
    } catch (err) { last = (err as Error).message; }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s${last ? ` (last error: ${last})` : ''}`);
    await sleep(500);
  }
}

async function stopCluster(): Promise<void> {
  if (!clusterProc || clusterProc.exitCode !== null) return;
  clusterProc.kill('SIGTERM');
  const t = setTimeout(() => clusterProc?.kill('SIGKILL'), CLUSTER_STOP_MS);
  await clusterExit;
  clearTimeout(t);
}

function kubectl(kubeconfig: string, ...args: string[]): string {
  return execFileSync(path.join(k8sBin(), 'kubectl'), ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', timeout: 60_000 });
}

let k8sBinDir = '';
function k8sBin(): string {
  if (!k8sBinDir) k8sBinDir = execFileSync('bash', [path.join(ROOT, 'scripts/k8s-binaries.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return k8sBinDir;
}

async function main(): Promise<number> {
  k8sBin();
  say(`cluster up (state ${state})`);
  // The programs, where no pod mounts a volume over them (the coredns pod
  // mounts its ConfigMap at /root, hiding ~/.cache): hard links in the
  // state dir, copies when it is on another file system.
  const progs = path.join(state, 'images');
  fs.mkdirSync(progs);
  for (const p of ['echo-basic', 'coredns']) {
    try { fs.linkSync(path.join(bin, p), path.join(progs, p)); } catch { fs.copyFileSync(path.join(bin, p), path.join(progs, p)); fs.chmodSync(path.join(progs, p), 0o755); }
  }
  const images = [
    ...SUITE_IMAGES.echo.map((i) => `--image=${i}=${path.join(progs, 'echo-basic')}`),
    ...SUITE_IMAGES.coredns.map((i) => `--image=${i}=${path.join(progs, 'coredns')}`),
  ];
  clusterProc = spawn(process.execPath, [path.join(ROOT, 'tools/cluster/cluster.ts'), '--state', state, '--crds', values.crds!,
    '--coredns', path.join(progs, 'coredns'), ...images], { stdio: 'inherit' });
  clusterExit = new Promise((resolve) => clusterProc!.once('exit', () => resolve()));
  const ready = path.join(state, 'ready');
  await until('the cluster ready', CLUSTER_READY_MS, async () => fs.existsSync(ready) || null);
  const kubeconfig = path.join(state, 'kubeconfig');
  say('cluster ready; installing Gatehouse from deploy/ (CRDs of the suite\'s release are in)');

  kubectl(kubeconfig, 'apply', '--server-side', '-f', path.join(ROOT, 'deploy/crds/gatehouse.dev_gatewayparameters.yaml'));
  kubectl(kubeconfig, 'apply', '--server-side', '-f', path.join(ROOT, 'deploy/manifests/'));

  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const api = new Api(kc);
  const features = await until('GatewayClass gatehouse Accepted', CLASS_ACCEPTED_MS, async () => {
    const a = await api.get('/apis/gateway.networking.k8s.io/v1/gatewayclasses/gatehouse');
    const accepted = (a.body?.status?.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Accepted' && c.status === 'True');
    return accepted ? (a.body?.status?.supportedFeatures ?? []).map((f: { name: string }) => f.name) as string[] : null;
  });
  say(`GatewayClass gatehouse Accepted; supportedFeatures: ${features.join(',') || '(none)'}`);

  const args = [
    '-test.run', '^TestConformance$', '-test.v', `-test.timeout=${SUITE_TIMEOUT}`,
    '-gateway-class=gatehouse',
    `-conformance-profiles=${values.profiles}`,
    '-organization=gatehouse-dev', '-project=gatehouse', '-url=https://github.com/gatehouse-dev/gatehouse',
    '-version=0.1.0', '-contact=https://github.com/gatehouse-dev/gatehouse/issues',
    `-report-output=${report}`,
    '-cleanup-base-resources=false',
    // GatewayStaticAddresses: an address of the MetalLB pool that no
    // other Service is given (the pool hands out addresses from its start),
    // and one outside every pool.
    `-usable-address=${USABLE_ADDRESS}`, `-unusable-address=${UNUSABLE_ADDRESS}`,
    ...positionals,
  ];
  say(`running conformance.test ${args.join(' ')}`);
  const suite = spawn(path.join(bin, 'conformance.test'), args, {
    cwd: state, stdio: 'inherit', env: { ...process.env, KUBECONFIG: kubeconfig },
  });
  const code: number = await new Promise((resolve) => suite.once('exit', (c, s) => resolve(c ?? (s ? 128 : 1))));
  say(`conformance.test exited ${code}`);
  return code;
}

let code = 1;
const onSignal = () => { say(`interrupted; state kept in ${state}`); void stopCluster().then(() => process.exit(130)); };
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
try {
  code = await main();
} catch (err) {
  say(`failed: ${(err as Error).message}`);
} finally {
  say('cluster down');
  await stopCluster();
  if (values['keep-state'] || code !== 0) say(`state kept in ${state} (cluster.log, pods/)`);
  else fs.rmSync(state, { recursive: true, force: true });
}
process.exit(code);
