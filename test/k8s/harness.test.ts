// The harness itself, against the real control plane it starts: the
// Gateway API CRDs are served, the controller manager turns a Deployment
// into a ReplicaSet and a Pod, service account tokens pass a TokenReview
// for their own audience only, and stop() leaves nothing running.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import { after, before, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { startCluster, type Cluster } from './harness/cluster.ts';

let cluster: Cluster;
let startMs = 0;

before(async () => {
  const t0 = performance.now();
  cluster = await startCluster({ controllerManager: true });
  startMs = performance.now() - t0;
});

after(async () => {
  await cluster?.stop();
});

/** Polls `get` every 200 ms until it returns something, for at most `ms`. */
async function eventually<T>(what: string, ms: number, get: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('the cluster starts in under 15 s with binaries built', (t) => {
  t.diagnostic(`cluster up in ${Math.round(startMs)} ms`);
  // A budget, not a benchmark: on a loaded machine it is a warning sign, so it fails loudly.
  assert.ok(startMs < 15_000, `cluster took ${Math.round(startMs)} ms to start`);
});

test('the Gateway API and Gatehouse CRDs are served: a GatewayClass and GatewayParameters can be created', async () => {
  await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: harness}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: gatehouse.dev/v1alpha1
kind: GatewayParameters
metadata: {name: harness, namespace: default}
spec: {replicas: 2, podDisruptionBudget: {maxUnavailable: "25%"}}
`);
  const gc = await cluster.kubectl('get', 'gatewayclass', 'harness', '-o', 'json');
  assert.equal(gc.code, 0, gc.stderr);
  assert.equal(JSON.parse(gc.stdout).spec.controllerName, 'gatehouse.dev/gateway-controller');
  // The CRD's validation runs: an invalid controllerName is refused by the API server.
  await assert.rejects(cluster.applyYaml('apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: bad}\nspec: {controllerName: "no slash"}\n'),
    /controllerName/);
  await assert.rejects(cluster.applyYaml('apiVersion: gatehouse.dev/v1alpha1\nkind: GatewayParameters\nmetadata: {name: bad, namespace: default}\nspec: {podDisruptionBudget: {maxUnavailable: "150%"}}\n'),
    /percentage/);
});

test('the controller manager makes a ReplicaSet and a Pod of a Deployment', async () => {
  await cluster.applyYaml(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: example.invalid/web:1}]}
`);
  const kc = cluster.kubeConfig();
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const rs = await eventually('ReplicaSet of web', 30_000, async () =>
    (await apps.listNamespacedReplicaSet({ namespace: 'default' })).items.find((r) => r.metadata?.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === 'web')));
  const pod = await eventually('Pod of web', 30_000, async () =>
    (await core.listNamespacedPod({ namespace: 'default' })).items.find((p) => p.metadata?.ownerReferences?.some((o) => o.kind === 'ReplicaSet' && o.name === rs.metadata?.name)));
  assert.equal(pod.spec?.containers[0].image, 'example.invalid/web:1');
  // No scheduler, no kubelet: the pod waits, unbound, for a test to bind it.
  assert.equal(pod.spec?.nodeName, undefined);
});

test('a service account token passes a TokenReview for its audience, and only for it', async () => {
  const token = await cluster.serviceAccountToken('team-a', 'proxy', 'gatehouse-config', 600);
  const authn = cluster.kubeConfig().makeApiClient(k8s.AuthenticationV1Api);
  const right = await authn.createTokenReview({ body: { spec: { token, audiences: ['gatehouse-config'] } } });
  assert.equal(right.status?.authenticated, true, right.status?.error);
  assert.equal(right.status?.user?.username, 'system:serviceaccount:team-a:proxy');
  assert.deepEqual(right.status?.audiences, ['gatehouse-config']);
  const wrong = await authn.createTokenReview({ body: { spec: { token, audiences: ['something-else'] } } });
  assert.notEqual(wrong.status?.authenticated, true);
  // A second token for an existing account works too (the account is not created twice).
  const again = await cluster.serviceAccountToken('team-a', 'proxy', 'gatehouse-config');
  assert.notEqual(again, token);
});

test('stop() kills every process and removes the scratch dir', async () => {
  const other = await startCluster({ crds: 'none', gatehouseCrds: false });
  const ca = fs.readFileSync(other.caFile);
  assert.ok(fs.existsSync(other.dir));
  await other.stop();
  assert.equal(fs.existsSync(other.dir), false);
  const refused = await new Promise<string>((resolve) => {
    const req = https.get(`${other.server}/readyz`, { ca, agent: false, timeout: 2_000 }, (res) => { res.resume(); resolve(`answered ${res.statusCode}`); });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve((err as NodeJS.ErrnoException).code ?? err.message));
  });
  assert.equal(refused, 'ECONNREFUSED');
});
