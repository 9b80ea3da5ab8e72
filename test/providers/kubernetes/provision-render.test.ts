// renderInfrastructure: the objects provisioned for a Gateway, table by
// table: names, labels and annotations (present, and gone when removed),
// owner references, addresses, ports (UDP too), autoscaling, PDB, and the
// proxy's pod as `gatehouse proxy` expects it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderInfrastructure, proxyControllerAddress, TERMINATION_GRACE_SECONDS } from '../../../src/providers/kubernetes/provision/render.ts';
import type { Infrastructure, InfrastructureInput, ProvisionedObject } from '../../../src/providers/kubernetes/provision/render.ts';
import type { GatewayParametersSpec } from '../../../src/providers/kubernetes/provision/parameters.ts';
import type { Gateway } from '../../../src/api/types.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function gateway(spec: Partial<Gateway['spec']> = {}, name = 'cloud'): Gateway {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name, namespace: 'infra', uid: '0b5ad1c6-0000-4000-8000-000000000001', generation: 1 },
    spec: {
      gatewayClassName: 'gatehouse',
      listeners: [
        { name: 'http', port: 80, protocol: 'HTTP' },
        { name: 'https', port: 443, protocol: 'HTTPS', hostname: '*.cloud.example.test' },
      ],
      ...spec,
    },
  };
}

function render(gw: Gateway, parameters: GatewayParametersSpec = {}, extra: Partial<InfrastructureInput> = {}): Infrastructure {
  return renderInfrastructure({
    gateway: gw, className: 'gatehouse', parameters,
    controllerAddress: 'gatehouse-config:18000', controllerNamespace: 'gatehouse-system',
    caBundle: CA, defaultImage: 'ghcr.io/example/gatehouse:0.1.0', ...extra,
  });
}

function get(infra: Infrastructure, kind: string): Obj {
  const o = infra.objects.find((x) => x.kind === kind);
  assert.ok(o, `no ${kind} in ${infra.objects.map((x) => x.kind).join(', ')}`);
  return o as Obj;
}
const kinds = (infra: Infrastructure) => infra.objects.map((o) => o.kind);
const podSpec = (infra: Infrastructure) => get(infra, 'Deployment').spec.template.spec;
const proxy = (infra: Infrastructure) => podSpec(infra).containers[0];

test('a plain Gateway: ServiceAccount, ConfigMap, Service, Deployment named <gateway>-<class>, owned by the Gateway', () => {
  const infra = render(gateway());
  assert.equal(infra.name, 'cloud-gatehouse');
  assert.deepEqual(kinds(infra), ['ServiceAccount', 'ConfigMap', 'Service', 'Deployment']);
  for (const o of infra.objects) {
    assert.equal(o.metadata.name, 'cloud-gatehouse');
    assert.equal(o.metadata.namespace, 'infra');
    assert.deepEqual(o.metadata.ownerReferences, [{
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'cloud', uid: '0b5ad1c6-0000-4000-8000-000000000001',
      controller: true, blockOwnerDeletion: true,
    }]);
    assert.equal(o.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'cloud');
    assert.equal(o.metadata.labels['gateway.networking.k8s.io/gateway-class-name'], 'gatehouse');
    assert.equal(o.metadata.labels['app.kubernetes.io/managed-by'], 'gatehouse');
    assert.equal(o.metadata.annotations, undefined, 'no annotations field when there are none');
  }
  assert.deepEqual(get(infra, 'ConfigMap').data, { 'ca.crt': CA });
  assert.equal(get(infra, 'ServiceAccount').automountServiceAccountToken, false);
  assert.deepEqual(infra.addressProblems, []);
  assert.deepEqual(infra.listenerProblems, []);
  assert.equal(infra.autoscaling, false);
});

