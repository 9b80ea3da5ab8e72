// deploy/manifests: every file parses, the objects agree with each other
// (names, namespaces, selectors, ports, flags), the controller's flags are
// ones `gatehouse controller` accepts, and the RBAC grants exactly the calls
// the controller makes: each of them, and nothing broader.
// (test/k8s/manifests.test.ts applies them to a real API server and makes
// those calls as the ServiceAccount.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { CONTROLLER_DEFAULTS, parseControllerArgs, type ControllerCommand } from '../../src/cli/controller-args.ts';
import { CONTROLLER_NAME } from '../../src/control/standalone.ts';
import { PROVISIONED_KINDS } from '../../src/providers/kubernetes/provision/apply.ts';
import { PROXY_UID } from '../../src/providers/kubernetes/provision/render.ts';
import { loadManifests, manifestFiles, only, keyOf, type Obj } from './objects.ts';

const loaded = loadManifests();
const objects = loaded.map((l) => l.object);
const NAMESPACE = only(objects, 'Namespace').metadata.name;

// ------------------------------------------------------------ what the controller calls
// Each entry: API group, resource, verbs, and where in the code the calls are.

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** Every kind the provider's informers list and watch (src/providers/kubernetes/provider.ts). */
const GATEWAY_API_RESOURCES = ['gatewayclasses', 'gateways', 'listenersets', 'httproutes', 'grpcroutes', 'tlsroutes', 'tcproutes', 'udproutes', 'referencegrants', 'backendtlspolicies'];
/** Kinds with a status the status writer reads and replaces (status-writer.ts PLURALS: all but ReferenceGrant). */
const STATUS_RESOURCES = GATEWAY_API_RESOURCES.filter((r) => r !== 'referencegrants');
/** PROVISIONED_KINDS (provision/apply.ts) as RBAC resources. */
const PROVISIONED_RESOURCES: Record<string, [group: string, resource: string]> = {
  'v1/ServiceAccount': ['', 'serviceaccounts'],
  'v1/ConfigMap': ['', 'configmaps'],
  'v1/Service': ['', 'services'],
  'apps/v1/Deployment': ['apps', 'deployments'],
  'autoscaling/v2/HorizontalPodAutoscaler': ['autoscaling', 'horizontalpodautoscalers'],
  'policy/v1/PodDisruptionBudget': ['policy', 'poddisruptionbudgets'],
};
// `get` beside list and watch gives nothing list does not; it is granted
// with them as every controller does, for kubectl auth can-i and humans.
const READ = ['get', 'list', 'watch'];
// Server-side apply is a PATCH; one that makes a new object also needs
// create (the API server checks it: verified against kube-apiserver).
// list: the sweep finds stale objects by label; delete removes them.
// Deployments are also watched (ready proxies); Services and ConfigMaps read.
const PROVISION = ['get', 'list', 'watch', 'create', 'patch', 'delete'];

type Grant = string; // group|resource|verb|resourceName
function grants(group: string, resources: string[], verbs: string[], names: string[] = ['']): Grant[] {
  return resources.flatMap((r) => verbs.flatMap((v) => names.map((n) => `${group}|${r}|${v}|${n}`)));
}

const CLUSTER_WIDE: Grant[] = [
  ...grants(GATEWAY_GROUP, GATEWAY_API_RESOURCES, READ),
  // status-writer.ts: GET the status subresource, PUT it with the resourceVersion read.
  ...grants(GATEWAY_GROUP, STATUS_RESOURCES.map((r) => `${r}/status`), ['get', 'update']),
  // render.ts owner references carry blockOwnerDeletion: OwnerReferencesPermissionEnforcement wants this.
  ...grants(GATEWAY_GROUP, ['gateways/finalizers'], ['update']),
  ...grants('gatehouse.dev', ['gatewayparameters', 'clienttrafficpolicies', 'backendtrafficpolicies'], READ),
  ...grants('gatehouse.dev', ['clienttrafficpolicies/status', 'backendtrafficpolicies/status'], ['get', 'update']),
  ...grants('', ['namespaces', 'secrets'], READ),
  ...grants('discovery.k8s.io', ['endpointslices'], READ),
  ...Object.values(PROVISIONED_RESOURCES).flatMap(([g, r]) => grants(g, [r], PROVISION)),
  // token-review.ts: a proxy's token is checked before it gets config.
  ...grants('authentication.k8s.io', ['tokenreviews'], ['create']),
];

