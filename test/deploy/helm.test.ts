// The Helm chart, rendered by the real helm (scripts/helm-binary.sh builds
// it): with the default values it yields exactly deploy/manifests (but the
// Namespace, which `helm install --create-namespace` makes, and Helm's own
// labels); other values change what they say and nothing else, and values
// that cannot work are refused at render time.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseControllerArgs, type ControllerCommand } from '../../src/cli/controller-args.ts';
import { CHART_DIR, ROOT, keyOf, loadManifests, only, parseObjects, type Obj } from './objects.ts';

/** Labels the chart adds that plain manifests do not carry. */
const HELM_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/instance', 'app.kubernetes.io/version'];
// helm template is quick (well under a second); a minute means something is wrong.
const HELM_TIMEOUT_MS = 60_000;
// A rendering of this chart is ~15 KB; anything near this bound is a runaway template.
const HELM_MAX_OUTPUT = 4 * 1024 * 1024;

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: HELM_TIMEOUT_MS, maxBuffer: HELM_MAX_OUTPUT, killSignal: 'SIGKILL', cwd: ROOT }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr: stderr + (err && code === -1 ? `\n${err.message}` : '') });
    });
  });
}

let helm: string | null = null;
let skip: string | false = false;

before(async () => {
  // Never builds here (minutes, cold): CI runs scripts/helm-binary.sh first.
  const r = await run('bash', [path.join(ROOT, 'scripts/helm-binary.sh'), '--if-built']);
  if (r.code === 0) helm = r.stdout.trim();
  else skip = r.stderr.trim() || 'helm is not built: run bash scripts/helm-binary.sh';
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-helm-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
let files = 0;

/** helm template with these values (JSON is YAML); the objects, or helm's complaint. */
async function render(values: unknown = {}, namespace = 'gatehouse-system'): Promise<Obj[] | string> {
  const file = path.join(tmp, `values-${files++}.yaml`);
  fs.writeFileSync(file, JSON.stringify(values));
  const r = await run(helm!, ['template', 'gatehouse', CHART_DIR, '--namespace', namespace, '--values', file]);
  if (r.code !== 0) return r.stderr;
  return parseObjects(r.stdout, 'helm template').map((l) => l.object);
}

async function rendered(values?: unknown, namespace?: string): Promise<Obj[]> {
  const out = await render(values, namespace);
  assert.ok(Array.isArray(out), `helm template failed: ${out}`);
  return out;
}

function withoutHelmLabels(o: Obj): Obj {
  const copy = structuredClone(o);
  const strip = (labels?: Record<string, string>) => { for (const k of HELM_LABELS) delete labels?.[k]; };
  strip(copy.metadata.labels);
  strip(copy.spec?.template?.metadata?.labels);
  return copy;
}

function controllerOf(objects: Obj[]): { cmd: ControllerCommand; container: Obj; deployment: Obj } {
  const deployment = only(objects, 'Deployment', 'gatehouse');
  const container = deployment.spec.template.spec.containers[0];
  const env = Object.fromEntries(container.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
  const cmd = parseControllerArgs(container.args.slice(1), { ...env, POD_NAME: 'gatehouse-x', POD_NAMESPACE: deployment.metadata.namespace });
  assert.equal(typeof cmd, 'object', `gatehouse controller refuses the args: ${cmd}`);
  return { cmd: cmd as ControllerCommand, container, deployment };
}

test('with the default values the chart renders deploy/manifests (but the Namespace), modulo Helm\'s labels', async (t) => {
  if (skip) return t.skip(skip);
  const chart = (await rendered()).map(withoutHelmLabels);
  const plain = loadManifests().map((l) => l.object).filter((o) => o.kind !== 'Namespace');
  const byKey = (objects: Obj[]) => new Map(objects.map((o) => [keyOf(o), o]));
  const c = byKey(chart);
  const p = byKey(plain);
  assert.deepEqual([...c.keys()].sort(), [...p.keys()].sort());
  for (const [key, o] of p) assert.deepEqual(c.get(key), o, key);
  // Helm's labels are there, and only as labels (the selectors stay what the manifests say).
  const deployment = only(await rendered(), 'Deployment');
  assert.equal(deployment.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm');
});

test('helm lint finds nothing', async (t) => {
  if (skip) return t.skip(skip);
  const r = await run(helm!, ['lint', '--strict', CHART_DIR, '--namespace', 'gatehouse-system']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /0 chart\(s\) failed/);
});

test('values change what they name: namespaces, log level, images, replicas, placement, GatewayClass, PDB', async (t) => {
  if (skip) return t.skip(skip);
  const objects = await rendered({
    image: { repository: 'registry.example.test/gatehouse', tag: '9.9.9', pullPolicy: 'Always' },
    proxy: { image: 'registry.example.test/gatehouse-proxy:1.0.0' },
    replicas: 3,
    watchNamespaces: ['team-a', 'team-b'],
    logLevel: 'debug',
    createGatewayClass: false,
    podDisruptionBudget: { enabled: false },
    nodeSelector: { 'node-role.example.test/edge': 'true' },
    tolerations: [{ key: 'edge', operator: 'Exists', effect: 'NoSchedule' }],
    topologySpreadConstraints: [],
    imagePullSecrets: [{ name: 'pull' }],
  });
  const { cmd, container, deployment } = controllerOf(objects);
  assert.deepEqual(cmd.namespaces, ['team-a', 'team-b']);
  assert.equal(cmd.logLevel, 'debug');
  assert.equal(cmd.proxyImage, 'registry.example.test/gatehouse-proxy:1.0.0');
  assert.equal(container.image, 'registry.example.test/gatehouse:9.9.9');
  assert.equal(container.imagePullPolicy, 'Always');
  assert.equal(deployment.spec.replicas, 3);
  const pod = deployment.spec.template.spec;
  assert.deepEqual(pod.nodeSelector, { 'node-role.example.test/edge': 'true' });
  assert.equal(pod.tolerations[0].key, 'edge');
  assert.equal(pod.topologySpreadConstraints, undefined);
  assert.deepEqual(pod.imagePullSecrets, [{ name: 'pull' }]);
  assert.equal(objects.filter((o) => o.kind === 'GatewayClass').length, 0);
  assert.equal(objects.filter((o) => o.kind === 'PodDisruptionBudget').length, 0);
});

test('a namespace selector and an image digest', async (t) => {
  if (skip) return t.skip(skip);
  const digest = `sha256:${'ab'.repeat(32)}`;
  const { cmd, container } = controllerOf(await rendered({ namespaceSelector: 'gatehouse.dev/watch=true', image: { repository: 'r.example.test/g', digest } }));
  assert.equal(cmd.namespaceSelector, 'gatehouse.dev/watch=true');
  assert.equal(cmd.namespaces, undefined);
  assert.equal(container.image, `r.example.test/g@${digest}`);
  assert.equal(cmd.proxyImage, container.image, 'the proxies follow the controller image');
});

test('another release namespace moves every namespaced object, binding and flag with it', async (t) => {
  if (skip) return t.skip(skip);
  const objects = await rendered({}, 'edge-system');
  for (const o of objects) {
    if (['ClusterRole', 'ClusterRoleBinding', 'GatewayClass'].includes(o.kind)) continue;
    assert.equal(o.metadata.namespace, 'edge-system', keyOf(o));
  }
  for (const kind of ['ClusterRoleBinding', 'RoleBinding']) assert.equal(only(objects, kind).subjects[0].namespace, 'edge-system');
  assert.equal(controllerOf(objects).cmd.controllerNamespace, 'edge-system');
});

test('values that cannot work are refused when rendering', async (t) => {
  if (skip) return t.skip(skip);
  const refused = async (values: unknown, why: RegExp) => {
    const out = await render(values);
    assert.equal(typeof out, 'string', `rendered although ${JSON.stringify(values)}`);
    assert.match(out as string, why);
  };
  await refused({ watchNamespaces: ['a'], namespaceSelector: 'x=y' }, /watchNamespaces or namespaceSelector, not both/);
  await refused({ replicas: 0 }, /replicas/);
  await refused({ logLevel: 'loud' }, /logLevel/);
  await refused({ watchNamespaces: ['Not A Namespace'] }, /watchNamespaces/);
  await refused({ image: { repository: 'r', digest: 'latest' } }, /digest/);
  await refused({ replica: 2 }, /replica/);
});
