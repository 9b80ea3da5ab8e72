// The CEL evaluator behind the CRDs' x-kubernetes-validations
// (src/api/cel/): the Kubernetes library functions the rules call, the
// API server's semantics of where a rule runs and what it reports, the
// cost limits, and every rule of every CRD compiling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import jsyaml from 'js-yaml';
import { parse } from 'yaml';
import { isCelError } from '@bufbuild/cel';
import { escapePropertyName } from '../../src/api/cel/escape.ts';
import { isIP } from '../../src/api/cel/library.ts';
import { compile } from '../../src/api/cel/program.ts';
import { runRules, uncompilableRules, valueKey } from '../../src/api/cel/validator.ts';
import { PER_OBJECT_COST_BUDGET, PER_RULE_COST_LIMIT } from '../../src/api/cel/cost.ts';
import { crds, type Schema } from '../../src/api/schema.ts';
import { validateObject } from '../../src/api/validate.ts';
import { RULES_NOT_CHECKED } from '../../src/api/rules.ts';
import { toCel } from '../../src/api/cel/value.ts';

const REPO = path.resolve(import.meta.dirname, '../..');

/** Evaluates `expr` with `self` bound (plain JSON, untyped); a CEL error comes back as `{ error }`. */
function run(expr: string, self: unknown = null): unknown {
  const c = compile(expr);
  if (!c.ok) return { compileError: c.error };
  const r = c.program.run({ self: toCel(self, undefined, new WeakMap()) });
  if (isCelError(r)) return { error: r.message };
  if (r !== null && typeof r === 'object' && Symbol.iterator in r) return [...(r as Iterable<unknown>)];
  return r;
}

// ---------------------------------------------------------------- escaping

test('property names as rules spell them: reserved words and special characters escaped, others unreachable', () => {
  assert.equal(escapePropertyName('name'), 'name');
  assert.equal(escapePropertyName('namespace'), '__namespace__');
  assert.equal(escapePropertyName('in'), '__in__');
  assert.equal(escapePropertyName('a-b'), 'a__dash__b');
  assert.equal(escapePropertyName('a.b'), 'a__dot__b');
  assert.equal(escapePropertyName('a/b'), 'a__slash__b');
  assert.equal(escapePropertyName('a__b'), 'a__underscores__b');
  assert.equal(escapePropertyName('a_b'), 'a_b');
  assert.equal(escapePropertyName('1a'), null);
  assert.equal(escapePropertyName('a b'), null);
  assert.equal(escapePropertyName(''), null);
});

test('a rule reads an escaped property (parentRefs namespace) under its escaped name', () => {
  const s: Schema = {
    type: 'object',
    properties: {
      ref: {
        type: 'object',
        properties: { namespace: { type: 'string' }, 'x-y': { type: 'string' } },
        'x-kubernetes-validations': [{ rule: "self.__namespace__ == 'a' && self.x__dash__y == 'b' && !has(self.namespace)", message: 'escaped' }],
      },
    },
  };
  assert.deepEqual(runRules({ ref: { namespace: 'a', 'x-y': 'b' } }, s), []);
  assert.deepEqual(runRules({ ref: { namespace: 'z', 'x-y': 'b' } }, s), [{ field: 'ref', reason: 'escaped' }]);
});

// ---------------------------------------------------------------- library

test('isIP: IPv4 and IPv6 as the API server parses them, no zones, no IPv4-mapped IPv6', () => {
  for (const ip of ['10.0.0.1', '0.0.0.0', '255.255.255.255', '::1', '2001:db8::1', 'fe80::1', '::', '2001:db8:0:0:0:0:2:1']) assert.equal(isIP(ip), true, ip);
  for (const ip of ['010.0.0.1', '1.2.3', '1.2.3.4.5', '256.1.1.1', 'fe80::1%eth0', '::ffff:10.0.0.1', '::ffff:a00:1', 'example.com', '', ' 10.0.0.1', '*.example.com']) {
    assert.equal(isIP(ip), false, ip);
  }
  assert.equal(run("['10.0.0.1', 'example.com'].filter(h, isIP(h)).size()"), 1n);
});

