// node bench/cpu-ab.ts BEFORE_DIR AFTER_DIR: Gatehouse's CPU per HTTP/1.1
// request in two checkouts (each with its own bin/gatehouse.js and
// node_modules), alternating, for a fixed number of requests from
// `h2load --h1`, so the figure does not depend on how fast the load side
// was. It answers "did this change make requests cheaper or dearer",
// which `npm run bench` cannot on a machine whose load side is the limit.
// Either side may be the word `nginx`: the reference proxy (the bench's
// nginx.conf, one worker) on the same core, so `node bench/cpu-ab.ts nginx .`
// reads Gatehouse's CPU per request against nginx's, load side aside.
// Environment: N (requests per measurement, 100000), ROUNDS (4),
// SCEN (small,body16k,https; also h2c and h2: small bodies over HTTP/2;
// and grpc: a unary gRPC call over h2c, through a GRPCRoute on Gatehouse
// and `grpc_pass` on nginx, to a gRPC backend in bench/lib/grpc-backend.ts
// on the load core, started only for this scenario; before each side's
// grpc measurement one real gRPC call (@grpc/grpc-js) through that proxy
// must end with status OK and the expected reply, since h2load counts
// HTTP 200s and not gRPC statuses).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ensureTools } from './lib/tools.ts';
import { backendConf, gatehouseConfigDir, nginxProxyConf, prepareFiles, PORTS } from './lib/configs.ts';
import { GRPC_HOST, GRPC_PATH, GRPC_REQUEST, grpcCheck, grpcFrame } from './lib/grpc-backend.ts';
import { httpOk, startPinned, stop, treeCpuSeconds, waitUntil } from './lib/procs.ts';

const [before, after] = process.argv.slice(2).map((d) => (d === 'nginx' ? d : path.resolve(d)));
if (before === undefined || after === undefined) {
  process.stderr.write('usage: node bench/cpu-ab.ts BEFORE_DIR AFTER_DIR\n');
  process.exit(2);
}
const N = Number(process.env.N ?? 100_000);
const ROUNDS = Number(process.env.ROUNDS ?? 4);
const scenarios = (process.env.SCEN ?? 'small,body16k,https').split(',');
const sides = { before, after };

ensureTools();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-cpuab-'));
const p = prepareFiles(root);
const backend = startPinned('0', 'nginx', ['-c', backendConf(p), '-g', 'daemon off;'], process.env, path.join(root, 'backend.log'));
await waitUntil('backend', () => httpOk(`http://127.0.0.1:${PORTS.backend}/`));
const grpcBody = path.join(root, 'grpc-request.bin');
const grpcBackend = scenarios.includes('grpc')
  ? startPinned('0', process.execPath, [fileURLToPath(new URL('./lib/grpc-backend.ts', import.meta.url)), String(PORTS.grpcBackend)],
    process.env, path.join(root, 'grpc-backend.log'))
  : undefined;
const dir = gatehouseConfigDir(p, 'base', false);
const nginxConf = nginxProxyConf(p, 'base-1', false, 1);
const results: Record<string, number[]> = {};
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

/**
 * HTTP/1.1: 50 connections, one request each in flight; HTTP/2 (h2c, h2):
 * 10 connections x 5 streams, as `npm run bench` runs them; gRPC: the h2c
 * shape, each request a POST of one length-prefixed message.
 */
function h2load(url: string, n: number, h2: boolean, grpc: boolean): string {
  const shape = h2 ? ['-c', '10', '-m', '5'] : ['--h1', '-c', '50'];
  const call = grpc ? ['-d', grpcBody, '-H', `:authority: ${GRPC_HOST}`, '-H', 'content-type: application/grpc', '-H', 'te: trailers'] : [];
  return spawnSync('taskset', ['-c', '0', 'h2load', ...shape, ...call, '-n', String(n), url], { encoding: 'utf8' }).stdout;
}

