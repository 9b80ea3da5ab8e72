// Which features each mode advertises: provisioning (and with it the
// propagation of spec.infrastructure) exists in Kubernetes mode only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KUBERNETES_FEATURES, SUPPORTED_FEATURES, gatewayClassStatus } from '../../src/translate/gatewayclass.ts';
import type { GatewayClass } from '../../src/api/types.ts';

const gc = {
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass',
  metadata: { name: 'gatehouse', generation: 1 },
  spec: { controllerName: 'gatehouse.dev/gateway-controller' },
} as unknown as GatewayClass;

const names = (features: readonly string[]) => gatewayClassStatus(gc, features).status.supportedFeatures.map((f) => f.name);

test('standalone does not claim GatewayInfrastructure or HTTPRouteCORS; Kubernetes mode does, on top of the rest', () => {
  assert.ok(!names(SUPPORTED_FEATURES).includes('GatewayInfrastructure'));
  assert.ok(!names(SUPPORTED_FEATURES).includes('HTTPRouteCORS'));
  const k8s = names(KUBERNETES_FEATURES);
  assert.ok(k8s.includes('GatewayInfrastructure'));
  assert.ok(k8s.includes('HTTPRouteCORS'));
  for (const f of SUPPORTED_FEATURES) assert.ok(k8s.includes(f), f);
});
