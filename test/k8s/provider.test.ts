// The Kubernetes provider against a real API server: what it lists and
// watches, that unchanged objects stay the same instances (translate
// memoizes on identity), that a relist after 410 Gone is not a change,
// namespace restriction by list and by selector, CRDs installed and
// deleted while it runs, objects the API server stored but validation
// refuses, and a start that cannot list failing with the reason.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import jsyaml from 'js-yaml';
import pino from 'pino';
import * as k8s from '@kubernetes/client-node';
import { KubernetesProvider, type KubernetesProviderOptions } from '../../src/providers/kubernetes/provider.ts';
import type { ProviderRead } from '../../src/control/loop.ts';
import { compactEtcd, restartApiServer, startCluster, type Cluster } from './harness/cluster.ts';

const CRD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../deploy/crds/gateway-api/experimental');
const UDPROUTE_CRD = path.join(CRD_DIR, 'gateway.networking.k8s.io_udproutes.yaml');
const HTTPROUTE_CRD = path.join(CRD_DIR, 'gateway.networking.k8s.io_httproutes.yaml');

let cluster: Cluster;

before(async () => {
  cluster = await startCluster();
  await cluster.applyYaml(FIXTURES);
});

after(async () => {
  await cluster?.stop();
});

const FIXTURES = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {gatehouse: "yes"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: team-a}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: team-a}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: team-b}
spec:
  parentRefs: [{name: gw, namespace: team-a}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-b, namespace: team-a}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-b}]
  to: [{group: "", kind: Service}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-b}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: team-a, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.5], conditions: {ready: true}}]
ports: [{port: 8080}]
---
apiVersion: v1
kind: Secret
metadata: {name: opaque, namespace: team-a}
stringData: {token: not-a-real-secret}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
  namespace: team-a
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"a large copy of the object": true}'
    kept: "yes"
