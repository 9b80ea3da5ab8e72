// The provisioner against a real API server: server-side apply with field
// manager `gatehouse`, labels and annotations that come and go with the
// Gateway's spec.infrastructure, a hand-deleted object made again, objects
// of kinds no longer wanted (HPA) and of Gateways no longer ours deleted,
// fields of other managers kept.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import * as k8s from '@kubernetes/client-node';
import { startCluster, type Cluster } from './harness/cluster.ts';
import { Provisioner, FIELD_MANAGER } from '../../src/providers/kubernetes/provision/apply.ts';
import { renderInfrastructure, type Infrastructure } from '../../src/providers/kubernetes/provision/render.ts';
import type { GatewayParametersSpec } from '../../src/providers/kubernetes/provision/parameters.ts';
import type { Gateway } from '../../src/api/types.ts';

let cluster: Cluster;
let api: k8s.KubernetesObjectApi;
let core: k8s.CoreV1Api;
let apps: k8s.AppsV1Api;
const log = pino({ level: 'silent' });

before(async () => {
  cluster = await startCluster({ crds: 'experimental' });
  const kc = cluster.kubeConfig();
  api = k8s.KubernetesObjectApi.makeApiClient(kc);
  core = kc.makeApiClient(k8s.CoreV1Api);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  await cluster.applyYaml(`
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
`);
});

after(async () => {
  await cluster?.stop();
});

async function createGateway(name: string, infrastructure: Gateway['spec']['infrastructure'] = {}): Promise<Gateway> {
  const body = {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name, namespace: 'infra' },
    spec: { gatewayClassName: 'gatehouse', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }], infrastructure },
  };
  return await api.create(body as k8s.KubernetesObject) as unknown as Gateway;
}

function render(gw: Gateway, parameters: GatewayParametersSpec = {}): Infrastructure {
  return renderInfrastructure({
    gateway: gw, className: 'gatehouse', parameters,
    controllerAddress: 'gatehouse:18000', controllerNamespace: 'gatehouse-system',
    caBundle: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', defaultImage: 'gatehouse:test',
  });
}

const everything = () => true;

test('applies every object, owned by the Gateway, managed by gatehouse; labels follow spec.infrastructure', async () => {
  const gw = await createGateway('cloud', { labels: { team: 'cloud' }, annotations: { 'metallb.io/address-pool': 'public' } });
  const provisioner = new Provisioner({ kubeConfig: cluster.kubeConfig(), log });
  await provisioner.sync(new Map([['infra/cloud', render(gw)]]), everything);

  const svc = await core.readNamespacedService({ name: 'cloud-gatehouse', namespace: 'infra' });
  assert.equal(svc.spec?.type, 'LoadBalancer');
  assert.equal(svc.metadata?.labels?.team, 'cloud');
  assert.equal(svc.metadata?.annotations?.['metallb.io/address-pool'], 'public');
  assert.equal(svc.metadata?.ownerReferences?.[0]?.uid, gw.metadata.uid);
  assert.ok(svc.metadata?.managedFields?.some((m) => m.manager === FIELD_MANAGER && m.operation === 'Apply'));
  const dep = await apps.readNamespacedDeployment({ name: 'cloud-gatehouse', namespace: 'infra' });
  assert.equal(dep.spec?.template.spec?.containers[0].args?.[0], 'proxy');
  await core.readNamespacedServiceAccount({ name: 'cloud-gatehouse', namespace: 'infra' });
  await core.readNamespacedConfigMap({ name: 'cloud-gatehouse', namespace: 'infra' });

  // The label and annotation removed from the Gateway go from the objects; another manager's annotation stays.
  await core.patchNamespacedService({
    name: 'cloud-gatehouse', namespace: 'infra',
    body: [{ op: 'add', path: '/metadata/annotations/example.com~1note', value: 'kept' }],
  }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch));
  const changed = { ...gw, spec: { ...gw.spec, infrastructure: {} } };
  await provisioner.sync(new Map([['infra/cloud', render(changed)]]), everything);
  const after = await core.readNamespacedService({ name: 'cloud-gatehouse', namespace: 'infra' });
  assert.equal(after.metadata?.labels?.team, undefined);
  assert.equal(after.metadata?.annotations?.['metallb.io/address-pool'], undefined);
  assert.equal(after.metadata?.annotations?.['example.com/note'], 'kept');
});

