// Gatehouse's policies against a real kube-apiserver with their CRDs
// installed: the API server accepts the CRDs and refuses what their CEL
// rules refuse; the provider watches and validates the policies; the
// status writer writes our ancestors' entries of status.ancestors and
// leaves another controller's entries as they are.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { KubernetesProvider } from '../../src/providers/kubernetes/provider.ts';
import { StatusWriter } from '../../src/providers/kubernetes/status-writer.ts';
import { translate } from '../../src/translate/index.ts';
import { startCluster, type Cluster } from './harness/cluster.ts';

const OURS = 'gatehouse.dev/gateway-controller';
const THEIRS = 'example.net/other-controller';
const quiet = pino({ level: 'silent' });

let cluster: Cluster;
let api: k8s.CustomObjectsApi;

before(async () => {
  cluster = await startCluster({ crds: 'standard' });
  api = cluster.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
  await cluster.applyYaml(`
apiVersion: v1
kind: Namespace
metadata: { name: infra }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: gatehouse }
spec: { controllerName: ${OURS} }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatehouse
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: { name: vip, namespace: infra }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]
  clientIPDetection: { xForwardedFor: { numTrustedHops: 2 } }
  maxRequestBodySize: 0
---
apiVersion: gatehouse.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: lb, namespace: infra }
spec:
  targetRefs: [{ group: "", kind: Service, name: keystone }]
  loadBalancer: { type: LeastRequest }
`);
});

after(async () => {
  await cluster?.stop();
});

test('the API server refuses what the CRDs\' rules refuse', async () => {
  await assert.rejects(
    api.createNamespacedCustomObject({
      group: 'gatehouse.dev', version: 'v1alpha1', namespace: 'infra', plural: 'clienttrafficpolicies',
      body: {
        apiVersion: 'gatehouse.dev/v1alpha1', kind: 'ClientTrafficPolicy', metadata: { name: 'both' },
        spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }], clientIPDetection: { xForwardedFor: { numTrustedHops: 1, trustedCIDRs: ['10.0.0.0/8'] } } },
      },
    }),
    /numTrustedHops or trustedCIDRs/,
  );
  await assert.rejects(
    api.createNamespacedCustomObject({
      group: 'gatehouse.dev', version: 'v1alpha1', namespace: 'infra', plural: 'backendtrafficpolicies',
      body: {
        apiVersion: 'gatehouse.dev/v1alpha1', kind: 'BackendTrafficPolicy', metadata: { name: 'svc-group' },
        spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Service', name: 's' }] },
      },
    }),
    /group must be/,
  );
});

test('the provider reads the policies; the status writer writes our ancestors and keeps theirs', async () => {
  // Another controller's entry, already there.
  const before = await api.getNamespacedCustomObject({ group: 'gatehouse.dev', version: 'v1alpha1', namespace: 'infra', plural: 'clienttrafficpolicies', name: 'vip' }) as k8s.KubernetesObject;
  const theirs = {
    ancestorRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'infra', name: 'their-gw' },
    controllerName: THEIRS,
    conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', lastTransitionTime: '2024-01-01T00:00:00Z' }],
  };
  await api.replaceNamespacedCustomObjectStatus({
    group: 'gatehouse.dev', version: 'v1alpha1', namespace: 'infra', plural: 'clienttrafficpolicies', name: 'vip',
    body: { ...before, status: { ancestors: [theirs] } },
  });

  const provider = await KubernetesProvider.start({ kubeConfig: cluster.kubeConfig(), log: quiet, timing: { coalesceMs: 50 } });
  try {
    const read = provider.read();
    assert.deepEqual(read.problems, []);
    const objects = read.objects.map((o) => o.object);
    const kinds = objects.map((o) => o.kind);
    assert.ok(kinds.includes('ClientTrafficPolicy') && kinds.includes('BackendTrafficPolicy'), kinds.join(','));
    const result = translate(buildSnapshot(objects), { controllerName: OURS, addressing: { pool: null, hostAddress: '', previous: {}, provisioned: {} } });
    const writer = new StatusWriter({ kubeConfig: cluster.kubeConfig(), controllerName: OURS, log: quiet });
    const published = await writer.publish(result.statuses, objects);
    assert.equal(published.failed, 0);
  } finally {
    await provider.close();
  }
  const after = await api.getNamespacedCustomObject({ group: 'gatehouse.dev', version: 'v1alpha1', namespace: 'infra', plural: 'clienttrafficpolicies', name: 'vip' }) as { status: { ancestors: { controllerName: string; ancestorRef: { name: string }; conditions: { type: string; status: string; reason: string }[] }[] } };
  const byController = Object.fromEntries(after.status.ancestors.map((a) => [a.controllerName, a]));
  assert.equal(byController[THEIRS]?.ancestorRef.name, 'their-gw', 'their entry is kept');
  assert.equal(byController[OURS]?.ancestorRef.name, 'gw');
  assert.deepEqual(byController[OURS].conditions.map((c) => `${c.type}=${c.status}/${c.reason}`), ['Accepted=True/Accepted']);
  const btp = await api.getNamespacedCustomObject({ group: 'gatehouse.dev', version: 'v1alpha1', namespace: 'infra', plural: 'backendtrafficpolicies', name: 'lb' }) as { status: { ancestors: { conditions: { reason: string }[] }[] } };
  assert.equal(btp.status.ancestors[0].conditions[0].reason, 'TargetNotFound');
});
