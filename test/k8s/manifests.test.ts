// deploy/manifests against a real API server: the CRDs and the manifests
// apply server-side and are accepted as they are; then the controller's own
// code runs as the manifests' ServiceAccount (a real token, the real RBAC
// authorizer): config certificate, leader election, status writes,
// provisioning and its sweep, TokenReview. A rule missing from 10-rbac.yaml
// fails here with the API server's 403; a rule too broad fails the access
// reviews at the end (and test/deploy/manifests.test.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import * as k8s from '@kubernetes/client-node';
import { startCluster, type Cluster } from './harness/cluster.ts';
import { parseControllerArgs, type ControllerCommand } from '../../src/cli/controller-args.ts';
import { CONTROLLER_NAME } from '../../src/control/standalone.ts';
import { startController } from '../../src/control/kubernetes.ts';
import { ensureConfigServiceCertificate } from '../../src/providers/kubernetes/config-certificate.ts';
import { startLeaderElection } from '../../src/providers/kubernetes/leader-election.ts';
import { StatusWriter } from '../../src/providers/kubernetes/status-writer.ts';
import { tokenReviewAuthenticator } from '../../src/providers/kubernetes/token-review.ts';
import { Provisioner } from '../../src/providers/kubernetes/provision/apply.ts';
import { renderInfrastructure, TOKEN_AUDIENCE, type Infrastructure } from '../../src/providers/kubernetes/provision/render.ts';
import type { Gateway, KubeObject } from '../../src/api/types.ts';
import { manifestFiles, loadManifests, only } from '../deploy/objects.ts';

/** The API server's own audience (the harness's --service-account-issuer): a token for the API, not for proxies. */
const API_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';
/** Bounds on waiting for the API server to show what was done; it answers in milliseconds. */
const WAIT_MS = 20_000;

const manifests = loadManifests().map((l) => l.object);
const deployment = only(manifests, 'Deployment');
const container = deployment.spec.template.spec.containers[0];
const NAMESPACE = deployment.metadata.namespace!;
const SA = only(manifests, 'ServiceAccount').metadata.name;
const cmd = parseControllerArgs(container.args.slice(1), { POD_NAMESPACE: NAMESPACE }) as ControllerCommand;
assert.equal(typeof cmd, 'object', `the Deployment's args: ${cmd}`);

/** Warnings and errors the controller's parts log (a 403 shows here); bounded. */
const logged: string[] = [];
const log = pino({ level: 'warn' }, { write: (line: string) => { if (logged.length < 200) logged.push(line); } });
const lastLogged = () => logged.slice(-5).join('');
let cluster: Cluster;
let admin: k8s.KubeConfig;
/** Authenticated as system:serviceaccount:gatehouse-system:gatehouse, with a token the API server issued. */
let asController: k8s.KubeConfig;

before(async () => {
  cluster = await startCluster({ crds: 'experimental' });
  admin = cluster.kubeConfig();
  await cluster.applyFiles(manifestFiles());
  const token = await cluster.serviceAccountToken(NAMESPACE, SA, API_AUDIENCE, 3600);
  asController = new k8s.KubeConfig();
  asController.loadFromOptions({
    clusters: [{ name: 'test', server: cluster.server, caFile: cluster.caFile, skipTLSVerify: false }],
    users: [{ name: 'gatehouse', token }],
    contexts: [{ name: 'test', cluster: 'test', user: 'gatehouse' }],
    currentContext: 'test',
  });
  await cluster.applyYaml(`
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: team}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: 80, protocol: HTTP}]
`);
});

after(async () => {
  await cluster?.stop();
});

async function waitFor<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${WAIT_MS} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the API server accepts every manifest as it is: the controller Deployment, its Service, PDB, RBAC, the GatewayClass', async () => {
  const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
  for (const o of manifests) {
    const got = await objects.read({ apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata.name, namespace: o.metadata.namespace } });
    assert.equal(got.metadata?.name, o.metadata.name, `${o.kind} ${o.metadata.name}`);
  }
  const apps = admin.makeApiClient(k8s.AppsV1Api);
  const d = await apps.readNamespacedDeployment({ name: deployment.metadata.name, namespace: NAMESPACE });
  assert.equal(d.spec?.replicas, 2);
  assert.equal(d.spec?.template.spec?.containers[0]?.securityContext?.readOnlyRootFilesystem, true);
  const gc = await objects.read({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse' } }) as KubeObject & { spec: { controllerName: string } };
  assert.equal(gc.spec.controllerName, CONTROLLER_NAME);
  // Applying again changes nothing and conflicts with nothing.
  await cluster.applyFiles(manifestFiles());
});

test('as its ServiceAccount, the controller makes its config certificate Secret and finds it again', async () => {
  const opts = { kubeConfig: asController, namespace: cmd.controllerNamespace, secretName: cmd.configSecretName, serviceName: cmd.configServiceName, log: () => {} };
  const first = await ensureConfigServiceCertificate(opts);
  const second = await ensureConfigServiceCertificate(opts);
  assert.equal(second.caCert, first.caCert, 'the second replica reads the Secret the first made');
});

