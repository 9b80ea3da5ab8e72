// The status writer against a real kube-apiserver (experimental Gateway
// API CRDs): objects are read from the API server, validated and
// translated as the controller does, and the statuses translate makes are
// published; what the API server then holds is checked.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import type { KubeObject } from '../../src/api/types.ts';
import { validateObject } from '../../src/api/validate.ts';
import { StatusWriter } from '../../src/providers/kubernetes/status-writer.ts';
import { statusKey, translate } from '../../src/translate/index.ts';
import { startCluster, type Cluster } from './harness/cluster.ts';

const OURS = 'gatehouse.dev/gateway-controller';
const THEIRS = 'example.net/other-controller';
const GROUP = 'gateway.networking.k8s.io';
const PLURALS: Record<string, string> = { GatewayClass: 'gatewayclasses', Gateway: 'gateways', HTTPRoute: 'httproutes' };

let cluster: Cluster;
let api: k8s.CustomObjectsApi;
const quiet = pino({ level: 'silent' });

before(async () => {
  cluster = await startCluster({ crds: 'experimental', gatehouseCrds: false });
  api = cluster.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
  await cluster.applyYaml(`
apiVersion: v1
kind: Namespace
metadata: { name: infra }
---
apiVersion: v1
kind: Namespace
metadata: { name: apps }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: gatehouse }
spec: { controllerName: ${OURS} }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: other }
spec: { controllerName: ${THEIRS} }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatehouse
  listeners:
  - { name: http, port: 80, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: other-gw, namespace: infra }
spec:
  gatewayClassName: other
  listeners:
  - { name: http, port: 80, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: apps }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
  hostnames: [web.example.com]
`);
});

after(async () => {
  await cluster?.stop();
});

/** Every Gateway API object of the kinds these tests use, as the API server holds them (status included). */
async function readRaw(): Promise<KubeObject[]> {
  const out: KubeObject[] = [];
  for (const [kind, plural] of Object.entries(PLURALS)) {
    const list = await api.listClusterCustomObject({ group: GROUP, version: 'v1', plural });
    for (const item of (list as { items: KubeObject[] }).items) out.push({ ...item, apiVersion: `${GROUP}/v1`, kind });
  }
  return out;
}

/** What the controller's provider hands on: validated copies, without status. */
function validated(raw: KubeObject[]): KubeObject[] {
  return raw.map((o) => {
    const v = validateObject(o);
    assert.ok(v.object, `${o.kind} ${o.metadata.name}: ${JSON.stringify(v.errors)}`);
    return v.object;
  });
}

function translateAll(objects: KubeObject[]): Map<string, unknown> {
  return translate(buildSnapshot(objects), {
    controllerName: OURS,
    addressing: { pool: null, hostAddress: '', previous: {}, provisioned: {} },
  }).statuses;
}

/** One controller cycle: read, validate, translate, publish. */
async function cycle(writer: StatusWriter): Promise<{ written: number; failed: number; objects: KubeObject[]; statuses: Map<string, unknown> }> {
  const objects = validated(await readRaw());
  const statuses = translateAll(objects);
  return { ...await writer.publish(statuses, objects), objects, statuses };
}

async function get(kind: string, namespace: string | undefined, name: string): Promise<KubeObject> {
  const plural = PLURALS[kind]!;
  const o = namespace === undefined
    ? await api.getClusterCustomObject({ group: GROUP, version: 'v1', plural, name })
    : await api.getNamespacedCustomObject({ group: GROUP, version: 'v1', namespace, plural, name });
  return o as KubeObject;
}

function rv(o: KubeObject): string {
  return (o.metadata as { resourceVersion?: string }).resourceVersion!;
}

interface Parent { parentRef: { name: string; namespace?: string; sectionName?: string }; controllerName: string; conditions: { type: string; status: string; lastTransitionTime: string }[] }
interface Cond { type: string; status: string; lastTransitionTime: string }

function parentsOf(o: KubeObject): Parent[] {
  return ((o.status ?? {}) as { parents?: Parent[] }).parents ?? [];
}

