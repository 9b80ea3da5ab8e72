// A real Kubernetes control plane for the Kubernetes-mode tests: etcd,
// kube-apiserver and (when asked) kube-controller-manager, on loopback, in
// a scratch directory, with the Gateway API and Gatehouse CRDs applied
// server-side. No kubelet, no scheduler, no cloud: tests that need pods
// bind and mark them themselves (see README.md next to this file).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';

export interface Cluster {
  server: string;            // https://127.0.0.1:<port>
  token: string;             // admin bearer token (system:masters)
  caFile: string;            // the apiserver serving CA (PEM file)
  kubeconfigPath: string;    // a kubeconfig file for kubectl and for `gatehouse controller --kubeconfig`
  dir: string;               // the cluster's scratch dir (deleted by stop())
  kubeConfig(): k8s.KubeConfig;                 // a fresh KubeConfig for @kubernetes/client-node
  kubectl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  applyFiles(paths: string[]): Promise<void>;   // kubectl apply --server-side --force-conflicts -f each
  applyYaml(yaml: string): Promise<void>;       // same for a YAML string (multi-doc)
  /** Signs a service account token the apiserver accepts (for TokenReview tests): uses the SA key pair. */
  serviceAccountToken(namespace: string, name: string, audience: string, expirationSeconds?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  controllerManager?: boolean;                      // also run kube-controller-manager (Deployments->ReplicaSets->Pods, EndpointSlices, GC)
  crds?: 'experimental' | 'standard' | 'none';      // Gateway API channel to install; default 'experimental'
  gatehouseCrds?: boolean;                          // deploy/crds/gatehouse.dev_*.yaml; default true
  /**
   * Serve the API on this address (the node's address on a pod bridge)
   * instead of 127.0.0.1, so that pods reach it: the `kubernetes` Service's
   * endpoints point there, pods get service account tokens mounted (the
   * ServiceAccount admission plugin on), and the API server asks nodes'
   * kubelets at their InternalIP (pod logs). For a cluster whose pods run
   * (tools/cluster/), not for the tests that bind pods themselves.
   */
  apiServerAddress?: string;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// Bounds. The API server is usually ready in 3-5 s on two shared cores;
// 60 s leaves room for a loaded CI machine without hanging a run.
const ETCD_READY_MS = 30_000;
const APISERVER_READY_MS = 60_000;
const CRDS_ESTABLISHED_MS = 60_000;
const CONTROLLER_MANAGER_READY_MS = 60_000;
/** A cold build of the binaries takes minutes (README.md); a warm call, well under a second. */
const BINARIES_BUILD_MS = 30 * 60_000;
const KUBECTL_TIMEOUT_MS = 60_000;
/** kubectl output kept per call: enough for `get -o yaml` of many objects, not unbounded. */
const KUBECTL_MAX_BUFFER = 32 * 1024 * 1024;
/** How much of each process's log a failed start quotes. */
const LOG_TAIL_BYTES = 3_000;
/** Port attempts before giving up: a collision in [20000, 32000) is rare, several in a row mean something else. */
const PORT_ATTEMPTS = 6;

/** Set GATEHOUSE_K8S_KEEP=1 to keep scratch dirs (logs, etcd data) after stop(), for debugging. */
const KEEP = process.env.GATEHOUSE_K8S_KEEP === '1';

// ------------------------------------------------------------ processes

interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited: Promise<string>;
  done: boolean;
}

/** Every child of every cluster in this process, for the exit handler. */
const liveChildren = new Set<ChildProcess>();
const scratchDirs = new Set<string>();
let exitHandlerInstalled = false;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  // 'exit' runs synchronously at the very end: SIGKILL is all there is
  // time for. A test process killed outright is covered by the parent
  // death signal (setpriv below); its scratch dir by the sweep at the next start.
  process.on('exit', () => {
    for (const child of liveChildren) {
      try { child.kill('SIGKILL'); } catch { /* already gone */ }
    }
    if (!KEEP) for (const dir of scratchDirs) fs.rmSync(dir, { recursive: true, force: true });
  });
}

