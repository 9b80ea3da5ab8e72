// GatewayParameters: validation with field paths, the class/Gateway merge,
// the InvalidParameters messages of a parametersRef, and agreement with
// the CRD's schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import yaml from 'js-yaml';
import {
  classParameters, effectiveParameters, gatewayParameters, mergeParameters, validateParametersSpec,
} from '../../../src/providers/kubernetes/provision/parameters.ts';
import type { GatewayParametersSpec, ParametersLookup } from '../../../src/providers/kubernetes/provision/parameters.ts';
import type { Gateway, GatewayClass } from '../../../src/api/types.ts';

const CRD_PATH = new URL('../../../deploy/crds/gatehouse.dev_gatewayparameters.yaml', import.meta.url);

function errorsOf(spec: unknown): string[] {
  const r = validateParametersSpec(spec);
  return r.ok ? [] : r.errors.map((e) => `${e.field}: ${e.reason}`);
}

test('validate: a full, valid spec passes unchanged', () => {
  const spec = {
    replicas: 3,
    autoscaling: { minReplicas: 2, maxReplicas: 10, targetCPUUtilizationPercentage: 70, targetMemoryUtilizationPercentage: 80 },
    podDisruptionBudget: { minAvailable: '50%' },
    nodeSelector: { 'node-role.kubernetes.io/edge': '' },
    affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } },
    tolerations: [{ key: 'edge', operator: 'Exists', effect: 'NoSchedule' }],
    topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway' }],
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi' } },
    image: 'registry.example/gatehouse:0.1.0',
    imagePullPolicy: 'IfNotPresent',
    service: {
      type: 'LoadBalancer', externalTrafficPolicy: 'Local', loadBalancerSourceRanges: ['192.0.2.0/24', '2001:db8::/32'],
      annotations: { 'metallb.io/address-pool': 'public' }, loadBalancerClass: 'example.com/internal-vip',
    },
    workers: 2,
  };
  const r = validateParametersSpec(spec);
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.spec, spec);
  assert.deepEqual(validateParametersSpec(undefined), { ok: true, spec: {} });
});

test('validate: each bad value is named by its field path and why', () => {
  const cases: [unknown, string[]][] = [
    [{ replicas: -1 }, ['spec.replicas: must be at least 0, not -1']],
    [{ replicas: 1.5 }, ['spec.replicas: must be an integer, not number 1.5']],
    [{ replicas: '3' }, ['spec.replicas: must be an integer, not string "3"']],
    [{ workers: 2000 }, ['spec.workers: must be at most 1024, not 2000']],
    [{ autoscaling: { minReplicas: 0, maxReplicas: 3 } }, ['spec.autoscaling.minReplicas: must be at least 1, not 0']],
    [{ autoscaling: { minReplicas: 5, maxReplicas: 3 } }, ['spec.autoscaling: minReplicas (5) must not be more than maxReplicas (3)']],
    [{ autoscaling: { maxReplicas: 3, targetCPUUtilizationPercentage: 0 } }, ['spec.autoscaling.targetCPUUtilizationPercentage: must be at least 1, not 0']],
    [{ podDisruptionBudget: { minAvailable: 1, maxUnavailable: 1 } }, ['spec.podDisruptionBudget: must set exactly one of minAvailable and maxUnavailable']],
    [{ podDisruptionBudget: {} }, ['spec.podDisruptionBudget: must set exactly one of minAvailable and maxUnavailable']],
    [{ podDisruptionBudget: { maxUnavailable: '150%' } }, ['spec.podDisruptionBudget.maxUnavailable: must be an integer or a percentage such as "50%", not "150%"']],
    [{ imagePullPolicy: 'Sometimes' }, ['spec.imagePullPolicy: must be one of Always, IfNotPresent, Never, not "Sometimes"']],
    [{ image: 'has space' }, ['spec.image: must be an image reference without spaces, not "has space"']],
    [{ nodeSelector: { zone: 1 } }, ['spec.nodeSelector[zone]: must be a string, not integer']],
    [{ tolerations: [{}, 'x'] }, ['spec.tolerations[1]: must be an object, not string']],
    [{ resources: { requests: { cpu: 'lots' } } }, ['spec.resources.requests[cpu]: must be a quantity such as 100m or 128Mi, not "lots"']],
    [{ service: { type: 'ExternalName' } }, ['spec.service.type: must be one of LoadBalancer, NodePort, ClusterIP, not "ExternalName"']],
    [{ service: { externalTrafficPolicy: 'Nearest' } }, ['spec.service.externalTrafficPolicy: must be one of Cluster, Local, not "Nearest"']],
    [{ service: { loadBalancerSourceRanges: ['10.0.0.0/33', '10.1.0.0/16', 'any'] } }, [
      'spec.service.loadBalancerSourceRanges[0]: must be a CIDR such as 192.0.2.0/24 or 2001:db8::/32, not "10.0.0.0/33"',
      'spec.service.loadBalancerSourceRanges[2]: must be a CIDR such as 192.0.2.0/24 or 2001:db8::/32, not "any"',
    ]],
    [{ service: { loadBalancerClass: 'internal' } }, ['spec.service.loadBalancerClass: must be a prefixed name such as example.com/internal-vip, not "internal"']],
    [{ service: { type: 'ClusterIP', externalTrafficPolicy: 'Local' } }, ['spec.service.externalTrafficPolicy: applies only to types LoadBalancer and NodePort']],
    [{ service: { type: 'NodePort', loadBalancerClass: 'example.com/x' } }, ['spec.service.loadBalancerClass: applies only to type LoadBalancer, not NodePort']],
    [{ replica: 3 }, ['spec.replica: unknown field']],
    [{ service: { ports: [] } }, ['spec.service.ports: unknown field']],
    ['three', ['spec: must be an object, not string']],
  ];
  for (const [spec, want] of cases) assert.deepEqual(errorsOf(spec), want, JSON.stringify(spec));
});

