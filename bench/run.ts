// npm run bench: Gatehouse and nginx (the reference reverse proxy) side by
// side against the same nginx backend (answering from memory), proxy pinned
// to one core, the load generator (wrk for HTTP/1.1, h2load for HTTP/2) and
// the backend on the other; the two proxies alternate, each scenario is
// repeated, and medians and ratios are printed (and saved in bench/results/).
// A ratio only counts when the reference is saturated: before each HTTP/1.1
// scenario the load is raised (connections, then a second wrk thread) until
// nginx keeps >= 95% of its core busy; when no level gets there the row is
// marked load-limited, with how far nginx fell short. Environment:
// BENCH_SECONDS (10), BENCH_REPS (3), BENCH_SCENARIOS (comma list),
// BENCH_CONNECTIONS (50), and for HTTP/2 BENCH_H2_CONNECTIONS (10) x
// BENCH_H2_STREAMS (5) in flight.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { ensureTools } from './lib/tools.ts';
import { runWrk, type WrkResult } from './lib/wrk.ts';
import { h2Ok, runH2load } from './lib/h2load.ts';
import { httpOk, machineBusy, startPinned, stop, treeCpuSeconds, treeRssMiB, waitUntil, watchCore } from './lib/procs.ts';
import { backendConf, gatehouseConfigDir, nginxProxyConf, prepareFiles, PORTS, type Paths } from './lib/configs.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
/** HTTP/2: fewer connections, several streams in flight on each (as many requests in flight as HTTP/1.1's 50). */
const H2_CONNECTIONS = Number(process.env.BENCH_H2_CONNECTIONS ?? 10);
const H2_STREAMS = Number(process.env.BENCH_H2_STREAMS ?? 5);
const WARMUP_SECONDS = 3;
/** A proxy at this share of its core or more is saturated: the load side was not its limit. */
const SATURATED = 0.95;
/** How hard wrk pushes; tried in order until nginx is saturated. */
interface LoadLevel { connections: number; threads: number }
const LOAD_LEVELS: LoadLevel[] = [
  { connections: CONNECTIONS, threads: 1 },
  { connections: CONNECTIONS * 2, threads: 2 },
  { connections: CONNECTIONS * 4, threads: 2 },
];
const CALIBRATION_SECONDS = 4;
/** The load generator and the backend share core 0; the proxy has core 1. */
const LOAD_CPU = '0';
const PROXY_CPU = '1';
const REPO = path.resolve(import.meta.dirname, '..');

interface Scenario {
  name: string;
  what: string;
  /** 'base' or 'routes1k': which generated config the proxies run. */
  config: 'base' | 'routes1k';
  https: boolean;
  path: string;
  headers: string[];
  /** Proxy workers, and the CPUs the proxy is pinned to. */
  workers: number;
  proxyCpus: string;
  /** HTTP/2 from the client (h2 by ALPN when https, else h2c with prior knowledge); HTTP/1.1 otherwise. */
  h2?: boolean;
}

const SCENARIOS: Scenario[] = [
  { name: 'small', what: '64 B body, HTTP keep-alive', config: 'base', https: false, path: '/', headers: [], workers: 1, proxyCpus: PROXY_CPU },
  { name: 'body16k', what: '16 KiB body, HTTP keep-alive', config: 'base', https: false, path: '/big', headers: [], workers: 1, proxyCpus: PROXY_CPU },
  { name: 'https', what: '64 B body, HTTPS keep-alive', config: 'base', https: true, path: '/', headers: [], workers: 1, proxyCpus: PROXY_CPU },
  { name: 'routes1k', what: '64 B body, 1,000 HTTPRoutes x 10 rules, host+path lookup', config: 'routes1k', https: false, path: '/p9/x', headers: ['Host: r777.bench.test'], workers: 1, proxyCpus: PROXY_CPU },
  { name: 'headers', what: '64 B body, 10 header-match rules, last one matches', config: 'base', https: false, path: '/', headers: ['Host: headers.bench.test', 'x-bench-tenant: tenant-9'], workers: 1, proxyCpus: PROXY_CPU },
  { name: 'small-2w', what: '64 B body, 2 proxy workers on both cores (shared with wrk and backend)', config: 'base', https: false, path: '/', headers: [], workers: 2, proxyCpus: '0,1' },
  { name: 'h2', what: `64 B body, HTTP/2 over TLS (ALPN), ${H2_CONNECTIONS} connections x ${H2_STREAMS} streams`, config: 'base', https: true, path: '/', headers: [], workers: 1, proxyCpus: PROXY_CPU, h2: true },
  { name: 'h2c', what: `64 B body, cleartext HTTP/2 (prior knowledge), ${H2_CONNECTIONS} connections x ${H2_STREAMS} streams`, config: 'base', https: false, path: '/', headers: [], workers: 1, proxyCpus: PROXY_CPU, h2: true },
];

