// `npm run cluster:up` / `npm run cluster:down`: the local cluster
// (cluster.ts) as a background process on the host's network, for a user
// who wants to try Gatehouse's Kubernetes mode by hand (deploy/README.md).
//
//   npm run cluster:up [-- --state DIR] [-- CLUSTER_ARGS...]   # prints `export KUBECONFIG=...`
//   npm run cluster:down [-- --state DIR]
//
// Names chosen not to collide with the test harness (which runs in network
// namespaces of its own) or with common CNIs: bridge ghc0, pods
// 10.247.0.0/20, LoadBalancer VIPs 10.248.0.0/24, state in
// /var/lib/gatehouse-cluster (not /tmp or ~: pods mount volumes over /tmp
// and /root, which would hide the programs and volume sources there).
// echo-basic and coredns (scripts/conformance-bin.sh) are mapped to the
// upstream images when they are cached, so the conformance suite's
// manifests run too. Needs root.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Control plane and stand-ins up: ~10-15 s warm; a cold k8s build happens before, in k8s-binaries.sh. */
const READY_MS = 180_000;
/** cluster.ts stops its pods and control plane on SIGTERM within seconds; then it is killed. */
const STOP_MS = 60_000;
const IMAGES: Record<string, string> = {
  'registry.k8s.io/gateway-api/echo-basic:v1.5.1': 'echo-basic',
  'registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.2': 'echo-basic',
  'registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3': 'echo-basic',
  'registry.k8s.io/gateway-api/echo-advanced:v1.5.1': 'echo-basic',
  'registry.k8s.io/coredns/coredns:v1.12.2': 'coredns',
};

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    state: { type: 'string', default: '/var/lib/gatehouse-cluster' },
    down: { type: 'boolean', default: false },
  },
});
const state = path.resolve(values.state);
const pidFile = path.join(state, 'pid');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

function runningPid(): number | null {
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim() || 'x');
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}

if (values.down) {
  const pid = fs.existsSync(pidFile) ? runningPid() : null;
  if (!pid) {
    console.error(`cluster:down: no cluster running from ${state}`);
    process.exit(0);
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_MS;
  while (alive(pid) && Date.now() < deadline) await sleep(200);
  if (alive(pid)) {
    console.error(`cluster:down: ${pid} still running after ${STOP_MS / 1000} s; killing it`);
    process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(pidFile, { force: true });
  console.error(`cluster:down: stopped (logs kept in ${state})`);
  process.exit(0);
}

fs.mkdirSync(state, { recursive: true });
if (fs.existsSync(pidFile) && runningPid()) {
  console.error(`cluster:up: already running (pid ${runningPid()}); npm run cluster:down first`);
  process.exit(1);
}
execFileSync('bash', [path.join(ROOT, 'scripts/k8s-binaries.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
const args = [path.join(ROOT, 'tools/cluster/cluster.ts'), '--state', state];
let progs: string | null = null;
try {
  progs = execFileSync('bash', [path.join(ROOT, 'scripts/conformance-bin.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
} catch {
  console.error('cluster:up: echo-basic/coredns not built (no Go?): the upstream images will not run');
}
if (progs) {
  const dir = path.join(state, 'images');
  fs.mkdirSync(dir, { recursive: true });
  for (const p of ['echo-basic', 'coredns']) {
    fs.rmSync(path.join(dir, p), { force: true });
    fs.copyFileSync(path.join(progs, p), path.join(dir, p));
    fs.chmodSync(path.join(dir, p), 0o755);
  }
  args.push('--coredns', path.join(dir, 'coredns'), ...Object.entries(IMAGES).map(([image, p]) => `--image=${image}=${path.join(dir, p)}`));
}
args.push(...positionals);
fs.rmSync(path.join(state, 'ready'), { force: true });
const out = fs.openSync(path.join(state, 'cluster.out'), 'a');
const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', out, out] });
fs.writeFileSync(pidFile, `${child.pid}\n`);
child.unref();
const deadline = Date.now() + READY_MS;
while (!fs.existsSync(path.join(state, 'ready'))) {
  if (child.exitCode !== null || !alive(child.pid!)) {
    console.error(`cluster:up: the cluster exited; see ${state}/cluster.out and cluster.log`);
    process.exit(1);
  }
  if (Date.now() > deadline) {
    console.error(`cluster:up: not ready within ${READY_MS / 1000} s; see ${state}/cluster.log (npm run cluster:down stops it)`);
    process.exit(1);
  }
  await sleep(250);
}
console.error(`cluster:up: ready (pid ${child.pid}; logs in ${state}; npm run cluster:down stops it)`);
console.log(`export KUBECONFIG=${path.join(state, 'kubeconfig')}`);
process.exit(0);
