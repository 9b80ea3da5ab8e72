// Hostile config files, as real files in a real directory: the file
// provider reads only regular files inside the config directory, within
// its size, count and nesting limits, never uses a file half-written in
// place, and never quotes a file's content in an error. Each refusal is
// reported with file and reason, and every other file is still applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import fc from 'fast-check';
import { request } from 'undici';
import { loadDirectory, type LoadResult } from '../../src/providers/file/loader.ts';
import { watchDirectory } from '../../src/providers/file/watcher.ts';
import { startStandalone } from '../../src/control/standalone.ts';
import { freePort, startEcho, waitFor } from '../e2e/helpers.ts';
import { appYAML, fifoWatchdog, leakedPieces, namespaceYAML, routeYAML, tempDir, writeRenamed } from './config-helpers.ts';

const POOL = '127.83.0.0/24';
const GW = '127.83.0.1';

function names(r: LoadResult): string[] {
  return r.objects.map((o) => `${o.object.kind} ${o.object.metadata.namespace ?? ''}/${o.object.metadata.name}`.replace(' /', ' '));
}

function messages(r: LoadResult): string[] {
  return r.errors.map((e) => e.message);
}

/** loadDirectory, timed: the result and how long it took, in ms. */
function timedLoad(dir: string, previous?: LoadResult, opts = {}): { result: LoadResult; ms: number } {
  const started = performance.now();
  const result = loadDirectory(dir, previous, null, opts);
  return { result, ms: performance.now() - started };
}

test('a symlink to a FIFO is refused at once: the gateway starts, answers /readyz, reports it, and serves the other files', { timeout: 10_000 }, async (t) => {
  const backend = await startEcho('app');
  t.after(() => backend.close());
  const dir = tempDir(t);
  const port = await freePort();
  writeRenamed(dir, '10-app.yaml', appYAML(port, backend.port));
  const fifo = path.join(dir, '.pipe');
  execFileSync('mkfifo', [fifo]);
  fs.symlinkSync(fifo, path.join(dir, '20-pipe.yaml'));
  // A loader that opens the FIFO blocks until a writer comes: this one comes after 3 s.
  const watchdog = fifoWatchdog(fifo, 3_000);
  t.after(() => watchdog.stop());

  const logged: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => { logged.push(line); } });
  const started = performance.now();
  const gw = await startStandalone({ configDir: dir, adminAddress: '127.0.0.1:0', addressPool: POOL, log });
  t.after(() => gw.close());
  const startMs = performance.now() - started;
  assert.ok(startMs < 2_000, `started in ${startMs.toFixed(0)} ms`);

  const admin = `http://127.0.0.1:${gw.adminPort}`;
  const ready = await request(`${admin}/readyz`);
  await ready.body.dump();
  assert.equal(ready.statusCode, 200);
  const errors = (await (await request(`${admin}/api/v1/errors`)).body.json()) as { items: { file: string; message: string }[] };
  assert.deepEqual(errors.items.map((e) => e.message), ['20-pipe.yaml: is a symlink to a FIFO, not a regular file']);
  assert.ok(logged.some((l) => l.includes('"file":"20-pipe.yaml"') && l.includes('is a symlink to a FIFO')), 'the refusal is logged with its file');

  const res = await waitFor('the route of the other file to serve', async () => {
    const r = await request(`http://${GW}:${port}/x`);
    const body = await r.body.text();
    return r.statusCode === 200 ? body : undefined;
  }, 3_000);
  assert.match(res, /"backend":"app"/);
});

