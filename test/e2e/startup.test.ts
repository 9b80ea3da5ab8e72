// How serve and proxy start: they re-execute themselves once, as the same
// process, with the allocator and young-generation settings serve
// documents, and keep the ones the user gave instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { createCertificateAuthority } from '../../src/providers/kubernetes/certificate-authority.ts';
import { BIN, freePort, spawnServe, tempConfigDir, waitFor, writeConfig, GATEWAY_CLASS } from './helpers.ts';

function environ(pid: number): Map<string, string> {
  const pairs = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return new Map(pairs.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
}

function cmdline(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

async function started(env: NodeJS.ProcessEnv): Promise<{ env: Map<string, string>; argv: string[] }> {
  const dir = tempConfigDir();
  writeConfig(dir, 'class.yaml', GATEWAY_CLASS);
  const adminPort = await freePort();
  const serve = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '1', '--log-level', 'warn', '--shutdown-delay', '0s'], env);
  try {
    // Ready on the admin API means the process that answers is the re-executed one.
    await waitFor('readyz', async () => (await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode === 200, 20_000);
    return { env: environ(serve.pid), argv: cmdline(serve.pid) };
  } finally {
    assert.equal(await serve.stop(), 0, serve.output());
  }
}

test('serve runs with its malloc and semi-space settings, in the process that was started', { skip: process.platform !== 'linux', timeout: 60_000 }, async () => {
  const { GLIBC_TUNABLES: _, ...env } = process.env;
  const got = await started({ ...env, NODE_OPTIONS: '' });
  // glibc, parsing the tunables at start, writes a NUL after each value
  // into the environment it was given: the process shows the first one.
  assert.match(got.env.get('GLIBC_TUNABLES') ?? '(unset)', /^glibc\.malloc\.trim_threshold=67108864(:glibc\.malloc\.top_pad=16777216)?$/);
  assert.ok(got.argv.includes('--max-semi-space-size=8'), got.argv.join(' '));
});

test('serve keeps GLIBC_TUNABLES and a semi-space size that the user set', { skip: process.platform !== 'linux', timeout: 60_000 }, async () => {
  const got = await started({ ...process.env, GLIBC_TUNABLES: '', NODE_OPTIONS: '--max-semi-space-size=4' });
  assert.equal(got.env.get('GLIBC_TUNABLES'), '');
  assert.ok(!got.argv.some((a) => a.startsWith('--max-semi-space-size')), got.argv.join(' '));
});

test('proxy runs with the same malloc and semi-space settings', { skip: process.platform !== 'linux', timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-startup-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'ca.crt'), createCertificateAuthority('startup test CA', 86_400_000).cert);
  fs.writeFileSync(path.join(dir, 'token'), 'token\n');
  const healthPort = await freePort();
  const { GLIBC_TUNABLES: _, ...env } = process.env;
  // No controller answers on port 1: the proxy runs, unready, and its health server answers.
  const proxy = spawn(process.execPath, [BIN, 'proxy', '--controller-address', '127.0.0.1:1', '--gateway', 'ns/gw',
    '--ca-file', path.join(dir, 'ca.crt'), '--token-file', path.join(dir, 'token'), '--health-address', `127.0.0.1:${healthPort}`,
    '--workers', '0', '--log-level', 'warn', '--shutdown-delay', '0s'], { stdio: 'ignore', env: { ...env, NODE_OPTIONS: '' } });
  const exited = new Promise((resolve) => proxy.once('exit', resolve));
  t.after(() => proxy.kill('SIGKILL'));
  await waitFor('healthz', async () => (await request(`http://127.0.0.1:${healthPort}/healthz`)).statusCode === 200, 20_000);
  assert.match(environ(proxy.pid!).get('GLIBC_TUNABLES') ?? '(unset)', /^glibc\.malloc\.trim_threshold=67108864(:glibc\.malloc\.top_pad=16777216)?$/);
  assert.ok(cmdline(proxy.pid!).includes('--max-semi-space-size=8'), cmdline(proxy.pid!).join(' '));
  proxy.kill('SIGTERM');
  await exited;
});
