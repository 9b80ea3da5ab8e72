// The route index and host tables against the obvious definition: the first
// entry, in order, whose match holds. Randomised over many routes so the
// indexed lookup is checked where it differs from a scan.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostTable, hostFromAuthority, normalizePattern } from '../../src/dataplane/hostnames.ts';
import { compileMatch, conditionsHold, hasPathPrefix, type CompiledMatch, type RequestFacts } from '../../src/dataplane/http/match.ts';
import { RouteTable } from '../../src/dataplane/http/router.ts';
import type { RouteMatch } from '../../src/ir/types.ts';

interface R {
  readonly id: number;
  readonly match: CompiledMatch;
}

function facts(path: string, method = 'GET', headers: Record<string, string> = {}, query: Record<string, string> = {}): RequestFacts {
  return { path, method, header: (n) => headers[n], queryParam: (n) => query[n] };
}

/** The definition, spelled out. */
function naiveFind(routes: readonly R[], f: RequestFacts): R | undefined {
  return routes.find((r) => {
    const p = r.match.path;
    const pathOk =
      p.kind === 'Exact' ? f.path === p.value : p.kind === 'PathPrefix' ? hasPathPrefix(f.path, p.value) : p.regex.test(f.path);
    return pathOk && conditionsHold(r.match, f);
  });
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test('segment-wise prefix', () => {
  assert.equal(hasPathPrefix('/foo', '/foo'), true);
  assert.equal(hasPathPrefix('/foo/', '/foo'), true);
  assert.equal(hasPathPrefix('/foo/bar', '/foo'), true);
  assert.equal(hasPathPrefix('/foobar', '/foo'), false);
  assert.equal(hasPathPrefix('/anything', '/'), true);
  const t = new RouteTable<R>([{ id: 0, match: compileMatch({ path: { type: 'PathPrefix', value: '/foo/' }, headers: [], queryParams: [] }) }]);
  // A trailing slash on a prefix is ignored, segment-wise.
  assert.equal(t.find(facts('/foo'))?.id, 0);
  assert.equal(t.find(facts('/foo/x'))?.id, 0);
  assert.equal(t.find(facts('/foox')), undefined);
});

test('regular expressions are anchored around alternations', () => {
  const m = compileMatch({ path: { type: 'RegularExpression', value: '/a|/b' }, headers: [], queryParams: [] });
  assert.ok(m.path.kind === 'RegularExpression');
  assert.equal(m.path.regex.test('/a'), true);
  assert.equal(m.path.regex.test('/a/x'), false);
  assert.equal(m.path.regex.test('/x/b'), false);
  assert.throws(() => compileMatch({ path: { type: 'RegularExpression', value: '(' }, headers: [], queryParams: [] }));
});

test('indexed lookup equals the first match in order (randomised, 10,000 routes)', () => {
  const random = rng(42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const segments = ['a', 'b', 'c', 'api', 'v1', 'v2', 'x'];
  // Requests also use segments no route has, so some find nothing.
  const requestSegments = [...segments, 'none', 'zz', 'q9'];
  const randomPath = (forRoute = false): string => {
    const depth = Math.floor(random() * 4) + (forRoute ? 1 : 0);
    let p = '';
    for (let i = 0; i < depth; i++) p += `/${pick(forRoute ? segments : requestSegments)}`;
    return p === '' ? '/' : p + (random() < 0.1 ? '/' : '');
  };
  const routes: R[] = [];
  for (let id = 0; id < 10_000; id++) {
    const kind = random();
    const m: RouteMatch = {
      path:
        kind < 0.45
          ? { type: 'PathPrefix', value: randomPath(true) }
          : kind < 0.9
            ? { type: 'Exact', value: randomPath(true) }
            : { type: 'RegularExpression', value: `/${pick(segments)}/[a-c]+` },
      headers: random() < 0.3 ? [{ name: 'X-Env', type: 'Exact', value: pick(['a', 'b']) }] : [],
      queryParams: random() < 0.2 ? [{ name: 'q', type: 'RegularExpression', value: pick(['1', '[0-9]+']) }] : [],
      ...(random() < 0.2 ? { method: pick(['GET', 'POST']) } : {}),
    };
    routes.push({ id, match: compileMatch(m) });
  }
  const table = new RouteTable(routes);
  let matched = 0;
  for (let i = 0; i < 5_000; i++) {
    const f = facts(
      randomPath(),
      pick(['GET', 'POST']),
      random() < 0.5 ? { 'x-env': pick(['a', 'b', 'c']) } : {},
      random() < 0.5 ? { q: pick(['1', '22', 'z']) } : {},
    );
    const expected = naiveFind(routes, f);
    assert.equal(table.find(f)?.id, expected?.id, `path ${f.path}`);
    if (expected) matched++;
  }
  // The generator must exercise both outcomes for the comparison to mean anything.
  assert.ok(matched > 1_000 && matched < 5_000, `matched ${matched}`);
});

test('HostTable: first in order wins, wildcards need a label', () => {
  const table = new HostTable([
    { pattern: normalizePattern('*.example.com'), value: 'wild' },
    { pattern: normalizePattern('api.example.com'), value: 'exact-after-wild' },
    { pattern: normalizePattern('*.a.example.com'), value: 'deeper-wild' },
    { pattern: normalizePattern(null), value: 'any' },
  ]);
  // Order is the IR's; here a wildcard deliberately precedes an exact name.
  assert.equal(table.match('api.example.com'), 'wild');
  assert.equal(table.match('x.a.example.com'), 'wild');
  assert.equal(table.match('example.com'), 'any');
  assert.equal(table.match('other'), 'any');
  const noAny = new HostTable([{ pattern: normalizePattern('*.example.com'), value: 1 }]);
  assert.equal(noAny.match('example.com'), undefined);
  assert.equal(noAny.match('.example.com'), undefined);
  assert.equal(noAny.match('a.b.example.com'), 1);
});

test('hostFromAuthority', () => {
  assert.equal(hostFromAuthority('Example.COM:8080'), 'example.com');
  assert.equal(hostFromAuthority('example.com.'), 'example.com');
  assert.equal(hostFromAuthority('[::1]:443'), '[::1]');
  assert.equal(hostFromAuthority('10.0.0.1'), '10.0.0.1');
});