test('a symlink to /dev/zero, and a device in the directory, are refused without reading a byte', { timeout: 5_000 }, (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, '10-good.yaml'), namespaceYAML('good'));
  fs.symlinkSync('/dev/zero', path.join(dir, '20-zero.yaml'));
  const expected = [
    '20-zero.yaml: is a symlink to a file outside the config directory',
  ];
  // A device node inside the directory itself can only be made as root.
  if (process.getuid?.() === 0) {
    execFileSync('mknod', [path.join(dir, '30-zero.yaml'), 'c', '1', '5']);
    expected.push('30-zero.yaml: is a character device, not a regular file');
  }
  const { result, ms } = timedLoad(dir);
  assert.ok(ms < 500, `took ${ms.toFixed(0)} ms`);
  assert.deepEqual(names(result), ['Namespace good']);
  assert.deepEqual(messages(result), expected);
});

test('symlinks: one out of the directory, dangling, or to a directory is refused; one to a file inside it is read', (t) => {
  const outside = tempDir(t, 'gatehouse-outside-');
  fs.writeFileSync(path.join(outside, 'stolen.yaml'), namespaceYAML('stolen'));
  const dir = tempDir(t);
  // The layout of a Kubernetes ConfigMap volume: each file a symlink through ..data to a hidden directory.
  fs.mkdirSync(path.join(dir, '..2026_01_01_00_00_00.000000001'));
  fs.writeFileSync(path.join(dir, '..2026_01_01_00_00_00.000000001', 'app.yaml'), namespaceYAML('app'));
  fs.symlinkSync('..2026_01_01_00_00_00.000000001', path.join(dir, '..data'));
  fs.symlinkSync('..data/app.yaml', path.join(dir, '10-app.yaml'));
  fs.symlinkSync(path.join(outside, 'stolen.yaml'), path.join(dir, '20-out.yaml'));
  fs.symlinkSync('../../../../../../../../../../../../etc/hostname', path.join(dir, '21-up.yaml'));
  fs.symlinkSync('missing.yaml', path.join(dir, '30-dangling.yaml'));
  fs.symlinkSync('..data', path.join(dir, '40-dir.yaml'));
  fs.symlinkSync('50-loop.yaml', path.join(dir, '50-loop.yaml'));
  const r = loadDirectory(dir);
  assert.deepEqual(names(r), ['Namespace app']);
  assert.deepEqual(messages(r), [
    '20-out.yaml: is a symlink to a file outside the config directory',
    '21-up.yaml: is a symlink to a file outside the config directory',
    '30-dangling.yaml: is a symlink whose target does not exist',
    '40-dir.yaml: is a symlink to a directory, not a regular file',
    '50-loop.yaml: is a symlink loop',
  ]);
});

test('a file over the size limit is refused from its size alone, and keeps the objects it had', { timeout: 5_000 }, (t) => {
  const dir = tempDir(t);
  writeRenamed(dir, '10-good.yaml', namespaceYAML('good'));
  writeRenamed(dir, '20-big.yaml', namespaceYAML('big'));
  const first = loadDirectory(dir);
  assert.deepEqual(names(first), ['Namespace good', 'Namespace big']);

  // 5 MiB of comment after a valid object: parses fine, but too big.
  const big = `${namespaceYAML('big2')}${'#'.repeat(5 * 1024 * 1024)}\n`;
  writeRenamed(dir, '20-big.yaml', big);
  // 1 GiB, sparse: refused from fstat without a read.
  const huge = path.join(dir, '30-huge.json');
  fs.closeSync(fs.openSync(huge, 'w'));
  fs.truncateSync(huge, 1024 ** 3);
  // Refused files cost nothing of the directory's budget: a file after them is read.
  writeRenamed(dir, '40-after.yaml', namespaceYAML('after'));
  const { result, ms } = timedLoad(dir, first);
  assert.ok(ms < 500, `took ${ms.toFixed(0)} ms`);
  assert.deepEqual(names(result), ['Namespace good', 'Namespace big', 'Namespace after']);
  assert.deepEqual(messages(result), [
    `20-big.yaml: is ${big.length} bytes, over the limit of 4194304 bytes (4 MiB) per file; keeping the 1 object(s) loaded from it before`,
    '30-huge.json: is 1073741824 bytes, over the limit of 4194304 bytes (4 MiB) per file',
  ]);
  // The limit is an option.
  const small = loadDirectory(dir, undefined, null, { maxFileBytes: 40 });
  assert.equal(messages(small)[0], `10-good.yaml: is ${namespaceYAML('good').length} bytes, over the limit of 40 bytes per file`);
});

