// Pod networking for the stand-ins, done the way a CNI bridge plugin does
// it: a bridge on the node with the pod network's gateway address, and per
// pod a network namespace joined to it by a veth pair, with its own
// address and a default route through the bridge.
//
// Each pod's namespaces (network, and a private mount namespace for its
// volumes) are held by a process, the "pause container": named network
// namespaces (`ip netns add`) do not work on these machines, so everything
// enters them by the holder's pid. These commands need root, and change the
// network namespace they run in: run them inside one made for the test
// (runInOwnNetworkNamespace), never on the host's.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

/** Each ip/nsenter/mount call is quick; a bound keeps a wedged one from hanging a test. */
const COMMAND_TIMEOUT_MS = 10_000;
/** How long a new holder process may take to have its namespaces. */
const HOLDER_READY_MS = 5_000;

export const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p)) ?? 'setpriv';

export function sh(command: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
  });
}

export function ipToInt(ip: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Loopback up, and the node's pod bridge with its gateway address (idempotent). */
export async function ensureBridge(bridge: string, gatewayCidr: string): Promise<void> {
  await sh('ip', ['link', 'set', 'lo', 'up']);
  const links = await sh('ip', ['-o', 'link', 'show']);
  if (!new RegExp(`^\\d+: ${bridge}[:@]`, 'm').test(links)) {
    await sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
  }
  const addrs = await sh('ip', ['-o', 'addr', 'show', 'dev', bridge]);
  if (!addrs.includes(` ${gatewayCidr} `)) await sh('ip', ['addr', 'add', gatewayCidr, 'dev', bridge]);
  await sh('ip', ['link', 'set', bridge, 'up']);
}

/** An address on this namespace's loopback (/32), for a service VIP; true when it was added now. */
export async function addLocalAddress(ip: string): Promise<boolean> {
  const addrs = await sh('ip', ['-o', 'addr', 'show', 'dev', 'lo']);
  if (addrs.includes(` ${ip}/`)) return false;
  await sh('ip', ['addr', 'add', `${ip}/32`, 'dev', 'lo']);
  return true;
}

export async function removeLocalAddress(ip: string): Promise<void> {
  await sh('ip', ['addr', 'del', `${ip}/32`, 'dev', 'lo']).catch(() => {});
}

export interface Sandbox {
  /** The holder's pid: `nsenter -t pid -n -m` enters the pod. */
  pid: number;
  ip: string;
  hostVeth: string;
  /** Kills the holder (the namespace and its veth pair go with it). */
  destroy(): Promise<void>;
}

export interface SandboxOptions {
  ip: string;
  prefixLength: number;
  gateway: string;
  bridge: string;
  /** The host end's name: at most 15 characters. */
  hostVeth: string;
  /** Namespaced sysctls of the pod (net.* ones are set in its network namespace). */
  sysctls?: { name: string; value: string }[];
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}

/** The pod's sandbox: namespaces held by a sleeping process, a veth into the bridge, address, route, sysctls. */
export async function createSandbox(o: SandboxOptions): Promise<Sandbox> {
  // In this process's group: runInOwnNetworkNamespace kills the group when
  // the test is done, even when it was killed before it could clean up.
  // (A parent death signal would be neater, but it is not delivered on
  // these machines: measured, a child with PR_SET_PDEATHSIG outlived its parent.)
  const holder = spawn('unshare', ['-n', '-m', '--propagation', 'private', '--', 'sleep', 'infinity'], { stdio: 'ignore' });
  const pid = holder.pid;
  const destroy = async () => {
    holder.kill('SIGKILL');
    await waitExit(holder, 5_000);
    // The namespace is gone with its last process, and its end of the
    // pair with it; the host end is deleted with its peer.
    await sh('ip', ['link', 'del', o.hostVeth]).catch(() => {});
  };
  try {
    if (pid === undefined) throw new Error('could not start the sandbox holder');
    // unshare has made the namespace once /proc/pid/ns/net differs from ours.
    const ours = fs.readlinkSync('/proc/self/ns/net');
    const deadline = Date.now() + HOLDER_READY_MS;
    for (;;) {
      let theirs = '';
      try { theirs = fs.readlinkSync(`/proc/${pid}/ns/net`); } catch { /* not there yet */ }
      if (theirs && theirs !== ours && fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep') break;
      if (holder.exitCode !== null || Date.now() > deadline) throw new Error(`sandbox holder ${pid} did not get its namespaces within ${HOLDER_READY_MS} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await sh('ip', ['link', 'del', o.hostVeth]).catch(() => {});
    await sh('ip', ['link', 'add', o.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(pid)]);
    await sh('ip', ['link', 'set', o.hostVeth, 'master', o.bridge, 'up']);
    const inPod = (...args: string[]) => sh('nsenter', ['-t', String(pid), '-n', '--', ...args]);
    await inPod('ip', 'link', 'set', 'lo', 'up');
    await inPod('ip', 'addr', 'add', `${o.ip}/${o.prefixLength}`, 'dev', 'eth0');
    await inPod('ip', 'link', 'set', 'eth0', 'up');
    await inPod('ip', 'route', 'add', 'default', 'via', o.gateway);
    for (const s of o.sysctls ?? []) {
      if (!s.name.startsWith('net.')) throw new Error(`sysctl ${s.name}: only namespaced net.* sysctls are supported by this stand-in`);
      await inPod('sysctl', '-q', '-w', `${s.name}=${s.value}`);
    }
    return { pid, ip: o.ip, hostVeth: o.hostVeth, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/**
 * For a test file that needs pod networking: outside a private network
 * namespace, runs `node --test <file>` again inside a new one (`unshare
 * -n`), passing its output through, and resolves with its exit code;
 * inside, resolves with null and the file's tests run. The variable marks
 * the inside.
 *
 * The inner run is a process group of its own (setsid), tests in its one
 * process (no isolation): every process it starts, however deep (pods'
 * namespace holders, containers, the API server), is in that group unless
 * it made its own, and is killed with it when the run ends or times out.
 */
export const NETNS_ENV = 'GATEHOUSE_E2E_NETNS';

export function runInOwnNetworkNamespace(file: string, timeoutMs: number): Promise<number | null> {
  if (process.env[NETNS_ENV]) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['-n', '--', process.execPath, '--test', '--test-isolation=none', '--test-reporter=spec', file], {
      env: { ...process.env, [NETNS_ENV]: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const killGroup = () => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* none left */ } };
    process.once('exit', killGroup);
    child.stdout!.pipe(process.stdout, { end: false });
    child.stderr!.pipe(process.stderr, { end: false });
    // Past the inner tests' own bounds: something is wedged.
    const timer = setTimeout(killGroup, timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      // What the run left behind (it cleans up after itself; this is for a crash).
      killGroup();
      process.off('exit', killGroup);
      // Its last output may still be in the pipes: passed on first (bounded, a
      // descendant in a group of its own could hold them open).
      const done = () => resolve(signal ? 128 : code ?? 1);
      const t = setTimeout(done, 5_000);
      child.once('close', () => { clearTimeout(t); done(); });
    });
  });
}
