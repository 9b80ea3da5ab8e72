// `gatehouse explain` as a process: exit codes 0 routed, 1 not routed, 2
// bad input; the JSON form; the request quoted whole or as words.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { writeExplainConfig } from './fixtures.ts';

const BIN = path.join(import.meta.dirname, '../../bin/gatehouse.js');
const dir = writeExplainConfig();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function gatehouse(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'explain', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('routed: exit 0, the rule and backend printed', () => {
  const r = gatehouse('--config-dir', dir, 'GET http://nova.example:8080/v2.1/servers -H "X-Foo: baz"');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /result: ROUTED/);
  assert.match(r.out, /> default\/nova\/foo-baz\/0: matches/);
  assert.match(r.out, /weight 1: default\/nova:8774 -> 127\.0\.0\.1:8774/);
  assert.match(r.out, /other\/intruder: Accepted=False NotAllowedByListeners/);
});

test('the request as separate words works as one quoted argument does', () => {
  const r = gatehouse('GET', 'http://nova.example:8080/v2.1/servers', '-H', 'X-Foo: baz', '--config-dir', dir);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /> default\/nova\/foo-baz\/0/);
});

test('not routed: exit 1; --json gives the machine form', () => {
  const r = gatehouse('--config-dir', dir, '--json', 'GET http://nova.example:9999/');
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.routed, false);
  assert.equal(j.outcome, 'not served: no listener on port 9999');
  const routed = JSON.parse(gatehouse('--config-dir', dir, '--json', 'GET https://nova.example:8443/v2.1').out);
  assert.equal(routed.route.name, 'default/nova/0/0');
  assert.equal(routed.listener, 'default/gw/https');
});

test('bad input: exit 2 with the reason', () => {
  for (const [args, reason] of [
    [['GET http://x/'], /needs --config-dir/],
    [['--config-dir', dir], /needs a request/],
    [['--config-dir', path.join(dir, 'missing'), 'GET http://x/'], /not a readable directory/],
    [['--config-dir', dir, 'GET not-a-url'], /not an absolute URL/],
    [['--config-dir', dir, '--gateway', 'nonamespace', 'GET http://x/'], /--gateway wants namespace\/name/],
  ] as const) {
    const r = gatehouse(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, reason);
  }
});