test('merge: the Gateway wins field by field; objects merge by key; lists replace', () => {
  const cls: GatewayParametersSpec = {
    replicas: 2,
    image: 'class/image:1',
    nodeSelector: { pool: 'edge', zone: 'a' },
    tolerations: [{ key: 'edge', operator: 'Exists' }],
    resources: { requests: { cpu: '100m', memory: '128Mi' } },
    service: { type: 'LoadBalancer', externalTrafficPolicy: 'Cluster', annotations: { a: 'class', b: 'class' }, loadBalancerSourceRanges: ['10.0.0.0/8'] },
    workers: 4,
  };
  const gw: GatewayParametersSpec = {
    image: 'gw/image:2',
    nodeSelector: { zone: 'b' },
    tolerations: [{ key: 'gpu', operator: 'Exists' }],
    resources: { requests: { cpu: '500m' } },
    service: { externalTrafficPolicy: 'Local', annotations: { b: 'gateway' }, loadBalancerSourceRanges: ['192.0.2.0/24'] },
  };
  const r = mergeParameters(cls, gw);
  assert.ok(r.ok);
  assert.deepEqual(r.spec, {
    replicas: 2,
    image: 'gw/image:2',
    nodeSelector: { pool: 'edge', zone: 'b' },
    tolerations: [{ key: 'gpu', operator: 'Exists' }],
    resources: { requests: { cpu: '500m', memory: '128Mi' } },
    service: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', annotations: { a: 'class', b: 'gateway' }, loadBalancerSourceRanges: ['192.0.2.0/24'] },
    workers: 4,
  });
  assert.deepEqual(cls.service?.annotations, { a: 'class', b: 'class' }, 'the inputs are not changed');
  assert.deepEqual(mergeParameters(undefined, undefined), { ok: true, spec: {} });
  assert.deepEqual(mergeParameters(cls, undefined), { ok: true, spec: cls });
});

test('merge: replicas and autoscaling are one choice, and the Gateway makes it when it sets either', () => {
  const autoscaled: GatewayParametersSpec = { autoscaling: { minReplicas: 2, maxReplicas: 6 } };
  assert.deepEqual(mergeParameters(autoscaled, { replicas: 3 }), { ok: true, spec: { replicas: 3 } });
  assert.deepEqual(mergeParameters({ replicas: 3 }, { autoscaling: { maxReplicas: 9 } }), { ok: true, spec: { autoscaling: { maxReplicas: 9 } } });
  // Both autoscale: merged by field.
  assert.deepEqual(mergeParameters(autoscaled, { autoscaling: { maxReplicas: 12 } }), { ok: true, spec: { autoscaling: { minReplicas: 2, maxReplicas: 12 } } });
  // A Gateway that sets neither keeps its class's choice.
  assert.deepEqual(mergeParameters(autoscaled, { workers: 1 }), { ok: true, spec: { ...autoscaled, workers: 1 } });
});

