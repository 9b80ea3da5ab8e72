// The directory loader: which files, documents and objects it reads, the
// errors it reports, and "a bad config never replaces a good one".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDirectory } from '../../src/providers/file/loader.ts';
import { isConfigFile } from '../../src/providers/file/listing.ts';
import type { LoadResult } from '../../src/providers/file/loader.ts';
import { directorySignature } from '../../src/providers/file/watcher.ts';

function tmpdir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-loader-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a file as editors and kubectl-like tools do: a temp file renamed into place, used at once. */
function write(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, name));
}

function names(r: LoadResult): string[] {
  return r.objects.map((o) => `${o.object.kind} ${o.object.metadata.namespace ?? ''}/${o.object.metadata.name}`);
}

const route = (name: string, pathValue = '/', ns = 'team-a') => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${ns}}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: "${pathValue}"}}]
    backendRefs: [{name: ${name}, port: 5000}]
`;

const svc = (name: string, port: number | string = 80) => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: team-a}
spec: {ports: [{port: ${typeof port === 'string' ? JSON.stringify(port) : port}}]}
`;

test('isConfigFile: yaml, yml and json, never hidden files', () => {
  assert.ok(isConfigFile('a.yaml'));
  assert.ok(isConfigFile('a.yml'));
  assert.ok(isConfigFile('a.json'));
  assert.ok(!isConfigFile('.a.yaml'));
  assert.ok(!isConfigFile('.a.yaml.tmp'));
  assert.ok(!isConfigFile('a.yaml.bak'));
  assert.ok(!isConfigFile('README.md'));
});

test('reads *.yaml, *.yml, *.json directly in the directory, multi-document, in file-name order', (t) => {
  const dir = tmpdir(t);
  write(dir, 'b.yaml', `---\n# only a comment\n---\n${route('b1')}---\n\n---\n${svc('b2')}`);
  write(dir, 'a.yml', route('a1'));
  write(dir, 'c.json', JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } }));
  write(dir, 'd.json', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm1', namespace: 'team-a' } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm2', namespace: 'team-a' } },
  ] }));
  write(dir, '.hidden.yaml', svc('hidden'));
  write(dir, '.e.yaml.tmp', svc('tmp'));
  write(dir, 'notes.txt', svc('txt'));
  write(dir, 'empty.yaml', '');
  fs.mkdirSync(path.join(dir, 'sub.yaml'));
  fs.mkdirSync(path.join(dir, 'nested'));
  write(path.join(dir, 'nested'), 'x.yaml', svc('nested'));
  write(dir, 'deploy.yaml', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n');

  const r = loadDirectory(dir);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(names(r), [
    'HTTPRoute team-a/a1', 'HTTPRoute team-a/b1', 'Service team-a/b2', 'Namespace /team-a', 'ConfigMap team-a/cm1', 'ConfigMap team-a/cm2',
  ]);
  assert.deepEqual(r.objects.map((o) => o.source), [
    { file: 'a.yml', document: 1 }, { file: 'b.yaml', document: 2 }, { file: 'b.yaml', document: 4 }, { file: 'c.json', document: 1 },
    { file: 'd.json', document: 1, item: 1 }, { file: 'd.json', document: 1, item: 2 },
  ]);
  // Objects come out validated and defaulted.
  assert.equal((r.objects[0].object.spec as any).rules[0].backendRefs[0].weight, 1);
});

test('errors name file, document, object and field', (t) => {
  const dir = tmpdir(t);
  write(dir, 'routes.yaml', `${route('ok')}---\n${route('keystone', 'v3')}`);
  const r = loadDirectory(dir);
  assert.deepEqual(names(r), ['HTTPRoute team-a/ok']);
  assert.equal(r.errors.length, 1);
  const e = r.errors[0];
  assert.deepEqual({ ...e }, {
    file: 'routes.yaml',
    document: 2,
    item: undefined,
    object: 'HTTPRoute team-a/keystone',
    field: 'spec.rules[0].matches[0].path',
    reason: "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
    message: "routes.yaml document 2 (HTTPRoute team-a/keystone): spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
  });
});

test('an object without a name or kind is reported without an object name', (t) => {
  const dir = tmpdir(t);
  write(dir, 'x.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {ports: [{port: 80}]}\n---\n- a list\n');
  const r = loadDirectory(dir);
  assert.deepEqual(r.objects, []);
  assert.deepEqual(r.errors.map((e) => e.message), [
    'x.yaml document 1: metadata.name: is required',
    'x.yaml document 2: must be an object, not array',
  ]);
});

