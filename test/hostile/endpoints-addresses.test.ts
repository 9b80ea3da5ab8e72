// The endpoint policy on its own, as the data plane calls it with the
// address a hostname resolved to: every spelling of loopback, link-local
// and unspecified addresses is seen through, and the gateway's own
// sockets are refused whatever the options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkEndpoint, checkHostname, compileEndpointPolicy, type EndpointPolicyOptions, type OwnSocket, type RefusalKind } from '../../src/net/endpoint-policy.ts';

const LISTENERS: OwnSocket[] = [{ address: '0.0.0.0', port: 8080, name: 'infra/gw/http' }, { address: '10.9.0.1', port: 8443, name: 'infra/gw/https' }];
const STANDALONE: EndpointPolicyOptions = { allowLoopback: true, admin: { address: '127.0.0.1', port: 9901 }, localAddresses: ['192.0.2.10', '2001:db8::10'] };
const KUBERNETES: EndpointPolicyOptions = { ...STANDALONE, allowLoopback: false };

// [address, port, verdict in standalone, verdict in kubernetes]; null: allowed.
const TABLE: [string, number, RefusalKind | null, RefusalKind | null][] = [
  // The admin API (bound to 127.0.0.1) in every spelling.
  ['127.0.0.1', 9901, 'self', 'self'],
  ['::ffff:127.0.0.1', 9901, 'self', 'self'],
  ['::FFFF:7f00:1', 9901, 'self', 'self'],
  ['0:0:0:0:0:ffff:127.0.0.1', 9901, 'self', 'self'],
  ['::127.0.0.1', 9901, 'self', 'self'],
  // A listener on all interfaces: every loopback and local address, and those the gateway binds elsewhere.
  ['127.0.0.1', 8080, 'self', 'self'],
  ['127.255.255.254', 8080, 'self', 'self'],
  ['0:0:0:0:0:0:0:1', 8080, 'self', 'self'],
  ['192.0.2.10', 8080, 'self', 'self'],
  ['::ffff:192.0.2.10', 8080, 'self', 'self'],
  ['64:ff9b::c000:20a', 8080, 'self', 'self'],
  ['2001:db8:0:0::10', 8080, 'self', 'self'],
  ['10.9.0.1', 8080, 'self', 'self'],
  // A listener bound to one address: that address only.
  ['10.9.0.1', 8443, 'self', 'self'],
  ['::ffff:10.9.0.1', 8443, 'self', 'self'],
  ['192.0.2.10', 8443, null, null],
  ['127.0.0.1', 8443, null, 'loopback'],
  // The admin port elsewhere on loopback is someone else's: nothing of the gateway answers there.
  ['127.0.0.2', 9901, null, 'loopback'],
  ['::1', 9901, null, 'loopback'],
  // Those ports on other hosts are someone else's.
  ['10.1.0.1', 9901, null, null],
  ['192.0.2.11', 8080, null, null],
  // The unspecified address reaches the host itself.
  ['0.0.0.0', 80, 'unspecified', 'unspecified'],
  ['0.1.2.3', 80, 'unspecified', 'unspecified'],
  ['::', 80, 'unspecified', 'unspecified'],
  ['::ffff:0.0.0.0', 80, 'unspecified', 'unspecified'],
  // Cloud metadata.
  ['169.254.169.254', 80, 'linkLocal', 'linkLocal'],
  ['::ffff:169.254.169.254', 80, 'linkLocal', 'linkLocal'],
  ['::ffff:a9fe:a9fe', 80, 'linkLocal', 'linkLocal'],
  ['fe80::1', 80, 'linkLocal', 'linkLocal'],
  ['fe80::1%eth0', 80, 'linkLocal', 'linkLocal'],
  ['FEBF:ffff::1', 80, 'linkLocal', 'linkLocal'],
  ['fec0::1', 80, null, null],
  // Loopback on other ports: the mode decides.
  ['127.0.0.1', 3000, null, 'loopback'],
  ['127.8.9.10', 3000, null, 'loopback'],
  ['::1', 3000, null, 'loopback'],
  ['::ffff:127.0.0.1', 3000, null, 'loopback'],
  // Not IP literals: a resolver could turn any of them into 127.0.0.1.
  ['127.1', 80, 'notAnAddress', 'notAnAddress'],
  ['0x7f.0.0.1', 80, 'notAnAddress', 'notAnAddress'],
  ['2130706433', 80, 'notAnAddress', 'notAnAddress'],
  ['127.000.000.001', 80, 'notAnAddress', 'notAnAddress'],
  ['[::1]', 80, 'notAnAddress', 'notAnAddress'],
  [' 10.1.0.1', 80, 'notAnAddress', 'notAnAddress'],
  ['localhost', 80, 'notAnAddress', 'notAnAddress'],
  ['', 80, 'notAnAddress', 'notAnAddress'],
  // Ordinary backends.
  ['10.1.0.1', 80, null, null],
  ['2001:db8::1', 80, null, null],
];