test('an object deleted by hand is made again; an unchanged rendering is not re-applied while all is there', async () => {
  const gw = await createGateway('again');
  const provisioner = new Provisioner({ kubeConfig: cluster.kubeConfig(), log });
  const wanted = new Map([['infra/again', render(gw)]]);
  await provisioner.sync(wanted, everything);
  const before = await apps.readNamespacedDeployment({ name: 'again-gatehouse', namespace: 'infra' });
  await provisioner.sync(wanted, everything);
  const same = await apps.readNamespacedDeployment({ name: 'again-gatehouse', namespace: 'infra' });
  assert.equal(same.metadata?.resourceVersion, before.metadata?.resourceVersion, 'an unchanged rendering was applied again');

  await apps.deleteNamespacedDeployment({ name: 'again-gatehouse', namespace: 'infra' });
  await provisioner.sync(wanted, () => false);
  const made = await apps.readNamespacedDeployment({ name: 'again-gatehouse', namespace: 'infra' });
  assert.notEqual(made.metadata?.uid, before.metadata?.uid);
});

test('an HPA no longer asked for, and the objects of a Gateway no longer ours, are deleted; others are not', async () => {
  const gw = await createGateway('scaled');
  const other = await createGateway('stays');
  const provisioner = new Provisioner({ kubeConfig: cluster.kubeConfig(), log });
  const autoscaled = render(gw, { autoscaling: { minReplicas: 2, maxReplicas: 4 } });
  await provisioner.sync(new Map([['infra/scaled', autoscaled], ['infra/stays', render(other)]]), everything);
  const autoscaling = k8s.KubernetesObjectApi.makeApiClient(cluster.kubeConfig());
  await autoscaling.read({ apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: { name: 'scaled-gatehouse', namespace: 'infra' } });

  await provisioner.sync(new Map([['infra/scaled', render(gw)], ['infra/stays', render(other)]]), everything);
  await assert.rejects(
    autoscaling.read({ apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: { name: 'scaled-gatehouse', namespace: 'infra' } }),
    (err: { code?: number }) => err.code === 404,
  );
  await apps.readNamespacedDeployment({ name: 'scaled-gatehouse', namespace: 'infra' });

  // The Gateway leaves our class: its objects go, the other Gateway's stay.
  await provisioner.sync(new Map([['infra/stays', render(other)]]), everything);
  await assert.rejects(apps.readNamespacedDeployment({ name: 'scaled-gatehouse', namespace: 'infra' }), (err: { code?: number }) => err.code === 404);
  await assert.rejects(core.readNamespacedService({ name: 'scaled-gatehouse', namespace: 'infra' }), (err: { code?: number }) => err.code === 404);
  await apps.readNamespacedDeployment({ name: 'stays-gatehouse', namespace: 'infra' });
});

test('an object the API server refuses is logged and retried, and does not stop the other Gateways', async () => {
  const good = await createGateway('good');
  const bad = await createGateway('bad');
  const lines: string[] = [];
  const recording = pino({ level: 'info' }, { write: (s: string) => { lines.push(s); } });
  const provisioner = new Provisioner({ kubeConfig: cluster.kubeConfig(), log: recording });
  const broken = render(bad);
  const dep = broken.objects.find((o) => o.kind === 'Deployment') as unknown as { spec: { replicas: number } };
  dep.spec.replicas = -1;
  const retryMs = await provisioner.sync(new Map([['infra/good', render(good)], ['infra/bad', broken]]), everything);
  assert.equal(retryMs, 1_000, 'the failed Gateway is due again after the first backoff');
  await apps.readNamespacedDeployment({ name: 'good-gatehouse', namespace: 'infra' });
  const failure = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'provisioning failed; will retry');
  assert.ok(failure, 'the failure was not logged');
  assert.equal(failure.gateway, 'infra/bad');
  assert.match(failure.reason, /^422: .*replicas/);
});
