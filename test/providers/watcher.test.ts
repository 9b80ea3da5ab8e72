// watchDirectory on a real directory with real fs.watch: add, change,
// remove and rename-over are seen within one second, bursts are debounced,
// hidden temp files are not changes, and polling alone is enough.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { directoryChanges, directorySignature, lineIn, nextPollDelay, watchDirectory } from '../../src/providers/file/watcher.ts';
import type { WatchOptions } from '../../src/providers/file/watcher.ts';
import { loadDirectory } from '../../src/providers/file/loader.ts';

interface Probe {
  dir: string;
  calls: number;
  /** Resolves with the time it took once calls exceeds `before`; rejects after `ms`. */
  next(before: number, ms?: number): Promise<number>;
}

function setup(t: { after(fn: () => void): void }, opts: WatchOptions = {}): Probe {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-watch-'));
  fs.writeFileSync(path.join(dir, 'base.yaml'), 'a: 1\n');
  const probe: Probe = {
    dir,
    calls: 0,
    async next(before, ms = 1000) {
      const start = performance.now();
      while (performance.now() - start < ms) {
        if (probe.calls > before) return performance.now() - start;
        await sleep(10);
      }
      throw new Error(`no change seen within ${ms} ms`);
    },
  };
  const w = watchDirectory(dir, () => { probe.calls++; }, opts);
  t.after(() => {
    w.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return probe;
}

for (const mode of ['fs.watch and polling', 'polling alone'] as const) {
  const opts: WatchOptions = mode === 'polling alone' ? { fsWatch: false } : {};

  test(`${mode}: add, change, remove and rename-over are each seen within one second`, async (t) => {
    const p = setup(t, opts);
    await sleep(50);
    const steps: [string, () => void][] = [
      ['add', () => fs.writeFileSync(path.join(p.dir, 'routes.yaml'), 'kind: HTTPRoute\n')],
      ['change', () => fs.writeFileSync(path.join(p.dir, 'routes.yaml'), 'kind: HTTPRoute\nmetadata: {}\n')],
      ['change, same size', () => fs.writeFileSync(path.join(p.dir, 'routes.yaml'), 'kind: HTTPRoute\nmetadata: []\n')],
      ['rename over', () => {
        fs.writeFileSync(path.join(p.dir, '.routes.yaml.tmp'), 'kind: GRPCRoute\n');
        fs.renameSync(path.join(p.dir, '.routes.yaml.tmp'), path.join(p.dir, 'routes.yaml'));
      }],
      ['add json', () => fs.writeFileSync(path.join(p.dir, 'x.json'), '{}')],
      ['remove', () => fs.rmSync(path.join(p.dir, 'routes.yaml'))],
    ];
    for (const [what, act] of steps) {
      const before = p.calls;
      act();
      const took = await p.next(before).catch((e) => assert.fail(`${what}: ${e.message}`));
      assert.ok(took < 1000, `${what} took ${took} ms`);
      await sleep(mode === 'polling alone' ? 50 : 120); // let the debounce settle
    }
  });
}

test('a burst of writes is one call', async (t) => {
  const p = setup(t);
  await sleep(50);
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(p.dir, `f${i % 4}.yaml`), `n: ${i}\n`);
  await p.next(0);
  await sleep(700); // past a poll, too
  assert.equal(p.calls, 1);
});

test('hidden temp files and other extensions are not changes', async (t) => {
  const p = setup(t);
  await sleep(50);
  fs.writeFileSync(path.join(p.dir, '.routes.yaml.tmp'), 'x: 1\n');
  fs.writeFileSync(path.join(p.dir, 'notes.txt'), 'x\n');
  fs.mkdirSync(path.join(p.dir, 'sub'));
  fs.writeFileSync(path.join(p.dir, 'sub', 'x.yaml'), 'x: 1\n');
  await sleep(800);
  assert.equal(p.calls, 0);
});

test('a directory that vanishes does not throw; when it is back with files, that is a change', async (t) => {
  const p = setup(t);
  await sleep(50);
  fs.rmSync(p.dir, { recursive: true, force: true });
  await p.next(0, 1500);
  const before = p.calls;
  await sleep(200);
  fs.mkdirSync(p.dir);
  fs.writeFileSync(path.join(p.dir, 'new.yaml'), 'b: 2\n');
  await p.next(before, 1500);
});

test('an exception from onChange goes to onError and the watch goes on', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-watch-'));
  const errors: unknown[] = [];
  let calls = 0;
  const w = watchDirectory(dir, () => { calls++; throw new Error('boom'); }, { onError: (e) => errors.push(e) });
  t.after(() => { w.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  fs.writeFileSync(path.join(dir, 'a.yaml'), '1');
  await sleep(300);
  fs.writeFileSync(path.join(dir, 'b.yaml'), '2');
  await sleep(300);
  assert.equal(calls, 2);
  assert.equal(errors.length, 2);
});

test('directorySignature covers name, size, mtime and inode of config files only', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-sig-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const empty = directorySignature(dir);
  fs.writeFileSync(path.join(dir, '.x.yaml.tmp'), 'x');
  assert.equal(directorySignature(dir), empty);
  fs.writeFileSync(path.join(dir, 'a.yaml'), 'x');
  const one = directorySignature(dir);
  assert.notEqual(one, empty);
  assert.equal(directorySignature(path.join(dir, 'missing')), '');
});

test('directoryChanges names what differs from a signature, as comparing with a fresh directorySignature says, through adds, edits, removals and maxFiles', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-sig-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const signatures: string[] = [];
  const agree = async (step: string, maxFiles?: number) => {
    const now = directorySignature(dir, maxFiles);
    signatures.push(now);
    for (const s of signatures) {
      const found = await directoryChanges(dir, s, maxFiles);
      assert.equal(found !== null && found.size === 0, s === now, `${step}: against ${JSON.stringify(s)}`);
    }
  };
  const changesSince = async (s: string, maxFiles?: number) => {
    const found = await directoryChanges(dir, s, maxFiles);
    return found === null ? null : [...found].sort();
  };
  await agree('empty');
  fs.writeFileSync(path.join(dir, 'b.yaml'), 'b: 1\n');
  await agree('one file');
  fs.writeFileSync(path.join(dir, 'a.yaml'), 'a: 1\n');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'not config');
  fs.writeFileSync(path.join(dir, '.hidden.yaml'), 'x');
  await agree('two files and ignored ones');
  assert.deepEqual(await changesSince(signatures[1]), ['a.yaml']);
  fs.writeFileSync(path.join(dir, 'a.yaml'), 'a: 22\n');
  await agree('a file edited');
  assert.deepEqual(await changesSince(signatures[2]), ['a.yaml']);
  fs.renameSync(path.join(dir, 'b.yaml'), path.join(dir, 'c.yaml'));
  await agree('a file renamed');
  assert.deepEqual(await changesSince(signatures[3]), ['b.yaml', 'c.yaml']);
  fs.rmSync(path.join(dir, 'a.yaml'));
  await agree('a file removed');
  assert.deepEqual(await changesSince(signatures[4]), ['a.yaml']);
  fs.writeFileSync(path.join(dir, 'a.yaml'), 'a: 1\n');
  fs.symlinkSync(path.join(dir, 'gone.yaml'), path.join(dir, 'dangling.yaml'));
  await agree('a dangling symlink');
  // Past maxFiles the first files by name count, whatever order readdir gives; what differs is not told file by file.
  for (const n of ['d.yaml', 'e.yaml']) fs.writeFileSync(path.join(dir, n), 'x: 1\n');
  signatures.length = 0;
  await agree('past maxFiles', 2);
  fs.writeFileSync(path.join(dir, 'e.yaml'), 'x: 22\n');
  await agree('a file past maxFiles edited', 2);
  fs.writeFileSync(path.join(dir, 'a.yaml'), 'a: 333\n');
  await agree('a counted file edited', 2);
  assert.equal(await changesSince(signatures[0], 2), null);
  assert.deepEqual(await changesSince(''), ['a.yaml', 'c.yaml', 'd.yaml', 'e.yaml']);
  assert.deepEqual(await directoryChanges(path.join(dir, 'missing'), ''), new Set());
  assert.equal(await directoryChanges(path.join(dir, 'missing'), signatures[0]), null);
});

