// npm run bench:control-plane: how fast and how lean the control plane is.
//  (a) with 1,000 route files loaded, time from writing a new route file
//      to its first 200, over 200 additions (p50/p99/max);
//  (b) 1,000 route files written at once: time until every HTTPRoute is
//      Accepted and the listener reports attachedRoutes = 1,000;
//  (c) 500 existing routes rewritten while wrk drives steady load across
//      them: failed requests (must be 0);
//  (d) RSS of the whole gatehouse process tree with 5,000 routes loaded;
//  (e) as (a) with 5,000 routes loaded (target p99 <= 50 ms; (a)'s is 20);
//  (f) RSS with 5,000 routes over a load: idle, the peak while wrk drives
//      traffic across all 5,000 hosts, and 10, 30 and 60 s after it ends
//      (targets with one worker: < 120 MB idle, < 150 MB under load, back
//      to the idle level within a minute), with where each thread's memory
//      goes (V8 heap statistics from an --import hook in every thread);
//  (g) the same for `gatehouse proxy`, configured by a config service in
//      this process with the same 5,000 routes (target < 100 MB).
// gatehouse runs as `serve` with its default workers, or BENCH_CP_WORKERS
// of them (the item 3 targets are stated for one). BENCH_CP_ADDITIONS
// changes the number of additions in (a) and (e), BENCH_CP_LOAD_SECONDS
// the length of (f)'s and (g)'s load (default 20). For profiling a part:
// BENCH_CP_LOG_LEVEL (default warn; `info` logs each reload's stages) and
// BENCH_CP_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`) go to
// serve, BENCH_CP_POLL_MS=N makes (a) and (e) wait N ms between polls for
// the first 200 instead of polling back to back (to see how much of the
// figure is the poll's own load on the machine; the figure can then be up
// to N ms late), and BENCH_CP_KEEP=1 keeps the run's directory (gatehouse.log,
// latencies-a.txt: ms to first 200 and when the write began, in the order
// taken) and names it at the end.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'undici';
import { ensureTools } from './lib/tools.ts';
import { runWrk } from './lib/wrk.ts';
import { httpOk, machineBusy, startPinned, stop, treeRssMiB, waitUntil } from './lib/procs.ts';
import { backendConf, gatewayYAML, prepareFiles, routeYAML, PORTS, type Paths } from './lib/configs.ts';
import { buildSnapshot } from '../src/api/build-snapshot.ts';
import { irForGateway } from '../src/ir/per-gateway.ts';
import { STANDALONE_ENDPOINT_DEFAULTS } from '../src/net/endpoint-policy.ts';
import { FileProvider } from '../src/providers/file/provider.ts';
import { createCertificateAuthority, issueServingCertificate } from '../src/providers/kubernetes/certificate-authority.ts';
import { startConfigService } from '../src/providers/kubernetes/config-service.ts';
import { translate } from '../src/translate/index.ts';
import { CONTROLLER_NAME } from '../src/control/standalone.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const ADDITIONS = Number(process.env.BENCH_CP_ADDITIONS ?? 200);
const WORKERS = process.env.BENCH_CP_WORKERS;
const LOAD_SECONDS = Number(process.env.BENCH_CP_LOAD_SECONDS ?? 20);
const LOG_LEVEL = process.env.BENCH_CP_LOG_LEVEL ?? 'warn';
const NODE_ARGS = process.env.BENCH_CP_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? [];
const POLL_MS = Number(process.env.BENCH_CP_POLL_MS ?? 0);
const MEMORY_HOOK = path.join(import.meta.dirname, 'lib/thread-memory.mjs');
const MiB = 1024 * 1024;
const ADMIN = `http://127.0.0.1:${PORTS.ghAdmin}`;
const ALL_CPUS = Array.from({ length: os.cpus().length }, (_, i) => i).join(',');

/** Writes a file the way editors and kubectl-like tools do: a temp file renamed into place. */
function writeAtomic(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, name));
}