test('past the bytes a directory may hold, files are refused in name order and keep what they had', (t) => {
  const dir = tempDir(t);
  const sized = (name: string, bytes: number) => {
    const text = namespaceYAML(name);
    return text + '#'.repeat(bytes - text.length - 1) + '\n';
  };
  const opts = { maxDirectoryBytes: 3_000 };
  writeRenamed(dir, '10-a.yaml', sized('a', 1_000));
  writeRenamed(dir, '20-b.yaml', sized('b', 1_000));
  writeRenamed(dir, '30-c.yaml', sized('c', 500));
  const first = loadDirectory(dir, undefined, null, opts);
  assert.deepEqual(names(first), ['Namespace a', 'Namespace b', 'Namespace c']);

  writeRenamed(dir, '30-c.yaml', sized('c', 1_500));
  writeRenamed(dir, '40-d.yaml', sized('d', 500));
  writeRenamed(dir, '50-e.yaml', sized('e', 600));
  const r = loadDirectory(dir, first, null, opts);
  // a + b = 2,000; c would make 3,500: refused; d fits (2,500); e does not (3,100).
  assert.deepEqual(names(r), ['Namespace a', 'Namespace b', 'Namespace c', 'Namespace d']);
  assert.deepEqual(messages(r), [
    '30-c.yaml: not read: 1500 more bytes would pass the limit of 3000 bytes read per directory (files count in name order); keeping the 1 object(s) loaded from it before',
    '50-e.yaml: not read: 600 more bytes would pass the limit of 3000 bytes read per directory (files count in name order)',
  ]);
  assert.deepEqual(names(loadDirectory(dir, r, null, opts)), names(r), 'the same on the next load');
});

test('past the number of files a directory may hold, the first by name are read; the others are refused and keep what they had', (t) => {
  const dir = tempDir(t);
  const opts = { maxFiles: 3 };
  for (const n of ['c', 'd', 'e']) writeRenamed(dir, `${n}.yaml`, namespaceYAML(n));
  const first = loadDirectory(dir, undefined, null, opts);
  assert.deepEqual(names(first), ['Namespace c', 'Namespace d', 'Namespace e']);
  for (const n of ['a', 'b', 'f']) writeRenamed(dir, `${n}.yaml`, namespaceYAML(n));
  const r = loadDirectory(dir, first, null, opts);
  assert.deepEqual(names(r), ['Namespace a', 'Namespace b', 'Namespace c', 'Namespace d', 'Namespace e']);
  assert.deepEqual(messages(r), [
    'd.yaml: not read: the directory has 6 config files, over the limit of 3; the first 3 by name are read; keeping the 1 object(s) loaded from it before',
    'e.yaml: not read: the directory has 6 config files, over the limit of 3; the first 3 by name are read; keeping the 1 object(s) loaded from it before',
  ]);
  const again = loadDirectory(dir, r, null, opts);
  assert.deepEqual(names(again), names(r), 'the same on the next load');
  assert.deepEqual(messages(again), messages(r));
  // A directory of many files is listed within the limit's memory, and the first by name still win.
  const many = tempDir(t);
  for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(many, `f${String(499 - i).padStart(3, '0')}.yaml`), '');
  const m = loadDirectory(many, undefined, null, { maxFiles: 10 });
  assert.deepEqual(messages(m), ['f010.yaml: not read: the directory has 500 config files, over the limit of 10; the first 10 by name are read']);
  assert.equal(m.signature!.split('\n').length, 10);
});

