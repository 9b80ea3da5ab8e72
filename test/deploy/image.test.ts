// The Containerfile, without a container engine: its last stage is laid
// out in a scratch directory exactly as it says (the files it copies, the
// production dependencies `npm ci --omit=dev` installs, from npm's cache)
// and run the way its ENTRYPOINT and USER say. Every command module that
// loads from the checkout must load there too: an import of a dev
// dependency, or of a file the image does not copy, fails here.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROXY_UID } from '../../src/providers/kubernetes/provision/render.ts';
import { ROOT } from './objects.ts';

const CONTAINERFILE = fs.readFileSync(path.join(ROOT, 'Containerfile'), 'utf8');
const IGNORE = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8');
// npm ci from the cache takes seconds; a minute means it is fetching or stuck.
const NPM_TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 30_000;
const MAX_OUTPUT = 1024 * 1024;
/** The command modules (main.ts itself runs on import: the version and help runs load it). */
const ENTRY_MODULES = ['src/cli/serve.ts', 'src/cli/validate.ts', 'src/cli/proxy.ts', 'src/cli/controller.ts'];

interface Instruction { op: string; args: string }

/** Instructions of the Containerfile, continuation lines joined, comments dropped. */
function instructions(): Instruction[] {
  const joined = CONTAINERFILE.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n').replace(/\\\n/g, ' ');
  return joined.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const m = /^(\w+)\s+(.*)$/.exec(l);
    assert.ok(m, `cannot read Containerfile line: ${l}`);
    return { op: m[1]!.toUpperCase(), args: m[2]! };
  });
}

/** The instructions of the last stage (after the last FROM). */
function lastStage(): Instruction[] {
  const all = instructions();
  const from = all.map((i) => i.op).lastIndexOf('FROM');
  return all.slice(from);
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs, maxBuffer: MAX_OUTPUT, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr: stderr + (err && code === -1 ? `\n${err.message}` : '') });
    });
  });
}

let scratch = '';
let app = '';
let skip: string | false = false;
/** Why the compile cache could not be made as the image makes it (it needs root to switch users and chown). */
let cacheSkip: string | false = false;
/** How long serve may take to start from the image layout. */
const SERVE_START_TIMEOUT_MS = 30_000;

const canSwitchUser = () => process.getuid?.() === 0 && fs.existsSync('/usr/bin/setpriv');
const SETPRIV_ARGS = ['--reuid', String(PROXY_UID), '--regid', String(PROXY_UID), '--clear-groups'];

/** The environment the image's processes get here: its user's, with the scratch /tmp. */
function imageEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, TMPDIR: path.join(scratch, 'tmp'), HOME: '/nonexistent' };
}

/** `cmd` as the image's user when we can switch to it (root), else as ourselves. */
function asImageUserRun(cmd: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  if (canSwitchUser()) return run('/usr/bin/setpriv', [...SETPRIV_ARGS, cmd, ...args], { cwd, env: imageEnv(), timeoutMs: RUN_TIMEOUT_MS });
  return run(cmd, args, { cwd, env: imageEnv(), timeoutMs: RUN_TIMEOUT_MS });
}

/** node as the image's user when we can switch to it (root), else as ourselves. */
function asImageUser(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return asImageUserRun(process.execPath, args, cwd);
}

/**
 * The last stage's RUN lines that make the compile cache, in the app
 * directory (its WORKDIR), each as the user in effect there: the cache is
 * made the way the image makes it, for the same uid.
 */
async function makeCompileCache(): Promise<string | false> {
  if (!canSwitchUser()) return 'the compile cache is made as the image\'s user, and switching users needs root and setpriv';
  let user = 'root';
  const lines = lastStage().filter((i) => i.op === 'USER' || (i.op === 'RUN' && i.args.includes('compile-cache')));
  assert.ok(lines.some((i) => i.op === 'RUN'), 'the Containerfile makes a compile cache');
  for (const i of lines) {
    if (i.op === 'USER') {
      user = i.args;
      continue;
    }
    const r = user === 'root'
      ? await run('sh', ['-c', i.args], { cwd: app, env: { PATH: process.env.PATH }, timeoutMs: NPM_TIMEOUT_MS })
      : await asImageUserRun('sh', ['-c', i.args], app);
    assert.equal(r.code, 0, `RUN ${i.args} as ${user}: ${r.stderr.slice(-1500)}`);
  }
  return false;
}