function configDir(p: Paths, name: string, routes: number): string {
  const dir = path.join(p.root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, '00-gateway.yaml'), gatewayYAML(p));
  for (let i = 0; i < routes; i++) fs.writeFileSync(path.join(dir, `route-${i}.yaml`), routeYAML(i));
  return dir;
}

/**
 * The environment gatehouse runs in: with a compile cache made before the
 * first start (scripts/warm-compile-cache.mjs, as the image ships one), so
 * that no figure depends on whether an earlier run left one in /tmp (a
 * cold one costs ~25 MB per thread; see bin/gatehouse.js).
 */
let ghEnv: NodeJS.ProcessEnv = process.env;

/** Starts serve; with `memoryDir`, every thread reports its memory there (lib/thread-memory.mjs). */
async function startGatehouse(p: Paths, dir: string, memoryDir?: string): Promise<ChildProcess> {
  const hook = memoryDir === undefined ? [] : ['--import', MEMORY_HOOK];
  const env = memoryDir === undefined ? ghEnv : { ...ghEnv, BENCH_THREAD_MEMORY_DIR: memoryDir };
  const child = startPinned(ALL_CPUS, process.execPath, [...NODE_ARGS, ...hook, path.join(REPO, 'bin/gatehouse.js'), 'serve', '--config-dir', dir,
    '--admin-address', `127.0.0.1:${PORTS.ghAdmin}`, '--log-level', LOG_LEVEL, '--shutdown-delay', '0s', ...(WORKERS === undefined ? [] : ['--workers', WORKERS])],
  env, path.join(p.root, 'gatehouse.log'));
  await waitUntil('gatehouse readyz', () => httpOk(`${ADMIN}/readyz`), 120_000);
  return child;
}

const pct = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];

async function newRouteLatency(p: Paths, loaded = 1000, part = 'a', target = 20): Promise<string> {
  const dir = configDir(p, `cp-${part}`, loaded);
  const gh = await startGatehouse(p, dir);
  const agent = new Agent({ connections: 1, pipelining: 0 });
  try {
    const latencies: number[] = [];
    const startedAt: number[] = [];
    for (let n = 0; n < ADDITIONS; n++) {
      const i = 10_000 + n;
      const started = performance.now();
      startedAt.push(Date.now());
      writeAtomic(dir, `route-${i}.yaml`, routeYAML(i));
      // Poll until served; bounded so a lost change cannot hang the bench.
      for (;;) {
        const res = await request(`http://127.0.0.1:${PORTS.ghHttp}/p0`, { dispatcher: agent, headers: { host: `r${i}.bench.test` } });
        await res.body.dump();
        if (res.statusCode === 200) break;
        if (performance.now() - started > 10_000) throw new Error(`route ${i} not served after 10 s`);
        if (POLL_MS > 0) await new Promise((r) => setTimeout(r, POLL_MS));
      }
      latencies.push(performance.now() - started);
    }
    // Kept with the run's directory (BENCH_CP_KEEP=1), in the order taken, to line up with gatehouse.log.
    fs.writeFileSync(path.join(p.root, `latencies-${part}.txt`), `${latencies.map((l, n) => `${l.toFixed(1)} ${startedAt[n]}`).join('\n')}\n`);
    latencies.sort((a, b) => a - b);
    return `(${part}) new route file -> first 200, ${ADDITIONS} additions with ${loaded.toLocaleString('en')} routes loaded: p50 ${pct(latencies, 0.5).toFixed(1)} ms, p99 ${pct(latencies, 0.99).toFixed(1)} ms, max ${latencies[latencies.length - 1].toFixed(1)} ms (target p99 <= ${target} ms)`;
  } finally {
    await agent.close();
    await stop(gh);
  }
}

interface Resource { kind: string; metadata: { name: string }; status?: { parents?: { conditions: { type: string; status: string }[] }[]; listeners?: { name: string; attachedRoutes: number }[] } }

