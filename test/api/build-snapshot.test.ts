// buildSnapshot: each kind in its list, held kinds in `other`, in a
// deterministic order whatever the input order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import type { KubeObject } from '../../src/api/types.ts';

const o = (kind: string, name: string, namespace?: string): KubeObject => ({
  apiVersion: 'x/v1', kind, metadata: namespace ? { name, namespace } : { name },
});

test('kinds go to their lists; held Gateway API kinds to other; sorted by kind, namespace, name', () => {
  const objects = [
    o('HTTPRoute', 'b', 'team-a'), o('TLSRoute', 't', 'a'), o('HTTPRoute', 'a', 'team-b'), o('HTTPRoute', 'a', 'team-a'),
    o('Namespace', 'team-a'), o('GatewayClass', 'gc'), o('Gateway', 'gw', 'infra'), o('ListenerSet', 'ls', 'infra'), o('XListenerSet', 'xls', 'infra'),
    o('GRPCRoute', 'g', 'a'), o('TCPRoute', 'tcp', 'a'), o('UDPRoute', 'udp', 'a'), o('BackendTLSPolicy', 'p', 'a'),
    o('ReferenceGrant', 'rg', 'storage'), o('Service', 's', 'a'), o('EndpointSlice', 's-1', 'a'), o('Secret', 'cert', 'infra'),
    o('ConfigMap', 'ca', 'a'),
  ];
  const names = (list: KubeObject[]) => list.map((x) => `${x.kind} ${x.metadata.namespace ?? ''}/${x.metadata.name}`);
  for (const input of [objects, [...objects].reverse()]) {
    const s = buildSnapshot(input);
    assert.deepEqual(names(s.httpRoutes), ['HTTPRoute team-a/a', 'HTTPRoute team-a/b', 'HTTPRoute team-b/a']);
    assert.deepEqual(names(s.grpcRoutes), ['GRPCRoute a/g']);
    assert.deepEqual(names(s.namespaces), ['Namespace /team-a']);
    assert.deepEqual(names(s.gatewayClasses), ['GatewayClass /gc']);
    assert.deepEqual(names(s.gateways), ['Gateway infra/gw']);
    // Both names of the kind, translated alike.
    assert.deepEqual(names(s.listenerSets), ['ListenerSet infra/ls', 'XListenerSet infra/xls']);
    assert.deepEqual(names(s.referenceGrants), ['ReferenceGrant storage/rg']);
    assert.deepEqual(names(s.services), ['Service a/s']);
    assert.deepEqual(names(s.endpointSlices), ['EndpointSlice a/s-1']);
    assert.deepEqual(names(s.secrets), ['Secret infra/cert']);
    assert.deepEqual(names(s.configMaps), ['ConfigMap a/ca']);
    assert.deepEqual(names(s.other), [
      'BackendTLSPolicy a/p', 'TCPRoute a/tcp', 'TLSRoute a/t', 'UDPRoute a/udp',
    ]);
  }
});