/** Writes an entry of another controller into a route's status, as that controller would. */
async function writeTheirEntry(namespace: string, name: string, gateway: string, reason: string, alone = false): Promise<KubeObject> {
  const route = await get('HTTPRoute', namespace, name);
  const entry: Parent = {
    parentRef: { name: gateway, namespace: 'infra' },
    controllerName: THEIRS,
    conditions: [{ type: 'Accepted', status: 'True', lastTransitionTime: '2024-01-01T00:00:00Z', reason, message: 'theirs', observedGeneration: 1 } as Cond],
  };
  const parents = alone ? [entry] : [...parentsOf(route).filter((p) => !(p.controllerName === THEIRS && p.parentRef.name === gateway)), entry];
  return await api.replaceNamespacedCustomObjectStatus({
    group: GROUP, version: 'v1', namespace, plural: 'httproutes', name,
    body: { apiVersion: `${GROUP}/v1`, kind: 'HTTPRoute', metadata: { name, namespace, resourceVersion: rv(route) }, status: { ...(route.status as object ?? {}), parents } },
  }) as KubeObject;
}

function writer(extra: Partial<ConstructorParameters<typeof StatusWriter>[0]> = {}): StatusWriter {
  return new StatusWriter({ kubeConfig: cluster.kubeConfig(), controllerName: OURS, log: quiet, ...extra });
}

test('writes the status of our GatewayClass, Gateway and HTTPRoute, and of nothing of another controller', async () => {
  const otherClassBefore = rv(await get('GatewayClass', undefined, 'other'));
  const otherGatewayBefore = rv(await get('Gateway', 'infra', 'other-gw'));
  const w = writer();
  const first = await cycle(w);
  assert.equal(first.failed, 0);
  assert.ok(first.written >= 3, `written ${first.written}`);

  const gc = await get('GatewayClass', undefined, 'gatehouse');
  const gcAccepted = ((gc.status as { conditions: Cond[] }).conditions).find((c) => c.type === 'Accepted');
  assert.equal(gcAccepted?.status, 'True');
  const gw = await get('Gateway', 'infra', 'gw');
  const gws = gw.status as { conditions: Cond[]; listeners: { name: string; attachedRoutes: number }[] };
  assert.equal(gws.conditions.find((c) => c.type === 'Accepted')?.status, 'True');
  assert.deepEqual(gws.listeners.map((l) => [l.name, l.attachedRoutes]), [['http', 1]]);
  const route = await get('HTTPRoute', 'apps', 'web');
  const parents = parentsOf(route);
  assert.equal(parents.length, 1);
  assert.equal(parents[0].controllerName, OURS);
  assert.equal(parents[0].conditions.find((c) => c.type === 'Accepted')?.status, 'True');
  for (const c of parents[0].conditions) assert.match(c.lastTransitionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  assert.equal(rv(await get('GatewayClass', undefined, 'other')), otherClassBefore, 'another controller\'s class untouched');
  assert.equal(rv(await get('Gateway', 'infra', 'other-gw')), otherGatewayBefore, 'another controller\'s Gateway untouched');
});

test('publishing the same statuses again writes nothing, from fresh objects and from stale ones', async () => {
  const w = writer();
  const stale = validated(await readRaw());
  await cycle(w);
  const before = new Map((await readRaw()).map((o) => [statusKey(o), rv(o)]));

  const again = await cycle(w);
  assert.deepEqual({ written: again.written, failed: again.failed }, { written: 0, failed: 0 });
  // Objects older than the last write (an informer that has not caught up) are read afresh, not written over.
  const fromStale = await w.publish(translateAll(stale), stale);
  assert.deepEqual(fromStale, { written: 0, failed: 0 });
  // A writer that knows nothing yet (a new leader) compares with the server too.
  const fresh = await cycle(writer());
  assert.deepEqual({ written: fresh.written, failed: fresh.failed }, { written: 0, failed: 0 });

  const afterwards = new Map((await readRaw()).map((o) => [statusKey(o), rv(o)]));
  assert.deepEqual(afterwards, before, 'no resourceVersion moved');
});

test('another controller\'s entry in a route is kept; ours goes when its parentRef does', async () => {
  await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shared, namespace: apps }
spec:
  parentRefs: [{ name: gw, namespace: infra }, { name: other-gw, namespace: infra }]
  hostnames: [shared.example.com]
`);
  const theirs = parentsOf(await writeTheirEntry('apps', 'shared', 'other-gw', 'TheirReason')).find((p) => p.controllerName === THEIRS);
  const w = writer();
  const r1 = await cycle(w);
  assert.equal(r1.failed, 0);
  let parents = parentsOf(await get('HTTPRoute', 'apps', 'shared'));
  assert.deepEqual(parents.map((p) => [p.controllerName, p.parentRef.name]), [[THEIRS, 'other-gw'], [OURS, 'gw']]);
  assert.deepEqual(parents[0], theirs, 'their entry exactly as they wrote it');

  // The route leaves our Gateway: our entry goes, theirs stays.
  await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shared, namespace: apps }
spec:
  parentRefs: [{ name: other-gw, namespace: infra }]
  hostnames: [shared.example.com]
`);
  const r2 = await cycle(w);
  assert.equal(r2.failed, 0);
  parents = parentsOf(await get('HTTPRoute', 'apps', 'shared'));
  assert.deepEqual(parents, [theirs]);
  const gw = await get('Gateway', 'infra', 'gw');
  assert.deepEqual((gw.status as { listeners: { attachedRoutes: number }[] }).listeners.map((l) => l.attachedRoutes), [1], 'the Gateway counts the route no more');
});

