// Child processes of the benchmark: started pinned with taskset, stopped
// by their own pid, and measured (RSS of the whole process tree).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

const live = new Set<ChildProcess>();
let trapped = false;

/** Interrupting the benchmark stops what it started, not just itself. */
function trapSignals(): void {
  if (trapped) return;
  trapped = true;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      for (const child of live) child.kill('SIGTERM');
      process.exit(130);
    });
  }
}

export function startPinned(cpus: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, logFile?: string): ChildProcess {
  trapSignals();
  const out = logFile === undefined ? 'ignore' : fs.openSync(logFile, 'a');
  const child = spawn('taskset', ['-c', cpus, cmd, ...args], { stdio: ['ignore', out, out], env });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export async function stop(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function childrenOf(): Map<number, number[]> {
  const kids = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // ppid is the 2nd field after the parenthesised command name.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = kids.get(ppid) ?? [];
      list.push(Number(name));
      kids.set(ppid, list);
    } catch { /* gone */ }
  }
  return kids;
}

function descendants(pid: number): number[] {
  const kids = childrenOf();
  const out: number[] = [];
  const stack = [pid];
  while (stack.length !== 0) {
    const p = stack.pop() as number;
    out.push(p);
    stack.push(...(kids.get(p) ?? []));
  }
  return out;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** CPU seconds (user + system) used so far by `pid` and its descendants. */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of descendants(pid)) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch { /* gone */ }
  }
  return ticks / TICKS_PER_SECOND;
}

/** Resident memory of `pid` and all its descendants, in MiB. */
export function treeRssMiB(pid: number): number {
  const kids = childrenOf();
  let kb = 0;
  const stack = [pid];
  while (stack.length !== 0) {
    const p = stack.pop() as number;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m !== null) kb += Number(m[1]);
    } catch { /* gone */ }
    stack.push(...(kids.get(p) ?? []));
  }
  return kb / 1024;
}

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try { if (await check()) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function httpOk(url: string, headers: Record<string, string> = {}): Promise<boolean> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.status === 200;
}

/** Share of the machine's CPU time that was busy over `ms` (0..1), from /proc/stat. */
export async function machineBusy(ms = 1000): Promise<number> {
  const read = () => {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await new Promise((r) => setTimeout(r, ms));
  const b = read();
  return 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
}

/** Busy and total jiffies of one CPU ("0", "1") so far, from /proc/stat. */
function coreTicks(cpu: string): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  if (line === undefined) throw new Error(`no cpu${cpu} in /proc/stat`);
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] ?? 0), total };
}

/**
 * Starts watching one core; the returned function gives the share of it
 * that was busy since (0..1), whoever used it: on the load core that is the
 * load generator, the backend and anything else the machine ran there.
 */
export function watchCore(cpu: string): () => number {
  const a = coreTicks(cpu);
  return () => {
    const b = coreTicks(cpu);
    return (b.busy - a.busy) / Math.max(1, b.total - a.total);
  };
}
