// The CRD schema walker: which schemas are loaded, pruning, structural
// defaulting and the OpenAPI validation keywords, through validateObject.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { collectPatterns, crds, patternRegExp, schemaFor } from '../../src/api/schema.ts';
import { validateObject } from '../../src/api/validate.ts';
import type { FieldError } from '../../src/api/errors.ts';

function load(yaml: string): { object: any; errors: FieldError[] } {
  const r = validateObject(parse(yaml));
  return { object: r.object, errors: r.errors };
}

function defaulted(yaml: string): any {
  const r = load(yaml);
  assert.deepEqual(r.errors, []);
  return r.object;
}

test('loads the ten Gateway API CRDs, v1.4\'s XListenerSet and Gatehouse\'s two policy CRDs with their served versions', () => {
  const byKind = Object.fromEntries([...crds().values()].map((c) => [c.kind, [...c.versions].sort()]));
  assert.deepEqual(byKind, {
    BackendTrafficPolicy: ['v1alpha1'],
    ClientTrafficPolicy: ['v1alpha1'],
    BackendTLSPolicy: ['v1', 'v1alpha3'],
    GRPCRoute: ['v1'],
    Gateway: ['v1', 'v1beta1'],
    GatewayClass: ['v1', 'v1beta1'],
    HTTPRoute: ['v1', 'v1beta1'],
    ListenerSet: ['v1'],
    ReferenceGrant: ['v1', 'v1beta1'],
    TCPRoute: ['v1', 'v1alpha2'],
    TLSRoute: ['v1', 'v1alpha2', 'v1alpha3'],
    UDPRoute: ['v1', 'v1alpha2'],
    XListenerSet: ['v1alpha1'],
  });
  for (const c of crds().values()) {
    assert.equal(c.group, c.kind === 'XListenerSet' ? 'gateway.networking.x-k8s.io' : c.kind.endsWith('TrafficPolicy') ? 'gatehouse.dev' : 'gateway.networking.k8s.io');
    assert.equal(c.namespaced, c.kind !== 'GatewayClass');
  }
});

test('the policy CRDs validation reads are the ones deploy/ installs', async () => {
  const fs = await import('node:fs');
  const { CRD_DIR } = await import('../../src/api/schema.ts');
  for (const file of ['gatehouse.dev_clienttrafficpolicies.yaml', 'gatehouse.dev_backendtrafficpolicies.yaml']) {
    assert.equal(fs.readFileSync(`${CRD_DIR}/${file}`, 'utf8'), fs.readFileSync(new URL(`../../deploy/crds/${file}`, import.meta.url), 'utf8'), file);
  }
});

test('schemaFor picks by group, version and kind', () => {
  for (const [apiVersion, kind] of [
    ['gateway.networking.k8s.io/v1', 'HTTPRoute'], ['gateway.networking.k8s.io/v1beta1', 'HTTPRoute'],
    ['gateway.networking.k8s.io/v1alpha2', 'TLSRoute'], ['gateway.networking.k8s.io/v1alpha3', 'TLSRoute'],
    ['gateway.networking.k8s.io/v1', 'TLSRoute'], ['gateway.networking.k8s.io/v1beta1', 'ReferenceGrant'],
    ['gateway.networking.k8s.io/v1', 'ReferenceGrant'], ['gateway.networking.k8s.io/v1alpha2', 'TCPRoute'],
  ]) {
    const r = schemaFor(apiVersion, kind);
    assert.ok(r.found, `${apiVersion} ${kind}`);
  }
  const notServed = schemaFor('gateway.networking.k8s.io/v1alpha1', 'HTTPRoute');
  assert.ok(!notServed.found && notServed.reason?.includes('not served'));
  const otherGroup = schemaFor('example.com/v1', 'HTTPRoute');
  assert.ok(!otherGroup.found && otherGroup.reason === undefined);
});

