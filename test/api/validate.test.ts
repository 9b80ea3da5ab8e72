// validateObject: the envelope (apiVersion, kind, metadata), which kinds
// are read or ignored, the hand-written checks of core kinds, and the
// upstream conformance manifests as a regression set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { identityOf, validateObject } from '../../src/api/validate.ts';
import type { FieldError } from '../../src/api/errors.ts';

const CONFORMANCE = path.resolve(import.meta.dirname, '../../../shared/conformance/manifests');

function v(yaml: string) {
  return validateObject(parse(yaml));
}

function assertError(errors: FieldError[], field: string, reason: string): void {
  assert.ok(errors.some((e) => e.field === field && e.reason.includes(reason)), `want ${field}: ${reason}\ngot ${JSON.stringify(errors, null, 1)}`);
}

// ---------------------------------------------------------------- envelope

test('not an object', () => {
  const r = validateObject('just a string');
  assert.equal(r.object, null);
  assertError(r.errors, '', 'must be an object, not string');
});

test('apiVersion, kind and metadata.name are required', () => {
  const r = validateObject({ metadata: {} });
  assert.equal(r.ignored, false);
  assertError(r.errors, 'apiVersion', 'is required');
  assertError(r.errors, 'kind', 'is required');
  assertError(r.errors, 'metadata.name', 'is required');
  const noName = v('apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\nspec: {ports: [{port: 80}]}');
  assertError(noName.errors, 'metadata.name', 'is required');
  const noMeta = v('apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nspec: {controllerName: a.b/c}');
  assertError(noMeta.errors, 'metadata.name', 'is required');
});

test('names: DNS subdomain for most kinds, DNS label for Namespace, RFC 1035 label for Service', () => {
  assertError(v('apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: Upper}\nspec: {controllerName: a.b/c}').errors, 'metadata.name', 'RFC 1123 subdomain');
  assert.deepEqual(v('apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: a.b-c}\nspec: {controllerName: a.b/c}').errors, []);
  assertError(v('apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}').errors, 'metadata.name', 'RFC 1123 label');
  assertError(v('apiVersion: v1\nkind: Service\nmetadata: {name: 1svc}\nspec: {ports: [{port: 80}]}').errors, 'metadata.name', 'RFC 1035 label');
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: Bad_NS}').errors, 'metadata.namespace', 'RFC 1123 label');
});

test('namespaced kinds default metadata.namespace to "default"; cluster-scoped kinds drop it', () => {
  assert.equal(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}').object?.metadata.namespace, 'default');
  assert.equal(v('apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}').object?.metadata.namespace, 'default');
  assert.equal(v('apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: x}').object?.metadata.namespace, undefined);
  assert.equal(v('apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: g, namespace: x}\nspec: {controllerName: a.b/c}').object?.metadata.namespace, undefined);
});

test('labels and annotations: string values, qualified keys', () => {
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {enabled: true}}').errors, 'metadata.labels[enabled]', 'must be of type string, not boolean');
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {"a/b/c": x}}').errors, 'metadata.labels[a/b/c]', 'invalid label key');
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {a: "x y"}}').errors, 'metadata.labels[a]', 'invalid label value');
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, annotations: {n: 1}}').errors, 'metadata.annotations[n]', 'must be of type string, not integer');
  const ok = v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {app.kubernetes.io/name: web}, annotations: {note: "any text: at all"}}');
  assert.deepEqual(ok.errors, []);
});

test('other kinds are ignored, not errors', () => {
  for (const yaml of [
    'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}',
    'apiVersion: v1\nkind: Pod\nmetadata: {name: p}',
    'apiVersion: example.com/v1\nkind: HTTPRoute\nmetadata: {name: r}',
    'apiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\nmetadata: {name: r}',
  ]) {
    const r = v(yaml);
    assert.equal(r.ignored, true, yaml);
    assert.equal(r.object, null);
    assert.deepEqual(r.errors, []);
  }
});

test('a known kind in a version that is not served is an error', () => {
  assertError(v('apiVersion: gateway.networking.k8s.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\nspec: {}').errors, 'apiVersion', 'version v1alpha1 of Gateway is not served');
  assertError(v('apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4').errors, 'apiVersion', 'not served');
});

test('identityOf names objects without validating them', () => {
  assert.deepEqual(identityOf({ kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'a' }, spec: 42 }), { kind: 'HTTPRoute', namespace: 'a', name: 'r' });
  assert.deepEqual(identityOf({ kind: 'HTTPRoute', metadata: { name: 'r' } }), { kind: 'HTTPRoute', namespace: 'default', name: 'r' });
  assert.deepEqual(identityOf({ kind: 'GatewayClass', metadata: { name: 'g', namespace: 'x' } }), { kind: 'GatewayClass', namespace: '', name: 'g' });
  assert.equal(identityOf({ kind: 'HTTPRoute' }), null);
});