test('a file that does not parse keeps the objects it had; the error names file, document and line', (t) => {
  const dir = tmpdir(t);
  write(dir, 'routes.yaml', `${route('r1')}---\n${route('r2')}`);
  write(dir, 'svc.yaml', svc('s1'));
  const good = loadDirectory(dir);
  assert.deepEqual(good.errors, []);
  assert.deepEqual(names(good), ['HTTPRoute team-a/r1', 'HTTPRoute team-a/r2', 'Service team-a/s1']);

  write(dir, 'routes.yaml', `${route('r1')}---\nkind: HTTPRoute\nmetadata: {name: [unclosed\n`);
  const bad = loadDirectory(dir, good);
  assert.deepEqual(names(bad), ['HTTPRoute team-a/r1', 'HTTPRoute team-a/r2', 'Service team-a/s1']);
  assert.equal(bad.objects[0].object, good.objects[0].object);
  assert.equal(bad.errors.length, 1);
  assert.equal(bad.errors[0].file, 'routes.yaml');
  assert.equal(bad.errors[0].document, 2);
  assert.match(bad.errors[0].message, /^routes\.yaml document 2: cannot parse YAML at line \d+, column \d+: .+; keeping the 2 object\(s\) loaded from it before$/);

  // Still broken on the next load: still kept (previous is the last result).
  const again = loadDirectory(dir, bad);
  assert.deepEqual(names(again), names(good));

  // Without a previous good load, nothing from the broken file.
  const cold = loadDirectory(dir);
  assert.deepEqual(names(cold), ['Service team-a/s1']);
  assert.match(cold.errors[0].message, /cannot parse YAML/);
  assert.doesNotMatch(cold.errors[0].message, /keeping/);

  // Fixed: the new content is read.
  write(dir, 'routes.yaml', route('r3'));
  assert.deepEqual(names(loadDirectory(dir, again)), ['HTTPRoute team-a/r3', 'Service team-a/s1']);
});

test('a JSON file that does not parse keeps its objects too', (t) => {
  const dir = tmpdir(t);
  write(dir, 'ns.json', JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } }));
  const good = loadDirectory(dir);
  write(dir, 'ns.json', '{"apiVersion": "v1", "kind": ');
  const bad = loadDirectory(dir, good);
  assert.deepEqual(names(bad), ['Namespace /a']);
  assert.match(bad.errors[0].message, /^ns\.json: cannot parse JSON at line 1, column 30: unexpected end of input; keeping the 1 object\(s\) loaded from it before$/);
});

test('an invalid object keeps its previous valid version; a new invalid object is left out', (t) => {
  const dir = tmpdir(t);
  write(dir, 'routes.yaml', `${route('keystone', '/v3')}---\n${svc('keystone')}`);
  const good = loadDirectory(dir);
  assert.deepEqual(good.errors, []);

  write(dir, 'routes.yaml', `${route('keystone', 'v3')}---\n${svc('keystone', 'http')}---\n${route('nova', 'v2')}`);
  const bad = loadDirectory(dir, good);
  assert.deepEqual(names(bad), ['HTTPRoute team-a/keystone', 'Service team-a/keystone']);
  assert.equal(((bad.objects[0].object.spec as any).rules[0].matches[0].path.value), '/v3');
  assert.deepEqual(bad.errors.map((e) => e.message), [
    "routes.yaml document 1 (HTTPRoute team-a/keystone): spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']; keeping the previous valid version",
    'routes.yaml document 2 (Service team-a/keystone): spec.ports[0].port: must be of type integer, not string; keeping the previous valid version',
    "routes.yaml document 3 (HTTPRoute team-a/nova): spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
  ]);
});

test('the previous valid version follows the object to another file', (t) => {
  const dir = tmpdir(t);
  write(dir, 'a.yaml', route('keystone', '/v3'));
  const good = loadDirectory(dir);
  fs.rmSync(path.join(dir, 'a.yaml'));
  write(dir, 'b.yaml', route('keystone', 'v3'));
  const moved = loadDirectory(dir, good);
  assert.deepEqual(names(moved), ['HTTPRoute team-a/keystone']);
  assert.deepEqual(moved.objects[0].source, { file: 'b.yaml', document: 1 });
});

test('a removed file takes its objects with it', (t) => {
  const dir = tmpdir(t);
  write(dir, 'a.yaml', route('a'));
  write(dir, 'b.yaml', route('b'));
  const first = loadDirectory(dir);
  fs.rmSync(path.join(dir, 'a.yaml'));
  const second = loadDirectory(dir, first);
  assert.deepEqual(names(second), ['HTTPRoute team-a/b']);
  assert.deepEqual(second.errors, []);
});