test('format library: validate() gives the problems (an optional read with hasValue), none for a valid value', () => {
  assert.equal(run("format.dns1123Label().validate('abc').hasValue()"), false);
  assert.equal(run("format.dns1123Label().validate('Abc').hasValue()"), true);
  assert.match(String((run("format.dns1123Label().validate('Abc').value()") as string[])[0]), /RFC 1123 label/);
  assert.equal(run(`format.dns1123Label().validate('${'a'.repeat(64)}').hasValue()`), true);
  assert.equal(run("format.dns1123Subdomain().validate('a.example.com').hasValue()"), false);
  assert.equal(run("format.dns1123Subdomain().validate('a..example').hasValue()"), true);
  assert.equal(run("format.qualifiedName().validate('example.com/my-key').hasValue()"), false);
  assert.equal(run("format.qualifiedName().validate('my_key.1').hasValue()"), false);
  assert.equal(run("format.qualifiedName().validate('bad key').hasValue()"), true);
  assert.equal(run("format.qualifiedName().validate('/x').hasValue()"), true);
  assert.deepEqual(run("format.dns1123Label().validate('abc').value()"), { error: 'optional.none() dereference' });
  // The v1.7.0 Gateway routability rule, as written there.
  const routability = "size(self) == 0 || self == 'Cluster' || (self.matches('^.*/.+$') && !format.dns1123Subdomain().validate(self.split('/')[0]).hasValue() && self.split('/')[0] != 'k8s.io' && !self.split('/')[0].endsWith('.k8s.io'))";
  for (const [v, ok] of [['', true], ['Cluster', true], ['example.com/public', true], ['k8s.io/x', false], ['a.k8s.io/x', false], ['Bad_Prefix/x', false], ['noprefix', false]] as const) {
    assert.equal(run(routability, v), ok, v);
  }
});

test('matches: RE2 semantics (inline flags, unanchored), bad patterns an error', () => {
  assert.equal(run("'ABC'.matches('(?i)^abc$')"), true);
  assert.equal(run("'xabcx'.matches('abc')"), true);
  assert.equal(run("'abc'.matches('^b')"), false);
  assert.equal(run("matches('grpc.health.v1', r'''^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$''')"), true);
  assert.match(String((run("'abc'.matches('[')") as { error: string }).error), /missing closing \]/);
  // Many patterns built from data: the compiled-pattern cache stays bounded, answers stay right.
  for (let i = 0; i < 600; i++) assert.equal(run(`'x${i}'.matches('^x${i}$')`), true);
});

test('the strings extension and durations the CRD rules use', () => {
  assert.equal(run("'example.com/key'.split('/')[0]"), 'example.com');
  assert.equal(run("'*.example.com'.substring(2)"), 'example.com');
  assert.equal(run("'MiXeD'.lowerAscii()"), 'mixed');
  assert.equal(run("duration('1h30m') == duration('90m')"), true);
  assert.equal(run("duration('500ms') < duration('1s')"), true);
  assert.equal(run("duration('0s') != duration('0s')"), false);
  assert.equal(run("'*' in ['*', 'GET'] && ['a', 'b'].exists_one(x, x == 'a') && ['a'].all(x, x.startsWith('a'))"), true);
});

// ---------------------------------------------------------------- compiling

test('a rule calling a function the library lacks does not compile, and says which', () => {
  const c = compile('self.all(x, isCIDR(x))');
  assert.equal(c.ok, false);
  assert.match((c as { error: string }).error, /isCIDR\(\)/);
  const p = compile('self.all(x,');
  assert.equal(p.ok, false);
  assert.match((p as { error: string }).error, /does not parse/);
  const t = compile('self == oldSelf');
  assert.ok(t.ok && t.program.readsOldSelf);
  assert.ok(compile('self.x == 1').ok && !(compile('self.x == 1') as { program: { readsOldSelf: boolean } }).program.readsOldSelf);
  // Compiled once per text.
  assert.equal(compile('self.x == 1'), compile('self.x == 1'));
});

/** The served versions' schemas of every CRD in a directory (both channels' files, the x-k8s ones too). */
function schemasIn(dir: string): { where: string; schema: Schema }[] {
  const out: { where: string; schema: Schema }[] = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const doc of jsyaml.loadAll(fs.readFileSync(path.join(dir, file), 'utf8'), undefined, { schema: jsyaml.CORE_SCHEMA }) as any[]) {
      if (doc?.kind !== 'CustomResourceDefinition') continue;
      for (const v of doc.spec.versions) if (v.served) out.push({ where: `${file} ${v.name}`, schema: v.schema.openAPIV3Schema });
    }
  }
  return out;
}

