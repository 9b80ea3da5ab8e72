// Finds nginx, wrk, h2load, taskset and openssl; installs the Debian packages when
// running as root, otherwise says which command would.
import { execFileSync, spawnSync } from 'node:child_process';

const PACKAGES: Record<string, string> = { nginx: 'nginx', wrk: 'wrk', h2load: 'nghttp2-client', taskset: 'util-linux', openssl: 'openssl' };

export function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Absolute paths of the tools, by name; exits the process when one is missing and cannot be installed. */
export function ensureTools(): Record<string, string> {
  const missing = Object.keys(PACKAGES).filter((c) => which(c) === null);
  if (missing.length !== 0) {
    const pkgs = [...new Set(missing.map((c) => PACKAGES[c]))].join(' ');
    if (process.getuid?.() !== 0) {
      process.stderr.write(`bench: missing ${missing.join(', ')}; install them with:\n  sudo apt-get update && sudo apt-get install -y ${pkgs}\n`);
      process.exit(2);
    }
    process.stderr.write(`bench: installing ${pkgs}\n`);
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-qq', ...pkgs.split(' ')], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  const paths: Record<string, string> = {};
  for (const c of Object.keys(PACKAGES)) {
    const p = which(c);
    if (p === null) throw new Error(`${c} still missing after install`);
    paths[c] = p;
  }
  return paths;
}