function copySources(): string[] {
  return lastStage().filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).map((i) => {
    const parts = i.args.split(/\s+/);
    return parts.slice(0, -1);
  }).flat();
}

before(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-image-test-'));
  fs.chmodSync(scratch, 0o755);
  fs.mkdirSync(path.join(scratch, 'tmp'), { mode: 0o777 });
  fs.chmodSync(path.join(scratch, 'tmp'), 0o1777);
  app = path.join(scratch, 'app');
  fs.mkdirSync(app);
  for (const src of copySources()) fs.cpSync(path.join(ROOT, src), path.join(app, src), { recursive: true });
  const npmCi = instructions().find((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
  assert.ok(npmCi, 'the Containerfile runs npm ci');
  const args = /npm ci ([^&]*)/.exec(npmCi.args)![1]!.trim().split(/\s+/);
  // From npm's cache only (`npm ci` of the checkout filled it): a test does not download.
  const npm = path.join(path.dirname(process.execPath), 'npm');
  const r = await run(fs.existsSync(npm) ? npm : 'npm', ['ci', ...args, '--offline'], { cwd: app, timeoutMs: NPM_TIMEOUT_MS, env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (r.code !== 0) skip = `npm ci --offline could not install the production dependencies from npm's cache (run npm ci first): ${r.stderr.trim().split('\n').slice(-3).join(' ')}`;
  // The image's files are root's and only readable by its user.
  await run('chmod', ['-R', 'a+rX,go-w', scratch + '/app'], { timeoutMs: RUN_TIMEOUT_MS });
  if (!skip) cacheSkip = await makeCompileCache();
});

after(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

test('the Containerfile: Node 24, production dependencies only, the image\'s non-root user, gatehouse as entrypoint', () => {
  const froms = instructions().filter((i) => i.op === 'FROM');
  assert.ok(froms.length >= 2, 'multi-stage: npm runs in a stage the image does not keep');
  const defaultImage = /ARG NODE_IMAGE=(\S+)/.exec(CONTAINERFILE)?.[1];
  assert.match(defaultImage ?? '', /^node:24[-.]/, 'Node 24');
  const last = lastStage();
  assert.equal(last.filter((i) => i.op === 'USER').at(-1)?.args, `${PROXY_UID}:${PROXY_UID}`, 'the uid render.ts runs proxies as');
  assert.equal(last.find((i) => i.op === 'ENTRYPOINT')?.args, '["node", "/app/bin/gatehouse.js"]');
  assert.deepEqual(copySources().sort(), ['bin/', 'package-lock.json', 'package.json', 'scripts/warm-compile-cache.mjs', 'src/'],
    'copies src/, bin/, package*.json and the script that makes the compile cache, only');
  const npmCi = instructions().find((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args))!;
  assert.match(npmCi.args, /--omit=dev/);
  assert.ok(!last.some((i) => i.op === 'RUN' && /\bnpm (ci|install|i)\b/.test(i.args)), 'no npm install in the image\'s own stage');
});

test('.dockerignore sends only what the Containerfile copies', () => {
  const lines = IGNORE.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  assert.equal(lines[0], '*', 'everything is left out first');
  const included = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, '')).sort();
  assert.deepEqual(included, copySources().map((s) => s.replace(/\/$/, '')).sort());
});

test('the image layout holds no dev dependency', (t) => {
  if (skip) return t.skip(skip);
  // The lock file marks what only dev dependencies need (some dev
  // dependencies are also needed by production ones: those stay).
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const devOnly = Object.entries(lock.packages).filter(([p, e]) => p && e.dev).map(([p]) => p);
  assert.ok(devOnly.includes('node_modules/typescript'), 'the lock file marks dev-only packages');
  const present = devOnly.filter((p) => fs.existsSync(path.join(app, p)));
  assert.deepEqual(present, [], 'dev-only packages in the image');
  assert.ok(fs.existsSync(path.join(app, 'node_modules/@kubernetes/client-node')), 'production dependencies are there');
});

test('gatehouse runs from the image layout as the image\'s user: version and help', async (t) => {
  if (skip) return t.skip(skip);
  const version = await asImageUser([path.join(app, 'bin/gatehouse.js'), 'version'], '/');
  assert.equal(version.code, 0, version.stderr);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), `gatehouse ${pkg.version}`);
  const help = await asImageUser([path.join(app, 'bin/gatehouse.js'), '--help'], '/');
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /usage: gatehouse/);
});

