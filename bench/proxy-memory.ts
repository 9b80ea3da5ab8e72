// node bench/proxy-memory.ts [WORKERS] [GATEHOUSE_BIN]: where an idle
// `gatehouse proxy` with 5,000 routes (bench/bench, as control-plane.ts
// (g) configures it) keeps its memory, 4 s after it is ready: VmRSS and
// its mappings by kind from /proc/PID/smaps. No load: for the what-ifs of
// issue 13 item 3 (bench/RESULTS.md), e.g. a type-stripped copy made by
// lib/strip-types.mjs as GATEHOUSE_BIN, or GLIBC_TUNABLES= in the
// environment (glibc's own trimming instead of bin/gatehouse.js's). Node's
// compile cache (bin/gatehouse.js) matters here: a thread that strips a
// .ts file loads the stripper, ~16 MiB, and the cache is written when the
// process exits. So the proxy is stopped with SIGTERM, and
// NODE_COMPILE_CACHE=<an empty directory> gives a cold start, a second
// run with the same directory a warm one.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { gatewayYAML, prepareFiles, routeYAML } from './lib/configs.ts';
import { buildSnapshot } from '../src/api/build-snapshot.ts';
import { CONTROLLER_NAME } from '../src/control/standalone.ts';
import { irForGateway } from '../src/ir/per-gateway.ts';
import { STANDALONE_ENDPOINT_DEFAULTS } from '../src/net/endpoint-policy.ts';
import { FileProvider } from '../src/providers/file/provider.ts';
import { createCertificateAuthority, issueServingCertificate } from '../src/providers/kubernetes/certificate-authority.ts';
import { startConfigService } from '../src/providers/kubernetes/config-service.ts';
import { translate } from '../src/translate/index.ts';

const WORKERS = process.argv[2] ?? '1';
const BIN = process.argv[3] ?? path.join(import.meta.dirname, '../bin/gatehouse.js');
const MiB = 1024;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-proxy-memory-'));
const p = prepareFiles(root);
const dir = path.join(root, 'config');
fs.mkdirSync(dir);
fs.writeFileSync(path.join(dir, '00-gateway.yaml'), gatewayYAML(p));
for (let i = 0; i < 5000; i++) fs.writeFileSync(path.join(dir, `route-${i}.yaml`), routeYAML(i));
const result = translate(buildSnapshot(new FileProvider(dir).read().objects.map((o) => o.object)), {
  controllerName: CONTROLLER_NAME, addressing: { pool: null, hostAddress: '127.0.0.1', previous: {} }, endpoints: { ...STANDALONE_ENDPOINT_DEFAULTS },
});
const gatewayIR = irForGateway(result.ir, 'bench/bench');
const ca = createCertificateAuthority('bench CA', 86_400_000);
const serving = issueServingCertificate(ca, { commonName: 'gatehouse', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validForMs: 86_400_000 });
const service = await startConfigService({
  address: '127.0.0.1:0', tls: { cert: serving.cert, key: serving.key },
  authenticate: async () => ({ allowed: true, identity: 'bench' }), irFor: () => gatewayIR, log: () => {},
});
fs.writeFileSync(path.join(root, 'ca.crt'), ca.cert);
fs.writeFileSync(path.join(root, 'token'), 'bench\n');
const child = spawn(process.execPath, [BIN, 'proxy', '--controller-address', `127.0.0.1:${service.port}`, '--gateway', 'bench/bench',
  '--ca-file', path.join(root, 'ca.crt'), '--token-file', path.join(root, 'token'), '--health-address', '127.0.0.1:0', '--log-level', 'info',
  '--workers', WORKERS], { stdio: ['ignore', 'pipe', 'inherit'] });
try {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c) => { out += c; if (out.includes('ready')) resolve(); });
    child.once('exit', (code) => reject(new Error(`proxy exited (${code}): ${out}`)));
  });
  await new Promise((r) => setTimeout(r, 4000));
  // bin/gatehouse.js re-executes itself in place (execve): the pid is the proxy's.
  const kinds: Record<string, number> = {};
  let kind = '';
  for (const line of fs.readFileSync(`/proc/${child.pid}/smaps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      const size = parseInt(m[2]!, 16) - parseInt(m[1]!, 16);
      const name = m[3] ?? '';
      kind = name === '' ? (size >= 1 << 20 ? 'anonymous, >= 1 MiB (thread malloc arenas, wasm memory)' : 'anonymous, < 1 MiB (V8 heap pages)')
        : name === '[heap]' ? '[heap] (the main malloc arena)' : name.includes('.so') ? 'shared libraries' : name.endsWith('/node') ? 'node binary' : name;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) kinds[kind] = (kinds[kind] ?? 0) + Number(rss[1]);
  }
  const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const vm = (key: string) => `${key} ${(Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)![1]) / MiB).toFixed(1)} MiB`;
  process.stdout.write(`gatehouse proxy, --workers ${WORKERS}, 5,000 routes, idle: ${vm('VmRSS')} (${vm('RssAnon')}, ${vm('RssFile')})\n`);
  for (const [k, kb] of Object.entries(kinds).sort((a, b) => b[1] - a[1])) if (kb >= 512) process.stdout.write(`  ${(kb / MiB).toFixed(1).padStart(6)} MiB  ${k}\n`);
} finally {
  // Stopped, not killed: it writes the compile cache on its way out.
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
  await service.close();
  fs.rmSync(root, { recursive: true, force: true });
}