// ---------------------------------------------------------------- core kinds

test('Service: defaults type, protocol, targetPort', () => {
  const r = v('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: a}\n  ports: [{port: 80}]');
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.object?.spec, { type: 'ClusterIP', selector: { app: 'a' }, ports: [{ port: 80, protocol: 'TCP', targetPort: 80 }] });
});

const serviceCases: [string, string, string, string][] = [
  ['port not numeric', 'ports: [{port: http}]', 'spec.ports[0].port', 'must be of type integer, not string'],
  ['port out of range', 'ports: [{port: 70000}]', 'spec.ports[0].port', 'must be between 1 and 65535'],
  ['port missing', 'ports: [{name: a}]', 'spec.ports[0].port', 'is required'],
  ['protocol', 'ports: [{port: 80, protocol: HTTP}]', 'spec.ports[0].protocol', 'unsupported value "HTTP"'],
  ['targetPort name', 'ports: [{port: 80, targetPort: "Not_A_Name"}]', 'spec.ports[0].targetPort', 'IANA service name'],
  ['unnamed ports', 'ports: [{port: 80}, {port: 81}]', 'spec.ports[0].name', 'is required when there is more than one port'],
  ['duplicate names', 'ports: [{name: a, port: 80}, {name: a, port: 81}]', 'spec.ports[1].name', 'duplicate port name "a"'],
  ['no ports', 'selector: {app: a}', 'spec.ports', 'is required'],
  ['ExternalName without name', 'type: ExternalName', 'spec.externalName', 'is required for type ExternalName'],
  ['type', 'type: Magic\n  ports: [{port: 80}]', 'spec.type', 'unsupported value "Magic"'],
];
for (const [name, spec, field, reason] of serviceCases) {
  test(`Service: ${name}`, () => {
    assertError(v(`apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ${spec}`).errors, field, reason);
  });
}

test('Service: headless and ExternalName need no ports; named targetPort is kept', () => {
  assert.deepEqual(v('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: None}').errors, []);
  assert.deepEqual(v('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ExternalName, externalName: db.example.com}').errors, []);
  const r = v('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: web, port: 80, targetPort: http-alt}, {name: x, port: 81, targetPort: "8081"}]}');
  assert.deepEqual(r.errors, []);
  assert.deepEqual((r.object?.spec as any).ports.map((p: any) => p.targetPort), ['http-alt', 8081]);
});

