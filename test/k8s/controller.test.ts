// The controller, whole, against a real kube-apiserver: two replicas; the
// leader writes status and provisions, the other does neither; a Gateway
// turns Programmed once its Service has a load-balancer address and a
// proxy is ready; a route's status follows a listener added later by a
// JSON patch and a certificate Secret created later (as cert-manager
// does); a ListenerSet of another namespace, once the Gateway admits it;
// the leader stopping hands over to the other replica.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { startController, type Controller } from '../../src/control/kubernetes.ts';
import { startCluster, type Cluster } from './harness/cluster.ts';
import { selfSigned } from '../dataplane/helpers.ts';
import { GATEWAY_CLASS } from '../e2e/helpers.ts';

const GROUP = 'gateway.networking.k8s.io';
const log = pino({ level: process.env.GATEHOUSE_TEST_LOG ?? 'silent' });

let cluster: Cluster;
let custom: k8s.CustomObjectsApi;
let core: k8s.CoreV1Api;
let apps: k8s.AppsV1Api;
const controllers: Controller[] = [];

async function startReplica(identity: string): Promise<Controller> {
  const c = await startController({
    kubeConfig: cluster.kubeConfig(),
    log: log.child({ replica: identity }),
    adminAddress: '127.0.0.1:0',
    healthAddress: '127.0.0.1:0',
    configAddress: '127.0.0.1:0',
    controllerNamespace: 'gatehouse-system',
    configServiceName: 'gatehouse',
    configSecretName: 'gatehouse-config-tls',
    configCertificateIPs: ['127.0.0.1'],
    proxyImage: 'gatehouse:test',
    leaseName: 'gatehouse-controller',
    identity,
    leaseDurationMs: 3_000,
    renewDeadlineMs: 2_000,
    retryPeriodMs: 400,
  });
  controllers.push(c);
  return c;
}

before(async () => {
  cluster = await startCluster({ crds: 'experimental' });
  const kc = cluster.kubeConfig();
  custom = kc.makeApiClient(k8s.CustomObjectsApi);
  core = kc.makeApiClient(k8s.CoreV1Api);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  await cluster.applyYaml(`
apiVersion: v1
kind: Namespace
metadata: {name: gatehouse-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: cloud, namespace: infra}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.cloud.example", allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: v1
kind: Service
metadata: {name: keystone, namespace: apps}
spec: {ports: [{port: 5000}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: keystone, namespace: apps}
spec:
  parentRefs: [{name: cloud, namespace: infra}]
  hostnames: [keystone.cloud.example]
  rules: [{backendRefs: [{name: keystone, port: 5000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: dashboard, namespace: apps}
spec:
  parentRefs: [{name: cloud, namespace: infra, sectionName: https}]
  hostnames: [dashboard.cloud.example]
  rules: [{backendRefs: [{name: keystone, port: 5000}]}]
`);
});

after(async () => {
  for (const c of controllers) await c.close().catch(() => {});
  await cluster?.stop();
});

type Condition = { type: string; status: string; reason: string; message: string };
type Obj = { metadata: { resourceVersion: string; generation?: number }; status?: Record<string, unknown> };

async function get(plural: string, namespace: string | null, name: string): Promise<Obj> {
  return (namespace === null
    ? await custom.getClusterCustomObject({ group: GROUP, version: 'v1', plural, name })
    : await custom.getNamespacedCustomObject({ group: GROUP, version: 'v1', namespace, plural, name })) as Obj;
}

function condition(conditions: unknown, type: string): Condition | undefined {
  return (conditions as Condition[] | undefined)?.find((c) => c.type === type);
}

