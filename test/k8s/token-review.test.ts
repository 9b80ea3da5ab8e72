// Who may read a Gateway's config, decided by a real API server: the
// TokenReview authenticator accepts only a token for audience "gatehouse"
// of the ServiceAccount provisioned for that Gateway (infrastructureName,
// in the Gateway's namespace), and a deleted ServiceAccount's token no
// more. Then a real `startProxy` with such a token gets its config from a
// config service that reviews it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { irForGateway } from '../../src/ir/per-gateway.ts';
import { startConfigService } from '../../src/providers/kubernetes/config-service.ts';
import { infrastructureName } from '../../src/providers/kubernetes/provision/names.ts';
import { tokenReviewAuthenticator } from '../../src/providers/kubernetes/token-review.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import { backend, cluster as irCluster, freePort, gatewayListener, ir, listener, match, request, route, startBackend, vhost } from '../dataplane/helpers.ts';
import { tlsMaterial, waitUntil } from '../proxy/helpers.ts';
import { startCluster, type Cluster } from './harness/cluster.ts';

const CLASS = 'gatehouse';
/** The provisioned ServiceAccount of Gateway team-a/web. */
const SA = infrastructureName('web', CLASS);

let cluster: Cluster;

before(async () => {
  cluster = await startCluster({ crds: 'none', gatehouseCrds: false });
});

after(async () => {
  await cluster?.stop();
});

/** What the controller knows: Gateway team-a/web of class gatehouse, nothing else. */
function authenticator() {
  return tokenReviewAuthenticator({
    kubeConfig: cluster.kubeConfig(),
    serviceAccountFor: (gw) => (gw.namespace === 'team-a' && gw.name === 'web' ? infrastructureName(gw.name, CLASS) : null),
  });
}

test('TokenReview: the provisioned ServiceAccount with audience gatehouse only', async () => {
  const authenticate = authenticator();
  const good = await cluster.serviceAccountToken('team-a', SA, 'gatehouse');
  assert.deepEqual(await authenticate(good, 'team-a/web'), { allowed: true, identity: `system:serviceaccount:team-a:${SA}` });

  // The right ServiceAccount, another Gateway's config: that Gateway is not known, or is another's.
  const unknown = await authenticate(good, 'team-a/other');
  assert.ok(!unknown.allowed && unknown.status === 503, JSON.stringify(unknown));

  // Another pod of the same namespace.
  const intruder = await authenticate(await cluster.serviceAccountToken('team-a', 'intruder', 'gatehouse'), 'team-a/web');
  assert.ok(!intruder.allowed && intruder.status === 403 && intruder.reason.includes(`system:serviceaccount:team-a:intruder`), JSON.stringify(intruder));

  // The same ServiceAccount name in another namespace.
  const elsewhere = await authenticate(await cluster.serviceAccountToken('team-b', SA, 'gatehouse'), 'team-a/web');
  assert.ok(!elsewhere.allowed && elsewhere.status === 403, JSON.stringify(elsewhere));

  // The right ServiceAccount, a token for the API server's audience.
  const apiToken = await cluster.serviceAccountToken('team-a', SA, 'https://kubernetes.default.svc.cluster.local');
  const wrongAudience = await authenticate(apiToken, 'team-a/web');
  assert.ok(!wrongAudience.allowed && wrongAudience.status === 401, JSON.stringify(wrongAudience));

  const forged = await authenticate(`${good.slice(0, -4)}AAAA`, 'team-a/web');
  assert.ok(!forged.allowed && forged.status === 401, JSON.stringify(forged));
  assert.doesNotMatch(JSON.stringify([unknown, intruder, elsewhere, wrongAudience, forged]), new RegExp(good.slice(-20)));

  // Deleted ServiceAccount: its tokens are refused once the API server's
  // cache of successful authentications (10 s) has let go of it.
  await cluster.kubeConfig().makeApiClient(k8s.CoreV1Api).deleteNamespacedServiceAccount({ name: SA, namespace: 'team-a' });
  let deleted = await authenticate(good, 'team-a/web');
  for (const deadline = Date.now() + 15_000; deleted.allowed && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    deleted = await authenticate(good, 'team-a/web');
  }
  assert.ok(!deleted.allowed && deleted.status === 401, JSON.stringify(deleted));
});

test('a proxy with its projected-style token gets its config through a service that reviews it', async (t) => {
  const tlsFiles = tlsMaterial();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-k8s-proxy-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const caFile = path.join(dir, 'ca.crt');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(caFile, tlsFiles.ca);
  fs.writeFileSync(tokenFile, await cluster.serviceAccountToken('team-a', SA, 'gatehouse'));

  const echo = await startBackend(t, 'echo');
  const port = await freePort();
  const full = ir([{
    ...listener(port, [gatewayListener('team-a/web/http', null, [vhost('*', [route('team-a/r/0/0', match('/'), [backend('c')])])])]),
    key: `team-a/web@10.0.0.1:${port}`, address: '10.0.0.1',
  }], [irCluster('c', echo)]);
  const service = await startConfigService({
    address: '127.0.0.1:0',
    tls: { cert: tlsFiles.cert, key: tlsFiles.key },
    authenticate: authenticator(),
    irFor: (gw) => irForGateway(full, gw),
    log: () => {},
  });
  t.after(() => service.close());
  const proxy = await startProxy({
    controllers: [{ host: '127.0.0.1', port: service.port }],
    gateway: 'team-a/web',
    tokenFile,
    caFile,
    healthAddress: '127.0.0.1:0',
    workers: 0,
    log: pino({ level: 'silent' }),
    client: { minBackoffMs: 50, maxBackoffMs: 500 },
  });
  t.after(() => proxy.close());
  await waitUntil('configured', () => proxy.configured, 10_000);
  assert.deepEqual(service.streams().map((s) => s.identity), [`system:serviceaccount:team-a:${SA}`]);
  const reply = await request(port, '/hello');
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['x-backend'], 'echo');
});