/**
 * setpriv (util-linux) sets PR_SET_PDEATHSIG before exec: the kernel kills
 * the child when this process dies, even by SIGKILL, when no exit handler runs.
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

function startProcess(dir: string, name: string, command: string, args: string[]): Proc {
  const logFile = path.join(dir, `${name}.log`);
  const fd = fs.openSync(logFile, 'a', 0o600);
  const [cmd, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, args];
  const child = spawn(cmd, argv, { stdio: ['ignore', fd, fd], cwd: dir });
  fs.closeSync(fd);
  liveChildren.add(child);
  const proc: Proc = { name, child, logFile, done: false, exited: Promise.resolve('') };
  proc.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      proc.done = true;
      liveChildren.delete(child);
      resolve(signal ? `killed by ${signal}` : `exited with code ${code}`);
    });
    child.once('error', (err) => {
      proc.done = true;
      liveChildren.delete(child);
      resolve(`could not start: ${err.message}`);
    });
  });
  return proc;
}

async function killProcess(proc: Proc): Promise<void> {
  if (proc.done) return;
  // A throwaway cluster has nothing to flush: SIGKILL is quick and final.
  proc.child.kill('SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([proc.exited, new Promise((resolve) => { timer = setTimeout(resolve, 5_000); })]);
  clearTimeout(timer);
}

function logTail(proc: Proc): string {
  try {
    const size = fs.statSync(proc.logFile).size;
    const fd = fs.openSync(proc.logFile, 'r');
    try {
      const length = Math.min(size, LOG_TAIL_BYTES);
      const buf = Buffer.alloc(length);
      fs.readSync(fd, buf, 0, length, size - length);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '(no log)';
  }
}

function tails(procs: Proc[]): string {
  return procs.map((p) => `--- ${p.name} (${p.done ? 'not running' : 'running'}), last ${LOG_TAIL_BYTES} bytes of ${p.logFile}:\n${logTail(p)}`).join('\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every 100 ms until it returns true, `timeoutMs` passes, or
 * one of `procs` exits (then there is no point waiting).
 */
