// Pieces of the admin exposure tests: real certificates made by openssl,
// a config that uses them, and a raw HTTP client that sends any Host.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

export interface TlsMaterial { certPem: string; keyPem: string }

/** A self-signed RSA certificate and its key for `name` and `*.name`, made by openssl. */
export function makeTlsMaterial(dir: string, name: string): TlsMaterial {
  const cert = path.join(dir, `${name}.crt.pem`);
  const key = path.join(dir, `${name}.key.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=DNS:${name},DNS:*.${name}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const material = { certPem: fs.readFileSync(cert, 'utf8'), keyPem: fs.readFileSync(key, 'utf8') };
  // Kept out of the config directory and gone once read: the test greps for what they hold.
  fs.rmSync(cert);
  fs.rmSync(key);
  return material;
}

export function b64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/**
 * Pieces of a secret worth looking for in an answer: every line of a PEM
 * body, the whole value base64-encoded (as Secret data holds it) and
 * 24-character slices of that at several offsets (a partial leak, or the
 * same bytes at another base64 alignment).
 */
export function secretFragments(secret: string): string[] {
  const out = new Set<string>();
  for (const line of secret.split('\n')) if (line.length >= 16 && !line.startsWith('-----')) out.add(line);
  for (const enc of [b64(secret), b64(` ${secret}`), b64(`  ${secret}`)]) {
    out.add(enc);
    for (let i = 8; i + 24 <= enc.length; i += 97) out.add(enc.slice(i, i + 24));
  }
  return [...out];
}

export interface RawResponse { status: number; headers: http.IncomingHttpHeaders; body: string }

/** GET (or `method`) with exactly the headers given, Host included; the whole body as text. */
export function rawRequest(port: number, urlPath: string, headers: Record<string, string> = {}, opts: { host?: string; method?: string; timeoutMs?: number } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: opts.host ?? '127.0.0.1', port, path: urlPath, method: opts.method ?? 'GET', headers, agent: false, setHost: headers.host === undefined }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 5_000, () => req.destroy(new Error(`no answer to ${urlPath} within ${opts.timeoutMs ?? 5_000} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Every page of /api/v1/resources, following metadata.continue. */
export async function allResources(port: number, query: string, headers: Record<string, string> = {}): Promise<{ items: any[]; pages: number; bodies: string[] }> {
  const items: any[] = [];
  const bodies: string[] = [];
  let token: string | undefined;
  do {
    const sep = query === '' ? '?' : '&';
    const res = await rawRequest(port, `/api/v1/resources${query === '' ? '' : `?${query}`}${token === undefined ? '' : `${sep}continue=${token}`}`, headers);
    if (res.status !== 200) throw new Error(`resources: HTTP ${res.status}: ${res.body}`);
    bodies.push(res.body);
    const page = JSON.parse(res.body) as { metadata?: { continue?: string }; items: any[] };
    items.push(...page.items);
    token = page.metadata?.continue;
  } while (token !== undefined);
  return { items, pages: bodies.length, bodies };
}

export interface GatehouseProcess {
  readonly pid: number;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  /** Resolves with the exit code (null when ended by a signal). */
  readonly exited: Promise<number | null>;
  /** When it exited, by performance.now(); null while it runs. */
  exitedAt(): number | null;
  signal(sig: NodeJS.Signals): void;
  /** SIGKILL if still running: for t.after, so that no test leaves one behind. */
  kill(): void;
}

const BIN = path.join(import.meta.dirname, '../../bin/gatehouse.js');

/** `gatehouse serve ARGS` as a real process, as users start it. */
export function spawnGatehouse(args: string[]): GatehouseProcess {
  const proc = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let exitedAt: number | null = null;
  proc.stdout.on('data', (c) => { output += c; });
  proc.stderr.on('data', (c) => { output += c; });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => { exitedAt = performance.now(); resolve(code); }));
  return {
    pid: proc.pid!,
    output: () => output,
    exited,
    exitedAt: () => exitedAt,
    signal: (sig) => { proc.kill(sig); },
    kill: () => { if (exitedAt === null) proc.kill('SIGKILL'); },
  };
}

/** The exit code, or 'still running' once `ms` have passed (the process is then left to the caller's kill()). */
export function exitWithin(proc: GatehouseProcess, ms: number): Promise<number | null | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still running'>((resolve) => { timer = setTimeout(() => resolve('still running'), ms); });
  return Promise.race([proc.exited, late]).finally(() => clearTimeout(timer));
}

/** Waits for /readyz 200, at most 20 s; fails at once, with its output, if the process exits first. */
export async function untilReady(proc: GatehouseProcess, adminPort: number): Promise<void> {
  const until = performance.now() + 20_000;
  while (performance.now() < until) {
    if (proc.exitedAt() !== null) throw new Error(`gatehouse exited before it was ready:\n${proc.output()}`);
    try {
      if ((await rawRequest(adminPort, '/readyz', {}, { timeoutMs: 1_000 })).status === 200) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gatehouse not ready within 20 s:\n${proc.output()}`);
}
