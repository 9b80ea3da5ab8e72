// planInfrastructure: which Gateways get proxies, with which parameters,
// and what the cluster reports back for translate (addresses, ready
// proxies), from objects as the API server would give them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSnapshot } from '../../../src/api/build-snapshot.ts';
import type { KubeObject } from '../../../src/api/types.ts';
import { planInfrastructure, serviceAddresses, type PlanInput } from '../../../src/providers/kubernetes/provision/plan.ts';

const OURS = 'gatehouse.dev/gateway-controller';
const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function gatewayClass(name: string, controllerName = OURS, parametersRef?: object): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name, uid: `uid-${name}` }, spec: { controllerName, ...(parametersRef ? { parametersRef } : {}) } };
}

function gateway(name: string, className: string, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name, namespace: 'infra', uid: `uid-${name}`, generation: 1 },
    spec: { gatewayClassName: className, listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }], ...extra },
  };
}

function params(name: string, spec: unknown, namespace = 'infra'): KubeObject {
  return { apiVersion: 'gatehouse.dev/v1alpha1', kind: 'GatewayParameters', metadata: { name, namespace }, spec } as KubeObject;
}

function plan(objects: KubeObject[], extra: Partial<PlanInput> = {}) {
  return planInfrastructure({
    snapshot: buildSnapshot(objects),
    controllerName: OURS,
    parameters: [],
    deployments: [],
    controllerAddress: 'gatehouse:18000',
    controllerNamespace: 'gatehouse-system',
    caBundle: CA,
    defaultImage: 'gatehouse:test',
    ...extra,
  });
}

test('only Gateways of an accepted class of ours are provisioned', () => {
  const p = plan([
    gatewayClass('gatehouse'),
    gatewayClass('other', 'example.com/other'),
    gatewayClass('broken', OURS, { group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'missing', namespace: 'infra' }),
    gateway('cloud', 'gatehouse'),
    gateway('theirs', 'other'),
    gateway('orphan', 'broken'),
    gateway('nowhere', 'no-such-class'),
  ]);
  assert.deepEqual([...p.wanted.keys()], ['infra/cloud']);
  assert.equal(p.serviceAccounts.get('infra/cloud'), 'cloud-gatehouse');
  assert.match(p.judge.gatewayClass(buildSnapshot([gatewayClass('broken', OURS, { group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'missing', namespace: 'infra' })]).gatewayClasses[0]) ?? '', /not found/);
  assert.equal(p.judge.gatewayClass(buildSnapshot([gatewayClass('gatehouse')]).gatewayClasses[0]), null);
});

test('the Gateway\'s parameters override the class\'s; a bad one makes that Gateway InvalidParameters and unprovisioned', () => {
  const objects = [
    gatewayClass('gatehouse', OURS, { group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'class-defaults', namespace: 'infra' }),
    gateway('big', 'gatehouse', { infrastructure: { parametersRef: { group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'big' } } }),
    gateway('small', 'gatehouse'),
    gateway('bad', 'gatehouse', { infrastructure: { parametersRef: { group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'bad' } } }),
  ];
  const p = plan(objects, {
    parameters: [
      params('class-defaults', { replicas: 2, image: 'registry.example/gatehouse:1' }),
      params('big', { replicas: 5 }),
      params('bad', { replicas: -1 }),
    ],
  });
  const replicas = (key: string) => (p.wanted.get(key)!.objects.find((o) => o.kind === 'Deployment') as any).spec; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(replicas('infra/big').replicas, 5);
  assert.equal(replicas('infra/big').template.spec.containers[0].image, 'registry.example/gatehouse:1');
  assert.equal(replicas('infra/small').replicas, 2);
  assert.ok(!p.wanted.has('infra/bad'));
  const snap = buildSnapshot(objects);
  const bad = snap.gateways.find((g) => g.metadata.name === 'bad')!;
  assert.match(p.judge.gateway(bad) ?? '', /replicas/);
  assert.equal(p.judge.gateway(snap.gateways.find((g) => g.metadata.name === 'big')!), null);
});

test('addresses and ready proxies come from the Service and Deployment of the Gateway, nothing else', () => {
  const service = {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'cloud-gatehouse', namespace: 'infra' },
    spec: { type: 'LoadBalancer', clusterIP: '10.96.0.7', ports: [{ port: 80 }] },
    status: { loadBalancer: { ingress: [{ ip: '198.51.100.7' }, { hostname: 'vip.example.net' }] } },
  } as KubeObject;
  const unrelated = { ...service, metadata: { name: 'cloud-other', namespace: 'infra' } } as KubeObject;
  const deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'cloud-gatehouse', namespace: 'infra' },
    spec: { replicas: 3 }, status: { readyReplicas: 2, replicas: 3 },
  } as KubeObject;
  const p = plan([gatewayClass('gatehouse'), gateway('cloud', 'gatehouse'), gateway('fresh', 'gatehouse'), service, unrelated], { deployments: [deployment] });
  assert.deepEqual(p.provisioned['infra/cloud'], {
    addresses: [{ type: 'IPAddress', value: '198.51.100.7' }, { type: 'Hostname', value: 'vip.example.net' }],
    readyProxies: 2, desiredProxies: 3, service: 'infra/cloud-gatehouse', addressProblems: [],
  });
  assert.deepEqual(p.provisioned['infra/fresh'], { addresses: [], readyProxies: 0, desiredProxies: 0, service: 'infra/fresh-gatehouse', addressProblems: [] });
  assert.equal(p.present('infra/cloud'), true);
  assert.equal(p.present('infra/fresh'), false);
});

test('a ClusterIP Service is reached at its cluster IPs; a requested address it cannot take is an address problem', () => {
  assert.deepEqual(serviceAddresses({
    apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'n' },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.9', clusterIPs: ['10.96.0.9', 'fd00::9'] },
  }), [{ type: 'IPAddress', value: '10.96.0.9' }, { type: 'IPAddress', value: 'fd00::9' }]);
  const p = plan([
    gatewayClass('gatehouse', OURS, { group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'internal', namespace: 'infra' }),
    gateway('cloud', 'gatehouse', { addresses: [{ type: 'IPAddress', value: '198.51.100.10' }] }),
  ], { parameters: [params('internal', { service: { type: 'ClusterIP' } })] });
  assert.equal(p.provisioned['infra/cloud'].addressProblems!.length, 1);
  assert.match(p.provisioned['infra/cloud'].addressProblems![0], /ClusterIP/);
});

test('the Service exposes the ports of the ListenerSets the Gateway admits, not of those it refuses', () => {
  const listenerSet = (name: string, namespace: string, port: number, kind = 'ListenerSet', apiVersion = 'gateway.networking.k8s.io/v1'): KubeObject => ({
    apiVersion, kind, metadata: { name, namespace, generation: 1 },
    spec: { parentRef: { name: 'cloud', namespace: 'infra' }, listeners: [{ name: 'web', port, protocol: 'HTTP' }] },
  });
  const p = plan([
    gatewayClass('gatehouse'),
    gateway('cloud', 'gatehouse', { allowedListeners: { namespaces: { from: 'Same' } } }),
    listenerSet('same', 'infra', 8443),
    listenerSet('old', 'infra', 9443, 'XListenerSet', 'gateway.networking.x-k8s.io/v1alpha1'),
    listenerSet('away', 'team', 7443),
  ]);
  const svc = p.wanted.get('infra/cloud')!.objects.find((o) => o.kind === 'Service') as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.deepEqual(svc.spec.ports.map((x: { port: number }) => x.port), [80, 8443, 9443]);
});
