// A ListenerSet end to end on real sockets: a team's namespace adds an
// HTTPS listener with its own certificate to a shared Gateway, next to the
// Gateway's own HTTPS listener on the same port; each hostname gets its own
// certificate by SNI and reaches its own route. Then the Gateway stops
// admitting the namespace, and the team's hostname stops being served.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { request } from 'undici';
import { selfSigned } from '../dataplane/helpers.ts';
import { GATEWAY_CLASS, freePort, serviceYAML, startEcho, startGatehouse, tempConfigDir, waitFor, writeConfig } from './helpers.ts';
import fs from 'node:fs';

const POOL = '127.44.0.0/24';
const GW = '127.44.0.1';

function tlsSecret(ns: string, name: string, pair: { cert: string; key: string }): string {
  return `apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: ${ns}}
type: kubernetes.io/tls
stringData:
  tls.crt: ${JSON.stringify(pair.cert)}
  tls.key: ${JSON.stringify(pair.key)}
`;
}

/** The shared Gateway; `namespaces` is its allowedListeners.namespaces, in YAML flow style. */
function gatewayYAML(port: number, namespaces: string): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: gatehouse
  allowedListeners: {namespaces: ${namespaces}}
  listeners:
  - name: https
    port: ${port}
    protocol: HTTPS
    hostname: portal.example.com
    tls: {certificateRefs: [{name: portal-tls}]}
`;
}

/** One HTTPS request to the gateway with this SNI and Host: the certificate's CN and the backend that answered. */
function get(port: number, host: string): Promise<{ cn: string; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: GW, port, servername: host, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const cert = socket.getPeerX509Certificate() as X509Certificate | undefined;
      const cn = /CN=([^\n]*)/.exec(cert?.subject ?? '')?.[1] ?? '';
      socket.write(`GET /whoami HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
        resolve({ cn, status, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
      });
    });
    // Bounded: a gateway that never answers fails the test, not the run.
    socket.setTimeout(5_000, () => socket.destroy(new Error('no answer within 5 s')));
    socket.on('error', reject);
  });
}

test('a ListenerSet of another namespace serves HTTPS with its own certificate beside the Gateway\'s listener', { timeout: 60_000 }, async (t) => {
  const portal = await startEcho('portal');
  const team = await startEcho('team');
  t.after(() => portal.close());
  t.after(() => team.close());
  const port = await freePort();
  const dir = tempConfigDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeConfig(dir, '00-infra.yaml', `${GATEWAY_CLASS}---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {gateway-access: "yes"}}
---
${tlsSecret('infra', 'portal-tls', selfSigned('portal.example.com'))}---
${serviceYAML('infra', 'portal', 80, portal.port)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: portal, namespace: infra}
spec:
  parentRefs: [{name: shared}]
  rules: [{backendRefs: [{name: portal, port: 80}]}]
`);
  writeConfig(dir, '01-gateway.yaml', gatewayYAML(port, '{from: Selector, selector: {matchLabels: {gateway-access: "yes"}}}'));
  // The team's namespace: its ListenerSet, its certificate (no ReferenceGrant needed), its route.
  writeConfig(dir, '10-team.yaml', `${tlsSecret('team-a', 'team-tls', selfSigned('team.example.com'))}---
${serviceYAML('team-a', 'app', 80, team.port)}---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: team, namespace: team-a}
spec:
  parentRef: {name: shared, namespace: infra}
  listeners:
  - name: https
    port: ${port}
    protocol: HTTPS
    hostname: team.example.com
    tls: {certificateRefs: [{name: team-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: team-a}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: ListenerSet, name: team, sectionName: https}]
  rules: [{backendRefs: [{name: app, port: 80}]}]
`);
  const gw = await startGatehouse(dir, POOL);
  t.after(() => gw.close());

  const teamAnswer = await waitFor('the team\'s hostname to serve', async () => {
    const r = await get(port, 'team.example.com').catch(() => undefined);
    return r?.status === 200 ? r : undefined;
  }, 10_000);
  assert.equal(teamAnswer.cn, 'team.example.com', 'the ListenerSet\'s own certificate');
  assert.equal(JSON.parse(teamAnswer.body).backend, 'team');
  const portalAnswer = await get(port, 'portal.example.com');
  assert.equal(portalAnswer.status, 200);
  assert.equal(portalAnswer.cn, 'portal.example.com', 'the Gateway\'s certificate');
  assert.equal(JSON.parse(portalAnswer.body).backend, 'portal');

  const { items } = await (await request(`http://${gw.admin}/api/v1/resources`)).body.json() as { items: any[] }; // eslint-disable-line @typescript-eslint/no-explicit-any
  const ls = items.find((o) => o.kind === 'ListenerSet' && o.metadata.name === 'team');
  const cond = (o: any, type: string) => o.status.conditions.find((c: { type: string }) => c.type === type); // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(cond(ls, 'Accepted').status, 'True');
  assert.equal(cond(ls, 'Programmed').status, 'True');
  assert.equal(ls.status.listeners[0].attachedRoutes, 1);
  const shared = items.find((o) => o.kind === 'Gateway' && o.metadata.name === 'shared');
  assert.equal(shared.status.attachedListenerSets, 1);
  assert.deepEqual(shared.status.listeners.map((l: { name: string }) => l.name), ['https'], 'the Gateway reports its own listeners only');

  // The Gateway stops admitting other namespaces: the team's hostname goes, the Gateway's stays.
  writeConfig(dir, '01-gateway.yaml', gatewayYAML(port, '{from: Same}'));
  // In the end its name is refused at the handshake (no listener's certificate covers it any more);
  // a request may meet a 404 on the way, while the reload takes the routes before the certificate.
  await waitFor('the team\'s hostname to stop serving', async () => {
    const refused = await get(port, 'team.example.com').then(() => false, (err: Error) => /unrecognized name/.test(err.message));
    return refused || undefined;
  }, 10_000);
  const after = await get(port, 'portal.example.com');
  assert.equal(after.status, 200);
  assert.equal(JSON.parse(after.body).backend, 'portal');
});