test('as its ServiceAccount, the controller takes the leader Lease and gives it up', async () => {
  let leading!: () => void;
  const started = new Promise<void>((resolve) => { leading = resolve; });
  const election = startLeaderElection({
    kubeConfig: asController, namespace: cmd.controllerNamespace, name: cmd.leaseName, identity: 'manifests-test_1', log,
    leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 400,
    onStartedLeading: () => leading(), onStoppedLeading: () => {},
  });
  try {
    await Promise.race([started, new Promise((_, reject) => setTimeout(() => reject(new Error(`not leader within 10 s: ${lastLogged()}`)), 10_000))]);
    // Renewal is an update of the same Lease: still leading a few retry periods later.
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(election.isLeader(), true);
  } finally {
    await election.stop();
  }
  const lease = await admin.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name: cmd.leaseName, namespace: cmd.controllerNamespace });
  assert.ok(!lease.spec?.holderIdentity, 'released on stop');
});

test('as its ServiceAccount, the controller writes the status of its GatewayClass and Gateway', async () => {
  const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
  const gc = await objects.read({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse' } }) as unknown as KubeObject;
  const gw = await objects.read({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'team' } }) as unknown as KubeObject;
  // As the informers hand them over: without status (the writer then reads the status subresource).
  delete (gc as { status?: unknown }).status;
  delete (gw as { status?: unknown }).status;
  const condition = (type: string, reason: string) => ({ type, status: 'True', reason, message: 'manifests test', observedGeneration: 1 });
  const statuses = new Map<string, unknown>([
    ['GatewayClass||gatehouse', { conditions: [condition('Accepted', 'Accepted')] }],
    ['Gateway|team|edge', { conditions: [condition('Accepted', 'Accepted')] }],
  ]);
  const writer = new StatusWriter({ kubeConfig: asController, controllerName: CONTROLLER_NAME, log, attempts: 1 });
  const result = await writer.publish(statuses, [gc, gw]);
  assert.deepEqual(result, { written: 2, failed: 0 }, lastLogged());
  const after = await objects.read({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse' } }) as unknown as { status: { conditions: { type: string; status: string }[] } };
  assert.ok(after.status.conditions.some((c) => c.type === 'Accepted' && c.status === 'True'));
});

test('as its ServiceAccount, the controller provisions a Gateway\'s proxies (all kinds), checks their token, and sweeps them', async () => {
  const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
  const gw = await objects.read({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'team' } }) as unknown as Gateway;
  const infra: Infrastructure = renderInfrastructure({
    gateway: gw, className: 'gatehouse',
    // HPA and PDB too: every kind the provisioner can make.
    parameters: { autoscaling: { minReplicas: 1, maxReplicas: 3 }, podDisruptionBudget: { minAvailable: 1 } },
    controllerAddress: `${cmd.configServiceName}:18000`, controllerNamespace: cmd.controllerNamespace,
    caBundle: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', defaultImage: cmd.proxyImage,
  });
  const kinds = infra.objects.map((o) => o.kind).sort();
  assert.deepEqual(kinds, ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service', 'ServiceAccount']);
  const provisioner = new Provisioner({ kubeConfig: asController, log });
  const key = 'team/edge';
  await provisioner.sync(new Map([[key, infra]]), () => true);
  for (const o of infra.objects) {
    await waitFor(`${o.kind} ${o.metadata.name} applied (${lastLogged()})`, async () => (await objects.read({ apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata.name, namespace: o.metadata.namespace } })).metadata?.uid);
  }

  // A proxy of this Gateway, with its projected token (audience gatehouse), is let in; one of another ServiceAccount is not.
  const authenticate = tokenReviewAuthenticator({ kubeConfig: asController, serviceAccountFor: () => infra.name });
  const proxyToken = await cluster.serviceAccountToken('team', infra.name, TOKEN_AUDIENCE, 600);
  const ok = await authenticate(proxyToken, key);
  assert.equal(ok.allowed, true, JSON.stringify(ok));
  const stranger = await cluster.serviceAccountToken('team', 'someone-else', TOKEN_AUDIENCE, 600);
  const refused = await authenticate(stranger, key);
  assert.equal(refused.allowed, false);
  assert.equal(!refused.allowed && refused.status, 403);

  // No Gateway wants them any more: listed cluster-wide by label and deleted.
  provisioner.reset();
  await provisioner.sync(new Map(), () => true);
  for (const o of infra.objects) {
    await waitFor(`${o.kind} ${o.metadata.name} deleted (${lastLogged()})`, async () => {
      try {
        await objects.read({ apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata.name, namespace: o.metadata.namespace } });
        return undefined;
      } catch (err) {
        return (err as { code?: number }).code === 404 ? true : undefined;
      }
    });
  }
});

test('the API server\'s authorizer agrees: allowed what the controller needs, refused what it does not', async () => {
  const authz = asController.makeApiClient(k8s.AuthorizationV1Api);
  const can = async (verb: string, group: string, resource: string, namespace?: string, name?: string, subresource?: string) => {
    const r = await authz.createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: { verb, group, resource, namespace, name, subresource } } } });
    return r.status?.allowed === true;
  };
  const gw = 'gateway.networking.k8s.io';
  // Needed, and allowed.
  for (const r of ['gateways', 'httproutes', 'listenersets', 'backendtlspolicies', 'referencegrants']) {
    assert.ok(await can('watch', gw, r), `watch ${r}`);
  }
  assert.ok(await can('update', gw, 'gateways', 'team', 'edge', 'status'));
  assert.ok(await can('update', gw, 'gateways', 'team', 'edge', 'finalizers'), 'blockOwnerDeletion under OwnerReferencesPermissionEnforcement');
  assert.ok(await can('watch', 'gatehouse.dev', 'gatewayparameters'));
  for (const r of ['clienttrafficpolicies', 'backendtrafficpolicies']) {
    assert.ok(await can('watch', 'gatehouse.dev', r), `watch ${r}`);
    assert.ok(await can('update', 'gatehouse.dev', r, 'team', 'p', 'status'), `update ${r}/status`);
    assert.ok(!(await can('update', 'gatehouse.dev', r, 'team', 'p')), `${r} itself is not written`);
  }
  assert.ok(await can('watch', 'discovery.k8s.io', 'endpointslices'));
  assert.ok(await can('watch', '', 'secrets'));
  assert.ok(await can('create', 'authentication.k8s.io', 'tokenreviews'));
  // Not needed, and refused.
  assert.equal(await can('update', gw, 'gateways', 'team', 'edge'), false, 'never writes a Gateway\'s spec');
  assert.equal(await can('delete', gw, 'httproutes', 'team'), false);
  assert.equal(await can('create', '', 'secrets', 'team'), false, 'no Secret written outside its namespace');
  assert.equal(await can('update', '', 'secrets', NAMESPACE, 'some-other-secret'), false, 'only its own Secret, by name');
  assert.equal(await can('update', 'coordination.k8s.io', 'leases', NAMESPACE, 'another-lease'), false, 'only its own Lease, by name');
  assert.equal(await can('update', 'coordination.k8s.io', 'leases', 'kube-system', cmd.leaseName), false);
  assert.equal(await can('update', '', 'configmaps', 'team', 'x'), false, 'server-side apply is a PATCH: no update');
  assert.equal(await can('list', '', 'pods'), false);
  assert.equal(await can('create', '', 'pods', 'team', undefined, 'exec'), false);
  assert.equal(await can('create', 'rbac.authorization.k8s.io', 'rolebindings', 'team'), false);
  assert.equal(await can('impersonate', '', 'serviceaccounts'), false);
});