const IN_OWN_NAMESPACE: Grant[] = [
  // leader-election.ts: read, create when missing, replace to take or renew.
  ...grants('coordination.k8s.io', ['leases'], ['get', 'update'], [CONTROLLER_DEFAULTS.leaseName]),
  ...grants('coordination.k8s.io', ['leases'], ['create']),
  // config-certificate.ts: read, create when missing, replace to reissue.
  ...grants('', ['secrets'], ['get', 'update'], [CONTROLLER_DEFAULTS.configSecretName]),
  ...grants('', ['secrets'], ['create']),
];

interface Rule { apiGroups?: string[]; resources?: string[]; verbs?: string[]; resourceNames?: string[]; nonResourceURLs?: string[] }

function expand(rules: Rule[]): Grant[] {
  const out: Grant[] = [];
  for (const r of rules) {
    assert.equal(r.nonResourceURLs, undefined, 'no nonResourceURLs');
    for (const g of r.apiGroups ?? []) out.push(...grants(g, r.resources ?? [], r.verbs ?? [], r.resourceNames?.length ? r.resourceNames : ['']));
  }
  return out;
}

function sorted(a: Grant[]): Grant[] {
  return [...new Set(a)].sort();
}

// ------------------------------------------------------------ the files

test('every manifest file parses, says what it is for, and holds named objects', () => {
  const files = manifestFiles().map((f) => f.split('/').pop());
  assert.deepEqual(files, ['00-namespace.yaml', '10-rbac.yaml', '20-controller.yaml', '30-gatewayclass.yaml']);
  for (const f of manifestFiles()) {
    assert.match(fs.readFileSync(f, 'utf8'), /^# \S/, `${f} starts with a comment saying what it is for`);
  }
  for (const { file, object } of loaded) {
    assert.ok(object.apiVersion && object.kind && object.metadata?.name, `${file}: ${JSON.stringify(object).slice(0, 100)}`);
  }
  const keys = objects.map(keyOf);
  assert.equal(new Set(keys).size, keys.length, `no object twice: ${keys}`);
});

test('every namespaced object is in the namespace 00-namespace.yaml makes', () => {
  assert.equal(NAMESPACE, 'gatehouse-system');
  assert.equal(NAMESPACE, CONTROLLER_DEFAULTS.controllerNamespace);
  const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'GatewayClass']);
  for (const o of objects) {
    if (clusterScoped.has(o.kind)) assert.equal(o.metadata.namespace, undefined, keyOf(o));
    else assert.equal(o.metadata.namespace, NAMESPACE, keyOf(o));
  }
});

// ------------------------------------------------------------ the controller

const deployment = only(objects, 'Deployment');
const pod = deployment.spec.template.spec;
const container = only(pod.containers.map((c: Obj) => ({ ...c, kind: 'Container', metadata: { name: c.name } })), 'Container');
const service = only(objects, 'Service');

function envValue(name: string): string | undefined {
  return container.env.find((e: { name: string }) => e.name === name)?.value;
}