test('duplicates: the first in file-name order wins, the second is reported', (t) => {
  const dir = tmpdir(t);
  write(dir, '20-b.yaml', route('keystone', '/second'));
  write(dir, '10-a.yaml', `${svc('other')}---\n${route('keystone', '/first')}`);
  write(dir, '30-c.yaml', `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: keystone}\nspec: {}\n---\n${route('keystone', '/third', 'default')}`);
  const r = loadDirectory(dir);
  assert.deepEqual(names(r), ['Service team-a/other', 'HTTPRoute team-a/keystone', 'HTTPRoute default/keystone']);
  assert.equal((r.objects[1].object.spec as any).rules[0].matches[0].path.value, '/first');
  assert.deepEqual(r.errors.map((e) => e.message), [
    '20-b.yaml document 1 (HTTPRoute team-a/keystone): duplicate: already defined in 10-a.yaml document 2; this one is ignored',
    '30-c.yaml document 2 (HTTPRoute default/keystone): duplicate: already defined in 30-c.yaml document 1; this one is ignored',
  ]);
});

test('a missing directory is an error, and keeps what was loaded', (t) => {
  const dir = tmpdir(t);
  write(dir, 'a.yaml', route('a'));
  const first = loadDirectory(dir);
  const gone = path.join(dir, 'nope');
  const r = loadDirectory(gone, first);
  assert.deepEqual(names(r), ['HTTPRoute team-a/a']);
  assert.match(r.errors[0].message, /cannot read the directory/);
});

test('YAML aliases are bounded (no billion laughs)', (t) => {
  const dir = tmpdir(t);
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 12; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
  write(dir, 'bomb.yaml', `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
  const r = loadDirectory(dir);
  assert.deepEqual(r.objects, []);
  assert.equal(r.errors.length, 1);
});

test('YAML reads the same through the fast parser and the alias-bounded one', (t) => {
  const dir = tmpdir(t);
  const body = `apiVersion: v1
kind: ConfigMap
metadata: {name: NAME, namespace: team-a, creationTimestamp: 2026-01-02T03:04:05Z, labels: {on: "yes", n: "010"}}
data: {a: "1", b: yes, c: 2026-01-02}
`;
  write(dir, 'plain.yaml', body.replace('NAME', 'plain'));
  // An alias anywhere sends the file to the parser that bounds alias expansion.
  write(dir, 'aliased.yaml', `${body.replace('NAME', 'aliased').replace('data: {a: "1"', 'x: &v "1"\ndata: {a: *v')}`);
  const r = loadDirectory(dir);
  assert.deepEqual(r.errors, []);
  const [aliased, plain] = r.objects.map((o) => o.object as any);
  assert.equal(plain.metadata.creationTimestamp, '2026-01-02T03:04:05Z', 'a timestamp stays a string');
  assert.equal(plain.metadata.labels.n, '010');
  assert.deepEqual(plain.data, aliased.data);
});

test('a parse error in a later document names that document', (t) => {
  const dir = tmpdir(t);
  write(dir, 'multi.yaml', `# routes\n${route('one')}---\n${route('two')}---\n\n${route('three').replace('kind: HTTPRoute', 'kind: [HTTPRoute')}`);
  const r = loadDirectory(dir);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0].message, /^multi\.yaml document 3: cannot parse YAML at line \d+, column \d+: /);
});

test('a file rewritten in place keeps its previous objects until it has stopped changing for settleMs', (t) => {
  const dir = tmpdir(t);
  write(dir, 'routes.yaml', route('r', '/v1'));
  const first = loadDirectory(dir);
  // In place: the same inode, truncated and written again.
  fs.writeFileSync(path.join(dir, 'routes.yaml'), route('r', '/v2'));
  const seen = Date.now();
  const opts = (at: number) => ({ settleMs: 1000, now: () => at });
  const pathOf = (r: LoadResult) => (r.objects[0].object.spec as any).rules[0].matches[0].path.value;

  const settling = loadDirectory(dir, first, null, opts(seen));
  assert.equal(pathOf(settling), '/v1');
  assert.deepEqual(settling.errors, []);
  assert.equal(settling.objects[0].object, first.objects[0].object, 'the very objects of before');
  // Listed with the content in use, so that a watcher sees the directory differ and comes back.
  assert.notEqual(settling.signature, directorySignature(dir));
  assert.equal(pathOf(loadDirectory(dir, settling, null, opts(seen + 500))), '/v1');

  const settled = loadDirectory(dir, settling, null, opts(seen + 1000));
  assert.equal(pathOf(settled), '/v2');
  assert.equal(settled.signature, directorySignature(dir));
});

test('a file renamed into place, or new, is used at once', (t) => {
  const dir = tmpdir(t);
  write(dir, 'routes.yaml', route('r', '/v1'));
  const first = loadDirectory(dir, undefined, null, { settleMs: 60_000 });
  write(dir, 'routes.yaml', route('r', '/v2'));
  write(dir, 'more.yaml', route('m', '/m'));
  const next = loadDirectory(dir, first, null, { settleMs: 60_000 });
  assert.deepEqual(names(next), ['HTTPRoute team-a/m', 'HTTPRoute team-a/r']);
  assert.equal((next.objects[1].object.spec as any).rules[0].matches[0].path.value, '/v2');
});