try {
  if (grpcBackend !== undefined) {
    fs.writeFileSync(grpcBody, grpcFrame(GRPC_REQUEST));
    await waitUntil('grpc backend', () => grpcCheck(`127.0.0.1:${PORTS.grpcBackend}`).then(() => true));
  }
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which side goes first, so neither always gets the warmer machine.
    for (const side of (r % 2 === 0 ? ['before', 'after'] : ['after', 'before']) as (keyof typeof sides)[]) {
      const nginx = sides[side] === 'nginx';
      const gh = nginx
        ? startPinned('1', 'nginx', ['-c', nginxConf, '-g', 'daemon off;'], process.env, path.join(root, `${side}.log`))
        : startPinned('1', process.execPath, [path.join(sides[side], 'bin/gatehouse.js'), 'serve', '--config-dir', dir,
          '--admin-address', `127.0.0.1:${PORTS.ghAdmin}`, '--log-level', 'warn', '--workers', '1'], process.env, path.join(root, `${side}.log`));
      try {
        if (!nginx) await waitUntil('gatehouse', () => httpOk(`http://127.0.0.1:${PORTS.ghAdmin}/readyz`), 60_000);
        for (const s of scenarios) {
          const grpc = s === 'grpc';
          const h2 = s === 'h2' || s === 'h2c' || grpc;
          // nginx serves HTTP/2 on listeners of its own; Gatehouse on the same ones (h2c by prior knowledge, h2 by ALPN).
          const [http, https] = nginx ? (h2 ? [PORTS.ngH2c, PORTS.ngH2] : [PORTS.ngHttp, PORTS.ngHttps]) : [PORTS.ghHttp, PORTS.ghHttps];
          const url = s === 'https' || s === 'h2' ? `https://127.0.0.1:${https}/`
            : `http://127.0.0.1:${http}${grpc ? GRPC_PATH : s === 'body16k' ? '/big' : '/'}`;
          // nginx's HTTP/2 listeners speak nothing else: readiness is asked on its HTTP/1.1 one.
          const ready = h2 && nginx ? `http://127.0.0.1:${PORTS.ngHttp}/` : grpc ? `http://127.0.0.1:${http}/` : url;
          await waitUntil('serving', () => httpOk(ready), 30_000);
          // One real call first: a proxy that loses the status trailer fails here, not silently in h2load's count.
          if (grpc) await grpcCheck(`127.0.0.1:${http}`);
          h2load(url, N / 5, h2, grpc); // warm-up: JIT, pools
          const cpu0 = treeCpuSeconds(gh.pid as number);
          const out = h2load(url, N, h2, grpc);
          const us = ((treeCpuSeconds(gh.pid as number) - cpu0) * 1e6) / N;
          const ok = Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
          if (ok !== N) throw new Error(`${side} ${s}: ${ok} of ${N} requests succeeded:\n${out}`);
          (results[`${s}/${side}`] ??= []).push(us);
          process.stdout.write(`round ${r + 1} ${side.padEnd(6)} ${s.padEnd(8)} ${us.toFixed(1)} us CPU/request (${/([\d.]+) req\/s/.exec(out)?.[1]} req/s, load ${os.loadavg()[0].toFixed(1)})\n`);
        }
      } finally {
        await stop(gh);
      }
    }
  }
} finally {
  if (grpcBackend !== undefined) await stop(grpcBackend);
  await stop(backend);
  fs.rmSync(root, { recursive: true, force: true });
}
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
for (const s of scenarios) {
  const a = results[`${s}/before`], b = results[`${s}/after`];
  process.stdout.write(`${s}: before ${median(a).toFixed(1)} us/req, after ${median(b).toFixed(1)} us/req, after/before ${(median(b) / median(a)).toFixed(3)}` +
    `  (before: ${a.map((x) => x.toFixed(1)).join(' ')}; after: ${b.map((x) => x.toFixed(1)).join(' ')})\n`);
}