test('the Service: type LoadBalancer by default, a port per distinct (port, protocol), selecting the proxies', () => {
  const gw = gateway({
    listeners: [
      { name: 'https', port: 443, protocol: 'HTTPS' },
      { name: 'http', port: 80, protocol: 'HTTP' },
      { name: 'http-other', port: 80, protocol: 'HTTP', hostname: 'other.example.test' },
      { name: 'dns-tcp', port: 53, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
      { name: 'tls', port: 8443, protocol: 'TLS' },
      { name: 'weird', port: 9999, protocol: 'example.com/SCTP' },
    ],
  });
  const infra = render(gw);
  const svc = get(infra, 'Service');
  assert.equal(svc.spec.type, 'LoadBalancer');
  assert.deepEqual(svc.spec.ports, [
    { name: 'tcp-53', port: 53, targetPort: 53, protocol: 'TCP' },
    { name: 'udp-53', port: 53, targetPort: 53, protocol: 'UDP' },
    { name: 'tcp-80', port: 80, targetPort: 80, protocol: 'TCP' },
    { name: 'tcp-443', port: 443, targetPort: 443, protocol: 'TCP' },
    { name: 'tcp-8443', port: 8443, targetPort: 8443, protocol: 'TCP' },
  ]);
  assert.deepEqual(svc.spec.selector, infra.selector);
  assert.deepEqual(get(infra, 'Deployment').spec.selector, { matchLabels: infra.selector });
  // The pod template carries the selector's labels.
  for (const [k, v] of Object.entries(infra.selector)) assert.equal(get(infra, 'Deployment').spec.template.metadata.labels[k], v);
  // The container declares the same ports, and its health and metrics ports.
  assert.deepEqual(proxy(infra).ports.map((p: Obj) => `${p.name}:${p.containerPort}/${p.protocol}`), [
    'tcp-53:53/TCP', 'udp-53:53/UDP', 'tcp-80:80/TCP', 'tcp-443:443/TCP', 'tcp-8443:8443/TCP', 'health:19001/TCP', 'metrics:19002/TCP',
  ]);
  // Never what the user did not ask for.
  for (const f of ['externalIPs', 'loadBalancerClass', 'loadBalancerIP', 'loadBalancerSourceRanges', 'externalTrafficPolicy', 'ipFamilyPolicy']) {
    assert.ok(!(f in svc.spec), `spec.${f} is not sent`);
  }
  // Reordering listeners changes nothing.
  const reordered = render(gateway({ listeners: [...gw.spec.listeners].reverse() }));
  assert.deepEqual(get(reordered, 'Service').spec.ports, svc.spec.ports);
});

test('the Service from parameters: type, externalTrafficPolicy, source ranges, annotations, loadBalancerClass', () => {
  const infra = render(gateway({ infrastructure: { annotations: { shared: 'gateway', 'metallb.io/address-pool': 'public' } } }), {
    service: {
      type: 'LoadBalancer', externalTrafficPolicy: 'Local', loadBalancerSourceRanges: ['192.0.2.0/24'],
      annotations: { shared: 'parameters', 'lb.example/health': 'tcp' }, loadBalancerClass: 'example.com/internal-vip',
    },
  });
  const svc = get(infra, 'Service');
  assert.equal(svc.spec.externalTrafficPolicy, 'Local');
  assert.deepEqual(svc.spec.loadBalancerSourceRanges, ['192.0.2.0/24']);
  assert.equal(svc.spec.loadBalancerClass, 'example.com/internal-vip');
  assert.deepEqual(svc.metadata.annotations, { shared: 'gateway', 'metallb.io/address-pool': 'public', 'lb.example/health': 'tcp' });
  // The parameters' Service annotations are for the Service only.
  assert.deepEqual(get(infra, 'Deployment').metadata.annotations, { shared: 'gateway', 'metallb.io/address-pool': 'public' });

  // A ClusterIP Service leaves out what only a load balancer takes (merged from a class, say).
  const cip = get(render(gateway(), { service: { type: 'ClusterIP', externalTrafficPolicy: 'Local', loadBalancerSourceRanges: ['10.0.0.0/8'], loadBalancerClass: 'example.com/x' } }), 'Service');
  assert.deepEqual(Object.keys(cip.spec).sort(), ['ports', 'selector', 'type']);
  const np = get(render(gateway(), { service: { type: 'NodePort', externalTrafficPolicy: 'Local', loadBalancerSourceRanges: ['10.0.0.0/8'] } }), 'Service');
  assert.equal(np.spec.externalTrafficPolicy, 'Local');
  assert.ok(!('loadBalancerSourceRanges' in np.spec));
});

test('infrastructure labels and annotations are on every object and the pods; removed, they are gone; ours win', () => {
  const infraSpec = {
    labels: { team: 'platform', 'app.kubernetes.io/name': 'hijack', 'gateway.networking.k8s.io/gateway-name': 'other' },
    annotations: { 'metallb.io/address-pool': 'public', 'linkerd.io/inject': 'enabled' },
  };
  const withThem = render(gateway({ infrastructure: infraSpec }));
  for (const o of withThem.objects) {
    assert.equal(o.metadata.labels.team, 'platform', `${o.kind} has the label`);
    assert.equal(o.metadata.labels['app.kubernetes.io/name'], 'gatehouse-proxy', `${o.kind}: our label wins`);
    assert.equal(o.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'cloud', `${o.kind}: our label wins`);
    assert.equal(o.metadata.annotations?.['metallb.io/address-pool'], 'public', `${o.kind} has the annotation`);
    assert.equal(o.metadata.annotations?.['linkerd.io/inject'], 'enabled');
  }
  const tmpl = get(withThem, 'Deployment').spec.template.metadata;
  assert.equal(tmpl.labels.team, 'platform');
  assert.equal(tmpl.annotations['linkerd.io/inject'], 'enabled');
  assert.equal(withThem.selector['app.kubernetes.io/name'], 'gatehouse-proxy', 'user labels never reach the selector');

  const without = render(gateway({ infrastructure: { labels: { other: 'x' } } }));
  for (const o of without.objects) {
    assert.ok(!('team' in o.metadata.labels), `${o.kind}: removed label not rendered`);
    assert.equal(o.metadata.annotations, undefined, `${o.kind}: removed annotations not rendered`);
  }
  assert.ok(!('team' in get(without, 'Deployment').spec.template.metadata.labels));
  // Only Prometheus' scrape annotations stay on the pods.
  assert.deepEqual(get(without, 'Deployment').spec.template.metadata.annotations, {
    'prometheus.io/scrape': 'true', 'prometheus.io/port': '19002', 'prometheus.io/path': '/metrics',
  });
  // A Gateway may turn scraping off with its own annotation.
  const off = render(gateway({ infrastructure: { annotations: { 'prometheus.io/scrape': 'false' } } }));
  assert.equal(get(off, 'Deployment').spec.template.metadata.annotations['prometheus.io/scrape'], 'false');
  assert.deepEqual(without.selector, withThem.selector, 'the selector does not change with user labels');
});

test('addresses: IPAddress -> loadBalancerIP and metallb.io/loadBalancerIPs; anything else -> AddressNotUsable problems', () => {
  type Case = { addresses: { type?: string; value?: string }[]; serviceType?: 'LoadBalancer' | 'ClusterIP' | 'NodePort'; lbIP?: string; metallb?: string; dual?: boolean; problems: RegExp[] };
  const cases: Case[] = [
    { addresses: [], problems: [] },
    { addresses: [{ type: 'IPAddress', value: '192.0.2.10' }], lbIP: '192.0.2.10', metallb: '192.0.2.10', problems: [] },
    { addresses: [{ value: '192.0.2.10' }], lbIP: '192.0.2.10', metallb: '192.0.2.10', problems: [] }, // type defaults to IPAddress
    { addresses: [{ type: 'IPAddress', value: '192.0.2.10' }, { type: 'IPAddress', value: '2001:db8::10' }], lbIP: '192.0.2.10', metallb: '192.0.2.10,2001:db8::10', dual: true, problems: [] },
    { addresses: [{ type: 'IPAddress', value: '2001:db8::10' }], metallb: '2001:db8::10', dual: true, problems: [] },
    { addresses: [{ type: 'IPAddress' }], problems: [] }, // empty value: the load balancer picks
    { addresses: [{ type: 'IPAddress', value: '192.0.2.10' }, { type: 'IPAddress', value: '192.0.2.11' }], lbIP: '192.0.2.10', metallb: '192.0.2.10',
      problems: [/^spec.addresses\[1\] \(192.0.2.11\) cannot be used: the Service takes one IPv4 address and 192.0.2.10 is requested first/] },
    { addresses: [{ type: 'Hostname', value: 'vip.example.test' }], problems: [/^spec.addresses\[0\] \(Hostname "vip.example.test"\) cannot be used: Gatehouse asks the load balancer for IP addresses only/] },
    { addresses: [{ type: 'example.com/pool', value: 'public' }, { value: '192.0.2.10' }], lbIP: '192.0.2.10', metallb: '192.0.2.10', problems: [/^spec.addresses\[0\] \(example.com\/pool "public"\)/] },
    { addresses: [{ type: 'IPAddress', value: 'not-an-ip' }], problems: [/not an IP address/] },
    { addresses: [{ type: 'IPAddress', value: '192.0.2.10' }], serviceType: 'ClusterIP', problems: [/Service is of type ClusterIP, and only a LoadBalancer Service takes a requested address/] },
  ];
  for (const c of cases) {
    const infra = render(gateway({ addresses: c.addresses }), c.serviceType ? { service: { type: c.serviceType } } : {});
    const svc = get(infra, 'Service');
    const what = JSON.stringify(c.addresses);
    assert.equal(svc.spec.loadBalancerIP, c.lbIP, `${what}: loadBalancerIP`);
    assert.equal(svc.metadata.annotations?.['metallb.io/loadBalancerIPs'], c.metallb, `${what}: metallb annotation`);
    assert.equal(svc.spec.ipFamilyPolicy, c.dual ? 'PreferDualStack' : undefined, `${what}: ipFamilyPolicy`);
    assert.ok(!('externalIPs' in svc.spec), 'never externalIPs');
    assert.ok(!('loadBalancerClass' in svc.spec), 'never a loadBalancerClass not asked for');
    assert.equal(infra.addressProblems.length, c.problems.length, `${what}: ${infra.addressProblems.join(' | ')}`);
    c.problems.forEach((re, i) => assert.match(infra.addressProblems[i], re));
  }
  // spec.addresses decide the requested IPs, over an annotation of the same name.
  const over = render(gateway({ addresses: [{ value: '192.0.2.10' }], infrastructure: { annotations: { 'metallb.io/loadBalancerIPs': '192.0.2.99' } } }));
  assert.equal(get(over, 'Service').metadata.annotations['metallb.io/loadBalancerIPs'], '192.0.2.10');
});

test('the Deployment runs `gatehouse proxy` with the agreed flags, token and CA mounts, probes and a locked-down pod', () => {
  const infra = render(gateway());
  const dep = get(infra, 'Deployment');
  assert.equal(dep.spec.replicas, 1);
  assert.deepEqual(dep.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } });
  const pod = podSpec(infra);
  const c = proxy(infra);
  assert.equal(c.image, 'ghcr.io/example/gatehouse:0.1.0');
  assert.ok(!('imagePullPolicy' in c));
  assert.deepEqual(c.args, [
    'proxy',
    '--controller-address', 'gatehouse-config.gatehouse-system.svc:18000',
    '--gateway', 'infra/cloud',
    '--token-file', '/var/run/secrets/gatehouse/token',
    '--ca-file', '/etc/gatehouse/ca/ca.crt',
    '--health-address', '0.0.0.0:19001',
    '--metrics-address', '0.0.0.0:19002',
  ]);
  assert.equal(pod.serviceAccountName, 'cloud-gatehouse');
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.terminationGracePeriodSeconds, TERMINATION_GRACE_SECONDS);
  assert.ok(TERMINATION_GRACE_SECONDS > 5 + 30 + 10, 'longer than shutdown delay + drain + the proxy\'s own last resort');
  const token = pod.volumes.find((v: Obj) => v.name === 'token');
  assert.deepEqual(token.projected.sources, [{ serviceAccountToken: { audience: 'gatehouse', expirationSeconds: 3600, path: 'token' } }]);
  assert.deepEqual(pod.volumes.find((v: Obj) => v.name === 'ca').configMap, { name: 'cloud-gatehouse', items: [{ key: 'ca.crt', path: 'ca.crt' }] });
  assert.deepEqual(c.volumeMounts.filter((m: Obj) => m.readOnly).map((m: Obj) => m.mountPath), ['/var/run/secrets/gatehouse', '/etc/gatehouse/ca']);
  assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 19001 });
  assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 19001 });
  assert.deepEqual(c.securityContext, {
    runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
  });
  assert.deepEqual(pod.securityContext.sysctls, [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
  assert.deepEqual(c.resources, { requests: { cpu: '100m', memory: '128Mi' } });
  for (const f of ['nodeSelector', 'affinity', 'tolerations', 'topologySpreadConstraints']) assert.ok(!(f in pod), `${f} not sent unless asked`);
});

