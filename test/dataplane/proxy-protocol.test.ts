// parseProxyHeader on bytes: v1 and v2, IPv4 and IPv6, partial input,
// LOCAL and UNKNOWN, and bytes that are not a header at all.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProxyHeader } from '../../src/dataplane/proxy-protocol.ts';
import { proxyV2 } from './proxy-protocol-helpers.ts';

test('v2 IPv4: the source, and the header length; every prefix is partial', () => {
  const h = proxyV2('192.0.2.7');
  assert.deepEqual(parseProxyHeader(Buffer.concat([h, Buffer.from('GET /')])), { kind: 'header', length: 28, source: '192.0.2.7' });
  for (let n = 1; n < h.length; n++) assert.equal(parseProxyHeader(h.subarray(0, n)).kind, 'partial', `${n} bytes`);
});

test('v2 IPv6, IPv4-mapped IPv6, TLVs after the addresses', () => {
  const sig = proxyV2('0.0.0.0').subarray(0, 12);
  const addrs = Buffer.alloc(36);
  Buffer.from('20010db8000000000000000000000042', 'hex').copy(addrs, 0);
  const tlv = Buffer.from([0x04, 0x00, 0x02, 0x61, 0x62]);
  const head = Buffer.from([0x21, 0x21, 0x00, 36 + tlv.length]);
  assert.deepEqual(parseProxyHeader(Buffer.concat([sig, head, addrs, tlv])), { kind: 'header', length: 16 + 41, source: '2001:db8::42' });
  const mapped = Buffer.alloc(36);
  Buffer.from('00000000000000000000ffffc0000209', 'hex').copy(mapped, 0);
  assert.deepEqual(parseProxyHeader(Buffer.concat([sig, Buffer.from([0x21, 0x21, 0x00, 36]), mapped])), { kind: 'header', length: 52, source: '192.0.2.9' });
});

test('v1: TCP4, TCP6, UNKNOWN; partial until CRLF', () => {
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP4 198.51.100.1 10.0.0.1 5000 443\r\nGET')), { kind: 'header', length: 43, source: '198.51.100.1' });
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n')), { kind: 'header', length: 45, source: '2001:db8::1' });
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { kind: 'header', length: 15, source: null });
  assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 198.51.100.1')).kind, 'partial');
  assert.equal(parseProxyHeader(Buffer.from('PRO')).kind, 'partial');
});

test('not a header: HTTP methods that start like PROXY, TLS, HTTP/2', () => {
  for (const s of ['POST / HTTP/1.1', 'PUT /', 'PATCH /', 'PRI * HTTP/2.0', 'GET /', '\u0016\u0003\u0001']) {
    assert.equal(parseProxyHeader(Buffer.from(s, 'latin1')).kind, 'absent', s);
  }
});