data: {ca.crt: hello}
---
apiVersion: gatehouse.dev/v1alpha1
kind: GatewayParameters
metadata: {name: params, namespace: team-a}
spec: {replicas: 2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: gw-gatehouse, namespace: team-a, labels: {app.kubernetes.io/managed-by: gatehouse}}
spec:
  selector: {matchLabels: {app: gw}}
  template: {metadata: {labels: {app: gw}}, spec: {containers: [{name: proxy, image: example.invalid/proxy:1}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: not-ours, namespace: team-a}
spec:
  selector: {matchLabels: {app: other}}
  template: {metadata: {labels: {app: other}}, spec: {containers: [{name: c, image: example.invalid/other:1}]}}
`;

/** A pino logger whose lines the test can read. */
function recordingLog() {
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => { lines.push(s); } });
  return { log, lines, has: (re: RegExp) => lines.some((l) => re.test(JSON.parse(l).msg)) };
}

async function startProvider(extra: Partial<KubernetesProviderOptions> = {}) {
  const rec = recordingLog();
  const provider = await KubernetesProvider.start({ kubeConfig: cluster.kubeConfig(), log: rec.log, timing: { coalesceMs: 50 }, ...extra });
  let changes = 0;
  const watch = provider.watch(() => { changes++; });
  return {
    provider, rec,
    changes: () => changes,
    async close() { watch.close(); await provider.close(); },
  };
}

async function eventually<T>(what: string, ms: number, get: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Metadata with the fields the domain type leaves out. */
function metaOf(o: { metadata: object }): Record<string, unknown> {
  return o.metadata as Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `namespace/name` of the read objects of `kind`. */
function names(read: ProviderRead, kind: string): string[] {
  return read.objects.filter((o) => o.object.kind === kind).map((o) => `${o.object.metadata.namespace ?? ''}/${o.object.metadata.name}`);
}

function find(read: ProviderRead, kind: string, namespace: string | undefined, name: string) {
  return read.objects.find((o) => o.object.kind === kind && o.object.metadata.name === name && o.object.metadata.namespace === namespace)?.object;
}

async function kubectl(...args: string[]): Promise<string> {
  const r = await cluster.kubectl(...args);
  assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('the first read holds every kind, validated and trimmed; extra() gives GatewayParameters and our Deployments', async () => {
  const p = await startProvider();
  try {
    const read = p.provider.read();
    assert.deepEqual(read.problems, []);
    assert.deepEqual(names(read, 'GatewayClass'), ['/gatehouse']);
    assert.deepEqual(names(read, 'Gateway'), ['team-a/gw']);
    assert.deepEqual(names(read, 'HTTPRoute'), ['team-a/web', 'team-b/web']);
    assert.deepEqual(names(read, 'ReferenceGrant'), ['team-a/from-b']);
    assert.deepEqual(names(read, 'Service').filter((n) => n.startsWith('team-')), ['team-a/web', 'team-b/web']);
    assert.deepEqual(names(read, 'EndpointSlice'), ['team-a/web-1']);
    assert.ok(names(read, 'Namespace').includes('/team-b'));
    assert.ok(names(read, 'Secret').includes('team-a/opaque'));
    // Newest served versions, and built-in kinds stamped (list items carry no apiVersion or kind).
    assert.equal(find(read, 'GatewayClass', undefined, 'gatehouse')?.apiVersion, 'gateway.networking.k8s.io/v1');
    assert.equal(find(read, 'ReferenceGrant', 'team-a', 'from-b')?.apiVersion, 'gateway.networking.k8s.io/v1');
    assert.equal(find(read, 'Service', 'team-a', 'web')?.apiVersion, 'v1');
    assert.equal(find(read, 'EndpointSlice', 'team-a', 'web-1')?.apiVersion, 'discovery.k8s.io/v1');
    // Validation defaulted them as the API server would (Service protocol, HTTPRoute path match).
    const svc = find(read, 'Service', 'team-a', 'web') as { spec: { ports: { protocol: string }[] } };
    assert.equal(svc.spec.ports[0].protocol, 'TCP');
    // What the API server adds and nothing here reads is gone: managedFields
    // (server-side apply made them) and kubectl's last-applied copy.
    for (const { object } of read.objects) assert.equal(metaOf(object).managedFields, undefined, `${object.kind} ${object.metadata.name}`);
    const cm = find(read, 'ConfigMap', 'team-a', 'applied')!;
    assert.deepEqual(cm.metadata.annotations, { kept: 'yes' });
    assert.equal(typeof metaOf(cm).resourceVersion, 'string');

    const deployments = p.provider.extra('Deployment');
    assert.deepEqual(deployments.map((d) => `${d.metadata.namespace}/${d.metadata.name}`), ['team-a/gw-gatehouse']);
    assert.equal(metaOf(deployments[0]).managedFields, undefined);
    assert.equal(deployments[0].apiVersion, 'apps/v1');
    const params = p.provider.extra('GatewayParameters');
    assert.deepEqual(params.map((d) => `${d.metadata.namespace}/${d.metadata.name}`), ['team-a/params']);
    assert.deepEqual(params[0].spec, { replicas: 2 });
    // Nothing changed: the very same answers.
    assert.equal(p.provider.read(), read);
    assert.equal(p.provider.extra('Deployment'), deployments);
    assert.equal(p.changes(), 0);
  } finally {
    await p.close();
  }
});

test('adds, updates and deletes are seen; everything else stays the same instance; bursts are folded', async () => {
  const p = await startProvider({ timing: { coalesceMs: 150 } });
  try {
    const first = p.provider.read();
    const gw = find(first, 'Gateway', 'team-a', 'gw')!;

    await kubectl('create', 'configmap', 'added', '-n', 'team-a', '--from-literal=k=v');
    const added = await eventually('ConfigMap added', 10_000, () => find(p.provider.read(), 'ConfigMap', 'team-a', 'added'));
    await eventually('onChange called', 2_000, () => p.changes() >= 1);
    const second = p.provider.read();
    assert.equal(find(second, 'Gateway', 'team-a', 'gw'), gw, 'an unchanged object is the same instance');
    assert.equal(find(second, 'HTTPRoute', 'team-a', 'web'), find(first, 'HTTPRoute', 'team-a', 'web'));

    await kubectl('label', 'configmap', 'added', '-n', 'team-a', 'changed=yes');
    const updated = await eventually('ConfigMap updated', 10_000, () => {
      const o = find(p.provider.read(), 'ConfigMap', 'team-a', 'added');
      return o?.metadata.labels?.changed === 'yes' ? o : undefined;
    });
    assert.notEqual(updated, added);
    assert.equal(find(p.provider.read(), 'Gateway', 'team-a', 'gw'), gw);

    await kubectl('delete', 'configmap', 'added', '-n', 'team-a');
    await eventually('ConfigMap deleted', 10_000, () => find(p.provider.read(), 'ConfigMap', 'team-a', 'added') === undefined);

    // Twenty objects in one apply: far fewer notifications than objects.
    const before = p.changes();
    const burst = Array.from({ length: 20 }, (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: burst-${i}, namespace: team-b}\ndata: {i: "${i}"}\n`).join('---\n');
    await cluster.applyYaml(burst);
    await eventually('20 ConfigMaps', 10_000, () => names(p.provider.read(), 'ConfigMap').filter((n) => n.startsWith('team-b/burst-')).length === 20);
    await sleep(300);
    const notifications = p.changes() - before;
    assert.ok(notifications >= 1 && notifications < 10, `${notifications} notifications for 20 objects`);
    await kubectl('delete', 'configmap', '-n', 'team-b', ...Array.from({ length: 20 }, (_, i) => `burst-${i}`));
  } finally {
    await p.close();
  }
});

