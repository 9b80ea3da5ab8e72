// Runs wrk (bounded by its own duration plus a hard timeout) and reads
// requests/s, p99 latency and errors from its report.
import { spawn } from 'node:child_process';

export interface WrkResult {
  rps: number;
  requests: number;
  p99ms: number;
  /** Non-2xx/3xx answers plus socket errors. */
  errors: number;
}

export interface WrkOptions {
  url: string;
  seconds: number;
  connections: number;
  /** wrk threads (default 1). */
  threads?: number;
  headers?: string[];
  /** CPU list for taskset, e.g. "0". */
  cpus: string;
  /** A wrk Lua script (e.g. to vary the request). */
  script?: string;
}

export function runWrk(opts: WrkOptions): Promise<WrkResult> {
  const args = ['-c', opts.cpus, 'wrk', `-t${opts.threads ?? 1}`, `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', '--timeout', '5s'];
  for (const h of opts.headers ?? []) args.push('-H', h);
  if (opts.script !== undefined) args.push('-s', opts.script);
  args.push(opts.url);
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const kill = setTimeout(() => child.kill('SIGKILL'), (opts.seconds + 15) * 1000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(kill);
      const parsed = parseWrk(out);
      if (parsed === null) reject(new Error(`cannot read wrk output:\n${out}`));
      else resolve(parsed);
    });
  });
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  switch (unit) {
    case 'us': return v / 1000;
    case 'ms': return v;
    case 's': return v * 1000;
    case 'm': return v * 60_000;
    default: return NaN;
  }
}

export function parseWrk(out: string): WrkResult | null {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
  const total = /(\d+) requests in/.exec(out);
  if (rps === null || p99 === null || total === null) return null;
  let errors = 0;
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  if (non2xx !== null) errors += Number(non2xx[1]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  if (sock !== null) errors += Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]);
  return { rps: Number(rps[1]), requests: Number(total[1]), p99ms: toMs(p99[1], p99[2]), errors };
}
