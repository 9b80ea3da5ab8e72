// Names and labels of provisioned objects: GEP-1762's `<gateway>-<class>`,
// shortened with a stable hash past 63 characters; the gateway-name label
// value as GEP-1762 spells it for long names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GATEWAY_CLASS_NAME_LABEL, GATEWAY_NAME_LABEL, infrastructureName, isDNS1035Label, nameLabelValue, ownLabels,
  provisionedSelector, selectorLabels,
} from '../../../src/providers/kubernetes/provision/names.ts';

test('infrastructureName: <gateway>-<class> when it is a DNS-1035 label of 63 characters or less', () => {
  const cases: [string, string, string][] = [
    ['cloud', 'gatehouse', 'cloud-gatehouse'],
    ['a', 'b', 'a-b'],
    ['x'.repeat(40), 'y'.repeat(22), `${'x'.repeat(40)}-${'y'.repeat(22)}`], // exactly 63
  ];
  for (const [gw, cls, want] of cases) assert.equal(infrastructureName(gw, cls), want, `${gw} ${cls}`);
});

test('infrastructureName: shortened with a hash past 63 characters, stable, distinct, valid', () => {
  const long = 'keystone-public-api-gateway-for-the-openstack-control-plane';
  const name = infrastructureName(long, 'gatehouse'); // 69 characters in full
  assert.equal(name.length, 63);
  assert.ok(isDNS1035Label(name), name);
  assert.match(name, /^keystone-public-api-gateway-for-the-openstack-contro-[0-9a-f]{10}$/);
  assert.equal(infrastructureName(long, 'gatehouse'), name, 'same input, same name');
  // Two names equal in their first 52 characters must not collide.
  assert.notEqual(infrastructureName(`${long}-a`, 'gatehouse'), infrastructureName(`${long}-b`, 'gatehouse'));
  assert.notEqual(infrastructureName(long, 'gatehouse'), infrastructureName(long, 'gatehouse-internal'));
  // 64 characters: the first length that is shortened.
  const n64 = infrastructureName('x'.repeat(41), 'y'.repeat(22));
  assert.equal(n64.length, 63);
  assert.ok(isDNS1035Label(n64));
});

test('infrastructureName: Gateway names that are no DNS-1035 label are made into one, with a hash', () => {
  // A Gateway name is a DNS-1123 subdomain: dots and a leading digit are allowed there, not in a Service name.
  for (const [gw, cls] of [['api.cloud', 'gatehouse'], ['1st', 'gatehouse'], ['9', '9'], ['a.b', 'c.d']]) {
    const name = infrastructureName(gw, cls);
    assert.ok(isDNS1035Label(name), `${gw} ${cls} -> ${name}`);
    assert.ok(name.length <= 63);
  }
  assert.match(infrastructureName('api.cloud', 'gatehouse'), /^api-cloud-gatehouse-[0-9a-f]{10}$/);
  assert.match(infrastructureName('1st', 'gatehouse'), /^g1st-gatehouse-[0-9a-f]{10}$/);
  // 'a.b' and 'a-b' would both read a-b-...: the hash keeps them apart.
  assert.notEqual(infrastructureName('a.b', 'c'), infrastructureName('a-b', 'c'));
  assert.equal(infrastructureName('a-b', 'c'), 'a-b-c');
});

test('nameLabelValue: GEP-1762 long-name rule (first 20 characters, "-", SHA-1 of the rest)', () => {
  assert.equal(nameLabelValue('cloud'), 'cloud');
  assert.equal(nameLabelValue('z'.repeat(63)), 'z'.repeat(63));
  // The example of GEP-1762 itself.
  assert.equal(
    nameLabelValue('example-very-very-very-very-very-very-very-very-very-long-gateway-name'),
    'example-very-very-ve-65cb6f84bc9e50270d0a6c2f845fd98c6fe8d89f',
  );
  const v = nameLabelValue('a'.repeat(200));
  assert.equal(v.length, 61);
  assert.match(v, /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, 'a valid label value');
});

test('labels: the GEP-1762 labels, ours, and a selector that names neither the class nor user labels', () => {
  const labels = ownLabels('cloud', 'gatehouse', 'cloud-gatehouse');
  assert.deepEqual(labels, {
    'app.kubernetes.io/name': 'gatehouse-proxy',
    'app.kubernetes.io/instance': 'cloud-gatehouse',
    'app.kubernetes.io/managed-by': 'gatehouse',
    [GATEWAY_NAME_LABEL]: 'cloud',
    [GATEWAY_CLASS_NAME_LABEL]: 'gatehouse',
  });
  const sel = selectorLabels('cloud', 'cloud-gatehouse');
  assert.deepEqual(Object.keys(sel).sort(), ['app.kubernetes.io/instance', 'app.kubernetes.io/name', GATEWAY_NAME_LABEL]);
  for (const [k, v] of Object.entries(sel)) assert.equal((labels as Record<string, string>)[k], v, `selector label ${k} is on the object`);
  assert.equal(provisionedSelector('cloud'), 'app.kubernetes.io/managed-by=gatehouse,gateway.networking.k8s.io/gateway-name=cloud');
  const long = 'g'.repeat(70);
  assert.equal(ownLabels(long, 'c'.repeat(70), 'x')[GATEWAY_NAME_LABEL], nameLabelValue(long));
  assert.equal(ownLabels(long, 'c'.repeat(70), 'x')[GATEWAY_CLASS_NAME_LABEL].length, 61);
});