test('every pattern in the CRDs compiles as a unicode RegExp and uses no RE2-only syntax', () => {
  const patterns = new Set<string>();
  for (const c of crds().values()) for (const s of c.schemas.values()) collectPatterns(s, patterns);
  assert.ok(patterns.size > 10);
  for (const p of patterns) {
    assert.doesNotThrow(() => new RegExp(p, 'u'), p);
    // Constructs whose meaning differs between RE2 and JS (or that JS lacks).
    assert.ok(!/\(\?[imsU]|\(\?P<|\\[zAQEpP]|\[\[:/.test(p), `RE2-only syntax in ${p}`);
    assert.equal(patternRegExp(p).flags, 'u');
  }
});

test('patterns: a sample of values accepted and refused as Go would', () => {
  const cases: [string, string, boolean][] = [
    ['^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', '*.example.com', true],
    ['^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', 'Example.com', false],
    ["^[A-Za-z0-9!#$%&'*+\\-.^_\\x60|~]+$", 'x-header`name', true],
    ["^[A-Za-z0-9!#$%&'*+\\-.^_\\x60|~]+$", 'bad header', false],
    ['^([0-9]{1,5}(h|m|s|ms)){1,4}$', '1h30m', true],
    ['^([0-9]{1,5}(h|m|s|ms)){1,4}$', '1d', false],
  ];
  for (const [p, v, ok] of cases) assert.equal(patternRegExp(p).test(v), ok, `${p} ${v}`);
});

// ---------------------------------------------------------------- defaulting

const GATEWAY = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gc
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: https
    port: 443
    protocol: HTTPS
    tls:
      certificateRefs: [{name: cert}]
`;

test('defaults: Gateway listener allowedRoutes, tls mode and certificateRef group/kind', () => {
  const gw = defaulted(GATEWAY);
  assert.deepEqual(gw.spec.listeners[0], { name: 'http', port: 80, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Same' } } });
  assert.equal('kinds' in gw.spec.listeners[0].allowedRoutes, false);
  assert.deepEqual(gw.spec.listeners[1].tls, { mode: 'Terminate', certificateRefs: [{ group: '', kind: 'Secret', name: 'cert' }] });
  // No default where the parent is absent.
  assert.equal(gw.spec.tls, undefined);
  assert.equal(gw.spec.allowedListeners, undefined);
});

test('defaults: an object default is a copy of its own in every object; a string default is the value', () => {
  const a = defaulted(GATEWAY);
  const b = defaulted(GATEWAY);
  assert.notEqual(a.spec.listeners[0].allowedRoutes, b.spec.listeners[0].allowedRoutes);
  assert.notEqual(a.spec.listeners[0].allowedRoutes, a.spec.listeners[1].allowedRoutes);
  a.spec.listeners[0].allowedRoutes.namespaces.from = 'All';
  assert.equal(b.spec.listeners[0].allowedRoutes.namespaces.from, 'Same');
  assert.equal(a.spec.listeners[1].allowedRoutes.namespaces.from, 'Same');
  assert.equal(a.spec.listeners[1].tls.certificateRefs[0].kind, 'Secret');
});

test('defaults: inside a given allowedRoutes, namespaces.from and kinds[].group', () => {
  const gw = defaulted(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: gc
  addresses: [{value: 10.0.0.1}]
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {kinds: [{kind: HTTPRoute}]}
`);
  assert.deepEqual(gw.spec.listeners[0].allowedRoutes, { kinds: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }], namespaces: { from: 'Same' } });
  assert.deepEqual(gw.spec.addresses, [{ type: 'IPAddress', value: '10.0.0.1' }]);
  assert.equal(gw.metadata.namespace, 'default');
});

test('defaults: HTTPRoute parentRefs, rules, matches, backendRefs, filters', () => {
  const route = defaulted(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: team-a}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - backendRefs: [{name: svc, port: 8080}]
  - matches: [{headers: [{name: x-version, value: "2"}]}, {path: {value: /api}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https}
    - type: RequestMirror
      requestMirror:
        backendRef: {name: mirror, port: 80}
        fraction: {numerator: 5}
`);
  assert.deepEqual(route.spec.parentRefs, [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw', namespace: 'infra' }]);
  assert.deepEqual(route.spec.rules[0].matches, [{ path: { type: 'PathPrefix', value: '/' } }]);
  assert.deepEqual(route.spec.rules[0].backendRefs, [{ group: '', kind: 'Service', name: 'svc', port: 8080, weight: 1 }]);
  assert.deepEqual(route.spec.rules[1].matches, [
    { headers: [{ name: 'x-version', value: '2', type: 'Exact' }], path: { type: 'PathPrefix', value: '/' } },
    { path: { type: 'PathPrefix', value: '/api' } },
  ]);
  assert.equal(route.spec.rules[1].filters[0].requestRedirect.statusCode, 302);
  assert.deepEqual(route.spec.rules[1].filters[1].requestMirror, {
    backendRef: { group: '', kind: 'Service', name: 'mirror', port: 80 },
    fraction: { numerator: 5, denominator: 100 },
  });
});

test('defaults: an HTTPRoute without rules gets one rule matching every path', () => {
  const route = defaulted(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
`);
  assert.deepEqual(route.spec.rules, [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }] }]);
});