test('a LoadResult carries the directorySignature of what it read', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-sig-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'a.yaml'), '');
  fs.writeFileSync(path.join(dir, 'b.json'), '');
  fs.writeFileSync(path.join(dir, 'notes.txt'), '');
  fs.mkdirSync(path.join(dir, 'sub.yaml'));
  const loaded = loadDirectory(dir);
  assert.equal(loaded.signature, directorySignature(dir));
  fs.writeFileSync(path.join(dir, 'a.yaml'), '# changed');
  assert.notEqual(loaded.signature, directorySignature(dir));
});

test('with loaded(), polling compares the directory with what was loaded last', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-watch-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'a.yaml'), '');
  let last = loadDirectory(dir);
  let calls = 0;
  const w = watchDirectory(dir, () => { calls++; last = loadDirectory(dir, last); }, { fsWatch: false, pollMs: 30, loaded: () => last.signature });
  t.after(() => w.close());
  await sleep(150);
  assert.equal(calls, 0);
  fs.writeFileSync(path.join(dir, 'b.yaml'), '');
  await sleep(200);
  assert.equal(calls, 1);
});

test('onChange is told which files fs.watch saw change', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-watch-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const seen: (string[] | null)[] = [];
  const w = watchDirectory(dir, (changed) => { seen.push(changed === null ? null : [...changed].sort()); }, { pollMs: 10_000 });
  t.after(() => w.close());
  fs.writeFileSync(path.join(dir, '.tmp'), 'x');
  fs.renameSync(path.join(dir, '.tmp'), path.join(dir, 'a.yaml'));
  fs.writeFileSync(path.join(dir, 'b.yaml'), 'x');
  await sleep(200);
  assert.deepEqual(seen.flatMap((s) => s ?? ['(unknown)']).sort().filter((v, i, a) => a.indexOf(v) === i), ['a.yaml', 'b.yaml']);
});