test('every rule of the CRDs Gatehouse validates with, and of the released bundle deploy/ installs, compiles', () => {
  const problems: string[] = [];
  let versions = 0;
  for (const crd of crds().values()) {
    for (const [v, s] of crd.schemas) {
      versions++;
      for (const u of uncompilableRules(s)) problems.push(`${crd.kind} ${v}: ${u.rule}: ${u.error}`);
    }
  }
  assert.ok(versions >= 19);
  for (const dir of ['deploy/crds/gateway-api/experimental', 'deploy/crds/gateway-api/standard']) {
    const schemas = schemasIn(path.join(REPO, dir));
    assert.ok(schemas.length >= 10, dir);
    for (const { where, schema } of schemas) for (const u of uncompilableRules(schema)) problems.push(`${dir}/${where}: ${u.rule}: ${u.error}`);
  }
  assert.deepEqual(problems, []);
});

// ---------------------------------------------------------------- semantics

/** A schema with one object `x` carrying `rules`, and properties a (string), n (integer), list (of objects), m (map of strings). */
function schemaWith(rules: NonNullable<Schema['x-kubernetes-validations']>, where: 'x' | 'item' | 'value' = 'x'): Schema {
  const item: Schema = { type: 'object', properties: { k: { type: 'string' } } };
  const value: Schema = { type: 'string' };
  const x: Schema = {
    type: 'object',
    properties: {
      a: { type: 'string' }, n: { type: 'integer' }, d: { type: 'number' },
      list: { type: 'array', items: item }, m: { type: 'object', additionalProperties: value },
    },
  };
  if (where === 'x') x['x-kubernetes-validations'] = rules;
  if (where === 'item') item['x-kubernetes-validations'] = rules;
  if (where === 'value') value['x-kubernetes-validations'] = rules;
  return { type: 'object', properties: { x } };
}

test('a false rule reports its message at its node; without one, the rule', () => {
  const s = schemaWith([{ rule: "self.a == 'ok'", message: 'a must be ok' }, { rule: 'self.n > 1' }]);
  assert.deepEqual(runRules({ x: { a: 'ok', n: 2 } }, s), []);
  assert.deepEqual(runRules({ x: { a: 'no', n: 1 } }, s), [
    { field: 'x', reason: 'a must be ok' },
    { field: 'x', reason: 'failed rule: self.n > 1' },
  ]);
});

test('integers are CEL ints, numbers doubles', () => {
  const s = schemaWith([{ rule: 'type(self.n) == int && self.n == 3 && type(self.d) == double && self.d == 1.5', message: 'types' }]);
  assert.deepEqual(runRules({ x: { n: 3, d: 1.5 } }, s), []);
  assert.deepEqual(runRules({ x: { n: 4, d: 1.5 } }, s), [{ field: 'x', reason: 'types' }]);
});

test('an absent field read is an evaluation error, worded as the API server words it; has() tests presence', () => {
  const s = schemaWith([{ rule: "self.a == 'x'", message: 'needs a' }, { rule: '!has(self.n) || self.n > 0', message: 'n positive' }]);
  assert.deepEqual(runRules({ x: { n: 1 } }, s), [{ field: 'x', reason: 'no such key: a evaluating rule: needs a' }]);
  assert.deepEqual(runRules({ x: { a: 'x' } }, s), []);
});

test('a rule on list items runs per item and reports the item; one on map values per value, at its key', () => {
  const items = schemaWith([{ rule: "self.k != 'bad'", message: 'no bad k' }], 'item');
  assert.deepEqual(runRules({ x: { list: [{ k: 'a' }, { k: 'bad' }, { k: 'b' }, { k: 'bad' }] } }, items), [
    { field: 'x.list[1]', reason: 'no bad k' },
    { field: 'x.list[3]', reason: 'no bad k' },
  ]);
  const values = schemaWith([{ rule: "self != 'bad'", message: 'no bad value' }], 'value');
  assert.deepEqual(runRules({ x: { m: { one: 'a', two: 'bad' } } }, values), [{ field: 'x.m[two]', reason: 'no bad value' }]);
  // Absent: not run at all.
  assert.deepEqual(runRules({ x: {} }, items), []);
  assert.deepEqual(runRules({}, items), []);
});