test('a condition keeps its lastTransitionTime while its status holds; a changed one gets a new time', async () => {
  const w = writer();
  await cycle(w);
  const before = await get('Gateway', 'infra', 'gw');
  const acceptedBefore = (before.status as { conditions: Cond[] }).conditions.find((c) => c.type === 'Accepted')!;
  // Times have a resolution of one second: let one pass so that a new stamp would show.
  await new Promise((r) => setTimeout(r, 1100));
  // A listener added by JSON patch, as in the issue: the Gateway's status changes, Accepted does not.
  const patched = await cluster.kubectl('patch', 'gateway', 'gw', '-n', 'infra', '--type=json',
    '-p', '[{"op":"add","path":"/spec/listeners/-","value":{"name":"extra","port":8080,"protocol":"HTTP"}}]');
  assert.equal(patched.code, 0, patched.stderr);
  const r = await cycle(w);
  assert.equal(r.failed, 0);
  const afterwards = await get('Gateway', 'infra', 'gw');
  assert.notEqual(rv(afterwards), rv(before));
  const st = afterwards.status as { conditions: Cond[]; listeners: { name: string; conditions: Cond[] }[] };
  const accepted = st.conditions.find((c) => c.type === 'Accepted')!;
  assert.equal(accepted.status, acceptedBefore.status);
  assert.equal(accepted.lastTransitionTime, acceptedBefore.lastTransitionTime, 'Accepted did not change: its time neither');
  const extra = st.listeners.find((l) => l.name === 'extra');
  assert.ok(extra, 'the new listener is reported');
  assert.ok(extra.conditions.every((c) => c.lastTransitionTime > acceptedBefore.lastTransitionTime), 'a new condition is stamped now');
  const httpBefore = (before.status as { listeners: { name: string; conditions: Cond[] }[] }).listeners.find((l) => l.name === 'http')!;
  const httpAfter = st.listeners.find((l) => l.name === 'http')!;
  for (const c of httpAfter.conditions) {
    const was = httpBefore.conditions.find((b) => b.type === c.type && b.status === c.status);
    if (was) assert.equal(c.lastTransitionTime, was.lastTransitionTime, `listener http ${c.type}`);
  }
});

