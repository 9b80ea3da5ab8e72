// Property: whatever a config file holds, the control plane goes on. The
// valid objects of examples/config and the translate cases, mutated at
// random (fields dropped, wrong types, huge strings, deep nesting, names
// copied from the good objects, unknown kinds), cut, spliced or replaced by
// random bytes, are written as a real file next to a fixed good file and
// fed to loadDirectory, buildSnapshot and translate as the standalone
// control loop calls them. No throw may escape, each run finishes within
// a bound, and the good file's Gateway and HTTPRoute are always in the
// snapshot with the route Accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import jsyaml from 'js-yaml';
import { loadDirectory, type LoadResult } from '../../src/providers/file/loader.ts';
import { GenerationTracker } from '../../src/providers/file/generations.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { translate } from '../../src/translate/index.ts';
import { CONTROLLER_NAME } from '../../src/control/standalone.ts';
import { tempDir } from './config-helpers.ts';

const ROOT = path.join(import.meta.dirname, '../..');
/** The longest one load + snapshot + translate may take, whatever the file holds. */
const RUN_BOUND_MS = 2_000;

// The good objects sort first (file 00-good.yaml, namespace a-good) and are
// the oldest, so that a copy of their names elsewhere is the duplicate, and
// a Gateway mutated onto their port is the later claimant.
const GOOD = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: a-good-class}
spec: {controllerName: ${CONTROLLER_NAME}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a-gw, namespace: a-good, creationTimestamp: "1970-01-01T00:00:00Z"}
spec:
  gatewayClassName: a-good-class
  listeners: [{name: http, port: 18099, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-route, namespace: a-good}
spec:
  parentRefs: [{name: a-gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /good}}]
    backendRefs: [{name: a-svc, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: a-svc, namespace: a-good}
spec: {ports: [{port: 80}]}
`;

type Obj = Record<string, unknown>;

/** Every object in examples/config and in the translate cases (objects and steps' objects). */
function seedObjects(): Obj[] {
  const out = new Map<string, Obj>();
  const keep = (o: unknown) => {
    if (o && typeof o === 'object' && !Array.isArray(o) && typeof (o as Obj).kind === 'string') out.set(JSON.stringify(o), o as Obj);
  };
  const examples = path.join(ROOT, 'examples/config');
  for (const f of fs.readdirSync(examples).filter((n) => n.endsWith('.yaml'))) {
    for (const doc of jsyaml.loadAll(fs.readFileSync(path.join(examples, f), 'utf8'))) keep(doc);
  }
  const cases = path.join(ROOT, 'test/translate/cases');
  for (const f of fs.readdirSync(cases).filter((n) => n.endsWith('.yaml'))) {
    for (const doc of jsyaml.loadAll(fs.readFileSync(path.join(cases, f), 'utf8'))) {
      if (!Array.isArray(doc)) { keep(doc); continue; }
      for (const c of doc as { objects?: unknown[]; steps?: { objects?: unknown[] }[] }[]) {
        for (const o of c.objects ?? []) keep(o);
        for (const s of c.steps ?? []) for (const o of s.objects ?? []) keep(o);
      }
    }
  }
  return [...out.values()];
}

/** A mutation of an object, as data: where (a walk by indices into keys) and what. */
interface Mutation {
  op: 'drop' | 'set' | 'huge-string' | 'deep' | 'good-name' | 'unknown-kind' | 'duplicate';
  steps: number[];
  value: unknown;
  /** Levels of nesting for `deep`. */
  depth: number;
  /** Characters for `huge-string`. */
  length: number;
  /** Picks among the good names, and whether an unknown kind gets an unknown apiVersion too. */
  choice: number;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  // Unbiased: fast-check otherwise favours the first of each list, and the rare cases are the point.
  op: fc.noBias(fc.constantFrom('drop', 'set', 'set', 'huge-string', 'deep', 'deep', 'good-name', 'unknown-kind', 'duplicate')),
  steps: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
  value: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.integer(), fc.string(), fc.constant(null), fc.constant(-1), fc.constant(65536)),
  // Around the limit, and far past where a recursive walk overflows (~2,000).
  depth: fc.noBias(fc.constantFrom(10, 64, 65, 200, 3_000, 10_000, 20_000)),
  // Up to 5 MB: past the 4 MiB file limit now and then.
  length: fc.noBias(fc.constantFrom(1_000, 100_000, 1_000_000, 5_000_000)),
  choice: fc.nat(),
});

/** The container and key that `steps` lead to in `o` (a walk that stops where it can go no further). */
function locate(o: Obj, steps: number[]): [Obj | unknown[], string | number] | null {
  let here: Obj | unknown[] = o;
  for (let i = 0; ; i++) {
    const keys = Array.isArray(here) ? here.map((_, k) => k) : Object.keys(here);
    if (keys.length === 0) return null;
    const key = keys[steps[i] % keys.length];
    const next = (here as Obj)[key as string];
    if (i + 1 >= steps.length || next === null || typeof next !== 'object') return [here, key];
    here = next as Obj | unknown[];
  }
}

function mutate(objects: Obj[], m: Mutation): Obj[] {
  const o = structuredClone(objects[0]);
  const rest = objects.slice(1);
  const at = m.steps.length ? locate(o, m.steps) : null;
  const set = (v: unknown) => { if (at) (at[0] as Obj)[at[1] as string] = v; };
  switch (m.op) {
    case 'drop':
      if (at) { if (Array.isArray(at[0])) at[0].splice(at[1] as number, 1); else delete (at[0] as Obj)[at[1] as string]; }
      break;
    case 'set':
      set(m.value);
      break;
    case 'huge-string':
      // A token too, replaced in the text: serialisers scan every character.
      set(`__HUGE_${m.length}__`);
      break;
    case 'deep':
      // A token that expandTokens() replaces with the nesting in the file's
      // text: built as objects, it would overflow the serialiser's stack.
      set(`__DEEP_${m.depth}__`);
      break;
    case 'good-name': {
      const meta = (o.metadata && typeof o.metadata === 'object' ? o.metadata : (o.metadata = {})) as Obj;
      meta.namespace = 'a-good';
      meta.name = ['a-gw', 'a-route', 'a-svc', 'a-good-class'][m.choice % 4];
      break;
    }
    case 'unknown-kind':
      o.kind = typeof m.value === 'string' ? m.value : 'Frobnicator';
      if (m.choice % 2) o.apiVersion = 'example.com/v1';
      break;
    case 'duplicate':
      return [o, structuredClone(o), ...rest];
  }
  return [o, ...rest];
}

/** How the mutated objects become a file: as YAML or JSON, cut, spliced, or random bytes. */
const fileOf = (seeds: Obj[]) => fc.record({
  picks: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
  mutations: fc.noBias(fc.array(mutation, { maxLength: 4 })),
  format: fc.noBias(fc.constantFrom('yaml', 'yaml', 'json', 'json-list', 'cut', 'splice', 'bytes')),
  // Named for its format, but one in four by another extension (JSON read as YAML and back).
  extension: fc.constantFrom('yaml', 'yml'),
  misnamed: fc.nat({ max: 3 }).map((n) => n === 0),
  cutAt: fc.nat(),
  junk: fc.string({ maxLength: 20 }),
  bytes: fc.uint8Array({ maxLength: 2_000 }),
}).map((f) => {
  let objects = f.picks.map((i) => seeds[i % seeds.length]);
  for (const m of f.mutations) objects = mutate(objects, m);
  const yaml = () => expandTokens(objects.map((o) => jsyaml.dump(o, { noRefs: true, lineWidth: -1 })).join('---\n'));
  let content: string | Uint8Array;
  switch (f.format) {
    case 'yaml': content = yaml(); break;
    case 'json': content = expandTokens(JSON.stringify(objects[0])); break;
    case 'json-list': content = expandTokens(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects })); break;
    case 'cut': { const t = yaml(); content = t.slice(0, f.cutAt % (t.length + 1)); break; }
    case 'splice': { const t = yaml(); const at = f.cutAt % (t.length + 1); content = t.slice(0, at) + f.junk + t.slice(at); break; }
    default: content = f.bytes;
  }
  const json = f.format === 'json' || f.format === 'json-list';
  return { name: `50-other.${json !== f.misnamed ? 'json' : f.extension}`, content };
});

/**
 * The text with each `__DEEP_n__` token (quoted or not) replaced by n
 * levels of nested maps and lists in flow style, and each `__HUGE_n__` by
 * a quoted string of n characters.
 */
function expandTokens(text: string): string {
  return text.replace(/"?__(DEEP|HUGE)_(\d+)__"?/g, (_, what: string, n: string) => {
    const count = Number(n);
    if (what === 'HUGE') return `"${'x'.repeat(count)}"`;
    let open = '';
    let close = '';
    for (let i = 0; i < count; i++) {
      open += i % 2 ? '[' : '{"a": ';
      close = (i % 2 ? ']' : '}') + close;
    }
    return `${open}0${close}`;
  });
}

function goodRouteAccepted(statuses: Map<string, unknown>): boolean {
  const status = statuses.get('HTTPRoute|a-good|a-route') as { parents?: { conditions: { type: string; status: string }[] }[] } | undefined;
  return status?.parents?.[0]?.conditions.some((c) => c.type === 'Accepted' && c.status === 'True') ?? false;
}

test('property: no manifest makes the loader or translate throw or hang, and the good file is always applied', { timeout: 60_000 }, (t) => {
  const seeds = seedObjects();
  assert.ok(seeds.length > 50, `${seeds.length} seed objects`);
  const dir = tempDir(t, 'gatehouse-property-');
  fs.writeFileSync(path.join(dir, '00-good.yaml'), GOOD);
  let slowest = 0;
  // The previous load, as the control loop keeps it: a bad file keeps what it had.
  let previous: LoadResult | undefined;

  fc.assert(fc.property(fileOf(seeds), (file) => {
    for (const name of fs.readdirSync(dir)) if (name !== '00-good.yaml') fs.rmSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, file.name), file.content);
    const started = performance.now();
    const loaded = loadDirectory(dir, previous);
    previous = loaded;
    const objects = new GenerationTracker().stamp(loaded.objects.map((o) => o.object));
    const snapshot = buildSnapshot(objects);
    const result = translate(snapshot, {
      controllerName: CONTROLLER_NAME,
      addressing: { pool: null, hostAddress: '127.0.0.1', previous: {} },
    });
    const ms = performance.now() - started;
    slowest = Math.max(slowest, ms);
    assert.ok(ms < RUN_BOUND_MS, `one run took ${ms.toFixed(0)} ms`);
    assert.ok(snapshot.gateways.some((g) => g.metadata.namespace === 'a-good' && g.metadata.name === 'a-gw'), 'the good Gateway is in the snapshot');
    assert.ok(snapshot.httpRoutes.some((r) => r.metadata.namespace === 'a-good' && r.metadata.name === 'a-route'), 'the good HTTPRoute is in the snapshot');
    assert.ok(goodRouteAccepted(result.statuses), `the good route is Accepted: ${JSON.stringify(result.statuses.get('HTTPRoute|a-good|a-route'))}`);
    assert.ok(!loaded.errors.some((e) => e.file === '00-good.yaml'), `no error names the good file: ${loaded.errors.filter((e) => e.file === '00-good.yaml').map((e) => e.message).join('; ')}`);
  }), { numRuns: 150 });
  t.diagnostic(`${seeds.length} seed objects; slowest run ${slowest.toFixed(0)} ms`);
});