async function bulkAccepted(p: Paths): Promise<string> {
  const dir = configDir(p, 'cp-b', 0);
  const gh = await startGatehouse(p, dir);
  try {
    const started = performance.now();
    for (let i = 0; i < 1000; i++) writeAtomic(dir, `route-${i}.yaml`, routeYAML(i));
    const written = performance.now() - started;
    let done = 0;
    await waitUntil('1,000 routes Accepted', async () => {
      const res = await request(`${ADMIN}/api/v1/resources?limit=5000`);
      const { items } = (await res.body.json()) as { items: Resource[] };
      const gw = items.find((o) => o.kind === 'Gateway');
      const attached = gw?.status?.listeners?.find((l) => l.name === 'http')?.attachedRoutes ?? 0;
      const accepted = items.filter((o) => o.kind === 'HTTPRoute'
        && o.status?.parents?.[0]?.conditions.some((c) => c.type === 'Accepted' && c.status === 'True')).length;
      done = performance.now() - started;
      return attached === 1000 && accepted === 1000;
    }, 30_000);
    return `(b) 1,000 route files written at once (writing took ${written.toFixed(0)} ms): all Accepted, attachedRoutes 1000, after ${done.toFixed(0)} ms (target <= 2000 ms)`;
  } finally {
    await stop(gh);
  }
}

async function rewriteUnderLoad(p: Paths): Promise<string> {
  const dir = configDir(p, 'cp-c', 500);
  const gh = await startGatehouse(p, dir);
  try {
    // wrk spreads its requests over all 500 hosts.
    const script = path.join(p.root, 'hosts.lua');
    fs.writeFileSync(script, `local i = 0
request = function()
  i = (i + 1) % 500
  return wrk.format("GET", "/p" .. (i % 10) .. "/x", { ["Host"] = "r" .. i .. ".bench.test" })
end
`);
    const load = runWrk({ url: `http://127.0.0.1:${PORTS.ghHttp}/`, seconds: 10, connections: 20, cpus: ALL_CPUS, script });
    await new Promise((r) => setTimeout(r, 1000));
    // Rewrite every route (same paths, one more response header) over ~5 s.
    for (let i = 0; i < 500; i++) {
      const text = routeYAML(i).replace(/backendRefs: \[\{name: backend, port: 80\}\]/g,
        `backendRefs: [{name: backend, port: 80}]\n    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-rev, value: "${i}"}]}}]`);
      writeAtomic(dir, `route-${i}.yaml`, text);
      await new Promise((r) => setTimeout(r, 10));
    }
    const result = await load;
    return `(c) 500 routes rewritten under load: ${result.requests} requests, ${result.errors} failed (${result.rps.toFixed(0)} req/s, p99 ${result.p99ms.toFixed(1)} ms) (target 0 failed)`;
  } finally {
    await stop(gh);
  }
}

async function rssWith5000(p: Paths): Promise<string> {
  const dir = configDir(p, 'cp-d', 5000);
  const started = performance.now();
  const gh = await startGatehouse(p, dir);
  try {
    const ready = performance.now() - started;
    await new Promise((r) => setTimeout(r, 2000));
    const rss = treeRssMiB(gh.pid as number);
    return `(d) 5,000 routes loaded (ready after ${ready.toFixed(0)} ms): RSS of the process tree ${rss.toFixed(0)} MiB (target < 250 MB)`;
  } finally {
    await stop(gh);
  }
}

interface ThreadMemory {
  threadId: number; rss: number; external: number; arrayBuffers: number; heapTotal: number; heapUsed: number;
  physical: number; malloced: number; code: number; spaces: Record<string, { size: number; used: number }>;
}