test('the API server restarting: watches resume through 410 Gone and a relist that changes nothing', async () => {
  const p = await startProvider({ timing: { backoffBaseMs: 100, backoffMaxMs: 1_000 } });
  try {
    const before = p.provider.read();
    const changesBefore = p.changes();
    // Every resourceVersion the provider holds is now older than etcd's
    // history, and the new API server's watch cache starts at the current
    // revision: every watch it resumes is answered 410 Gone, and lists again.
    await compactEtcd(cluster);
    await restartApiServer(cluster);
    for (const kind of ['HTTPRoute', 'Secret', 'Namespace', 'GatewayParameters', 'Deployment']) {
      await eventually(`${kind} relisted after 410`, 30_000, () => p.rec.has(new RegExp(`^${kind}: resourceVersion expired \\(410 Gone\\)`)));
    }
    await eventually('every watch working again', 30_000, () => {
      const failing = new Set<string>();
      for (const l of p.rec.lines) {
        const { msg } = JSON.parse(l) as { msg: string };
        const m = /^(\w+): (list\/watch failed|watching again)/.exec(msg);
        if (m) (m[2] === 'watching again' ? failing.delete(m[1]) : failing.add(m[1]));
      }
      return failing.size === 0;
    });
    await sleep(300);
    // The relists found every object at the resourceVersion it had: no change, the same instances.
    assert.equal(p.changes(), changesBefore, 'a relist that finds nothing new is not a change');
    assert.equal(p.provider.read(), before);
    // Errors while it was down: one line per informer, however many retries.
    const failures = p.rec.lines.filter((l) => /^HTTPRoute: list\/watch failed/.test(JSON.parse(l).msg)).length;
    assert.equal(failures, 1);

    // And the watches work again.
    await kubectl('create', 'configmap', 'after-restart', '-n', 'team-a', '--from-literal=k=v');
    await eventually('ConfigMap seen after the restart', 15_000, () => find(p.provider.read(), 'ConfigMap', 'team-a', 'after-restart'));
    await eventually('onChange after the restart', 2_000, () => p.changes() > changesBefore);
    assert.equal(find(p.provider.read(), 'Gateway', 'team-a', 'gw'), find(before, 'Gateway', 'team-a', 'gw'));
    await kubectl('delete', 'configmap', 'after-restart', '-n', 'team-a');
  } finally {
    await p.close();
  }
});

test('namespaces: namespaced kinds only from the namespaces listed; GatewayClass and Namespace cluster-wide', async () => {
  const p = await startProvider({ namespaces: ['team-a'] });
  try {
    const read = p.provider.read();
    assert.deepEqual(names(read, 'HTTPRoute'), ['team-a/web']);
    assert.deepEqual(names(read, 'Service'), ['team-a/web']);
    assert.deepEqual(names(read, 'GatewayClass'), ['/gatehouse']);
    assert.ok(names(read, 'Namespace').includes('/team-b'));
    assert.deepEqual(p.provider.extra('Deployment').map((d) => d.metadata.name), ['gw-gatehouse']);

    // A change in another namespace is not even watched.
    await kubectl('create', 'configmap', 'elsewhere', '-n', 'team-b', '--from-literal=k=v');
    await kubectl('create', 'configmap', 'here', '-n', 'team-a', '--from-literal=k=v');
    await eventually('ConfigMap in team-a', 10_000, () => find(p.provider.read(), 'ConfigMap', 'team-a', 'here'));
    assert.equal(find(p.provider.read(), 'ConfigMap', 'team-b', 'elsewhere'), undefined);
    await kubectl('delete', 'configmap', 'elsewhere', '-n', 'team-b');
    await kubectl('delete', 'configmap', 'here', '-n', 'team-a');
  } finally {
    await p.close();
  }
});

