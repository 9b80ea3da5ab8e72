// explain against a config dir loaded the way serve loads it: the winner
// and each loser's reason, refused routes, a port without listener, HTTPS
// with SNI; and the request parser.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { explain } from '../../src/explain/explain.ts';
import { parseExplainRequest } from '../../src/explain/request.ts';
import { explainInputFromDirectory } from '../../src/cli/explain.ts';
import { formatExplain } from '../../src/explain/format.ts';
import { writeExplainConfig } from './fixtures.ts';
import { GATEWAY_CLASS, gatewayYAML } from '../e2e/helpers.ts';

const dir = writeExplainConfig();
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const { input, errors } = explainInputFromDirectory(dir);

function run(text: string, opts = {}) {
  const req = parseExplainRequest(text, opts);
  if (typeof req === 'string') throw new Error(req);
  return explain(input, req);
}

test('the config loads without errors', () => {
  assert.deepEqual(errors, []);
});

test('several routes on one listener: the winner, and why each other rule lost', () => {
  const r = run('GET http://nova.example:8080/v2.1/servers -H "X-Foo: bar"');
  assert.equal(r.routed, true, r.outcome);
  assert.equal(r.listener, 'default/gw/http');
  assert.equal(r.virtualHost, 'nova.example');
  assert.equal(r.route?.name, 'default/nova-old/0/0');
  assert.deepEqual(r.route?.backends, [{ weight: 1, cluster: 'default/nova:8774', endpoints: ['127.0.0.1:8774'] }]);
  const reason = (name: string) => r.routes.find((x) => x.name === name)?.reason ?? '(absent)';
  assert.match(reason('default/nova/create/0'), /method GET is not POST/);
  assert.match(reason('default/nova/foo-baz/0'), /header x-foo: "bar" does not match Exact baz/);
  // Same path and no other match: the older route wins.
  assert.match(reason('default/nova/servers/0'), /also matches, but default\/nova-old\/0\/0 comes first: .*default\/nova-old is older/);
  assert.match(reason('default/nova/0/0'), /its path \/v2.1\/servers is longer than \/v2.1/);
  // The listener with a hostname that does not match is named with its reason.
  assert.match(r.listeners.find((l) => l.name === 'default/gw/admin')!.reason, /hostname admin.example does not match nova.example/);
});

test('a header match outranks a bare prefix of the same length when it holds', () => {
  const r = run(`GET 'http://nova.example:8080/v2.1/servers/abc' -H 'X-Foo: baz'`);
  assert.equal(r.route?.name, 'default/nova/foo-baz/0');
  assert.match(r.routes.find((x) => x.name === 'default/nova-old/0/0')!.reason, /more header matches \(1 > 0\)/);
});

test('no rule matches: 404, every rule with its reason', () => {
  const r = run('GET http://nova.example:8080/v3/images');
  assert.equal(r.routed, false);
  assert.match(r.outcome, /^404: no rule/);
  assert.ok(r.routes.every((x) => x.verdict === 'skipped' && /is not (under prefix|exactly)/.test(x.reason)), JSON.stringify(r.routes));
});

test('routes not attached, with the check that refused them', () => {
  const r = run('GET http://nova.example:8080/');
  const intruder = r.unattached.find((u) => u.route === 'other/intruder');
  assert.equal(intruder?.conditions[0].reason, 'NotAllowedByListeners');
  const wrong = r.unattached.find((u) => u.route === 'default/wrong-host');
  assert.equal(wrong?.conditions[0].reason, 'NoMatchingListenerHostname');
  assert.match(formatExplain(r), /default\/wrong-host: Accepted=False NoMatchingListenerHostname/);
});

test('no listener on the port', () => {
  const r = run('GET http://nova.example:9999/v2.1');
  assert.equal(r.routed, false);
  assert.equal(r.outcome, 'not served: no listener on port 9999');
  assert.equal(r.socket, null);
});