test('the whole controller, as its ServiceAccount with the Deployment\'s flags, syncs every kind, leads, writes status and provisions', async () => {
  const before = logged.length;
  const port = (address: string) => address.slice(address.lastIndexOf(':') + 1);
  const running = await startController({
    kubeConfig: asController, log,
    namespaces: cmd.namespaces, namespaceSelector: cmd.namespaceSelector,
    // The Deployment's addresses, on loopback and free ports: this is one process among others.
    adminAddress: '127.0.0.1:0', healthAddress: '127.0.0.1:0', configAddress: '127.0.0.1:0',
    proxyControllerAddress: `${cmd.configServiceName}:${port(cmd.configAddress)}`,
    controllerNamespace: cmd.controllerNamespace, configServiceName: cmd.configServiceName, configSecretName: cmd.configSecretName,
    proxyImage: cmd.proxyImage, leaseName: cmd.leaseName, identity: 'manifests-test_2',
    leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 400,
  });
  try {
    await waitFor('leader', async () => running.isLeader() || undefined);
    const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
    // The listener status is the controller's own (the status test above wrote conditions only).
    await waitFor(`Gateway team/edge status from the controller (${lastLogged()})`, async () => {
      const gw = await objects.read({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'team' } }) as unknown as { status?: { listeners?: { name: string }[] } };
      return gw.status?.listeners?.some((l) => l.name === 'http') || undefined;
    });
    await waitFor(`the Gateway's proxies provisioned (${lastLogged()})`, async () => {
      const list = await admin.makeApiClient(k8s.AppsV1Api).listNamespacedDeployment({ namespace: 'team', labelSelector: 'gateway.networking.k8s.io/gateway-name=edge' });
      return list.items.length === 1 || undefined;
    });
    const forbidden = logged.slice(before).filter((l) => /\b403\b|forbidden/i.test(l));
    assert.deepEqual(forbidden, [], 'the API server refused the controller nothing');
  } finally {
    await running.close();
  }
});
