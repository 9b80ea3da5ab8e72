// gRPC through an HTTPRoute, end to end with @grpc/grpc-js at both ends:
// the client speaks h2c to the gateway, the route's backend is a Service
// port with appProtocol kubernetes.io/h2c (a grpc-js server), so the
// status and metadata that gRPC carries in trailers (and, for an answer
// without messages, in a trailers-only HEADERS frame) must come through
// intact. Unary and server-streaming calls, OK and non-OK statuses.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SERVICE } from './grpc-helpers.ts';
import { freePort, GATEWAY_CLASS, gatewayYAML, startGatehouse, tempConfigDir, waitFor, writeConfig } from './helpers.ts';
import fs from 'node:fs';

const POOL = '127.43.0.0/24';
const GW = '127.43.0.1';

async function startGrpcBackend(): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(SERVICE, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const text = call.request.toString();
      const initial = new grpc.Metadata();
      initial.set('x-initial', 'hello');
      call.sendMetadata(initial);
      const trailing = new grpc.Metadata();
      trailing.set('x-trailing', `for ${text}`);
      trailing.set('x-bin-bin', Buffer.from([0, 1, 2, 255]));
      if (text === 'deny') {
        callback({ code: grpc.status.PERMISSION_DENIED, details: 'not for you', metadata: trailing });
        return;
      }
      callback(null, Buffer.from(`echo:${text}`), trailing);
    },
    Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(call.request.toString());
      if (n < 0) {
        // No message at all: grpc-js answers trailers-only.
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'negative count' });
        return;
      }
      for (let i = 0; i < n; i++) call.write(Buffer.from(`item ${i}`));
      const trailing = new grpc.Metadata();
      trailing.set('x-count', String(n));
      call.end(trailing);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, server };
}

function config(gwPort: number, backendPort: number): string {
  return `${GATEWAY_CLASS}---
${gatewayYAML(gwPort)}---
apiVersion: v1
kind: Service
metadata: {name: grpc, namespace: default}
spec: {ports: [{name: grpc, port: 9000, appProtocol: kubernetes.io/h2c}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: grpc-1, namespace: default, labels: {kubernetes.io/service-name: grpc}}
addressType: IPv4
ports: [{name: grpc, port: ${backendPort}, appProtocol: kubernetes.io/h2c}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /test.Echo/}}]
    backendRefs: [{name: grpc, port: 9000}]
`;
}

test('gRPC unary and server-streaming calls through an HTTPRoute to an h2c backend', { timeout: 60_000 }, async (t) => {
  const backend = await startGrpcBackend();
  t.after(() => backend.server.forceShutdown());
  const gwPort = await freePort();
  const dir = tempConfigDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeConfig(dir, 'all.yaml', config(gwPort, backend.port));
  const gw = await startGatehouse(dir, POOL);
  t.after(() => gw.close());
  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Echo');
  const client = new Client(`${GW}:${gwPort}`, grpc.credentials.createInsecure());
  t.after(() => client.close());

  const unary = (text: string) =>
    new Promise<{ err: grpc.ServiceError | null; value?: Buffer; initial?: grpc.Metadata; status: grpc.StatusObject }>((resolve) => {
      let initial: grpc.Metadata | undefined;
      let result: { err: grpc.ServiceError | null; value?: Buffer } = { err: null };
      const call = client.Echo(Buffer.from(text), (err: grpc.ServiceError | null, value?: Buffer) => (result = { err, value }));
      call.on('metadata', (md: grpc.Metadata) => (initial = md));
      call.on('status', (status: grpc.StatusObject) => setImmediate(() => resolve({ ...result, initial, status })));
    });

  await waitFor('the route to serve', async () => (await unary('ping')).status.code === grpc.status.OK, 15_000);

  await t.test('unary OK: message, initial and trailing metadata', async () => {
    const r = await unary('hi');
    assert.equal(r.err, null);
    assert.equal(r.value?.toString(), 'echo:hi');
    assert.deepEqual(r.initial?.get('x-initial'), ['hello']);
    assert.equal(r.status.code, grpc.status.OK);
    assert.deepEqual(r.status.metadata.get('x-trailing'), ['for hi']);
    assert.deepEqual(r.status.metadata.get('x-bin-bin'), [Buffer.from([0, 1, 2, 255])]);
  });

  await t.test('unary non-OK: status, message and trailing metadata', async () => {
    const r = await unary('deny');
    assert.equal(r.status.code, grpc.status.PERMISSION_DENIED);
    assert.equal(r.status.details, 'not for you');
    assert.equal(r.err?.code, grpc.status.PERMISSION_DENIED);
    assert.deepEqual(r.status.metadata.get('x-trailing'), ['for deny']);
  });

  const stream = (n: number) =>
    new Promise<{ items: string[]; status: grpc.StatusObject }>((resolve) => {
      const items: string[] = [];
      const call = client.Count(Buffer.from(String(n)));
      call.on('data', (b: Buffer) => items.push(b.toString()));
      call.on('error', () => {});
      call.on('status', (status: grpc.StatusObject) => resolve({ items, status }));
    });

  await t.test('server streaming: every message, then the status in trailers', async () => {
    const r = await stream(50);
    assert.equal(r.items.length, 50);
    assert.equal(r.items[49], 'item 49');
    assert.equal(r.status.code, grpc.status.OK);
    assert.deepEqual(r.status.metadata.get('x-count'), ['50']);
  });

  await t.test('server streaming, no message: a trailers-only non-OK answer', async () => {
    const r = await stream(-1);
    assert.deepEqual(r.items, []);
    assert.equal(r.status.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(r.status.details, 'negative count');
  });
});