test('nesting bombs in JSON and YAML are refused in milliseconds, with line and column; other files apply', { timeout: 5_000 }, (t) => {
  const dir = tempDir(t);
  writeRenamed(dir, '00-good.yaml', namespaceYAML('good'));
  const mib = 1024 * 1024;
  const bombs: Record<string, string> = {
    '10-brackets.json': '['.repeat(mib),
    // The reported one: 10 KB of nested objects inside a valid object.
    '11-objects.json': `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"good"},"data":{"k":${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}}}`,
    '20-flow.yaml': '['.repeat(mib),
    '21-flow-maps.yaml': '{a: '.repeat(mib / 4),
    '22-dashes.yaml': '- '.repeat(mib / 2),
    '23-indent.yaml': Array.from({ length: 1_400 }, (_, i) => `${' '.repeat(i)}a:`).join('\n'),
  };
  for (const [name, text] of Object.entries(bombs)) fs.writeFileSync(path.join(dir, name), text);
  loadDirectory(dir); // the parsers' first use compiles them: time the next load
  const { result: r, ms } = timedLoad(dir);
  assert.ok(ms < 200, `six bombs, ${(fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0) / 1024 / 1024).toFixed(1)} MiB, took ${ms.toFixed(0)} ms`);
  assert.deepEqual(names(r), ['Namespace good']);
  assert.deepEqual(messages(r), [
    '10-brackets.json: nested more than 64 levels deep at line 1, column 65',
    `11-objects.json: nested more than 64 levels deep at line 1, column ${bombs['11-objects.json'].indexOf('{"a":{"a"') + 1 + 5 * 62}` /* root and data are levels 1 and 2 */,
    '20-flow.yaml document 1: cannot parse YAML at line 1, column 66: nested more than 64 levels deep',
    '21-flow-maps.yaml document 1: cannot parse YAML at line 1, column 258: nested more than 64 levels deep',
    '22-dashes.yaml document 1: cannot parse YAML at line 1, column 133: nested more than 64 levels deep',
    '23-indent.yaml document 1: cannot parse YAML at line 66, column 66: nested more than 64 levels deep',
  ]);
  // 64 levels are fine, and the limit is an option.
  const deep = tempDir(t);
  fs.writeFileSync(path.join(deep, 'a.json'), `${'['.repeat(64)}${']'.repeat(64)}`);
  fs.writeFileSync(path.join(deep, 'b.yaml'), `${'['.repeat(64)}${']'.repeat(64)}`);
  assert.deepEqual(messages(loadDirectory(deep)), ['a.json document 1: must be an object, not array', 'b.yaml document 1: must be an object, not array']);
  assert.deepEqual(messages(loadDirectory(deep, undefined, null, { maxDepth: 10 })), [
    'a.json: nested more than 10 levels deep at line 1, column 11',
    'b.yaml document 1: cannot parse YAML at line 1, column 12: nested more than 10 levels deep',
  ]);
});