test('the Deployment from parameters: replicas, image, pull policy, workers, placement, resources', () => {
  const p: GatewayParametersSpec = {
    replicas: 3, image: 'registry.example/gh:2', imagePullPolicy: 'Always', workers: 2,
    nodeSelector: { edge: 'true' }, affinity: { podAntiAffinity: {} }, tolerations: [{ key: 'edge', operator: 'Exists' }],
    topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule' }],
    resources: { limits: { memory: '512Mi' } },
  };
  const infra = render(gateway(), p);
  assert.equal(get(infra, 'Deployment').spec.replicas, 3);
  const c = proxy(infra);
  assert.equal(c.image, 'registry.example/gh:2');
  assert.equal(c.imagePullPolicy, 'Always');
  assert.deepEqual(c.args.slice(-2), ['--workers', '2']);
  assert.deepEqual(c.resources, { limits: { memory: '512Mi' } }, 'resources replace the default whole');
  const pod = podSpec(infra);
  assert.deepEqual(pod.nodeSelector, p.nodeSelector);
  assert.deepEqual(pod.affinity, p.affinity);
  assert.deepEqual(pod.tolerations, p.tolerations);
  assert.deepEqual(pod.topologySpreadConstraints, p.topologySpreadConstraints);
  assert.ok(!kinds(infra).includes('HorizontalPodAutoscaler'));
  assert.ok(!kinds(infra).includes('PodDisruptionBudget'));
  assert.deepEqual(proxy(render(gateway(), { workers: 0 })).args.slice(-2), ['--workers', '0']);
});

