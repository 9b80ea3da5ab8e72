// The CRDs' own CEL rules (x-kubernetes-validations, run by src/api/cel/):
// for each, an object the rule admits and one it refuses, with the field
// and reason the API server would report: the schema node the rule is
// attached to, and the rule's message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { validateObject } from '../../src/api/validate.ts';
import { parseDuration } from '../../src/api/durations.ts';

interface Case {
  name: string;
  yaml: string;
  /** Absent: the object is valid. */
  field?: string;
  reason?: string;
}

const gateway = (listeners: string, extra = '') => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gc
${extra}
  listeners:
${listeners}`;

const listenerSet = (listeners: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: infra}
spec:
  parentRef: {name: gw}
  listeners:
${listeners}`;

const httpRoute = (spec: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: keystone, namespace: team-a}
spec:
${spec}`;

const rule = (body: string) => httpRoute(`  rules:\n  - ${body.trim().split('\n').join('\n    ')}`);

const grpcRoute = (spec: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: team-a}
spec:
${spec}`;

const cases: Case[] = [
  // ------------------------------------------------ Gateway listeners
  { name: 'listener names unique: distinct', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}\n  - {name: b, port: 8080, protocol: HTTP}') },
  {
    name: 'listener names unique: repeated', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}\n  - {name: a, port: 8080, protocol: HTTP}'),
    field: 'spec.listeners', reason: 'Listener name must be unique within the Gateway',
  },
  { name: 'port/protocol/hostname unique: different hostnames', yaml: gateway('  - {name: a, port: 80, protocol: HTTP, hostname: a.example.com}\n  - {name: b, port: 80, protocol: HTTP, hostname: b.example.com}') },
  {
    name: 'port/protocol/hostname unique: same', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}\n  - {name: b, port: 80, protocol: HTTP}'),
    field: 'spec.listeners', reason: 'Combination of port, protocol and hostname must be unique for each listener',
  },
  { name: 'hostname for TCP: absent', yaml: gateway('  - {name: t, port: 9000, protocol: TCP}') },
  {
    name: 'hostname for TCP: set', yaml: gateway('  - {name: t, port: 9000, protocol: TCP, hostname: db.example.com}'),
    field: 'spec.listeners', reason: "hostname must not be specified for protocols ['TCP', 'UDP']",
  },
  {
    name: 'hostname for UDP: set', yaml: gateway('  - {name: u, port: 53, protocol: UDP, hostname: dns.example.com}'),
    field: 'spec.listeners', reason: "hostname must not be specified for protocols ['TCP', 'UDP']",
  },
  {
    name: 'tls for HTTP: set', yaml: gateway('  - {name: h, port: 80, protocol: HTTP, tls: {certificateRefs: [{name: c}]}}'),
    field: 'spec.listeners', reason: "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
  },
  {
    name: 'tls for TCP: set', yaml: gateway('  - {name: t, port: 9000, protocol: TCP, tls: {mode: Passthrough}}'),
    field: 'spec.listeners', reason: "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
  },
  {
    name: 'tls for UDP: set', yaml: gateway('  - {name: u, port: 53, protocol: UDP, tls: {mode: Passthrough}}'),
    field: 'spec.listeners', reason: "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
  },
  { name: 'tls for TLS: passthrough', yaml: gateway('  - {name: t, port: 443, protocol: TLS, tls: {mode: Passthrough}}') },
  {
    name: 'tls for TLS: absent', yaml: gateway('  - {name: t, port: 443, protocol: TLS}'),
    field: 'spec.listeners', reason: 'tls mode must be set for protocol TLS',
  },
  { name: 'tls for HTTPS: certificateRefs', yaml: gateway('  - {name: s, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: c}]}}') },
  // The CRD leaves an HTTPS listener without tls to the controller (ListenerConditions), as the API server does.
  { name: 'tls for HTTPS: absent is admitted', yaml: gateway('  - {name: s, port: 443, protocol: HTTPS}') },
  {
    name: 'tls for HTTPS: passthrough', yaml: gateway('  - {name: s, port: 443, protocol: HTTPS, tls: {mode: Passthrough}}'),
    field: 'spec.listeners', reason: 'tls mode must be Terminate for protocol HTTPS',
  },
  {
    // The rule reads both fields, so an absent one is an evaluation error, reported as the API server words it.
    name: 'Terminate without certificateRefs or options', yaml: gateway('  - {name: s, port: 443, protocol: HTTPS, tls: {mode: Terminate}}'),
    field: 'spec.listeners[0].tls', reason: 'no such key: certificateRefs evaluating rule: certificateRefs or options must be specified when mode is Terminate',
  },
  {
    name: 'Terminate with empty certificateRefs', yaml: gateway('  - {name: s, port: 443, protocol: TLS, tls: {certificateRefs: []}}'),
    field: 'spec.listeners[0].tls', reason: 'no such key: options evaluating rule: certificateRefs or options must be specified when mode is Terminate',
  },
  {
    name: 'Terminate with empty certificateRefs and options', yaml: gateway('  - {name: s, port: 443, protocol: TLS, tls: {certificateRefs: [], options: {}}}'),
    field: 'spec.listeners[0].tls', reason: 'certificateRefs or options must be specified when mode is Terminate',
  },
  { name: 'Terminate with options only', yaml: gateway('  - {name: s, port: 443, protocol: HTTPS, tls: {options: {example.com/cert: x}}}') },
  // ------------------------------------------------ Gateway addresses, infrastructure
  { name: 'addresses: distinct', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}', '  addresses: [{value: 10.0.0.1}, {value: 10.0.0.2}, {type: Hostname, value: a.example.com}]') },
  {
    name: 'addresses: IPAddress repeated', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}', '  addresses: [{value: 10.0.0.1}, {type: IPAddress, value: 10.0.0.1}]'),
    field: 'spec.addresses', reason: 'IPAddress values must be unique',
  },
  {
    name: 'addresses: Hostname invalid', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}', '  addresses: [{type: Hostname, value: Not_Valid}]'),
    field: 'spec.addresses[0]', reason: 'Hostname value must be empty or contain only valid characters',
  },
  {
    name: 'infrastructure label key', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}', '  infrastructure: {labels: {"bad key!": v}}'),
    field: 'spec.infrastructure.labels', reason: 'Label keys must be in the form of an optional DNS subdomain prefix',
  },
  { name: 'infrastructure annotation key', yaml: gateway('  - {name: a, port: 80, protocol: HTTP}', '  infrastructure: {annotations: {example.com/key: v}}') },
  // ------------------------------------------------ ListenerSet
  {
    name: 'ListenerSet listener names unique', yaml: listenerSet('  - {name: a, port: 80, protocol: HTTP}\n  - {name: a, port: 81, protocol: HTTP}'),
    field: 'spec.listeners', reason: 'Listener name must be unique within the Gateway',
  },
  {
    name: 'ListenerSet hostname for TCP', yaml: listenerSet('  - {name: a, port: 9000, protocol: TCP, hostname: x.example.com}'),
    field: 'spec.listeners', reason: "hostname must not be specified for protocols ['TCP', 'UDP']",
  },
  // ------------------------------------------------ HTTPRoute paths
  { name: 'path: absolute', yaml: rule('matches: [{path: {type: PathPrefix, value: /v3}}]') },
  {
    name: 'path: relative', yaml: rule('matches: [{path: {type: PathPrefix, value: v3}}]'),
    field: 'spec.rules[0].matches[0].path', reason: "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
  },
  {
    name: 'path: exact relative', yaml: rule('matches: [{path: {type: Exact, value: v3}}]'),
    field: 'spec.rules[0].matches[0].path', reason: "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
  },
  { name: 'path: a regular expression need not start with /', yaml: rule('matches: [{path: {type: RegularExpression, value: ".*/v3"}}]') },
  { name: 'path: double slash', yaml: rule('matches: [{path: {value: /a//b}}]'), field: 'spec.rules[0].matches[0].path', reason: "must not contain '//' when type one of ['Exact', 'PathPrefix']" },
  { name: 'path: dot segment', yaml: rule('matches: [{path: {value: /a/../b}}]'), field: 'spec.rules[0].matches[0].path', reason: "must not contain '/../' when type one of ['Exact', 'PathPrefix']" },
  { name: 'path: encoded slash', yaml: rule('matches: [{path: {value: /a%2Fb}}]'), field: 'spec.rules[0].matches[0].path', reason: "must not contain '%2F' when type one of ['Exact', 'PathPrefix']" },
  { name: 'path: fragment', yaml: rule('matches: [{path: {value: "/a#b"}}]'), field: 'spec.rules[0].matches[0].path', reason: "must not contain '#' when type one of ['Exact', 'PathPrefix']" },
  { name: 'path: trailing dot', yaml: rule('matches: [{path: {value: /a/.}}]'), field: 'spec.rules[0].matches[0].path', reason: "must not end with '/.' when type one of ['Exact', 'PathPrefix']" },
  { name: 'path: invalid character', yaml: rule('matches: [{path: {value: "/a b"}}]'), field: 'spec.rules[0].matches[0].path', reason: "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']" },
  // ------------------------------------------------ HTTPRoute filters
  {
    name: 'RequestRedirect and URLRewrite together',
    yaml: rule('filters:\n- {type: RequestRedirect, requestRedirect: {scheme: https}}\n- {type: URLRewrite, urlRewrite: {hostname: x.example.com}}'),
    field: 'spec.rules[0].filters', reason: 'May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both',
  },
  {
    name: 'RequestRedirect and URLRewrite together in a backendRef',
    yaml: rule('backendRefs:\n- name: s\n  port: 80\n  filters:\n  - {type: RequestRedirect, requestRedirect: {scheme: https}}\n  - {type: URLRewrite, urlRewrite: {hostname: x.example.com}}'),
    field: 'spec.rules[0].backendRefs[0].filters', reason: 'May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both',
  },
  { name: 'filter type with its field', yaml: rule('filters:\n- {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x, value: y}]}}') },
  {
    name: 'filter type without its field', yaml: rule('filters:\n- {type: RequestHeaderModifier}'),
    field: 'spec.rules[0].filters[0]', reason: 'filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type',
  },
  {
    name: 'filter with another type\'s field', yaml: rule('filters:\n- {type: RequestHeaderModifier, requestHeaderModifier: {remove: [x]}, responseHeaderModifier: {remove: [y]}}'),
    field: 'spec.rules[0].filters[0]', reason: 'filter.responseHeaderModifier must be nil if the filter.type is not ResponseHeaderModifier',
  },
  {
    name: 'filter field mismatch in a backendRef', yaml: rule('backendRefs:\n- name: s\n  port: 80\n  filters: [{type: URLRewrite, requestRedirect: {scheme: https}}]'),
    field: 'spec.rules[0].backendRefs[0].filters[0]', reason: 'filter.requestRedirect must be nil if the filter.type is not RequestRedirect',
  },
  {
    name: 'filter type repeated', yaml: rule('filters:\n- {type: RequestHeaderModifier, requestHeaderModifier: {remove: [x]}}\n- {type: RequestHeaderModifier, requestHeaderModifier: {remove: [y]}}'),
    field: 'spec.rules[0].filters', reason: 'RequestHeaderModifier filter cannot be repeated',
  },
  {
    name: 'URLRewrite repeated', yaml: rule('filters:\n- {type: URLRewrite, urlRewrite: {hostname: a.example.com}}\n- {type: URLRewrite, urlRewrite: {hostname: b.example.com}}'),
    field: 'spec.rules[0].filters', reason: 'URLRewrite filter cannot be repeated',
  },
  {
    name: 'RequestMirror and ExtensionRef may repeat',
    yaml: rule('filters:\n- {type: RequestMirror, requestMirror: {backendRef: {name: a, port: 80}}}\n- {type: RequestMirror, requestMirror: {backendRef: {name: b, port: 80}}}\n- {type: ExtensionRef, extensionRef: {group: example.com, kind: F, name: a}}\n- {type: ExtensionRef, extensionRef: {group: example.com, kind: F, name: b}}'),
  },
  {
    name: 'RequestRedirect with backendRefs', yaml: rule('filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]\nbackendRefs: [{name: s, port: 80}]'),
    field: 'spec.rules[0]', reason: 'RequestRedirect filter must not be used together with backendRefs',
  },
  {
    name: 'ReplacePrefixMatch with one PathPrefix match',
    yaml: rule('matches: [{path: {type: PathPrefix, value: /old}}]\nfilters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]'),
  },
  {
    name: 'ReplacePrefixMatch with an Exact match',
    yaml: rule('matches: [{path: {type: Exact, value: /old}}]\nfilters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]'),
    field: 'spec.rules[0]', reason: 'When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified',
  },
  {
    name: 'ReplacePrefixMatch with two matches',
    yaml: rule('matches: [{path: {value: /a}}, {path: {value: /b}}]\nfilters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]'),
    field: 'spec.rules[0]', reason: 'When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified',
  },
  {
    name: 'ReplacePrefixMatch in a backendRef filter with a RegularExpression match',
    yaml: rule('matches: [{path: {type: RegularExpression, value: /a.*}}]\nbackendRefs:\n- name: s\n  port: 80\n  filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]'),
    field: 'spec.rules[0]', reason: 'Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified',
  },
  { name: 'ReplacePrefixMatch with the default match', yaml: rule('filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]') },
  {
    name: 'path modifier without its field', yaml: rule('filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath}}}]'),
    field: 'spec.rules[0].filters[0].urlRewrite.path', reason: "replaceFullPath must be specified when type is set to 'ReplaceFullPath'",
  },
  {
    name: 'path modifier with the other field', yaml: rule('filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /a, replacePrefixMatch: /b}}}]'),
    field: 'spec.rules[0].filters[0].urlRewrite.path', reason: "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set",
  },
  {
    name: 'mirror percent and fraction', yaml: rule('filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, percent: 10, fraction: {numerator: 1}}}]'),
    field: 'spec.rules[0].filters[0].requestMirror', reason: 'Only one of percent or fraction may be specified',
  },
  {
    name: 'mirror fraction over 1', yaml: rule('filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 3, denominator: 2}}}]'),
    field: 'spec.rules[0].filters[0].requestMirror.fraction', reason: 'numerator must be less than or equal to denominator',
  },
  {
    name: 'mirror to a Service without port', yaml: rule('filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m}}}]'),
    field: 'spec.rules[0].filters[0].requestMirror.backendRef', reason: 'Must have port for Service reference',
  },
  {
    name: 'CORS wildcard alongside others', yaml: rule('filters: [{type: CORS, cors: {allowOrigins: ["*", "https://a.example.com"]}}]'),
    field: 'spec.rules[0].filters[0].cors.allowOrigins', reason: "AllowOrigins cannot contain '*' alongside other origins",
  },
  { name: 'CORS wildcard alone', yaml: rule('filters: [{type: CORS, cors: {allowOrigins: ["*"], allowMethods: ["*"]}}]') },
  // ------------------------------------------------ HTTPRoute backendRefs, parentRefs, rules
  {
    name: 'Service backendRef without port', yaml: rule('backendRefs: [{name: s}]'),
    field: 'spec.rules[0].backendRefs[0]', reason: 'Must have port for Service reference',
  },
  { name: 'non-Service backendRef without port', yaml: rule('backendRefs: [{group: example.com, kind: Bucket, name: s}]') },
  {
    name: 'parentRefs: same parent twice', yaml: httpRoute('  parentRefs: [{name: gw}, {name: gw, kind: Gateway}]'),
    field: 'spec.parentRefs', reason: 'sectionName or port must be unique when parentRefs includes 2 or more references to the same parent',
  },
  {
    name: 'parentRefs: same parent, one with sectionName', yaml: httpRoute('  parentRefs: [{name: gw}, {name: gw, sectionName: http}]'),
    field: 'spec.parentRefs', reason: 'sectionName or port must be specified when parentRefs includes 2 or more references to the same parent',
  },
  { name: 'parentRefs: same parent, different sections', yaml: httpRoute('  parentRefs: [{name: gw, sectionName: a}, {name: gw, sectionName: b}, {name: gw, namespace: other}]') },
  {
    name: 'rule names unique', yaml: httpRoute('  rules:\n  - {name: a}\n  - {name: a}'),
    field: 'spec.rules', reason: 'Rule name must be unique within the route',
  },
  { name: 'rule names: distinct or absent', yaml: httpRoute('  rules:\n  - {name: a}\n  - {name: b}\n  - {}\n  - {}') },
  {
    name: 'more than 128 matches in a route',
    yaml: httpRoute(`  rules:\n${Array.from({ length: 3 }, (_, r) => `  - matches: [${Array.from({ length: 43 }, (_, i) => `{path: {value: /r${r}m${i}}}`).join(', ')}]`).join('\n')}`),
    field: 'spec.rules', reason: 'While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128',
  },
  {
    name: 'backendRequest timeout longer than request', yaml: rule('timeouts: {request: 10s, backendRequest: 1m}'),
    field: 'spec.rules[0].timeouts', reason: 'backendRequest timeout cannot be longer than request timeout',
  },
  { name: 'backendRequest timeout within request', yaml: rule('timeouts: {request: 1m, backendRequest: 500ms}') },
  { name: 'request timeout 0s disables the comparison', yaml: rule('timeouts: {request: 0s, backendRequest: 1h}') },
  {
    name: 'sessionPersistence cookie for type Header', yaml: rule('sessionPersistence: {type: Header, cookie: {}}'),
    field: 'spec.rules[0].sessionPersistence', reason: 'cookie must be nil if type is not Cookie',
  },
  // ------------------------------------------------ GRPCRoute
  { name: 'GRPCRoute method match', yaml: grpcRoute('  rules: [{matches: [{method: {service: grpc.health.v1.Health, method: Check}}]}]') },
  {
    name: 'GRPCRoute method match with neither service nor method', yaml: grpcRoute('  rules: [{matches: [{method: {type: Exact}}]}]'),
    field: 'spec.rules[0].matches[0].method', reason: "One or both of 'service' or 'method' must be specified",
  },
  {
    name: 'GRPCRoute invalid service', yaml: grpcRoute('  rules: [{matches: [{method: {service: "grpc/health"}}]}]'),
    field: 'spec.rules[0].matches[0].method', reason: 'service must only contain valid characters (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)',
  },
  {
    name: 'GRPCRoute filter repeated', yaml: grpcRoute('  rules:\n  - filters:\n    - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [a]}}\n    - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [b]}}'),
    field: 'spec.rules[0].filters', reason: 'ResponseHeaderModifier filter cannot be repeated',
  },
  {
    name: 'GRPCRoute backendRef without port', yaml: grpcRoute('  rules: [{backendRefs: [{name: s}]}]'),
    field: 'spec.rules[0].backendRefs[0]', reason: 'Must have port for Service reference',
  },
  // ------------------------------------------------ TLSRoute, TCPRoute, UDPRoute
  {
    name: 'TLSRoute hostname is an IP',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: t}\nspec:\n  hostnames: ["10.0.0.1"]\n  rules: [{backendRefs: [{name: s, port: 443}]}]',
    field: 'spec.hostnames', reason: 'Hostnames cannot contain an IP',
  },
  { name: 'TLSRoute wildcard hostname', yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: t}\nspec:\n  hostnames: ["*.example.com"]\n  rules: [{backendRefs: [{name: s, port: 443}]}]' },
  {
    name: 'TCPRoute backendRef without port',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t}\nspec:\n  rules: [{backendRefs: [{name: s}]}]',
    field: 'spec.rules[0].backendRefs[0]', reason: 'Must have port for Service reference',
  },
  {
    name: 'UDPRoute parentRefs repeated',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {name: u}\nspec:\n  parentRefs: [{name: gw, port: 53}, {name: gw, port: 53}]\n  rules: [{backendRefs: [{name: s, port: 53}]}]',
    field: 'spec.parentRefs', reason: 'sectionName or port must be unique when parentRefs includes 2 or more references to the same parent',
  },
  // ------------------------------------------------ BackendTLSPolicy
  {
    name: 'BackendTLSPolicy with CA refs',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: "", kind: Service, name: s}]\n  validation: {hostname: s.example.com, caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]}',
  },
  {
    name: 'BackendTLSPolicy with both CA refs and well-known CAs',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: "", kind: Service, name: s}]\n  validation: {hostname: s.example.com, wellKnownCACertificates: System, caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]}',
    field: 'spec.validation', reason: 'must not contain both CACertificateRefs and WellKnownCACertificates',
  },
  {
    name: 'BackendTLSPolicy with neither',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: "", kind: Service, name: s}]\n  validation: {hostname: s.example.com}',
    field: 'spec.validation', reason: 'must specify either CACertificateRefs or WellKnownCACertificates',
  },
  {
    name: 'BackendTLSPolicy SAN of type Hostname without hostname',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: "", kind: Service, name: s}]\n  validation: {hostname: s.example.com, wellKnownCACertificates: System, subjectAltNames: [{type: Hostname, uri: "spiffe://x"}]}',
    field: 'spec.validation.subjectAltNames[0]', reason: 'SubjectAltName element must contain Hostname, if Type is set to Hostname',
  },
  {
    name: 'BackendTLSPolicy same target twice',
    yaml: 'apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: "", kind: Service, name: s}, {group: "", kind: Service, name: s}]\n  validation: {hostname: s.example.com, wellKnownCACertificates: System}',
    field: 'spec.targetRefs', reason: 'sectionName must be unique when targetRefs includes 2 or more references to the same target',
  },
];

for (const c of cases) {
  test(`rule: ${c.name}`, () => {
    const r = validateObject(parse(c.yaml));
    if (c.field === undefined) {
      assert.deepEqual(r.errors, []);
      assert.ok(r.object);
      return;
    }
    assert.equal(r.object, null);
    assert.ok(r.errors.some((e) => e.field === c.field && e.reason.includes(c.reason!)),
      `want ${c.field}: ${c.reason}\ngot ${JSON.stringify(r.errors, null, 1)}`);
  });
}

test('parseDuration reads Gateway API durations', () => {
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('1d'), null);
  assert.equal(parseDuration(''), null);
});