test('a write that meets a conflict reads the object again and merges with what it holds now', async () => {
  await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: racy, namespace: apps }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
  hostnames: [racy.example.com]
`);
  // Everything else settled first: the one write left to make is the route's.
  await cycle(writer());
  // The route as the writer gets it: with a status at this resourceVersion,
  // theirs alone (as if we had never written ours).
  await writeTheirEntry('apps', 'racy', 'other-gw', 'First', true);
  const raw = await readRaw();
  const stale = raw.find((o) => o.kind === 'HTTPRoute' && o.metadata.name === 'racy')!;
  assert.ok(stale.status, 'held with its status');
  const statuses = translateAll(validated(raw));

  // Meanwhile the route changes twice: its spec, and the other controller's status entry.
  const labelled = await cluster.kubectl('label', 'httproute', 'racy', '-n', 'apps', 'changed=yes');
  assert.equal(labelled.code, 0, labelled.stderr);
  await writeTheirEntry('apps', 'racy', 'other-gw', 'Second');

  const objects = raw.map((o) => (o === stale ? stale : validateObject(o).object!));
  const result = await writer().publish(statuses, objects);
  assert.deepEqual(result, { written: 1, failed: 0 }, 'the route written once, after the conflict, and nothing else');
  const parents = parentsOf(await get('HTTPRoute', 'apps', 'racy'));
  assert.deepEqual(parents.map((p) => [p.controllerName, (p.conditions[0] as Cond & { reason: string }).reason]),
    [[THEIRS, 'Second'], [OURS, 'Accepted']], 'their newest entry kept, ours added');
});

test('an object deleted before its write is no failure', async () => {
  await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: doomed, namespace: apps }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: doomed-too, namespace: apps }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
`);
  await writeTheirEntry('apps', 'doomed-too', 'other-gw', 'Held');
  const raw = await readRaw();
  const statuses = translateAll(validated(raw));
  // One is handed on without status (read first, 404 there), one with (written at once, 404 there).
  const objects = raw.map((o) => (o.metadata.name === 'doomed-too' ? o : validateObject(o).object!));
  for (const name of ['doomed', 'doomed-too']) {
    const deleted = await cluster.kubectl('delete', 'httproute', name, '-n', 'apps', '--wait=true');
    assert.equal(deleted.code, 0, deleted.stderr);
  }
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(s); } });
  const result = await writer({ log }).publish(statuses, objects);
  assert.equal(result.failed, 0);
  assert.deepEqual(lines, [], 'nothing to complain about');
});

test('a write the API server refuses is logged once, with the object and the reason, and counted', async () => {
  const objects = validated(await readRaw());
  const statuses = translateAll(objects);
  const gwKey = 'Gateway|infra|gw';
  const good = statuses.get(gwKey) as { conditions: { status: string }[] };
  // A condition status the CRD refuses (True, False or Unknown only).
  statuses.set(gwKey, { ...good, conditions: good.conditions.map((c, i) => (i === 0 ? { ...c, status: 'Perhaps' } : c)) });
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(s); } });
  const before = rv(await get('Gateway', 'infra', 'gw'));
  const result = await writer({ log }).publish(statuses, objects);
  assert.deepEqual(result, { written: 0, failed: 1 });
  assert.equal(lines.length, 1, lines.join(''));
  const line = JSON.parse(lines[0]);
  assert.equal(line.msg, 'status write failed');
  assert.deepEqual([line.kind, line.namespace, line.name, line.attempts], ['Gateway', 'infra', 'gw', 1], '422 is not tried again');
  assert.match(line.reason, /^HTTP 422 Invalid/);
  assert.doesNotMatch(lines[0], /"listeners"|"parents"/, 'no object contents');
  assert.equal(rv(await get('Gateway', 'infra', 'gw')), before);
});

test('nothing is written while mayWrite says no, and never for a class of another controller', async () => {
  await cluster.applyYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: later, namespace: apps }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
`);
  const objects = validated(await readRaw());
  const statuses = translateAll(objects);
  // A status for the other controller's class and Gateway, as a buggy translate might give: not ours to write.
  statuses.set('GatewayClass||other', statuses.get('GatewayClass||gatehouse'));
  statuses.set('Gateway|infra|other-gw', statuses.get('Gateway|infra|gw'));
  const before = new Map((await readRaw()).map((o) => [statusKey(o), rv(o)]));
  let allowed = false;
  const w = writer({ mayWrite: () => allowed });
  assert.deepEqual(await w.publish(statuses, objects), { written: 0, failed: 0 });
  assert.deepEqual(new Map((await readRaw()).map((o) => [statusKey(o), rv(o)])), before);
  allowed = true;
  const r = await w.publish(statuses, objects);
  assert.equal(r.failed, 0);
  assert.ok(r.written >= 1, 'the new route, and the Gateway counting it');
  const afterwards = new Map((await readRaw()).map((o) => [statusKey(o), rv(o)]));
  assert.equal(afterwards.get('GatewayClass||other'), before.get('GatewayClass||other'));
  assert.equal(afterwards.get('Gateway|infra|other-gw'), before.get('Gateway|infra|other-gw'));
  assert.equal(parentsOf(await get('HTTPRoute', 'apps', 'later'))[0]?.controllerName, OURS);
});