test('autoscaling: an HPA (autoscaling/v2) on the Deployment, and the Deployment sends no replicas', () => {
  const infra = render(gateway(), { replicas: 4, autoscaling: { minReplicas: 2, maxReplicas: 8, targetMemoryUtilizationPercentage: 75 } });
  assert.equal(infra.autoscaling, true);
  assert.deepEqual(kinds(infra), ['ServiceAccount', 'ConfigMap', 'Service', 'Deployment', 'HorizontalPodAutoscaler']);
  assert.ok(!('replicas' in get(infra, 'Deployment').spec), 'the HPA owns the count');
  const hpa = get(infra, 'HorizontalPodAutoscaler');
  assert.equal(hpa.apiVersion, 'autoscaling/v2');
  assert.deepEqual(hpa.spec, {
    scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'cloud-gatehouse' },
    minReplicas: 2, maxReplicas: 8,
    metrics: [{ type: 'Resource', resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: 75 } } }],
  });
  // No target: CPU 80%, the HPA's own default, written out.
  const plain = get(render(gateway(), { autoscaling: { maxReplicas: 3 } }), 'HorizontalPodAutoscaler');
  assert.equal(plain.spec.minReplicas, 1);
  assert.deepEqual(plain.spec.metrics, [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }]);
  const both = get(render(gateway(), { autoscaling: { maxReplicas: 3, targetCPUUtilizationPercentage: 60, targetMemoryUtilizationPercentage: 70 } }), 'HorizontalPodAutoscaler');
  assert.deepEqual(both.spec.metrics.map((m: Obj) => `${m.resource.name}=${m.resource.target.averageUtilization}`), ['cpu=60', 'memory=70']);
});

