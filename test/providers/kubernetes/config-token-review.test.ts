// The TokenReview authenticator when the API server does not answer: a
// real TLS listener that completes the handshake and then says nothing.
// The review is abandoned at its timeout with a 503 (the proxy comes
// back), so that the config service's count of reviews in flight, which
// holds until a review settles, cannot be filled by a hung API server.
// Its answers from a real API server: test/k8s/token-review.test.ts.
import assert from 'node:assert/strict';
import type net from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import * as k8s from '@kubernetes/client-node';
import { tokenReviewAuthenticator } from '../../../src/providers/kubernetes/token-review.ts';
import { tlsMaterial } from '../../proxy/helpers.ts';

test('an API server that never answers: 503 at the timeout, the token in no reason', async (t) => {
  const material = tlsMaterial();
  const held: tls.TLSSocket[] = [];
  const server = tls.createServer({ cert: material.cert, key: material.key }, (socket) => { held.push(socket); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => { for (const s of held) s.destroy(); server.close(); });
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`, caData: Buffer.from(material.ca).toString('base64') }],
    users: [{ name: 'u', token: 'admin-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const authenticate = tokenReviewAuthenticator({ kubeConfig, serviceAccountFor: () => 'gw-gatehouse', timeoutMs: 300 });
  const started = Date.now();
  const result = await authenticate('secret-proxy-token', 'ns/gw');
  const took = Date.now() - started;
  assert.equal(result.allowed, false);
  assert.ok(!result.allowed && result.status === 503 && /no answer within 300 ms/.test(result.reason), JSON.stringify(result));
  assert.ok(took >= 250 && took < 3_000, `abandoned at the timeout (${took} ms)`);
  assert.ok(held.length >= 1, 'the request reached the listener');
  assert.doesNotMatch(JSON.stringify(result), /secret-proxy-token|admin-token/);
});

test('a Gateway without a provisioned ServiceAccount (yet): 503 without asking the API server', async () => {
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
  });
  const authenticate = tokenReviewAuthenticator({ kubeConfig, serviceAccountFor: () => null });
  const result = await authenticate('t', 'ns/gw');
  assert.ok(!result.allowed && result.status === 503 && /not known yet/.test(result.reason));
});