test('messageExpression, reason and fieldPath', () => {
  const s = schemaWith([
    { rule: "self.a == 'ok'", messageExpression: "'a is ' + self.a + ', not ok'", message: 'fallback' },
    { rule: "self.a == 'ok'", messageExpression: 'self.nope', message: 'used when the expression fails' },
    { rule: "self.a == 'ok'", messageExpression: "''", message: 'used when the expression is empty' },
    { rule: "self.a == 'ok'", message: 'forbidden here', reason: 'FieldValueForbidden', fieldPath: '.a' },
    { rule: "!('k' in self.m) || self.m['k'] == 'v'", message: 'k must be v', reason: 'FieldValueRequired', fieldPath: ".m['k']" },
    { rule: 'true', message: 'bad path', fieldPath: '.nope' },
  ]);
  assert.deepEqual(runRules({ x: { a: 'no', m: { k: 'w' } } }, s), [
    { field: 'x', reason: 'a is no, not ok' },
    { field: 'x', reason: 'used when the expression fails' },
    { field: 'x', reason: 'used when the expression is empty' },
    { field: 'x.a', reason: 'Forbidden: forbidden here' },
    { field: 'x.m[k]', reason: 'Required value: k must be v' },
    { field: 'x', reason: 'the CRD\'s rule for this field cannot be run (fieldPath ".nope" names no field of the schema ("nope")): bad path' },
  ]);
});

test('transition rules (oldSelf) are skipped: there is no previous version to compare with', () => {
  const s = schemaWith([{ rule: 'self == oldSelf', message: 'immutable' }]);
  assert.deepEqual(runRules({ x: { a: 'b' } }, s), []);
  // GatewayClass controllerName immutability is such a rule: a class validates whatever its controllerName.
  const gc = validateObject(parse('apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gc}\nspec: {controllerName: example.com/other}'));
  assert.deepEqual(gc.errors, []);
});

test('a rule on the root sees metadata name and generateName only', () => {
  const s: Schema = { type: 'object', properties: { spec: { type: 'object' } }, 'x-kubernetes-validations': [{ rule: "self.metadata.name == 'n' && !has(self.metadata.namespace) && !has(self.metadata.labels)", message: 'root' }] };
  assert.deepEqual(runRules({ metadata: { name: 'n', namespace: 'ns', labels: { a: 'b' } }, spec: {} }, s, new Set(['metadata'])), []);
  assert.deepEqual(runRules({ metadata: { name: 'm' }, spec: {} }, s, new Set(['metadata'])), [{ field: '', reason: 'root' }]);
});