test('https: SNI is the host, the listener is the one whose certificate SNI chose', () => {
  const r = run('GET https://nova.example:8443/v2.1/flavors');
  assert.equal(r.request.sni, 'nova.example');
  assert.equal(r.routed, true, r.outcome);
  assert.equal(r.listener, 'default/gw/https');
  assert.equal(r.route?.name, 'default/nova/0/0');
  // nova-old attaches only to the http listener.
  assert.ok(!r.routes.some((x) => x.name.startsWith('default/nova-old/')));
});

test('https: a Host of another listener than SNI negotiated is 421; an http URL to the https port is not served', () => {
  const r = run('GET https://nova.example:8443/v2.1', { sni: 'keystone.example' });
  assert.equal(r.routed, false);
  assert.match(r.outcome, /^421: host nova.example belongs to listener default\/gw\/https, but SNI "keystone.example" negotiated default\/gw\/keystone/);
  const plain = run('GET http://nova.example:8443/v2.1');
  assert.equal(plain.routed, false);
  assert.match(plain.sockets[0].reason, /speaks HTTPS, the URL is http/);
});

test('https: an SNI no certificate serves fails the handshake', () => {
  const r = run('GET https://nova.example:8443/', { sni: 'nova.other' });
  assert.equal(r.outcome, 'TLS handshake refused: no certificate for SNI "nova.other"');
});

test('the request parser: quoting, repeated headers, bad input', () => {
  const req = parseExplainRequest(`POST "http://h.example/a b?x=1" -H 'X-A: 1' -H "X-A: 2"`);
  assert.ok(typeof req !== 'string');
  assert.equal(req.method, 'POST');
  assert.equal(req.path, '/a b');
  assert.equal(req.query, '?x=1');
  assert.equal(req.port, 80);
  assert.deepEqual(req.headers, [['X-A', '1'], ['X-A', '2']]);
  assert.match(parseExplainRequest('GET /relative') as string, /not an absolute URL/);
  assert.match(parseExplainRequest('GET ftp://x/') as string, /neither http nor https/);
  assert.match(parseExplainRequest('GET http://x/ -H nocolon') as string, /Name: value/);
  assert.match(parseExplainRequest(`GET 'http://x/`) as string, /unterminated/);
  assert.match(parseExplainRequest('x'.repeat(9000)) as string, /longer than/);
});

test('GRPCRoutes are explained like HTTPRoutes: the method match as the path it becomes, and why one is not attached', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-explain-grpc-'));
  try {
    fs.writeFileSync(path.join(dir, 'all.yaml'), `${GATEWAY_CLASS}---
${gatewayYAML(8080)}---
apiVersion: v1
kind: Service
metadata: {name: one, namespace: default}
spec: {ports: [{name: grpc, port: 9000}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{method: {service: test.Echo, method: Echo}}], backendRefs: [{name: one, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: intruder, namespace: other}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: one, port: 9000}]}]
`);
    const grpc = explainInputFromDirectory(dir).input;
    const ask = (text: string) => {
      const req = parseExplainRequest(text, {});
      if (typeof req === 'string') throw new Error(req);
      return explain(grpc, req);
    };
    const hit = ask('POST http://grpc.example:8080/test.Echo/Echo');
    assert.equal(hit.routed, true, hit.outcome);
    assert.equal(hit.route?.name, 'default/echo/0/0');
    assert.deepEqual(hit.route?.backends.map((b) => b.cluster), ['default/one:9000~h2c']);
    const miss = ask('POST http://grpc.example:8080/test.Echo/Other');
    assert.equal(miss.routed, false);
    assert.match(miss.routes.find((x) => x.name === 'default/echo/0/0')?.reason ?? '', /is not exactly \/test\.Echo\/Echo/);
    assert.ok(miss.unattached.some((u) => u.route === 'other/intruder'), JSON.stringify(miss.unattached));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