test('merge: a podDisruptionBudget replaces the class\'s whole', () => {
  const r = mergeParameters({ podDisruptionBudget: { minAvailable: 1 } }, { podDisruptionBudget: { maxUnavailable: '25%' } });
  assert.deepEqual(r, { ok: true, spec: { podDisruptionBudget: { maxUnavailable: '25%' } } });
});

test('merge: two valid halves that make an invalid whole are refused', () => {
  const r = mergeParameters({ autoscaling: { minReplicas: 5, maxReplicas: 10 } }, { autoscaling: { maxReplicas: 3 } });
  assert.deepEqual(r, { ok: false, errors: [{ field: 'spec.autoscaling', reason: 'minReplicas (5) must not be more than maxReplicas (3)' }] });
  // A Gateway may set only minReplicas when its class sets maxReplicas; without either, maxReplicas is missing.
  assert.ok(validateParametersSpec({ autoscaling: { minReplicas: 2 } }).ok);
  const none = mergeParameters(undefined, { autoscaling: { minReplicas: 2 } });
  assert.equal(none.ok, false);
  assert.match(JSON.stringify(none), /spec.autoscaling.maxReplicas.*is required when autoscaling is set/);
  // A Gateway's ClusterIP over a class's load-balancer-only fields is fine merged (render leaves them out).
  assert.ok(mergeParameters({ service: { loadBalancerSourceRanges: ['10.0.0.0/8'], loadBalancerClass: 'example.com/x' } }, { service: { type: 'ClusterIP' } }).ok);
});

// ---------------------------------------------------------------- parametersRef resolution

const params = (ns: string, name: string, spec: unknown) => ({ apiVersion: 'gatehouse.dev/v1alpha1', kind: 'GatewayParameters', metadata: { name, namespace: ns }, spec });
const store = new Map<string, unknown>([
  ['gatehouse-system/default', params('gatehouse-system', 'default', { replicas: 2, service: { type: 'LoadBalancer' } })],
  ['infra/big', params('infra', 'big', { replicas: 5 })],
  ['infra/broken', params('infra', 'broken', { replicas: -2, service: { type: 'Magic' } })],
  ['team/other', params('team', 'other', { replicas: 7 })],
]);
const lookup: ParametersLookup = (ns, name) => store.get(`${ns}/${name}`);

function gatewayClass(ref?: GatewayClass['spec']['parametersRef']): GatewayClass {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse' }, spec: { controllerName: 'gatehouse.dev/gateway-controller', ...(ref ? { parametersRef: ref } : {}) } };
}
function gateway(ref?: { group: string; kind: string; name: string }): Gateway {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'cloud', namespace: 'infra' },
    spec: { gatewayClassName: 'gatehouse', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }], ...(ref ? { infrastructure: { parametersRef: ref } } : {}) },
  };
}

test('parametersRef of a GatewayClass: found, or InvalidParameters with a message that says what to fix', () => {
  assert.deepEqual(classParameters(gatewayClass(), lookup), { ok: true, spec: undefined });
  assert.deepEqual(
    classParameters(gatewayClass({ group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'default', namespace: 'gatehouse-system' }), lookup),
    { ok: true, spec: { replicas: 2, service: { type: 'LoadBalancer' } } },
  );
  const cases: [GatewayClass['spec']['parametersRef'], string][] = [
    [{ group: '', kind: 'ConfigMap', name: 'x', namespace: 'gatehouse-system' }, 'GatewayClass gatehouse spec.parametersRef names core/ConfigMap x; Gatehouse takes only gatehouse.dev/GatewayParameters'],
    [{ group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'default' }, 'GatewayClass gatehouse spec.parametersRef: GatewayParameters is namespaced; set spec.parametersRef.namespace'],
    [{ group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'nope', namespace: 'gatehouse-system' }, 'GatewayClass gatehouse spec.parametersRef: GatewayParameters gatehouse-system/nope not found'],
    [{ group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'broken', namespace: 'infra' }, 'GatewayParameters infra/broken: spec.replicas: must be at least 0, not -2; spec.service.type: must be one of LoadBalancer, NodePort, ClusterIP, not "Magic"'],
  ];
  for (const [ref, message] of cases) {
    assert.deepEqual(classParameters(gatewayClass(ref), lookup), { ok: false, reason: 'InvalidParameters', message });
  }
});