test('rules run after the schema, only when it found no blocking error (as the API server)', () => {
  const route = (path: string, extra = '') => validateObject(parse(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: "${path}"}}]
${extra}`));
  // A rule failure alone.
  assert.deepEqual(route('v3').errors.map((e) => e.field), ['spec.rules[0].matches[0].path']);
  // A blocking error (wrong type): the rules are not run, and the object is told so.
  const blocked = route('v3', '    backendRefs: [{name: s, port: "80"}]');
  assert.deepEqual(blocked.errors, [
    { field: 'spec.rules[0].backendRefs[0].port', reason: 'must be of type integer, not string' },
    { field: '', reason: RULES_NOT_CHECKED },
  ]);
  // A non-blocking schema error (a maximum): the rules still run.
  const both = route('v3', '    backendRefs: [{name: s, port: 80, weight: 1000001}]');
  assert.deepEqual(both.errors.map((e) => e.field).sort(), ['spec.rules[0].backendRefs[0].weight', 'spec.rules[0].matches[0].path']);
});

test('results kept by value are reported at each object\'s own paths', () => {
  const s = schemaWith([{ rule: "self.k != 'bad'", message: 'no bad k' }], 'item');
  for (let i = 0; i < 3; i++) {
    const list = Array.from({ length: i + 2 }, (_, j) => ({ k: j === i + 1 ? 'bad' : `ok${j}` }));
    assert.deepEqual(runRules({ x: { list } }, s), [{ field: `x.list[${i + 1}]`, reason: 'no bad k' }]);
  }
  // Two routes, the same invalid match at different places.
  const a = validateObject(parse('apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a}\nspec:\n  rules:\n  - matches: [{path: {value: /ok}}, {path: {value: nope}}]'));
  const b = validateObject(parse('apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: b}\nspec:\n  rules:\n  - {}\n  - matches: [{path: {value: nope}}]'));
  assert.deepEqual(a.errors.map((e) => e.field), ['spec.rules[0].matches[1].path']);
  assert.deepEqual(b.errors.map((e) => e.field), ['spec.rules[1].matches[0].path']);
  assert.equal(a.errors[0].reason, b.errors[0].reason);
});

test('valueKey: JSON-like, numbers kept apart from null, and bounded', () => {
  assert.equal(valueKey({ a: [1, 'x', true, null] }, 100), '{"a":[1,"x",true,null]}');
  assert.notEqual(valueKey({ a: Infinity }, 100), valueKey({ a: null }, 100));
  assert.equal(valueKey({ a: 'x'.repeat(200) }, 100), null);
});

// ---------------------------------------------------------------- cost

test('a rule over its cost limit stops with an error, quickly, and no later rule runs', () => {
  const s = schemaWith([
    { rule: 'self.list.all(a, self.list.all(b, self.list.all(c, a.k + b.k + c.k != "")))', message: 'cubic' },
    { rule: 'false', message: 'never reached' },
  ]);
  // 50^3 = 125,000 steps, over six times the per-rule limit.
  const list = Array.from({ length: 50 }, (_, i) => ({ k: `k${i}` }));
  const started = performance.now();
  const errors = runRules({ x: { list } }, s);
  const ms = performance.now() - started;
  assert.equal(errors.length, 1);
  assert.equal(errors[0].field, 'x');
  assert.match(errors[0].reason, new RegExp(`cost limit \\(${PER_RULE_COST_LIMIT} units\\).*no further validation rules are run: cubic`));
  assert.ok(ms < 5_000, `took ${ms} ms`);
  // Under the limit (20^3 = 8,000 steps) it runs to the end.
  assert.deepEqual(runRules({ x: { list: list.slice(0, 20) } }, s), [{ field: 'x', reason: 'never reached' }]);
});

test('the object budget spans its rules: rules each under the limit still stop', () => {
  const rules = Array.from({ length: 6 }, (_, i) => ({ rule: `self.list.all(a, self.list.all(b, a.k != "${i}" || b.k != "${i}"))`, message: `r${i}` }));
  const s = schemaWith(rules);
  // 30^2 + 30 = 930 steps a rule: under a per-rule limit of 1,000, but the third passes a budget of 2,500.
  const list = Array.from({ length: 30 }, (_, i) => ({ k: `k${i}` }));
  const errors = runRules({ x: { list } }, s, undefined, { perRule: 1_000, perObject: 2_500 });
  assert.equal(errors.length, 1);
  assert.match(errors[0].reason, /went over their cost budget \(2500 units\).*: r2$/);
  assert.deepEqual(runRules({ x: { list } }, s, undefined, { perRule: 1_000, perObject: 6_000 }), []);
});

test('the costliest Gateway API objects stay well under the limits', () => {
  const listeners = Array.from({ length: 64 }, (_, i) => `  - {name: l${i}, port: ${1000 + i}, protocol: HTTP}`).join('\n');
  const labels = Array.from({ length: 8 }, (_, i) => `      ${'a'.repeat(200)}.example.com/key-${i}${'b'.repeat(50)}: v`).join('\n');
  const gw = validateObject(parse(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: big}
spec:
  gatewayClassName: gc
  infrastructure:
    labels:
${labels}
  listeners:
${listeners}`));
  assert.deepEqual(gw.errors, []);
  // Four times smaller limits would still hold: the margin is that wide.
  const o = gw.object as unknown as Record<string, unknown>;
  const schema = crds().get('Gateway')!.schemas.get('v1')!;
  assert.deepEqual(runRules(o, schema, new Set(['metadata']), { perRule: PER_RULE_COST_LIMIT / 4, perObject: PER_OBJECT_COST_BUDGET / 4 }), []);
});