/** Polls `check` until it returns a value (not undefined) or the time is up; the last error says what was seen. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function routeParent(route: Obj, sectionName?: string): { conditions: Condition[] } | undefined {
  const parents = (route.status?.parents ?? []) as { parentRef: { name: string; sectionName?: string }; conditions: Condition[] }[];
  return parents.find((p) => p.parentRef.name === 'cloud' && p.parentRef.sectionName === sectionName);
}

test('two replicas: one leads; the class, the Gateway and its routes get status; the proxies are provisioned', async () => {
  const a = await startReplica('replica-a');
  const b = await startReplica('replica-b');
  await eventually('a leader', async () => (a.isLeader() !== b.isLeader() ? true : undefined));

  const gc = await eventually('GatewayClass Accepted', async () => {
    const o = await get('gatewayclasses', null, 'gatehouse');
    return condition(o.status?.conditions, 'Accepted')?.status === 'True' ? o : undefined;
  });
  assert.ok(gc);
  // Kubernetes mode provisions, so it (and only it) claims propagating spec.infrastructure.
  const features = ((gc.status?.supportedFeatures ?? []) as { name: string }[]).map((f) => f.name);
  assert.ok(features.includes('GatewayInfrastructure'), `supportedFeatures: ${features.join(', ')}`);
  assert.ok(features.includes('HTTPRoute'));
  const gw = await eventually('Gateway Accepted', async () => {
    const o = await get('gateways', 'infra', 'cloud');
    return condition(o.status?.conditions, 'Accepted')?.status === 'True' ? o : undefined;
  });
  const programmed = condition(gw.status?.conditions, 'Programmed')!;
  assert.equal(programmed.status, 'False');
  assert.equal(programmed.reason, 'AddressNotAssigned');

  const route = await eventually('HTTPRoute accepted by the Gateway', async () => {
    const o = await get('httproutes', 'apps', 'keystone');
    return condition(routeParent(o)?.conditions, 'Accepted')?.status === 'True' ? o : undefined;
  });
  assert.equal(condition(routeParent(route)!.conditions, 'ResolvedRefs')?.status, 'True');

  const dep = await eventually('the proxies\' Deployment', () => apps.readNamespacedDeployment({ name: 'cloud-gatehouse', namespace: 'infra' }));
  assert.equal(dep.metadata?.labels?.['gateway.networking.k8s.io/gateway-name'], 'cloud');
  const svc = await core.readNamespacedService({ name: 'cloud-gatehouse', namespace: 'infra' });
  assert.equal(svc.spec?.type, 'LoadBalancer');
  assert.deepEqual(svc.spec?.ports?.map((p) => p.port), [80]);
});

test('Programmed once the load balancer answers and a proxy is ready, with "N/M proxies ready"', async () => {
  await core.patchNamespacedServiceStatus({
    name: 'cloud-gatehouse', namespace: 'infra',
    body: { status: { loadBalancer: { ingress: [{ ip: '198.51.100.20' }] } } },
  }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  const pending = await eventually('Programmed False Pending', async () => {
    const o = await get('gateways', 'infra', 'cloud');
    const c = condition(o.status?.conditions, 'Programmed');
    return c?.reason === 'Pending' ? o : undefined;
  });
  assert.deepEqual(pending.status?.addresses, [{ type: 'IPAddress', value: '198.51.100.20' }]);
  // No kubelet runs here: the Deployment controller's part, a ready replica, is written by hand.
  await apps.patchNamespacedDeploymentStatus({
    name: 'cloud-gatehouse', namespace: 'infra',
    body: { status: { replicas: 1, readyReplicas: 1, availableReplicas: 1, updatedReplicas: 1 } },
  }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  const ready = await eventually('Programmed True', async () => {
    const o = await get('gateways', 'infra', 'cloud');
    return condition(o.status?.conditions, 'Programmed')?.status === 'True' ? o : undefined;
  });
  assert.equal(condition(ready.status?.conditions, 'Programmed')!.message, '1/1 proxies ready');
});

test('a listener added by a JSON patch after its route exists: the route\'s status follows; then its Secret appears', async () => {
  const before = await get('httproutes', 'apps', 'dashboard');
  // The route names sectionName https, which the Gateway does not have yet.
  assert.equal(condition(routeParent(before, 'https')?.conditions, 'Accepted')?.status, 'False');

  const patched = await cluster.kubectl('patch', 'gateway', 'cloud', '-n', 'infra', '--type', 'json', '-p',
    JSON.stringify([{ op: 'add', path: '/spec/listeners/-', value: {
      name: 'https', port: 443, protocol: 'HTTPS', hostname: 'dashboard.cloud.example',
      tls: { certificateRefs: [{ name: 'dashboard-tls' }] }, allowedRoutes: { namespaces: { from: 'All' } },
    } }]));
  assert.equal(patched.code, 0, patched.stderr);

  const waiting = await eventually('the new listener, its certificate missing', async () => {
    const o = await get('gateways', 'infra', 'cloud');
    const l = (o.status?.listeners as { name: string; conditions: Condition[] }[] | undefined)?.find((x) => x.name === 'https');
    return l && condition(l.conditions, 'ResolvedRefs')?.reason === 'InvalidCertificateRef' ? l : undefined;
  });
  assert.equal(condition(waiting.conditions, 'ResolvedRefs')!.status, 'False');
  const svc = await eventually('port 443 on the Service', async () => {
    const s = await core.readNamespacedService({ name: 'cloud-gatehouse', namespace: 'infra' });
    return s.spec?.ports?.some((p) => p.port === 443) ? s : undefined;
  });
  assert.deepEqual(svc.spec?.ports?.map((p) => p.port), [80, 443]);

  // cert-manager creates the Secret once the listener exists.
  const { cert, key } = selfSigned('dashboard.cloud.example');
  await core.createNamespacedSecret({
    namespace: 'infra',
    body: { metadata: { name: 'dashboard-tls' }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(cert).toString('base64'), 'tls.key': Buffer.from(key).toString('base64') } },
  });
  await eventually('the listener resolved', async () => {
    const o = await get('gateways', 'infra', 'cloud');
    const l = (o.status?.listeners as { name: string; conditions: Condition[] }[] | undefined)?.find((x) => x.name === 'https');
    return l && condition(l.conditions, 'ResolvedRefs')?.status === 'True' ? l : undefined;
  });
  const route = await eventually('the route accepted on the new listener', async () => {
    const o = await get('httproutes', 'apps', 'dashboard');
    return condition(routeParent(o, 'https')?.conditions, 'Accepted')?.status === 'True' ? o : undefined;
  });
  assert.ok(route);
});

test('a ListenerSet from another namespace: admitted by allowedListeners, its own status, its route, its port on the Service', async () => {
  // Not admitted yet: the Gateway's allowedListeners defaults to None.
  const { cert, key } = selfSigned('identity.apps.example');
  await core.createNamespacedSecret({
    namespace: 'apps',
    body: { metadata: { name: 'identity-tls' }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(cert).toString('base64'), 'tls.key': Buffer.from(key).toString('base64') } },
  });
  await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: identity, namespace: apps}
spec:
  parentRef: {name: cloud, namespace: infra}
  listeners:
  - {name: https, port: 8443, protocol: HTTPS, hostname: identity.apps.example, tls: {certificateRefs: [{name: identity-tls}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: identity, namespace: apps}
spec:
  parentRefs: [{kind: ListenerSet, group: gateway.networking.k8s.io, name: identity, sectionName: https}]
  rules: [{backendRefs: [{name: keystone, port: 5000}]}]
`);
  const refused = await eventually('ListenerSet NotAllowed', async () => {
    const o = await get('listenersets', 'apps', 'identity');
    return condition(o.status?.conditions, 'Accepted')?.reason === 'NotAllowed' ? o : undefined;
  });
  assert.equal(condition(refused.status?.conditions, 'Accepted')!.status, 'False');

  const patched = await cluster.kubectl('patch', 'gateway', 'cloud', '-n', 'infra', '--type', 'merge', '-p',
    JSON.stringify({ spec: { allowedListeners: { namespaces: { from: 'Selector', selector: { matchLabels: { 'kubernetes.io/metadata.name': 'apps' } } } } } }));
  assert.equal(patched.code, 0, patched.stderr);

  const ls = await eventually('ListenerSet Accepted and Programmed', async () => {
    const o = await get('listenersets', 'apps', 'identity');
    return condition(o.status?.conditions, 'Accepted')?.status === 'True' && condition(o.status?.conditions, 'Programmed')?.status === 'True' ? o : undefined;
  });
  const listener = (ls.status?.listeners as { name: string; attachedRoutes: number; conditions: Condition[] }[])[0];
  assert.equal(listener.name, 'https');
  assert.equal(condition(listener.conditions, 'ResolvedRefs')?.status, 'True', 'a Secret of its own namespace needs no ReferenceGrant');
  await eventually('the route counted on the ListenerSet\'s listener', async () => {
    const o = await get('listenersets', 'apps', 'identity');
    return (o.status?.listeners as { attachedRoutes: number }[] | undefined)?.[0]?.attachedRoutes === 1 ? o : undefined;
  });
  const route = await get('httproutes', 'apps', 'identity');
  const parent = ((route.status?.parents ?? []) as { parentRef: { kind?: string; name: string }; conditions: Condition[] }[]).find((p) => p.parentRef.kind === 'ListenerSet');
  assert.equal(condition(parent?.conditions, 'Accepted')?.status, 'True');
  await eventually('attachedListenerSets on the Gateway', async () => {
    const o = await get('gateways', 'infra', 'cloud');
    return o.status?.attachedListenerSets === 1 ? o : undefined;
  });
  const svc = await eventually('port 8443 on the Service', async () => {
    const s = await core.readNamespacedService({ name: 'cloud-gatehouse', namespace: 'infra' });
    return s.spec?.ports?.some((p) => p.port === 8443) ? s : undefined;
  });
  assert.deepEqual(svc.spec?.ports?.map((p) => p.port), [80, 443, 8443]);
});

test('nothing changes, nothing is written: the status settles', async () => {
  const first = await get('gateways', 'infra', 'cloud');
  await Promise.all(controllers.map((c) => c.reconcileNow()));
  await new Promise((r) => setTimeout(r, 1_000));
  const second = await get('gateways', 'infra', 'cloud');
  assert.equal(second.metadata.resourceVersion, first.metadata.resourceVersion);
});

test('the leader stops: the other replica takes over and keeps the status current', async () => {
  const [a, b] = controllers;
  const leader = a.isLeader() ? a : b;
  const other = leader === a ? b : a;
  await leader.close();
  await eventually('the other replica leads', async () => (other.isLeader() ? true : undefined), 5_000);
  await custom.patchNamespacedCustomObject({
    group: GROUP, version: 'v1', namespace: 'apps', plural: 'httproutes', name: 'keystone',
    body: { spec: { parentRefs: [{ name: 'cloud', namespace: 'infra', sectionName: 'nope' }] } },
  }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  const route = await eventually('the new leader writes the route\'s status', async () => {
    const o = await get('httproutes', 'apps', 'keystone');
    const p = routeParent(o, 'nope');
    return p && condition(p.conditions, 'Accepted')?.reason === 'NoMatchingParent' ? o : undefined;
  });
  // Our entry for the parentRef that went is gone.
  assert.equal(routeParent(route), undefined);
});