test('every command module that loads from the checkout loads from the image layout', async (t) => {
  if (skip) return t.skip(skip);
  const load = (dir: string, module: string) => asImageUser(['--input-type=module', '-e', `await import(${JSON.stringify(path.join(dir, module))})`], '/');
  for (const module of ENTRY_MODULES) {
    const inCheckout = await run(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(path.join(ROOT, module))})`], { timeoutMs: RUN_TIMEOUT_MS });
    if (inCheckout.code !== 0) {
      t.diagnostic(`${module} does not load from the checkout either (work in progress?): ${inCheckout.stderr.split('\n').find((l) => /Error/.test(l)) ?? ''}`);
      continue;
    }
    const inImage = await load(app, module);
    assert.equal(inImage.code, 0, `${module} loads from the checkout but not from the image: ${inImage.stderr.slice(-1500)}`);
  }
});

/** Files under `dir`, relative, sorted. */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

test('serve from the image layout compiles no module anew: the image\'s compile cache holds all it loads, in every thread', async (t) => {
  if (skip) return t.skip(skip);
  if (cacheSkip) return t.skip(cacheSkip);
  const cache = path.join(app, 'compile-cache');
  const made = filesUnder(cache);
  // Node files entries per V8 flags: the main thread's and the data-plane thread's (see scripts/warm-compile-cache.mjs).
  assert.ok(fs.readdirSync(cache).length >= 2, `one directory per thread's flags: ${fs.readdirSync(cache).join(', ')}`);
  const config = fs.mkdtempSync(path.join(scratch, 'config-'));
  fs.chmodSync(config, 0o755);
  // Writable for this run only: a module the cache lacks would then be written there, and show.
  await run('chown', ['-R', `${PROXY_UID}:${PROXY_UID}`, cache], { timeoutMs: RUN_TIMEOUT_MS });
  try {
    const serve = spawn('/usr/bin/setpriv', [...SETPRIV_ARGS, process.execPath, path.join(app, 'bin/gatehouse.js'), 'serve', '--config-dir', config,
      '--admin-address', '127.0.0.1:0', '--workers', '1', '--log-level', 'info', '--shutdown-delay', '0s'], { cwd: '/', env: imageEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const started = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start within ${SERVE_START_TIMEOUT_MS} ms: ${output.slice(-1500)}`)), SERVE_START_TIMEOUT_MS);
      const look = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('gatehouse standalone started')) {
          clearTimeout(timer);
          resolve();
        }
      };
      serve.stdout.on('data', look);
      serve.stderr.on('data', look);
      serve.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`serve exited (${code}) before it started: ${output.slice(-1500)}`));
      });
    });
    const exited = new Promise<number | null>((resolve) => serve.once('exit', resolve));
    try {
      await started;
    } finally {
      serve.kill('SIGTERM');
    }
    assert.equal(await exited, 0, output.slice(-1500));
  } finally {
    await run('chown', ['-R', 'root:root', cache], { timeoutMs: RUN_TIMEOUT_MS });
  }
  const compiledAnew = filesUnder(cache).filter((f) => !made.includes(f));
  assert.deepEqual(compiledAnew, [], 'modules serve compiled that the image\'s cache did not hold');
  assert.ok(!fs.existsSync(path.join(scratch, 'tmp', 'node-compile-cache')), 'serve used the image\'s cache, not one in /tmp');
});