test('YAML aliases: a billion laughs and an alias cycle are refused quickly; other files apply', { timeout: 5_000 }, (t) => {
  const dir = tempDir(t);
  writeRenamed(dir, '00-good.yaml', namespaceYAML('good'));
  // 10^15 values from 15 lines.
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 15; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
  fs.writeFileSync(path.join(dir, '10-laughs.yaml'), `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: good}\ndata:\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
  // An anchor that holds its own alias: a cycle, never-ending when walked.
  fs.writeFileSync(path.join(dir, '20-cycle.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d, namespace: good}\ndata: &d {x: *d}\n');
  const { result, ms } = timedLoad(dir);
  assert.ok(ms < 1_000, `took ${ms.toFixed(0)} ms`);
  assert.deepEqual(names(result), ['Namespace good']);
  assert.deepEqual(messages(result), [
    '10-laughs.yaml document 1: more than 1000000 values in one document (with YAML aliases expanded)',
    '20-cycle.yaml document 1: nested more than 64 levels deep (with YAML aliases expanded)',
  ]);
});

test('a file rewritten in place is never used half-written: the last good version serves until it is complete and still', { timeout: 10_000 }, async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'routes.yaml');
  const v1 = routeYAML('app', ['/a', '/b']);
  const v2 = routeYAML('app', ['/a', '/b', '/c']);
  writeRenamed(dir, 'routes.yaml', v1);
  // Long enough that a slow machine still looks at the half file within it.
  const limits = { settleMs: 400 };
  let last = loadDirectory(dir, undefined, null, limits);
  const seen: string[] = [];
  const paths = (r: LoadResult) => ((r.objects[0]?.object.spec as any)?.rules ?? []).map((rule: any) => rule.matches[0].path.value).join(',');
  const watcher = watchDirectory(dir, (changed) => {
    last = loadDirectory(dir, last, changed, limits);
    seen.push(paths(last) || `(nothing: ${last.errors.map((e) => e.message).join('; ')})`);
  }, { loaded: () => last.signature, limits, pollMs: 60_000 });
  t.after(() => watcher.close());

  // The writer truncates, writes the first rule, pauses, then writes the rest. The first
  // part alone is a valid route with one rule: used, it would answer 404 on /b.
  const fd = fs.openSync(file, 'r+');
  fs.ftruncateSync(fd, 0);
  const cut = v2.indexOf('  - matches', v2.indexOf('/a'));
  fs.writeSync(fd, v2.slice(0, cut), 0);
  await new Promise((r) => setTimeout(r, 150));
  fs.writeSync(fd, v2.slice(cut), cut);
  fs.closeSync(fd);
  await waitFor('the complete file to be used', async () => paths(last) === '/a,/b,/c', 3_000);
  assert.ok(seen.length >= 2, `loads: ${seen.join(' | ')}`);
  for (const s of seen) assert.ok(s === '/a,/b' || s === '/a,/b,/c', `a load used ${s}`);
});

test('a running gateway applies an in-place rewrite once it is still, and a renamed file at once', { timeout: 10_000 }, async (t) => {
  const backend = await startEcho('app');
  t.after(() => backend.close());
  const dir = tempDir(t);
  const port = await freePort();
  writeRenamed(dir, '10-app.yaml', appYAML(port, backend.port, ['/a']));
  const gw = await startStandalone({ configDir: dir, adminAddress: '127.0.0.1:0', addressPool: POOL, log: pino({ level: 'silent' }) });
  t.after(() => gw.close());
  const status = async (p: string) => { const r = await request(`http://${GW}:${port}${p}`); await r.body.dump(); return r.statusCode; };
  await waitFor('/a to serve', async () => (await status('/a')) === 200, 3_000);

  fs.writeFileSync(path.join(dir, '10-app.yaml'), appYAML(port, backend.port, ['/a', '/b']));
  const inPlace = performance.now();
  await waitFor('/b, written in place, to serve', async () => (await status('/b')) === 200, 3_000);
  const inPlaceMs = performance.now() - inPlace;
  writeRenamed(dir, '20-more.yaml', routeYAML('more', ['/c']));
  const renamed = performance.now();
  await waitFor('/c, renamed into place, to serve', async () => (await status('/c')) === 200, 3_000);
  const renamedMs = performance.now() - renamed;
  // 50 ms from its ctime, which the kernel's coarse clock may put a few ms early.
  assert.ok(inPlaceMs >= 40, `the in-place rewrite waited ${inPlaceMs.toFixed(0)} ms to settle`);
  assert.ok(inPlaceMs < 1_000, `the in-place rewrite served after ${inPlaceMs.toFixed(0)} ms`);
  assert.ok(renamedMs < 300, `the renamed file served after ${renamedMs.toFixed(0)} ms`);
});

const KEY = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4ypbH';

test('a Secret with a syntax error: the error gives file, document, line and column, never its data', (t) => {
  const dir = tempDir(t);
  writeRenamed(dir, '00-good.yaml', namespaceYAML('good'));
  const head = 'apiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: good}\ntype: kubernetes.io/tls\n';
  const broken: Record<string, string> = {
    // Read as an alias, whose name js-yaml would quote.
    '10-alias.yaml': `${head}data:\n  tls.crt: Zm9v\n  tls.key: *${KEY}\n`,
    '11-tag.yaml': `${head}data:\n  tls.key: !<${KEY}> x\n`,
    '12-quote.yaml': `${head}data:\n  tls.key: "${KEY}\n`,
    '13-indent.yaml': `${head}data:\n  tls.crt: Zm9v\n   tls.key: ${KEY}\n`,
    '14-tab.yaml': `${head}data:\n\ttls.key: ${KEY}\n`,
    '15-second-doc.yaml': `${namespaceYAML('x')}---\n${head}data: {tls.key: ${KEY}: x}\n`,
    '16-handle.yaml': `${head}data:\n  tls.key: !${KEY}! x\n`,
    // V8's JSON.parse would quote the text around the error.
    '20-bare.json': `{"apiVersion": "v1", "kind": "Secret", "data": {"tls.key": ${KEY}}}`,
    '21-escape.json': `{"apiVersion": "v1", "kind": "Secret", "data": {"tls.key": "${KEY}\\q"}}`,
    '22-unterminated.json': `{"apiVersion": "v1", "kind": "Secret", "data": {"tls.key": "${KEY}`,
  };
  for (const [name, text] of Object.entries(broken)) fs.writeFileSync(path.join(dir, name), text);
  const r = loadDirectory(dir);
  assert.deepEqual(names(r), ['Namespace good']);
  assert.equal(r.errors.length, Object.keys(broken).length);
  for (const e of r.errors) {
    assert.deepEqual(leakedPieces(JSON.stringify(e), KEY), [], e.message);
    assert.match(e.message, /^\S+ (document \d+: )?cannot parse (YAML|JSON) at line \d+, column \d+: \w/, e.message);
  }
  assert.equal(r.errors.find((e) => e.file === '15-second-doc.yaml')!.document, 2);
  // (js-yaml marks the end of the alias.)
  assert.deepEqual(messages(r).slice(0, 1), [`10-alias.yaml document 1: cannot parse YAML at line 7, column ${13 + KEY.length}: an alias (*name) to an anchor not defined before it`]);
  assert.equal(r.errors.find((e) => e.file === '20-bare.json')!.message,
    `20-bare.json: cannot parse JSON at line 1, column ${broken['20-bare.json'].indexOf(KEY) + 1}: expected a value (an object, array, string, number, true, false or null)`);
});

test('property: whatever breaks a file holding a secret, no error quotes the secret', { timeout: 20_000 }, (t) => {
  const dir = tempDir(t);
  const secret = fc.stringMatching(/^[A-Za-z0-9+/]{24,40}$/);
  // Pieces of YAML and JSON syntax, the secret among them, in any order.
  const piece = (s: string) => fc.constantFrom('\n', ' ', '  ', '\t', ':', ': ', '- ', '[', ']', '{', '}', ',', '"', "'", '*', '&', '!', '!<', '>', '|', '#', '---\n', '%YAML 1.2\n', '?', '\\', 'key', 'tls.key', '@', '`', s, `*${s}`, `&${s}`, `!${s}`, `"${s}`, `${s}"`);
  const doc = secret.chain((s) => fc.tuple(fc.constant(s), fc.array(piece(s), { minLength: 1, maxLength: 30 }), fc.constantFrom('x.yaml', 'x.json')));
  fc.assert(fc.property(doc, ([s, pieces, name]) => {
    fs.rmSync(path.join(dir, 'x.yaml'), { force: true });
    fs.rmSync(path.join(dir, 'x.json'), { force: true });
    fs.writeFileSync(path.join(dir, name), pieces.join(''));
    const r = loadDirectory(dir);
    for (const e of r.errors) {
      if (leakedPieces(JSON.stringify(e), s, 12).length) return false;
    }
    return true;
  }), { numRuns: 300 });
});