test('defaults: TCPRoute, GRPCRoute and ListenerSet references', () => {
  const tcp = defaulted(`
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: t}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc, port: 9000}]}]
`);
  assert.deepEqual(tcp.spec.rules[0].backendRefs[0], { group: '', kind: 'Service', name: 'svc', port: 9000, weight: 1 });
  const grpc = defaulted(`
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  rules: [{matches: [{method: {service: foo.Bar}}]}]
`);
  assert.deepEqual(grpc.spec.rules[0].matches[0].method, { type: 'Exact', service: 'foo.Bar' });
  const ls = defaulted(`
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls}
spec:
  parentRef: {name: gw}
  listeners: [{name: l, port: 8080, protocol: HTTP}]
`);
  assert.deepEqual(ls.spec.parentRef, { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' });
});

// ---------------------------------------------------------------- pruning

test('pruning: unknown fields are dropped silently, status is dropped, nulls are dropped or defaulted', () => {
  const gw = defaulted(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra, bogus: 1}
spec:
  gatewayClassName: gc
  unknownField: x
  listeners:
  - {name: http, port: 80, protocol: HTTP, extra: true, hostname: null, allowedRoutes: null}
status:
  conditions: []
extraTopLevel: 1
`);
  assert.deepEqual(gw, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'gw', namespace: 'infra' },
    spec: { gatewayClassName: 'gc', listeners: [{ name: 'http', port: 80, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Same' } } }] },
  });
});

test('pruning: labels and annotations survive, other metadata fields that ObjectMeta has survive', () => {
  const gw = defaulted(`
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: gc
  namespace: ignored-for-cluster-scoped
  labels: {a: b}
  annotations: {x/y: z}
  finalizers: [f]
spec: {controllerName: gatehouse.dev/gateway-controller}
`);
  assert.deepEqual(gw.metadata, { name: 'gc', labels: { a: 'b' }, annotations: { 'x/y': 'z' }, finalizers: ['f'] });
});

// ---------------------------------------------------------------- validation keywords

interface Case { name: string; yaml: string; field: string; reason: string }

const gatewayWith = (listener: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: gc
  listeners:
  - ${listener}
`;

const keywordCases: Case[] = [
  { name: 'type', yaml: gatewayWith('{name: http, port: "80", protocol: HTTP}'), field: 'spec.listeners[0].port', reason: 'must be of type integer, not string' },
  { name: 'type (float for integer)', yaml: gatewayWith('{name: http, port: 80.5, protocol: HTTP}'), field: 'spec.listeners[0].port', reason: 'must be of type integer, not number' },
  { name: 'required', yaml: gatewayWith('{name: http, protocol: HTTP}'), field: 'spec.listeners[0].port', reason: 'is required' },
  { name: 'maximum', yaml: gatewayWith('{name: http, port: 70000, protocol: HTTP}'), field: 'spec.listeners[0].port', reason: 'must be at most 65535' },
  { name: 'minimum', yaml: gatewayWith('{name: http, port: 0, protocol: HTTP}'), field: 'spec.listeners[0].port', reason: 'must be at least 1' },
  { name: 'enum', yaml: gatewayWith('{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Everywhere}}}'), field: 'spec.listeners[0].allowedRoutes.namespaces.from', reason: 'unsupported value "Everywhere": must be one of "All", "Selector", "Same"' },
  { name: 'pattern', yaml: gatewayWith('{name: http, port: 80, protocol: HTTP, hostname: Foo_Bar.com}'), field: 'spec.listeners[0].hostname', reason: 'invalid value "Foo_Bar.com": must match the regular expression' },
  { name: 'minLength', yaml: gatewayWith('{name: "", port: 80, protocol: HTTP}'), field: 'spec.listeners[0].name', reason: 'must not be empty' },
  { name: 'maxLength', yaml: gatewayWith(`{name: ${'a'.repeat(254)}, port: 80, protocol: HTTP}`), field: 'spec.listeners[0].name', reason: 'must be at most 253 characters long (is 254)' },
  {
    name: 'minItems',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {gatewayClassName: gc, listeners: []}',
    field: 'spec.listeners', reason: 'must have at least 1 item',
  },
  {
    name: 'maxItems',
    yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: gc\n  listeners:\n${Array.from({ length: 65 }, (_, i) => `  - {name: l${i}, port: ${1000 + i}, protocol: HTTP}`).join('\n')}`,
    field: 'spec.listeners', reason: 'must have at most 64 items (has 65)',
  },
  {
    name: 'object type',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: [1]',
    field: 'spec', reason: 'must be of type object, not array',
  },
  {
    name: 'oneOf: an IPAddress must be an IP',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: gc\n  addresses: [{type: IPAddress, value: not-an-ip}]\n  listeners: [{name: http, port: 80, protocol: HTTP}]',
    field: 'spec.addresses[0].value', reason: 'invalid value "not-an-ip": must be a valid IPv4 address or must be a valid IPv6 address',
  },
  {
    name: 'list-type map: header match names unique per match',
    yaml: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches:
    - headers: [{name: x-a, value: "1"}, {name: x-a, value: "2"}]`,
    field: 'spec.rules[0].matches[0].headers[1]', reason: 'duplicate entry with name "x-a"',
  },
  {
    name: 'list-type map: query param names unique per match',
    yaml: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches:
    - queryParams: [{name: q, value: "1"}, {name: q, value: "2"}]`,
    field: 'spec.rules[0].matches[0].queryParams[1]', reason: 'duplicate entry with name "q"',
  },
  {
    name: 'list-type set: header names to remove unique',
    yaml: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {remove: [x-a, x-a]}`,
    field: 'spec.rules[0].filters[0].requestHeaderModifier.remove[1]', reason: 'duplicate value "x-a"',
  },
  {
    name: 'additionalProperties: label values in infrastructure',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: gc\n  infrastructure: {labels: {app: "-bad-"}}\n  listeners: [{name: http, port: 80, protocol: HTTP}]',
    field: 'spec.infrastructure.labels[app]', reason: 'must match the regular expression',
  },
  {
    name: 'weight minimum',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{backendRefs: [{name: s, port: 80, weight: -1}]}]',
    field: 'spec.rules[0].backendRefs[0].weight', reason: 'must be at least 0',
  },
];

for (const c of keywordCases) {
  test(`validation keyword: ${c.name}`, () => {
    const r = load(c.yaml);
    assert.equal(r.object, null);
    assert.ok(r.errors.some((e) => e.field === c.field && e.reason.includes(c.reason)),
      `want ${c.field}: ${c.reason}\ngot ${JSON.stringify(r.errors, null, 1)}`);
  });
}

test('oneOf: other address types take any value', () => {
  const gw = defaulted('apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: gc\n  addresses: [{type: NamedAddress, value: my-pool}, {value: "2001:db8::1"}]\n  listeners: [{name: http, port: 80, protocol: HTTP}]');
  assert.equal(gw.spec.addresses.length, 2);
});

test('loading keeps every property of the CRD schemas (a field named "description" too)', async () => {
  const fs = await import('node:fs');
  const { CRD_DIR } = await import('../../src/api/schema.ts');
  const countProps = (s: any): number => {
    if (!s || typeof s !== 'object') return 0;
    let n = 0;
    for (const p of Object.values(s.properties ?? {})) n += 1 + countProps(p);
    n += countProps(s.items) + (typeof s.additionalProperties === 'object' ? countProps(s.additionalProperties) : 0);
    return n;
  };
  for (const file of fs.readdirSync(CRD_DIR).filter((f: string) => f.endsWith('.yaml'))) {
    const raw = parse(fs.readFileSync(`${CRD_DIR}/${file}`, 'utf8'));
    const loaded = crds().get(raw.spec.names.kind)!;
    // sessionPersistence.idleTimeout of Gateway API v1.4 and v1.5 is added back to the route kinds (compat.ts).
    const added = raw.spec.names.kind === 'HTTPRoute' || raw.spec.names.kind === 'GRPCRoute' ? 1 : 0;
    for (const v of raw.spec.versions) {
      assert.equal(countProps(loaded.schemas.get(v.name)), countProps(v.schema.openAPIV3Schema) + added, `${file} ${v.name}`);
    }
  }
  const gc = defaulted('apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gc}\nspec: {controllerName: gatehouse.dev/gateway-controller, description: new}');
  assert.equal(gc.spec.description, 'new');
});