test('loadDirectory with the changed files re-reads those and takes the others as they were', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-hint-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;
  fs.writeFileSync(path.join(dir, 'a.yaml'), ns('a1'));
  fs.writeFileSync(path.join(dir, 'b.yaml'), ns('b1'));
  const first = loadDirectory(dir);
  // Renamed into place, so used at once (an in-place rewrite would wait to settle).
  for (const [name, text] of [['a.yaml', ns('a2')], ['b.yaml', ns('b2')]]) {
    fs.writeFileSync(path.join(dir, `.${name}.tmp`), text);
    fs.renameSync(path.join(dir, `.${name}.tmp`), path.join(dir, name));
  }
  const hinted = loadDirectory(dir, first, new Set(['b.yaml']));
  assert.deepEqual(hinted.objects.map((o) => o.object.metadata.name), ['a1', 'b2']);
  // What polling compares: the directory no longer matches what was loaded.
  assert.notEqual(hinted.signature, directorySignature(dir));
  const full = loadDirectory(dir, hinted, null);
  assert.deepEqual(full.objects.map((o) => o.object.metadata.name), ['a2', 'b2']);
  assert.equal(full.signature, directorySignature(dir));
});

test('a file rewritten in place is handed on again once it can have settled', { timeout: 5_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-watch-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;
  fs.writeFileSync(path.join(dir, 'a.yaml'), ns('one'));
  const limits = { settleMs: 100 };
  let last = loadDirectory(dir, undefined, null, limits);
  const calls: (string[] | null)[] = [];
  // No polling within the test: only fs.watch and the settle recheck can bring the change.
  const w = watchDirectory(dir, (changed) => {
    calls.push(changed === null ? null : [...changed]);
    last = loadDirectory(dir, last, changed, limits);
  }, { loaded: () => last.signature, limits, pollMs: 60_000 });
  t.after(() => w.close());
  fs.writeFileSync(path.join(dir, 'a.yaml'), ns('two'));
  await sleep(50);
  assert.deepEqual(last.objects.map((o) => o.object.metadata.name), ['one'], 'not yet settled');
  await sleep(250);
  assert.deepEqual(last.objects.map((o) => o.object.metadata.name), ['two']);
  assert.deepEqual(calls.at(-1), ['a.yaml'], 'the recheck names the file');
  await sleep(200);
  const settledCalls = calls.length;
  await sleep(200);
  assert.equal(calls.length, settledCalls, 'no more calls once the directory is as loaded');
});