function parsedArgs(): ControllerCommand {
  assert.equal(container.args[0], 'controller', 'the image runs `gatehouse <args>`: the first is the command');
  // What the downward API gives the pod.
  const env = { POD_NAME: 'gatehouse-abc', POD_NAMESPACE: deployment.metadata.namespace, GATEHOUSE_PROXY_IMAGE: envValue('GATEHOUSE_PROXY_IMAGE') };
  const cmd = parseControllerArgs(container.args.slice(1), env);
  assert.equal(typeof cmd, 'object', `gatehouse controller refuses the Deployment's args: ${cmd}`);
  return cmd as ControllerCommand;
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

function containerPort(nameOrNumber: string | number): number {
  if (typeof nameOrNumber === 'number') return nameOrNumber;
  const p = container.ports.find((x: { name: string }) => x.name === nameOrNumber);
  assert.ok(p, `container port ${nameOrNumber}`);
  return p.containerPort;
}

test('the controller Deployment\'s args are accepted by `gatehouse controller` and agree with the other objects', () => {
  const cmd = parsedArgs();
  assert.equal(cmd.controllerNamespace, NAMESPACE);
  assert.equal(cmd.configServiceName, service.metadata.name, 'proxies dial the Service the flag names');
  // The proxies dial <service>:<config port> (control/kubernetes.ts): the Service must expose the port the config service binds.
  const configPort = service.spec.ports.find((p: { name: string }) => p.name === 'config');
  assert.ok(configPort, 'the Service has a port named config');
  assert.equal(configPort.port, portOf(cmd.configAddress));
  assert.equal(containerPort(configPort.targetPort), portOf(cmd.configAddress));
  assert.ok(cmd.configAddress.startsWith('0.0.0.0:'), 'the config service is reachable from other pods');
  assert.ok(cmd.healthAddress.startsWith('0.0.0.0:'), 'the kubelet reaches the probes');
  for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
    assert.equal(containerPort(container[probe].httpGet.port), portOf(cmd.healthAddress), probe);
  }
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');
  assert.ok(cmd.adminAddress.startsWith('127.0.0.1:'), 'the full admin API stays on loopback (it needs a token elsewhere)');
  // Controller and proxies run one image, and the flag defaults name it too.
  assert.equal(cmd.proxyImage, container.image);
  assert.equal(container.image, CONTROLLER_DEFAULTS.proxyImage);
});

test('the controller gets its identity and namespace from the downward API', () => {
  const field = (name: string) => container.env.find((e: { name: string }) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
  assert.equal(field('POD_NAME'), 'metadata.name');
  assert.equal(field('POD_NAMESPACE'), 'metadata.namespace');
});

test('two replicas, spread over nodes, a PDB keeping one, rollouts that keep one serving', () => {
  assert.equal(deployment.spec.replicas, 2);
  const selector = deployment.spec.selector.matchLabels;
  const labels = deployment.spec.template.metadata.labels;
  const selects = (s: Record<string, string>) => Object.entries(s).every(([k, v]) => labels[k] === v);
  assert.ok(selects(selector), 'the Deployment selects its pods');
  assert.ok(selects(service.spec.selector), 'the Service selects the controller pods');
  const pdb = only(objects, 'PodDisruptionBudget');
  assert.equal(pdb.spec.minAvailable, 1);
  assert.deepEqual(pdb.spec.selector.matchLabels, selector);
  assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
  const spread = pod.topologySpreadConstraints as { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } }[];
  const byHost = spread.find((c) => c.topologyKey === 'kubernetes.io/hostname');
  assert.ok(byHost, 'spread over nodes');
  assert.ok(selects(byHost.labelSelector.matchLabels));
  // The controller exits at most 15 s after SIGTERM (cli/controller.ts STOP_TIMEOUT_MS).
  assert.ok(pod.terminationGracePeriodSeconds > 15);
});