test('every spelling of a refused address is refused, in both modes', { timeout: 5_000 }, () => {
  const standalone = compileEndpointPolicy(STANDALONE, LISTENERS);
  const kubernetes = compileEndpointPolicy(KUBERNETES, LISTENERS);
  for (const [address, port, s, k] of TABLE) {
    assert.equal(checkEndpoint(standalone, address, port)?.kind ?? null, s, `standalone ${address} port ${port}`);
    assert.equal(checkEndpoint(kubernetes, address, port)?.kind ?? null, k, `kubernetes ${address} port ${port}`);
  }
});

test('allowLinkLocal lets link-local through, but never the gateway itself', { timeout: 5_000 }, () => {
  const p = compileEndpointPolicy({ ...STANDALONE, allowLinkLocal: true }, [...LISTENERS, { address: 'fe80::1', port: 8081 }]);
  assert.equal(checkEndpoint(p, '169.254.169.254', 80), null);
  assert.equal(checkEndpoint(p, 'fe80::2', 80), null);
  assert.equal(checkEndpoint(p, 'fe80::1', 8081)?.kind, 'self');
});

test('hostnames: localhost is loopback; IP literals are judged; other names wait for resolution', { timeout: 5_000 }, () => {
  const k = compileEndpointPolicy(KUBERNETES, LISTENERS);
  const s = compileEndpointPolicy(STANDALONE, LISTENERS);
  assert.equal(checkHostname(k, 'localhost', 80)?.kind, 'loopback');
  assert.equal(checkHostname(k, 'api.LOCALHOST.', 80)?.kind, 'loopback');
  assert.equal(checkHostname(s, 'localhost', 9901)?.kind, 'self');
  // localhost may resolve to ::1: a socket there counts.
  const v6 = compileEndpointPolicy({ allowLoopback: true }, [{ address: '::1', port: 7000 }]);
  assert.equal(checkHostname(v6, 'localhost', 7000)?.kind, 'self');
  assert.equal(checkHostname(s, 'localhost', 80), null);
  assert.equal(checkHostname(s, '169.254.169.254', 80)?.kind, 'linkLocal');
  assert.equal(checkHostname(k, 'metadata.google.internal', 80), null);
  assert.equal(checkHostname(k, 'notlocalhost', 80), null);
});

test('the policy key changes exactly when a verdict can', { timeout: 5_000 }, () => {
  const key = (o: EndpointPolicyOptions, l = LISTENERS) => compileEndpointPolicy(o, l).key;
  assert.equal(key(STANDALONE), key({ ...STANDALONE, localAddresses: ['2001:db8:0::10', '192.0.2.10'] }));
  assert.notEqual(key(STANDALONE), key(KUBERNETES));
  assert.notEqual(key(STANDALONE), key({ ...STANDALONE, allowLinkLocal: true }));
  assert.notEqual(key(STANDALONE), key(STANDALONE, [...LISTENERS, { address: '0.0.0.0', port: 9000 }]));
  assert.notEqual(key(STANDALONE), key({ ...STANDALONE, admin: { address: '127.0.0.1', port: 9902 } }));
  assert.notEqual(key(STANDALONE), key({ ...STANDALONE, admin: { address: '0.0.0.0', port: 9901 } }));
  assert.notEqual(key(STANDALONE), key(STANDALONE, [LISTENERS[0], { ...LISTENERS[1], address: '10.9.0.2' }]));
});
