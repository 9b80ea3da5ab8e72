// How serve starts: it re-executes itself once, as the same process, with
// the allocator and young-generation settings it documents, and keeps the
// ones the user gave instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { request } from 'undici';
import { freePort, spawnServe, tempConfigDir, waitFor, writeConfig, GATEWAY_CLASS } from './helpers.ts';

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