test('a file whose last change is settleMs old is used at once, even rewritten in place', async (t) => {
  const dir = tmpdir(t);
  write(dir, 'routes.yaml', route('r', '/v1'));
  const first = loadDirectory(dir);
  fs.writeFileSync(path.join(dir, 'routes.yaml'), route('r', '/v2'));
  await new Promise((r) => setTimeout(r, 40));
  // Nothing looked at the file while it was written: its ctime says it has been still for 40 ms.
  const next = loadDirectory(dir, first, null, { settleMs: 30 });
  assert.equal((next.objects[0].object.spec as any).rules[0].matches[0].path.value, '/v2');
});

test('another change while a rewrite settles starts the wait again', { timeout: 5_000 }, async (t) => {
  const dir = tmpdir(t);
  const file = path.join(dir, 'routes.yaml');
  write(dir, 'routes.yaml', route('r', '/v1'));
  const opts = { settleMs: 300 };
  const pathOf = (r: LoadResult) => (r.objects[0].object.spec as any).rules[0].matches[0].path.value;
  let r = loadDirectory(dir, undefined, null, opts);
  fs.writeFileSync(file, route('r', '/v2'));
  r = loadDirectory(dir, r, null, opts);
  assert.equal(pathOf(r), '/v1');
  await new Promise((res) => setTimeout(res, 150));
  fs.writeFileSync(file, route('r', '/v3'));
  r = loadDirectory(dir, r, null, opts);
  await new Promise((res) => setTimeout(res, 150));
  r = loadDirectory(dir, r, null, opts);
  assert.equal(pathOf(r), '/v1', '/v2 was replaced 150 ms ago: not still for 300 ms');
  await new Promise((res) => setTimeout(res, 200));
  r = loadDirectory(dir, r, null, opts);
  assert.equal(pathOf(r), '/v3');
});

test('limits are checked when given', () => {
  assert.throws(() => loadDirectory('/nonexistent', undefined, null, { maxFileBytes: 0 }), /maxFileBytes: must be an integer >= 1, not 0/);
  assert.throws(() => loadDirectory('/nonexistent', undefined, null, { settleMs: 1.5 }), /settleMs: must be an integer >= 0/);
});

test('property: a load from the changed files alone gives what a load of every file gives', async (t) => {
  const fc = (await import('fast-check')).default;
  const ns = (name: string, extra = '') => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n${extra}`;
  const contents = [
    ns('a'), ns('b'), ns('c'), `${ns('d')}---\n${ns('e')}`,
    ns('a', 'spec: {}\n'), // the same object as another file may define: a duplicate
    'kind: [unclosed', // does not parse
    route('r1'), route('r1', 'no-slash'), // an invalid object: keeps its previous valid version
    ns('w', 'unknownField: 1\n'), // loaded with a warning
  ];
  const files = ['f0.yaml', 'f1.yaml', 'f2.yaml', 'f3.yml', 'f4.json'];
  const op = fc.oneof(
    fc.record({ kind: fc.constant('write' as const), file: fc.constantFrom(...files), text: fc.constantFrom(...contents), inPlace: fc.boolean() }),
    fc.record({ kind: fc.constant('delete' as const), file: fc.constantFrom(...files) }),
  );
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-reload-'));
    try {
      for (const f of files.slice(0, 2)) write(dir, f, contents[files.indexOf(f)]);
      // A fixed clock: both loads judge settling alike.
      let clock = Date.now() + 60_000;
      // A directory budget that some sequences pass: refused files must come out alike too.
      const limits = { maxDirectoryBytes: 330 };
      let prev = loadDirectory(dir, undefined, null, { ...limits, now: () => clock });
      for (const o of ops) {
        if (o.kind === 'delete') fs.rmSync(path.join(dir, o.file), { force: true });
        else if (o.inPlace) fs.writeFileSync(path.join(dir, o.file), o.text);
        else write(dir, o.file, o.text);
        clock += 10;
        const changed = new Set([o.file]);
        const quick = loadDirectory(dir, prev, changed, { ...limits, now: () => clock });
        const walked = loadDirectory(dir, prev, null, { ...limits, now: () => clock });
        const view = (r: LoadResult) => ({
          objects: r.objects.map((x) => [x.source, JSON.stringify(x.object)]),
          errors: r.errors.map((e) => e.message),
          signature: r.signature,
          names: r.names,
          files: [...(r.files ?? new Map()).keys()].sort(),
        });
        assert.deepEqual(view(quick), view(walked), JSON.stringify(o));
        prev = quick;
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }), { numRuns: 120 });
  void t;
});