type ProxyName = 'gatehouse' | 'nginx';
interface Sample extends WrkResult {
  rssMiB: number | null;
  /** Proxy CPU use during the measurement, in cores (1.0 = one core busy). */
  cpu: number;
  /** The load generator's CPU use, in cores, where measured (h2load). */
  loadCpu: number | null;
  /** Share of the load core busy during the run (load generator + backend + anything else there). */
  loadCore: number;
}

/** Whether this revision of gatehouse has `serve --workers` (so the bench also runs on older ones). */
const HAS_WORKERS_FLAG = execFileSync(process.execPath, [path.join(REPO, 'bin/gatehouse.js'), '--help'], { encoding: 'utf8' }).includes('--workers');

async function startGatehouse(p: Paths, s: Scenario): Promise<ChildProcess> {
  const dir = gatehouseConfigDir(p, s.config, s.config === 'routes1k');
  const args = [path.join(REPO, 'bin/gatehouse.js'), 'serve', '--config-dir', dir,
    '--admin-address', `127.0.0.1:${PORTS.ghAdmin}`, '--log-level', 'warn'];
  if (HAS_WORKERS_FLAG) args.push('--workers', String(s.workers));
  else if (s.workers !== 1) throw new Error('this gatehouse has no --workers');
  const child = startPinned(s.proxyCpus, process.execPath, args, process.env, path.join(p.root, 'gatehouse.log'));
  await waitUntil('gatehouse readyz', () => httpOk(`http://127.0.0.1:${PORTS.ghAdmin}/readyz`), 60_000);
  return child;
}

/**
 * nginx pinned like Gatehouse. On a loaded machine the previous run's
 * ports are now and then not yet free (nginx gives up binding after about
 * 2.5 s and exits): it is started again, up to 5 times.
 */
