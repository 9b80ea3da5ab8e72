// npm run bench:control-plane: how fast and how lean the control plane is.
//  (a) with 1,000 route files loaded, time from writing a new route file
//      to its first 200, over 200 additions (p50/p99/max);
//  (b) 1,000 route files written at once: time until every HTTPRoute is
//      Accepted and the listener reports attachedRoutes = 1,000;
//  (c) 500 existing routes rewritten while wrk drives steady load across
//      them: failed requests (must be 0);
//  (d) RSS of the whole gatehouse process tree with 5,000 routes loaded.
// gatehouse runs as `serve` with its default workers. BENCH_CP_ADDITIONS
// changes the number of additions in (a).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Agent, request } from 'undici';
import { ensureTools } from './lib/tools.ts';
import { runWrk } from './lib/wrk.ts';
import { httpOk, machineBusy, startPinned, stop, treeRssMiB, waitUntil } from './lib/procs.ts';
import { backendConf, gatewayYAML, prepareFiles, routeYAML, PORTS, type Paths } from './lib/configs.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const ADDITIONS = Number(process.env.BENCH_CP_ADDITIONS ?? 200);
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

async function startGatehouse(p: Paths, dir: string): Promise<ChildProcess> {
  const child = startPinned(ALL_CPUS, process.execPath, [path.join(REPO, 'bin/gatehouse.js'), 'serve', '--config-dir', dir,
    '--admin-address', `127.0.0.1:${PORTS.ghAdmin}`, '--log-level', 'warn'], process.env, path.join(p.root, 'gatehouse.log'));
  await waitUntil('gatehouse readyz', () => httpOk(`${ADMIN}/readyz`), 120_000);
  return child;
}

const pct = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];

async function newRouteLatency(p: Paths): Promise<string> {
  const dir = configDir(p, 'cp-a', 1000);
  const gh = await startGatehouse(p, dir);
  const agent = new Agent({ connections: 1, pipelining: 0 });
  try {
    const latencies: number[] = [];
    for (let n = 0; n < ADDITIONS; n++) {
      const i = 10_000 + n;
      const started = performance.now();
      writeAtomic(dir, `route-${i}.yaml`, routeYAML(i));
      // Poll until served; bounded so a lost change cannot hang the bench.
      for (;;) {
        const res = await request(`http://127.0.0.1:${PORTS.ghHttp}/p0`, { dispatcher: agent, headers: { host: `r${i}.bench.test` } });
        await res.body.dump();
        if (res.statusCode === 200) break;
        if (performance.now() - started > 10_000) throw new Error(`route ${i} not served after 10 s`);
      }
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    return `(a) new route file -> first 200, ${ADDITIONS} additions with 1,000 routes loaded: p50 ${pct(latencies, 0.5).toFixed(1)} ms, p99 ${pct(latencies, 0.99).toFixed(1)} ms, max ${latencies[latencies.length - 1].toFixed(1)} ms (target p99 <= 50 ms)`;
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

async function main(): Promise<void> {
  ensureTools();
  const busy = await machineBusy();
  if (busy > 0.1) process.stderr.write(`bench: WARNING: the machine is ${(busy * 100).toFixed(0)}% busy before starting; results will be distorted\n`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-cp-bench-'));
  const p = prepareFiles(root);
  const backend = startPinned(ALL_CPUS, 'nginx', ['-c', backendConf(p), '-g', 'daemon off;'], process.env, path.join(root, 'backend.log'));
  const only = process.env.BENCH_CP?.split(',');
  const parts: [string, (p: Paths) => Promise<string>][] = [['a', newRouteLatency], ['b', bulkAccepted], ['c', rewriteUnderLoad], ['d', rssWith5000]];
  try {
    await waitUntil('backend', () => httpOk(`http://127.0.0.1:${PORTS.backend}/`));
    for (const [name, run] of parts) {
      if (only && !only.includes(name)) continue;
      process.stdout.write(`${await run(p)}\n`);
    }
  } finally {
    await stop(backend);
  }
}

await main();