test('podDisruptionBudget: a policy/v1 PDB selecting the proxies', () => {
  const infra = render(gateway(), { podDisruptionBudget: { maxUnavailable: 1 } });
  const pdb = get(infra, 'PodDisruptionBudget');
  assert.equal(pdb.apiVersion, 'policy/v1');
  assert.deepEqual(pdb.spec, { selector: { matchLabels: infra.selector }, maxUnavailable: 1 });
  assert.deepEqual(get(render(gateway(), { podDisruptionBudget: { minAvailable: '50%' } }), 'PodDisruptionBudget').spec.minAvailable, '50%');
});

test('listeners: one on the health port is PortUnavailable; none left to serve means no Service', () => {
  const infra = render(gateway({ listeners: [{ name: 'admin', port: 19001, protocol: 'HTTP' }, { name: 'dns', port: 19001, protocol: 'UDP' }] }));
  assert.deepEqual(infra.listenerProblems, [{ listener: 'admin', reason: 'PortUnavailable', message: 'port 19001 is the proxy\'s health and readiness port; use another port for listener admin' }]);
  assert.deepEqual(get(infra, 'Service').spec.ports, [{ name: 'udp-19001', port: 19001, targetPort: 19001, protocol: 'UDP' }]);
  const none = render(gateway({ listeners: [{ name: 'admin', port: 19001, protocol: 'HTTP' }] }));
  assert.deepEqual(kinds(none), ['ServiceAccount', 'ConfigMap', 'Deployment']);
});

