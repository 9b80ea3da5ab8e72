// --workers defaults to the cores the process's cgroup lets it use, not
// the CPUs of the machine: a proxy pod limited to one CPU on a large node
// must not start a worker per node CPU. The parsing is checked on
// /proc-shaped text; the whole path on a real cgroup, where the test can
// make one (root, a cgroup hierarchy with the cpu controller).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { request } from 'undici';
import { cgroupCpuLimit, usableCores, type CgroupFiles } from '../../src/cli/cpu-quota.ts';
import { BIN, GATEWAY_CLASS, gatewayYAML, freePort, tempConfigDir, waitFor, writeConfig } from './helpers.ts';

function files(cgroup: string, mountinfo: string, tree: Record<string, string>): CgroupFiles {
  return { cgroup, mountinfo, read: (f) => tree[f] ?? null };
}

const V2_MOUNT = '30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
const V1_MOUNTS = [
  '33 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory',
  '34 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct',
].join('\n');

test('cgroup v2: the smallest cpu.max on the way up to the mount holds', () => {
  const f = files('0::/kubepods/pod1/proxy\n', V2_MOUNT, {
    '/sys/fs/cgroup/kubepods/pod1/proxy/cpu.max': 'max 100000\n',
    '/sys/fs/cgroup/kubepods/pod1/cpu.max': '150000 100000\n',
    '/sys/fs/cgroup/kubepods/cpu.max': '800000 100000\n',
  });
  assert.equal(cgroupCpuLimit(f), 1.5);
  assert.equal(usableCores(64, cgroupCpuLimit(f)), 2);
});

test('cgroup v2 in a cgroup namespace: the process sees its cgroup as /', () => {
  const f = files('0::/\n', V2_MOUNT, { '/sys/fs/cgroup/cpu.max': '50000 100000\n' });
  assert.equal(cgroupCpuLimit(f), 0.5);
  assert.equal(usableCores(8, cgroupCpuLimit(f)), 1, 'half a core is still one worker');
});

test('cgroup v1: cfs quota over period, controllers mounted together', () => {
  const f = files('5:memory:/pod1\n4:cpu,cpuacct:/pod1/proxy\n', V1_MOUNTS, {
    '/sys/fs/cgroup/cpu,cpuacct/pod1/proxy/cpu.cfs_quota_us': '-1\n',
    '/sys/fs/cgroup/cpu,cpuacct/pod1/proxy/cpu.cfs_period_us': '100000\n',
    '/sys/fs/cgroup/cpu,cpuacct/pod1/cpu.cfs_quota_us': '300000\n',
    '/sys/fs/cgroup/cpu,cpuacct/pod1/cpu.cfs_period_us': '100000\n',
  });
  assert.equal(cgroupCpuLimit(f), 3);
  assert.equal(usableCores(2, cgroupCpuLimit(f)), 2, 'never more than the CPUs it may run on');
});

test('no limit, no cgroups, a path outside the mount: the CPU count stands', () => {
  assert.equal(cgroupCpuLimit(files('0::/a\n', V2_MOUNT, { '/sys/fs/cgroup/a/cpu.max': 'max 100000\n' })), null);
  assert.equal(cgroupCpuLimit(files('', '', {})), null);
  assert.equal(cgroupCpuLimit(null), null);
  const outside = '30 25 0:26 /other /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n';
  assert.equal(cgroupCpuLimit(files('0::/mine\n', outside, { '/sys/fs/cgroup/cpu.max': '100000 100000\n' })), null);
  assert.equal(usableCores(4, null), 4);
});

/** A fresh cgroup limited to one core, where this machine lets the test make one; else why not. */
function oneCoreCgroup(): { dir: string; remove(): void } | string {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs root on Linux';
  if (os.availableParallelism() < 2) return 'needs 2 or more CPUs to tell a quota from the CPU count';
  const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  for (const line of mountinfo) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const mountPoint = line.slice(0, dash).split(' ')[4];
    const [fstype, , opts = ''] = line.slice(dash + 3).split(' ');
    const dir = path.join(mountPoint, `gatehouse-test-${process.pid}`);
    try {
      if (fstype === 'cgroup' && opts.split(',').includes('cpu')) {
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, 'cpu.cfs_period_us'), '100000');
        fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), '100000');
      } else if (fstype === 'cgroup2' && fs.readFileSync(path.join(mountPoint, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('cpu')) {
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, 'cpu.max'), '100000 100000');
      } else continue;
    } catch {
      try { fs.rmdirSync(dir); } catch { /* not made */ }
      continue;
    }
    return { dir, remove: () => fs.rmdirSync(dir) };
  }
  return 'no cgroup hierarchy with the cpu controller to make a cgroup in';
}

test('serve in a cgroup limited to one core starts one worker by default', { timeout: 60_000 }, async (t) => {
  const cg = oneCoreCgroup();
  if (typeof cg === 'string') {
    t.skip(cg);
    return;
  }
  const dir = tempConfigDir();
  writeConfig(dir, 'gw.yaml', `${GATEWAY_CLASS}---\n${gatewayYAML(await freePort())}`);
  const adminPort = await freePort();
  const admin = `http://127.0.0.1:${adminPort}`;
  // The shell joins the cgroup, then becomes gatehouse: no --workers.
  const proc = spawn('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && exec "$2" "$3" serve --config-dir "$4" --admin-address "$5" --log-level warn --shutdown-delay 0s',
    'sh', cg.dir, process.execPath, BIN, dir, `127.0.0.1:${adminPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (c) => { output += c; });
  proc.stderr.on('data', (c) => { output += c; });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  try {
    await waitFor('readyz', async () => (await request(`${admin}/readyz`).catch(() => null))?.statusCode === 200, 30_000)
      .catch((e: Error) => { throw new Error(`${e.message}\n${output}`); });
    const res = await request(`${admin}/api/v1/workers`);
    const { items } = (await res.body.json()) as { items: unknown[] };
    assert.equal(items.length, 1, `one worker for one core of quota on ${os.availableParallelism()} CPUs`);
  } finally {
    proc.kill('SIGTERM');
    await exited;
    cg.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
