// How many cores this process may use, which is what `--workers` defaults
// to. `os.availableParallelism()` counts the CPUs the process may be
// scheduled on, not the CPU time its cgroup may spend: a proxy pod limited
// to 1 CPU on a 64-core node would start 64 workers (~20 MB of heap each)
// that the kernel then throttles to one core's time in all. libuv does not
// read a cgroup v1 quota (measured: Node 24.21, libuv 1.52.1, 1 CPU of
// cfs quota, availableParallelism() = 2 on 2 CPUs), so the quota is read
// here, for cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us` /
// `cpu.cfs_period_us`), in the process's own cgroup and every parent up to
// the mount: the smallest limit on the way up is the one that holds.
import fs from 'node:fs';
import path from 'node:path';

export interface CgroupFiles {
  /** Text of /proc/self/cgroup. */
  cgroup: string;
  /** Text of /proc/self/mountinfo. */
  mountinfo: string;
  /** Reads a file under a cgroup mount; null when it is not there. */
  read(file: string): string | null;
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** This process's files; null where there are no cgroups. */
function systemFiles(): CgroupFiles | null {
  if (process.platform !== 'linux') return null;
  return { cgroup: readOrNull('/proc/self/cgroup') ?? '', mountinfo: readOrNull('/proc/self/mountinfo') ?? '', read: readOrNull };
}

/** A cgroup hierarchy that can limit CPU: where it is mounted, and this process's directory in it. */
interface CpuHierarchy {
  version: 1 | 2;
  /** The mount point, and the cgroup path its root stands for. */
  mountPoint: string;
  mountRoot: string;
  /** This process's cgroup path in that hierarchy (from /proc/self/cgroup). */
  cgroupPath: string;
}

function cpuHierarchies(files: CgroupFiles): CpuHierarchy[] {
  const v1Path = new Map<string, string>();
  let v2Path: string | null = null;
  for (const line of files.cgroup.split('\n')) {
    // hierarchy-id:controllers:path; v2 is `0::path`.
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m === null) continue;
    if (m[1] === '0' && m[2] === '') v2Path = m[3];
    else for (const c of m[2].split(',')) v1Path.set(c, m[3]);
  }
  const found: CpuHierarchy[] = [];
  for (const line of files.mountinfo.split('\n')) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const before = line.slice(0, dash).split(' ');
    const [fstype, , superOptions = ''] = line.slice(dash + 3).split(' ');
    const mountRoot = unescapeMount(before[3] ?? '');
    const mountPoint = unescapeMount(before[4] ?? '');
    if (fstype === 'cgroup2' && v2Path !== null) {
      found.push({ version: 2, mountPoint, mountRoot, cgroupPath: v2Path });
    } else if (fstype === 'cgroup' && superOptions.split(',').includes('cpu')) {
      const p = v1Path.get('cpu');
      if (p !== undefined) found.push({ version: 1, mountPoint, mountRoot, cgroupPath: p });
    }
  }
  return found;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The limit set in one cgroup directory, in cores; null when none. */
function limitIn(dir: string, version: 1 | 2, files: CgroupFiles): number | null {
  if (version === 2) {
    const max = files.read(path.join(dir, 'cpu.max'));
    const m = max === null ? null : /^(\d+)\s+(\d+)/.exec(max.trim());
    return m === null || Number(m[2]) === 0 ? null : Number(m[1]) / Number(m[2]);
  }
  const quota = Number(files.read(path.join(dir, 'cpu.cfs_quota_us'))?.trim() ?? NaN);
  const period = Number(files.read(path.join(dir, 'cpu.cfs_period_us'))?.trim() ?? NaN);
  return quota > 0 && period > 0 ? quota / period : null;
}

/**
 * The CPU time this process's cgroups allow, in cores (1.5 = one and a half
 * cores), or null when no limit is set or none can be read (no cgroups,
 * not Linux, another layout).
 */
export function cgroupCpuLimit(files: CgroupFiles | null = systemFiles()): number | null {
  if (files === null) return null;
  let limit: number | null = null;
  for (const h of cpuHierarchies(files)) {
    // A path outside the mount's root (another cgroup namespace) cannot be reached from here.
    const rel = path.posix.relative(h.mountRoot, h.cgroupPath);
    if (rel.startsWith('..')) continue;
    let dir = path.posix.join(h.mountPoint, rel);
    for (;;) {
      const l = limitIn(dir, h.version, files);
      if (l !== null && (limit === null || l < limit)) limit = l;
      if (dir === h.mountPoint || dir === '/') break;
      dir = path.posix.dirname(dir);
    }
  }
  return limit;
}

/**
 * The cores worth a worker each: the CPUs the process may run on, fewer
 * when its cgroup allows less CPU time than that (a 1.5-core limit gets 2
 * workers: the half core is still time a second worker can use).
 */
export function usableCores(availableParallelism: number, limit: number | null): number {
  if (limit === null) return availableParallelism;
  return Math.max(1, Math.min(availableParallelism, Math.ceil(limit)));
}