test('EndpointSlice: addressType, addresses of that type, ports', () => {
  const ok = v(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s-1, labels: {kubernetes.io/service-name: s}}
addressType: IPv4
ports: [{name: http, port: 3000}]
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]`);
  assert.deepEqual(ok.errors, []);
  assert.equal((ok.object as any).ports[0].protocol, 'TCP');
  assertError(v('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\nendpoints: []').errors, 'addressType', 'is required');
  assertError(v('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\nendpoints: [{addresses: ["::1"]}]').errors, 'endpoints[0].addresses[0]', 'must be a valid IPv4 address');
  assertError(v('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv6\nendpoints: [{addresses: ["10.0.0.1"]}]').errors, 'endpoints[0].addresses[0]', 'must be a valid IPv6 address');
  assertError(v('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\nendpoints: [{addresses: []}]').errors, 'endpoints[0].addresses', 'must be a non-empty array');
  assertError(v('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\nports: [{port: "80"}]').errors, 'ports[0].port', 'must be of type integer');
  assertError(v('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: "yes"}}]').errors, 'endpoints[0].conditions.ready', 'must be of type boolean');
});

test('Secret: data must be base64; stringData is merged into data; tls Secrets need tls.crt and tls.key', () => {
  assertError(v('apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {key: "not base64!"}').errors, 'data[key]', 'must be valid base64');
  assertError(v('apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {key: 42}').errors, 'data[key]', 'must be a base64 string, not integer');
  assertError(v('apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.crt: YQ==}').errors, 'data[tls.key]', 'is required for a Secret of type kubernetes.io/tls');
  const r = v('apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: "YQ==\\n"}\nstringData: {b: hello}');
  assert.deepEqual(r.errors, []);
  assert.deepEqual((r.object as any).data, { a: 'YQ==', b: Buffer.from('hello').toString('base64') });
  assert.equal((r.object as any).stringData, undefined);
  assert.equal((r.object as any).type, 'Opaque');
});

test('ConfigMap: string data, base64 binaryData, no key in both', () => {
  assert.deepEqual(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {ca.crt: "-----BEGIN..."}').errors, []);
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {n: 1}').errors, 'data[n]', 'must be of type string, not integer');
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {"bad key": x}').errors, 'data[bad key]', 'invalid key');
  assertError(v('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: x}\nbinaryData: {a: YQ==}').errors, 'binaryData[a]', 'duplicate of a key in data');
});

// ---------------------------------------------------------------- conformance manifests

/** The runner's substitutions (Applier.prepareResources) before it writes a manifest. */
function prepare(o: any): any {
  if (o?.kind === 'GatewayClass') o.spec.controllerName = 'gatehouse.dev/gateway-controller';
  if (o?.kind === 'Gateway' && Array.isArray(o.spec?.addresses)) {
    o.spec.addresses = o.spec.addresses.flatMap((a: any) => a.value === 'PLACEHOLDER_USABLE_ADDRS' ? [{ type: 'IPAddress', value: '127.20.255.254' }]
      : a.value === 'PLACEHOLDER_UNUSABLE_ADDRS' ? [{ type: 'IPAddress', value: '127.19.255.254' }] : [a]);
  }
  return JSON.parse(JSON.stringify(o).replaceAll('{GATEWAY_CLASS_NAME}', 'gatehouse').replaceAll('{GATEWAY_CONTROLLER_NAME}', 'gatehouse.dev/gateway-controller'));
}

/** Paths of `a` whose value is not the same in `b`. */
function missingIn(a: unknown, b: unknown, at: string): string[] {
  if (a !== null && typeof a === 'object') {
    if (b === null || typeof b !== 'object' || Array.isArray(a) !== Array.isArray(b)) return [at];
    return Object.entries(a).flatMap(([k, v]) => missingIn(v, (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k));
  }
  return a === b ? [] : [at];
}

test('every upstream conformance manifest validates without errors, and keeps every field it sets', { skip: !fs.existsSync(CONFORMANCE) && 'no shared/conformance' }, () => {
  const files = ['base/manifests.yaml', ...fs.readdirSync(path.join(CONFORMANCE, 'tests')).filter((f) => f.endsWith('.yaml')).map((f) => `tests/${f}`)];
  const problems: string[] = [];
  const kinds = new Map<string, number>();
  for (const file of files) {
    parseAllDocuments(fs.readFileSync(path.join(CONFORMANCE, file), 'utf8')).forEach((doc: any, i: number) => {
      const raw = doc.toJS();
      if (!raw) return;
      const input = prepare(raw);
      const r = validateObject(input);
      if (r.ignored) return;
      kinds.set(raw.kind, (kinds.get(raw.kind) ?? 0) + 1);
      const where = `${file} document ${i + 1} (${raw.kind} ${raw.metadata?.name})`;
      for (const e of r.errors) problems.push(`${where}: ${e.field}: ${e.reason}`);
      // Nothing the manifest says is pruned or changed: defaulting only adds.
      if (r.object) for (const lost of missingIn(input, r.object, '')) problems.push(`${where}: ${lost} lost`);
    });
  }
  assert.deepEqual(problems, []);
  // The set covers every kind Gatehouse reads, but for cluster-scoped GatewayClass, once.
  for (const kind of ['Namespace', 'Service', 'EndpointSlice', 'Secret', 'ConfigMap', 'GatewayClass', 'Gateway', 'ListenerSet', 'HTTPRoute',
    'GRPCRoute', 'TLSRoute', 'TCPRoute', 'UDPRoute', 'ReferenceGrant', 'BackendTLSPolicy']) {
    assert.ok(kinds.get(kind), `no ${kind} in the conformance manifests`);
  }
});

test('hostile keys: __proto__ and constructor are pruned or refused, never looked up on prototypes', () => {
  const route = validateObject(parse('apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: c}\nspec:\n  __proto__: {hostnames: [x]}\n  constructor: 1\n  toString: 2\n'));
  assert.deepEqual(route.errors, []);
  assert.deepEqual(Object.keys(route.object!.spec as object), ['rules']);
  assert.equal(({} as any).hostnames, undefined);
  for (const kind of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    const r = validateObject({ apiVersion: 'v1', kind, metadata: { name: 'x' } });
    assert.equal(r.ignored, true, kind);
  }
  const cm = validateObject(JSON.parse('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"__proto__":{"polluted":1}}}'));
  assertError(cm.errors, 'data[__proto__]', 'must be of type string, not object');
  assert.equal(({} as any).polluted, undefined);
});