test('directorySignature lists the first maxFiles files by name, as the loader reads them', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-sig-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const n of ['d', 'a', 'c', 'b']) fs.writeFileSync(path.join(dir, `${n}.yaml`), '');
  const lines = directorySignature(dir, 2).split('\n');
  assert.deepEqual(lines.map((l) => l.split('\u0000')[0]), ['a.yaml', 'b.yaml']);
  assert.equal(loadDirectory(dir, undefined, null, { maxFiles: 2 }).signature, directorySignature(dir, 2));
});

test('a slow look pushes the next one back: polling stays within 2% of a core', () => {
  assert.equal(nextPollDelay(500, 2), 500, 'a quick look keeps the interval');
  assert.equal(nextPollDelay(500, 40), 2000, '40 ms looks (5,000 files) run every 2 s');
  assert.equal(nextPollDelay(50, 0.3), 50);
  for (const look of [0, 1, 10, 40, 400]) assert.ok(look / (look + nextPollDelay(500, look)) <= 0.02, `look ${look} ms`);
});

test('lineIn finds a file\'s line in a signature, first, middle or last, and only a whole name', () => {
  const sig = ['a.yaml\u00001:2:3:4', 'b.yaml\u00005:6:7:8', 'ab.yaml\u00009:9:9:9'].join('\n');
  assert.equal(lineIn(sig, 'a.yaml'), 'a.yaml\u00001:2:3:4');
  assert.equal(lineIn(sig, 'b.yaml'), 'b.yaml\u00005:6:7:8');
  assert.equal(lineIn(sig, 'ab.yaml'), 'ab.yaml\u00009:9:9:9');
  assert.equal(lineIn(sig, 'c.yaml'), undefined);
  assert.equal(lineIn(sig, 'yaml'), undefined);
  assert.equal(lineIn('', 'a.yaml'), undefined);
});

test('with the changed files, the listing is the last one with those that appeared or went, as a full listing has it', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-hint-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;
  for (const n of ['b', 'd', 'f']) fs.writeFileSync(path.join(dir, `${n}.yaml`), ns(n));
  const first = loadDirectory(dir);
  assert.deepEqual(first.names, ['b.yaml', 'd.yaml', 'f.yaml']);
  // Added before, between and after; one removed; a directory with a config file's name; a name seen but not created.
  fs.writeFileSync(path.join(dir, 'a.yaml'), ns('a'));
  fs.writeFileSync(path.join(dir, 'c.yaml'), ns('c'));
  fs.writeFileSync(path.join(dir, 'g.yaml'), ns('g'));
  fs.rmSync(path.join(dir, 'd.yaml'));
  fs.mkdirSync(path.join(dir, 'e.yaml'));
  const changed = new Set(['a.yaml', 'c.yaml', 'g.yaml', 'd.yaml', 'e.yaml', 'x.yaml', '.c.yaml.tmp']);
  const hinted = loadDirectory(dir, first, changed);
  assert.deepEqual(hinted.names, ['a.yaml', 'b.yaml', 'c.yaml', 'f.yaml', 'g.yaml']);
  assert.deepEqual(hinted.objects.map((o) => o.object.metadata.name), ['a', 'b', 'c', 'f', 'g']);
  assert.equal(hinted.signature, directorySignature(dir), 'the same directory as a full look sees');
  const full = loadDirectory(dir, hinted, null);
  assert.deepEqual(full.names, hinted.names);
  // Past maxFiles which files count depends on every name: the directory is listed again, the first ones by name
  // are read, and the one pushed out is refused and keeps what it had.
  fs.writeFileSync(path.join(dir, '0.yaml'), ns('zero'));
  const over = loadDirectory(dir, full, new Set(['0.yaml']), { maxFiles: 5 });
  assert.deepEqual(over.objects.map((o) => o.object.metadata.name), ['zero', 'a', 'b', 'c', 'f', 'g']);
  assert.equal(over.names, undefined);
  assert.ok(over.errors.some((e) => e.file === 'g.yaml' && /over the limit of 5/.test(e.reason)), JSON.stringify(over.errors));
});