test('the controller runs as the image\'s non-root user with nothing writable but /tmp', () => {
  assert.equal(pod.serviceAccountName, only(objects, 'ServiceAccount').metadata.name);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, PROXY_UID);
  assert.equal(pod.securityContext.runAsGroup, PROXY_UID);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  const sc = container.securityContext;
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.deepEqual(sc.capabilities.drop, ['ALL']);
  assert.equal(sc.privileged, undefined);
  assert.equal(pod.hostNetwork, undefined);
  // bin/gatehouse.js puts Node's compile cache in the temp directory.
  const tmp = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === '/tmp');
  assert.ok(tmp, '/tmp is mounted');
  assert.ok(pod.volumes.find((v: { name: string; emptyDir?: unknown }) => v.name === tmp.name && v.emptyDir), '/tmp is an emptyDir');
  assert.ok(container.resources.requests.cpu && container.resources.requests.memory && container.resources.limits.memory);
  const ns = only(objects, 'Namespace');
  assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
});

test('the GatewayClass names this controller', () => {
  const gc = only(objects, 'GatewayClass');
  assert.equal(gc.metadata.name, 'gatehouse');
  assert.equal(gc.spec.controllerName, CONTROLLER_NAME);
});

// ------------------------------------------------------------ RBAC

test('the ClusterRole grants every call the controller makes cluster-wide, and nothing more', () => {
  for (const { apiVersion, kind } of PROVISIONED_KINDS) {
    assert.ok(PROVISIONED_RESOURCES[`${apiVersion}/${kind}`], `the provisioner makes ${apiVersion} ${kind}: add its RBAC resource here and in 10-rbac.yaml`);
  }
  assert.equal(Object.keys(PROVISIONED_RESOURCES).length, PROVISIONED_KINDS.length, 'no grant for a kind the provisioner no longer makes');
  const role = only(objects, 'ClusterRole');
  const granted = sorted(expand(role.rules));
  const expected = sorted(CLUSTER_WIDE);
  assert.deepEqual(granted.filter((g) => !expected.includes(g)), [], 'granted beyond what the controller does');
  assert.deepEqual(expected.filter((g) => !granted.includes(g)), [], 'what the controller does but is not granted');
});

test('no wildcard, no escalation, no Secret written cluster-wide', () => {
  for (const kind of ['ClusterRole', 'Role']) {
    for (const rule of only(objects, kind).rules as Rule[]) {
      for (const field of ['apiGroups', 'resources', 'verbs'] as const) {
        assert.ok(!(rule[field] ?? []).some((v) => v.includes('*')), `${kind}: no * in ${field}`);
      }
      for (const v of rule.verbs ?? []) assert.ok(!['escalate', 'bind', 'impersonate', 'deletecollection'].includes(v), `${kind}: ${v}`);
    }
  }
  const clusterWide = expand(only(objects, 'ClusterRole').rules);
  const writes = clusterWide.filter((g) => /^\|secrets\|/.test(g) && !/\|(get|list|watch)\|/.test(g));
  assert.deepEqual(writes, [], 'Secrets are written only in the controller\'s namespace');
  assert.ok(!clusterWide.some((g) => g.startsWith('rbac.authorization.k8s.io|')), 'no RBAC objects');
  assert.ok(!clusterWide.some((g) => /^\|pods/.test(g)), 'no pods, exec or logs');
});

test('the Role grants the Lease and the config Secret in the controller\'s namespace only, by name where RBAC can', () => {
  const cmd = parsedArgs();
  const role = only(objects, 'Role');
  assert.equal(role.metadata.namespace, cmd.controllerNamespace);
  const own = sorted(IN_OWN_NAMESPACE.map((g) => g
    .replace(`|${CONTROLLER_DEFAULTS.leaseName}`, `|${cmd.leaseName}`)
    .replace(`|${CONTROLLER_DEFAULTS.configSecretName}`, `|${cmd.configSecretName}`)));
  assert.deepEqual(sorted(expand(role.rules)), own);
});

test('the bindings give the roles to the controller\'s ServiceAccount', () => {
  const sa = only(objects, 'ServiceAccount');
  for (const [binding, roleKind] of [['ClusterRoleBinding', 'ClusterRole'], ['RoleBinding', 'Role']] as const) {
    const b = only(objects, binding);
    assert.deepEqual(b.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: roleKind, name: only(objects, roleKind).metadata.name });
    assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
  }
});