test('namespaceSelector: objects of matching namespaces only, following relabels both ways', async () => {
  await assert.rejects(KubernetesProvider.start({ kubeConfig: cluster.kubeConfig(), log: pino({ level: 'silent' }), namespaceSelector: 'gatehouse in (' }),
    /namespaceSelector "gatehouse in \(": HTTP 400/);

  const p = await startProvider({ namespaceSelector: 'gatehouse=yes' });
  try {
    let read = p.provider.read();
    assert.deepEqual(names(read, 'HTTPRoute'), ['team-a/web']);
    assert.deepEqual(names(read, 'Service'), ['team-a/web']);
    assert.ok(names(read, 'Namespace').includes('/team-b'), 'Namespaces themselves are all given');

    await kubectl('label', 'namespace', 'team-b', 'gatehouse=yes');
    read = await eventually('team-b relabelled in', 10_000, () => {
      const r = p.provider.read();
      return names(r, 'HTTPRoute').length === 2 ? r : undefined;
    });
    assert.deepEqual(names(read, 'Service'), ['team-a/web', 'team-b/web']);

    const changes = p.changes();
    await kubectl('label', '--overwrite', 'namespace', 'team-a', 'gatehouse=no');
    read = await eventually('team-a relabelled out', 10_000, () => {
      const r = p.provider.read();
      return names(r, 'HTTPRoute').length === 1 ? r : undefined;
    });
    assert.deepEqual(names(read, 'HTTPRoute'), ['team-b/web']);
    assert.deepEqual(names(read, 'Gateway'), []);
    assert.deepEqual(p.provider.extra('GatewayParameters'), []);
    // read() has the new state at once; onChange follows after the provider's fold of bursts.
    await eventually('onChange after the relabel', 2_000, () => p.changes() > changes);
  } finally {
    await p.close();
    await kubectl('label', '--overwrite', 'namespace', 'team-a', 'gatehouse=yes');
    await kubectl('label', 'namespace', 'team-b', 'gatehouse-');
  }
});

test('a CRD installed after start is picked up; a CRD deleted empties its kind', async () => {
  await kubectl('delete', 'crd', 'udproutes.gateway.networking.k8s.io', '--timeout=60s');
  const p = await startProvider({ timing: { missingKindRetryMs: 300 } });
  try {
    assert.ok(p.rec.has(/^UDPRoute \(gateway.networking.k8s.io\) is not served/));
    assert.deepEqual(names(p.provider.read(), 'UDPRoute'), []);

    await cluster.applyFiles([UDPROUTE_CRD]);
    await kubectl('wait', '--for=condition=Established', '--timeout=60s', 'crd/udproutes.gateway.networking.k8s.io');
    await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {name: dns, namespace: team-a}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 53}]}]
`);
    await eventually('UDPRoute read', 20_000, () => names(p.provider.read(), 'UDPRoute').includes('team-a/dns'));
    assert.ok(p.rec.has(/^UDPRoute is served now \(gateway.networking.k8s.io\/v1\): watching/), p.rec.lines.join(''));
    assert.deepEqual(p.provider.read().problems, []);

    const changes = p.changes();
    await kubectl('delete', 'crd', 'udproutes.gateway.networking.k8s.io', '--timeout=60s');
    await eventually('UDPRoute gone with its CRD', 20_000, () => names(p.provider.read(), 'UDPRoute').length === 0);
    await eventually('onChange after the CRD deletion', 2_000, () => p.changes() > changes);
    await eventually('CRD deletion noticed', 20_000, () => p.rec.has(/^UDPRoute is no longer served/));
  } finally {
    await p.close();
    await cluster.applyFiles([UDPROUTE_CRD]);
    await kubectl('wait', '--for=condition=Established', '--timeout=60s', 'crd/udproutes.gateway.networking.k8s.io');
  }
});

/** The CRD without its CEL rules, as an older bundle might have had it. */
function withoutCelRules(file: string): string {
  const doc = jsyaml.load(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  const strip = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(strip);
    else if (v && typeof v === 'object') {
      delete (v as Record<string, unknown>)['x-kubernetes-validations'];
      Object.values(v).forEach(strip);
    }
  };
  strip(doc);
  return jsyaml.dump(doc);
}

test('an object the API server stored but validation refuses is a problem; its last valid version stays', async () => {
  // Objects stored under a laxer CRD stay stored when the CRD tightens:
  // what the provider reads can break rules the API server enforces today.
  await cluster.applyYaml(withoutCelRules(HTTPROUTE_CRD));
  const p = await startProvider();
  try {
    await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flaky, namespace: team-a}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`);
    const valid = await eventually('valid HTTPRoute', 10_000, () => find(p.provider.read(), 'HTTPRoute', 'team-a', 'flaky'));
    const bothFilters = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: NAME, namespace: team-a}