test('parametersRef of a Gateway: its own namespace only; merged over the class\'s', () => {
  assert.deepEqual(gatewayParameters(gateway(), lookup), { ok: true, spec: undefined });
  assert.deepEqual(gatewayParameters(gateway({ group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'big' }), lookup), { ok: true, spec: { replicas: 5 } });
  // team/other exists, but a Gateway in infra cannot reach it: a local reference.
  assert.deepEqual(gatewayParameters(gateway({ group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'other' }), lookup), {
    ok: false, reason: 'InvalidParameters', message: 'Gateway infra/cloud spec.infrastructure.parametersRef: GatewayParameters infra/other not found',
  });
  assert.deepEqual(gatewayParameters(gateway({ group: 'gatehouse.dev', kind: 'Parameters', name: 'big' }), lookup), {
    ok: false, reason: 'InvalidParameters', message: 'Gateway infra/cloud spec.infrastructure.parametersRef names gatehouse.dev/Parameters big; Gatehouse takes only gatehouse.dev/GatewayParameters',
  });
  const cls = { replicas: 2, workers: 2 };
  assert.deepEqual(effectiveParameters(cls, gateway({ group: 'gatehouse.dev', kind: 'GatewayParameters', name: 'big' }), lookup), { ok: true, spec: { replicas: 5, workers: 2 } });
  assert.deepEqual(effectiveParameters(cls, gateway(), lookup), { ok: true, spec: cls });
  assert.deepEqual(effectiveParameters({ autoscaling: { minReplicas: 4 } }, gateway(), lookup), {
    ok: false, reason: 'InvalidParameters',
    message: 'Gateway infra/cloud: its parameters merged over its class\'s are invalid: spec.autoscaling.maxReplicas: is required when autoscaling is set (in the class\'s parameters or the Gateway\'s)',
  });
});

// ---------------------------------------------------------------- the CRD

interface Schema { properties?: Record<string, Schema>; [k: string]: unknown }

test('CRD: namespaced gatehouse.dev/v1alpha1 GatewayParameters whose spec fields are the ones validated here', () => {
  const crd = yaml.load(fs.readFileSync(CRD_PATH, 'utf8')) as {
    metadata: { name: string };
    spec: { group: string; scope: string; names: { kind: string; plural: string }; versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: Schema }; additionalPrinterColumns: { name: string; jsonPath: string }[] }[] };
  };
  assert.equal(crd.metadata.name, 'gatewayparameters.gatehouse.dev');
  assert.equal(crd.spec.group, 'gatehouse.dev');
  assert.equal(crd.spec.scope, 'Namespaced');
  assert.equal(crd.spec.names.kind, 'GatewayParameters');
  const [v] = crd.spec.versions;
  assert.equal(v.name, 'v1alpha1');
  assert.ok(v.served && v.storage);
  const columns = v.additionalPrinterColumns.map((c) => c.name);
  for (const c of ['Replicas', 'Service Type', 'Age']) assert.ok(columns.includes(c), `printer column ${c}`);
  const spec = v.schema.openAPIV3Schema.properties!.spec;
  const specFields = Object.keys(spec.properties!).sort();
  // Every field of the schema is one the validator takes (no "unknown field"), and no other.
  const probe: Record<string, unknown> = {};
  for (const f of specFields) probe[f] = null;
  const unknown = (validateParametersSpec({ ...probe, notAField: 1 }) as { errors: { field: string; reason: string }[] }).errors
    .filter((e) => e.reason === 'unknown field').map((e) => e.field);
  assert.deepEqual(unknown, ['spec.notAField'], 'the schema and the validator know the same spec fields');
  assert.deepEqual(Object.keys(spec.properties!.service.properties!).sort(), ['annotations', 'externalTrafficPolicy', 'loadBalancerClass', 'loadBalancerSourceRanges', 'type']);
  assert.deepEqual(Object.keys(spec.properties!.autoscaling.properties!).sort(), ['maxReplicas', 'minReplicas', 'targetCPUUtilizationPercentage', 'targetMemoryUtilizationPercentage']);
  // No schema defaults: a defaulted field would override the class's value in every Gateway's parameters.
  assert.doesNotMatch(JSON.stringify(spec), /"default"/);
  // Only the core sub-objects keep unknown fields.
  const preserved: string[] = [];
  const walk = (s: Schema, at: string) => {
    if (s['x-kubernetes-preserve-unknown-fields']) preserved.push(at);
    for (const [k, sub] of Object.entries(s.properties ?? {})) walk(sub, `${at}.${k}`);
    if (s.items) walk(s.items as Schema, `${at}[]`);
  };
  walk(spec, 'spec');
  assert.deepEqual(preserved.sort(), ['spec.affinity', 'spec.resources', 'spec.tolerations[]', 'spec.topologySpreadConstraints[]']);
});
