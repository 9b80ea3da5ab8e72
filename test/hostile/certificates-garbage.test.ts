// A TLS Secret is overwritten with garbage, then with a mismatched pair:
// the HTTPS listener keeps serving its last good certificate, and says so
// on its status. When the Secret is deleted, it stops: the owner revoked
// it. Real config files through the file provider, translate() as the
// control loop calls it, a real data plane, real TLS handshakes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { loadDirectory } from '../../src/providers/file/loader.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { translate, type TranslateResult } from '../../src/translate/index.ts';
import { parsePool } from '../../src/translate/addresses.ts';
import { freePort, selfSigned, startBackend, startDataPlane } from '../dataplane/helpers.ts';

/** Loopback addresses only: the Gateway gets 127.30.0.1 from this pool. */
const POOL = '127.30.0.0/24';
const ADDRESS = '127.30.0.1';

function gatewayYAML(port: number, backendPort: number): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: https, port: ${port}, protocol: HTTPS, hostname: site.example.test, tls: {certificateRefs: [{name: site}]}}]
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: infra}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, namespace: infra, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{name: http, port: ${backendPort}}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: infra}
spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: app, port: 80}]}]}
`;
}

function secretYAML(crt: string, key: string): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return `apiVersion: v1
kind: Secret
metadata: {name: site, namespace: infra}
type: kubernetes.io/tls
data: {tls.crt: ${b64(crt)}, tls.key: ${b64(key)}}
`;
}

/** The subject CN the listener presents, or the connection error's code. */
function presented(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: ADDRESS, port, servername: 'site.example.test', rejectUnauthorized: false, timeout: 2_000 });
    socket.once('secureConnect', () => {
      const cn = String(socket.getPeerCertificate().subject?.CN ?? '');
      socket.end();
      resolve(`CN=${cn}`);
    });
    socket.once('timeout', () => { socket.destroy(); resolve('timeout'); });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** The status code of GET / over TLS, through the listener to the backend. */
function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: ADDRESS, port, servername: 'site.example.test', rejectUnauthorized: false, timeout: 2_000 }, () => {
      socket.end('GET / HTTP/1.1\r\nHost: site.example.test\r\nConnection: close\r\n\r\n');
    });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => { text += d; });
    socket.once('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.once('timeout', () => { socket.destroy(); reject(new Error('no response in 2 s')); });
    socket.once('error', reject);
  });
}

function listenerCondition(r: TranslateResult, type: string): { status: string; reason: string; message: string } {
  const st = r.statuses.get('Gateway|infra|gw') as { listeners: { name: string; conditions: { type: string; status: string; reason: string; message: string }[] }[] };
  return st.listeners[0].conditions.find((c) => c.type === type)!;
}

test('a garbage or mismatched certificate keeps the last good one serving; a deleted Secret does not', { timeout: 10_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-certs-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackend(t, 'app');
  const port = await freePort();
  const good = selfSigned('good.example.test', ['site.example.test']);
  const other = selfSigned('other.example.test', ['site.example.test']);
  fs.writeFileSync(path.join(dir, 'gateway.yaml'), gatewayYAML(port, backend.port));
  const secretFile = path.join(dir, 'secret.yaml');

  const dp = await startDataPlane(t);
  let previous: TranslateResult | undefined;
  const reload = async () => {
    const loaded = loadDirectory(dir);
    assert.deepEqual(loaded.errors, [], 'the files load');
    const r = translate(buildSnapshot(loaded.objects.map((o) => o.object)), {
      controllerName: 'gatehouse.dev/gateway-controller',
      addressing: { pool: parsePool(POOL), hostAddress: '127.0.0.1', previous: previous?.assignedAddresses ?? {} },
      lastGoodCertificates: previous?.lastGoodCertificates,
    });
    const applied = await dp.apply(r.ir);
    assert.deepEqual(applied.listenerErrors, {});
    assert.deepEqual(applied.certificateErrors, {});
    previous = r;
    return r;
  };

  fs.writeFileSync(secretFile, secretYAML(good.cert, good.key));
  let r = await reload();
  assert.equal(await presented(port), 'CN=good.example.test');
  assert.equal(listenerCondition(r, 'Programmed').status, 'True');

  // Garbage where the certificate was: still the good one, and the status says so.
  const garbage = `-----BEGIN CERTIFICATE-----\n${Buffer.from('garbage '.repeat(40)).toString('base64')}\n-----END CERTIFICATE-----\n`;
  fs.writeFileSync(secretFile, secretYAML(garbage, good.key));
  r = await reload();
  assert.equal(await presented(port), 'CN=good.example.test');
  assert.equal(await get(port), 200);
  const refs = listenerCondition(r, 'ResolvedRefs');
  assert.equal(refs.status, 'False');
  assert.equal(refs.reason, 'InvalidCertificateRef');
  assert.match(refs.message, /^certificateRef infra\/site: tls\.crt certificate 0 is malformed \(error:/);
  assert.match(refs.message, /the last good certificate \(SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}, notAfter \d{4}-\d\d-\d\dT[\d:.]+Z\) keeps serving$/);
  assert.equal(listenerCondition(r, 'Programmed').status, 'True');

  // A valid certificate with a key that is not its own: the same.
  fs.writeFileSync(secretFile, secretYAML(other.cert, good.key));
  r = await reload();
  assert.equal(await presented(port), 'CN=good.example.test');
  assert.match(listenerCondition(r, 'ResolvedRefs').message, /tls\.key does not match tls\.crt; the last good certificate/);

  // No key material in any condition the status shows.
  const status = JSON.stringify(r.statuses.get('Gateway|infra|gw'));
  for (const secret of [good.key, other.key]) {
    const body = secret.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    assert.ok(!status.includes(body.slice(0, 24)), 'no private key text in the status');
  }

  // A good pair again: served at once.
  fs.writeFileSync(secretFile, secretYAML(other.cert, other.key));
  r = await reload();
  assert.equal(await presented(port), 'CN=other.example.test');
  assert.equal(listenerCondition(r, 'ResolvedRefs').status, 'True');

  // The Secret is deleted: nothing is kept, the listener closes.
  fs.rmSync(secretFile);
  r = await reload();
  assert.equal(await presented(port), 'ECONNREFUSED');
  assert.equal(listenerCondition(r, 'Programmed').status, 'False');
  assert.match(listenerCondition(r, 'Programmed').message, /Secret not found/);
  assert.deepEqual(r.lastGoodCertificates, {});
  assert.equal(backend.seen.length, 1);
});
