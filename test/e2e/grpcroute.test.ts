// GRPCRoute end to end with @grpc/grpc-js: a method match sends Echo to
// one backend and every other method of the service to another, a
// RequestHeaderModifier adds metadata the backend sees, and the backends'
// Service ports are not marked h2c (GRPCRoute backends speak HTTP/2
// anyway). The route is then edited to send Echo elsewhere.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { SERVICE } from './grpc-helpers.ts';
import { freePort, GATEWAY_CLASS, gatewayYAML, startGatehouse, tempConfigDir, waitFor, writeConfig } from './helpers.ts';

const POOL = '127.46.0.0/24';
const GW = '127.46.0.1';

/** Echo answers `tag:text:x-via`; Count streams `tag` n times. */
async function startTagged(tag: string): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(SERVICE, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      callback(null, Buffer.from(`${tag}:${call.request.toString()}:${call.metadata.get('x-via').join(',')}`));
    },
    Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < Number(call.request.toString()); i++) call.write(Buffer.from(tag));
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, server };
}

function service(name: string, port: number): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: default}
spec: {ports: [{name: grpc, port: 9000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: default, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: grpc, port: ${port}}]
endpoints: [{addresses: [127.0.0.1]}]
`;
}

function route(echoTo: string): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example]
  rules:
  - matches: [{method: {service: test.Echo, method: Echo}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-via, value: gatehouse}]}}]
    backendRefs: [{name: ${echoTo}, port: 9000}]
  - matches: [{method: {service: test.Echo}}]
    backendRefs: [{name: two, port: 9000}]
`;
}

test('GRPCRoute: method matches, a header filter, HTTP/2 to Service ports not marked h2c, and an edit', { timeout: 60_000 }, async (t) => {
  const one = await startTagged('one');
  const two = await startTagged('two');
  t.after(() => one.server.forceShutdown());
  t.after(() => two.server.forceShutdown());
  const gwPort = await freePort();
  const dir = tempConfigDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeConfig(dir, 'base.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(gwPort)}---
${service('one', one.port)}---
${service('two', two.port)}`);
  writeConfig(dir, 'route.yaml', route('one'));
  const gw = await startGatehouse(dir, POOL);
  t.after(() => gw.close());
  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Echo');
  const client = new Client(`${GW}:${gwPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'grpc.example' });
  t.after(() => client.close());
  const echo = (text: string) => new Promise<string>((resolve, reject) => {
    client.Echo(Buffer.from(text), (err: grpc.ServiceError | null, value?: Buffer) => (err ? reject(err) : resolve(value!.toString())));
  });
  const count = (n: number) => new Promise<string[]>((resolve, reject) => {
    const items: string[] = [];
    const call = client.Count(Buffer.from(String(n)));
    call.on('data', (b: Buffer) => items.push(b.toString()));
    call.on('error', reject);
    call.on('end', () => resolve(items));
  });

  await waitFor('the route to serve', async () => (await echo('ping').catch(() => '')).startsWith('one:'), 15_000);
  assert.equal(await echo('hi'), 'one:hi:gatehouse', 'Echo goes to one, with the metadata the filter added');
  assert.deepEqual(await count(3), ['two', 'two', 'two'], 'the other methods of the service go to two, without it');

  const resources = await (await fetch(`http://${gw.admin}/api/v1/resources?kind=GRPCRoute`)).json() as { items: { status: { parents: { conditions: { type: string; status: string }[] }[] } }[] };
  assert.equal(resources.items[0].status.parents[0].conditions.find((c) => c.type === 'Accepted')?.status, 'True');

  writeConfig(dir, 'route.yaml', route('two'));
  await waitFor('Echo to follow the edit', async () => (await echo('x')).startsWith('two:'), 10_000);
  assert.equal(await echo('hi'), 'two:hi:gatehouse');
});