/** One line per thread: V8 heap committed/used, its young generation, code, and memory outside the heap. */
function threadMemory(memoryDir: string): string {
  const lines: string[] = [];
  for (const name of fs.readdirSync(memoryDir).sort()) {
    let m: ThreadMemory;
    try { m = JSON.parse(fs.readFileSync(path.join(memoryDir, name), 'utf8')) as ThreadMemory; } catch { continue; }
    const f = (n: number) => (n / MiB).toFixed(1);
    const young = (m.spaces.new_space?.size ?? 0) + (m.spaces.new_large_object_space?.size ?? 0);
    lines.push(`    thread ${m.threadId === 0 ? 'main' : m.threadId}: heap committed ${f(m.heapTotal)} (resident ${f(m.physical)}), used ${f(m.heapUsed)}, `
      + `young generation ${f(young)}, code ${f(m.code)}, V8 malloc ${f(m.malloced)}, external ${f(m.external)} (array buffers ${f(m.arrayBuffers)}) MiB`);
  }
  return lines.join('\n');
}

/** wrk across every one of `routes` hosts and their ten paths, on both cores. */
function loadAcross(p: Paths, routes: number, port: number): ReturnType<typeof runWrk> {
  const script = path.join(p.root, `hosts-${routes}.lua`);
  fs.writeFileSync(script, `local i = 0
request = function()
  i = (i + 1) % ${routes}
  return wrk.format("GET", "/p" .. (i % 10) .. "/x", { ["Host"] = "r" .. i .. ".bench.test" })
end
`);
  return runWrk({ url: `http://127.0.0.1:${port}/`, seconds: LOAD_SECONDS, connections: 50, cpus: ALL_CPUS, script });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * RSS of `pid`'s tree: idle, the peak under load (read every 500 ms), and
 * 10, 30 and 60 s after the load ends; `memoryDir`'s per-thread figures
 * at idle and 60 s after.
 */
async function rssOverLoad(p: Paths, pid: number, routes: number, port: number, memoryDir: string): Promise<string> {
  await sleep(3000);
  const idle = treeRssMiB(pid);
  const idleThreads = threadMemory(memoryDir);
  let peak = idle;
  const load = loadAcross(p, routes, port);
  let done = false;
  void load.finally(() => { done = true; });
  while (!done) {
    peak = Math.max(peak, treeRssMiB(pid));
    await sleep(500);
  }
  const result = await load;
  const end = treeRssMiB(pid);
  peak = Math.max(peak, end);
  const after: number[] = [];
  for (const at of [10, 30, 60]) {
    await sleep((at - (after.length === 0 ? 0 : [10, 30, 60][after.length - 1])) * 1000);
    after.push(treeRssMiB(pid));
  }
  return `idle ${idle.toFixed(0)} MiB, under load peak ${peak.toFixed(0)} (at the end ${end.toFixed(0)}), after 10/30/60 s ${after.map((a) => a.toFixed(0)).join('/')} MiB `
    + `(wrk ${LOAD_SECONDS} s x 50 connections over ${routes} hosts: ${result.requests} requests, ${result.errors} failed)\n`
    + `  per thread, idle:\n${idleThreads}\n  per thread, 60 s after:\n${threadMemory(memoryDir)}`;
}

async function memoryOverLoad(p: Paths): Promise<string> {
  const dir = configDir(p, 'cp-f', 5000);
  const memoryDir = fs.mkdtempSync(path.join(p.root, 'mem-f-'));
  const gh = await startGatehouse(p, dir, memoryDir);
  try {
    const report = await rssOverLoad(p, gh.pid as number, 5000, PORTS.ghHttp, memoryDir);
    return `(f) serve, ${WORKERS ?? 'default'} worker(s), 5,000 routes: ${report} (targets for one worker: < 120 MB = 114 MiB idle, < 150 MB = 143 MiB under load, back to idle within 60 s)`;
  } finally {
    await stop(gh);
  }
}

/** `gatehouse proxy` for Gateway bench/bench, fed the 5,000 routes by a config service in this process. */
async function proxyMemory(p: Paths): Promise<string> {
  const dir = configDir(p, 'cp-g', 5000);
  const read = new FileProvider(dir).read();
  const result = translate(buildSnapshot(read.objects.map((o) => o.object)), {
    controllerName: CONTROLLER_NAME,
    addressing: { pool: null, hostAddress: '127.0.0.1', previous: {} },
    endpoints: { ...STANDALONE_ENDPOINT_DEFAULTS },
  });
  const gatewayIR = irForGateway(result.ir, 'bench/bench');
  if (gatewayIR.listeners.length === 0) throw new Error('(g): the translated IR has no listener of bench/bench');
  const ca = createCertificateAuthority('bench CA', 86_400_000);
  const serving = issueServingCertificate(ca, { commonName: 'gatehouse', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validForMs: 86_400_000 });
  const service = await startConfigService({
    address: '127.0.0.1:0', tls: { cert: serving.cert, key: serving.key },
    authenticate: async () => ({ allowed: true, identity: 'bench' }),
    irFor: () => gatewayIR, log: () => {},
  });
  fs.writeFileSync(path.join(p.root, 'ca.crt'), ca.cert);
  fs.writeFileSync(path.join(p.root, 'token'), 'bench\n');
  const memoryDir = fs.mkdtempSync(path.join(p.root, 'mem-g-'));
  const healthPort = PORTS.ghAdmin + 1;
  const proxy = startPinned(ALL_CPUS, process.execPath, ['--import', MEMORY_HOOK, path.join(REPO, 'bin/gatehouse.js'), 'proxy',
    '--controller-address', `127.0.0.1:${service.port}`, '--gateway', 'bench/bench', '--ca-file', path.join(p.root, 'ca.crt'),
    '--token-file', path.join(p.root, 'token'), '--health-address', `127.0.0.1:${healthPort}`, '--log-level', 'warn',
    ...(WORKERS === undefined ? [] : ['--workers', WORKERS])],
  { ...ghEnv, BENCH_THREAD_MEMORY_DIR: memoryDir }, path.join(p.root, 'proxy.log'));
  try {
    await waitUntil('proxy readyz', () => httpOk(`http://127.0.0.1:${healthPort}/readyz`), 120_000);
    const report = await rssOverLoad(p, proxy.pid as number, 5000, PORTS.ghHttp, memoryDir);
    return `(g) gatehouse proxy, ${WORKERS ?? 'default'} worker(s), 5,000 routes: ${report} (target < 100 MB = 95 MiB)`;
  } finally {
    await stop(proxy);
    await service.close();
  }
}

async function main(): Promise<void> {
  ensureTools();
  const busy = await machineBusy();
  if (busy > 0.1) process.stderr.write(`bench: WARNING: the machine is ${(busy * 100).toFixed(0)}% busy before starting; results will be distorted\n`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-cp-bench-'));
  const p = prepareFiles(root);
  const compileCache = path.join(root, 'compile-cache');
  execFileSync(process.execPath, [path.join(REPO, 'scripts/warm-compile-cache.mjs'), compileCache], { stdio: 'ignore' });
  ghEnv = { ...process.env, NODE_COMPILE_CACHE: compileCache };
  const backend = startPinned(ALL_CPUS, 'nginx', ['-c', backendConf(p), '-g', 'daemon off;'], process.env, path.join(root, 'backend.log'));
  const only = process.env.BENCH_CP?.split(',');
  const parts: [string, (p: Paths) => Promise<string>][] = [['a', (q) => newRouteLatency(q)], ['b', bulkAccepted], ['c', rewriteUnderLoad], ['d', rssWith5000],
    ['e', (q) => newRouteLatency(q, 5000, 'e', 50)], ['f', memoryOverLoad], ['g', proxyMemory]];
  try {
    await waitUntil('backend', () => httpOk(`http://127.0.0.1:${PORTS.backend}/`));
    for (const [name, run] of parts) {
      if (only && !only.includes(name)) continue;
      process.stdout.write(`${await run(p)}\n`);
    }
  } finally {
    await stop(backend);
    if (process.env.BENCH_CP_KEEP === '1') process.stdout.write(`kept ${root}\n`);
    else fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
