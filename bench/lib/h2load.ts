// Runs h2load (nghttp2's HTTP/2 load generator) for the HTTP/2 scenarios:
// h2 over TLS by ALPN for https URLs, cleartext h2 with prior knowledge for
// http ones. It reports no percentiles, so p99 is read from its per-request
// log. Its own CPU time is measured too (through the shell's `times`),
// since on two cores the load side may well be the limit.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import type { WrkResult } from './wrk.ts';

export interface H2loadOptions {
  url: string;
  seconds: number;
  /** TCP connections (h2load clients). */
  connections: number;
  /** Streams in flight on each connection. */
  streams: number;
  headers?: string[];
  /** CPU list for taskset, e.g. "0". */
  cpus: string;
}

export interface H2loadResult extends WrkResult {
  /** CPU the load generator used during the run, in cores. */
  loadCpu: number;
}

/** h2load for `opts.seconds` (after a 1 s warm-up), bounded by a hard timeout. */
export function runH2load(opts: H2loadOptions): Promise<H2loadResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-h2load-'));
  const log = path.join(dir, 'requests.log');
  const args = ['taskset', '-c', opts.cpus, 'h2load', '-t1', `-c${opts.connections}`, `-m${opts.streams}`,
    '--warm-up-time=1', `-D${opts.seconds}`, `--log-file=${log}`];
  for (const h of opts.headers ?? []) args.push('-H', h);
  args.push(opts.url);
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve, reject) => {
    // `times` prints the shell's and then its children's user and system time.
    const child = spawn('sh', ['-c', `${quoted}; times`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const kill = setTimeout(() => child.kill('SIGKILL'), (opts.seconds + 20) * 1000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(kill);
      try {
        const parsed = parseH2load(out, fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '', opts.seconds);
        if (parsed === null) reject(new Error(`cannot read h2load output:\n${out}`));
        else resolve(parsed);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

function seconds(value: string): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(value);
  return m === null ? NaN : Number(m[1]) * 60 + Number(m[2]);
}

/** Reads req/s, errors and the children's CPU from h2load's report, p99 from its request log. */
export function parseH2load(out: string, requestLog: string, durationSeconds: number): H2loadResult | null {
  const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const requests = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const times = out.trim().split('\n').slice(-2);
  if (rps === null || requests === null || status === null || times.length !== 2) return null;
  const [user, system] = times[1].trim().split(/\s+/).map(seconds);
  // Third column: microseconds from the request's start to the end of its response.
  const latencies: number[] = [];
  for (const line of requestLog.split('\n')) {
    const cols = line.split('\t');
    if (cols.length >= 3) latencies.push(Number(cols[2]) / 1000);
  }
  latencies.sort((a, b) => a - b);
  const p99ms = latencies.length === 0 ? NaN : latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))];
  const failed = Number(requests[4]) + Number(requests[5]) + Number(requests[6]);
  const non2xx = Number(status[2]) + Number(status[3]) + Number(status[4]);
  return {
    rps: Number(rps[1]),
    requests: Number(requests[3]),
    p99ms,
    errors: failed + non2xx,
    // Warm-up included: h2load works through it too.
    loadCpu: (user + system) / (durationSeconds + 1),
  };
}

/** One HTTP/2 request answered 200 (h2c with prior knowledge, or h2 over TLS). */
export function h2Ok(url: string, headers: Record<string, string> = {}): Promise<boolean> {
  return new Promise((resolve) => {
    const u = new URL(url);
    const session = http2.connect(u.origin, { rejectUnauthorized: false });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      session.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 2000);
    session.on('error', () => done(false));
    const req = session.request({ ':path': u.pathname + u.search, ...headers });
    req.on('response', (h) => {
      req.resume();
      req.on('end', () => done(h[':status'] === 200));
    });
    req.on('error', () => done(false));
    req.end();
  });
}
