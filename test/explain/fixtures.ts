// A config dir with several routes on one listener, refused routes and an
// HTTPS listener, shared by the explain tests.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selfSigned } from '../dataplane/helpers.ts';
import { GATEWAY_CLASS } from '../e2e/helpers.ts';

export function writeExplainConfig(opts: { httpPort?: number; httpsPort?: number; backendPort?: number; extra?: string } = {}): string {
  const http = opts.httpPort ?? 8080;
  const https = opts.httpsPort ?? 8443;
  const backend = opts.backendPort ?? 8774;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-explain-'));
  const { cert, key } = selfSigned('example', ['*.example']);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  fs.writeFileSync(path.join(dir, 'config.yaml'), `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, port: ${http}, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
  - {name: admin, port: ${http}, protocol: HTTP, hostname: admin.example, allowedRoutes: {namespaces: {from: Same}}}
  - name: https
    port: ${https}
    protocol: HTTPS
    hostname: "*.example"
    tls: {certificateRefs: [{name: cert}]}
    allowedRoutes: {namespaces: {from: Same}}
  - name: keystone
    port: ${https}
    protocol: HTTPS
    hostname: keystone.example
    tls: {certificateRefs: [{name: cert}]}
    allowedRoutes: {namespaces: {from: Same}}
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${b64(cert)}, tls.key: ${b64(key)}}
---
apiVersion: v1
kind: Service
metadata: {name: nova, namespace: default}
spec: {ports: [{port: 8774}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: nova-1, namespace: default, labels: {kubernetes.io/service-name: nova}}
addressType: IPv4
ports: [{port: ${backend}}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: nova, namespace: default, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw, sectionName: http}, {name: gw, sectionName: https}]
  hostnames: [nova.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2.1}}]
    backendRefs: [{name: nova, port: 8774}]
  - name: foo-baz
    matches: [{path: {type: PathPrefix, value: /v2.1/servers}, headers: [{name: X-Foo, value: baz}]}]
    backendRefs: [{name: nova, port: 8774}]
  - name: create
    matches: [{path: {type: Exact, value: /v2.1/servers}, method: POST}]
    backendRefs: [{name: nova, port: 8774}]
  - name: servers
    matches: [{path: {type: PathPrefix, value: /v2.1/servers}}]
    backendRefs: [{name: nova, port: 8774}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: nova-old, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  hostnames: [nova.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2.1/servers}}]
    backendRefs: [{name: nova, port: 8774}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: intruder, namespace: other}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: nova, port: 8774}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-host, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: admin}]
  hostnames: [nova.example]
  rules: [{backendRefs: [{name: nova, port: 8774}]}]
${opts.extra ?? ''}`);
  return dir;
}