test('long and odd names: every object gets the same valid name; labels follow GEP-1762', () => {
  const longName = 'keystone-public-api-gateway-for-the-openstack-control-plane-region-one';
  const infra = render(gateway({}, longName));
  assert.ok(infra.name.length <= 63);
  for (const o of infra.objects as ProvisionedObject[]) {
    assert.equal(o.metadata.name, infra.name);
    assert.equal(o.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'keystone-public-api--' + o.metadata.labels['gateway.networking.k8s.io/gateway-name'].slice(21));
    assert.equal(o.metadata.labels['gateway.networking.k8s.io/gateway-name'].length, 61);
    assert.equal(o.metadata.ownerReferences[0].name, longName, 'the owner reference names the Gateway in full');
  }
  assert.deepEqual(proxy(infra).args.slice(3, 5), ['--gateway', `infra/${longName}`]);
  assert.throws(() => render({ ...gateway(), metadata: { name: 'x', namespace: 'infra' } }), /Gateway infra\/x: metadata.uid is empty/);
});

test('proxyControllerAddress: a bare Service name is qualified with the controller namespace; the rest kept', () => {
  const cases: [string, string][] = [
    ['gatehouse-config:18000', 'gatehouse-config.gatehouse-system.svc:18000'],
    ['gatehouse-config.gatehouse-system.svc:18000', 'gatehouse-config.gatehouse-system.svc:18000'],
    ['10.96.0.20:18000', '10.96.0.20:18000'],
    ['[fd00::20]:18000', '[fd00::20]:18000'],
    ['localhost:18000', 'localhost:18000'],
  ];
  for (const [input, want] of cases) assert.equal(proxyControllerAddress(input, 'gatehouse-system'), want);
  assert.throws(() => proxyControllerAddress('no-port', 'ns'), /controller address "no-port": expected host:port/);
});