async function waitUntil(what: string, timeoutMs: number, procs: Proc[], check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    const dead = procs.find((p) => p.done);
    if (dead) throw new Error(`${what}: ${dead.name} ${await dead.exited}`);
    try {
      if (await check()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not done within ${timeoutMs / 1000} s${lastError ? ` (last error: ${lastError})` : ''}`);
    await sleep(100);
  }
}

// ------------------------------------------------------------ commands

interface RunResult { code: number; stdout: string; stderr: string }

function run(command: string, args: string[], opts: { input?: string; timeoutMs: number; maxBuffer?: number; cwd?: string }): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { timeout: opts.timeoutMs, maxBuffer: opts.maxBuffer ?? KUBECTL_MAX_BUFFER, cwd: opts.cwd, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        const code = typeof e.code === 'number' ? e.code : -1;
        const why = e.killed ? `\n(killed after ${opts.timeoutMs / 1000} s or past ${opts.maxBuffer ?? KUBECTL_MAX_BUFFER} bytes of output)` : typeof e.code === 'string' ? `\n(${e.message})` : '';
        resolve({ code, stdout, stderr: stderr + why });
      });
    // Closed either way: a command that reads stdin must never wait on it.
    // One that exits before reading it makes the write fail with EPIPE: its
    // exit code tells what happened, so the pipe error is not thrown.
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.input ?? '');
  });
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const r = await run('openssl', args, { timeoutMs: 30_000, cwd: dir, maxBuffer: 1024 * 1024 });
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed (${r.code}): ${r.stderr.slice(-2000)}`);
}

let binariesPromise: Promise<string> | null = null;

/** The directory with etcd, kube-apiserver, kube-controller-manager and kubectl (built once, cached). */
function binaries(): Promise<string> {
  binariesPromise ??= run('bash', [path.join(ROOT, 'scripts/k8s-binaries.sh')], { timeoutMs: BINARIES_BUILD_MS, maxBuffer: 1024 * 1024 }).then((r) => {
    if (r.code !== 0) {
      binariesPromise = null;
      throw new Error(`scripts/k8s-binaries.sh failed (${r.code}):\n${r.stderr.slice(-4000)}`);
    }
    return r.stdout.trim();
  });
  return binariesPromise;
}

// ------------------------------------------------------------ ports

function randomPort(): number {
  // Below the Linux ephemeral range (32768+), where outgoing connections
  // would take the port from under us.
  return 20_000 + Math.floor(Math.random() * 12_000);
}

/** True when nothing listens on 127.0.0.1:port right now (a hint, not a reservation). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const p = randomPort();
    if (!ports.includes(p) && await portFree(p)) ports.push(p);
  }
  return ports;
}

function lostPortRace(proc: Proc): boolean {
  return proc.done && /address already in use/i.test(logTail(proc));
}

// ------------------------------------------------------------ HTTP

/** GET on the API server with the admin token; resolves with the status and body (bounded). */
function apiGet(server: string, ca: Buffer, token: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(server + urlPath, { ca, headers: { authorization: `Bearer ${token}` }, timeout: 5_000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { if (body.length < 64 * 1024) body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

function httpGetOk(url: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? https : http).get(url, { timeout: 2_000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}
// ------------------------------------------------------------ the cluster

/** Removes scratch dirs of test processes that died without cleaning up (their pid is in the name). */
function sweepStaleDirs(): void {
  const tmp = os.tmpdir();
  let names: string[];
  try { names = fs.readdirSync(tmp); } catch { return; }
  for (const name of names) {
    const m = /^gatehouse-k8s-(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') fs.rmSync(path.join(tmp, name), { recursive: true, force: true });
    }
  }
}

async function makeCertificates(dir: string, extraIP?: string): Promise<void> {
  // ECDSA P-256 throughout: keys are generated in milliseconds, and the
  // API server accepts them for serving and for signing tokens (ES256).
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await Promise.all([
    openssl(dir, 'req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3', '-subj', '/CN=gatehouse-test-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'),
    openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sa.key'),
  ]);
  const sans = [...(extraIP ? [`IP:${extraIP}`] : []), 'IP:127.0.0.1', 'IP:10.96.0.1', 'DNS:localhost', 'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local'];
  await Promise.all([
    openssl(dir, 'req', '-x509', ...ec, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-keyout', 'apiserver.key', '-out', 'apiserver.crt', '-days', '3',
      '-subj', '/CN=kube-apiserver', '-addext', `subjectAltName=${sans.join(',')}`, '-addext', 'extendedKeyUsage=serverAuth',
      '-addext', 'basicConstraints=critical,CA:FALSE'),
    openssl(dir, 'ec', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'),
  ]);
  for (const f of ['ca.key', 'apiserver.key', 'sa.key']) fs.chmodSync(path.join(dir, f), 0o600);
}

function crdFiles(opts: ClusterOptions): string[] {
  const files: string[] = [];
  const channel = opts.crds ?? 'experimental';
  if (channel !== 'none') {
    const d = path.join(ROOT, 'deploy/crds/gateway-api', channel);
    // Every CRD of the channel, but not the safe-upgrades
    // ValidatingAdmissionPolicy: it guards operators' upgrades, and the
    // standard copy of this dev bundle refuses its own CRDs (bundle-version
    // v0.0.0-dev), so a test re-applying one would fail (README.md).
    for (const f of fs.readdirSync(d).sort()) if (f.endsWith('.yaml') && !f.includes('_vap_')) files.push(path.join(d, f));
  }
  if (opts.gatehouseCrds ?? true) {
    const d = path.join(ROOT, 'deploy/crds');
    for (const f of fs.readdirSync(d).sort()) if (/^gatehouse\.dev_.*\.yaml$/.test(f)) files.push(path.join(d, f));
  }
  return files;
}

function kubeconfigYaml(server: string, caFile: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: gatehouse-test',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority: ${JSON.stringify(caFile)}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: gatehouse-test',
    '  context:',
    '    cluster: gatehouse-test',
    '    user: admin',
    'current-context: gatehouse-test',
    '',
  ].join('\n');
}

async function startEtcd(bin: string, dir: string, procs: Proc[]): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const [client, peer] = await freePorts(2);
    const url = `http://127.0.0.1:${client}`;
    const peerUrl = `http://127.0.0.1:${peer}`;
    const proc = startProcess(dir, 'etcd', path.join(bin, 'etcd'), [
      '--name=default',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      // Test data: losing it in a crash costs nothing, fsync costs seconds.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    procs.push(proc);
    try {
      await waitUntil('etcd /health', ETCD_READY_MS, [proc], () => httpGetOk(`${url}/health`));
      return url;
    } catch (err) {
      if (lostPortRace(proc) && attempt < PORT_ATTEMPTS) {
        procs.pop();
        fs.rmSync(path.join(dir, 'etcd'), { recursive: true, force: true });
        continue;
      }
      throw err;
    }
  }
}

async function startApiServer(bin: string, dir: string, etcdUrl: string, token: string, procs: Proc[], fixedPort?: number, address?: string): Promise<{ proc: Proc; server: string }> {
  const ca = fs.readFileSync(path.join(dir, 'ca.crt'));
  const host = address ?? '127.0.0.1';
  for (let attempt = 1; ; attempt++) {
    const [port] = fixedPort === undefined ? await freePorts(1) : [fixedPort];
    const server = `https://${host}:${port}`;
    const proc = startProcess(dir, 'kube-apiserver', path.join(bin, 'kube-apiserver'), [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${host}`, `--secure-port=${port}`, `--advertise-address=${host}`,
      ...(address ? [
        // Pods reach the API through the `kubernetes` Service, with the
        // token the ServiceAccount admission plugin mounts; logs come from
        // the node's kubelet at its InternalIP (no DNS for node names).
        '--kubelet-preferred-address-types=InternalIP',
      ] : [
        // The `kubernetes` Service's endpoints would be 127.0.0.1, which
        // endpoint validation refuses; nothing here needs them.
        '--endpoint-reconciler-type=none',
        // No pod gets a token volume injected: there is no kubelet to mount it.
        '--disable-admission-plugins=ServiceAccount',
      ]),
      `--cert-dir=${dir}`,
      `--tls-cert-file=${path.join(dir, 'apiserver.crt')}`, `--tls-private-key-file=${path.join(dir, 'apiserver.key')}`,
      `--client-ca-file=${path.join(dir, 'ca.crt')}`,
      `--token-auth-file=${path.join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      `--service-account-key-file=${path.join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(dir, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
    ]);
    procs.push(proc);
    try {
      await waitUntil('kube-apiserver /readyz', APISERVER_READY_MS, [proc, ...procs.filter((p) => p.name === 'etcd')],
        async () => (await apiGet(server, ca, token, '/readyz')).status === 200);
      return { proc, server };
    } catch (err) {
      if (lostPortRace(proc) && attempt < PORT_ATTEMPTS) {
        procs.pop();
        // The same port again (a restart): whoever holds it may let go.
        if (fixedPort !== undefined) await sleep(500);
        continue;
      }
      throw err;
    }
  }
}

function startControllerManager(bin: string, dir: string, kubeconfigPath: string): Proc {
  return startProcess(dir, 'kube-controller-manager', path.join(bin, 'kube-controller-manager'), [
    `--kubeconfig=${kubeconfigPath}`,
    // Off: the cloud's controllers (no cloud), and node lifecycle: with no
    // kubelet heartbeats it would mark every node NotReady and every pod on
    // it unready, undoing what the tests' stand-in kubelet sets.
    '--controllers=*,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller,-node-lifecycle-controller',
    '--use-service-account-credentials=false',
    '--leader-elect=false',
    // No HTTPS endpoint: nothing scrapes it, and a fixed port would collide between clusters.
    '--secure-port=0',
    `--service-account-private-key-file=${path.join(dir, 'sa.key')}`,
    `--root-ca-file=${path.join(dir, 'ca.crt')}`,
    `--cluster-signing-cert-file=${path.join(dir, 'ca.crt')}`, `--cluster-signing-key-file=${path.join(dir, 'ca.key')}`,
    '--kube-api-qps=100', '--kube-api-burst=200',
    '--profiling=false',
    '--v=1',
  ]);
}

/** What a cluster can do beyond the Cluster interface, for the few tests that need it. */
const internals = new WeakMap<Cluster, { restartApiServer(): Promise<void>; etcdUrl: string }>();

/**
 * Kills kube-apiserver and starts it again on the same port, against the
 * same etcd; resolves when it is ready. Clients see their connections
 * drop, then refused, then answered again. A watch resumed from an older
 * resourceVersion may be answered 410 Gone (the new watch cache starts at
 * the current revision) or served from etcd (while that cache is not
 * ready); compactEtcd() first makes it 410 every time.
 */
export async function restartApiServer(cluster: Cluster): Promise<void> {
  const i = internals.get(cluster);
  if (!i) throw new Error('not a running cluster of this harness');
  await i.restartApiServer();
}

/**
 * Compacts etcd's history up to its current revision (after one write of
 * its own, so that every resourceVersion a client holds is older): a watch
 * that resumes from such a resourceVersion without the API server's watch
 * cache to serve it is answered 410 Gone. Resolves with that revision.
 */
export async function compactEtcd(cluster: Cluster): Promise<number> {
  const i = internals.get(cluster);
  if (!i) throw new Error('not a running cluster of this harness');
  // etcd's JSON gateway (keys and values base64).
  const post = async (p: string, body: unknown) => {
    const res = await fetch(`${i.etcdUrl}${p}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
    const json = await res.json() as { header?: { revision?: string } };
    if (!res.ok) throw new Error(`etcd ${p}: HTTP ${res.status} ${JSON.stringify(json).slice(0, 300)}`);
    return json;
  };
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  // Outside /registry: the API server never reads it, and no watch sees it.
  const put = await post('/v3/kv/put', { key: b64('/gatehouse-test/compaction-marker'), value: b64(String(Date.now())) });
  const revision = Number(put.header?.revision);
  if (!Number.isInteger(revision) || revision <= 0) throw new Error(`etcd gave no revision: ${JSON.stringify(put)}`);
  await post('/v3/kv/compaction', { revision: String(revision), physical: true });
  return revision;
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  installExitHandler();
  sweepStaleDirs();
  const bin = await binaries();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `gatehouse-k8s-${process.pid}-`));
  scratchDirs.add(dir);
  const procs: Proc[] = [];
  const cleanup = async () => {
    // The control plane's consumers first, etcd last.
    for (const p of [...procs].reverse()) await killProcess(p);
    scratchDirs.delete(dir);
    if (!KEEP) fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const token = randomBytes(32).toString('hex');
    fs.writeFileSync(path.join(dir, 'tokens.csv'), `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });
    await makeCertificates(dir, opts.apiServerAddress);
    const caFile = path.join(dir, 'ca.crt');

    const etcdUrl = await startEtcd(bin, dir, procs);
    const { server } = await startApiServer(bin, dir, etcdUrl, token, procs, undefined, opts.apiServerAddress);

    const kubeconfigPath = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfigPath, kubeconfigYaml(server, caFile, token), { mode: 0o600 });

    const kubectl = (...args: string[]) => run(path.join(bin, 'kubectl'), ['--kubeconfig', kubeconfigPath, ...args], { timeoutMs: KUBECTL_TIMEOUT_MS });
    const apply = async (args: string[], input?: string) => {
      const r = await run(path.join(bin, 'kubectl'), ['--kubeconfig', kubeconfigPath, 'apply', '--server-side', '--force-conflicts', ...args],
        { timeoutMs: KUBECTL_TIMEOUT_MS, input });
      if (r.code !== 0) throw new Error(`kubectl apply failed (${r.code}): ${r.stderr.trim().slice(-4000)}`);
    };
    const kubeConfig = () => {
      const kc = new k8s.KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'gatehouse-test', server, caFile, skipTLSVerify: false }],
        users: [{ name: 'admin', token }],
        contexts: [{ name: 'gatehouse-test', cluster: 'gatehouse-test', user: 'admin' }],
        currentContext: 'gatehouse-test',
      });
      return kc;
    };

    const ca = fs.readFileSync(caFile);
    const kcm = opts.controllerManager ? startControllerManager(bin, dir, kubeconfigPath) : null;
    if (kcm) procs.push(kcm);
    const files = crdFiles(opts);
    await Promise.all([
      (async () => {
        if (!files.length) return;
        await apply(files.flatMap((f) => ['-f', f]));
        const r = await kubectl('wait', '--for=condition=Established', `--timeout=${CRDS_ESTABLISHED_MS / 1000}s`, ...files.flatMap((f) => ['-f', f]));
        if (r.code !== 0) throw new Error(`CRDs not Established: ${r.stderr.trim().slice(-2000)}`);
      })(),
      // The API server creates `default` just after it turns ready; tests create objects there at once.
      waitUntil('namespace default', APISERVER_READY_MS, procs, async () => (await apiGet(server, ca, token, '/api/v1/namespaces/default')).status === 200),
      // The service account controller creating `default` in `default` shows
      // the controller manager is up, connected and running its controllers.
      kcm ? waitUntil('kube-controller-manager (ServiceAccount default/default)', CONTROLLER_MANAGER_READY_MS, procs,
        async () => (await apiGet(server, ca, token, '/api/v1/namespaces/default/serviceaccounts/default')).status === 200) : null,
    ]);

    const cluster: Cluster = {
      server, token, caFile, kubeconfigPath, dir,
      kubeConfig,
      kubectl,
      applyFiles: (paths) => apply(paths.flatMap((p) => ['-f', p])),
      applyYaml: (yaml) => apply(['-f', '-'], yaml),
      async serviceAccountToken(namespace, name, audience, expirationSeconds = 3600) {
        const core = kubeConfig().makeApiClient(k8s.CoreV1Api);
        const ignoreConflict = (err: unknown) => { if ((err as { code?: number }).code !== 409) throw err; };
        await core.createNamespace({ body: { metadata: { name: namespace } } }).catch(ignoreConflict);
        await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name, namespace } } }).catch(ignoreConflict);
        const tr = await core.createNamespacedServiceAccountToken({ name, namespace, body: { spec: { audiences: [audience], expirationSeconds } } });
        if (!tr.status?.token) throw new Error(`TokenRequest for ${namespace}/${name} gave no token`);
        return tr.status.token;
      },
      stop: cleanup,
    };
    internals.set(cluster, {
      etcdUrl,
      async restartApiServer() {
        const old = procs.find((p) => p.name === 'kube-apiserver' && !p.done);
        if (old) {
          await killProcess(old);
          procs.splice(procs.indexOf(old), 1);
        }
        try {
          await startApiServer(bin, dir, etcdUrl, token, procs, Number(new URL(server).port), opts.apiServerAddress);
        } catch (err) {
          throw new Error(`restarting kube-apiserver failed: ${(err as Error).message}\n${tails(procs)}`, { cause: err });
        }
      },
    });
    return cluster;
  } catch (err) {
    const message = `starting the test cluster failed: ${(err as Error).message}\n${tails(procs)}`;
    await cleanup();
    throw new Error(message, { cause: err });
  }
}