spec:
  parentRefs: [{name: gw}]
  rules:
  - filters:
    - {type: RequestRedirect, requestRedirect: {hostname: a.example}}
    - {type: URLRewrite, urlRewrite: {hostname: b.example}}
`;
    await cluster.applyYaml(bothFilters.replace('NAME', 'flaky') + '---\n' + bothFilters.replace('NAME', 'broken'));
    const read = await eventually('problems reported', 10_000, () => {
      const r = p.provider.read();
      return r.problems.length >= 2 ? r : undefined;
    });
    const flaky = read.problems.find((x) => x.object === 'HTTPRoute team-a/flaky');
    const broken = read.problems.find((x) => x.object === 'HTTPRoute team-a/broken');
    assert.ok(flaky && broken, JSON.stringify(read.problems));
    assert.equal(flaky.field, 'spec.rules[0].filters');
    // The CRD's own rule and message (run through CEL), upstream's wording included.
    assert.match(flaky.reason, /May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both; keeping the previous valid version/);
    assert.equal(flaky.message, `HTTPRoute team-a/flaky: spec.rules[0].filters: ${flaky.reason}`);
    assert.doesNotMatch(broken.reason, /keeping/);
    // The last valid version of flaky, the very instance; nothing of broken.
    assert.equal(find(read, 'HTTPRoute', 'team-a', 'flaky'), valid);
    assert.equal(find(read, 'HTTPRoute', 'team-a', 'broken'), undefined);

    await kubectl('delete', 'httproute', '-n', 'team-a', 'flaky', 'broken');
    await eventually('problems gone with the objects', 10_000, () => p.provider.read().problems.length === 0);
    assert.equal(find(p.provider.read(), 'HTTPRoute', 'team-a', 'flaky'), undefined);
  } finally {
    await p.close();
    await cluster.applyFiles([HTTPROUTE_CRD]);
  }
});

test('a start that cannot list fails within the sync timeout, naming what and why', async () => {
  // A service account with no RBAC at all: discovery is allowed, lists are not.
  const token = await cluster.serviceAccountToken('team-a', 'nobody', 'https://kubernetes.default.svc.cluster.local');
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: cluster.server, caFile: cluster.caFile, skipTLSVerify: false }],
    users: [{ name: 'nobody', token }],
    contexts: [{ name: 'c', cluster: 'c', user: 'nobody' }],
    currentContext: 'c',
  });
  const rec = recordingLog();
  const t0 = Date.now();
  await assert.rejects(KubernetesProvider.start({ kubeConfig: kc, log: rec.log, timing: { syncTimeoutMs: 3_000, backoffBaseMs: 100, backoffMaxMs: 500 } }),
    (err: Error) => {
      assert.match(err.message, /did not list everything within 3 s/);
      assert.match(err.message, /Secret \(HTTP 403 Forbidden: secrets is forbidden: User "system:serviceaccount:team-a:nobody" cannot list/);
      assert.match(err.message, /HTTPRoute \(HTTP 403/);
      return true;
    });
  assert.ok(Date.now() - t0 < 10_000);
  // One warning per informer, however many retries the backoff made.
  const secretWarnings = rec.lines.filter((l) => /^Secret: list\/watch failed/.test(JSON.parse(l).msg)).length;
  assert.equal(secretWarnings, 1);
  assert.ok(!rec.lines.some((l) => l.includes(token)), 'the token is never logged');
});