async function startNginx(p: Paths, s: Scenario): Promise<ChildProcess> {
  const conf = nginxProxyConf(p, `${s.config}-${s.workers}`, s.config === 'routes1k', s.workers);
  for (let attempt = 1; ; attempt++) {
    const child = startPinned(s.proxyCpus, 'nginx', ['-c', conf, '-g', 'daemon off;'], process.env, path.join(p.root, 'nginx.log'));
    const exited = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 3_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!exited) return child;
    if (attempt === 5) throw new Error(`nginx exited at start ${attempt} times; see ${path.join(p.root, 'nginx.log')}`);
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

function url(proxy: ProxyName, s: Scenario): string {
  const port = proxy === 'gatehouse'
    ? (s.https ? PORTS.ghHttps : PORTS.ghHttp)
    : s.h2 ? (s.https ? PORTS.ngH2 : PORTS.ngH2c) : (s.https ? PORTS.ngHttps : PORTS.ngHttp);
  return `${s.https ? 'https' : 'http'}://127.0.0.1:${port}${s.path}`;
}

/** One measurement's load: wrk for HTTP/1.1, h2load for HTTP/2. */
async function load(s: Scenario, level: LoadLevel, target: string, seconds: number): Promise<WrkResult & { loadCpu: number | null }> {
  if (s.h2) return runH2load({ url: target, seconds, connections: H2_CONNECTIONS, streams: H2_STREAMS, headers: s.headers, cpus: LOAD_CPU });
  return { ...(await runWrk({ url: target, seconds, connections: level.connections, threads: level.threads, headers: s.headers, cpus: LOAD_CPU })), loadCpu: null };
}

async function measure(p: Paths, proxy: ProxyName, s: Scenario, level: LoadLevel, seconds = SECONDS): Promise<Sample> {
  const child = proxy === 'gatehouse' ? await startGatehouse(p, s) : await startNginx(p, s);
  try {
    const target = url(proxy, s);
    const headers = Object.fromEntries(s.headers.map((h) => { const i = h.indexOf(':'); return [h.slice(0, i), h.slice(i + 1).trim()]; }));
    if (s.https) process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    await waitUntil(`${proxy} serving ${target}`, () => (s.h2 ? h2Ok(target, headers) : httpOk(target, headers)), 30_000);
    await load(s, level, target, WARMUP_SECONDS);
    // The proxy's CPU over the run says whether it or the load side was the limit.
    const cpuBefore = treeCpuSeconds(child.pid as number);
    const loadCore = watchCore(LOAD_CPU);
    const t0 = performance.now();
    const result = await load(s, level, target, seconds);
    const cpu = (treeCpuSeconds(child.pid as number) - cpuBefore) / ((performance.now() - t0) / 1000);
    const rssMiB = proxy === 'gatehouse' ? treeRssMiB(child.pid as number) : null;
    return { ...result, rssMiB, cpu, loadCore: loadCore() };
  } finally {
    await stop(child);
  }
}

/** Whether a row's ratio counts, and why not. */
function verdict(r: { sharesLoadCore: boolean; referenceSaturated: boolean; nginxCpu: number }): string {
  if (r.sharesLoadCore) return 'n/a: the proxy shares the load core';
  if (r.referenceSaturated) return 'yes';
  return `no: load-limited, nginx used ${(r.nginxCpu * 100).toFixed(0)}% of its core`;
}

interface Calibration { level: LoadLevel; nginxCpu: number; saturated: boolean }

/**
 * The lowest load level at which nginx keeps its core busy; when none does,
 * the level where it came closest (the row is then load-limited). HTTP/2
 * scenarios and those whose proxy shares the load core are not calibrated.
 */
async function calibrate(p: Paths, s: Scenario): Promise<Calibration> {
  const first = LOAD_LEVELS[0];
  if (s.h2 || s.proxyCpus.split(',').includes(LOAD_CPU)) return { level: first, nginxCpu: NaN, saturated: false };
  let best: Calibration | null = null;
  for (const level of LOAD_LEVELS) {
    const r = await measure(p, 'nginx', s, level, CALIBRATION_SECONDS);
    process.stdout.write(`  calibrate ${s.name.padEnd(9)} ${String(level.connections).padStart(3)} conn x ${level.threads} thread  nginx cpu ${r.cpu.toFixed(2)}  load core ${r.loadCore.toFixed(2)}  ${r.rps.toFixed(0)} req/s\n`);
    const c = { level, nginxCpu: r.cpu, saturated: r.cpu >= SATURATED };
    if (c.saturated) return c;
    if (best === null || c.nginxCpu > best.nginxCpu) best = c;
  }
  return best as Calibration;
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

async function main(): Promise<void> {
  ensureTools();
  const only = process.env.BENCH_SCENARIOS?.split(',').map((x) => x.trim());
  const scenarios = (only ? SCENARIOS.filter((s) => only.includes(s.name)) : SCENARIOS).filter((s) => HAS_WORKERS_FLAG || s.workers === 1);
  // The numbers mean nothing if something else is using the cores.
  const busy = await machineBusy();
  if (busy > 0.1) process.stderr.write(`bench: WARNING: the machine is ${(busy * 100).toFixed(0)}% busy before starting; results will be distorted (see top)\n`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
  const paths = prepareFiles(root);
  const backend = startPinned(LOAD_CPU, 'nginx', ['-c', backendConf(paths), '-g', 'daemon off;'], process.env, path.join(root, 'backend.log'));
  const samples = new Map<string, Sample[]>();
  const calibrations = new Map<string, Calibration>();
  process.stdout.write(`bench: ${os.cpus().length} cores (${os.cpus()[0]?.model}), ${SECONDS}s x ${REPS} runs, ${CONNECTIONS} connections, work dir ${root}\n`);
  try {
    await waitUntil('backend', () => httpOk(`http://127.0.0.1:${PORTS.backend}/`));
    for (const s of scenarios) calibrations.set(s.name, await calibrate(paths, s));
    for (let rep = 0; rep < REPS; rep++) {
      for (const s of scenarios) {
        // Alternate which proxy goes first, so neither always gets the warmer machine.
        const order: ProxyName[] = rep % 2 === 0 ? ['gatehouse', 'nginx'] : ['nginx', 'gatehouse'];
        for (const proxy of order) {
          const r = await measure(paths, proxy, s, (calibrations.get(s.name) as Calibration).level);
          const key = `${s.name}/${proxy}`;
          samples.set(key, [...(samples.get(key) ?? []), r]);
          process.stdout.write(`  run ${rep + 1} ${s.name.padEnd(9)} ${proxy.padEnd(9)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99ms.toFixed(2).padStart(7)} ms` +
            `  cpu ${r.cpu.toFixed(2)}  load core ${r.loadCore.toFixed(2)}${r.loadCpu !== null ? `  load cpu ${r.loadCpu.toFixed(2)}` : ''}${r.errors ? `  errors ${r.errors}` : ''}${r.rssMiB !== null ? `  rss ${r.rssMiB.toFixed(0)} MiB` : ''}\n`);
        }
      }
    }
  } finally {
    await stop(backend);
  }
  const rows = scenarios.map((s) => {
    const g = samples.get(`${s.name}/gatehouse`) ?? [];
    const n = samples.get(`${s.name}/nginx`) ?? [];
    const gRps = median(g.map((x) => x.rps)), nRps = median(n.map((x) => x.rps));
    const gP99 = median(g.map((x) => x.p99ms)), nP99 = median(n.map((x) => x.p99ms));
    const cal = calibrations.get(s.name) as Calibration;
    const nginxCpu = median(n.map((x) => x.cpu));
    return { scenario: s.name, what: s.what, runs: g.length, gatehouseRps: Math.round(gRps), nginxRps: Math.round(nRps), rpsRatio: gRps / nRps,
      gatehouseP99Ms: gP99, nginxP99Ms: nP99, p99Ratio: gP99 / nP99, gatehouseRssMiB: Math.round(median(g.map((x) => x.rssMiB ?? 0))),
      gatehouseCpu: median(g.map((x) => x.cpu)), nginxCpu,
      loadCore: { gatehouse: median(g.map((x) => x.loadCore)), nginx: median(n.map((x) => x.loadCore)) },
      load: cal.level,
      h2: s.h2 === true,
      sharesLoadCore: s.proxyCpus.split(',').includes(LOAD_CPU),
      // Counts only when the reference kept its core busy in the measured runs (not only in calibration).
      referenceSaturated: !s.proxyCpus.split(',').includes(LOAD_CPU) && nginxCpu >= SATURATED,
      // Requests per CPU-second: what each proxy gets out of the core it used.
      gatehouseRpsPerCore: median(g.map((x) => x.rps / x.cpu)), nginxRpsPerCore: median(n.map((x) => x.rps / x.cpu)),
      loadCpu: s.h2 ? { gatehouse: median(g.map((x) => x.loadCpu ?? 0)), nginx: median(n.map((x) => x.loadCpu ?? 0)) } : null,
      errors: [...g, ...n].reduce((a, x) => a + x.errors, 0) };
  });
  const lines = [
    `| scenario | load | Gatehouse req/s | nginx req/s | ratio | Gatehouse p99 | nginx p99 | ratio | Gatehouse RSS | proxy CPU G / n | load core busy G / n | counts |`,
    `| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |`,
    ...rows.map((r) => `| ${r.scenario} | ${r.h2 ? `${H2_CONNECTIONS}c x ${H2_STREAMS} streams` : `${r.load.connections}c x ${r.load.threads}t`} | ${r.gatehouseRps} | ${r.nginxRps} | ${r.rpsRatio.toFixed(2)} | ${r.gatehouseP99Ms.toFixed(2)} ms | ${r.nginxP99Ms.toFixed(2)} ms | ${r.p99Ratio.toFixed(2)} | ${r.gatehouseRssMiB} MiB | ${r.gatehouseCpu.toFixed(2)} / ${r.nginxCpu.toFixed(2)} | ${r.loadCore.gatehouse.toFixed(2)} / ${r.loadCore.nginx.toFixed(2)} | ${verdict(r)} |`),
    '', `proxy CPU: cores the proxy's process tree kept busy. A ratio counts only when nginx used >= ${SATURATED} of its pinned core (it was the limit, not wrk and the backend on core ${LOAD_CPU}); "load core busy" is core ${LOAD_CPU}'s busy share in the same runs. Load: wrk connections x threads, the lowest level at which nginx saturated in calibration (or the closest).`,
  ];
  const h2Rows = rows.filter((r) => r.loadCpu !== null);
  if (h2Rows.length !== 0) {
    lines.push('', `HTTP/2 rows: h2load, ${H2_CONNECTIONS} connections x ${H2_STREAMS} streams; p99 from its request log. Its CPU (cores, on the core it shares with the backend), with Gatehouse / with nginx: ` +
      h2Rows.map((r) => `${r.scenario} ${r.loadCpu?.gatehouse.toFixed(2)} / ${r.loadCpu?.nginx.toFixed(2)}`).join(', ') + '. Near 1.0 less the backend\'s share means the load side was the limit.');
  }
  const small = rows.find((r) => r.scenario === 'small'), k = rows.find((r) => r.scenario === 'routes1k');
  if (small && k) lines.push('', `1,000 routes vs 1 route (Gatehouse req/s): ${(k.gatehouseRps / small.gatehouseRps).toFixed(2)}`);
  const two = rows.find((r) => r.scenario === 'small-2w');
  if (small && two) lines.push(`2 workers vs 1 (Gatehouse req/s): ${(two.gatehouseRps / small.gatehouseRps).toFixed(2)}; nginx 2 vs 1: ${(two.nginxRps / small.nginxRps).toFixed(2)}`);
  const errors = rows.reduce((a, r) => a + r.errors, 0);
  if (errors) lines.push(`errors (non-2xx or socket) across all runs: ${errors}`);
  process.stdout.write(`\nmedians of ${REPS} alternating runs, ${SECONDS}s each:\n${lines.join('\n')}\n`);
  const out = path.join(REPO, 'bench/results');
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, seconds: SECONDS, reps: REPS, connections: CONNECTIONS, h2Connections: H2_CONNECTIONS, h2Streams: H2_STREAMS, rows, samples: Object.fromEntries(samples) }, null, 2) + '\n');
  process.stdout.write(`saved ${path.relative(REPO, file)}\n`);
}

await main();
