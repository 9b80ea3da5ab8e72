// The defences of the file provider, translate and the endpoint policy, as
// `gatehouse serve` runs them: a real process started the way users start
// it, its admin API, its listeners. Each piece has its own tests; these
// prove that serve hands them what they need (the admin API's real port,
// the flags, the last good certificates between reloads).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import { freePort, spawnServe, startEcho, tempConfigDir, waitFor, writeConfig, GATEWAY_CLASS } from '../e2e/helpers.ts';
import { selfSigned } from '../dataplane/helpers.ts';
import { appYAML, routeYAML } from './config-helpers.ts';
import { b64 } from './admin-fixtures.ts';

function get(port: number, urlPath: string, host = 'app.example.test'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: { host }, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 2 s')));
    req.on('error', reject);
  });
}

async function json(port: number, urlPath: string): Promise<any> {
  const r = await get(port, urlPath, `127.0.0.1:${port}`);
  return JSON.parse(r.body);
}

async function routeRefs(adminPort: number): Promise<{ status: string; reason: string; message: string } | undefined> {
  const page = await json(adminPort, '/api/v1/resources?kind=HTTPRoute');
  const route = page.items.find((o: any) => o.metadata.name === 'app');
  return route?.status?.parents?.[0]?.conditions?.find((c: any) => c.type === 'ResolvedRefs');
}

test('serve refuses a route whose endpoint is its own admin API, on the port it really bound', { timeout: 20_000 }, async (t) => {
  const dir = tempConfigDir();
  const [adminPort, port] = [await freePort(), await freePort()];
  writeConfig(dir, 'app.yaml', appYAML(port, adminPort));
  const gw = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '0', '--log-level', 'warn', '--shutdown-delay', '0']);
  t.after(() => gw.stop());

  const refs = await waitFor('route status', async () => routeRefs(adminPort), 8_000);
  assert.equal(refs.status, 'False');
  assert.equal(refs.reason, 'EndpointNotPermitted');
  assert.match(refs.message, new RegExp(`127\\.0\\.0\\.1:${adminPort}`));
  const answer = await get(port, '/api/v1/resources');
  assert.notEqual(answer.status, 200);
  assert.doesNotMatch(answer.body, /GatewayClass|"items"/);
});

test('--deny-loopback-endpoints refuses a loopback backend that serve otherwise uses', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho('app');
  t.after(() => echo.close());
  for (const deny of [false, true]) {
    const dir = tempConfigDir();
    const [adminPort, port] = [await freePort(), await freePort()];
    writeConfig(dir, 'app.yaml', appYAML(port, echo.port));
    const gw = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '0', '--log-level', 'warn', '--shutdown-delay', '0',
      ...(deny ? ['--deny-loopback-endpoints'] : [])]);
    try {
      const refs = await waitFor('route status', async () => routeRefs(adminPort), 8_000);
      if (deny) {
        assert.equal(refs.reason, 'EndpointNotPermitted');
        assert.notEqual((await get(port, '/')).status, 200);
      } else {
        assert.equal(refs.status, 'True');
        assert.equal((await get(port, '/')).status, 200);
      }
    } finally {
      await gw.stop();
    }
  }
});

function httpsGateway(port: number): string {
  return `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: https, port: ${port}, protocol: HTTPS, hostname: app.example.test, tls: {certificateRefs: [{name: site}]}}]
`;
}

function secretYAML(crt: string, key: string): string {
  return `apiVersion: v1
kind: Secret
metadata: {name: site, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${b64(crt)}, tls.key: ${b64(key)}}
`;
}

function presentedCN(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'app.example.test', rejectUnauthorized: false, timeout: 2_000 });
    socket.once('secureConnect', () => {
      resolve(String(socket.getPeerCertificate().subject?.CN ?? ''));
      socket.end();
    });
    socket.once('timeout', () => { socket.destroy(); resolve('timeout'); });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

test('a certificate Secret gone bad: serve keeps the last good one across reloads and lists the problem', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho('app');
  t.after(() => echo.close());
  const dir = tempConfigDir();
  const [adminPort, port] = [await freePort(), await freePort()];
  const good = selfSigned('good.example.test', ['app.example.test']);
  writeConfig(dir, 'gateway.yaml', httpsGateway(port));
  writeConfig(dir, 'app.yaml', appYAML(port, echo.port).split('---\n').slice(2).join('---\n'));
  writeConfig(dir, 'secret.yaml', secretYAML(good.cert, good.key));
  const gw = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '0', '--log-level', 'warn', '--shutdown-delay', '0']);
  t.after(() => gw.stop());
  await waitFor('the good certificate', async () => (await presentedCN(port)) === 'good.example.test', 8_000);

  writeConfig(dir, 'secret.yaml', secretYAML('-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n', good.key));
  const errors = await waitFor('the certificate problem on /api/v1/errors', async () => {
    const page = await json(adminPort, '/api/v1/errors');
    return page.items.find((e: any) => e.object === 'Gateway default/gw');
  }, 8_000);
  assert.equal(errors.file, 'gateway.yaml');
  assert.equal(errors.field, 'spec.listeners[https]');
  assert.match(errors.reason, /^InvalidCertificateRef: .*malformed.*last good/i);
  // A second reload, of an unrelated file, must not lose the last good certificate.
  writeConfig(dir, 'other.yaml', routeYAML('other', ['/other']));
  await waitFor('the second reload', async () => (await json(adminPort, '/api/v1/resources?kind=HTTPRoute')).items.length === 2, 8_000);
  assert.equal(await presentedCN(port), 'good.example.test');
  assert.doesNotMatch(gw.output(), /PRIVATE KEY/);
});

test('--config-max-file-bytes refuses a larger file, names it, and the other files serve', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho('app');
  t.after(() => echo.close());
  const dir = tempConfigDir();
  const [adminPort, port] = [await freePort(), await freePort()];
  writeConfig(dir, 'app.yaml', appYAML(port, echo.port));
  writeConfig(dir, 'zz-big.yaml', `# ${'x'.repeat(3000)}\napiVersion: v1\nkind: Namespace\nmetadata: {name: big}\n`);
  const gw = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '0', '--log-level', 'warn', '--shutdown-delay', '0',
    '--config-max-file-bytes', '2048']);
  t.after(() => gw.stop());
  await waitFor('the route served', async () => (await get(port, '/')).status === 200, 8_000);
  const page = await json(adminPort, '/api/v1/errors');
  const refused = page.items.find((e: any) => e.file === 'zz-big.yaml');
  assert.ok(refused, JSON.stringify(page.items));
  assert.match(refused.message, /2048/);
  assert.equal(fs.existsSync(path.join(dir, 'zz-big.yaml')), true);
});
